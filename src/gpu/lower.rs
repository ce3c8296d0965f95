//! Lowering: one graph node -> one dispatch (pipeline key, uniform bytes, packed parameters, workgroup
//! counts). Pure CPU work, done once per session; it also checks every shape the kernels rely on, so a
//! malformed hand-built graph is an error here instead of wrong numbers later.
//!
//! The uniform structs below mirror the WGSL structs field by field (all `u32`, padded to 16 bytes).
//! A view becomes (element offset of image 0's first channel in the arena, per-image stride); the image
//! index is the dispatch's z, so the same uniforms serve every batch chunk.

use bytemuck::{Pod, Zeroable};

use super::kernels::{KernelKey, Shader};
use super::plan::ArenaPlan;
use super::tune::{ConvKernel, ConvPolicy};
use crate::error::{Error, Result};
use crate::graph::{
    out_size, Activation, Conv, GlobalAvgPool, Graph, Linear, Node, Op, Pool, PoolKind, ScaleAdd,
    Softmax, View,
};

/// Output channels per invocation of the direct conv kernel (the packing unit of its weights).
const COUT_BLOCK: usize = 4;
/// Output pixels per invocation of the direct conv kernel.
const PIX_BLOCK: usize = 4;
/// Output channels and pixels per invocation of the 1x1 conv kernel.
const COUT_BLOCK_1X1: usize = 8;
const PIX_BLOCK_1X1: usize = 8;
/// Lanes of the subgroup GEMM kernels (one subgroup per workgroup).
const GEMM_LANES: usize = 8;
/// Invocations per workgroup along x and y of the conv kernels (`@workgroup_size(8, 8)`).
const CONV_WG: usize = 8;
/// Invocations per workgroup of the one-dimensional kernels (`@workgroup_size(64)`).
const FLAT_WG: usize = 64;
/// Workgroups one dispatch dimension may have under WebGPU's default limits.
const MAX_GROUPS: usize = 65535;

/// Everything needed to record one op.
#[derive(Clone, Debug)]
pub(crate) struct Lowered {
    pub key: KernelKey,
    pub uniform: Vec<u8>,
    /// Contents of the op's read-only parameter buffer (weights then biases), if it has one.
    pub params: Option<Vec<f32>>,
    /// Workgroups along x and y; z is the number of images in the chunk.
    pub groups: (u32, u32),
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct ConvParams {
    src_off: u32,
    src_bs: u32,
    add_off: u32,
    add_bs: u32,
    dst_off: u32,
    dst_bs: u32,
    res_off: u32,
    res_bs: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    cin_g: u32,
    cout_g: u32,
    cout_blocks: u32,
    groups: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    x_blocks: u32,
    bias_off: u32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct PoolParams {
    src_off: u32,
    src_bs: u32,
    dst_off: u32,
    dst_bs: u32,
    channels: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    kernel: u32,
    stride: u32,
    pad: u32,
    groups_x: u32,
    _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct GlobalPoolParams {
    src_off: u32,
    src_bs: u32,
    dst_off: u32,
    dst_bs: u32,
    channels: u32,
    plane: u32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct LinearParams {
    src_off: u32,
    src_bs: u32,
    dst_off: u32,
    dst_bs: u32,
    m: u32,
    k: u32,
    bias_off: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct ScaleAddParams {
    src_off: u32,
    src_bs: u32,
    scale_off: u32,
    scale_bs: u32,
    res_off: u32,
    res_bs: u32,
    dst_off: u32,
    dst_bs: u32,
    channels: u32,
    plane: u32,
    groups_x: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct SoftmaxParams {
    src_off: u32,
    src_bs: u32,
    dst_off: u32,
    dst_bs: u32,
    channels: u32,
    _pad: [u32; 3],
}

/// Builds errors that name the node.
struct Ctx<'a> {
    graph: &'a Graph,
    plan: &'a ArenaPlan,
    node: &'a str,
}

impl Ctx<'_> {
    fn err(&self, what: impl std::fmt::Display) -> Error {
        Error::Config(format!("graph node {}: {what}", self.node))
    }

    fn u32(&self, v: impl TryInto<u32>, what: &str) -> Result<u32> {
        v.try_into()
            .map_err(|_| self.err(format!("{what} does not fit in 32 bits")))
    }

    /// (offset, batch stride) of a view, after checking it lies inside its tensor.
    fn view(&self, v: &View, what: &str) -> Result<(u32, u32)> {
        let info = self.graph.tensors.get(v.tensor.0).ok_or_else(|| {
            self.err(format!(
                "{what} names tensor {} which does not exist",
                v.tensor.0
            ))
        })?;
        let s = info.shape;
        if v.channels == 0 || v.c0 + v.channels > s.c {
            return Err(self.err(format!(
                "{what} view channels {}..{} outside tensor {} with {} channels",
                v.c0,
                v.c0 + v.channels,
                info.name,
                s.c
            )));
        }
        let base = self.plan.offset(v.tensor).ok_or_else(|| {
            self.err(format!(
                "{what} tensor {} has no place in the arena",
                info.name
            ))
        })?;
        let off = base + (v.c0 * s.plane()) as u64;
        Ok((self.u32(off, what)?, self.u32(s.numel(), what)?))
    }

    /// (h, w) of the tensor behind a view.
    fn hw(&self, v: &View) -> (usize, usize) {
        let s = self.graph.shape(v.tensor);
        (s.h, s.w)
    }

    fn expect_hw(&self, v: &View, hw: (usize, usize), what: &str) -> Result<()> {
        let found = self.hw(v);
        if found != hw {
            return Err(self.err(format!(
                "{what} is {}x{}, expected {}x{}",
                found.0, found.1, hw.0, hw.1
            )));
        }
        Ok(())
    }

    fn expect_channels(&self, v: &View, channels: usize, what: &str) -> Result<()> {
        if v.channels != channels {
            return Err(self.err(format!(
                "{what} has {} channels, expected {channels}",
                v.channels
            )));
        }
        Ok(())
    }

    fn expect_len(&self, len: usize, expected: usize, what: &str) -> Result<()> {
        if len != expected {
            return Err(self.err(format!("{what} has {len} values, expected {expected}")));
        }
        Ok(())
    }
}

fn act_code(a: Activation) -> u32 {
    match a {
        Activation::None => 0,
        Activation::Relu => 1,
        Activation::Sigmoid => 2,
    }
}

/// (groups_x, groups_y) covering `groups` workgroups with a flat index `y * groups_x + x`.
fn flat_groups(groups: usize) -> (usize, usize) {
    let gx = groups.clamp(1, MAX_GROUPS);
    (gx, groups.div_ceil(gx).max(1))
}

/// The f16-weight variant of `shader` when the policy asks for f16 weights and every value of
/// `params` fits f16's range (an overflow to infinity would poison the whole output; such an op keeps
/// f32 weights).
fn weights_shader(shader: Shader, policy: &ConvPolicy, params: &[f32]) -> Shader {
    let fits = || params.iter().all(|v| v.abs() <= f32::from(half::f16::MAX));
    match shader.with_f16_weights() {
        Some(f16) if policy.f16_weights && fits() => f16,
        _ => shader,
    }
}

fn bytes<T: Pod>(v: &T) -> Vec<u8> {
    bytemuck::bytes_of(v).to_vec()
}

/// Lowers one node. `plan` gives every tensor's arena offset.
pub(crate) fn lower(
    graph: &Graph,
    node: &Node,
    plan: &ArenaPlan,
    policy: &ConvPolicy,
) -> Result<Lowered> {
    let cx = Ctx {
        graph,
        plan,
        node: &node.name,
    };
    for v in node.op.reads().iter().chain([&node.op.writes()]) {
        if v.tensor.0 >= graph.tensors.len() {
            return Err(cx.err(format!("names tensor {} which does not exist", v.tensor.0)));
        }
    }
    match &node.op {
        Op::Conv(c) => conv(&cx, c, policy),
        Op::Pool(p) => pool(&cx, p),
        Op::GlobalAvgPool(g) => global_pool(&cx, g),
        Op::Linear(l) => linear(&cx, l, policy),
        Op::ScaleAdd(s) => scale_add(&cx, s),
        Op::Softmax(s) => softmax(&cx, s),
    }
}

/// Repacks `[cout, cin/groups, kh, kw]` weights as `cb` output channels (one or two vec4s) per
/// (block, input channel, ky, kx), blocks never straddling a group and missing channels zero, then
/// the biases as `cb` values per block. Returns the data and the bias offset in vec4s.
fn pack_conv(c: &Conv, cb: usize) -> (Vec<f32>, usize) {
    let cout_g = c.cout() / c.groups;
    let blocks = cout_g.div_ceil(cb);
    let taps = c.cin() / c.groups * c.kernel.0 * c.kernel.1;
    let nblocks = c.groups * blocks;
    let bias_off = nblocks * taps * cb;
    let mut out = vec![0.0f32; bias_off + nblocks * cb];
    for g in 0..c.groups {
        for b in 0..blocks {
            let blk = g * blocks + b;
            for i in 0..cb {
                let co_l = b * cb + i;
                if co_l >= cout_g {
                    continue;
                }
                let co = g * cout_g + co_l;
                for t in 0..taps {
                    out[(blk * taps + t) * cb + i] = c.weight[co * taps + t];
                }
                out[bias_off + blk * cb + i] = c.bias[co];
            }
        }
    }
    (out, bias_off / 4)
}

/// Packs weights for `conv_gemm.wgsl`: per lane block of `block / 8` output channels (`block`-channel
/// blocks per group, 8 lane blocks each), `[tap][cin_g rounded up to cin_step][lane channels]`, zeros
/// where a channel does not exist; then the lane block's biases. `flat` (the kernel's `FLAT`): as if
/// the conv were 1x1 with `cin_g * taps` input channels, `[ci * taps + tap rounded up][lane channels]`.
/// Returns the data and the bias offset in vec4s.
fn pack_gemm(c: &Conv, block: usize, cin_step: usize, flat: bool) -> (Vec<f32>, usize) {
    let lane = block / GEMM_LANES;
    let kernel_taps = c.kernel.0 * c.kernel.1;
    // PyTorch's [cout][cin_g][kh][kw] is also [cout][cin_g * taps]: the flat reduction index.
    let (cin_g, taps) = if flat {
        (c.cin() / c.groups * kernel_taps, 1)
    } else {
        (c.cin() / c.groups, kernel_taps)
    };
    let cout_g = c.cout() / c.groups;
    let cin4 = cin_g.div_ceil(cin_step) * cin_step;
    let blocks = cout_g.div_ceil(block);
    let lane_blocks = c.groups * blocks * GEMM_LANES;
    let per_block = taps * cin4 * lane;
    let bias_off = lane_blocks * per_block;
    let mut out = vec![0.0f32; bias_off + lane_blocks * lane];
    for lb in 0..lane_blocks {
        let per_group = blocks * (GEMM_LANES);
        let g = lb / per_group;
        let first = (lb % per_group) * lane;
        for r in 0..lane {
            let co_l = first + r;
            if co_l >= cout_g {
                continue;
            }
            let co = g * cout_g + co_l;
            for ci in 0..cin_g {
                for t in 0..taps {
                    out[lb * per_block + (t * cin4 + ci) * lane + r] =
                        c.weight[(co * cin_g + ci) * taps + t];
                }
            }
            out[bias_off + lb * lane + r] = c.bias[co];
        }
    }
    (out, bias_off / 4)
}

fn conv(cx: &Ctx, c: &Conv, policy: &ConvPolicy) -> Result<Lowered> {
    let (kh, kw) = c.kernel;
    if c.groups == 0 || !c.cin().is_multiple_of(c.groups) || !c.cout().is_multiple_of(c.groups) {
        return Err(cx.err(format!(
            "{} input and {} output channels do not split into {} groups",
            c.cin(),
            c.cout(),
            c.groups
        )));
    }
    if kh == 0 || kw == 0 || c.stride == 0 {
        return Err(cx.err("conv kernel and stride must be at least 1"));
    }
    let (in_h, in_w) = cx.hw(&c.src);
    let out = (
        out_size(in_h, kh, c.stride, c.pad, false),
        out_size(in_w, kw, c.stride, c.pad, false),
    );
    let (Some(out_h), Some(out_w)) = out else {
        return Err(cx.err(format!(
            "input {in_h}x{in_w} is smaller than the {kh}x{kw} kernel"
        )));
    };
    cx.expect_hw(&c.dst, (out_h, out_w), "conv output")?;
    let cin_g = c.cin() / c.groups;
    let cout_g = c.cout() / c.groups;
    cx.expect_len(c.weight.len(), c.cout() * cin_g * kh * kw, "conv weight")?;
    cx.expect_len(c.bias.len(), c.cout(), "conv bias")?;

    let (src_off, src_bs) = cx.view(&c.src, "conv input")?;
    let (dst_off, dst_bs) = cx.view(&c.dst, "conv output")?;
    let (add_off, add_bs) = match &c.src_add {
        Some(a) => {
            cx.expect_channels(a, c.cin(), "conv src_add")?;
            cx.expect_hw(a, (in_h, in_w), "conv src_add")?;
            cx.view(a, "conv src_add")?
        }
        None => (0, 0),
    };
    let (res_off, res_bs) = match &c.residual {
        Some(r) => {
            cx.expect_channels(r, c.cout(), "conv residual")?;
            cx.expect_hw(r, (out_h, out_w), "conv residual")?;
            cx.view(r, "conv residual")?
        }
        None => (0, 0),
    };

    let pointwise = c.kernel == (1, 1) && c.stride == 1 && c.pad == 0;
    let row3 = c.kernel == (3, 3) && c.stride == 1 && c.pad == 1;
    let kernel = policy.choose(cout_g, pointwise, row3, out_w);
    let gemm = kernel.gemm_tile();
    let (cb, x_blocks, x_items, wg) = if kernel == ConvKernel::GemmRow3x3 {
        // 16-pixel segments per output row; two per workgroup.
        let segs = out_w.div_ceil(16);
        (32, segs, (out_h * segs).div_ceil(2), 1)
    } else if let Some((cb, pb)) = gemm {
        let x_blocks = (out_h * out_w).div_ceil(pb);
        (cb, x_blocks, x_blocks, 1)
    } else if pointwise {
        let x_blocks = (out_h * out_w).div_ceil(PIX_BLOCK_1X1);
        (COUT_BLOCK_1X1, x_blocks, x_blocks, CONV_WG)
    } else {
        let x_blocks = out_w.div_ceil(PIX_BLOCK);
        (COUT_BLOCK, x_blocks, out_h * x_blocks, CONV_WG)
    };
    let cout_blocks = cout_g.div_ceil(cb);
    // Flat reduction where rounding the input channels up to 4 per tap would waste much of it (the
    // 7x7 stem's 3 channels: 25%).
    let flat =
        kernel == ConvKernel::Gemm64x16 && kh * kw > 1 && !cin_g.is_multiple_of(4) && cin_g < 16;
    let (packed, bias_off) = if gemm.is_some() {
        pack_gemm(
            c,
            cb,
            if kernel == ConvKernel::Gemm64x16K8 {
                8
            } else {
                4
            },
            flat,
        )
    } else {
        pack_conv(c, cb)
    };
    let params = ConvParams {
        src_off,
        src_bs,
        add_off,
        add_bs,
        dst_off,
        dst_bs,
        res_off,
        res_bs,
        in_h: cx.u32(in_h, "height")?,
        in_w: cx.u32(in_w, "width")?,
        out_h: cx.u32(out_h, "height")?,
        out_w: cx.u32(out_w, "width")?,
        cin_g: cx.u32(cin_g, "channels")?,
        cout_g: cx.u32(cout_g, "channels")?,
        cout_blocks: cx.u32(cout_blocks, "channels")?,
        groups: cx.u32(c.groups, "groups")?,
        kh: cx.u32(kh, "kernel")?,
        kw: cx.u32(kw, "kernel")?,
        stride: cx.u32(c.stride, "stride")?,
        pad: cx.u32(c.pad, "padding")?,
        x_blocks: cx.u32(x_blocks, "width")?,
        bias_off: cx.u32(bias_off, "weights")?,
        _pad: [0; 2],
    };
    let mut constants = vec![
        ("ACT", act_code(c.act)),
        ("HAS_ADD", u32::from(c.src_add.is_some())),
        ("HAS_RES", u32::from(c.residual.is_some())),
    ];
    let key = if gemm.is_some() {
        // Input rows can be read as vec4s when every row of every image starts 16-byte aligned.
        let in_plane = in_h * in_w;
        // The row kernel reads rows as vec4s when every row starts 16-byte aligned.
        let aligned_rows = kernel == ConvKernel::GemmRow3x3 && in_w % 4 == 0;
        let aligned = (pointwise || aligned_rows)
            && in_plane % 4 == 0
            && [src_off, src_bs].iter().all(|v| v % 4 == 0)
            && (c.src_add.is_none() || [add_off, add_bs].iter().all(|v| v % 4 == 0));
        constants.push(("ALIGNED", u32::from(aligned)));
        let entry = if kernel == ConvKernel::GemmRow3x3 {
            "conv_gemm_row3"
        } else if kernel == ConvKernel::Gemm32x32 {
            "conv_gemm_32"
        } else {
            constants.push(("K8", u32::from(kernel == ConvKernel::Gemm64x16K8)));
            constants.push(("FLAT", u32::from(flat)));
            "conv_gemm"
        };
        KernelKey::new(
            weights_shader(Shader::ConvGemm, policy, &packed),
            entry,
            &constants,
        )
    } else {
        let entry = if pointwise { "conv_1x1" } else { "conv_direct" };
        KernelKey::new(
            weights_shader(Shader::Conv, policy, &packed),
            entry,
            &constants,
        )
    };
    Ok(Lowered {
        key,
        uniform: bytes(&params),
        params: Some(packed),
        groups: (
            cx.u32(x_items.div_ceil(wg), "workgroups")?,
            cx.u32((c.groups * cout_blocks).div_ceil(wg), "workgroups")?,
        ),
    })
}

fn pool(cx: &Ctx, p: &Pool) -> Result<Lowered> {
    if p.kernel == 0 || p.stride == 0 || 2 * p.pad > p.kernel {
        return Err(cx.err(format!(
            "pool kernel {} stride {} pad {}: need kernel, stride >= 1 and pad <= kernel / 2",
            p.kernel, p.stride, p.pad
        )));
    }
    let (in_h, in_w) = cx.hw(&p.src);
    let out = (
        out_size(in_h, p.kernel, p.stride, p.pad, p.ceil_mode),
        out_size(in_w, p.kernel, p.stride, p.pad, p.ceil_mode),
    );
    let (Some(out_h), Some(out_w)) = out else {
        return Err(cx.err(format!(
            "input {in_h}x{in_w} is smaller than the pool window {}",
            p.kernel
        )));
    };
    cx.expect_hw(&p.dst, (out_h, out_w), "pool output")?;
    cx.expect_channels(&p.dst, p.src.channels, "pool output")?;
    let (src_off, src_bs) = cx.view(&p.src, "pool input")?;
    let (dst_off, dst_bs) = cx.view(&p.dst, "pool output")?;
    let (gx, gy) = flat_groups((p.src.channels * out_h * out_w).div_ceil(FLAT_WG));
    let params = PoolParams {
        src_off,
        src_bs,
        dst_off,
        dst_bs,
        channels: cx.u32(p.src.channels, "channels")?,
        in_h: cx.u32(in_h, "height")?,
        in_w: cx.u32(in_w, "width")?,
        out_h: cx.u32(out_h, "height")?,
        out_w: cx.u32(out_w, "width")?,
        kernel: cx.u32(p.kernel, "kernel")?,
        stride: cx.u32(p.stride, "stride")?,
        pad: cx.u32(p.pad, "padding")?,
        groups_x: cx.u32(gx, "workgroups")?,
        _pad: [0; 3],
    };
    let kind = match p.kind {
        PoolKind::Max => 0,
        PoolKind::Avg {
            count_include_pad: true,
        } => 1,
        PoolKind::Avg {
            count_include_pad: false,
        } => 2,
    };
    Ok(Lowered {
        key: KernelKey::new(Shader::Pool, "pool", &[("KIND", kind)]),
        uniform: bytes(&params),
        params: None,
        groups: (cx.u32(gx, "workgroups")?, cx.u32(gy, "workgroups")?),
    })
}

fn global_pool(cx: &Ctx, g: &GlobalAvgPool) -> Result<Lowered> {
    cx.expect_hw(&g.dst, (1, 1), "global pool output")?;
    cx.expect_channels(&g.dst, g.src.channels, "global pool output")?;
    let (h, w) = cx.hw(&g.src);
    let (src_off, src_bs) = cx.view(&g.src, "global pool input")?;
    let (dst_off, dst_bs) = cx.view(&g.dst, "global pool output")?;
    let params = GlobalPoolParams {
        src_off,
        src_bs,
        dst_off,
        dst_bs,
        channels: cx.u32(g.src.channels, "channels")?,
        plane: cx.u32(h * w, "plane")?,
        _pad: [0; 2],
    };
    Ok(Lowered {
        key: KernelKey::new(Shader::GlobalPool, "global_avg_pool", &[]),
        uniform: bytes(&params),
        params: None,
        groups: (cx.u32(g.src.channels.div_ceil(FLAT_WG), "workgroups")?, 1),
    })
}

fn linear(cx: &Ctx, l: &Linear, policy: &ConvPolicy) -> Result<Lowered> {
    cx.expect_hw(&l.src, (1, 1), "linear input")?;
    cx.expect_hw(&l.dst, (1, 1), "linear output")?;
    let (m, k) = (l.dst.channels, l.src.channels);
    cx.expect_len(l.weight.len(), m * k, "linear weight")?;
    cx.expect_len(l.bias.len(), m, "linear bias")?;
    let (src_off, src_bs) = cx.view(&l.src, "linear input")?;
    let (dst_off, dst_bs) = cx.view(&l.dst, "linear output")?;
    let mut packed = Vec::with_capacity(m * k + m);
    packed.extend_from_slice(&l.weight);
    packed.extend_from_slice(&l.bias);
    let params = LinearParams {
        src_off,
        src_bs,
        dst_off,
        dst_bs,
        m: cx.u32(m, "channels")?,
        k: cx.u32(k, "channels")?,
        bias_off: cx.u32(m * k, "weights")?,
        _pad: 0,
    };
    Ok(Lowered {
        key: KernelKey::new(
            weights_shader(Shader::Linear, policy, &packed),
            "linear",
            &[("ACT", act_code(l.act))],
        ),
        uniform: bytes(&params),
        params: Some(packed),
        groups: (cx.u32(m.div_ceil(FLAT_WG), "workgroups")?, 1),
    })
}

fn scale_add(cx: &Ctx, s: &ScaleAdd) -> Result<Lowered> {
    let hw = cx.hw(&s.src);
    cx.expect_hw(&s.dst, hw, "scale_add output")?;
    cx.expect_channels(&s.dst, s.src.channels, "scale_add output")?;
    cx.expect_hw(&s.scale, (1, 1), "scale_add scale")?;
    cx.expect_channels(&s.scale, s.src.channels, "scale_add scale")?;
    let (src_off, src_bs) = cx.view(&s.src, "scale_add input")?;
    let (scale_off, scale_bs) = cx.view(&s.scale, "scale_add scale")?;
    let (dst_off, dst_bs) = cx.view(&s.dst, "scale_add output")?;
    let (res_off, res_bs) = match &s.residual {
        Some(r) => {
            cx.expect_hw(r, hw, "scale_add residual")?;
            cx.expect_channels(r, s.src.channels, "scale_add residual")?;
            cx.view(r, "scale_add residual")?
        }
        None => (0, 0),
    };
    let plane = hw.0 * hw.1;
    let (gx, gy) = flat_groups((s.src.channels * plane).div_ceil(FLAT_WG));
    let params = ScaleAddParams {
        src_off,
        src_bs,
        scale_off,
        scale_bs,
        res_off,
        res_bs,
        dst_off,
        dst_bs,
        channels: cx.u32(s.src.channels, "channels")?,
        plane: cx.u32(plane, "plane")?,
        groups_x: cx.u32(gx, "workgroups")?,
        _pad: 0,
    };
    Ok(Lowered {
        key: KernelKey::new(
            Shader::ScaleAdd,
            "scale_add",
            &[
                ("ACT", act_code(s.act)),
                ("HAS_RES", u32::from(s.residual.is_some())),
            ],
        ),
        uniform: bytes(&params),
        params: None,
        groups: (cx.u32(gx, "workgroups")?, cx.u32(gy, "workgroups")?),
    })
}

fn softmax(cx: &Ctx, s: &Softmax) -> Result<Lowered> {
    cx.expect_hw(&s.src, (1, 1), "softmax input")?;
    cx.expect_hw(&s.dst, (1, 1), "softmax output")?;
    cx.expect_channels(&s.dst, s.src.channels, "softmax output")?;
    let (src_off, src_bs) = cx.view(&s.src, "softmax input")?;
    let (dst_off, dst_bs) = cx.view(&s.dst, "softmax output")?;
    let params = SoftmaxParams {
        src_off,
        src_bs,
        dst_off,
        dst_bs,
        channels: cx.u32(s.src.channels, "channels")?,
        _pad: [0; 3],
    };
    Ok(Lowered {
        key: KernelKey::new(Shader::Softmax, "softmax", &[]),
        uniform: bytes(&params),
        params: None,
        groups: (1, 1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_structs_are_16_byte_multiples() {
        for size in [
            std::mem::size_of::<ConvParams>(),
            std::mem::size_of::<PoolParams>(),
            std::mem::size_of::<GlobalPoolParams>(),
            std::mem::size_of::<LinearParams>(),
            std::mem::size_of::<ScaleAddParams>(),
            std::mem::size_of::<SoftmaxParams>(),
        ] {
            assert_eq!(size % 16, 0);
        }
    }

    #[test]
    fn flat_groups_cover_every_workgroup() {
        for n in [1, 64, 65535, 65536, 1 << 20] {
            let (x, y) = flat_groups(n);
            assert!(x <= MAX_GROUPS && x * y >= n && x * (y - 1) < n);
        }
    }

    #[test]
    fn conv_packing_puts_four_output_channels_per_vec4() {
        use crate::graph::TensorId;
        let v = |c| View {
            tensor: TensorId(0),
            c0: 0,
            channels: c,
        };
        // 2 groups of 3 output channels, 2 input channels per group, 1x1.
        let c = Conv {
            src: v(4),
            src_add: None,
            dst: v(6),
            residual: None,
            weight: (0..12).map(|i| i as f32).collect(),
            bias: (0..6).map(|i| 100.0 + i as f32).collect(),
            kernel: (1, 1),
            stride: 1,
            pad: 0,
            groups: 2,
            act: Activation::None,
        };
        let (packed, bias_off) = pack_conv(&c, 4);
        assert_eq!(bias_off, 4); // 2 blocks x 2 taps
                                 // block 0 (group 0), tap 0: channels 0, 1, 2 at input 0 -> weights 0, 2, 4
        assert_eq!(&packed[0..4], &[0.0, 2.0, 4.0, 0.0]);
        // block 1 (group 1), tap 1: channels 3, 4, 5 at input 1 -> weights 7, 9, 11
        assert_eq!(&packed[12..16], &[7.0, 9.0, 11.0, 0.0]);
        assert_eq!(&packed[20..24], &[103.0, 104.0, 105.0, 0.0]);
    }
}
