//! Builds the [`Graph`] of a [`Res2NetConfig`] for one input size, pulling every parameter by its
//! checkpoint key from a [`ParamSource`] and folding BatchNorm into the convolution before it.
//!
//! This walk is the single description of the network: the same code lists the expected checkpoint keys
//! (with [`ShapeOnly`]), counts parameters and FLOPs, and validates a checkpoint.
//!
//! Chunk and concatenation are views. The blocks lay their buffers out so that every 3x3 conv reads its
//! chunk (plus, fused, the previous chunk's output) and writes its output where the final 1x1 conv reads
//! one contiguous run of channels:
//! - official normal block: `T = [x0 .. x(s-1) | y0 .. y(s-2)]`; conv1 writes `x`, conv3 reads
//!   `[x(s-1), y0 .. y(s-2)]` with its weight columns rotated to that order;
//! - official stage block: the 3x3 convs are independent, so they run as one grouped conv writing
//!   `[y0 .. y(s-2)]`, and the average-pooled last chunk lands right after them;
//! - seed block: `T = [x1 .. x(s-1), x0 | y1 .. y(s-1)]`; conv1's output channels are rotated so the
//!   pass-through chunk `x0` sits right before the outputs and conv3 reads `[x0, y1 .. y(s-1)]` as is.

use super::ops::*;
use super::{Graph, Node};
use crate::arch::{Flavour, Res2NetConfig, Stem};
use crate::error::{Error, Result};

/// BatchNorm epsilon of every published model and of PyTorch's default.
const BN_EPS: f64 = 1e-5;
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
    let mut b = Builder {
        cfg,
        values: src.has_values(),
        src,
        tensors: Vec::new(),
        nodes: Vec::new(),
    };
    let input = b.tensor("input", Shape::new(3, h, w));
    let mut stage_outputs = Vec::new();
    let mut x = b.stem(input)?;
    stage_outputs.push(("stem".to_string(), x));
    for stage in 0..4 {
        for block in 0..cfg.layers[stage] {
            let stride = if block == 0 && stage > 0 { 2 } else { 1 };
            let name = format!("layer{}.{block}", stage + 1);
            x = match cfg.flavour {
                Flavour::Official => b.official_block(&name, stage, x, stride)?,
                Flavour::Seed => b.seed_block(&name, stage, x, stride)?,
            };
        }
        stage_outputs.push((format!("layer{}", stage + 1), x));
    }
    let features = x;
    let (logits, probs) = b.head(x)?;
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

/// What a convolution module looks like in the checkpoint.
struct ConvSpec<'k> {
    key: &'k str,
    /// BatchNorm module that follows, folded into the conv.
    bn: Option<&'k str>,
    bias: bool,
    cin: usize,
    cout: usize,
    kernel: usize,
    groups: usize,
}

struct Builder<'a> {
    cfg: &'a Res2NetConfig,
    src: &'a mut dyn ParamSource,
    values: bool,
    tensors: Vec<TensorInfo>,
    nodes: Vec<Node>,
}

fn full(t: TensorId, shape: Shape) -> View {
    View {
        tensor: t,
        c0: 0,
        channels: shape.c,
    }
}

fn slice(t: TensorId, c0: usize, channels: usize) -> View {
    View {
        tensor: t,
        c0,
        channels,
    }
}

impl Builder<'_> {
    fn tensor(&mut self, name: &str, shape: Shape) -> TensorId {
        self.tensors.push(TensorInfo {
            name: name.to_string(),
            shape,
        });
        TensorId(self.tensors.len() - 1)
    }

    fn shape(&self, t: TensorId) -> Shape {
        self.tensors[t.0].shape
    }

    fn push(&mut self, name: &str, op: Op) {
        self.nodes.push(Node {
            name: name.to_string(),
            op,
        });
    }

    /// Spatial output size of a window op, or an input error when the input is too small for it.
    fn out_hw(
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

    /// Loads a conv's weight (and bias) and folds the BatchNorm that follows it.
    fn load_conv(&mut self, spec: &ConvSpec) -> Result<(Vec<f32>, Vec<f32>)> {
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
        if let Some(bn) = spec.bn {
            let (scale, shift) = self.load_bn(bn, spec.cout)?;
            if self.values {
                let per_out = weight.len() / spec.cout;
                for o in 0..spec.cout {
                    for v in &mut weight[o * per_out..(o + 1) * per_out] {
                        *v = (f64::from(*v) * scale[o]) as f32;
                    }
                    bias[o] = (f64::from(bias[o]) * scale[o] + shift[o]) as f32;
                }
                // Finite parameters can still fold to NaN or infinity: a negative running_var under
                // the square root, or a huge gamma over a tiny variance.
                let bad = (0..spec.cout).find(|&o| {
                    !bias[o].is_finite()
                        || weight[o * per_out..(o + 1) * per_out]
                            .iter()
                            .any(|v| !v.is_finite())
                });
                if let Some(o) = bad {
                    return Err(Error::tensor(
                        format!("BatchNorm '{bn}' folded into '{}'", spec.key),
                        "finite folded weights (running_var >= 0, gamma / sqrt(running_var + 1e-5) within f32)",
                        format!(
                            "a non-finite value in output channel {o} (scale {:e}, shift {:e})",
                            scale[o], shift[o]
                        ),
                    ));
                }
            }
        }
        Ok((weight, bias))
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

    /// Adds a conv op reading `src` (plus `src_add`) and writing `dst`.
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        name: &str,
        spec: &ConvSpec,
        src: View,
        src_add: Option<View>,
        dst: View,
        residual: Option<View>,
        stride: usize,
        act: Activation,
    ) -> Result<()> {
        let (weight, bias) = self.load_conv(spec)?;
        self.conv_with(
            name, weight, bias, spec, src, src_add, dst, residual, stride, act,
        );
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn conv_with(
        &mut self,
        name: &str,
        weight: Vec<f32>,
        bias: Vec<f32>,
        spec: &ConvSpec,
        src: View,
        src_add: Option<View>,
        dst: View,
        residual: Option<View>,
        stride: usize,
        act: Activation,
    ) {
        self.push(
            name,
            Op::Conv(Conv {
                src,
                src_add,
                dst,
                residual,
                weight,
                bias,
                kernel: (spec.kernel, spec.kernel),
                stride,
                pad: spec.kernel / 2,
                groups: spec.groups,
                act,
            }),
        );
    }

    /// A conv into a fresh tensor of its own.
    fn conv_new(
        &mut self,
        name: &str,
        spec: &ConvSpec,
        src: View,
        stride: usize,
        act: Activation,
    ) -> Result<TensorId> {
        let s = self.shape(src.tensor);
        let (h, w) = self.out_hw(name, s, spec.kernel, stride, spec.kernel / 2, false)?;
        let t = self.tensor(name, Shape::new(spec.cout, h, w));
        self.conv(
            name,
            spec,
            src,
            None,
            full(t, self.shape(t)),
            None,
            stride,
            act,
        )?;
        Ok(t)
    }

    #[allow(clippy::too_many_arguments)]
    fn pool_new(
        &mut self,
        name: &str,
        src: View,
        kind: PoolKind,
        kernel: usize,
        stride: usize,
        pad: usize,
        ceil_mode: bool,
    ) -> Result<TensorId> {
        let s = self.shape(src.tensor);
        let (h, w) = self.out_hw(name, s, kernel, stride, pad, ceil_mode)?;
        let t = self.tensor(name, Shape::new(src.channels, h, w));
        self.push(
            name,
            Op::Pool(Pool {
                src,
                dst: full(t, self.shape(t)),
                kind,
                kernel,
                stride,
                pad,
                ceil_mode,
            }),
        );
        Ok(t)
    }

    fn stem(&mut self, input: TensorId) -> Result<TensorId> {
        let relu = Activation::Relu;
        let x = full(input, self.shape(input));
        let conv = match self.cfg.stem {
            Stem::Conv7 { channels } => {
                let spec = ConvSpec {
                    key: "conv1",
                    bn: Some("bn1"),
                    bias: false,
                    cin: 3,
                    cout: channels,
                    kernel: 7,
                    groups: 1,
                };
                self.conv_new("conv1", &spec, x, 2, relu)?
            }
            Stem::Deep { mid, channels } => {
                let s0 = ConvSpec {
                    key: "conv1.0",
                    bn: Some("conv1.1"),
                    bias: false,
                    cin: 3,
                    cout: mid,
                    kernel: 3,
                    groups: 1,
                };
                let a = self.conv_new("conv1.0", &s0, x, 2, relu)?;
                let s1 = ConvSpec {
                    key: "conv1.3",
                    bn: Some("conv1.4"),
                    bias: false,
                    cin: mid,
                    cout: mid,
                    kernel: 3,
                    groups: 1,
                };
                let b = self.conv_new("conv1.3", &s1, full(a, self.shape(a)), 1, relu)?;
                let s2 = ConvSpec {
                    key: "conv1.6",
                    bn: Some("bn1"),
                    bias: false,
                    cin: mid,
                    cout: channels,
                    kernel: 3,
                    groups: 1,
                };
                self.conv_new("conv1.6", &s2, full(b, self.shape(b)), 1, relu)?
            }
        };
        let v = full(conv, self.shape(conv));
        self.pool_new("maxpool", v, PoolKind::Max, 3, 2, 1, false)
    }

    /// The shortcut of a block: the input itself, or the downsample path.
    fn shortcut(&mut self, name: &str, x: TensorId, cout: usize, stride: usize) -> Result<View> {
        let s = self.shape(x);
        if stride == 1 && s.c == cout {
            return Ok(full(x, s));
        }
        let seed = self.cfg.flavour == Flavour::Seed;
        let mut src = full(x, s);
        let mut conv_key = format!("{name}.downsample.0");
        let mut bn_key = format!("{name}.downsample.1");
        let mut conv_stride = stride;
        if self.cfg.avg_down {
            if stride > 1 {
                let p = self.pool_new(
                    &format!("{name}.downsample.0"),
                    src,
                    PoolKind::Avg {
                        count_include_pad: false,
                    },
                    stride,
                    stride,
                    0,
                    true,
                )?;
                src = full(p, self.shape(p));
            }
            conv_key = format!("{name}.downsample.1");
            bn_key = format!("{name}.downsample.2");
            conv_stride = 1;
        }
        let spec = ConvSpec {
            key: &conv_key,
            bn: Some(&bn_key),
            bias: seed,
            cin: s.c,
            cout,
            kernel: 1,
            groups: 1,
        };
        let t = self.conv_new(&conv_key, &spec, src, conv_stride, Activation::None)?;
        Ok(full(t, self.shape(t)))
    }

    /// conv3 (+ SE) + shortcut + ReLU: the end every block shares. `cat` is the view conv3 reads.
    fn block_end(
        &mut self,
        name: &str,
        cat: View,
        weight_cols: Option<(usize, usize)>,
        shortcut: View,
        cout: usize,
    ) -> Result<TensorId> {
        let s = self.shape(cat.tensor);
        let out = self.tensor(name, Shape::new(cout, s.h, s.w));
        let key = format!("{name}.conv3");
        let bn = format!("{name}.bn3");
        let spec = ConvSpec {
            key: &key,
            bn: Some(&bn),
            bias: self.cfg.flavour == Flavour::Seed,
            cin: cat.channels,
            cout,
            kernel: 1,
            groups: 1,
        };
        let (mut weight, bias) = self.load_conv(&spec)?;
        if let Some((chunk, s)) = weight_cols {
            weight = rotate_last_chunk_first(&weight, cout, chunk, s);
        }
        if !self.cfg.se {
            let dst = full(out, self.shape(out));
            self.conv_with(
                &key,
                weight,
                bias,
                &spec,
                cat,
                None,
                dst,
                Some(shortcut),
                1,
                Activation::Relu,
            );
            return Ok(out);
        }
        let pre = self.tensor(&key, Shape::new(cout, s.h, s.w));
        self.conv_with(
            &key,
            weight,
            bias,
            &spec,
            cat,
            None,
            full(pre, self.shape(pre)),
            None,
            1,
            Activation::None,
        );
        let se = self.cfg.se_channels(cout);
        let pooled = self.tensor(&format!("{name}.se.pool"), Shape::new(cout, 1, 1));
        self.push(
            &format!("{name}.se.pool"),
            Op::GlobalAvgPool(GlobalAvgPool {
                src: full(pre, self.shape(pre)),
                dst: full(pooled, self.shape(pooled)),
            }),
        );
        let hidden = self.linear(
            &format!("{name}.se.fc1"),
            pooled,
            se,
            true,
            Activation::Relu,
        )?;
        let gate = self.linear(
            &format!("{name}.se.fc2"),
            hidden,
            cout,
            true,
            Activation::Sigmoid,
        )?;
        self.push(
            &format!("{name}.se"),
            Op::ScaleAdd(ScaleAdd {
                src: full(pre, self.shape(pre)),
                scale: full(gate, self.shape(gate)),
                residual: Some(shortcut),
                dst: full(out, self.shape(out)),
                act: Activation::Relu,
            }),
        );
        Ok(out)
    }

    /// A linear layer over a `[K, 1, 1]` tensor; `conv_shaped` when the checkpoint stores it as a 1x1
    /// conv (the SE layers).
    fn linear(
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
        self.push(
            key,
            Op::Linear(Linear {
                src: full(src, self.shape(src)),
                dst: full(dst, self.shape(dst)),
                weight,
                bias,
                act,
            }),
        );
        Ok(dst)
    }

    fn official_block(
        &mut self,
        name: &str,
        stage: usize,
        x: TensorId,
        stride: usize,
    ) -> Result<TensorId> {
        let cfg = self.cfg;
        let (s, w, card) = (cfg.scale, cfg.chunk_width(stage), cfg.cardinality);
        let cout = cfg.stage_channels(stage);
        let xs = self.shape(x);
        let first = stride > 1 || xs.c != cout;
        let shortcut = self.shortcut(name, x, cout, stride)?;
        let relu = Activation::Relu;
        let c1 = format!("{name}.conv1");
        let b1 = format!("{name}.bn1");
        let spec1 = ConvSpec {
            key: &c1,
            bn: Some(&b1),
            bias: false,
            cin: xs.c,
            cout: w * s,
            kernel: 1,
            groups: 1,
        };
        let (oh, ow) = self.out_hw(name, xs, 3, stride, 1, false)?;
        let num_convs = (s - 1).max(1);
        let conv_key = |i: usize| (format!("{name}.convs.{i}"), format!("{name}.bns.{i}"));

        if first || s == 1 {
            // Stage block: independent strided 3x3 convs over the chunks, as one grouped conv.
            let a = self.tensor(&c1, Shape::new(w * s, xs.h, xs.w));
            self.conv(
                &c1,
                &spec1,
                full(x, xs),
                None,
                full(a, self.shape(a)),
                None,
                1,
                relu,
            )?;
            let cat = self.tensor(&format!("{name}.cat"), Shape::new(w * s, oh, ow));
            let (mut weight, mut bias) = (Vec::new(), Vec::new());
            for i in 0..num_convs {
                let (ck, bk) = conv_key(i);
                let spec = ConvSpec {
                    key: &ck,
                    bn: Some(&bk),
                    bias: false,
                    cin: w,
                    cout: w,
                    kernel: 3,
                    groups: card,
                };
                let (wi, bi) = self.load_conv(&spec)?;
                weight.extend(wi);
                bias.extend(bi);
            }
            let convs = format!("{name}.convs");
            let spec = ConvSpec {
                key: &convs,
                bn: None,
                bias: false,
                cin: w * num_convs,
                cout: w * num_convs,
                kernel: 3,
                groups: card * num_convs,
            };
            let src = slice(a, 0, w * num_convs);
            let dst = slice(cat, 0, w * num_convs);
            self.conv_with(
                &convs, weight, bias, &spec, src, None, dst, None, stride, relu,
            );
            if s > 1 {
                let pool = format!("{name}.pool");
                self.push(
                    &pool,
                    Op::Pool(Pool {
                        src: slice(a, (s - 1) * w, w),
                        dst: slice(cat, (s - 1) * w, w),
                        kind: PoolKind::Avg {
                            count_include_pad: true,
                        },
                        kernel: 3,
                        stride,
                        pad: 1,
                        ceil_mode: false,
                    }),
                );
            }
            return self.block_end(name, full(cat, self.shape(cat)), None, shortcut, cout);
        }

        // Normal block: T = [x0 .. x(s-1) | y0 .. y(s-2)].
        let t = self.tensor(
            &format!("{name}.cat"),
            Shape::new(w * (2 * s - 1), xs.h, xs.w),
        );
        self.conv(
            &c1,
            &spec1,
            full(x, xs),
            None,
            slice(t, 0, w * s),
            None,
            1,
            relu,
        )?;
        for i in 0..s - 1 {
            let (ck, bk) = conv_key(i);
            let spec = ConvSpec {
                key: &ck,
                bn: Some(&bk),
                bias: false,
                cin: w,
                cout: w,
                kernel: 3,
                groups: card,
            };
            let add = (i > 0).then(|| slice(t, (s + i - 1) * w, w));
            self.conv(
                &ck,
                &spec,
                slice(t, i * w, w),
                add,
                slice(t, (s + i) * w, w),
                None,
                1,
                relu,
            )?;
        }
        self.block_end(
            name,
            slice(t, (s - 1) * w, s * w),
            Some((w, s)),
            shortcut,
            cout,
        )
    }

    fn seed_block(
        &mut self,
        name: &str,
        stage: usize,
        x: TensorId,
        stride: usize,
    ) -> Result<TensorId> {
        let cfg = self.cfg;
        let (s, w, groups) = (cfg.scale, cfg.chunk_width(stage), cfg.cardinality);
        let cout = cfg.stage_channels(stage);
        let xs = self.shape(x);
        let shortcut = self.shortcut(name, x, cout, stride)?;
        let relu = Activation::Relu;
        let c1 = format!("{name}.conv1");
        let b1 = format!("{name}.bn1");
        let spec1 = ConvSpec {
            key: &c1,
            bn: Some(&b1),
            bias: true,
            cin: xs.c,
            cout: w * s,
            kernel: 1,
            groups: 1,
        };
        let (oh, ow) = self.out_hw(name, xs, 1, stride, 0, false)?;
        let (mut weight, mut bias) = self.load_conv(&spec1)?;
        if s == 1 {
            let a = self.tensor(&c1, Shape::new(w, oh, ow));
            self.conv_with(
                &c1,
                weight,
                bias,
                &spec1,
                full(x, xs),
                None,
                full(a, self.shape(a)),
                None,
                stride,
                relu,
            );
            return self.block_end(name, full(a, self.shape(a)), None, shortcut, cout);
        }
        // T = [x1 .. x(s-1), x0 | y1 .. y(s-1)]: rotate conv1's output chunks left by one.
        if self.values {
            weight = rotate_rows_first_chunk_last(&weight, w, s);
            bias = rotate_rows_first_chunk_last(&bias, w, s);
        }
        let t = self.tensor(&format!("{name}.cat"), Shape::new(w * (2 * s - 1), oh, ow));
        self.conv_with(
            &c1,
            weight,
            bias,
            &spec1,
            full(x, xs),
            None,
            slice(t, 0, w * s),
            None,
            stride,
            relu,
        );
        for k in 1..s {
            let ck = format!("{name}.conv2.{}", k - 1);
            let bk = format!("{name}.bn2.{}", k - 1);
            let spec = ConvSpec {
                key: &ck,
                bn: Some(&bk),
                bias: true,
                cin: w,
                cout: w,
                kernel: 3,
                groups,
            };
            let add = (k > 1).then(|| slice(t, (s + k - 2) * w, w));
            self.conv(
                &ck,
                &spec,
                slice(t, (k - 1) * w, w),
                add,
                slice(t, (s - 1 + k) * w, w),
                None,
                1,
                relu,
            )?;
        }
        self.block_end(name, slice(t, (s - 1) * w, s * w), None, shortcut, cout)
    }

    fn head(&mut self, x: TensorId) -> Result<(TensorId, TensorId)> {
        let c = self.shape(x).c;
        let pooled = self.tensor("global_pool", Shape::new(c, 1, 1));
        self.push(
            "global_pool",
            Op::GlobalAvgPool(GlobalAvgPool {
                src: full(x, self.shape(x)),
                dst: full(pooled, self.shape(pooled)),
            }),
        );
        let logits = self.linear("fc", pooled, self.cfg.num_classes, false, Activation::None)?;
        let probs = self.tensor("probs", self.shape(logits));
        self.push(
            "softmax",
            Op::Softmax(Softmax {
                src: full(logits, self.shape(logits)),
                dst: full(probs, self.shape(probs)),
            }),
        );
        Ok((logits, probs))
    }
}

/// Rows of a `[s * chunk, ...]` matrix, reordered so chunk 0 moves to the end.
fn rotate_rows_first_chunk_last<T: Copy>(rows: &[T], chunk: usize, s: usize) -> Vec<T> {
    let per_chunk = rows.len() / s;
    debug_assert_eq!(per_chunk % chunk, 0);
    let mut out = Vec::with_capacity(rows.len());
    out.extend_from_slice(&rows[per_chunk..]);
    out.extend_from_slice(&rows[..per_chunk]);
    out
}

/// Columns of a `[rows, s * chunk]` matrix, reordered so the last chunk of columns comes first.
fn rotate_last_chunk_first(weight: &[f32], rows: usize, chunk: usize, s: usize) -> Vec<f32> {
    if weight.is_empty() {
        return Vec::new();
    }
    let cols = chunk * s;
    let mut out = Vec::with_capacity(weight.len());
    for r in 0..rows {
        let row = &weight[r * cols..(r + 1) * cols];
        out.extend_from_slice(&row[(s - 1) * chunk..]);
        out.extend_from_slice(&row[..(s - 1) * chunk]);
    }
    out
}

/// Parameters of a network by kind, counted from the keys the builder asks for.
pub fn count_params(keys: &[(String, Vec<usize>)]) -> u64 {
    keys.iter()
        .filter(|(k, _)| !k.ends_with(".running_mean") && !k.ends_with(".running_var"))
        .map(|(_, s)| s.iter().product::<usize>() as u64)
        .sum()
}
