//! `shaders/global_pool.wgsl`: the mean of each channel plane (the network's last pool and the SE
//! squeeze), one invocation per channel, reading its input from a texture where a chunk's views
//! fit the adapter's textures: rgba32float where the view's planes are whole texels, r32float
//! otherwise.

use super::{
    on_texel_boundaries, texture_input_shader, with_copies, AdapterCaps, KernelKey, ShaderFile,
    ShaderKey, Slot,
};
use crate::error::Result;
use crate::gpu::lower::{Ctx, Lowered};
use crate::gpu::texture::{self, Texels};
use crate::gpu::uniforms::GlobalPoolParams;
use crate::gpu::wgsl::Defines;
use crate::graph::GlobalAvgPool;

/// Invocations (channels) per workgroup.
const WG: usize = 64;

/// How the input view is read (named as in [`super::pool::Layout`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// From the arena, value by value.
    Values,
    /// From an r32float copy (`TEXTURE_INPUT`).
    ScalarTexels,
    /// From an rgba32float copy (`TEXELS`): planes of whole texels in a view on texel boundaries,
    /// a quarter of the loads.
    Texels,
}

fn key(layout: Layout) -> KernelKey {
    let shader = match layout {
        Layout::Texels => ShaderKey {
            file: ShaderFile::GlobalPool,
            defines: Defines::new().flag("TEXELS"),
        },
        _ => texture_input_shader(
            ShaderFile::GlobalPool,
            Defines::new(),
            layout == Layout::ScalarTexels,
        ),
    };
    KernelKey::new(shader, "global_avg_pool", &[])
}

pub(crate) fn variants() -> Vec<KernelKey> {
    vec![
        key(Layout::Values),
        key(Layout::ScalarTexels),
        key(Layout::Texels),
    ]
}

/// Lowers a global pool for chunks of `images` images on an adapter with `caps`.
pub(crate) fn lower(
    cx: &Ctx,
    g: &GlobalAvgPool,
    caps: &AdapterCaps,
    images: usize,
) -> Result<Lowered> {
    cx.expect_hw(&g.dst, (1, 1), "global pool output")?;
    cx.expect_channels(&g.dst, g.src.channels, "global pool output")?;
    let (h, w) = cx.hw(&g.src);
    let views: GlobalPoolParams = cx.src_dst(&g.src, &g.dst, "global pool")?;
    let values = g.src.channels * h * w;
    let len = cx.u32(values, "global pool input")?;
    let src = (views.src_off, views.src_bs);
    let layout = if (h * w).is_multiple_of(4)
        && on_texel_boundaries(&[src])
        && caps.texture_holds(Texels::Vec4, values, images)
    {
        Layout::Texels
    } else if caps.texture_holds(Texels::Scalar, values, images) {
        Layout::ScalarTexels
    } else {
        Layout::Values
    };
    let texels = if layout == Layout::Texels {
        Texels::Vec4
    } else {
        Texels::Scalar
    };
    let params = GlobalPoolParams {
        channels: cx.u32(g.src.channels, "channels")?,
        plane: cx.u32(h * w, "plane")?,
        x_img: texture::image_texels(texels, len),
        ..views
    };
    let lowered = Lowered::plain(
        key(layout),
        &params,
        cx.groups(g.src.channels.div_ceil(WG), 1)?,
    );
    let copies: &[(Slot, (u32, u32))] = match layout {
        Layout::Texels => &[(Slot::Input, src)],
        Layout::ScalarTexels => &[(Slot::InputScalar, src)],
        Layout::Values => &[],
    };
    Ok(with_copies(lowered, copies, len))
}
