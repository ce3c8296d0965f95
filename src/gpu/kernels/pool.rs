//! `shaders/pool.wgsl`: max and average pooling with a square window, PyTorch semantics (padding,
//! `count_include_pad`, `ceil_mode`). Where input and output rows are whole texels, one invocation
//! computes 4 outputs of a row from an rgba32float copy of the input and stores them as a vec4
//! (`OUT4`); elsewhere one invocation per output reads an r32float copy (`TEXTURE_INPUT`; measured
//! on lavapipe several times faster than reading the arena), or the arena where a chunk's images do
//! not fit the adapter's textures.

use super::{on_texel_boundaries, AdapterCaps, InputLayout, KernelKey, ShaderFile};
use crate::error::Result;
use crate::gpu::lower::{flat_groups, Ctx, Lowered};
use crate::gpu::texture;
use crate::gpu::uniforms::PoolParams;
use crate::graph::{out_size, Pool, PoolKind};

/// Invocations per workgroup.
const WG: usize = 64;

/// The `KIND` override: 0 max, 1 average over the padded window, 2 average over in-bounds cells.
fn kind_code(kind: PoolKind) -> u32 {
    match kind {
        PoolKind::Max => 0,
        PoolKind::Avg {
            count_include_pad: true,
        } => 1,
        PoolKind::Avg {
            count_include_pad: false,
        } => 2,
    }
}

/// The pool's define for [`InputLayout::Texels`]: an invocation computes 4 outputs of a row and
/// stores them as one vec4, so output rows too must be whole texels.
const OUT4: &str = "OUT4";

/// The (kernel, padding) pairs of the [`OUT4`] variants for stride 2 (`S2`): windows of at most
/// 2 columns past their output's column pair, so that the 4 windows of a texel of outputs lie in
/// 3 input texels, each tap a fixed component of one (the stem's 3x3 max pool, the stage blocks'
/// 3x3 average pools, 2x2 average-down pools, the picks of strided 1x1 convs).
const S2_WINDOWS: [(usize, usize); 3] = [(3, 1), (1, 0), (2, 0)];

fn key(kind: u32, layout: InputLayout, s2: Option<(usize, usize)>) -> KernelKey {
    let mut shader = layout.shader(ShaderFile::Pool, OUT4);
    if let Some((kernel, pad)) = s2 {
        shader.defines = std::mem::take(&mut shader.defines)
            .flag("S2")
            .value("KS", kernel as u32)
            .value("PAD", pad as u32);
    }
    KernelKey::new(shader, "pool", &[("KIND", kind)])
}

pub(crate) fn variants() -> Vec<KernelKey> {
    let s2 = S2_WINDOWS.map(Some);
    (0..3)
        .flat_map(|kind| {
            InputLayout::ALL
                .map(|layout| key(kind, layout, None))
                .into_iter()
                .chain(s2.map(|w| key(kind, InputLayout::Texels, w)))
        })
        .collect()
}

/// Lowers a pool for chunks of `images` images on an adapter with `caps`.
pub(crate) fn lower(cx: &Ctx, p: &Pool, caps: &AdapterCaps, images: usize) -> Result<Lowered> {
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
    let views: PoolParams = cx.src_dst(&p.src, &p.dst, "pool")?;
    let values = p.src.channels * in_h * in_w;
    let len = cx.u32(values, "pool input")?;
    let src = (views.src_off, views.src_bs);
    let layout = InputLayout::choose(
        on_texel_boundaries(&[src, (views.dst_off, views.dst_bs)])
            && in_w.is_multiple_of(4)
            && out_w.is_multiple_of(4),
        values,
        images,
        caps,
    );
    let per_invocation = if layout == InputLayout::Texels { 4 } else { 1 };
    let (gx, gy) = flat_groups((p.src.channels * out_h * out_w).div_ceil(WG * per_invocation));
    let params = PoolParams {
        channels: cx.u32(p.src.channels, "channels")?,
        in_h: cx.u32(in_h, "height")?,
        in_w: cx.u32(in_w, "width")?,
        out_h: cx.u32(out_h, "height")?,
        out_w: cx.u32(out_w, "width")?,
        kernel: cx.u32(p.kernel, "kernel")?,
        stride: cx.u32(p.stride, "stride")?,
        pad: cx.u32(p.pad, "padding")?,
        groups_x: cx.u32(gx, "workgroups")?,
        x_img: texture::image_texels(layout.texels(), len),
        ..views
    };
    let s2 = (layout == InputLayout::Texels && p.stride == 2)
        .then_some((p.kernel, p.pad))
        .filter(|w| S2_WINDOWS.contains(w));
    let lowered = Lowered::plain(
        key(kind_code(p.kind), layout, s2),
        &params,
        cx.groups(gx, gy)?,
    );
    Ok(layout.with_copy(lowered, src, len))
}
