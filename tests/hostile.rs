//! Hostile input: every file of the committed corpus in `tests/hostile/` (written by
//! `tests/hostile/make_corpus.py`, listed in its `MANIFEST.tsv`) goes through the `res2net` command and
//! through the library. A broken or malicious file must be refused with exit code 2 and one `error:` line
//! that says what was expected, within seconds, without a panic and without allocating more than a
//! fixed budget; the valid controls beside them must work.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use res2net_wgpu::checkpoint::Checkpoint;
use res2net_wgpu::classifier::{Classifier, DeviceChoice};
use res2net_wgpu::preprocess::{self, Preprocess};
use res2net_wgpu::{arch, cpu, tensor_io, Error, Model};

mod common;
use common::scratch;

// ---------------------------------------------------------------------------------------------------
// An allocator that tracks the peak of live heap bytes, so a test can prove a hostile file is refused
// without a huge allocation. Single allocations above `REFUSE_ABOVE` fail outright (the process aborts
// with "memory allocation of N bytes failed") rather than touching gigabytes on a shared machine.

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
const REFUSE_ABOVE: usize = 4 << 30;

/// Asks the system allocator, through `f`, for a block of `size` bytes that replaces one of `freed`
/// bytes (0 for a new block), refusing sizes above `REFUSE_ABOVE`, and counts a block it gets as live.
fn counted(size: usize, freed: usize, f: impl FnOnce() -> *mut u8) -> *mut u8 {
    if size > REFUSE_ABOVE {
        return std::ptr::null_mut();
    }
    let p = f();
    if !p.is_null() {
        LIVE.fetch_sub(freed, Ordering::Relaxed);
        let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
        PEAK.fetch_max(live, Ordering::Relaxed);
    }
    p
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        counted(layout.size(), 0, || unsafe { System.alloc(layout) })
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        counted(layout.size(), 0, || unsafe { System.alloc_zeroed(layout) })
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        counted(new_size, layout.size(), || unsafe {
            System.realloc(ptr, layout, new_size)
        })
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Heap bytes a hostile file may cost the library beyond what was live before (the corpus files are
/// at most a few hundred KB; refusing one must not need more).
const HEAP_BUDGET: usize = 64 << 20;

/// Runs `f` and returns its result with the peak heap growth it caused. The library checks run in one
/// test function, one file at a time, so other tests of this binary (which only spawn processes) barely
/// disturb the measurement.
fn measured<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

// ---------------------------------------------------------------------------------------------------
// The corpus.

#[derive(Clone)]
struct Case {
    path: PathBuf,
    rel: String,
    /// Phrases the error message must contain; empty for a valid control.
    needles: Vec<String>,
    description: String,
}

impl Case {
    fn valid(&self) -> bool {
        self.needles.is_empty()
    }
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile")
}

fn corpus() -> Vec<Case> {
    let text = std::fs::read_to_string(corpus_dir().join("MANIFEST.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 3, "bad manifest line: {l}");
            Case {
                path: corpus_dir().join(f[0]),
                rel: f[0].to_string(),
                needles: if f[1] == "OK" {
                    Vec::new()
                } else {
                    f[1].split('|').map(str::to_string).collect()
                },
                description: f[2].to_string(),
            }
        })
        .collect()
}

fn cases(dir: &str) -> Vec<Case> {
    corpus()
        .into_iter()
        .filter(|c| c.rel.starts_with(&format!("{dir}/")))
        .collect()
}

fn valid(name: &str) -> PathBuf {
    corpus_dir().join("valid").join(name)
}

#[test]
fn manifest_lists_every_corpus_file() {
    let listed: std::collections::BTreeSet<String> = corpus().into_iter().map(|c| c.rel).collect();
    let mut on_disk = std::collections::BTreeSet::new();
    for dir in ["valid", "weights", "classify_weights", "inputs", "images"] {
        for e in std::fs::read_dir(corpus_dir().join(dir)).unwrap() {
            on_disk.insert(format!(
                "{dir}/{}",
                e.unwrap().file_name().to_string_lossy()
            ));
        }
    }
    assert_eq!(
        listed, on_disk,
        "MANIFEST.tsv and the corpus directories disagree: rerun make_corpus.py"
    );
    let total: u64 = on_disk
        .iter()
        .map(|r| std::fs::metadata(corpus_dir().join(r)).unwrap().len())
        .sum();
    assert!(
        total < 1 << 20,
        "the corpus should stay under 1 MB, it is {total} bytes"
    );
}

// ---------------------------------------------------------------------------------------------------
// The command.

/// Wall-clock limit for one run of the command on one corpus file.
const CLI_TIMEOUT: Duration = Duration::from_secs(20);

struct Run {
    code: Option<i32>,
    stderr: String,
    elapsed: Duration,
}

/// Runs `res2net ARGS`, killing it after [`CLI_TIMEOUT`].
fn run_cli(args: &[&std::ffi::OsStr]) -> std::result::Result<Run, String> {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_res2net"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    // stderr is read on a thread so a chatty child cannot block on a full pipe.
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut pipe, &mut s).ok();
        s
    });
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(Run {
                code: status.code(),
                stderr: reader.join().unwrap_or_default(),
                elapsed: start.elapsed(),
            });
        }
        if start.elapsed() > CLI_TIMEOUT {
            child.kill().ok();
            child.wait().ok();
            return Err(format!("still running after {CLI_TIMEOUT:?}: killed"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Checks a refusal: exit code 2, exactly one `error:` line with every needle, no panic.
fn check_refusal(case: &Case, run: &Run) -> Option<String> {
    let lines: Vec<&str> = run.stderr.lines().collect();
    let problem = if run.stderr.contains("panicked") {
        Some("panicked".to_string())
    } else if run.code != Some(2) {
        Some(format!("exit code {:?}, expected 2", run.code))
    } else if lines.len() != 1 || !lines[0].starts_with("error: ") {
        Some("expected exactly one line starting with 'error: '".to_string())
    } else if !lines[0].contains("expected") {
        Some("the message does not say what was expected".to_string())
    } else {
        case.needles
            .iter()
            .find(|n| !lines[0].contains(n.as_str()))
            .map(|n| format!("'{n}' missing from the message"))
    };
    problem.map(|p| {
        format!(
            "{} ({}): {p}; stderr: {}",
            case.rel,
            case.description,
            run.stderr.trim_end()
        )
    })
}

fn infer_args<'a>(weights: &'a Path, input: &'a Path, out: &'a Path) -> Vec<&'a std::ffi::OsStr> {
    vec![
        "infer".as_ref(),
        "--device".as_ref(),
        "cpu".as_ref(),
        "--weights".as_ref(),
        weights.as_os_str(),
        "--input".as_ref(),
        input.as_os_str(),
        "--output".as_ref(),
        out.as_os_str(),
    ]
}

/// Fails with every collected failure, one a line.
fn assert_no_failures(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Runs every case through `args(case)` and collects every failure into one report.
fn refuse_all(cases: &[Case], out: &Path, args: impl Fn(&Case) -> Vec<std::ffi::OsString>) {
    let mut failures = Vec::new();
    let mut slowest = (Duration::ZERO, String::new());
    for case in cases.iter().filter(|c| !c.valid()) {
        std::fs::remove_file(out).ok();
        let a = args(case);
        let a: Vec<&std::ffi::OsStr> = a.iter().map(|s| s.as_os_str()).collect();
        match run_cli(&a) {
            Err(e) => failures.push(format!("{}: {e}", case.rel)),
            Ok(run) => {
                if run.elapsed > slowest.0 {
                    slowest = (run.elapsed, case.rel.clone());
                }
                failures.extend(check_refusal(case, &run));
                if out.exists() {
                    failures.push(format!(
                        "{}: an output file was written on failure",
                        case.rel
                    ));
                }
            }
        }
    }
    eprintln!("slowest refusal: {} in {:?}", slowest.1, slowest.0);
    assert_no_failures(&failures);
}

#[test]
fn cli_refuses_every_hostile_checkpoint() {
    let dir = scratch("hostile-weights");
    let out = dir.join("weights.out.safetensors");
    let input = valid("input_16.safetensors");
    refuse_all(&cases("weights"), &out, |c| {
        infer_args(&c.path, &input, &out)
            .into_iter()
            .map(Into::into)
            .collect()
    });
}

#[test]
fn cli_refuses_every_hostile_input() {
    let dir = scratch("hostile-inputs");
    let out = dir.join("inputs.out.safetensors");
    let weights = valid("tiny_seed.safetensors");
    refuse_all(&cases("inputs"), &out, |c| {
        infer_args(&weights, &c.path, &out)
            .into_iter()
            .map(Into::into)
            .collect()
    });
}

#[test]
fn cli_refuses_every_hostile_image() {
    let dir = scratch("hostile-images");
    refuse_all(&cases("images"), &dir.join("images.none"), |c| {
        [
            "classify".into(),
            "--device".into(),
            "cpu".into(),
            c.path.clone().into_os_string(),
        ]
        .into()
    });
}

#[test]
fn cli_refuses_every_hostile_preprocessing_or_label_metadata() {
    let dir = scratch("hostile-classify");
    refuse_all(
        &cases("classify_weights"),
        &dir.join("classify.none"),
        |c| {
            [
                "classify".into(),
                "--device".into(),
                "cpu".into(),
                "--weights".into(),
                c.path.clone().into_os_string(),
                valid("gradient.png").into_os_string(),
            ]
            .into()
        },
    );
}

#[test]
fn cli_accepts_the_valid_controls() {
    let dir = scratch("hostile-valid");
    let pairs = ["tiny_seed", "tiny_official", "tiny_seed_meta"]
        .into_iter()
        .flat_map(|w| ["input_16", "input_1x1"].map(|i| (w, i)))
        // A DLA's sides must halve evenly down to level 5.
        .chain([("tiny_dla", "input_32")]);
    for (weights, input) in pairs {
        let out = dir.join(format!("{weights}.{input}.out.safetensors"));
        let (w, i) = (
            valid(&format!("{weights}.safetensors")),
            valid(&format!("{input}.safetensors")),
        );
        let run = run_cli(&infer_args(&w, &i, &out)).unwrap();
        assert_eq!(run.code, Some(0), "{weights} on {input}: {}", run.stderr);
        let ck = Checkpoint::open(&out).unwrap();
        let (shape, probs) = ck.tensor_any_shape("probs").unwrap();
        assert_eq!(shape[1], 3);
        assert!(
            probs.iter().all(|p| p.is_finite()),
            "{weights} on {input}: {probs:?}"
        );
    }
    // Images, with the bundled model and with a checkpoint whose preprocessing crops almost nothing.
    for weights in [None, Some("pp_tiny_crop.safetensors")] {
        for image in ["gradient.png", "aspect_1x4096.png"] {
            let mut args: Vec<std::ffi::OsString> =
                vec!["classify".into(), "--device".into(), "cpu".into()];
            if let Some(w) = weights {
                args.extend(["--weights".into(), valid(w).into_os_string()]);
            }
            args.push(valid(image).into_os_string());
            let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
            let run = run_cli(&args).unwrap();
            assert_eq!(run.code, Some(0), "{weights:?} on {image}: {}", run.stderr);
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// The library.

/// A refusal from the library: a bad-input error that names what was expected and contains every
/// needle, at a bounded heap cost.
fn check_library_refusal(
    case: &Case,
    result: std::result::Result<(), Error>,
    heap: usize,
    failures: &mut Vec<String>,
) {
    let mut fail = |p: String| failures.push(format!("{} ({}): {p}", case.rel, case.description));
    if heap > HEAP_BUDGET {
        fail(format!(
            "peak heap growth {heap} bytes, over the {HEAP_BUDGET}-byte budget"
        ));
    }
    match result {
        Ok(()) => fail("accepted".into()),
        Err(e) => {
            let msg = e.to_string();
            if !e.is_bad_input() {
                fail(format!("not classed as bad input: {msg}"));
            }
            if msg.contains('\n') {
                fail(format!("message spans several lines: {msg}"));
            }
            if let Some(n) = case.needles.iter().find(|n| !msg.contains(n.as_str())) {
                fail(format!("'{n}' missing from: {msg}"));
            }
        }
    }
}

/// Loads a checkpoint from bytes and builds and runs it as far as it goes.
fn load_build_run(bytes: Vec<u8>, name: &str, size: (usize, usize)) -> res2net_wgpu::Result<()> {
    let model = Model::from_checkpoint(Checkpoint::from_bytes(bytes, name)?, None)?;
    let graph = model.graph(size.0, size.1)?;
    cpu::forward(&graph, &vec![0.5; 3 * size.0 * size.1], 1)?;
    Ok(())
}

#[test]
fn library_refuses_every_hostile_file_within_a_heap_budget() {
    let mut failures = Vec::new();
    let tiny = Model::load(valid("tiny_seed.safetensors")).unwrap();
    for case in corpus().iter().filter(|c| !c.valid()) {
        let bytes = std::fs::read(&case.path).unwrap();
        let start = Instant::now();
        if case.rel.starts_with("weights/") {
            // Through the memory map, as the command reads it: the same message as the command prints.
            let (r, heap) = measured(|| {
                Model::load(&case.path)
                    .and_then(|m| m.graph(16, 16))
                    .map(drop)
            });
            check_library_refusal(case, r, heap, &mut failures);
            // From bytes, through to a forward pass: refused somewhere, as bad input.
            let (r, heap) = measured(|| load_build_run(bytes, &case.rel, (16, 16)));
            let loose = Case {
                needles: Vec::new(),
                ..case.clone()
            };
            check_library_refusal(&loose, r, heap, &mut failures);
        } else if case.rel.starts_with("inputs/") {
            let (r, heap) = measured(|| {
                let batch = tensor_io::read_input(&case.path)?;
                let graph = tiny.graph(batch.h, batch.w)?;
                cpu::forward(&graph, &batch.data, batch.n).map(drop)
            });
            check_library_refusal(case, r, heap, &mut failures);
            let (r, heap) = measured(|| tensor_io::read_input_bytes(bytes, &case.rel).map(drop));
            // Errors found only when the graph is built or run are not the reader's business.
            if r.is_err()
                || !["too_wide", "nan", "inf", "neg_inf"]
                    .iter()
                    .any(|n| case.rel.ends_with(&format!("/{n}.safetensors")))
            {
                let loose = Case {
                    needles: Vec::new(),
                    ..case.clone()
                };
                check_library_refusal(&loose, r, heap, &mut failures);
            }
        } else if case.rel.starts_with("classify_weights/") {
            let (r, heap) =
                measured(|| Classifier::new(Model::load(&case.path)?, DeviceChoice::Cpu).map(drop));
            check_library_refusal(case, r, heap, &mut failures);
        } else if case.rel.starts_with("images/") {
            let (r, heap) = measured(|| {
                let img = preprocess::load_image(&case.path)?;
                Preprocess::imagenet().apply(&img);
                Ok(())
            });
            check_library_refusal(case, r, heap, &mut failures);
        }
        if start.elapsed() > Duration::from_secs(10) {
            failures.push(format!(
                "{}: took {:?} in the library",
                case.rel,
                start.elapsed()
            ));
        }
    }
    // The valid controls pass the same way.
    for case in corpus().iter().filter(|c| c.valid()) {
        let (r, heap) = measured(|| -> res2net_wgpu::Result<()> {
            if case.rel.ends_with("pp_tiny_crop.safetensors") {
                let c = Classifier::new(Model::load(&case.path)?, DeviceChoice::Cpu)?;
                let img = preprocess::load_image(&valid("aspect_1x4096.png"))?;
                c.classify(&[img], 3)?;
            } else if case.rel.ends_with(".png") {
                let img = preprocess::load_image(&case.path)?;
                let x = Preprocess::imagenet().apply(&img);
                assert_eq!(x.len(), 3 * 224 * 224);
                let g = tiny.graph(224, 224)?;
                cpu::forward(&g, &x, 1)?;
            } else if case.rel.contains("input") {
                let b = tensor_io::read_input(&case.path)?;
                cpu::forward(&tiny.graph(b.h, b.w)?, &b.data, b.n)?;
            } else if case.rel.ends_with("tiny_dla.safetensors") {
                load_build_run(std::fs::read(&case.path).unwrap(), &case.rel, (32, 32))?;
            } else {
                load_build_run(std::fs::read(&case.path).unwrap(), &case.rel, (16, 16))?;
            }
            Ok(())
        });
        if let Err(e) = r {
            failures.push(format!("{}: valid control refused: {e}", case.rel));
        }
        if heap > 4 * HEAP_BUDGET {
            failures.push(format!(
                "{}: valid control used {heap} heap bytes",
                case.rel
            ));
        }
    }
    assert_no_failures(&failures);
}

/// The tiny controls are what the corpus generator claims they are.
#[test]
fn valid_controls_have_the_documented_configs() {
    let m = Model::load(valid("tiny_seed.safetensors")).unwrap();
    assert_eq!(m.config(), &arch::seed([1, 1, 1, 1], 3, 1, 1, 1, false));
    let m = Model::load(valid("tiny_seed_meta.safetensors")).unwrap();
    assert_eq!(m.config(), &arch::seed([1, 1, 1, 1], 3, 1, 1, 1, false));
    assert_eq!(m.config_source(), &arch::ConfigSource::Metadata);
    let m = Model::load(valid("tiny_official.safetensors")).unwrap();
    assert_eq!(m.config().flavour, arch::Flavour::Official);
    assert_eq!(m.config().resnet().unwrap().planes, [1, 2, 4, 8]);
    assert_eq!(m.config().scale, 2);
    let m = Model::load(valid("tiny_dla.safetensors")).unwrap();
    let mut dla = arch::dla([1, 1, 1, 2, 1, 1], [2, 2, 4, 4, 8, 8], 64, 1, 3);
    dla.scale = 2;
    assert_eq!(m.config(), &dla);
}

// ---------------------------------------------------------------------------------------------------
// Fuzzing seeds.

/// Writes the committed seed files of `fuzz/seeds/` that the Python generator cannot make (models with
/// 3x3 convs, SE, a deep stem; a JPEG):
/// `cargo test --test hostile -- --ignored write_fuzz_seeds`.
#[test]
#[ignore = "writes fuzz/seeds; run by hand"]
fn write_fuzz_seeds() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for dir in ["checkpoint", "input_tensor", "image"] {
        std::fs::create_dir_all(seeds.join(dir)).unwrap();
    }
    let ck = seeds.join("checkpoint");
    Model::from_config(&arch::seed([1, 1, 1, 1], 3, 1, 4, 1, true), 1)
        .unwrap()
        .save(ck.join("seed_se_s4.safetensors"))
        .unwrap();
    Model::from_config(&arch::seed([1, 2, 1, 1], 3, 1, 2, 2, false), 2)
        .unwrap()
        .save(ck.join("seed_groups2_s2.safetensors"))
        .unwrap();
    let official = arch::Res2NetConfig {
        flavour: arch::Flavour::Official,
        backbone: arch::Backbone::ResNet(arch::ResNetLayout {
            layers: [2, 1, 1, 1],
            planes: [2, 4, 8, 16],
            stem: arch::Stem::Deep {
                mid: 4,
                channels: 8,
            },
            avg_down: true,
        }),
        base_width: 64,
        scale: 3,
        cardinality: 2,
        se: true,
        num_classes: 3,
    };
    let m = Model::from_config(&official, 3).unwrap();
    m.save(ck.join("official_deep_se_s3.safetensors")).unwrap();
    // The same without the metadata config, so detection is exercised too.
    let dict = m.state_dict().unwrap();
    let tensors: Vec<(&str, &[usize], &[f32])> = dict
        .iter()
        .map(|(k, s, v)| (k.as_str(), s.as_slice(), v.as_slice()))
        .collect();
    res2net_wgpu::checkpoint::write_f32(
        ck.join("official_deep_se_s3_nometa.safetensors"),
        &tensors,
        None,
    )
    .unwrap();

    let input = tensor_io::InputBatch {
        n: 2,
        h: 5,
        w: 7,
        data: (0..2 * 3 * 5 * 7).map(|i| i as f32 / 100.0).collect(),
    };
    tensor_io::write_input(seeds.join("input_tensor/batch2_5x7.safetensors"), &input).unwrap();

    let rgb = image::RgbImage::from_fn(9, 7, |x, y| {
        image::Rgb([(x * 28) as u8, (y * 36) as u8, 128])
    });
    image::DynamicImage::ImageRgb8(rgb.clone())
        .save(seeds.join("image/rgb_9x7.jpg"))
        .unwrap();
    image::DynamicImage::ImageRgb8(rgb)
        .save(seeds.join("image/rgb_9x7.png"))
        .unwrap();
    let grey16 = image::ImageBuffer::<image::Luma<u16>, _>::from_fn(5, 3, |x, y| {
        image::Luma([(x * 9000 + y * 7000) as u16])
    });
    image::DynamicImage::ImageLuma16(grey16)
        .save(seeds.join("image/grey16_5x3.png"))
        .unwrap();
    let la = image::ImageBuffer::<image::LumaA<u8>, _>::from_fn(3, 4, |x, y| {
        image::LumaA([(x * 80) as u8, (y * 60) as u8])
    });
    image::DynamicImage::ImageLumaA8(la)
        .save(seeds.join("image/grey_alpha_3x4.png"))
        .unwrap();
}
