//! `shaders/linear.wgsl`: a fully connected layer over `[K, 1, 1]` views (the classifier and the SE
//! excitation), one invocation per output row. Weights `[M, K]` row-major, then the `M` biases.

use super::conv::Packing;
use super::{with_activations, KernelKey, ShaderFile, ShaderKey};
use crate::error::Result;
use crate::gpu::lower::{fits_f16, Ctx, Lowered, WeightSpec};
use crate::gpu::uniforms::{act_code, LinearParams};
use crate::graph::Linear;

/// Invocations per workgroup.
const WG: usize = 64;

fn key(f16: bool, constants: &[(&'static str, u32)]) -> KernelKey {
    KernelKey::new(
        ShaderKey::new(ShaderFile::Linear).with_f16_weights(f16),
        "linear",
        constants,
    )
}

pub(crate) fn variants() -> Vec<KernelKey> {
    [false, true]
        .into_iter()
        .flat_map(|f16| with_activations(&[]).into_iter().map(move |c| key(f16, &c)))
        .collect()
}

pub(crate) fn lower(cx: &Ctx, l: &Linear, f16_weights: bool) -> Result<Lowered> {
    cx.expect_hw(&l.src, (1, 1), "linear input")?;
    cx.expect_hw(&l.dst, (1, 1), "linear output")?;
    let (m, k) = (l.dst.channels, l.src.channels);
    cx.expect_len(l.weight.len(), m * k, "linear weight")?;
    cx.expect_len(l.bias.len(), m, "linear bias")?;
    let views = cx.src_dst(&l.src, &l.dst, "linear")?;
    let params = LinearParams {
        m: cx.u32(m, "channels")?,
        k: cx.u32(k, "channels")?,
        bias_off: cx.u32(m * k, "weights")?,
        ..views
    };
    let f16 = f16_weights && fits_f16(&l.weight) && fits_f16(&l.bias);
    let weights = WeightSpec {
        packing: Packing::Linear,
        f16,
    };
    Ok(Lowered::one(
        key(f16, &[("ACT", act_code(l.act))]),
        &params,
        cx.groups(m.div_ceil(WG), 1)?,
        Some(weights),
    ))
}
