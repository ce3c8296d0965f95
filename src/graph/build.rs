//! Builds the [`Graph`] of a [`Res2NetConfig`] for one input size, pulling every parameter by its
//! checkpoint key from a [`ParamSource`] and folding BatchNorm into the convolution before it.
//!
//! This walk is the single description of the network: the same code lists the expected checkpoint keys
//! (with [`ShapeOnly`]), counts parameters and FLOPs, and validates a checkpoint. The walk of each
//! layout lives in its own file (`resnet.rs`, `dla.rs`), the blocks in theirs (`official.rs`,
//! `seed.rs`), and `builder.rs` holds what they share: tensors, nodes and one method per kind of op.

use super::builder::Builder;
use super::ops::*;
use super::resnet::Taps;
use super::{Graph, Head, Outputs};
use crate::arch::{Backbone, Res2NetConfig};
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

/// Builds the classifier graph of `cfg` for a `[3, h, w]` input.
pub fn build(cfg: &Res2NetConfig, src: &mut dyn ParamSource, h: usize, w: usize) -> Result<Graph> {
    build_with(cfg, src, h, w, &Outputs::classifier())
}

/// Builds the graph of `cfg` for a `[3, h, w]` input, returning `outputs`.
pub fn build_with(
    cfg: &Res2NetConfig,
    src: &mut dyn ParamSource,
    h: usize,
    w: usize,
    outputs: &Outputs,
) -> Result<Graph> {
    cfg.validate()?;
    if !outputs.head || !outputs.features.is_empty() {
        let checked = cfg.out_indices(Some(&outputs.features))?;
        if checked != outputs.features {
            return Err(Error::input(
                "out indices",
                format!("ascending indices, like {checked:?}"),
                format!("{:?}", outputs.features),
            ));
        }
    }
    if h == 0 || w == 0 || h > MAX_INPUT_SIDE || w > MAX_INPUT_SIDE {
        return Err(Error::input(
            "size",
            format!("height and width in 1..={MAX_INPUT_SIDE}"),
            format!("{h}x{w}"),
        ));
    }
    let mut b = Builder::new(src);
    let input = b.tensor("input", Shape::new(3, h, w));
    let mut taps = Taps {
        points: cfg.feature_points(),
        wanted: &outputs.features,
        head: outputs.head,
        got: Vec::new(),
    };
    let last = match &cfg.backbone {
        Backbone::ResNet(r) => b.resnet(cfg, r, input, &mut taps)?,
        Backbone::Dla(d) => b.dla(cfg, d, input, &mut taps)?,
    };
    let head = match last {
        Some(last_map) if outputs.head => {
            // timm's DLA stores its classifier as a 1x1 conv.
            let conv_shaped = matches!(cfg.backbone, Backbone::Dla(_));
            let (logits, probs) = head(&mut b, last_map, cfg.num_classes, conv_shaped)?;
            Some(Head {
                last_map,
                logits,
                probs,
            })
        }
        _ => None,
    };
    Ok(Graph {
        tensors: b.tensors,
        nodes: b.nodes,
        input,
        head,
        features: taps.got,
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
