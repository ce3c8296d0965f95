//! The day-one commands as a person runs them: demo, classify (files, directories, JSON, broken images,
//! class activation maps), infer on the GPU, verify and bench.

mod common;
mod gpu_common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{fixture, res2net, root, scratch, text};
use gpu_common::context;

/// The device flag for commands that should use the GPU when the test machine has one.
fn device() -> &'static str {
    if context().is_some() {
        "gpu"
    } else {
        "cpu"
    }
}

/// `res2net classify IMAGES ARGS`.
fn classify(images: &[PathBuf], args: &[&str]) -> Output {
    let images: Vec<&str> = images.iter().map(|p| p.to_str().unwrap()).collect();
    res2net(&[&["classify"], &images[..], args].concat())
}

/// `res2net verify --weights WEIGHTS ARGS`.
fn verify(weights: &Path, args: &[&str]) -> Output {
    let weights = weights.to_str().unwrap();
    res2net(&[&["verify", "--weights", weights], args].concat())
}

/// `res2net bench --arch res2net50_26w_4s ARGS`: random weights.
fn bench_res2net50(args: &[&str]) -> Output {
    res2net(&[&["bench", "--arch", "res2net50_26w_4s"], args].concat())
}

/// The demo's claims against the held-out file: its accuracy is the one PyTorch's stored logits give,
/// every top class is PyTorch's, and the logits pass the comparison it prints.
#[test]
fn demo_reports_pytorchs_accuracy() {
    let out = res2net(&["demo", "--device", device()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let heldout = res2net_wgpu::bundled::heldout().unwrap();
    let n = heldout.labels.len();
    let torch_correct = heldout
        .torch_pred()
        .iter()
        .zip(&heldout.labels)
        .filter(|(p, l)| p == l)
        .count();
    let accuracy = format!("accuracy: {torch_correct}/{n} = ");
    assert!(stdout.contains(&accuracy), "{accuracy} in {stdout}");
    assert!(
        stdout.contains(&format!("same top class on {n}/{n}")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("logits:") && l.ends_with("PASS")),
        "{stdout}"
    );
    assert!(stdout.contains("latency:"), "{stdout}");
}

#[test]
fn classify_a_directory_as_json_and_as_text() {
    let samples = root().join("weights/samples");
    let digit_4 = samples.join("digit_4.png");
    let out = classify(&[samples], &["--json", "--top", "2", "--device", device()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = json.as_array().unwrap();
    assert_eq!(items.len(), 10);
    for (k, item) in items.iter().enumerate() {
        assert!(item["file"]
            .as_str()
            .unwrap()
            .ends_with(&format!("digit_{k}.png")));
        let top = item["top"].as_array().unwrap();
        assert_eq!(top.len(), 2);
        assert_eq!(top[0]["label"], k.to_string());
        assert!(top[0]["prob"].as_f64().unwrap() > top[1]["prob"].as_f64().unwrap());
    }
    let out = classify(&[digit_4], &["--top", "3", "--device", "cpu"]);
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    assert!(
        stdout.lines().nth(1).unwrap().trim().ends_with("  4"),
        "{stdout}"
    );
}

#[test]
fn broken_images_are_reported_and_the_rest_classified() {
    let dir = scratch("broken");
    std::fs::write(dir.join("empty.png"), b"").unwrap();
    std::fs::write(dir.join("text.jpg"), b"not an image").unwrap();
    let png = std::fs::read(root().join("weights/samples/digit_5.png")).unwrap();
    std::fs::write(dir.join("cut.png"), &png[..png.len() / 2]).unwrap();
    std::fs::write(
        dir.join("picture.gif"),
        b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
    )
    .unwrap();
    let images = [
        dir.join("empty.png"),
        root().join("weights/samples/digit_5.png"),
        dir.join("text.jpg"),
        dir.join("cut.png"),
        dir.join("picture.gif"),
        dir.join("missing.png"),
    ];
    let out = classify(&images, &["--device", "cpu"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 5, "{stderr}");
    for (name, needle) in [
        ("empty.png", "an empty file"),
        ("text.jpg", "no known image format"),
        ("cut.png", "broken Png"),
        ("picture.gif", "Gif"),
        ("missing.png", "expected a readable file"),
    ] {
        assert!(
            errors
                .iter()
                .any(|l| l.contains(name) && l.contains(needle)),
            "{name}: {stderr}"
        );
    }
    // The good image is still classified.
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("digit_5.png") && stdout.lines().nth(1).unwrap().trim().ends_with("  5"),
        "{stdout}"
    );
}

#[test]
fn cam_writes_one_png_per_image() {
    let dir = scratch("cam");
    let weights = dir.join("imagenet_like.safetensors");
    // A random ImageNet-shaped (1000-class, 224x224 eval transform) seed model with a 7x7 feature map.
    res2net_wgpu::Model::from_config(
        &res2net_wgpu::arch::seed([1, 1, 1, 1], 1000, 2, 4, 1, true),
        4,
    )
    .unwrap()
    .save(&weights)
    .unwrap();
    let samples = root().join("weights/samples");
    let cam = dir.join("cam.png");
    let images = [samples.join("digit_1.png"), samples.join("digit_2.png")];
    let (weights, cam) = (weights.to_str().unwrap(), cam.to_str().unwrap());
    let out = classify(
        &images,
        &["--weights", weights, "--cam", cam, "--device", device()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    for k in [1, 2] {
        let img = image::open(dir.join(format!("cam_digit_{k}.png"))).unwrap();
        assert_eq!((img.width(), img.height()), (224, 224));
    }
    // ImageNet class names ship with the crate.
    let stdout = text(&out.stdout);
    assert!(stdout.lines().count() >= 12, "{stdout}");
}

#[test]
fn infer_on_the_gpu_matches_pytorch_and_verify_passes() {
    let Some(_) = context() else { return };
    let dir = scratch("infer");
    let out_path = dir.join("out.safetensors");
    let weights = fixture("timm_res2net_s4.safetensors");
    let io = fixture("timm_res2net_s4.io.safetensors");
    let out = res2net(&[
        "infer",
        "--device",
        "gpu",
        "--weights",
        weights.to_str().unwrap(),
        "--input",
        io.to_str().unwrap(),
        "--output",
        out_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ours = res2net_wgpu::checkpoint::Checkpoint::open(&out_path).unwrap();
    let torch = res2net_wgpu::checkpoint::Checkpoint::open(&io).unwrap();
    let (_, a) = ours.tensor_any_shape("logits").unwrap();
    let (_, b) = torch.tensor_any_shape("logits").unwrap();
    gpu_common::assert_close("infer --device gpu logits", &a, &b, 1e-4, 1e-4);

    let out = verify(&weights, &["--size", "45", "--batch", "2"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.lines().last().unwrap().starts_with("PASS"),
        "{stdout}"
    );
    assert!(
        stdout.contains("layer1.0.convs") && stdout.contains("softmax"),
        "{stdout}"
    );
}

#[test]
fn bench_json_has_every_key() {
    let Some(ctx) = context() else { return };
    let out = bench_res2net50(&["--size", "32", "--iters", "2", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "latency_ms_median",
        "latency_ms_p90",
        "images_per_s",
        "gflops_effective",
        "adapter_peak_gflops",
        "peak_fraction",
        "record_ms",
        "input_ms",
        "host_wall_ms",
        "host_clock",
        "dispatches",
        "pipelines",
        "activation_bytes_peak",
        "load_ms",
        "adapter",
    ] {
        assert!(!json[key].is_null(), "{key} missing: {json}");
    }
    let peak = json["adapter_peak_gflops"].as_f64().unwrap();
    let eff = json["gflops_effective"].as_f64().unwrap();
    assert!(peak > 0.0 && eff > 0.0);
    // The model cannot outrun the adapter's own FMA peak: a broken peak or timing measurement shows.
    let fraction = json["peak_fraction"].as_f64().unwrap();
    assert!(fraction > 0.0 && fraction < 1.0, "{fraction}");
    // Throughput and latency describe the same runs.
    let ips = json["images_per_s"].as_f64().unwrap();
    let median = json["latency_ms_median"].as_f64().unwrap();
    assert!(
        (ips * median / 1e3 - 1.0).abs() < 1e-6,
        "{ips} images/s at {median} ms"
    );
    assert!(json["dispatches"].as_u64().unwrap() >= json["pipelines"].as_u64().unwrap());
    let clock = json["host_clock"].as_str().unwrap();
    assert!(clock == "thread CPU" || clock == "wall", "{clock}");
    assert!(json["record_ms"].as_f64().unwrap() > 0.0);
    // On a CPU adapter the driver's threads are the GPU: the share counted in process CPU time.
    let cpu = &json["cpu_time"];
    if ctx.adapter_info().device_type == wgpu::DeviceType::Cpu && cfg!(unix) {
        assert!(cpu["ms_median"].as_f64().unwrap() > 0.0, "{cpu}");
        assert!(
            cpu["peak_gflops_per_cpu_s"].as_f64().unwrap() > 0.0,
            "{cpu}"
        );
        let fraction = cpu["peak_fraction"].as_f64().unwrap();
        assert!(fraction > 0.0 && fraction < 1.0, "{fraction}");
    } else {
        assert!(cpu.is_null(), "{cpu}");
    }
}

/// On llvmpipe the command runs several driver threads per core unless `LP_NUM_THREADS` says
/// otherwise, and `bench` names the count it ran with.
#[test]
fn llvmpipe_threads_default_to_several_per_core_and_yield_to_the_environment() {
    use res2net_wgpu::gpu::llvmpipe::{default_threads, threads_note, THREADS_VAR};
    let Some(ctx) = context() else { return };
    if threads_note(&ctx.adapter_info().name).is_none() {
        return;
    }
    let adapter = |threads: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_res2net"));
        cmd.args([
            "bench",
            "--arch",
            "res2net50_26w_4s",
            "--size",
            "32",
            "--iters",
            "1",
            "--json",
        ]);
        match threads {
            Some(t) => cmd.env(THREADS_VAR, t),
            None => cmd.env_remove(THREADS_VAR),
        };
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        json["adapter"].as_str().unwrap().to_string()
    };
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let own = adapter(None);
    let expected = format!("{} threads ({THREADS_VAR})", default_threads(cores));
    assert!(own.contains(&expected), "{expected} in {own}");
    let told = adapter(Some("3"));
    assert!(
        told.contains(&format!("3 threads ({THREADS_VAR})")),
        "{told}"
    );
}

/// `--precision f16` on verify and bench: passes the wider f16 tolerance and says so, or, on an
/// adapter without SHADER_F16, fails with exit code 1 and one line naming the feature.
#[test]
fn precision_f16_verifies_and_benches_or_names_the_missing_feature() {
    let Some(ctx) = context() else { return };
    let has_f16 = ctx.device().features().contains(wgpu::Features::SHADER_F16);
    let weights = fixture("timm_res2net_s4.safetensors");
    let verify = verify(&weights, &["--size", "45", "--precision", "f16"]);
    let bench = bench_res2net50(&[
        "--size",
        "32",
        "--iters",
        "1",
        "--json",
        "--precision",
        "f16",
    ]);
    if !has_f16 {
        for out in [verify, bench] {
            assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
            assert!(
                text(&out.stderr).contains("SHADER_F16"),
                "{}",
                text(&out.stderr)
            );
        }
        return;
    }
    let stdout = text(&verify.stdout);
    assert!(verify.status.success(), "{stdout}{}", text(&verify.stderr));
    assert!(stdout.contains("(weights f16)"), "{stdout}");
    assert!(
        stdout.lines().last().unwrap().starts_with("PASS") && stdout.contains("2e-2"),
        "{stdout}"
    );
    assert!(bench.status.success(), "{}", text(&bench.stderr));
    let json: serde_json::Value = serde_json::from_slice(&bench.stdout).unwrap();
    assert_eq!(json["precision"], "f16");
}

/// `--tune`, `--conv-kernel` and `--conv-tile` reach the sessions: `full` times every conv shape
/// and writes the cache, `auto` then reads every choice from it, `off` times nothing, a forced
/// family runs every conv (at a forced tile where it offers it), and an unknown family, a tile
/// without a family and a malformed tile are refused.
#[test]
fn tune_and_conv_kernel_flags_choose_the_kernels() {
    let Some(_device) = context() else { return };
    let dir = scratch("tune-flags");
    let weights = fixture("timm_res2net_s4.safetensors");
    let bench = |extra: &[&str]| {
        let mut args = vec![
            "bench",
            "--weights",
            weights.to_str().unwrap(),
            "--size",
            "32",
            "--iters",
            "1",
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_res2net"))
            .args(&args)
            .env("RES2NET_CACHE_DIR", &dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let full = bench(&["--tune", "full"]);
    assert_eq!(full["tune"], "full");
    let measured = full["tuning"]["measured"].as_u64().unwrap();
    assert!(measured > 0, "{}", full["tuning"]);
    assert!(full["tuning"]["ms"].as_f64().unwrap() > 0.0);
    let auto = bench(&["--tune", "auto"]);
    assert_eq!(auto["tuning"]["measured"], 0, "{}", auto["tuning"]);
    assert_eq!(auto["tuning"]["cached"].as_u64().unwrap(), measured);
    assert_eq!(auto["kernels"], full["kernels"], "the cached choices");

    let forced = bench(&["--tune", "off", "--conv-kernel", "direct"]);
    assert_eq!(forced["tuning"]["measured"], 0);
    let kernels = forced["kernels"].as_array().unwrap();
    let convs: Vec<&str> = kernels
        .iter()
        .filter_map(|k| k["kernel"].as_str())
        .filter(|k| k.starts_with("conv"))
        .collect();
    assert!(!convs.is_empty());
    assert!(
        convs.iter().all(|k| k.starts_with("conv.wgsl")),
        "{kernels:?}"
    );

    let bad = bench_res2net50(&["--conv-kernel", "fast"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = text(&bad.stderr);
    assert!(err.contains("fast") && err.contains("gemm32x32"), "{err}");

    // A forced family's tile runs where the family offers it; a tile needs a forced family and
    // the form AxB.
    let tiled = bench(&[
        "--tune",
        "off",
        "--conv-kernel",
        "px",
        "--conv-tile",
        "16x1",
    ]);
    let kernels = tiled["kernels"].as_array().unwrap();
    let px_16x1 = |k: &&serde_json::Value| {
        k["kernel"]
            .as_str()
            .is_some_and(|k| k.starts_with("conv_px.wgsl") && k.contains("M=16,P=1,"))
    };
    assert!(kernels.iter().any(|k| px_16x1(&k)), "{kernels:?}");
    let lone = bench_res2net50(&["--conv-tile", "16x1", "--iters", "1"]);
    assert_eq!(lone.status.code(), Some(2), "bad arguments");
    let err = text(&lone.stderr);
    assert!(err.contains("forced conv kernel"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let malformed = bench_res2net50(&["--conv-kernel", "px", "--conv-tile", "16"]);
    assert_eq!(malformed.status.code(), Some(2));
    assert!(text(&malformed.stderr).contains("expected a tile AxB"));
}
