//! The network as a flat list of ops over tensor views, built once per (config, input size) with BatchNorm
//! folded into the convolutions. Executors (CPU reference, GPU session) only ever see this.

mod block;
mod build;
mod builder;
mod official;
mod ops;
mod resnet;
mod seed;

pub use build::{build, count_params, ParamSource, ShapeOnly, MAX_INPUT_SIDE};
pub use ops::*;

/// One op with the name of the module it came from (e.g. `layer1.0.convs.1`).
#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub op: Op,
}

/// A built network for one input size. Batch size is left to the executor.
#[derive(Clone, Debug)]
pub struct Graph {
    pub tensors: Vec<TensorInfo>,
    pub nodes: Vec<Node>,
    /// `[3, H, W]`.
    pub input: TensorId,
    /// `[classes, 1, 1]`.
    pub logits: TensorId,
    /// `[classes, 1, 1]`.
    pub probs: TensorId,
    /// The tensor that ends the stem and each stage, with its name (`stem`, `layer1`, ...).
    pub stage_outputs: Vec<(String, TensorId)>,
    /// The last feature map (before global pooling), used for class activation maps.
    pub features: TensorId,
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

    pub fn num_classes(&self) -> usize {
        self.shape(self.logits).c
    }

    /// Multiply-accumulates per image (convolutions and linear layers; pooling and element-wise work are
    /// not counted, matching how published MAC figures are computed).
    pub fn macs(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| match &n.op {
                Op::Conv(c) => {
                    let out = self.shape(c.dst.tensor);
                    let per_out = (c.cin() / c.groups) * c.kernel.0 * c.kernel.1;
                    (c.cout() * out.plane() * per_out) as u64
                }
                Op::Linear(l) => (l.src.channels * l.dst.channels) as u64,
                _ => 0,
            })
            .sum()
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
