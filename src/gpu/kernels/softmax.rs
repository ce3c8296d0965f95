//! `shaders/softmax.wgsl`: softmax over the channels of a `[C, 1, 1]` view, one workgroup of 64 per
//! image (max and sum reduced in workgroup memory).

use super::{KernelKey, ShaderFile, ShaderKey};
use crate::error::Result;
use crate::gpu::lower::{Ctx, Lowered};
use crate::gpu::uniforms::SoftmaxParams;
use crate::graph::Softmax;

fn key() -> KernelKey {
    KernelKey::new(ShaderKey::new(ShaderFile::Softmax), "softmax", &[])
}

pub(crate) fn variants() -> Vec<KernelKey> {
    vec![key()]
}

pub(crate) fn lower(cx: &Ctx, s: &Softmax) -> Result<Lowered> {
    cx.expect_hw(&s.src, (1, 1), "softmax input")?;
    cx.expect_hw(&s.dst, (1, 1), "softmax output")?;
    cx.expect_channels(&s.dst, s.src.channels, "softmax output")?;
    let views = cx.src_dst(&s.src, &s.dst, "softmax")?;
    let params = SoftmaxParams {
        channels: cx.u32(s.src.channels, "channels")?,
        ..views
    };
    Ok(Lowered::plain(key(), &params, (1, 1)))
}
