//! `shaders/global_pool.wgsl`: the mean of each channel plane into a `[C, 1, 1]` view (the network's
//! end and every SE squeeze). One invocation per channel.

use super::{KernelKey, ShaderFile, ShaderKey};
use crate::error::Result;
use crate::gpu::lower::{Ctx, Lowered};
use crate::gpu::uniforms::GlobalPoolParams;
use crate::graph::GlobalAvgPool;

/// Invocations per workgroup.
const WG: usize = 64;

fn key() -> KernelKey {
    KernelKey::new(
        ShaderKey::new(ShaderFile::GlobalPool),
        "global_avg_pool",
        &[],
    )
}

pub(crate) fn variants() -> Vec<KernelKey> {
    vec![key()]
}

pub(crate) fn lower(cx: &Ctx, g: &GlobalAvgPool) -> Result<Lowered> {
    cx.expect_hw(&g.dst, (1, 1), "global pool output")?;
    cx.expect_channels(&g.dst, g.src.channels, "global pool output")?;
    let (h, w) = cx.hw(&g.src);
    let views = cx.src_dst(&g.src, &g.dst, "global pool")?;
    let params = GlobalPoolParams {
        channels: cx.u32(g.src.channels, "channels")?,
        plane: cx.u32(h * w, "plane")?,
        ..views
    };
    Ok(Lowered::plain(
        key(),
        &params,
        cx.groups(g.src.channels.div_ceil(WG), 1)?,
    ))
}
