//! The `res2net` command: a thin layer that parses arguments, calls the library and prints.
//! Exit codes: 0 success, 2 bad input (file, tensor, checkpoint, arguments), 1 any other failure.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use res2net_wgpu::{arch, cpu, model, tensor_io, Error, Model, Result};

#[derive(Parser)]
#[command(
    name = "res2net",
    version,
    about = "Res2Net image classifiers on any GPU through wgpu"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Device {
    Cpu,
    Gpu,
    Auto,
}

#[derive(Subcommand)]
enum Command {
    /// Run a model on a tensor file: `input` [N,3,H,W] f32 in, `logits` and `probs` [N,classes] out.
    Infer {
        #[arg(long)]
        weights: PathBuf,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
        #[arg(long, value_enum, default_value_t = Device::Auto)]
        device: Device,
        /// Force a preset architecture instead of detecting it.
        #[arg(long)]
        arch: Option<String>,
    },
    /// Show the architecture, parameter count, GFLOPs at 224 and the shape after every stage.
    Inspect {
        #[arg(long, required_unless_present = "arch")]
        weights: Option<PathBuf>,
        /// A preset name; with --weights, forces that architecture.
        #[arg(long)]
        arch: Option<String>,
        /// Input size for the shapes and FLOPs.
        #[arg(long, default_value_t = 224)]
        size: usize,
    },
    /// List the preset architectures.
    Presets,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            if e.is_bad_input() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn load(weights: &PathBuf, arch: Option<&str>) -> Result<Model> {
    match arch {
        Some(a) => Model::load_as(weights, a),
        None => Model::load(weights),
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Infer {
            weights,
            input,
            output,
            device,
            arch,
        } => {
            let model = load(&weights, arch.as_deref())?;
            let batch = tensor_io::read_input(&input)?;
            let graph = model.graph(batch.h, batch.w)?;
            let out = match device {
                Device::Cpu => cpu::forward(&graph, &batch.data, batch.n)?,
                Device::Gpu | Device::Auto => {
                    return Err(Error::Gpu(
                        "the GPU executor is not available in this build".into(),
                    ))
                }
            };
            tensor_io::write_output(&output, &out)
        }
        Command::Inspect {
            weights,
            arch,
            size,
        } => {
            let model = match (&weights, &arch) {
                (Some(w), a) => load(w, a.as_deref())?,
                (None, Some(a)) => Model::from_config(&arch::preset(a)?, 0)?,
                (None, None) => unreachable!("clap requires --weights or --arch"),
            };
            inspect(&model, size)
        }
        Command::Presets => {
            for p in arch::presets() {
                println!(
                    "{:<20} {:>12} params  {}",
                    p.name,
                    model::param_count(&p.config),
                    p.description
                );
            }
            Ok(())
        }
    }
}

fn inspect(model: &Model, size: usize) -> Result<()> {
    let cfg = model.config();
    let graph = model::shape_graph(cfg, size, size)?;
    println!(
        "architecture: {} ({:?})",
        model.name(),
        model.config_source()
    );
    println!("config:       {}", cfg.summary());
    println!("parameters:   {}", model.param_count());
    println!(
        "compute:      {:.3} GMACs, {:.3} GFLOPs at {size}x{size}",
        graph.macs() as f64 / 1e9,
        graph.flops() as f64 / 1e9
    );
    println!(
        "ops:          {} ({} convolutions)",
        graph.nodes.len(),
        graph.conv_count()
    );
    println!("shapes at {size}x{size}:");
    let s = graph.input_shape();
    println!("  {:<8} [{}, {}, {}]", "input", s.c, s.h, s.w);
    for (name, t) in &graph.stage_outputs {
        let s = graph.shape(*t);
        println!("  {name:<8} [{}, {}, {}]", s.c, s.h, s.w);
    }
    println!("  {:<8} [{}]", "logits", graph.num_classes());
    Ok(())
}
