//! `shaders/global_pool.wgsl`: the mean of each channel plane (the network's last pool and the SE
//! squeeze), one invocation per channel, reading its input from a texture where a chunk's views
//! fit the adapter's textures.

use super::{texture_input_shader, with_texture_input, AdapterCaps, KernelKey, ShaderFile};
use crate::error::Result;
use crate::gpu::lower::{Ctx, Lowered};
use crate::gpu::texture::{self, Texels};
use crate::gpu::uniforms::GlobalPoolParams;
use crate::gpu::wgsl::Defines;
use crate::graph::GlobalAvgPool;

/// Invocations (channels) per workgroup.
const WG: usize = 64;

fn key(texture_input: bool) -> KernelKey {
    let shader = texture_input_shader(ShaderFile::GlobalPool, Defines::new(), texture_input);
    KernelKey::new(shader, "global_avg_pool", &[])
}

pub(crate) fn variants() -> Vec<KernelKey> {
    vec![key(false), key(true)]
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
    let views = cx.src_dst(&g.src, &g.dst, "global pool")?;
    let values = g.src.channels * h * w;
    let len = cx.u32(values, "global pool input")?;
    let params = GlobalPoolParams {
        channels: cx.u32(g.src.channels, "channels")?,
        plane: cx.u32(h * w, "plane")?,
        x_img: texture::image_texels(Texels::Scalar, len),
        ..views
    };
    let texture_input = caps.texture_holds(Texels::Scalar, values, images);
    let lowered = Lowered::plain(
        key(texture_input),
        &params,
        cx.groups(g.src.channels.div_ceil(WG), 1)?,
    );
    Ok(with_texture_input(
        lowered,
        texture_input,
        (views.src_off, views.src_bs),
        len,
    ))
}
