//! `conv_px.wgsl`: 1x1 stride-1 convolution over linear textures, the pointwise convs that hold
//! most of a Res2Net's work (planes of any size: with `RAGGED_PLANE`, those that are not a multiple
//! of 4 pixels). Where [`super::gp`] reads one
//! pixel per input load and takes 4 products per accumulator write, this family reads texels of 4
//! pixels and takes 16 products per write of a vec4 accumulator, and stores vec4s: on lavapipe it
//! runs the pointwise convs about twice as fast as the general texture family does.
//!
//! A workgroup is one subgroup of `SG` lanes (8 invocations without subgroups); lane `l` owns `P`
//! texels of 4 pixels x `M` output channels of one block. Each step reduces 4 input channels. With
//! subgroups each lane loads `ceil(M / SG)` weight texels per step, shared with `subgroupBroadcast`;
//! without (OpenGL, adapters whose subgroup size varies) every lane loads the `M` texels at uniform
//! coordinates. The subgroup width is a define, one variant per width.

use super::{fusions, lanes, ConvFamily, ConvPlan, ConvShape, Operand, Packing, Variant};
use crate::gpu::kernels::{AdapterCaps, ShaderFile, Slot};
use crate::gpu::tune::ConvKernel;
use crate::gpu::wgsl::Defines;

pub const FAMILY: ConvFamily = ConvFamily {
    kernel: ConvKernel::Px,
    shader: ShaderFile::ConvPx,
    lanes: None,
    fits,
    plan,
    variants,
    shaders,
};

/// Output channels per block for a subgroup width (`None`: no subgroups): 16, and 32 at 16 lanes
/// and wider. Each loaded input texel feeds one FMA chain per channel of the block, and at 16 lanes
/// the per-lane texel loads cost about as much as the arithmetic (they cost the same per lane at
/// any width, the arithmetic half as much as at 8). On lavapipe with 512-bit vectors (AVX-512)
/// 32 channels read a higher share of the FMA peak than 16 in each of 10 alternating rounds of
/// res2net50_26w_4s (28-36% against 24-28% in process CPU time); at 4 and 8 lanes and over OpenGL
/// 16 channels x 2 texels per lane (32 vec4 accumulators) measured best.
pub(super) fn block(width: Option<u32>) -> usize {
    if width.is_some_and(|w| w >= 16) {
        32
    } else {
        16
    }
}

/// The texels per lane a subgroup width's variants take (`None`: no subgroups): 1 or 2, only 1 at
/// 16 lanes and wider.
fn texel_choices(width: Option<u32>) -> std::ops::RangeInclusive<usize> {
    if width.is_some_and(|w| w >= 16) {
        1..=1
    } else {
        1..=2
    }
}

/// Pixel texels per lane for a subgroup width over planes of `texels` texels: 2 where the width
/// takes 2 (each step's weights shared by twice the pixels), except where tiles of 2 texels per
/// lane would pad the plane by over a tenth more than tiles of 1. That is a 14x14 plane at 8
/// lanes: 49 texels take 64 in tiles of 16, 56 in tiles of 8; its pointwise convs measured 8-10%
/// faster with 1 texel per lane, the 28x28 and 56x56 ones slower.
fn texels_per_lane(width: Option<u32>, texels: usize) -> usize {
    let padded = |p: usize| texels.div_ceil(lanes::lanes(width) * p) * lanes::lanes(width) * p;
    if *texel_choices(width).end() == 1 || padded(2) * 10 > padded(1) * 11 {
        1
    } else {
        2
    }
}

/// Ungrouped 1x1 stride-1 convs without an added input, with 4-channel steps, over views of whole
/// texels ([`ConvShape::views_whole_texels`]).
fn fits(s: &ConvShape) -> bool {
    s.pointwise()
        && s.groups == 1
        && s.add.is_none()
        && s.cin_g.is_multiple_of(4)
        && s.views_whole_texels()
}

fn defines(width: Option<u32>, texels_per_lane: usize, ragged: bool) -> Defines {
    let d = lanes::defines(width, block(width), texels_per_lane, block(width));
    if ragged {
        d.flag(lanes::RAGGED_PLANE)
    } else {
        d
    }
}

fn plan(s: &ConvShape, caps: &AdapterCaps) -> ConvPlan {
    let width = lanes::subgroup_width(caps);
    let texels = s.out_plane().div_ceil(4);
    let p = texels_per_lane(width, texels);
    let (cout_blocks, x_blocks) = lanes::grid(s.cout_g, block(width), texels, width, p);
    ConvPlan {
        defines: defines(width, p, lanes::ragged(s)),
        entry: "conv_px",
        constants: fusions(s),
        cout_blocks,
        x_blocks,
        groups: (cout_blocks, x_blocks),
        packing: packing(width),
        split_k: None,
        inputs: std::iter::once((Slot::Input, Operand::Src))
            .chain(s.res.map(|_| (Slot::Residual, Operand::Res)))
            .collect(),
    }
}

/// The weight layout of this family's plans (and of the general family's on the same convs).
pub(super) fn packing(width: Option<u32>) -> Packing {
    Packing::Pointwise {
        block: block(width),
        slots: lanes::slots(width, block(width)),
    }
}

/// The fused variants without an added input (which [`fits`] refuses).
fn variants() -> Vec<Variant> {
    lanes::fused("conv_px")
        .into_iter()
        .filter(|(_, c)| c.contains(&("HAS_ADD", 0)))
        .collect()
}

fn shaders() -> Vec<Defines> {
    lanes::widths()
        .flat_map(|w| texel_choices(w).flat_map(move |p| [false, true].map(|r| defines(w, p, r))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::kernels::conv::lanes::{self, caps};

    const POINTWISE: ConvShape = ConvShape {
        res: Some((4, 196 * 104)),
        ..lanes::test_shape(1, 14, 64, 104)
    };

    #[test]
    fn fits_pointwise_convs_over_whole_texels_only() {
        assert!(fits(&POINTWISE));
        // A 49-pixel plane: the output is stored value by value, from any offset.
        let plane7 = lanes::test_shape(1, 7, 64, 104);
        assert!(fits(&plane7));
        assert!(fits(&ConvShape {
            dst: (3, 49 * 107),
            ..plane7
        }));
        let refused = [
            ConvShape {
                res: Some((0, 49 * 106)),
                cout_g: 106,
                ..plane7
            },
            ConvShape {
                cin_g: 62,
                ..POINTWISE
            },
            ConvShape {
                stride: 2,
                ..POINTWISE
            },
            ConvShape {
                add: Some((0, 0)),
                ..POINTWISE
            },
            ConvShape {
                dst: (2, 196 * 104),
                ..POINTWISE
            },
            ConvShape {
                res: Some((0, 6)),
                ..POINTWISE
            },
        ];
        for s in refused {
            assert!(!fits(&s), "{s:?}");
        }
    }

    #[test]
    fn planned_defines_and_constants_are_compiled_variants() {
        let all = shaders();
        for sizes in lanes::TEST_SIZES {
            for res in [None, Some((0, 196 * 104))] {
                let plan = plan(&ConvShape { res, ..POINTWISE }, &caps(sizes));
                assert!(all.contains(&plan.defines), "{plan:?}");
                assert!(variants().contains(&(plan.entry, plan.constants.clone())));
                // 104 channels in blocks of 16, or 32 at 16 lanes; 49 texels per channel in tiles
                // of 8 (4 lanes x 2, 8 lanes or invocations x 1) or 16 (16 lanes x 1).
                let sixteen = sizes == Some((16, 16));
                let groups = if sixteen { (4, 4) } else { (7, 7) };
                assert_eq!(plan.groups, groups, "{sizes:?}");
                assert_eq!(plan.defines.get("M"), Some(if sixteen { 32 } else { 16 }));
                assert_eq!(plan.defines.get(lanes::RAGGED_PLANE), None);
            }
            // 13 texels per channel, the last holding one pixel.
            let ragged = plan(&lanes::test_shape(1, 7, 64, 104), &caps(sizes));
            assert!(all.contains(&ragged.defines), "{ragged:?}");
            assert_eq!(ragged.defines.get(lanes::RAGGED_PLANE), Some(1));
            let tiles = if sizes == Some((4, 4)) { 2 } else { 1 };
            let blocks = if sizes == Some((16, 16)) { 4 } else { 7 };
            assert_eq!(ragged.groups, (blocks, tiles), "{sizes:?}");
        }
    }
}
