//! `shaders/linear.wgsl`: a fully connected layer over `[K, 1, 1]` views (the classifier and the SE
//! excitation), one invocation per output row, its weights read from a linear texture
//! ([`Packing::Linear`]): on lavapipe that took the classifier of res2net50 from 16.4 to about 2 ms
//! against reading the weights from a storage buffer, where each lane's load differs.

use super::conv::{linear_bias_texel, Packing};
use super::{
    texture_input_shader, with_activations, with_texture_input, AdapterCaps, KernelKey, ShaderFile,
};
use crate::error::Result;
use crate::gpu::lower::{fits_f16, Ctx, Lowered, WeightSpec};
use crate::gpu::texture::{self, Texels};
use crate::gpu::uniforms::{act_code, LinearParams};
use crate::gpu::wgsl::Defines;
use crate::graph::Linear;

/// Output rows per workgroup, one per invocation.
const ROWS: usize = 64;

fn key(texture_input: bool, constants: &[(&'static str, u32)]) -> KernelKey {
    let defines = Defines::new().value("ROWS", ROWS as u32);
    let shader = texture_input_shader(ShaderFile::Linear, defines, texture_input);
    KernelKey::new(shader, "linear", constants)
}

pub(crate) fn variants() -> Vec<KernelKey> {
    let constants = with_activations(&[]);
    [false, true]
        .into_iter()
        .flat_map(|t| constants.iter().map(move |c| key(t, c)))
        .collect()
}

/// Lowers a linear layer for chunks of `images` images on an adapter with `caps`; the input is read
/// from a texture where the chunk's inputs fit one.
pub(crate) fn lower(
    cx: &Ctx,
    l: &Linear,
    f16_weights: bool,
    caps: &AdapterCaps,
    images: usize,
) -> Result<Lowered> {
    cx.expect_hw(&l.src, (1, 1), "linear input")?;
    cx.expect_hw(&l.dst, (1, 1), "linear output")?;
    let (m, k) = (l.dst.channels, l.src.channels);
    cx.expect_len(l.weight.len(), m * k, "linear weight")?;
    cx.expect_len(l.bias.len(), m, "linear bias")?;
    let views = cx.src_dst(&l.src, &l.dst, "linear")?;
    let params = LinearParams {
        m: cx.u32(m, "channels")?,
        k: cx.u32(k, "channels")?,
        bias_off: cx.u32(linear_bias_texel(m, k, ROWS), "weights")?,
        x_img: texture::image_texels(Texels::Scalar, cx.u32(k, "channels")?),
        ..views
    };
    let texture_input = caps.texture_holds(Texels::Scalar, k, images);
    // The texture holds f32 texels; f16 weights are their values rounded to f16.
    let f16 = f16_weights && fits_f16(&l.weight) && fits_f16(&l.bias);
    let weights = WeightSpec {
        packing: Packing::Linear { rows: ROWS },
        f16,
    };
    let lowered = Lowered::one(
        key(texture_input, &[("ACT", act_code(l.act))]),
        &params,
        cx.groups(m.div_ceil(ROWS), 1)?,
        Some(weights),
    );
    Ok(with_texture_input(
        lowered,
        texture_input,
        (views.src_off, views.src_bs),
        params.k,
    ))
}
