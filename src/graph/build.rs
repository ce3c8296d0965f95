//! Builds the [`Graph`] of a [`Res2NetConfig`] for one input size, pulling every parameter by its
//! checkpoint key from a [`ParamSource`] and folding BatchNorm into the convolution before it.
//!
//! This walk is the single description of the network: the same code lists the expected checkpoint keys
//! (with [`ShapeOnly`]), counts parameters and FLOPs, and validates a checkpoint. The walk of each
//! layout lives in its own file (`resnet.rs`), the blocks in theirs (`official.rs`, `seed.rs`), and
//! `builder.rs` holds what they share: tensors, nodes and one method per kind of op.

use super::builder::Builder;
use super::ops::*;
use super::Graph;
use crate::arch::Res2NetConfig;
use crate::error::{Error, Result};

/// Largest input side accepted, far above any real use; stops absurd allocations.
pub const MAX_INPUT_SIDE: usize = 8192;

/// Supplies parameters by checkpoint key. The builder states the exact shape it expects; a source
/// returns the values or an error naming the key, the expected and the found shape.
pub trait ParamSource {
    fn fetch(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>>;
    /// Whether the source holds real values (a shape-only source returns empty vectors).
    fn has_values(&self) -> bool {
        true
    }
}

/// A source with no values: records every key and shape the network needs, in build order.
#[derive(Default)]
pub struct ShapeOnly {
    pub keys: Vec<(String, Vec<usize>)>,
}

impl ParamSource for ShapeOnly {
    fn fetch(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.keys.push((key.to_string(), shape.to_vec()));
        Ok(Vec::new())
    }
    fn has_values(&self) -> bool {
        false
    }
}

/// Builds the graph of `cfg` for a `[3, h, w]` input.
pub fn build(cfg: &Res2NetConfig, src: &mut dyn ParamSource, h: usize, w: usize) -> Result<Graph> {
    cfg.validate()?;
    if h == 0 || w == 0 || h > MAX_INPUT_SIDE || w > MAX_INPUT_SIDE {
        return Err(Error::input(
            "size",
            format!("height and width in 1..={MAX_INPUT_SIDE}"),
            format!("{h}x{w}"),
        ));
    }
    let mut b = Builder::new(src);
    let input = b.tensor("input", Shape::new(3, h, w));
    let mut stage_outputs = Vec::new();
    let act1 = b.stem(cfg, input)?;
    let mut x = b.stem_pool(act1)?;
    stage_outputs.push(("stem".to_string(), x));
    let mut v = b.all(x);
    for stage in 0..4 {
        for block in 0..cfg.layers[stage] {
            v = b.resnet_block(cfg, stage, block, v)?;
        }
        x = v.tensor;
        stage_outputs.push((format!("layer{}", stage + 1), x));
    }
    let features = x;
    let (logits, probs) = head(&mut b, x, cfg.num_classes, false)?;
    Ok(Graph {
        tensors: b.tensors,
        nodes: b.nodes,
        input,
        logits,
        probs,
        stage_outputs,
        features,
        has_weights: b.values,
    })
}

/// Global average pooling, the classifier `fc` (stored as a 1x1 conv when `conv_shaped`) and a softmax.
fn head(
    b: &mut Builder,
    x: TensorId,
    classes: usize,
    conv_shaped: bool,
) -> Result<(TensorId, TensorId)> {
    let pooled = b.global_pool("global_pool", b.all(x));
    let logits = b.linear("fc", pooled, classes, conv_shaped, Activation::None)?;
    let probs = b.softmax("probs", logits);
    Ok((logits, probs))
}

/// Parameters of a network by kind, counted from the keys the builder asks for.
pub fn count_params(keys: &[(String, Vec<usize>)]) -> u64 {
    keys.iter()
        .filter(|(k, _)| !k.ends_with(".running_mean") && !k.ends_with(".running_var"))
        .map(|(_, s)| s.iter().product::<usize>() as u64)
        .sum()
}
