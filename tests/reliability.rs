//! A runtime embedded in other people's apps: batches larger than the device's buffer limits, sizes the
//! network or the device cannot take, one model shared by several threads, bit-identical repeated
//! runs, and no GPU resource growth over many runs.

mod gpu_common;

use std::sync::Arc;

use gpu_common::{context, random};
use res2net_wgpu::classifier::Classifier;
use res2net_wgpu::gpu::{Session, SessionOptions, Tune};
use res2net_wgpu::{arch, bundled, cpu, Error, Model};

#[test]
fn a_batch_beyond_the_binding_limit_is_split_and_equals_one_by_one() {
    let Some(ctx) = context() else { return };
    let limit = ctx.device().limits().max_storage_buffer_binding_size;
    // A narrow network on a large image: big activations, little arithmetic.
    let model = Model::from_config(&arch::seed([1, 1, 1, 1], 4, 1, 4, 1, false), 5).unwrap();
    let (h, w) = (1024, 768);
    let graph = model.graph(h, w).unwrap();
    // Kernels by rule: the tuner may pick different families (rounding differently) for one
    // image and for a chunk of images per dispatch, and this compares bits.
    let by_rule = SessionOptions {
        tune: Tune::Off,
        ..Default::default()
    };
    let one = Session::with_options(&ctx, &graph, 1, &by_rule).unwrap();
    let per_image = one.activation_bytes_peak();
    let batch = (limit / per_image + 2) as usize;
    assert!(
        batch as u64 * per_image > limit,
        "the batch must exceed the limit"
    );
    let session = Session::with_options(&ctx, &graph, batch, &by_rule).unwrap();
    assert!(
        session.chunk() < batch,
        "chunk {} of {batch}",
        session.chunk()
    );
    eprintln!(
        "{batch} images of {:.1} MiB against a {:.0} MiB binding: chunks of {}",
        per_image as f64 / 1048576.0,
        limit as f64 / 1048576.0,
        session.chunk()
    );
    let per = 3 * h * w;
    let input = random(batch * per, 21);
    let all = session.run(&input).unwrap();
    for n in 0..batch {
        let single = one.run(&input[n * per..(n + 1) * per]).unwrap();
        assert_eq!(single.logits, all.logits_of(n), "image {n}");
        assert_eq!(single.probs, all.probs_of(n), "image {n}");
    }
}

#[test]
fn sizes_that_cannot_run_are_refused_before_any_gpu_work() {
    let model = bundled::model().unwrap();
    for (h, w) in [(0, 32), (32, 0), (9000, 32)] {
        let e = model.graph(h, w).unwrap_err();
        assert!(matches!(e, Error::Input { .. }), "{h}x{w}: {e}");
        assert!(e.to_string().contains("expected"), "{e}");
    }
    let Some(ctx) = context() else { return };
    // One image whose activations exceed what the device binds at once: refused naming the limit.
    let limit = ctx.device().limits().max_storage_buffer_binding_size;
    let side = 4096;
    let graph = model.graph(side, side).unwrap();
    let input_bytes = 4 * graph.input_shape().numel() as u64;
    if input_bytes > limit {
        let e = Session::new(&ctx, &graph, 1).unwrap_err();
        assert!(
            e.to_string().contains("max_storage_buffer_binding_size"),
            "{e}"
        );
    }
}

#[test]
fn one_classifier_serves_four_threads_with_bit_identical_results() {
    let Some(ctx) = context() else { return };
    let c = Arc::new(Classifier::with_context(bundled::model().unwrap(), ctx).unwrap());
    let [h, w] = c.preprocess().input_size;
    let heldout = bundled::heldout().unwrap();
    let inputs: Vec<Vec<f32>> = heldout.images()[..50]
        .iter()
        .map(|img| c.to_tensor(std::slice::from_ref(img)))
        .collect();
    let sequential: Vec<_> = inputs
        .iter()
        .map(|x| c.run_tensor(x, 1, h, w).unwrap())
        .collect();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (c, inputs, sequential) = (Arc::clone(&c), &inputs, &sequential);
            s.spawn(move || {
                for i in 0..50 {
                    // Each thread walks the inputs in its own order so runs interleave.
                    let k = (i * 7 + t * 13) % 50;
                    let out = c.run_tensor(&inputs[k], 1, h, w).unwrap();
                    assert_eq!(out, sequential[k], "thread {t}, input {k}");
                }
            });
        }
    });
}

#[test]
fn repeated_runs_are_bit_identical() {
    let model = Model::from_config(&arch::preset("res2net50_26w_4s").unwrap(), 2).unwrap();
    let graph = model.graph(64, 48).unwrap();
    let input = random(2 * 3 * 64 * 48, 8);
    let first = cpu::forward(&graph, &input, 2).unwrap();
    for _ in 0..3 {
        assert_eq!(cpu::forward(&graph, &input, 2).unwrap(), first);
    }
    let Some(ctx) = context() else { return };
    let session = Session::new(&ctx, &graph, 2).unwrap();
    let first = session.run(&input).unwrap();
    for _ in 0..10 {
        let again = session.run(&input).unwrap();
        assert!(
            again
                .logits
                .iter()
                .zip(&first.logits)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "logits changed between runs"
        );
        assert_eq!(again, first);
    }
}

#[test]
fn runs_create_no_lasting_gpu_resources() {
    // A device of its own: the counters are per device, and other tests share the common one.
    if context().is_none() {
        return;
    }
    let ctx = res2net_wgpu::gpu::GpuContext::new().unwrap();
    let model = bundled::model().unwrap();
    let graph = model.graph(32, 32).unwrap();
    let session = Session::new(&ctx, &graph, 4).unwrap();
    let input = random(4 * 3 * 32 * 32, 3);
    let count = |ctx: &res2net_wgpu::gpu::GpuContext| {
        let c = ctx.device().get_internal_counters().hal;
        (
            c.buffers.read(),
            c.bind_groups.read(),
            c.compute_pipelines.read(),
            c.buffer_memory.read(),
        )
    };
    for _ in 0..20 {
        session.run(&input).unwrap();
    }
    let before = count(&ctx);
    for _ in 0..200 {
        session.run(&input).unwrap();
    }
    let after = count(&ctx);
    eprintln!("(buffers, bind groups, pipelines, buffer bytes) before {before:?}, after {after:?}");
    assert_eq!(before, after, "GPU resources grew over 200 runs");
}

#[test]
fn tiny_inputs_run_where_pytorch_runs_them() {
    // An avg-down network at 16x16 reaches layer4 with a 1x1 map, where the ceil-mode downsample pool
    // still gives one output (as in PyTorch); a 1x1 input runs too.
    let model = Model::from_config(&arch::preset("res2net50d").unwrap(), 4).unwrap();
    for (h, w) in [(16, 16), (1, 1), (9, 17)] {
        let graph = model.graph(h, w).unwrap();
        let input = random(3 * h * w, 6);
        let cpu_out = cpu::forward(&graph, &input, 1).unwrap();
        let Some(ctx) = context() else { continue };
        let gpu_out = Session::new(&ctx, &graph, 1).unwrap().run(&input).unwrap();
        gpu_common::assert_close(
            &format!("res2net50d at {h}x{w}"),
            &gpu_out.logits,
            &cpu_out.logits,
            1e-4,
            1e-4,
        );
    }
}
