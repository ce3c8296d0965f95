//! `shaders/scale_add.wgsl`: the end of an SE block, `dst = act(src * scale[c] + residual)`, in one
//! pass (the SE output never makes an extra round trip through memory).
//!
//! Where the views start on whole texels and a chunk's copies fit the adapter's textures, the input
//! and residual are read from rgba32float copies and the output written as vec4s (`TEXELS`; on
//! lavapipe the value-by-value kernel took 14.7 ms on a 256x56x56 block end). Planes of whole
//! texels take one workgroup per channel, others (`RAGGED_PLANE`) one invocation per texel. Views
//! off texel boundaries read the arena value by value, one invocation per element.

use super::{
    on_texel_boundaries, with_activations, with_copies, with_flags, KernelKey, ShaderFile,
    ShaderKey, Slot,
};
use crate::error::Result;
use crate::gpu::kernels::AdapterCaps;
use crate::gpu::lower::{flat_groups, Ctx, Lowered};
use crate::gpu::texture::{self, Texels};
use crate::gpu::uniforms::{act_code, ScaleAddParams};
use crate::gpu::wgsl::Defines;
use crate::graph::ScaleAdd;

/// Invocations per workgroup.
const WG: usize = 64;

/// How a scale-and-add reads and writes its views.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Texture copies and vec4 stores, one workgroup per channel.
    Texels,
    /// Texture copies and vec4 stores, one invocation per texel of the whole view.
    RaggedTexels,
    /// The arena, value by value.
    Values,
}

impl Layout {
    fn defines(self) -> Defines {
        match self {
            Layout::Texels => Defines::new().flag("TEXELS"),
            Layout::RaggedTexels => Defines::new().flag("TEXELS").flag("RAGGED_PLANE"),
            Layout::Values => Defines::new(),
        }
    }

    /// The layout for views at these (offset, image stride) pairs over planes of `plane` values,
    /// `values` per image, in chunks of `images` images on `caps`.
    pub(crate) fn choose(
        views: &[(u32, u32)],
        plane: usize,
        values: usize,
        images: usize,
        caps: &AdapterCaps,
    ) -> Layout {
        if !on_texel_boundaries(views) || !caps.texture_holds(Texels::Vec4, values, images) {
            Layout::Values
        } else if plane.is_multiple_of(4) {
            Layout::Texels
        } else {
            Layout::RaggedTexels
        }
    }
}

fn key(layout: Layout, constants: &[(&'static str, u32)]) -> KernelKey {
    KernelKey::new(
        ShaderKey {
            file: ShaderFile::ScaleAdd,
            defines: layout.defines(),
        },
        "scale_add",
        constants,
    )
}

pub(crate) fn variants() -> Vec<KernelKey> {
    [Layout::Texels, Layout::RaggedTexels, Layout::Values]
        .into_iter()
        .flat_map(|layout| {
            with_activations(&[])
                .iter()
                .flat_map(|c| with_flags(c, &["HAS_RES"]))
                .map(|c| key(layout, &c))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Lowers a scale-and-add for chunks of `images` images on an adapter with `caps`.
pub(crate) fn lower(cx: &Ctx, s: &ScaleAdd, caps: &AdapterCaps, images: usize) -> Result<Lowered> {
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
    let values = s.src.channels * plane;
    let len = cx.u32(values, "scale_add input")?;
    let mut views = vec![(src_off, src_bs), (dst_off, dst_bs)];
    if s.residual.is_some() {
        views.push((res_off, res_bs));
    }
    let layout = Layout::choose(&views, plane, values, images, caps);
    let (gx, gy) = flat_groups(match layout {
        Layout::Texels => s.src.channels,
        Layout::RaggedTexels => values.div_ceil(4 * WG),
        Layout::Values => values.div_ceil(WG),
    });
    let image_texels = if layout == Layout::Values {
        0
    } else {
        texture::image_texels(Texels::Vec4, len)
    };
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
        x_img: image_texels,
        res_img: if s.residual.is_some() {
            image_texels
        } else {
            0
        },
        ..Default::default()
    };
    let lowered = Lowered::plain(
        key(
            layout,
            &[
                ("ACT", act_code(s.act)),
                ("HAS_RES", u32::from(s.residual.is_some())),
            ],
        ),
        &params,
        cx.groups(gx, gy)?,
    );
    let mut copies = Vec::new();
    if layout != Layout::Values {
        copies.push((Slot::Input, (src_off, src_bs)));
        if s.residual.is_some() {
            copies.push((Slot::Residual, (res_off, res_bs)));
        }
    }
    Ok(with_copies(lowered, &copies, len))
}
