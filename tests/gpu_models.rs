//! Whole networks on the GPU: a full res2net50_26w_4s at 224x224 against the CPU reference, every
//! preset (both DLA models too) at a small odd input size, every PyTorch fixture against PyTorch's
//! own outputs, and the session's behaviour around the edges (bad input, timeouts, a lost device,
//! async, threads).

mod common;
mod gpu_common;

use std::time::{Duration, Instant};

use gpu_common::{
    assert_close, assert_every_op_close, assert_threads_agree, context, gpu, one_at_a_time, random,
    small_graph, ATOL, RTOL,
};
use res2net_wgpu::gpu::{ConvKernel, GpuContext, Precision, Session, SessionOptions, Tune};
use res2net_wgpu::graph::Graph;
use res2net_wgpu::{arch, cpu, Error, Model};

/// A res2net50_26w_4s with random weights (from `model_seed`) at `size`x`size`, and one random image
/// (from `input_seed`).
fn res2net50(size: usize, model_seed: u64, input_seed: u64) -> (Graph, Vec<f32>) {
    let model = Model::from_config(&arch::preset("res2net50_26w_4s").unwrap(), model_seed).unwrap();
    let graph = model.graph(size, size).unwrap();
    (graph, random(3 * size * size, input_seed))
}

#[test]
fn res2net50_26w_4s_at_224_matches_cpu() {
    let Some((ctx, _gpu)) = gpu() else { return };
    let (graph, input) = res2net50(224, 11, 3);

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
    // One pipeline per kernel variant and fusion in use: the texture families' variants for the
    // 1x1 convs (two tiles), the 3x3 convs (whole, flat and ragged rows), the strided 3x3 convs and
    // the stem, the pools (on fixed taps at stride 2, a loop over columns at stride 1, one value per
    // invocation on 14x14 and 7x7 maps) and the classifier.
    assert!(
        session.pipeline_count() <= 30,
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
    presets_match_cpu(&SessionOptions::default(), 100, |_, _, _| {});
}

/// Every preset with the texture family forced (on every conv: it fits them all), at a small odd
/// size in a batch of 2: the 7x7 stem, the chains with their adds on read, strided and grouped
/// convs and residuals, on this adapter's subgroup variant (or the one without subgroups).
#[test]
fn every_preset_matches_cpu_on_the_texture_family() {
    let options = SessionOptions {
        conv_kernel: ConvKernel::Gp,
        ..Default::default()
    };
    presets_match_cpu(&options, 200, |name, session, input| {
        let profile = session
            .profile(input)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for op in profile.ops.iter().filter(|o| o.kernel.starts_with("conv")) {
            assert!(op.kernel.contains("conv_gp.wgsl"), "{name}: {}", op.kernel);
        }
    });
}

/// Every preset (random weights from `seed` on) at a small odd size in a batch of 2, on sessions
/// built with `options`, against the CPU reference; `check` sees each session and input first.
fn presets_match_cpu(options: &SessionOptions, seed: u64, check: impl Fn(&str, &Session, &[f32])) {
    let Some((ctx, _gpu)) = gpu() else { return };
    for (i, p) in arch::presets().into_iter().enumerate() {
        let model = Model::from_config(&p.config, seed + i as u64).unwrap();
        // A DLA's sides must halve evenly down to level 5: 63 -> 32 -> .. -> 1 does, 35 does not.
        let (h, w) = match p.config.dla() {
            Some(_) => (63, 32),
            None => (35, 43),
        };
        let graph = model.graph(h, w).unwrap();
        let batch = 2;
        let input = random(batch * 3 * h * w, i as u64);
        let session = Session::with_options(&ctx, &graph, batch, options)
            .unwrap_or_else(|e| panic!("{}: {e}", p.name));
        check(p.name, &session, &input);
        let gpu = session
            .run(&input)
            .unwrap_or_else(|e| panic!("{}: {e}", p.name));
        let cpu = cpu::forward(&graph, &input, batch).unwrap();
        for (what, a, b) in [
            ("logits", &gpu.logits, &cpu.logits),
            ("probs", &gpu.probs, &cpu.probs),
        ] {
            assert_close(&format!("{} {what}", p.name), a, b, ATOL, RTOL);
        }
    }
}

#[test]
fn every_fixture_matches_pytorch() {
    let Some((ctx, _gpu)) = gpu() else { return };
    let fixtures = common::io_fixtures();
    assert!(!fixtures.is_empty(), "no fixtures in tests/fixtures");
    for f in fixtures {
        let (name, input, graph) = (&f.name, &f.input, f.graph());
        let session = Session::new(&ctx, &graph, input.n).unwrap_or_else(|e| panic!("{name}: {e}"));
        let out = session
            .run(&input.data)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let (_, logits) = f.torch("logits");
        let (_, probs) = f.torch("probs");
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
        assert_every_op_close(name, &graph, &session, &input.data, input.n, ATOL, RTOL);
    }
}

/// f16 weights (`Precision::F16`) on every PyTorch fixture: the same top-1 class as the f32 session
/// for every image, and logits within 1e-2 of PyTorch's relative to their largest magnitude
/// (`max |f16 - torch| / max |torch|`). Skipped where the adapter has no SHADER_F16, after checking
/// that asking for f16 there is a clear error.
#[test]
fn every_fixture_with_f16_weights_keeps_top1_and_logits_within_1e_2() {
    let Some((ctx, _gpu)) = gpu() else { return };
    let graph = small_graph();
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
    for f in common::io_fixtures() {
        let (name, input, graph) = (&f.name, &f.input, f.graph());
        let half = Session::with_options(&ctx, &graph, input.n, &f16)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let out16 = half.run(&input.data).unwrap();
        let out32 = Session::new(&ctx, &graph, input.n)
            .unwrap()
            .run(&input.data)
            .unwrap();
        // Buffer kernels store f16 weights, texture kernels f32 texels rounded to f16: either way
        // the logits change.
        assert_ne!(
            out16.logits, out32.logits,
            "{name}: f16 weights changed nothing"
        );
        let (_, torch) = f.torch("logits");
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

#[test]
fn wrong_inputs_are_input_errors() {
    let Some((ctx, _gpu)) = gpu() else { return };
    let graph = small_graph();
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
    let Some((ctx, _gpu)) = gpu() else { return };
    let (graph, input) = res2net50(160, 1, 1);
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
    let Some((ctx, _gpu)) = gpu() else { return };
    let graph = small_graph();
    let session = Session::new(&ctx, &graph, 3).unwrap();
    let inputs: Vec<Vec<f32>> = (0..4).map(|i| random(3 * 3 * 32 * 32, 50 + i)).collect();
    let expected: Vec<_> = inputs.iter().map(|x| session.run(x).unwrap()).collect();
    let out = pollster::block_on(session.run_async(&inputs[0])).unwrap();
    assert_eq!(out, expected[0]);
    // Runs from several threads at once share the arena but never mix their inputs.
    assert_threads_agree(&session, &inputs, &expected);
}

#[test]
fn a_lost_device_is_an_error_and_a_new_session_works() {
    // Its own device: destroying the shared one would break the other tests.
    if context().is_none() {
        return;
    }
    let _gpu = one_at_a_time();
    let ctx = GpuContext::new().unwrap();
    let graph = small_graph();
    let session = Session::with_options(&ctx, &graph, 1, &by_rule()).unwrap();
    let input = random(3 * 32 * 32, 9);
    let before = session.run(&input).unwrap();
    ctx.device().destroy();
    let err = session.run(&input).unwrap_err();
    eprintln!("after destroy: {err}");
    assert!(matches!(err, Error::Gpu(_)), "{err}");
    assert!(Session::new(&ctx, &graph, 1).is_err());

    let fresh = GpuContext::new().unwrap();
    let session = Session::with_options(&fresh, &graph, 1, &by_rule()).unwrap();
    assert_eq!(session.run(&input).unwrap(), before);
}

#[test]
fn sessions_work_on_the_callers_own_device() {
    let Some((ctx, _gpu)) = gpu() else { return };
    let wrapped = GpuContext::from_device(ctx.device().clone(), ctx.queue().clone());
    let graph = small_graph();
    let input = random(3 * 32 * 32, 4);
    let a = Session::with_options(&wrapped, &graph, 1, &by_rule())
        .unwrap()
        .run(&input)
        .unwrap();
    let b = Session::with_options(&ctx, &graph, 1, &by_rule())
        .unwrap()
        .run(&input)
        .unwrap();
    assert_eq!(a, b);
}

/// Kernels fixed by rule: two devices (each with its own tuner) then run the same ones, bit for bit.
fn by_rule() -> SessionOptions {
    SessionOptions {
        tune: Tune::Off,
        ..Default::default()
    }
}
