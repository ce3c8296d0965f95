//! `res2net bench`: forward passes timed on the GPU, as a share of the adapter's peak, with what a
//! new input size costs.

use std::path::PathBuf;
use std::time::Instant;

use res2net_wgpu::output_file::{self, Arg};
use res2net_wgpu::{arch, bench, gpu, Model, Result};

use super::size::{parse_size, Size};
use crate::{load, GpuArgs};

#[derive(clap::Args)]
pub struct BenchArgs {
    #[arg(long, conflicts_with = "arch", required_unless_present = "arch")]
    weights: Option<PathBuf>,
    /// A preset with random weights.
    #[arg(long)]
    arch: Option<String>,
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Input size: S or HxW.
    #[arg(long, default_value = "224", value_parser = parse_size)]
    size: Size,
    /// Backbone mode: the architecture's default feature maps, no classifier.
    #[arg(long)]
    features: bool,
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Also time every op on the GPU (timestamp queries; host wall-clock per op where the
    /// adapter has none) and print them slowest first, with totals per kind of op.
    #[arg(long)]
    profile: bool,
    /// Write the profile as an SVG bar chart to this file (implies --profile).
    #[arg(long, value_name = "OUT.svg")]
    profile_svg: Option<PathBuf>,
    #[command(flatten)]
    gpu: GpuArgs,
}

/// Runs the benchmark and prints the report (text or JSON), writing the profile chart if asked.
pub fn bench(args: &BenchArgs) -> Result<()> {
    if let Some(svg) = &args.profile_svg {
        let inputs: Vec<Arg> = args
            .weights
            .iter()
            .map(|w| Arg::new("--weights", w))
            .collect();
        output_file::check_output(Arg::new("--profile-svg", svg), &inputs)?;
    }
    let t = Instant::now();
    let model = match (&args.weights, &args.arch) {
        (Some(w), _) => load(w, None)?,
        (None, Some(a)) => Model::from_config(&arch::preset(a)?, 1)?,
        (None, None) => unreachable!("clap requires --weights or --arch"),
    };
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let options = bench::BenchOptions {
        batch: args.batch,
        height: args.size.h,
        width: args.size.w,
        features: args.features,
        iters: args.iters,
        progress: !args.json,
        profile: args.profile || args.profile_svg.is_some(),
        session: args.gpu.session_options(),
    };
    let report = bench::run(&model, &gpu::GpuContext::new()?, &options, load_ms)?;
    if let (Some(path), Some(p)) = (&args.profile_svg, &report.profile) {
        let title = format!(
            "{} at {}x{}, batch {} on {}",
            report.model, report.height, report.width, report.batch, report.adapter
        );
        output_file::write_bytes_atomically(path, p.svg(&title).as_bytes())?;
    }
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    Ok(())
}
