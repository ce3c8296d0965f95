//! `shaders/global_pool.wgsl`: the mean of each channel plane (the network's last pool and the SE
//! squeeze), one invocation per channel, reading its input from a texture where a chunk's views
//! fit the adapter's textures: rgba32float where the view's planes are whole texels, r32float
//! otherwise.

use super::{on_texel_boundaries, AdapterCaps, InputLayout, KernelKey, ShaderFile};
use crate::error::Result;
use crate::gpu::lower::{Ctx, Lowered};
use crate::gpu::texture;
use crate::gpu::uniforms::GlobalPoolParams;
use crate::graph::GlobalAvgPool;

/// Invocations (channels) per workgroup.
const WG: usize = 64;

/// The global pool's define for [`InputLayout::Texels`].
const TEXELS: &str = "TEXELS";

fn key(layout: InputLayout) -> KernelKey {
    KernelKey::new(
        layout.shader(ShaderFile::GlobalPool, TEXELS),
        "global_avg_pool",
        &[],
    )
}

pub(crate) fn variants() -> Vec<KernelKey> {
    InputLayout::ALL.map(key).to_vec()
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
    let layout = InputLayout::choose(
        (h * w).is_multiple_of(4) && on_texel_boundaries(&[src]),
        values,
        images,
        caps,
    );
    let params = GlobalPoolParams {
        channels: cx.u32(g.src.channels, "channels")?,
        plane: cx.u32(h * w, "plane")?,
        x_img: texture::image_texels(layout.texels(), len),
        ..views
    };
    let lowered = Lowered::plain(
        key(layout),
        &params,
        cx.groups(g.src.channels.div_ceil(WG), 1)?,
    );
    Ok(layout.with_copy(lowered, src, len))
}
