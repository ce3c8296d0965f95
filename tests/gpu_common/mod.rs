//! Shared by the GPU test files: one device per test binary, skipped with a message where the machine
//! has no adapter, unless `REQUIRE_GPU=1` (CI) makes a missing adapter a failure.

#![allow(dead_code)]

use std::sync::{Mutex, MutexGuard, OnceLock};

use res2net_wgpu::gpu::GpuContext;

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
    graph: &res2net_wgpu::graph::Graph,
    session: &res2net_wgpu::gpu::Session,
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
