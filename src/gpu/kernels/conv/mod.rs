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
//! - [`tiled`]: `conv_tiled.wgsl`, implicit GEMM over workgroup-memory tiles, any adapter; with
//!   `conv_tiled_split.wgsl`, the same with the reduction split over K ([`SplitK`]).
//! - [`gp`]: `conv_gp.wgsl`, direct convolution reading weights and inputs from linear textures,
//!   any adapter, one variant per subgroup width and one without subgroups.
//! - [`px`]: `conv_px.wgsl`, the same for aligned 1x1 stride-1 convs, 4 pixels per texel.
//! - [`t3`]: `conv_t3.wgsl`, the same for 3x3 convs, grouped or not, at stride 1 and at stride 2
//!   on planes it halves.

pub mod direct;
pub mod gemm32;
pub mod gemm64;
pub mod gp;
pub mod lanes;
mod packing;
pub mod px;
pub mod row3;
pub mod t3;
pub mod tiled;

pub use packing::{linear_bias_texel, Packing, TEXTURE_CIN_STEP, TILED_K_ROWS};

use super::{AdapterCaps, KernelKey, ShaderFile, ShaderKey, Slot};
use crate::error::Result;
use crate::gpu::lower::{bytes, fits_f16, Ctx, Lowered, Step, TextureInput, WeightSpec};
use crate::gpu::tune::{ConvKernel, ConvPolicy};
use crate::gpu::uniforms::{act_code, ConvParams};
use crate::gpu::wgsl::Defines;
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

    /// Whether the input and the added input are views of whole texels of 4 values (offsets,
    /// batch strides and values per image multiples of 4), whatever the plane.
    pub fn input_whole_texels(&self) -> bool {
        let values = Operand::Src.values(self);
        [Some(self.src), self.add]
            .into_iter()
            .flatten()
            .all(|v| whole_texels(v, values))
    }

    /// Whether the vec4 texture families (px, t3) can read and write the conv's views: the input,
    /// added-input and residual views whole texels, and the output too where the plane is a
    /// multiple of 4 pixels (on other planes they store value by value).
    pub fn views_whole_texels(&self) -> bool {
        let out = Operand::Res.values(self);
        self.input_whole_texels()
            && self.res.is_none_or(|r| whole_texels(r, out))
            && (!self.out_plane().is_multiple_of(4) || whole_texels(self.dst, out))
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

/// Whether a view (element offset, per-image stride) of `values` values per image is whole texels.
fn whole_texels((off, stride): (u32, u32), values: usize) -> bool {
    off.is_multiple_of(4) && stride.is_multiple_of(4) && values.is_multiple_of(4)
}

/// What a family decided for one conv.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvPlan {
    /// Preprocessor defines of the shader (tile sizes, subgroup width; empty for most families).
    pub defines: Defines,
    pub entry: &'static str,
    pub constants: Vec<(&'static str, u32)>,
    /// Output-channel blocks per group and pixel blocks (the kernel's `cout_blocks`, `x_blocks`).
    pub cout_blocks: usize,
    pub x_blocks: usize,
    /// Workgroups along x and y (z is the image).
    pub groups: (usize, usize),
    pub packing: Packing,
    /// A second dispatch that finishes the op, for a reduction split over K.
    pub split_k: Option<SplitK>,
    /// Texture slots the kernel reads its input and added input from (copied there before the
    /// dispatch); empty for kernels that read the arena.
    pub inputs: Vec<(Slot, Operand)>,
}

/// A reduction split over K: the plan's dispatch writes a partial sum of every output per `k_split`
/// values of K into the session's scratch space, and `finish` (in the same shader file) adds them
/// up with the bias, residual and activation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitK {
    /// K values per split (the `k_split` uniform).
    pub k_split: usize,
    pub finish: Variant,
    /// Workgroups of `finish` along x and y.
    pub finish_groups: (usize, usize),
    /// Scratch space per image, in f32 elements.
    pub scratch: usize,
}

/// Which of a conv's views a texture input holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    Src,
    Add,
    Res,
}

impl Operand {
    /// (element offset, batch stride) of the view, `None` when the conv lacks it.
    fn view(self, s: &ConvShape) -> Option<(u32, u32)> {
        match self {
            Operand::Src => Some(s.src),
            Operand::Add => s.add,
            Operand::Res => s.res,
        }
    }

    /// Elements of one image's view.
    fn values(self, s: &ConvShape) -> usize {
        match self {
            Operand::Src | Operand::Add => s.groups * s.cin_g * s.in_h * s.in_w,
            Operand::Res => s.groups * s.cout_g * s.out_plane(),
        }
    }
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
    /// The tiles it can run a conv it fits with on this adapter, its rule's first (empty for
    /// families with one tile): what the tuner times and [`SessionOptions::conv_tile`] forces.
    ///
    /// [`SessionOptions::conv_tile`]: crate::gpu::SessionOptions::conv_tile
    pub tiles: fn(&ConvShape, &AdapterCaps) -> Vec<Tile>,
    /// Entry, constants, tile, workgroups and packing for a conv it fits, on an adapter it
    /// supports, with one of its `tiles` (`None`: its rule's).
    pub plan: fn(&ConvShape, &AdapterCaps, Option<Tile>) -> ConvPlan,
    /// Every (entry, constants) the family can produce, with each of `shaders`.
    pub variants: fn() -> Vec<Variant>,
    /// Every set of shader defines its plans can have, on any adapter.
    pub shaders: fn() -> Vec<Defines>,
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

    /// Whether it runs this conv on this adapter with `images` images per dispatch: the adapter
    /// supports it, it fits the shape, and its input textures fit the adapter.
    pub fn usable(&self, s: &ConvShape, caps: &AdapterCaps, images: usize) -> bool {
        self.supports(caps).is_ok()
            && (self.fits)(s)
            && (self.plan)(s, caps, None).textures_fit(s, caps, images)
    }

    /// `tile` when the family offers it for this conv, else `None` (its rule's).
    pub fn offered(&self, s: &ConvShape, caps: &AdapterCaps, tile: Option<Tile>) -> Option<Tile> {
        tile.filter(|t| (self.tiles)(s, caps).contains(t))
    }
}

impl ConvPlan {
    /// Whether every input texture of `images` images (each on rows of its own) fits the adapter.
    pub fn textures_fit(&self, s: &ConvShape, caps: &AdapterCaps, images: usize) -> bool {
        self.inputs.iter().all(|(slot, operand)| {
            slot.texels()
                .is_some_and(|format| caps.texture_holds(format, operand.values(s), images))
        })
    }
}

/// The one shader module of a family without defines.
pub(crate) fn no_defines() -> Vec<Defines> {
    vec![Defines::new()]
}

/// Any conv shape.
pub(crate) fn any_shape(_: &ConvShape) -> bool {
    true
}

/// A family's tile: for the texture families (output channels per block, pixels or texels per
/// lane), for the workgroup-tiled ones (output pixels, output channels) per workgroup.
pub type Tile = (usize, usize);

/// A family's tiles for a conv as [`ConvFamily::tiles`] lists them: `rule` first, then each of
/// `others` that differs from it.
pub(crate) fn rule_first(rule: Tile, others: impl IntoIterator<Item = Tile>) -> Vec<Tile> {
    std::iter::once(rule)
        .chain(others.into_iter().filter(|&t| t != rule))
        .collect()
}

/// The tiles of a family with only its rule's.
pub(crate) fn one_tile(_: &ConvShape, _: &AdapterCaps) -> Vec<Tile> {
    Vec::new()
}

/// Every conv family.
pub const FAMILIES: [&ConvFamily; 11] = [
    &direct::FAMILY,
    &gemm64::FAMILY,
    &gemm64::FAMILY_K8,
    &gemm32::FAMILY,
    &row3::FAMILY,
    &tiled::FAMILY,
    &tiled::FAMILY_DOUBLE,
    &tiled::FAMILY_SPLIT_K,
    &gp::FAMILY,
    &px::FAMILY,
    &t3::FAMILY,
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
            for defines in (family.shaders)() {
                let shader = ShaderKey {
                    file: family.shader,
                    defines,
                }
                .with_f16_weights(f16);
                for (entry, constants) in (family.variants)() {
                    keys.push(KernelKey::new(shader.clone(), entry, &constants));
                }
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
    let (family, tile) = policy
        .choose(cx.node, &s, caps)
        .map_err(|why| cx.err(why))?;
    let plan = (family.plan)(&s, caps, tile);
    cx.expect_len(c.weight.len(), c.cout() * s.cin_g * s.taps(), "conv weight")?;
    cx.expect_len(c.bias.len(), c.cout(), "conv bias")?;
    let bias_off = plan.packing.bias_offset(c);
    let inputs = texture_inputs(cx, &s, &plan)?;
    let image_texels = |slot: Slot| {
        inputs
            .iter()
            .find(|i| i.slot == slot)
            .and_then(|i| Some(crate::gpu::texture::image_texels(slot.texels()?, i.len)))
            .unwrap_or(0)
    };
    let x_img = image_texels(Slot::Input).max(image_texels(Slot::InputScalar));
    let add_img = image_texels(Slot::AddInput).max(image_texels(Slot::AddInputScalar));
    let res_img = image_texels(Slot::Residual).max(image_texels(Slot::ResidualScalar));
    let shape_params = shape_params(cx, &s)?;
    let params = ConvParams {
        cout_blocks: cx.u32(plan.cout_blocks, "channels")?,
        x_blocks: cx.u32(plan.x_blocks, "width")?,
        bias_off: cx.u32(bias_off, "weights")?,
        k_split: cx.u32(plan.split_k.as_ref().map_or(0, |k| k.k_split), "reduction")?,
        x_img,
        add_img,
        res_img,
        ..shape_params
    };
    let f16 = policy.f16_weights && fits_f16(&c.weight) && fits_f16(&c.bias);
    let weights = WeightSpec {
        packing: plan.packing,
        f16,
    };
    let shader = ShaderKey {
        file: family.shader,
        defines: plan.defines.clone(),
    }
    .with_f16_weights(f16);
    let mut lowered = Lowered::one(
        KernelKey::new(shader.clone(), plan.entry, &plan.constants),
        &params,
        cx.groups(plan.groups.0, plan.groups.1)?,
        Some(weights),
    );
    if let Some(split) = &plan.split_k {
        // Same uniforms, same pass: the session orders the two dispatches.
        lowered.steps.push(Step {
            key: KernelKey::new(shader, split.finish.0, &split.finish.1),
            uniform: bytes(&params),
            groups: cx.groups(split.finish_groups.0, split.finish_groups.1)?,
            inputs: Vec::new(),
        });
        lowered.scratch = split.scratch;
    }
    lowered.steps[0].inputs = inputs;
    Ok(lowered)
}

/// The uniforms the conv's shape alone decides: its views and sizes, each checked to fit in 32 bits.
/// [`lower`] adds what the family's plan decides (blocks, weight offsets, split, textures).
fn shape_params(cx: &Ctx, s: &ConvShape) -> Result<ConvParams> {
    let add = s.add.unwrap_or((0, 0));
    let res = s.res.unwrap_or((0, 0));
    Ok(ConvParams {
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
        groups: cx.u32(s.groups, "groups")?,
        kh: cx.u32(s.kh, "kernel")?,
        kw: cx.u32(s.kw, "kernel")?,
        stride: cx.u32(s.stride, "stride")?,
        pad: cx.u32(s.pad, "padding")?,
        ..Default::default()
    })
}

/// The views the plan reads from textures, checked: a vec4 texture needs the view and the image
/// stride on 16-byte boundaries.
fn texture_inputs(cx: &Ctx, s: &ConvShape, plan: &ConvPlan) -> Result<Vec<TextureInput>> {
    plan.inputs
        .iter()
        .map(|&(slot, operand)| {
            let (offset, stride) = operand
                .view(s)
                .ok_or_else(|| cx.err(format!("a texture input for an absent {operand:?} view")))?;
            let vec4 = slot.texels().is_some_and(|t| t.lanes() == 4);
            if vec4 && (offset % 4 != 0 || stride % 4 != 0) {
                return Err(cx.err(format!(
                    "{} reads a view at element {offset} (image stride {stride}) as vec4 texels; expected multiples of 4",
                    plan.entry
                )));
            }
            Ok(TextureInput {
                slot,
                offset,
                stride,
                len: cx.u32(operand.values(s), "input view")?,
            })
        })
        .collect()
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
