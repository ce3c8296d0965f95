//! GPU against the CPU reference, op by op: both executors run the same graph on the same input, and
//! every op's output view is compared. Used by `res2net verify` and the tests.

use std::fmt::Write;

use crate::cpu;
use crate::error::Result;
use crate::gpu::{GpuContext, Session};
use crate::model::{Model, SplitMix};
use crate::tensor_io::InputBatch;

/// An op passes when `max |gpu - cpu| <= ATOL + RTOL * max |cpu|` over its output: float32 sums in a
/// different order differ by a few ulps per accumulation, relative to the size of the values.
pub const ATOL: f32 = 1e-4;
pub const RTOL: f32 = 1e-4;

/// One op's comparison.
#[derive(Clone, Debug)]
pub struct OpDiff {
    pub name: String,
    pub kind: &'static str,
    pub max_abs: f32,
    /// `max_abs / max |cpu|`.
    pub max_rel: f32,
    /// `max |cpu|` over the op's output.
    pub scale: f32,
}

impl OpDiff {
    pub fn passed(&self) -> bool {
        self.max_abs <= ATOL + RTOL * self.scale
    }
}

/// Every op's comparison, in execution order.
#[derive(Clone, Debug)]
pub struct Report {
    pub device: String,
    pub ops: Vec<OpDiff>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.ops.iter().all(OpDiff::passed)
    }

    /// The per-op table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "device: {}", self.device);
        let _ = writeln!(
            s,
            "{:<28} {:<15} {:>11} {:>11} {:>10}  ok",
            "op", "kind", "max abs", "max rel", "max |cpu|"
        );
        for d in &self.ops {
            let _ = writeln!(
                s,
                "{:<28} {:<15} {:>11.3e} {:>11.3e} {:>10.3e}  {}",
                d.name,
                d.kind,
                d.max_abs,
                d.max_rel,
                d.scale,
                if d.passed() { "yes" } else { "NO" }
            );
        }
        s
    }

    /// One line: pass or fail, with the worst op.
    pub fn verdict(&self) -> String {
        let worst = self
            .ops
            .iter()
            .max_by(|a, b| a.max_rel.total_cmp(&b.max_rel));
        let failed = self.ops.iter().filter(|d| !d.passed()).count();
        match worst {
            Some(w) if failed == 0 => format!(
                "PASS: {} ops within {ATOL:e} + {RTOL:e} x max|cpu|; worst relative difference {:.3e} at {}",
                self.ops.len(),
                w.max_rel,
                w.name
            ),
            Some(w) => format!(
                "FAIL: {failed} of {} ops outside {ATOL:e} + {RTOL:e} x max|cpu|; worst relative difference {:.3e} at {}",
                self.ops.len(),
                w.max_rel,
                w.name
            ),
            None => "FAIL: no ops".into(),
        }
    }
}

/// A reproducible random input in [-2, 2).
pub fn random_input(n: usize, h: usize, w: usize, seed: u64) -> InputBatch {
    let mut rng = SplitMix::new(seed);
    InputBatch {
        n,
        h,
        w,
        data: (0..n * 3 * h * w).map(|_| 2.0 * rng.symmetric()).collect(),
    }
}

/// Runs `input` through the model on the GPU and on the CPU and compares every op's output.
pub fn compare(model: &Model, ctx: &GpuContext, input: &InputBatch) -> Result<Report> {
    let graph = model.graph(input.h, input.w)?;
    let cpu_all = cpu::forward_all(&graph, &input.data, input.n)?;
    let session = Session::new(ctx, &graph, input.n)?;
    let gpu_all = session.run_all(&input.data)?;
    let ops = graph
        .nodes
        .iter()
        .map(|node| {
            let view = node.op.writes();
            let a = cpu::gather(&graph, view, &cpu_all, input.n);
            let b = cpu::gather(&graph, view, &gpu_all, input.n);
            diff(&node.name, node.op.kind(), &a, &b)
        })
        .collect();
    Ok(Report {
        device: ctx.describe(),
        ops,
    })
}

fn diff(name: &str, kind: &'static str, cpu: &[f32], gpu: &[f32]) -> OpDiff {
    let scale = cpu.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let max_abs = cpu
        .iter()
        .zip(gpu)
        .map(|(a, b)| {
            if a.is_finite() && b.is_finite() {
                (a - b).abs()
            } else {
                f32::INFINITY
            }
        })
        .fold(0.0f32, f32::max);
    OpDiff {
        name: name.to_string(),
        kind,
        max_abs,
        max_rel: max_abs / scale.max(f32::MIN_POSITIVE),
        scale,
    }
}
