//! `shaders/scale_add.wgsl`: the end of an SE block, `dst = act(src * scale[c] + residual)`, in one
//! pass (the SE output never makes an extra round trip through memory). One invocation per element.

use super::{with_activations, with_flags, KernelKey, ShaderFile, ShaderKey};
use crate::error::Result;
use crate::gpu::lower::{flat_groups, Ctx, Lowered};
use crate::gpu::uniforms::{act_code, ScaleAddParams};
use crate::graph::ScaleAdd;

/// Invocations per workgroup.
const WG: usize = 64;

fn key(constants: &[(&'static str, u32)]) -> KernelKey {
    KernelKey::new(ShaderKey::new(ShaderFile::ScaleAdd), "scale_add", constants)
}

pub(crate) fn variants() -> Vec<KernelKey> {
    with_activations(&[])
        .iter()
        .flat_map(|c| with_flags(c, &["HAS_RES"]))
        .map(|c| key(&c))
        .collect()
}

pub(crate) fn lower(cx: &Ctx, s: &ScaleAdd) -> Result<Lowered> {
    let hw = cx.hw(&s.src);
    cx.expect_hw(&s.dst, hw, "scale_add output")?;
    cx.expect_channels(&s.dst, s.src.channels, "scale_add output")?;
    cx.expect_hw(&s.scale, (1, 1), "scale_add scale")?;
    cx.expect_channels(&s.scale, s.src.channels, "scale_add scale")?;
    if let Some(r) = &s.residual {
        cx.expect_hw(r, hw, "scale_add residual")?;
        cx.expect_channels(r, s.src.channels, "scale_add residual")?;
    }
    let (src_off, src_bs) = cx.view(&s.src, "scale_add input")?;
    let (scale_off, scale_bs) = cx.view(&s.scale, "scale_add scale")?;
    let (dst_off, dst_bs) = cx.view(&s.dst, "scale_add output")?;
    let (res_off, res_bs) = cx.opt_view(s.residual.as_ref(), "scale_add residual")?;
    let plane = hw.0 * hw.1;
    let (gx, gy) = flat_groups((s.src.channels * plane).div_ceil(WG));
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
        ..Default::default()
    };
    Ok(Lowered::plain(
        key(&[
            ("ACT", act_code(s.act)),
            ("HAS_RES", u32::from(s.residual.is_some())),
        ]),
        &params,
        cx.groups(gx, gy)?,
    ))
}
