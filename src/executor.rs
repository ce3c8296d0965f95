//! What both executors (the CPU reference and the GPU session) share: the output type and the input
//! checks, so that both refuse the same input with the same words.

use crate::error::{Error, Result};
use crate::graph::{Graph, Shape};

/// Logits and probabilities for a batch, row-major `[batch, classes]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub batch: usize,
    pub classes: usize,
    pub logits: Vec<f32>,
    pub probs: Vec<f32>,
}

impl Output {
    /// Logits of image `n`.
    pub fn logits_of(&self, n: usize) -> &[f32] {
        &self.logits[n * self.classes..(n + 1) * self.classes]
    }

    /// Probabilities of image `n`.
    pub fn probs_of(&self, n: usize) -> &[f32] {
        &self.probs[n * self.classes..(n + 1) * self.classes]
    }

    /// The `k` most probable classes of image `n`, most probable first.
    pub fn top_k(&self, n: usize, k: usize) -> Vec<(usize, f32)> {
        let mut idx: Vec<(usize, f32)> = self.probs_of(n).iter().copied().enumerate().collect();
        idx.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        idx.truncate(k);
        idx
    }
}

/// Checks an input buffer against the graph's input shape.
pub fn check_input(graph: &Graph, input: &[f32], batch: usize) -> Result<()> {
    let s = graph.input_shape();
    if batch == 0 {
        return Err(Error::input(
            "batch",
            "at least one image",
            "an empty batch",
        ));
    }
    if input.len() != batch * s.numel() {
        return Err(wrong_input_len(s, batch, input.len()));
    }
    if input.iter().any(|v| !v.is_finite()) {
        return Err(non_finite_input(s, input));
    }
    Ok(())
}

/// The error for `found` input values where `[batch, C, H, W]` of shape `s` were expected: both executors refuse
/// the same input with the same words.
pub(crate) fn wrong_input_len(s: Shape, batch: usize, found: usize) -> Error {
    Error::input(
        "data",
        format!(
            "{} values for [{batch}, {}, {}, {}]",
            batch * s.numel(),
            s.c,
            s.h,
            s.w
        ),
        format!("{found} values"),
    )
}

/// The error for an input holding a NaN or an infinity, naming the first one by position.
pub(crate) fn non_finite_input(s: Shape, input: &[f32]) -> Error {
    let i = input.iter().position(|v| !v.is_finite()).unwrap_or(0);
    let per = s.numel().max(1);
    let (n, rest) = (i / per, i % per);
    let (c, y, x) = (
        rest / s.plane().max(1),
        rest % s.plane().max(1) / s.w.max(1),
        rest % s.w.max(1),
    );
    Error::input(
        "values",
        "finite numbers",
        format!(
            "{} at [{n}, {c}, {y}, {x}]",
            input.get(i).copied().unwrap_or(0.0)
        ),
    )
}
