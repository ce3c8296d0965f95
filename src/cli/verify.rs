//! `res2net verify`: the GPU against the CPU reference, op by op, on the classifier or on a features
//! graph.

use std::path::PathBuf;
use std::process::ExitCode;

use res2net_wgpu::graph::Outputs;
use res2net_wgpu::{arch, gpu, tensor_io, verify, Model, Result};

use super::size::{parse_size, Size};
use crate::{load, GpuArgs};

#[derive(clap::Args)]
pub struct VerifyArgs {
    #[arg(long, required_unless_present = "arch")]
    weights: Option<PathBuf>,
    /// An input tensor file; random values at --size when absent.
    #[arg(long)]
    input: Option<PathBuf>,
    /// A preset: forces that architecture on --weights, or, alone, runs it with random weights.
    #[arg(long)]
    arch: Option<String>,
    /// Input size of the random input: S or HxW.
    #[arg(long, default_value = "224", value_parser = parse_size)]
    size: Size,
    /// Verify a features graph (no classifier) returning these points instead of the classifier.
    #[arg(long, value_name = "1,3,4")]
    out_indices: Option<String>,
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// The GPU session; f16 weights are judged with a wider tolerance (1e-3 + 2e-2 x max|cpu| per
    /// op instead of 1e-4 + 1e-4 x max|cpu|).
    #[command(flatten)]
    gpu: GpuArgs,
}

/// Prints every op's comparison and the verdict; exit code 1 when an op is out of tolerance.
pub fn verify(args: &VerifyArgs) -> Result<ExitCode> {
    let model = match (&args.weights, &args.arch) {
        (Some(w), a) => load(w, a.as_deref())?,
        (None, Some(a)) => Model::from_config(&arch::preset(a)?, 1)?,
        (None, None) => unreachable!("clap requires --weights or --arch"),
    };
    let outputs = match args.out_indices.as_deref().map(arch::parse_out_indices) {
        Some(indices) => Outputs::features(&model.config().out_indices(Some(&indices?))?),
        None => Outputs::classifier(),
    };
    let input = match &args.input {
        Some(p) => tensor_io::read_input(p)?,
        None => verify::random_input(args.batch, args.size.h, args.size.w, 1),
    };
    let ctx = gpu::GpuContext::new()?;
    let options = args.gpu.session_options();
    let report = verify::compare_outputs(&model, &ctx, &input, &options, &outputs)?;
    print!("{}", report.table());
    println!("{}", report.verdict());
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
