//! The network as a flat list of ops over tensor views, built once per (config, input size, outputs)
//! with BatchNorm folded into the convolutions. Executors (CPU reference, GPU session) only ever see
//! this. A graph returns the classifier's logits and probabilities, feature maps, or both
//! ([`Outputs`]); one without the classifier ends at its last feature point.

mod block;
mod build;
mod builder;
mod dla;
mod official;
mod ops;
mod resnet;
mod seed;

pub use build::{build, build_with, count_params, ParamSource, ShapeOnly, MAX_INPUT_SIDE};
pub use ops::*;

use crate::arch::FeaturePoint;

/// One op with the name of the module it came from (e.g. `layer1.0.convs.1`).
#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub op: Op,
}

/// What a graph is built to return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outputs {
    /// The classifier: global pooling, `fc`, softmax. Without it the graph ends at its last feature
    /// point, so later layers are not built at all.
    pub head: bool,
    /// Feature points by index (timm's `out_indices`), ascending, no repeats.
    pub features: Vec<usize>,
}

impl Outputs {
    /// Logits and probabilities only.
    pub fn classifier() -> Self {
        Outputs {
            head: true,
            features: Vec::new(),
        }
    }

    /// The given feature points only (checked by [`Res2NetConfig::out_indices`](crate::arch::Res2NetConfig::out_indices)).
    pub fn features(indices: &[usize]) -> Self {
        Outputs {
            head: false,
            features: indices.to_vec(),
        }
    }
}

/// The classifier's tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// The last feature map, which the head pools (class activation maps weight it by `fc` rows).
    pub last_map: TensorId,
    /// `[classes, 1, 1]`.
    pub logits: TensorId,
    /// `[classes, 1, 1]`.
    pub probs: TensorId,
}

/// A feature point and the tensor that holds it: a whole tensor, `[point.channels, H, W]` per image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureTensor {
    pub point: FeaturePoint,
    pub tensor: TensorId,
}

/// A built network for one input size. Batch size is left to the executor.
#[derive(Clone, Debug)]
pub struct Graph {
    pub tensors: Vec<TensorInfo>,
    pub nodes: Vec<Node>,
    /// `[3, H, W]`.
    pub input: TensorId,
    /// The classifier; `None` in a features-only graph.
    pub head: Option<Head>,
    /// The feature points the graph was built to return, ascending by index.
    pub features: Vec<FeatureTensor>,
    /// Whether weights were loaded; a shape-only graph has empty weight vectors.
    pub has_weights: bool,
}

impl Graph {
    pub fn shape(&self, t: TensorId) -> Shape {
        self.tensors[t.0].shape
    }

    pub fn input_shape(&self) -> Shape {
        self.shape(self.input)
    }

    /// Classes of the head; 0 for a features-only graph.
    pub fn num_classes(&self) -> usize {
        self.head.map_or(0, |h| self.shape(h.logits).c)
    }

    /// Every tensor the graph was built to return, with its name: the feature points by module
    /// name, then `logits` and `probs` when there is a head.
    pub fn outputs(&self) -> Vec<(String, TensorId)> {
        let mut v: Vec<(String, TensorId)> = self
            .features
            .iter()
            .map(|f| (f.point.name.clone(), f.tensor))
            .collect();
        if let Some(h) = self.head {
            v.push(("logits".into(), h.logits));
            v.push(("probs".into(), h.probs));
        }
        v
    }

    /// Multiply-accumulates per image (convolutions and linear layers; pooling and element-wise work are
    /// not counted, matching how published MAC figures are computed).
    pub fn macs(&self) -> u64 {
        self.nodes.iter().map(|n| self.op_macs(&n.op)).sum()
    }

    /// Multiply-accumulates of one op per image (0 for ops [`macs`](Self::macs) does not count).
    pub fn op_macs(&self, op: &Op) -> u64 {
        match op {
            Op::Conv(c) => {
                let out = self.shape(c.dst.tensor);
                let per_out = (c.cin() / c.groups) * c.kernel.0 * c.kernel.1;
                (c.cout() * out.plane() * per_out) as u64
            }
            Op::Linear(l) => (l.src.channels * l.dst.channels) as u64,
            _ => 0,
        }
    }

    /// Floating-point operations per image: two per multiply-accumulate.
    pub fn flops(&self) -> u64 {
        2 * self.macs()
    }

    /// Number of convolutions (for dispatch-count reports).
    pub fn conv_count(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| matches!(n.op, Op::Conv(_)))
            .count()
    }

    /// Sum of all activation tensors' sizes per image in elements (input excluded).
    pub fn total_activation_elems(&self) -> usize {
        self.activation_elems().sum()
    }

    /// The largest single activation tensor per image in elements (input excluded): the least any
    /// memory plan must hold at once.
    pub fn largest_activation_elems(&self) -> usize {
        self.activation_elems().max().unwrap_or(0)
    }

    fn activation_elems(&self) -> impl Iterator<Item = usize> + '_ {
        self.tensors
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != self.input.0)
            .map(|(_, t)| t.shape.numel())
    }
}
