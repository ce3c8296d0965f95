//! `res2net verify`: the GPU against the CPU reference, op by op, on the classifier or on a features
//! graph.

use std::path::PathBuf;
use std::process::ExitCode;

use res2net_wgpu::graph::Outputs;
use res2net_wgpu::{arch, gpu, tensor_io, verify, Result};

use super::size::{parse_size, Size};
use crate::{load, PrecisionArg};

#[derive(clap::Args)]
pub struct VerifyArgs {
    #[arg(long)]
    weights: PathBuf,
    /// An input tensor file; random values at --size when absent.
    #[arg(long)]
    input: Option<PathBuf>,
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
    /// Weight precision of the GPU session; f16 is judged with a wider tolerance
    /// (1e-3 + 2e-2 x max|cpu| per op instead of 1e-4 + 1e-4 x max|cpu|).
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    precision: PrecisionArg,
}

/// Prints every op's comparison and the verdict; exit code 1 when an op is out of tolerance.
pub fn verify(args: &VerifyArgs) -> Result<ExitCode> {
    let model = load(&args.weights, args.arch.as_deref())?;
    let outputs = match args.out_indices.as_deref().map(arch::parse_out_indices) {
        Some(indices) => Outputs::features(&model.config().out_indices(Some(&indices?))?),
        None => Outputs::classifier(),
    };
    let input = match &args.input {
        Some(p) => tensor_io::read_input(p)?,
        None => verify::random_input(args.batch, args.size.h, args.size.w, 1),
    };
    let ctx = gpu::GpuContext::new()?;
    let precision = args.precision.into();
    let report = verify::compare_outputs(&model, &ctx, &input, precision, &outputs)?;
    print!("{}", report.table());
    println!("{}", report.verdict());
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
