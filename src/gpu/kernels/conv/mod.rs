//! The convolution families: `dst = act(conv(src + src_add) + bias + residual)` with BatchNorm
//! folded into the weights. Every family is a [`ConvFamily`]: whether it runs on an adapter
//! and a shape, and, for a conv it runs, its entry point, override constants, tile (blocks of output
//! channels and pixels), workgroup counts and weight packing. [`lower`] checks the conv, lets the
//! policy pick a family and fills [`ConvParams`] from the family's plan.
//!
//! - [`direct`]: `conv.wgsl`, register-blocked direct kernels; any adapter.
//! - [`gemm64`]: `conv_gemm64.wgsl`, implicit GEMM, 64 channels x 16 pixels per 8-lane subgroup.
//! - [`gemm32`]: `conv_gemm32.wgsl`, the same with a 32 x 32 tile.
//! - [`row3`]: `conv_row3.wgsl`, 3x3 stride-1 convs along rows, 32 x 32.

pub mod direct;
pub mod gemm32;
pub mod gemm64;
mod packing;
pub mod row3;

pub use packing::Packing;

use super::{AdapterCaps, KernelKey, ShaderFile, ShaderKey};
use crate::error::Result;
use crate::gpu::lower::{fits_f16, Ctx, Lowered, WeightSpec};
use crate::gpu::tune::{ConvKernel, ConvPolicy};
use crate::gpu::uniforms::{act_code, ConvParams};
use crate::graph::{out_size, Conv};

/// The facts of one conv that families decide on, checked by [`lower`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConvShape {
    pub cin_g: usize,
    pub cout_g: usize,
    pub groups: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_h: usize,
    pub out_w: usize,
    /// `ACT` override code.
    pub act: u32,
    /// (element offset, batch stride) of the input, the added input (0, 0 when absent), the output
    /// and the residual (0, 0 when absent).
    pub src: (u32, u32),
    pub add: Option<(u32, u32)>,
    pub dst: (u32, u32),
    pub res: Option<(u32, u32)>,
}

impl ConvShape {
    /// 1x1, stride 1, no padding: a matrix product per image.
    pub fn pointwise(&self) -> bool {
        (self.kh, self.kw, self.stride, self.pad) == (1, 1, 1, 0)
    }

    /// 3x3, stride 1, padding 1: the output is the size of the input.
    pub fn row3(&self) -> bool {
        (self.kh, self.kw, self.stride, self.pad) == (3, 3, 1, 1)
    }

    pub fn taps(&self) -> usize {
        self.kh * self.kw
    }

    pub fn out_plane(&self) -> usize {
        self.out_h * self.out_w
    }

    /// Whether the input (and the added input) can be read as vec4s along the pixel axis: every view
    /// offset, batch stride and the input plane a multiple of 4 elements.
    pub fn input_vec4_aligned(&self) -> bool {
        let add = self.add.unwrap_or((0, 0));
        (self.in_h * self.in_w).is_multiple_of(4)
            && [self.src.0, self.src.1, add.0, add.1]
                .iter()
                .all(|v| v.is_multiple_of(4))
    }
}

/// What a family decided for one conv.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvPlan {
    pub entry: &'static str,
    pub constants: Vec<(&'static str, u32)>,
    /// Output-channel blocks per group and pixel blocks (the kernel's `cout_blocks`, `x_blocks`).
    pub cout_blocks: usize,
    pub x_blocks: usize,
    /// Workgroups along x and y (z is the image).
    pub groups: (usize, usize),
    pub packing: Packing,
}

/// Override constants by name, in key order (booleans are 0 or 1).
pub type Constants = Vec<(&'static str, u32)>;

/// One entry point with its override constants.
pub type Variant = (&'static str, Constants);

/// One family of conv kernels, as data: what it needs, which convs it fits, how it plans one.
pub struct ConvFamily {
    /// The name callers force it by.
    pub kernel: ConvKernel,
    pub shader: ShaderFile,
    /// Lanes every subgroup must have (`None`: runs on any adapter).
    pub lanes: Option<u32>,
    /// Whether it can run a conv of this shape (on an adapter it supports).
    pub fits: fn(&ConvShape) -> bool,
    /// Entry, constants, tile, workgroups and packing for a conv it fits.
    pub plan: fn(&ConvShape) -> ConvPlan,
    /// Every (entry, constants) the family can produce.
    pub variants: fn() -> Vec<Variant>,
}

impl ConvFamily {
    /// `Err(why)` when the family cannot run on this adapter at all.
    pub fn supports(&self, caps: &AdapterCaps) -> std::result::Result<(), String> {
        match self.lanes {
            Some(lanes) if !caps.subgroups_of(lanes) => Err(format!(
                "needs {lanes}-lane subgroups; this adapter has {}",
                caps.describe_subgroups()
            )),
            _ => Ok(()),
        }
    }
}

/// Any conv shape.
pub(crate) fn any_shape(_: &ConvShape) -> bool {
    true
}

/// Every conv family.
pub const FAMILIES: [&ConvFamily; 5] = [
    &direct::FAMILY,
    &gemm64::FAMILY,
    &gemm64::FAMILY_K8,
    &gemm32::FAMILY,
    &row3::FAMILY,
];

/// The family that `kernel` names (not [`ConvKernel::Auto`]).
pub fn family(kernel: ConvKernel) -> Option<&'static ConvFamily> {
    FAMILIES.into_iter().find(|f| f.kernel == kernel)
}

/// The fusion constants every conv kernel takes, in key order.
pub(crate) fn fusions(s: &ConvShape) -> Vec<(&'static str, u32)> {
    vec![
        ("ACT", s.act),
        ("HAS_ADD", u32::from(s.add.is_some())),
        ("HAS_RES", u32::from(s.res.is_some())),
    ]
}

/// Every combination of the fusion constants, then of `flags` (0 and 1 each).
pub(crate) fn fusion_variants(flags: &[&'static str]) -> Vec<Vec<(&'static str, u32)>> {
    let mut all = Vec::new();
    for base in super::with_activations(&[]) {
        all.extend(super::with_flags(&base, &["HAS_ADD", "HAS_RES"]));
    }
    all.into_iter()
        .flat_map(|c| super::with_flags(&c, flags))
        .collect()
}

/// Every pipeline the conv families can produce, in f32 and f16 weights.
pub(crate) fn variants() -> Vec<KernelKey> {
    let mut keys = Vec::new();
    for f16 in [false, true] {
        for family in FAMILIES {
            for (entry, constants) in (family.variants)() {
                let shader = ShaderKey::new(family.shader).with_f16_weights(f16);
                keys.push(KernelKey::new(shader, entry, &constants));
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// Checks a conv against its views and lowers it with the family the policy picks.
pub(crate) fn lower(
    cx: &Ctx,
    c: &Conv,
    policy: &ConvPolicy,
    caps: &AdapterCaps,
) -> Result<Lowered> {
    let s = shape(cx, c)?;
    let family = policy.choose(&s, caps).map_err(|why| cx.err(why))?;
    let plan = (family.plan)(&s);
    cx.expect_len(c.weight.len(), c.cout() * s.cin_g * s.taps(), "conv weight")?;
    cx.expect_len(c.bias.len(), c.cout(), "conv bias")?;
    let bias_off = plan.packing.bias_offset(c);
    let add = s.add.unwrap_or((0, 0));
    let res = s.res.unwrap_or((0, 0));
    let params = ConvParams {
        src_off: s.src.0,
        src_bs: s.src.1,
        add_off: add.0,
        add_bs: add.1,
        dst_off: s.dst.0,
        dst_bs: s.dst.1,
        res_off: res.0,
        res_bs: res.1,
        in_h: cx.u32(s.in_h, "height")?,
        in_w: cx.u32(s.in_w, "width")?,
        out_h: cx.u32(s.out_h, "height")?,
        out_w: cx.u32(s.out_w, "width")?,
        cin_g: cx.u32(s.cin_g, "channels")?,
        cout_g: cx.u32(s.cout_g, "channels")?,
        cout_blocks: cx.u32(plan.cout_blocks, "channels")?,
        groups: cx.u32(s.groups, "groups")?,
        kh: cx.u32(s.kh, "kernel")?,
        kw: cx.u32(s.kw, "kernel")?,
        stride: cx.u32(s.stride, "stride")?,
        pad: cx.u32(s.pad, "padding")?,
        x_blocks: cx.u32(plan.x_blocks, "width")?,
        bias_off: cx.u32(bias_off, "weights")?,
        ..Default::default()
    };
    let f16 = policy.f16_weights && fits_f16(&c.weight) && fits_f16(&c.bias);
    let weights = WeightSpec {
        packing: plan.packing,
        f16,
    };
    Ok(Lowered::one(
        KernelKey::new(
            ShaderKey::new(family.shader).with_f16_weights(f16),
            plan.entry,
            &plan.constants,
        ),
        &params,
        cx.groups(plan.groups.0, plan.groups.1)?,
        Some(weights),
    ))
}

/// The checked shape of a conv: groups divide the channels, the output and the optional operands
/// have the sizes the conv produces, every view lies inside its tensor.
pub(crate) fn shape(cx: &Ctx, c: &Conv) -> Result<ConvShape> {
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
    if let Some(a) = &c.src_add {
        cx.expect_channels(a, c.cin(), "conv src_add")?;
        cx.expect_hw(a, (in_h, in_w), "conv src_add")?;
    }
    if let Some(r) = &c.residual {
        cx.expect_channels(r, c.cout(), "conv residual")?;
        cx.expect_hw(r, (out_h, out_w), "conv residual")?;
    }
    Ok(ConvShape {
        cin_g: c.cin() / c.groups,
        cout_g: c.cout() / c.groups,
        groups: c.groups,
        kh,
        kw,
        stride: c.stride,
        pad: c.pad,
        in_h,
        in_w,
        out_h,
        out_w,
        act: act_code(c.act),
        src: cx.view(&c.src, "conv input")?,
        add: c
            .src_add
            .as_ref()
            .map(|a| cx.view(a, "conv src_add"))
            .transpose()?,
        dst: cx.view(&c.dst, "conv output")?,
        res: c
            .residual
            .as_ref()
            .map(|r| cx.view(r, "conv residual"))
            .transpose()?,
    })
}
