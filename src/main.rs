//! The `res2net` command: a thin layer that parses arguments, calls the library and prints.
//! Exit codes: 0 success, 2 bad input (file, tensor, checkpoint, image, arguments), 1 any other failure.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use res2net_wgpu::classifier::{CamOutput, Classifier, DeviceChoice};
use res2net_wgpu::output_file::{self, Arg, FileSet};
use res2net_wgpu::{arch, bundled, cam, model, preprocess, tensor_io, Error, Model, Result};

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

impl From<Device> for DeviceChoice {
    fn from(d: Device) -> Self {
        match d {
            Device::Cpu => DeviceChoice::Cpu,
            Device::Gpu => DeviceChoice::Gpu,
            Device::Auto => DeviceChoice::Auto,
        }
    }
}

/// What `infer` and `features` share: a checkpoint, an input tensor file and an output file.
#[derive(clap::Args)]
struct TensorRun {
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
    #[command(flatten)]
    gpu: GpuArgs,
}

impl TensorRun {
    /// Refuses an output that is one of the inputs, before any work.
    fn check_output(&self) -> Result<()> {
        output_file::check_output(
            Arg::new("--output", &self.output),
            &[
                Arg::new("--weights", &self.weights),
                Arg::new("--input", &self.input),
            ],
        )
    }
}

#[derive(Subcommand)]
enum Command {
    /// Classify the bundled held-out digits with the bundled model: accuracy, confusions, latency.
    Demo {
        #[arg(long, value_enum, default_value_t = Device::Auto)]
        device: Device,
        #[command(flatten)]
        gpu: GpuArgs,
    },
    /// Classify PNG or JPEG images (a directory means every image in it).
    Classify {
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// A checkpoint; the bundled digits model when absent.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Force a preset architecture instead of detecting it.
        #[arg(long)]
        arch: Option<String>,
        /// Classes to show per image.
        #[arg(long, default_value_t = 5)]
        top: usize,
        /// Print JSON for programs.
        #[arg(long)]
        json: bool,
        /// Write a class activation map of the top class (IMAGE's name is added for several images).
        #[arg(long)]
        cam: Option<PathBuf>,
        /// Images per forward pass.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        #[arg(long, value_enum, default_value_t = Device::Auto)]
        device: Device,
        #[command(flatten)]
        gpu: GpuArgs,
    },
    /// Run a model on a tensor file: `input` [N,3,H,W] f32 in, `logits` and `probs` [N,classes] out.
    Infer {
        #[command(flatten)]
        run: TensorRun,
    },
    /// Run a model as a backbone: `input` [N,3,H,W] f32 in, one f32 feature map [N,C,H,W] per
    /// requested point out, named by its module (`layer1`, `level5`, ...).
    Features {
        #[command(flatten)]
        run: TensorRun,
        /// Feature points by index, comma-separated (timm's out_indices); the architecture's
        /// defaults when absent (`res2net inspect` lists them).
        #[arg(long, value_name = "1,3,4")]
        out_indices: Option<String>,
    },
    /// Run on the GPU and the CPU reference and compare every op's output.
    Verify(cli::verify::VerifyArgs),
    /// Time forward passes on the GPU.
    Bench(cli::bench::BenchArgs),
    /// Show the architecture, parameter count, GFLOPs and every feature point with its shape.
    Inspect {
        #[arg(long, required_unless_present = "arch")]
        weights: Option<PathBuf>,
        /// A preset name; with --weights, forces that architecture.
        #[arg(long)]
        arch: Option<String>,
        /// Input size for the shapes and FLOPs: S or HxW.
        #[arg(long, default_value = "224", value_parser = parse_size)]
        size: Size,
    },
    /// List the preset architectures.
    Presets,
}

mod cli {
    pub mod bench;
    pub mod demo;
    pub mod features;
    pub mod gpu_args;
    pub mod inspect;
    pub mod size;
    pub mod verify;
}

use cli::gpu_args::GpuArgs;
use cli::size::{parse_size, Size};

fn main() -> ExitCode {
    // Before any thread starts: it sets an environment variable (see its docs for the measurements).
    res2net_wgpu::gpu::llvmpipe::set_default_threads();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", res2net_wgpu::error::one_line(&e.to_string()));
            exit_code(&e)
        }
    }
}

fn exit_code(e: &Error) -> ExitCode {
    if e.is_bad_input() {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}

fn load(weights: &Path, arch: Option<&str>) -> Result<Model> {
    match arch {
        Some(a) => Model::load_as(weights, a),
        None => Model::load(weights),
    }
}

fn classifier(model: Model, device: Device, gpu: &GpuArgs) -> Result<Classifier> {
    let c = Classifier::new(model, device.into())?.with_session_options(gpu.session_options());
    if let Some(reason) = c.fallback_reason() {
        eprintln!("warning: running on the CPU: {reason}");
    }
    Ok(c)
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Demo { device, gpu } => cli::demo::demo(device, &gpu).map(|()| ExitCode::SUCCESS),
        Command::Classify {
            images,
            weights,
            arch,
            top,
            json,
            cam,
            batch,
            device,
            gpu,
        } => {
            let files = expand(&images);
            if let Some(cam) = &cam {
                check_cam_targets(cam, &files, weights.as_deref())?;
            }
            let model = match &weights {
                Some(w) => load(w, arch.as_deref())?,
                None => bundled::model()?,
            };
            classify(
                classifier(model, device, &gpu)?,
                &files,
                top,
                json,
                cam.as_deref(),
                batch,
            )
        }
        Command::Infer { run } => {
            run.check_output()?;
            let model = load(&run.weights, run.arch.as_deref())?;
            let batch = tensor_io::read_input(&run.input)?;
            let c = classifier(model, run.device, &run.gpu)?;
            let out = c.run_tensor(&batch.data, batch.n, batch.h, batch.w)?;
            tensor_io::write_output(&run.output, &out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Features { run, out_indices } => {
            cli::features::features(&run, out_indices.as_deref()).map(|()| ExitCode::SUCCESS)
        }
        Command::Verify(args) => cli::verify::verify(&args),
        Command::Bench(args) => cli::bench::bench(&args).map(|()| ExitCode::SUCCESS),
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
            cli::inspect::inspect(&model, size)?;
            Ok(ExitCode::SUCCESS)
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
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Image files named on the command line, directories expanded (sorted, PNG and JPEG by extension).
fn expand(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        match std::fs::read_dir(p) {
            Ok(entries) if p.is_dir() => {
                let mut files: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|f| {
                        f.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                            matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg")
                        })
                    })
                    .collect();
                files.sort();
                out.extend(files);
            }
            _ => out.push(p.clone()),
        }
    }
    out
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// Classifies `files` (already expanded by [`expand`]).
fn classify(
    c: Classifier,
    files: &[PathBuf],
    top: usize,
    json: bool,
    cam_path: Option<&Path>,
    batch: usize,
) -> Result<ExitCode> {
    let top = top.clamp(1, c.labels().len());
    let batch = batch.max(1);
    let [h, w] = c.preprocess().input_size;
    let bar = indicatif::ProgressBar::new(files.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} images {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    if files.len() <= batch {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let run_n = batch.min(files.len());
    let mut worst: Option<Error> = None;
    let mut records: Vec<String> = Vec::new();
    for chunk in files.chunks(batch) {
        let mut images = Vec::new();
        let mut names = Vec::new();
        for f in chunk {
            match preprocess::load_image(f) {
                Ok(img) => {
                    images.push(img);
                    names.push(f.clone());
                }
                Err(e) => {
                    bar.suspend(|| {
                        eprintln!("error: {}", res2net_wgpu::error::one_line(&e.to_string()))
                    });
                    if json {
                        records.push(format!(
                            "{{\"file\":{},\"error\":{}}}",
                            json_string(&f.display().to_string()),
                            json_string(&e.to_string())
                        ));
                    }
                    worst = Some(e);
                }
            }
            bar.inc(1);
        }
        if images.is_empty() {
            continue;
        }
        // Every forward runs `run_n` images, zero-padded, so one session serves every chunk.
        let mut input = c.to_tensor(&images);
        input.resize(run_n * 3 * h * w, 0.0);
        let out = match cam_path {
            Some(cam_path) => {
                let CamOutput {
                    out,
                    maps,
                    map_size: (fh, fw),
                } = c.run_with_cam(&input, run_n, h, w)?;
                if fh * fw == 1 {
                    bar.suspend(|| {
                        eprintln!("warning: the last feature map is 1x1 at {h}x{w}, so the class activation map cannot localize anything")
                    });
                }
                let per_input = 3 * h * w;
                for (i, (name, map)) in names.iter().zip(&maps).enumerate() {
                    let img = cam::render(
                        &input[i * per_input..(i + 1) * per_input],
                        c.preprocess(),
                        map,
                        fh,
                        fw,
                    );
                    let target = cam_target(cam_path, name, files.len() > 1);
                    cam::save(&img, &target)?;
                    let label = &c.labels()[out.top_k(i, 1)[0].0];
                    bar.suspend(|| {
                        eprintln!(
                            "class activation map of '{label}' for {} written to {}",
                            name.display(),
                            target.display()
                        )
                    });
                }
                out
            }
            None => c.run_tensor(&input, run_n, h, w)?,
        };
        let out = first_images(out, images.len());
        for (i, preds) in c.top_k(&out, top).iter().enumerate() {
            if json {
                let top: Vec<String> = preds
                    .iter()
                    .map(|p| {
                        format!(
                            "{{\"class\":{},\"label\":{},\"prob\":{}}}",
                            p.class,
                            json_string(&p.label),
                            p.prob
                        )
                    })
                    .collect();
                records.push(format!(
                    "{{\"file\":{},\"top\":[{}]}}",
                    json_string(&names[i].display().to_string()),
                    top.join(",")
                ));
            } else {
                bar.suspend(|| {
                    println!("{}", names[i].display());
                    for p in preds {
                        println!("  {:>7.2}%  {}", p.prob * 100.0, p.label);
                    }
                });
            }
        }
    }
    bar.finish_and_clear();
    if json {
        println!("[{}]", records.join(",\n "));
    }
    Ok(match worst {
        None => ExitCode::SUCCESS,
        Some(e) => exit_code(&e),
    })
}

/// Refuses, before any work, a `--cam` whose map would be written over an input (an image or the
/// weights), or two images whose maps would land on the same file (`a/x.png` and `b/x.png`), and a
/// `--cam` directory that is missing or cannot be written.
fn check_cam_targets(cam: &Path, files: &[PathBuf], weights: Option<&Path>) -> Result<()> {
    let several = files.len() > 1;
    let targets: Vec<PathBuf> = files.iter().map(|f| cam_target(cam, f, several)).collect();
    let inputs = FileSet::of_args(
        files
            .iter()
            .map(|f| Arg::new("IMAGE", f))
            .chain(weights.map(|w| Arg::new("--weights", w))),
    );
    let mut maps: FileSet<&Path> = FileSet::default();
    for (image, target) in files.iter().zip(&targets) {
        inputs.refuse(Arg::new("--cam", target))?;
        if let Some(other) = maps.find(target) {
            if output_file::same_file(other, image) {
                continue; // the same image named twice gets the same map
            }
            return Err(Error::Output {
                arg: "--cam".into(),
                path: target.clone(),
                reason: format!(
                    "the maps of IMAGE {} and IMAGE {} would both be written here; rename one image",
                    other.display(),
                    image.display()
                ),
            });
        }
        maps.insert(target, image);
    }
    // Every map goes to the directory of `cam`, so one check covers them all.
    match targets.first() {
        Some(first) => output_file::check_writable(Arg::new("--cam", first)),
        None => Ok(()),
    }
}

/// Where the map of `image` goes: `path` itself for one image, else `path`'s stem + the image's stem.
fn cam_target(path: &Path, image: &Path, several: bool) -> PathBuf {
    if !several {
        return path.to_path_buf();
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("cam");
    let img = image
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("image");
    path.with_file_name(format!("{stem}_{img}.png"))
}

/// The first `n` images of an output (the rest were padding).
fn first_images(out: res2net_wgpu::cpu::Output, n: usize) -> res2net_wgpu::cpu::Output {
    let k = n.min(out.batch) * out.classes;
    res2net_wgpu::cpu::Output {
        batch: n.min(out.batch),
        classes: out.classes,
        logits: out.logits[..k].to_vec(),
        probs: out.probs[..k].to_vec(),
    }
}
