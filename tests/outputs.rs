//! Nothing lost: through the `res2net` command, an output that is one of the command's inputs (by the
//! same path, a `./` or `..` spelling, a symbolic link or a hard link) is refused with exit code 2 and
//! one `error:` line before any work; a missing or unwritable output directory is named; a full disk
//! leaves the previous output; and a run killed while writing leaves the previous output (or none),
//! never a partial file at the output's name.

mod common;
mod gpu_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{fixture, one_error, res2net_in, root, scratch, text, Scratch};
use res2net_wgpu::gpu::{PipelineCacheSetting, Session, SessionOptions, Tune};
use res2net_wgpu::{arch, tensor_io, Model};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Names of the entries of `dir`, sorted (temporary files included: they start with a dot).
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A directory with a copy of a fixture checkpoint (`w.safetensors`), its input (`in.safetensors`),
/// two sample images (`a.png`, `b.png`) and a subdirectory `sub`.
fn workspace(test: &str) -> Scratch {
    let dir = scratch(test);
    for (from, to) in [
        ("timm_res2net_s4.safetensors", "w.safetensors"),
        ("timm_res2net_s4.io.safetensors", "in.safetensors"),
    ] {
        std::fs::copy(fixture(from), dir.join(to)).unwrap();
    }
    let samples = root().join("weights/samples");
    std::fs::copy(samples.join("digit_1.png"), dir.join("a.png")).unwrap();
    std::fs::copy(samples.join("digit_2.png"), dir.join("b.png")).unwrap();
    std::fs::create_dir(dir.join("sub")).unwrap();
    dir
}

/// Every file of `dir` (not recursing) with its content, to prove a refusal changed nothing.
fn snapshot(dir: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    entries(dir)
        .into_iter()
        .map(|n| {
            let content = std::fs::read(dir.join(&n)).ok();
            (n, content)
        })
        .collect()
}

/// `infer` with these paths, run in `dir` so that relative spellings work.
fn infer_in(dir: &Path, weights: &str, input: &str, output: &str) -> Output {
    let args = ["--weights", weights, "--input", input, "--output", output];
    res2net_in(dir, &[&["infer", "--device", "cpu"], &args[..]].concat())
}

/// `infer` of the workspace's input with its weights, writing `output`.
fn infer_to(dir: &Path, output: &str) -> Output {
    infer_in(dir, "w.safetensors", "in.safetensors", output)
}

#[test]
fn infer_refuses_an_output_that_is_its_weights_or_its_input() {
    let dir = workspace("infer-same");
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("w.safetensors", dir.join("link.safetensors")).unwrap();
        std::fs::hard_link(dir.join("w.safetensors"), dir.join("hard.safetensors")).unwrap();
        std::os::unix::fs::symlink("in.safetensors", dir.join("in-link.safetensors")).unwrap();
    }
    let before = snapshot(&dir);
    let abs_w = dir.join("w.safetensors");
    let mut cases: Vec<(&str, &str, &str)> = vec![
        // (output, the input argument it is, what the message adds)
        ("w.safetensors", "--weights", ""),
        ("./w.safetensors", "--weights", ""),
        ("sub/../w.safetensors", "--weights", ""),
        (s(&abs_w), "--weights", ""),
        ("in.safetensors", "--input", ""),
        ("./sub/.././in.safetensors", "--input", ""),
    ];
    #[cfg(unix)]
    cases.extend([
        ("link.safetensors", "--weights", ""),
        ("hard.safetensors", "--weights", "a hard link to it"),
        ("in-link.safetensors", "--input", ""),
    ]);
    for (output, arg, extra) in cases {
        let out = infer_to(&dir, output);
        let line = one_error(
            &out,
            2,
            &[
                &format!("--output {output}: the same file as {arg} "),
                "refusing to write over an input",
                extra,
            ],
        );
        assert!(!line.contains("cannot write"), "{line}");
        assert_eq!(
            snapshot(&dir),
            before,
            "output {output} changed the directory"
        );
    }
    // The weights spelt through a link, the output plainly: still the same file.
    #[cfg(unix)]
    {
        let out = infer_in(&dir, "hard.safetensors", "in.safetensors", "w.safetensors");
        one_error(
            &out,
            2,
            &["--output w.safetensors: the same file as --weights hard.safetensors"],
        );
    }
    // Refused before any work: the weights here are not a checkpoint at all, yet the message is
    // about the output, not about the weights.
    std::fs::write(dir.join("junk.safetensors"), b"not a checkpoint").unwrap();
    let out = infer_in(
        &dir,
        "junk.safetensors",
        "in.safetensors",
        "./in.safetensors",
    );
    one_error(&out, 2, &["the same file as --input in.safetensors"]);
    // A different file is written, and a second run replaces it whole, leaving no temporary file.
    for _ in 0..2 {
        let out = infer_to(&dir, "sub/out.safetensors");
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    assert_eq!(entries(&dir.join("sub")), ["out.safetensors"]);
    let logits = res2net_wgpu::checkpoint::Checkpoint::open(dir.join("sub/out.safetensors"))
        .unwrap()
        .tensor_any_shape("logits")
        .unwrap()
        .1;
    assert_eq!(logits.len(), 2 * 10);
}

/// `classify` with the bundled model, run in `dir`.
fn classify_in(dir: &Path, args: &[&str]) -> Output {
    res2net_in(dir, &[&["classify"], args, &["--device", "cpu"]].concat())
}

#[test]
fn classify_cam_never_lands_on_an_input() {
    let dir = workspace("cam-same");
    std::fs::create_dir(dir.join("other")).unwrap();
    std::fs::copy(dir.join("a.png"), dir.join("other/a.png")).unwrap();
    std::fs::copy(dir.join("b.png"), dir.join("cam_b.png")).unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("a.png", dir.join("a-link.png")).unwrap();
        std::fs::hard_link(dir.join("a.png"), dir.join("a-hard.png")).unwrap();
    }
    let before = snapshot(&dir);
    // (arguments, the error they give)
    let refused: &[(&[&str], &str)] = &[
        // One image: the map is written to --cam itself.
        (
            &["a.png", "--cam", "a.png"],
            "--cam a.png: the same file as IMAGE a.png",
        ),
        (
            &["a.png", "--cam", "./sub/../a.png"],
            "--cam ./sub/../a.png: the same file as IMAGE a.png",
        ),
        (
            &["a.png", "--cam", "w.safetensors", "--weights", "w.safetensors"],
            "--cam w.safetensors: the same file as --weights w.safetensors",
        ),
        #[cfg(unix)]
        (
            &["a.png", "--cam", "a-link.png"],
            "--cam a-link.png: the same file as IMAGE a.png",
        ),
        #[cfg(unix)]
        (
            &["a.png", "--cam", "a-hard.png"],
            "--cam a-hard.png: the same file as IMAGE a.png (a hard link to it)",
        ),
        // Several images: `cam.png` + `a.png` -> `cam_a.png`; the map of b.png would be cam_b.png,
        // which is an input image of the same run.
        (
            &["a.png", "b.png", "cam_b.png", "--cam", "cam.png"],
            "--cam cam_b.png: the same file as IMAGE cam_b.png",
        ),
        // A directory of images with --cam inside it, after a run that put maps there: same thing.
        (
            &[".", "--cam", "./cam.png"],
            "--cam ./cam_b.png: the same file as IMAGE ./cam_b.png",
        ),
        // Two images with the same stem would get the same map.
        (
            &["a.png", "other/a.png", "--cam", "sub/cam.png"],
            "--cam sub/cam_a.png: the maps of IMAGE a.png and IMAGE other/a.png would both be written here",
        ),
    ];
    for &(args, needle) in refused {
        let out = classify_in(&dir, args);
        one_error(&out, 2, &[needle]);
        assert_eq!(snapshot(&dir), before, "{args:?} changed the directory");
    }
    // Distinct names are written, nothing else (an image named twice is one map).
    let out = classify_in(&dir, &["a.png", "b.png", "./a.png", "--cam", "sub/cam.png"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(entries(&dir.join("sub")), ["cam_a.png", "cam_b.png"]);
    assert_eq!(snapshot(&dir), before);
    for m in ["cam_a.png", "cam_b.png"] {
        image::open(dir.join("sub").join(m)).unwrap();
    }
}

/// `bench --iters 1 --size 32` with these arguments, run in `dir`.
fn bench_in(dir: &Path, args: &[&str]) -> Output {
    res2net_in(
        dir,
        &[&["bench", "--iters", "1", "--size", "32"], args].concat(),
    )
}

#[test]
fn bench_profile_svg_refuses_the_weights_file_before_touching_the_gpu() {
    let dir = workspace("bench-same");
    let before = snapshot(&dir);
    // The refusal comes first, so this test needs no GPU: without one, bench would fail with exit
    // code 1 instead.
    for svg in ["w.safetensors", "./w.safetensors", "sub/../w.safetensors"] {
        let out = bench_in(&dir, &["--weights", "w.safetensors", "--profile-svg", svg]);
        one_error(
            &out,
            2,
            &[&format!(
                "--profile-svg {svg}: the same file as --weights w.safetensors"
            )],
        );
        assert_eq!(snapshot(&dir), before);
    }
    // Where there is a GPU, a good path gets the whole chart, replacing an older one, and nothing else.
    if gpu_common::context().is_some() {
        std::fs::write(dir.join("sub/p.svg"), b"an older chart").unwrap();
        let svg = [
            "--weights",
            "w.safetensors",
            "--json",
            "--profile-svg",
            "sub/p.svg",
        ];
        let out = bench_in(&dir, &svg);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let svg = std::fs::read_to_string(dir.join("sub/p.svg")).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.ends_with("</svg>\n"),
            "{svg}"
        );
        assert_eq!(entries(&dir.join("sub")), ["p.svg"]);
    }
}

#[test]
fn a_missing_output_directory_is_named_before_any_work() {
    let dir = workspace("missing-dir");
    let before = snapshot(&dir);
    // (the run, the error it gives)
    let refused = [
        (
            infer_to(&dir, "nope/out.safetensors"),
            "--output nope/out.safetensors: the directory nope does not exist",
        ),
        (
            classify_in(&dir, &["a.png", "b.png", "--cam", "nope/deeper/cam.png"]),
            "--cam nope/deeper/cam_a.png: the directory nope/deeper does not exist",
        ),
        (
            bench_in(
                &dir,
                &["--arch", "res2net50_26w_4s", "--profile-svg", "nope/p.svg"],
            ),
            "--profile-svg nope/p.svg: the directory nope does not exist",
        ),
        // An output that names a directory.
        (
            infer_to(&dir, "sub"),
            "--output sub: expected a file, found a directory",
        ),
    ];
    for (out, needle) in &refused {
        one_error(out, 2, &[needle]);
    }
    assert_eq!(snapshot(&dir), before);
    assert!(entries(&dir.join("sub")).is_empty());
}

/// Runs `script` (with `args` as `$1`...) in a private mount namespace, so it may mount a tmpfs that
/// vanishes with it. `None`, with the reason printed, where this machine allows no such namespace
/// (not root and no unprivileged user namespaces, or no `unshare`).
#[cfg(target_os = "linux")]
fn in_private_mounts(script: &str, args: &[&str]) -> Option<Output> {
    let probe_dir = scratch("probe-mount");
    for flags in [
        &["--mount", "--propagation", "private"][..],
        &[
            "--user",
            "--map-root-user",
            "--mount",
            "--propagation",
            "private",
        ][..],
    ] {
        let probe = Command::new("unshare")
            .args(flags)
            .args(["sh", "-c", "mount -t tmpfs -o size=64k tmpfs \"$1\"", "sh"])
            .arg(&probe_dir)
            .output();
        if probe.is_ok_and(|o| o.status.success()) {
            std::fs::remove_dir_all(&probe_dir).ok();
            let out = Command::new("unshare")
                .args(flags)
                .args(["sh", "-c", script, "sh"])
                .args(args)
                .output()
                .unwrap();
            return Some(out);
        }
    }
    std::fs::remove_dir_all(&probe_dir).ok();
    eprintln!(
        "skipped: cannot mount a private tmpfs here (unshare --mount needs root or user namespaces)"
    );
    None
}

#[test]
fn an_unwritable_output_directory_is_named_before_any_work() {
    let dir = workspace("unwritable");
    let before = snapshot(&dir);
    // A path through a regular file (ENOTDIR): the honest way to get an unwritable directory that
    // works as root too, since permission bits do not bind root.
    let out = infer_to(&dir, "in.safetensors/out.safetensors");
    one_error(
        &out,
        2,
        &["--output in.safetensors/out.safetensors: in.safetensors is not a directory"],
    );
    let out = classify_in(&dir, &["a.png", "--cam", "w.safetensors/x/cam.png"]);
    one_error(
        &out,
        2,
        &["--cam w.safetensors/x/cam.png: w.safetensors is not a directory"],
    );
    assert_eq!(snapshot(&dir), before);

    // sysfs takes no new files, even from root.
    if Path::new("/sys/kernel").is_dir() {
        let out = infer_to(&dir, "/sys/out.safetensors");
        one_error(&out, 2, &["--output /sys/out.safetensors: "]);
        assert!(!Path::new("/sys/out.safetensors").exists());
    } else {
        eprintln!("skipped the /sys case: no sysfs mounted");
    }

    // Permission bits, where they bind (not root).
    #[cfg(unix)]
    if unsafe { libc::geteuid() } != 0 {
        use std::os::unix::fs::PermissionsExt;
        let locked = dir.join("locked");
        std::fs::create_dir(&locked).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
        let out = infer_to(&dir, "locked/out.safetensors");
        one_error(
            &out,
            2,
            &["--output locked/out.safetensors: permission denied: cannot create files in locked"],
        );
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    } else {
        eprintln!("skipped the permission-bits case: running as root");
    }

    // A read-only file system: a tmpfs mounted read-only in a private mount namespace.
    #[cfg(target_os = "linux")]
    {
        let ro = dir.join("ro");
        std::fs::create_dir(&ro).unwrap();
        let script = r#"mount -t tmpfs -o size=64k,ro tmpfs "$1" || exit 200
            exec "$2" infer --device cpu --weights "$3" --input "$4" --output "$1/out.safetensors""#;
        if let Some(out) = in_private_mounts(
            script,
            &[
                s(&ro),
                env!("CARGO_BIN_EXE_res2net"),
                s(&dir.join("w.safetensors")),
                s(&dir.join("in.safetensors")),
            ],
        ) {
            one_error(
                &out,
                2,
                &["/out.safetensors: ", "is on a read-only file system"],
            );
        }
    }
}

/// A 10 000-class model, so that one image's output (logits and probs, 80 KB) cannot fit in a
/// 64 KiB tmpfs.
fn many_class_model(dir: &Path, classes: usize) -> (PathBuf, PathBuf) {
    let weights = dir.join("many.safetensors");
    Model::from_config(&arch::seed([1, 1, 1, 1], classes, 1, 2, 1, false), 5)
        .unwrap()
        .save(&weights)
        .unwrap();
    (weights, dir.join("many_in.safetensors"))
}

fn write_input(path: &Path, n: usize, size: usize) {
    let data: Vec<f32> = (0..n * 3 * size * size)
        .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
        .collect();
    tensor_io::write_input(
        path,
        &tensor_io::InputBatch {
            n,
            h: size,
            w: size,
            data,
        },
    )
    .unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_keeps_the_previous_output_and_says_so() {
    let dir = scratch("full-disk");
    let (weights, input) = many_class_model(&dir, 10_000);
    write_input(&input, 1, 32);
    let previous: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("previous"), &previous).unwrap();
    let (mnt, after) = (dir.join("mnt"), dir.join("after"));
    std::fs::create_dir(&mnt).unwrap();
    std::fs::create_dir(&after).unwrap();
    // In a 64 KiB tmpfs holding the 8 KiB previous output, the 80 KB new one cannot be written.
    // What the tmpfs holds afterwards is copied out for the checks below.
    let script = r#"mount -t tmpfs -o size=64k tmpfs "$1" || exit 200
        cp "$2" "$1/out.safetensors" || exit 201
        "$3" infer --device cpu --weights "$4" --input "$5" --output "$1/out.safetensors"
        rc=$?
        cp -a "$1/." "$6/" || exit 202
        exit $rc"#;
    let Some(out) = in_private_mounts(
        script,
        &[
            s(&mnt),
            s(&dir.join("previous")),
            env!("CARGO_BIN_EXE_res2net"),
            s(&weights),
            s(&input),
            s(&after),
        ],
    ) else {
        return;
    };
    one_error(
        &out,
        1,
        &[
            &format!("{}/out.safetensors: cannot write: ", mnt.display()),
            "no space left on the device",
        ],
    );
    assert_eq!(
        entries(&after),
        ["out.safetensors"],
        "a temporary file was left"
    );
    assert_eq!(
        std::fs::read(after.join("out.safetensors")).unwrap(),
        previous
    );
}

/// Kills `infer` with SIGKILL while it writes a 64 MiB output (256 images x 32 768 classes x logits
/// and probs), as soon as its temporary file appears, and checks what is left at the output's name:
/// the previous output byte for byte, or nothing when there was none. The kill is real and unaided:
/// no test hook slows the writer down; the output is simply large enough that writing and syncing
/// it takes a while. A kill that lands after the rename (the temporary file already gone) proves
/// nothing about partial files, so that attempt is repeated.
#[cfg(unix)]
#[test]
fn a_run_killed_while_writing_leaves_the_previous_output_or_none() {
    use std::os::unix::process::ExitStatusExt;
    use std::time::{Duration, Instant};

    let dir = scratch("killed");
    let (weights, input) = many_class_model(&dir, 32_768);
    write_input(&input, 256, 16);
    let out_path = dir.join("out.safetensors");
    let previous = b"the previous output, which must survive".to_vec();
    // At most: logits and probs, [256, 32768] f32 each, after a header of under 256 bytes.
    const FULL_LEN: u64 = 2 * 256 * 32_768 * 4 + 8 + 256;
    let is_temp = |n: &str| n.starts_with(".out.safetensors.") && n.ends_with(".tmp");

    for with_previous in [true, false] {
        let mut killed_mid_write = false;
        for attempt in 0..5 {
            if with_previous {
                std::fs::write(&out_path, &previous).unwrap();
            } else {
                let _ = std::fs::remove_file(&out_path);
            }
            let mut child = Command::new(env!("CARGO_BIN_EXE_res2net"))
                .args(["infer", "--device", "cpu", "--weights", s(&weights)])
                .args(["--input", s(&input), "--output", s(&out_path)])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let start = Instant::now();
            let mut saw_temp = false;
            while child.try_wait().unwrap().is_none() {
                // A temporary file with bytes in it: the output is being written (an empty one may
                // be the up-front check that the directory takes new files).
                let writing = entries(&dir).iter().any(|n| {
                    is_temp(n) && std::fs::metadata(dir.join(n)).is_ok_and(|m| m.len() > 0)
                });
                if writing {
                    child.kill().unwrap();
                    saw_temp = true;
                    break;
                }
                assert!(start.elapsed() < Duration::from_secs(300), "infer hangs");
                std::thread::sleep(Duration::from_micros(200));
            }
            let status = child.wait().unwrap();
            let temps: Vec<String> = entries(&dir).into_iter().filter(|n| is_temp(n)).collect();
            if saw_temp && status.signal() == Some(libc::SIGKILL) && !temps.is_empty() {
                // Killed between creating the temporary file and renaming it.
                let temp_len = std::fs::metadata(dir.join(&temps[0])).unwrap().len();
                eprintln!(
                    "attempt {attempt}: killed with {temp_len} of at most {FULL_LEN} bytes written to {}",
                    temps[0]
                );
                assert!(temp_len > 0 && temp_len <= FULL_LEN, "{temp_len}");
                if with_previous {
                    assert_eq!(std::fs::read(&out_path).unwrap(), previous);
                } else {
                    assert!(!out_path.exists(), "a file appeared at the output's name");
                }
                // The stale temporary file is the one trace a kill may leave; it is named as such.
                for t in temps {
                    std::fs::remove_file(dir.join(t)).unwrap();
                }
                killed_mid_write = true;
                break;
            }
            // The run finished (or was killed after the rename): the output must be whole.
            let ck = res2net_wgpu::checkpoint::Checkpoint::open(&out_path).unwrap();
            assert_eq!(ck.tensor_any_shape("probs").unwrap().1.len(), 256 * 32_768);
        }
        assert!(
            killed_mid_write,
            "five runs all finished writing before the kill landed"
        );
    }
}

/// The pipeline cache goes through the same atomic writer: a save leaves the cache file and nothing
/// else, and where the cache cannot be written the session still builds and runs, with a note that
/// names the file and says why.
#[test]
fn an_unwritable_pipeline_cache_never_fails_a_session() {
    let Some(ctx) = gpu_common::context() else {
        return;
    };
    if !gpu_common::has_pipeline_cache(&ctx) {
        eprintln!("skipped: this device has no pipeline cache");
        return;
    }
    let graph = gpu_common::small_graph();
    let input = gpu_common::random(3 * 32 * 32, 3);
    // Kernels by rule: every build runs the same ones (bit-equal outputs) and the tuner, which
    // writes its own cache beside this one, stays out of the way.
    let options = |dir: PathBuf| SessionOptions {
        pipeline_cache: PipelineCacheSetting::Dir(dir),
        tune: Tune::Off,
        ..Default::default()
    };
    // Pipelines belong to the device: a new device per build compiles them, through the cache.
    let fresh = || res2net_wgpu::gpu::GpuContext::new().unwrap();
    let dir = scratch("pipeline-cache");
    let session = Session::with_options(&fresh(), &graph, 1, &options(dir.join("cache"))).unwrap();
    let report = session.build_stats().pipeline_cache.clone();
    assert!(report.saved_bytes.is_some(), "{report:?}");
    let names = entries(&dir.join("cache"));
    assert!(names.len() == 1 && names[0].ends_with(".bin"), "{names:?}");
    let expected = session.run(&input).unwrap();

    // A directory under a regular file, and sysfs (which takes no new files, even from root).
    std::fs::write(dir.join("file"), b"").unwrap();
    let mut places = vec![dir.join("file/cache")];
    if Path::new("/sys/kernel").is_dir() {
        places.push(PathBuf::from("/sys"));
    }
    for place in places {
        let session = Session::with_options(&fresh(), &graph, 1, &options(place.clone())).unwrap();
        let report = &session.build_stats().pipeline_cache;
        let note = report.note.clone().unwrap_or_default();
        assert!(
            report.saved_bytes.is_none()
                && note.starts_with("could not save the pipeline cache to ")
                && note.contains(place.to_str().unwrap())
                && !note.contains('\n'),
            "{report:?}"
        );
        eprintln!("{note}");
        assert_eq!(session.run(&input).unwrap(), expected);
        // The tuner's cache cannot be written there either: a note, never a failure.
        let tuned = SessionOptions {
            tune: Tune::Full,
            ..options(place.clone())
        };
        let session = Session::with_options(&fresh(), &graph, 1, &tuned).unwrap();
        let tuning = &session.build_stats().tuning;
        if tuning.measured > 0 {
            let note = tuning.note.clone().unwrap_or_default();
            assert!(
                note.starts_with("could not save the tuning cache"),
                "{tuning:?}"
            );
        }
        assert!(session
            .run(&input)
            .unwrap()
            .logits
            .iter()
            .all(|v| v.is_finite()));
    }
}
