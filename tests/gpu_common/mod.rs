//! Shared by the GPU test files: one device per test binary, skipped with a message where the machine
//! has no adapter, unless `REQUIRE_GPU=1` (CI) makes a missing adapter a failure.

#![allow(dead_code)]

use std::sync::{Mutex, MutexGuard, OnceLock};

use res2net_wgpu::executor::Output;
use res2net_wgpu::gpu::{GpuContext, Session};
use res2net_wgpu::graph::Graph;
use res2net_wgpu::{arch, Model};

/// The device for this test binary, or `None` (after saying why) when there is none.
pub fn context() -> Option<GpuContext> {
    static CTX: OnceLock<Option<GpuContext>> = OnceLock::new();
    CTX.get_or_init(|| match GpuContext::new() {
        Ok(ctx) => {
            eprintln!("GPU tests on {}", ctx.describe());
            Some(ctx)
        }
        Err(e) => {
            if std::env::var("REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("REQUIRE_GPU=1 but no GPU is usable: {e}");
            }
            eprintln!("skipping GPU test: {e}");
            None
        }
    })
    .clone()
}

/// The tolerance of GPU results against the CPU reference and PyTorch on whole networks:
/// `|gpu - cpu| <= ATOL + RTOL * |cpu|` (see [`assert_close`]). A network chains ~50 convs; each
/// executor's f32 rounding (~1e-7 relative per add) compounds through them, and random-weight models
/// amplify it more than trained ones. Measured differences on a full res2net50 are ~1e-6..1e-5 (see
/// the test output); 1e-4 abs + 1e-4 rel still flags any real bug, which changes logits at the 1e-2
/// level.
pub const ATOL: f32 = 1e-4;
pub const RTOL: f32 = 1e-4;

/// A small seed network (one block per stage, 10 classes) at 32x32.
pub fn small_graph() -> Graph {
    let model = Model::from_config(&arch::seed([1, 1, 1, 1], 10, 2, 4, 1, true), 7).unwrap();
    model.graph(32, 32).unwrap()
}

/// Whether the device can keep a pipeline cache that wgpu knows how to key for this adapter.
pub fn has_pipeline_cache(ctx: &GpuContext) -> bool {
    ctx.device()
        .features()
        .contains(wgpu::Features::PIPELINE_CACHE)
        && wgpu::util::pipeline_cache_key(ctx.adapter_info()).is_some()
}

/// Runs every input on `session` from a thread of its own, all at once, and asserts that each gets
/// its `expected` output: concurrent runs share the session's buffers but never mix their inputs.
pub fn assert_threads_agree(session: &Session, inputs: &[Vec<f32>], expected: &[Output]) {
    std::thread::scope(|s| {
        let handles: Vec<_> = inputs
            .iter()
            .map(|x| s.spawn(|| session.run(x).unwrap()))
            .collect();
        for (h, e) in handles.into_iter().zip(expected) {
            assert_eq!(&h.join().unwrap(), e);
        }
    });
}

/// GPU results against the CPU reference: `|gpu - cpu| <= atol + rtol * |cpu|`. Both executors
/// compute in f32 but sum in different orders, so they differ by a few ulps of the partial sums
/// (about 1e-7 relative per add; a conv sums up to a few thousand products, and a network chains
/// about fifty of them): a mixed tolerance around 1e-4 separates that from any real bug, which shows
/// up as errors of order 1e-2 and above.
pub fn assert_close(what: &str, gpu: &[f32], cpu: &[f32], atol: f32, rtol: f32) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: length");
    let mut worst = (0.0f32, 0usize);
    for (i, (a, b)) in gpu.iter().zip(cpu).enumerate() {
        let err = (a - b).abs();
        assert!(
            err <= atol + rtol * b.abs(),
            "{what}[{i}]: gpu {a}, cpu {b} (|diff| {err:e})"
        );
        if err > worst.0 {
            worst = (err, i);
        }
    }
    eprintln!("{what}: max |diff| {:e} at {}", worst.0, worst.1);
}

/// Deterministic values in [-1, 1).
pub fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = res2net_wgpu::model::SplitMix::new(seed);
    (0..n).map(|_| rng.symmetric()).collect()
}

/// Every op's output of a GPU session against the CPU reference on the same graph and input: for
/// diagnosis, the first op out of tolerance names itself.
pub fn assert_every_op_close(
    what: &str,
    graph: &Graph,
    session: &Session,
    input: &[f32],
    batch: usize,
    atol: f32,
    rtol: f32,
) {
    use res2net_wgpu::cpu;
    let gpu_all = session.run_all(input).unwrap();
    let cpu_all = cpu::forward_all(graph, input, batch).unwrap();
    for node in &graph.nodes {
        let v = node.op.writes();
        let g = cpu::gather(graph, v, &gpu_all, batch);
        let c = cpu::gather(graph, v, &cpu_all, batch);
        assert_close(&format!("{what} {}", node.name), &g, &c, atol, rtol);
    }
}

/// Runs one test's GPU work at a time within a test binary. wgpu's OpenGL backend executes a submit's
/// commands while it holds the adapter's one context lock, and panics ("Could not lock adapter
/// context") when another thread waits on that lock for 6 s: a long forward pass on a busy machine
/// is enough. Tests that run whole networks take this first.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static GPU: Mutex<()> = Mutex::new(());
    GPU.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The device with [`one_at_a_time`]'s lock held, for a test that runs whole networks; `None` (after
/// saying why) when there is no device.
pub fn gpu() -> Option<(GpuContext, MutexGuard<'static, ()>)> {
    let ctx = context()?;
    Some((ctx, one_at_a_time()))
}
