//! Whole networks on the GPU: a full res2net50_26w_4s at 224x224 against the CPU reference, every
//! preset (both DLA models too) at a small odd input size, every PyTorch fixture against PyTorch's
//! own outputs, and the session's behaviour around the edges (bad input, timeouts, a lost device,
//! async, threads).

mod gpu_common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gpu_common::{assert_close, assert_every_op_close, context, one_at_a_time, random};
use res2net_wgpu::checkpoint::Checkpoint;
use res2net_wgpu::gpu::{ConvKernel, GpuContext, Precision, Session, SessionOptions};
use res2net_wgpu::{arch, cpu, tensor_io, Error, Model};

/// A network chains ~50 convs; each executor's f32 rounding (~1e-7 relative per add) compounds through
/// them, and random-weight models amplify it more than trained ones. Measured differences on a full
/// res2net50 are ~1e-6..1e-5 (see the test output); 1e-4 abs + 1e-4 rel still flags any real bug,
/// which changes logits at the 1e-2 level.
const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-4;

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(".io.safetensors"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn res2net50_26w_4s_at_224_matches_cpu() {
    let Some(ctx) = context() else { return };
    let _gpu = one_at_a_time();
    let model = Model::from_config(&arch::preset("res2net50_26w_4s").unwrap(), 11).unwrap();
    let graph = model.graph(224, 224).unwrap();
    let input = random(3 * 224 * 224, 3);

    let t = Instant::now();
    let session = Session::new(&ctx, &graph, 1).unwrap();
    let build = t.elapsed();
    let t = Instant::now();
    let first = session.run(&input).unwrap();
    let first_run = t.elapsed();
    let t = Instant::now();
    let gpu = session.run(&input).unwrap();
    let gpu_time = t.elapsed();
    let t = Instant::now();
    let cpu = cpu::forward(&graph, &input, 1).unwrap();
    let cpu_time = t.elapsed();

    let total = session.activation_bytes_total();
    let peak = session.activation_bytes_peak();
    eprintln!(
        "res2net50_26w_4s 224x224 on {}: build {:.2} s, first run {:.3} s, run {:.3} s ({:.2} GFLOP/s); \
         CPU reference {:.3} s; {} dispatches, {} pipelines; activations peak {:.2} MiB \
         (lower bound {:.2} MiB) vs {:.2} MiB without reuse",
        ctx.describe(),
        build.as_secs_f64(),
        first_run.as_secs_f64(),
        gpu_time.as_secs_f64(),
        graph.flops() as f64 / gpu_time.as_secs_f64() / 1e9,
        cpu_time.as_secs_f64(),
        session.dispatch_count(),
        session.pipeline_count(),
        peak as f64 / 1048576.0,
        session.activation_bytes_lower_bound() as f64 / 1048576.0,
        total as f64 / 1048576.0,
    );
    assert_eq!(
        first, gpu,
        "two runs of the same session give identical results"
    );
    assert_close("res2net50 logits", &gpu.logits, &cpu.logits, ATOL, RTOL);
    assert_close("res2net50 probs", &gpu.probs, &cpu.probs, ATOL, RTOL);
    // Fusion keeps the forward pass near one dispatch per convolution (BatchNorm, ReLU, residual
    // adds, hierarchical adds and chunk/concat cost no dispatch of their own).
    let per_conv = session.dispatch_count() as f64 / graph.conv_count() as f64;
    assert!(per_conv <= 1.2, "{per_conv:.2} dispatches per convolution");
    assert!(
        session.pipeline_count() <= 24,
        "{} pipelines",
        session.pipeline_count()
    );
    assert!(
        peak * 4 < total,
        "arena {peak} bytes is not far below the {total} bytes of all activations"
    );
}

#[test]
fn every_preset_matches_cpu_at_a_small_odd_size() {
    let Some(ctx) = context() else { return };
    let _gpu = one_at_a_time();
    for (i, p) in arch::presets().into_iter().enumerate() {
        let model = Model::from_config(&p.config, 100 + i as u64).unwrap();
        // A DLA's sides must halve evenly down to level 5: 63 -> 32 -> .. -> 1 does, 35 does not.
        let (h, w) = match p.config.dla() {
            Some(_) => (63, 32),
            None => (35, 43),
        };
        let graph = model.graph(h, w).unwrap();
        let batch = 2;
        let input = random(batch * 3 * h * w, i as u64);
        let session =
            Session::new(&ctx, &graph, batch).unwrap_or_else(|e| panic!("{}: {e}", p.name));
        let gpu = session
            .run(&input)
            .unwrap_or_else(|e| panic!("{}: {e}", p.name));
        let cpu = cpu::forward(&graph, &input, batch).unwrap();
        assert_close(
            &format!("{} logits", p.name),
            &gpu.logits,
            &cpu.logits,
            ATOL,
            RTOL,
        );
        assert_close(
            &format!("{} probs", p.name),
            &gpu.probs,
            &cpu.probs,
            ATOL,
            RTOL,
        );
    }
}

/// Every preset with the texture family forced (on every conv: it fits them all), at a small odd
/// size in a batch of 2: the 7x7 stem, the chains with their adds on read, strided and grouped
/// convs and residuals, on this adapter's subgroup variant (or the one without subgroups).
#[test]
fn every_preset_matches_cpu_on_the_texture_family() {
    let Some(ctx) = context() else { return };
    let _gpu = one_at_a_time();
    let options = SessionOptions {
        conv_kernel: ConvKernel::Gp,
        ..Default::default()
    };
    for (i, p) in arch::presets().into_iter().enumerate() {
        let model = Model::from_config(&p.config, 200 + i as u64).unwrap();
        let (h, w) = match p.config.dla() {
            Some(_) => (63, 32),
            None => (35, 43),
        };
        let graph = model.graph(h, w).unwrap();
        let batch = 2;
        let input = random(batch * 3 * h * w, i as u64);
        let session = Session::with_options(&ctx, &graph, batch, &options)
            .unwrap_or_else(|e| panic!("{}: {e}", p.name));
        let profile = session
            .profile(&input)
            .unwrap_or_else(|e| panic!("{}: {e}", p.name));
        for op in profile.ops.iter().filter(|o| o.kernel.starts_with("conv")) {
            assert!(
                op.kernel.contains("conv_gp.wgsl"),
                "{}: {}",
                p.name,
                op.kernel
            );
        }
        let gpu = session
            .run(&input)
            .unwrap_or_else(|e| panic!("{}: {e}", p.name));
        let cpu = cpu::forward(&graph, &input, batch).unwrap();
        assert_close(
            &format!("{} logits", p.name),
            &gpu.logits,
            &cpu.logits,
            ATOL,
            RTOL,
        );
        assert_close(
            &format!("{} probs", p.name),
            &gpu.probs,
            &cpu.probs,
            ATOL,
            RTOL,
        );
    }
}

#[test]
fn every_fixture_matches_pytorch() {
    let Some(ctx) = context() else { return };
    let _gpu = one_at_a_time();
    let paths = fixtures();
    assert!(!paths.is_empty(), "no fixtures in tests/fixtures");
    for io_path in paths {
        let name = io_path
            .file_name()
            .map(|n| n.to_string_lossy().replace(".io.safetensors", ""))
            .unwrap_or_default();
        let model = Model::load(io_path.with_file_name(format!("{name}.safetensors")))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let input = tensor_io::read_input(&io_path).unwrap();
        let graph = model.graph(input.h, input.w).unwrap();
        let session = Session::new(&ctx, &graph, input.n).unwrap_or_else(|e| panic!("{name}: {e}"));
        let out = session
            .run(&input.data)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let io = Checkpoint::open(&io_path).unwrap();
        let (_, logits) = io.tensor_any_shape("logits").unwrap();
        let (_, probs) = io.tensor_any_shape("probs").unwrap();
        assert_close(
            &format!("{name} logits vs PyTorch"),
            &out.logits,
            &logits,
            ATOL,
            RTOL,
        );
        assert_close(
            &format!("{name} probs vs PyTorch"),
            &out.probs,
            &probs,
            ATOL,
            RTOL,
        );

        // Every intermediate tensor against the CPU reference, for diagnosis.
        assert_every_op_close(&name, &graph, &session, &input.data, input.n, ATOL, RTOL);
    }
}

/// f16 weights (`Precision::F16`) on every PyTorch fixture: the same top-1 class as the f32 session
/// for every image, and logits within 1e-2 of PyTorch's relative to their largest magnitude
/// (`max |f16 - torch| / max |torch|`). Skipped where the adapter has no SHADER_F16, after checking
/// that asking for f16 there is a clear error.
#[test]
fn every_fixture_with_f16_weights_keeps_top1_and_logits_within_1e_2() {
    let Some(ctx) = context() else { return };
    let _gpu = one_at_a_time();
    let (_, graph) = small();
    let f16 = SessionOptions {
        precision: Precision::F16,
        ..SessionOptions::default()
    };
    if !ctx.device().features().contains(wgpu::Features::SHADER_F16) {
        let err = Session::with_options(&ctx, &graph, 1, &f16).unwrap_err();
        assert!(err.to_string().contains("SHADER_F16"), "{err}");
        eprintln!("f16 sessions are refused on this adapter, as they must be: {err}");
        return;
    }
    let argmax = |row: &[f32]| {
        row.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i)
    };
    for io_path in fixtures() {
        let name = io_path
            .file_name()
            .map(|n| n.to_string_lossy().replace(".io.safetensors", ""))
            .unwrap_or_default();
        let model = Model::load(io_path.with_file_name(format!("{name}.safetensors")))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let input = tensor_io::read_input(&io_path).unwrap();
        let graph = model.graph(input.h, input.w).unwrap();
        let half = Session::with_options(&ctx, &graph, input.n, &f16)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            half.profile(&input.data)
                .unwrap()
                .ops
                .iter()
                .any(|o| o.kernel.contains("+F16_WEIGHTS")),
            "{name}: no f16-weight kernel ran"
        );
        let out16 = half.run(&input.data).unwrap();
        let out32 = Session::new(&ctx, &graph, input.n)
            .unwrap()
            .run(&input.data)
            .unwrap();
        let io = Checkpoint::open(&io_path).unwrap();
        let (_, torch) = io.tensor_any_shape("logits").unwrap();
        let scale = torch.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let err = out16
            .logits
            .iter()
            .zip(&torch)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        let rel = err / scale.max(f32::MIN_POSITIVE);
        eprintln!("{name}: f16 logits max |f16 - torch| / max |torch| = {rel:.3e}");
        assert!(rel <= 1e-2, "{name}: f16 relative logit error {rel:e}");
        let c = out16.classes;
        for n in 0..out16.batch {
            let row = n * c..(n + 1) * c;
            assert_eq!(
                argmax(&out16.logits[row.clone()]),
                argmax(&out32.logits[row]),
                "{name} image {n}: f16 top-1 differs from f32"
            );
        }
    }
}

fn small() -> (Model, res2net_wgpu::graph::Graph) {
    let model = Model::from_config(&arch::seed([1, 1, 1, 1], 10, 2, 4, 1, true), 7).unwrap();
    let graph = model.graph(32, 32).unwrap();
    (model, graph)
}

#[test]
fn wrong_inputs_are_input_errors() {
    let Some(ctx) = context() else { return };
    let _gpu = one_at_a_time();
    let (_, graph) = small();
    let session = Session::new(&ctx, &graph, 2).unwrap();
    let err = session.run(&[0.0; 10]).unwrap_err();
    assert!(matches!(err, Error::Input { .. }), "{err}");
    let mut input = vec![0.5; 2 * 3 * 32 * 32];
    input[5] = f32::NAN;
    let err = session.run(&input).unwrap_err();
    assert!(matches!(err, Error::Input { .. }), "{err}");
    assert!(matches!(
        Session::new(&ctx, &graph, 0),
        Err(Error::Input { .. })
    ));
    // The session still works afterwards.
    input[5] = 0.5;
    session.run(&input).unwrap();
}

#[test]
fn a_run_that_cannot_finish_in_time_is_an_error_not_a_hang() {
    let Some(ctx) = context() else { return };
    let _gpu = one_at_a_time();
    let model = Model::from_config(&arch::preset("res2net50_26w_4s").unwrap(), 1).unwrap();
    let graph = model.graph(160, 160).unwrap();
    let input = random(3 * 160 * 160, 1);
    let options = SessionOptions {
        timeout: Duration::ZERO,
        ..Default::default()
    };
    let session = Session::with_options(&ctx, &graph, 1, &options).unwrap();
    match session.run(&input) {
        Err(err) => {
            eprintln!("zero timeout: {err}");
            assert!(matches!(err, Error::Gpu(_)), "{err}");
            assert!(err.to_string().contains("did not finish"), "{err}");
        }
        // wgpu's GL backend executes the commands inside `submit`, so the work is done before the wait.
        Ok(_) => assert_eq!(
            ctx.adapter_info().backend,
            wgpu::Backend::Gl,
            "a zero timeout did not trigger"
        ),
    }
    // A new run with time to spare succeeds on the same device and session.
    let session = session.with_timeout(Duration::from_secs(300));
    let out = session.run(&input).unwrap();
    assert!((out.probs.iter().sum::<f32>() - 1.0).abs() < 1e-4);
}

#[test]
fn async_run_and_threads_agree_with_the_blocking_run() {
    let Some(ctx) = context() else { return };
    let _gpu = one_at_a_time();
    let (_, graph) = small();
    let session = Session::new(&ctx, &graph, 3).unwrap();
    let inputs: Vec<Vec<f32>> = (0..4).map(|i| random(3 * 3 * 32 * 32, 50 + i)).collect();
    let expected: Vec<_> = inputs.iter().map(|x| session.run(x).unwrap()).collect();
    let out = pollster::block_on(session.run_async(&inputs[0])).unwrap();
    assert_eq!(out, expected[0]);
    // Runs from several threads at once share the arena but never mix their inputs.
    std::thread::scope(|s| {
        let handles: Vec<_> = inputs
            .iter()
            .map(|x| s.spawn(|| session.run(x).unwrap()))
            .collect();
        for (h, e) in handles.into_iter().zip(&expected) {
            assert_eq!(&h.join().unwrap(), e);
        }
    });
}

#[test]
fn a_lost_device_is_an_error_and_a_new_session_works() {
    // Its own device: destroying the shared one would break the other tests.
    if context().is_none() {
        return;
    }
    let _gpu = one_at_a_time();
    let ctx = GpuContext::new().unwrap();
    let (_, graph) = small();
    let session = Session::new(&ctx, &graph, 1).unwrap();
    let input = random(3 * 32 * 32, 9);
    let before = session.run(&input).unwrap();
    ctx.device().destroy();
    let err = session.run(&input).unwrap_err();
    eprintln!("after destroy: {err}");
    assert!(matches!(err, Error::Gpu(_)), "{err}");
    assert!(Session::new(&ctx, &graph, 1).is_err());

    let fresh = GpuContext::new().unwrap();
    let session = Session::new(&fresh, &graph, 1).unwrap();
    assert_eq!(session.run(&input).unwrap(), before);
}

#[test]
fn sessions_work_on_the_callers_own_device() {
    let Some(ctx) = context() else { return };
    let _gpu = one_at_a_time();
    let wrapped = GpuContext::from_device(ctx.device().clone(), ctx.queue().clone());
    let (_, graph) = small();
    let input = random(3 * 32 * 32, 4);
    let a = Session::new(&wrapped, &graph, 1)
        .unwrap()
        .run(&input)
        .unwrap();
    let b = Session::new(&ctx, &graph, 1).unwrap().run(&input).unwrap();
    assert_eq!(a, b);
}
