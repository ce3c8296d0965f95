//! GPU against the CPU reference, op by op: both executors run the same graph on the same input, and
//! every op's output view is compared. Used by `res2net verify` and the tests.

use std::fmt::Write;

use crate::cpu;
use crate::error::Result;
use crate::gpu::{GpuContext, Precision, Session, SessionOptions};
use crate::graph::Outputs;
use crate::model::{Model, SplitMix};
use crate::tensor_io::InputBatch;

/// An op passes when `max |gpu - cpu| <= ATOL + RTOL * max |cpu|` over its output: float32 sums in a
/// different order differ by a few ulps per accumulation, relative to the size of the values.
pub const ATOL: f32 = 1e-4;
pub const RTOL: f32 = 1e-4;

/// The tolerance for a GPU session with f16 weights ([`Precision::F16`]) against the f32 CPU
/// reference. Rounding a weight to f16 changes it by up to 2^-11 (4.9e-4) of its value; an op's output
/// inherits that from its own weights and from every op before it, so deep ops differ from the f32
/// reference by up to a few 1e-3 of their largest value (measured on res2net50_26w_4s with random
/// weights and on the PyTorch fixtures). 2e-2 relative still flags a real bug (a wrong tap, channel
/// or activation changes an op's output at the 1e-1 level).
pub const ATOL_F16: f32 = 1e-3;
pub const RTOL_F16: f32 = 2e-2;

/// `(atol, rtol)` of a comparison against the f32 reference for a session of `precision`.
pub fn tolerance(precision: Precision) -> (f32, f32) {
    match precision {
        Precision::F32 => (ATOL, RTOL),
        Precision::F16 => (ATOL_F16, RTOL_F16),
    }
}

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
    /// The op passes when `max_abs <= atol + rtol * scale` ([`tolerance`]).
    pub atol: f32,
    pub rtol: f32,
}

impl OpDiff {
    pub fn passed(&self) -> bool {
        self.max_abs <= self.atol + self.rtol * self.scale
    }
}

/// Every op's comparison, in execution order.
#[derive(Clone, Debug)]
pub struct Report {
    pub device: String,
    /// The GPU session's weight precision.
    pub precision: Precision,
    pub ops: Vec<OpDiff>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.ops.iter().all(OpDiff::passed)
    }

    /// The per-op table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "device: {} (weights {})",
            self.device,
            self.precision.name()
        );
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
        let (atol, rtol) = tolerance(self.precision);
        match worst {
            Some(w) if failed == 0 => format!(
                "PASS: {} ops within {atol:e} + {rtol:e} x max|cpu|; worst relative difference {:.3e} at {}",
                self.ops.len(),
                w.max_rel,
                w.name
            ),
            Some(w) => format!(
                "FAIL: {failed} of {} ops outside {atol:e} + {rtol:e} x max|cpu|; worst relative difference {:.3e} at {}",
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
    compare_with(model, ctx, input, Precision::F32)
}

/// [`compare`] with a GPU session of the given weight precision, judged by [`tolerance`].
pub fn compare_with(
    model: &Model,
    ctx: &GpuContext,
    input: &InputBatch,
    precision: Precision,
) -> Result<Report> {
    let options = SessionOptions {
        precision,
        ..SessionOptions::default()
    };
    compare_outputs(model, ctx, input, &options, &Outputs::classifier())
}

/// [`compare_with`] on the graph that returns `outputs` (feature points, the classifier or both):
/// every op, then every output by name (`layer1`, `logits`) as a row of kind `output`. The GPU
/// session is built with `options` (its precision sets the tolerance).
pub fn compare_outputs(
    model: &Model,
    ctx: &GpuContext,
    input: &InputBatch,
    options: &SessionOptions,
    outputs: &Outputs,
) -> Result<Report> {
    let graph = model.graph_with(input.h, input.w, outputs)?;
    let precision = options.precision;
    // Build the session first: an adapter without f16 fails before the slow CPU reference.
    let session = Session::with_options(ctx, &graph, input.n, options)?;
    let cpu_all = cpu::forward_all(&graph, &input.data, input.n)?;
    let (atol, rtol) = tolerance(precision);
    let gpu_all = session.run_all(&input.data)?;
    let mut ops: Vec<OpDiff> = graph
        .nodes
        .iter()
        .map(|node| {
            let view = node.op.writes();
            let a = cpu::gather(&graph, view, &cpu_all, input.n);
            let b = cpu::gather(&graph, view, &gpu_all, input.n);
            diff(&node.name, node.op.kind(), &a, &b, atol, rtol)
        })
        .collect();
    for (name, t) in graph.outputs() {
        let (a, b) = (&cpu_all[t.0], &gpu_all[t.0]);
        ops.push(diff(&name, "output", a, b, atol, rtol));
    }
    Ok(Report {
        device: ctx.describe(),
        precision,
        ops,
    })
}

fn diff(name: &str, kind: &'static str, cpu: &[f32], gpu: &[f32], atol: f32, rtol: f32) -> OpDiff {
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
        atol,
        rtol,
    }
}
