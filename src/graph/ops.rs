//! The operations of a built network. Every op reads and writes *views*: a run of channels inside a
//! tensor, so chunking and concatenation cost nothing (a conv reads channels 26..52 of one tensor and
//! writes channels 52..78 of another). All tensors are NCHW f32; the batch size is chosen by the executor.

/// Index of a tensor in [`Graph::tensors`](super::Graph::tensors).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(pub usize);

/// Shape of one image's slice of a tensor: channels x height x width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    pub fn new(c: usize, h: usize, w: usize) -> Self {
        Shape { c, h, w }
    }
    /// Elements per image.
    pub fn numel(&self) -> usize {
        self.c * self.h * self.w
    }
    /// Elements per channel plane.
    pub fn plane(&self) -> usize {
        self.h * self.w
    }
}

/// A tensor of the graph: an activation buffer (or the input) with a fixed per-image shape.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Shape,
}

/// `channels` channels of `tensor`, starting at channel `c0`. For image `n`, channel `c`, the view's data
/// starts at `n * tensor.numel() + (c0 + c) * plane`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    pub tensor: TensorId,
    pub c0: usize,
    pub channels: usize,
}

/// Applied to a result before it is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    None,
    Relu,
    Sigmoid,
}

/// 2-D convolution with BatchNorm already folded into `weight` and `bias`:
/// `dst = act(conv(src + src_add) + bias + residual)`.
///
/// `src_add` is the hierarchical add of a Res2Net block, applied while reading the input (zero padding
/// applies to the sum). `residual` is added after the bias, before the activation.
#[derive(Clone, Debug)]
pub struct Conv {
    pub src: View,
    pub src_add: Option<View>,
    pub dst: View,
    pub residual: Option<View>,
    /// `[cout, cin / groups, kh, kw]`, row-major.
    pub weight: Vec<f32>,
    /// `[cout]`.
    pub bias: Vec<f32>,
    pub kernel: (usize, usize),
    pub stride: usize,
    pub pad: usize,
    pub groups: usize,
    pub act: Activation,
}

impl Conv {
    pub fn cin(&self) -> usize {
        self.src.channels
    }
    pub fn cout(&self) -> usize {
        self.dst.channels
    }
}

/// Which pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// Padding never wins a max.
    Max,
    /// `count_include_pad`: divide by the full window (PyTorch's default) or only by the in-bounds cells.
    /// With `ceil_mode`, cells past the padded input are never counted either way (PyTorch semantics).
    Avg { count_include_pad: bool },
}

/// Max or average pooling with a square window.
#[derive(Clone, Debug)]
pub struct Pool {
    pub src: View,
    pub dst: View,
    pub kind: PoolKind,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
    pub ceil_mode: bool,
}

/// Mean over each channel plane: `dst` is a `[C, 1, 1]` view.
#[derive(Clone, Debug)]
pub struct GlobalAvgPool {
    pub src: View,
    pub dst: View,
}

/// Fully connected layer over `[K, 1, 1]` views: `dst = act(weight . src + bias)`, weight `[M, K]`.
#[derive(Clone, Debug)]
pub struct Linear {
    pub src: View,
    pub dst: View,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub act: Activation,
}

/// Channel-wise scale (the SE excitation) with the residual add and activation of a block's end:
/// `dst[c, y, x] = act(src[c, y, x] * scale[c] + residual[c, y, x])`; `scale` is a `[C, 1, 1]` view.
#[derive(Clone, Debug)]
pub struct ScaleAdd {
    pub src: View,
    pub scale: View,
    pub residual: Option<View>,
    pub dst: View,
    pub act: Activation,
}

/// Softmax over the channels of a `[C, 1, 1]` view.
#[derive(Clone, Debug)]
pub struct Softmax {
    pub src: View,
    pub dst: View,
}

/// One step of the forward pass.
#[derive(Clone, Debug)]
pub enum Op {
    Conv(Conv),
    Pool(Pool),
    GlobalAvgPool(GlobalAvgPool),
    Linear(Linear),
    ScaleAdd(ScaleAdd),
    Softmax(Softmax),
}

impl Op {
    /// Views this op reads.
    pub fn reads(&self) -> Vec<View> {
        match self {
            Op::Conv(c) => [Some(c.src), c.src_add, c.residual]
                .into_iter()
                .flatten()
                .collect(),
            Op::Pool(p) => vec![p.src],
            Op::GlobalAvgPool(g) => vec![g.src],
            Op::Linear(l) => vec![l.src],
            Op::ScaleAdd(s) => [Some(s.src), Some(s.scale), s.residual]
                .into_iter()
                .flatten()
                .collect(),
            Op::Softmax(s) => vec![s.src],
        }
    }

    /// The view this op writes.
    pub fn writes(&self) -> View {
        match self {
            Op::Conv(c) => c.dst,
            Op::Pool(p) => p.dst,
            Op::GlobalAvgPool(g) => g.dst,
            Op::Linear(l) => l.dst,
            Op::ScaleAdd(s) => s.dst,
            Op::Softmax(s) => s.dst,
        }
    }

    /// A short name of the op kind, for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Conv(c) if c.kernel == (1, 1) => "conv1x1",
            Op::Conv(_) => "conv",
            Op::Pool(p) if p.kind == PoolKind::Max => "maxpool",
            Op::Pool(_) => "avgpool",
            Op::GlobalAvgPool(_) => "global_avgpool",
            Op::Linear(_) => "linear",
            Op::ScaleAdd(_) => "scale_add",
            Op::Softmax(_) => "softmax",
        }
    }
}

/// Output size of a convolution or pooling window along one axis, PyTorch's formula, or `None` when the
/// input is too small to produce any output.
pub fn out_size(
    input: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    ceil_mode: bool,
) -> Option<usize> {
    if input == 0 || stride == 0 {
        return None;
    }
    // Signed: in ceil mode a window larger than the padded input still gives one output.
    let span = (input + 2 * pad) as i64 - kernel as i64;
    let stride = stride as i64;
    let mut out = if ceil_mode {
        span.div_euclid(stride) + i64::from(span.rem_euclid(stride) != 0) + 1
    } else {
        span.div_euclid(stride) + 1
    };
    // PyTorch: in ceil mode the last window must start inside the input or left padding.
    if ceil_mode && out > 1 && (out - 1) * stride >= (input + pad) as i64 {
        out -= 1;
    }
    usize::try_from(out).ok().filter(|&o| o >= 1)
}

#[cfg(test)]
mod tests {
    use super::out_size;

    #[test]
    fn output_sizes_follow_pytorch() {
        // conv / pool without ceil: floor((H + 2p - k) / s) + 1; nothing when the window does not fit.
        assert_eq!(out_size(224, 7, 2, 3, false), Some(112));
        assert_eq!(out_size(7, 3, 2, 1, false), Some(4));
        assert_eq!(out_size(1, 3, 2, 1, false), Some(1));
        assert_eq!(out_size(1, 3, 1, 0, false), None);
        // AvgPool2d(2, 2, ceil_mode=True): ceil(H / 2), one output even for a 1x1 input.
        assert_eq!(out_size(7, 2, 2, 0, true), Some(4));
        assert_eq!(out_size(8, 2, 2, 0, true), Some(4));
        assert_eq!(out_size(1, 2, 2, 0, true), Some(1));
        // MaxPool2d(3, 2, 1, ceil_mode=True): 6 -> 4 and 5 -> 3 (checked against PyTorch).
        assert_eq!(out_size(6, 3, 2, 1, true), Some(4));
        assert_eq!(out_size(5, 3, 2, 1, true), Some(3));
        assert_eq!(out_size(0, 1, 1, 0, false), None);
    }
}
