//! The graph builder's core: tensors and nodes, parameters fetched by checkpoint key with BatchNorm
//! folded into the convolution before it, and one method per kind of op. The network walks
//! (`resnet.rs`, `dla.rs`) and the block flavours (`official.rs`, `seed.rs`) are written in terms of
//! these.

use super::ops::*;
use super::{build::ParamSource, Node};
use crate::error::{Error, Result};

/// BatchNorm epsilon of every published model and of PyTorch's default.
const BN_EPS: f64 = 1e-5;

/// A convolution as the checkpoint states it: its key, shape, bias, the BatchNorm folded into it, and
/// how it runs (stride, activation). Built with named steps so a call site reads like the module
/// definition it mirrors:
///
/// ```ignore
/// ConvSpec::new("layer1.0.conv1", 64, 104, 1).bn("layer1.0.bn1").relu()
/// ```
#[derive(Clone, Debug)]
pub(super) struct ConvSpec {
    pub key: String,
    /// BatchNorm module that follows, folded into the conv.
    pub bn: Option<String>,
    /// Whether the checkpoint holds a `.bias` for the conv itself.
    pub bias: bool,
    pub cin: usize,
    pub cout: usize,
    pub kernel: usize,
    pub groups: usize,
    pub stride: usize,
    pub act: Activation,
}

impl ConvSpec {
    /// A `kernel`x`kernel` conv from `cin` to `cout` channels: no bias, no BatchNorm, stride 1,
    /// one group, padding `kernel / 2`, no activation.
    pub fn new(key: impl Into<String>, cin: usize, cout: usize, kernel: usize) -> Self {
        ConvSpec {
            key: key.into(),
            bn: None,
            bias: false,
            cin,
            cout,
            kernel,
            groups: 1,
            stride: 1,
            act: Activation::None,
        }
    }

    /// Folds the BatchNorm module `key` into the conv.
    pub fn bn(mut self, key: impl Into<String>) -> Self {
        self.bn = Some(key.into());
        self
    }

    /// Whether the conv has a bias of its own in the checkpoint.
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    pub fn relu(self) -> Self {
        self.act(Activation::Relu)
    }

    pub fn act(mut self, act: Activation) -> Self {
        self.act = act;
        self
    }

    fn pad(&self) -> usize {
        self.kernel / 2
    }
}

/// Where a conv reads and writes: `dst = act(conv(src + add) + bias + residual)`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Io {
    pub src: View,
    pub add: Option<View>,
    pub dst: View,
    pub residual: Option<View>,
}

impl Io {
    pub fn new(src: View, dst: View) -> Self {
        Io {
            src,
            add: None,
            dst,
            residual: None,
        }
    }

    /// Adds `view` to the input while reading it (the hierarchical add of a Res2Net block).
    pub fn add(mut self, view: Option<View>) -> Self {
        self.add = view;
        self
    }

    /// Adds `view` to the result before the activation (a residual connection).
    pub fn residual(mut self, view: View) -> Self {
        self.residual = Some(view);
        self
    }
}

/// A conv's parameters after folding: `[cout, cin / groups, k, k]` and `[cout]`.
pub(super) struct Folded {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

pub(super) struct Builder<'a> {
    src: &'a mut dyn ParamSource,
    /// Whether the source holds values (a shape-only source returns empty vectors).
    pub values: bool,
    pub tensors: Vec<TensorInfo>,
    pub nodes: Vec<Node>,
}

/// All channels of `t`.
pub(super) fn full(t: TensorId, shape: Shape) -> View {
    View {
        tensor: t,
        c0: 0,
        channels: shape.c,
    }
}

/// `channels` channels of `t` from `c0`.
pub(super) fn slice(t: TensorId, c0: usize, channels: usize) -> View {
    View {
        tensor: t,
        c0,
        channels,
    }
}

impl<'a> Builder<'a> {
    pub fn new(src: &'a mut dyn ParamSource) -> Self {
        Builder {
            values: src.has_values(),
            src,
            tensors: Vec::new(),
            nodes: Vec::new(),
        }
    }

    pub fn tensor(&mut self, name: &str, shape: Shape) -> TensorId {
        self.tensors.push(TensorInfo {
            name: name.to_string(),
            shape,
        });
        TensorId(self.tensors.len() - 1)
    }

    pub fn shape(&self, t: TensorId) -> Shape {
        self.tensors[t.0].shape
    }

    /// All channels of `t`.
    pub fn all(&self, t: TensorId) -> View {
        full(t, self.shape(t))
    }

    pub fn push(&mut self, name: &str, op: Op) {
        self.nodes.push(Node {
            name: name.to_string(),
            op,
        });
    }

    /// Spatial output size of a window op, or an input error when the input is too small for it.
    pub fn out_hw(
        &self,
        name: &str,
        s: Shape,
        kernel: usize,
        stride: usize,
        pad: usize,
        ceil: bool,
    ) -> Result<(usize, usize)> {
        match (
            out_size(s.h, kernel, stride, pad, ceil),
            out_size(s.w, kernel, stride, pad, ceil),
        ) {
            (Some(h), Some(w)) => Ok((h, w)),
            _ => Err(Error::input(
                "size",
                format!("at least {kernel}x{kernel} (with padding {pad}) at {name}"),
                format!("{}x{} there", s.h, s.w),
            )),
        }
    }

    /// Spatial size of `spec`'s output over `src`.
    pub fn conv_hw(&self, spec: &ConvSpec, src: View) -> Result<(usize, usize)> {
        let s = self.shape(src.tensor);
        self.out_hw(&spec.key, s, spec.kernel, spec.stride, spec.pad(), false)
    }

    /// Loads a conv's weight (and bias) and folds the BatchNorm that follows it.
    pub fn load(&mut self, spec: &ConvSpec) -> Result<Folded> {
        let k = spec.kernel;
        let mut weight = self.src.fetch(
            &format!("{}.weight", spec.key),
            &[spec.cout, spec.cin / spec.groups, k, k],
        )?;
        let mut bias = if spec.bias {
            self.src
                .fetch(&format!("{}.bias", spec.key), &[spec.cout])?
        } else if self.values {
            vec![0.0; spec.cout]
        } else {
            Vec::new()
        };
        if let Some(bn) = &spec.bn {
            let (scale, shift) = self.load_bn(bn, spec.cout)?;
            if self.values {
                fold(spec, bn, &mut weight, &mut bias, &scale, &shift)?;
            }
        }
        Ok(Folded { weight, bias })
    }

    /// BatchNorm in eval mode as `y = x * scale + shift`.
    fn load_bn(&mut self, key: &str, c: usize) -> Result<(Vec<f64>, Vec<f64>)> {
        let gamma = self.src.fetch(&format!("{key}.weight"), &[c])?;
        let beta = self.src.fetch(&format!("{key}.bias"), &[c])?;
        let mean = self.src.fetch(&format!("{key}.running_mean"), &[c])?;
        let var = self.src.fetch(&format!("{key}.running_var"), &[c])?;
        if !self.values {
            return Ok((Vec::new(), Vec::new()));
        }
        let scale: Vec<f64> = (0..c)
            .map(|i| f64::from(gamma[i]) / (f64::from(var[i]) + BN_EPS).sqrt())
            .collect();
        let shift = (0..c)
            .map(|i| f64::from(beta[i]) - f64::from(mean[i]) * scale[i])
            .collect();
        Ok((scale, shift))
    }

    /// Adds the conv op of `spec` with already loaded (and possibly rearranged) parameters; the node
    /// is named `name`.
    pub fn emit(&mut self, name: &str, spec: &ConvSpec, folded: Folded, io: Io) {
        self.push(
            name,
            Op::Conv(Conv {
                src: io.src,
                src_add: io.add,
                dst: io.dst,
                residual: io.residual,
                weight: folded.weight,
                bias: folded.bias,
                kernel: (spec.kernel, spec.kernel),
                stride: spec.stride,
                pad: spec.pad(),
                groups: spec.groups,
                act: spec.act,
            }),
        );
    }

    /// Loads `spec` and adds its conv op, named by its key.
    pub fn conv(&mut self, spec: &ConvSpec, io: Io) -> Result<()> {
        let folded = self.load(spec)?;
        self.emit(&spec.key, spec, folded, io);
        Ok(())
    }

    /// A conv into a fresh tensor of its own, named by its key.
    pub fn conv_new(&mut self, spec: &ConvSpec, src: View) -> Result<TensorId> {
        let (h, w) = self.conv_hw(spec, src)?;
        let t = self.tensor(&spec.key, Shape::new(spec.cout, h, w));
        let dst = self.all(t);
        self.conv(spec, Io::new(src, dst))?;
        Ok(t)
    }

    /// A pooling op from `src` into `dst`.
    pub fn pool(&mut self, name: &str, window: Window, src: View, dst: View) {
        self.push(
            name,
            Op::Pool(Pool {
                src,
                dst,
                kind: window.kind,
                kernel: window.kernel,
                stride: window.stride,
                pad: window.pad,
                ceil_mode: window.ceil_mode,
            }),
        );
    }

    /// Spatial output size of `window` over `src`.
    pub fn pool_hw(&self, name: &str, window: Window, src: View) -> Result<(usize, usize)> {
        let s = self.shape(src.tensor);
        self.out_hw(
            name,
            s,
            window.kernel,
            window.stride,
            window.pad,
            window.ceil_mode,
        )
    }

    /// A pooling op into a fresh tensor of its own.
    pub fn pool_new(&mut self, name: &str, window: Window, src: View) -> Result<TensorId> {
        let (h, w) = self.pool_hw(name, window, src)?;
        let t = self.tensor(name, Shape::new(src.channels, h, w));
        let dst = self.all(t);
        self.pool(name, window, src, dst);
        Ok(t)
    }

    /// The pixels of `src` that a 1x1 conv at `stride` reads, picked into a tensor of their own (a
    /// max pool over a 1x1 window, node `name`), so that the conv runs at stride 1, where the
    /// pointwise kernels run it (on lavapipe a 1x1 stride-2 conv took 1.6 times as long as the pick
    /// and the stride-1 conv). A view picked before at the same stride is reused: the seed's blocks
    /// read their input at stride 2 in both conv1 and the downsample.
    pub fn pick(&mut self, name: &str, src: View, stride: usize) -> Result<View> {
        let window = Window::max(1, stride, 0);
        let earlier = self.nodes.iter().find_map(|n| match &n.op {
            Op::Pool(p)
                if p.src == src
                    && (p.kind, p.kernel, p.stride, p.pad, p.ceil_mode)
                        == (window.kind, 1, stride, 0, window.ceil_mode) =>
            {
                Some(p.dst)
            }
            _ => None,
        });
        match earlier {
            Some(dst) => Ok(dst),
            None => {
                let t = self.pool_new(name, window, src)?;
                Ok(self.all(t))
            }
        }
    }

    /// Global average pooling of `src` into a fresh `[C, 1, 1]` tensor.
    pub fn global_pool(&mut self, name: &str, src: View) -> TensorId {
        let t = self.tensor(name, Shape::new(src.channels, 1, 1));
        let dst = self.all(t);
        self.push(name, Op::GlobalAvgPool(GlobalAvgPool { src, dst }));
        t
    }

    /// A linear layer over a `[K, 1, 1]` tensor; `conv_shaped` when the checkpoint stores it as a 1x1
    /// conv (SE layers, the DLA classifier).
    pub fn linear(
        &mut self,
        key: &str,
        src: TensorId,
        m: usize,
        conv_shaped: bool,
        act: Activation,
    ) -> Result<TensorId> {
        let k = self.shape(src).c;
        let shape: Vec<usize> = if conv_shaped {
            vec![m, k, 1, 1]
        } else {
            vec![m, k]
        };
        let weight = self.src.fetch(&format!("{key}.weight"), &shape)?;
        let bias = self.src.fetch(&format!("{key}.bias"), &[m])?;
        let dst = self.tensor(key, Shape::new(m, 1, 1));
        let op = Linear {
            src: self.all(src),
            dst: self.all(dst),
            weight,
            bias,
            act,
        };
        self.push(key, Op::Linear(op));
        Ok(dst)
    }

    /// Softmax over the channels of a `[C, 1, 1]` tensor, into a fresh tensor.
    pub fn softmax(&mut self, name: &str, src: TensorId) -> TensorId {
        let t = self.tensor(name, self.shape(src));
        let op = Softmax {
            src: self.all(src),
            dst: self.all(t),
        };
        self.push("softmax", Op::Softmax(op));
        t
    }
}

/// A pooling window.
#[derive(Clone, Copy, Debug)]
pub(super) struct Window {
    pub kind: PoolKind,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
    pub ceil_mode: bool,
}

impl Window {
    /// `MaxPool2d(kernel, stride, pad)`.
    pub fn max(kernel: usize, stride: usize, pad: usize) -> Self {
        Window {
            kind: PoolKind::Max,
            kernel,
            stride,
            pad,
            ceil_mode: false,
        }
    }

    /// `AvgPool2d(kernel, stride, pad)` with PyTorch's defaults (padding counted, floor mode).
    pub fn avg(kernel: usize, stride: usize, pad: usize) -> Self {
        Window {
            kind: PoolKind::Avg {
                count_include_pad: true,
            },
            ..Window::max(kernel, stride, pad)
        }
    }
}

/// Scales each output channel's weights and bias by the BatchNorm's `scale` and adds its `shift`.
fn fold(
    spec: &ConvSpec,
    bn: &str,
    weight: &mut [f32],
    bias: &mut [f32],
    scale: &[f64],
    shift: &[f64],
) -> Result<()> {
    let per_out = weight.len() / spec.cout;
    for o in 0..spec.cout {
        for v in &mut weight[o * per_out..(o + 1) * per_out] {
            *v = (f64::from(*v) * scale[o]) as f32;
        }
        bias[o] = (f64::from(bias[o]) * scale[o] + shift[o]) as f32;
    }
    // Finite parameters can still fold to NaN or infinity: a negative running_var under the square
    // root, or a huge gamma over a tiny variance.
    let bad = (0..spec.cout).find(|&o| {
        !bias[o].is_finite()
            || weight[o * per_out..(o + 1) * per_out]
                .iter()
                .any(|v| !v.is_finite())
    });
    match bad {
        None => Ok(()),
        Some(o) => Err(Error::tensor(
            format!("BatchNorm '{bn}' folded into '{}'", spec.key),
            "finite folded weights (running_var >= 0, gamma / sqrt(running_var + 1e-5) within f32)",
            format!(
                "a non-finite value in output channel {o} (scale {:e}, shift {:e})",
                scale[o], shift[o]
            ),
        )),
    }
}
