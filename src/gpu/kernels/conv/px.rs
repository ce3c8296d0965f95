//! `conv_px.wgsl`: 1x1 stride-1 convolution over linear textures, the pointwise convs that hold
//! most of a Res2Net's work (planes of any size: with `RAGGED_PLANE`, those that are not a multiple
//! of 4 pixels). Where [`super::gp`] reads one
//! pixel per input load and takes 4 products per accumulator write, this family reads texels of 4
//! pixels and takes 16 products per write of a vec4 accumulator, and stores vec4s: on lavapipe it
//! runs the pointwise convs about twice as fast as the general texture family does.
//!
//! A workgroup is one subgroup of `SG` lanes (8 invocations without subgroups); lane `l` owns `P`
//! texels of 4 pixels x `M` output channels of one block. The tiles of texels run over a chunk's
//! images side by side, so a plane that is not a multiple of a tile (14x14: 49 texels, tiles of 8
//! or 16) leaves one part tile per chunk instead of one per image: at batch 8 the 14x14 pointwise
//! convs took a median 0.91 of their time with tiles per image on lavapipe at 8 lanes, 0.78 at 16
//! lanes and 0.82 over OpenGL (docs/performance-history.md, *Tiles over the batch*). Each step
//! reduces 4 input channels. With subgroups each lane loads `ceil(M / SG)` weight texels per step,
//! shared with `subgroupBroadcast`; without (OpenGL, adapters whose subgroup size varies) every
//! lane loads the `M` texels at uniform coordinates. The subgroup width is a define, one variant
//! per width.

use super::{
    fusions, lanes, rule_first, ConvFamily, ConvPlan, ConvShape, Operand, Packing, Tile, Variant,
};
use crate::gpu::kernels::{AdapterCaps, ShaderFile, Slot};
use crate::gpu::tune::ConvKernel;
use crate::gpu::wgsl::Defines;

pub const FAMILY: ConvFamily = ConvFamily {
    kernel: ConvKernel::Px,
    shader: ShaderFile::ConvPx,
    lanes: None,
    fits,
    tiles: candidates,
    plan,
    variants,
    shaders,
};

/// Output channels per block of the pointwise weight layout for a subgroup width (`None`: no
/// subgroups): the widest block of its [`rule_tiles`], 32 from 8 lanes up and 16 below. Every
/// tile's block is a whole packed block or one of its halves, so one copy of a conv's weights
/// serves every plane (and input size) whatever tile each takes.
pub(super) fn packed_block(width: Option<u32>) -> usize {
    rule_tiles(width)
        .iter()
        .map(|&(m, _)| m)
        .max()
        .unwrap_or(TILE.0)
}

/// The defines of the pointwise weight layout for a subgroup width: `PB` output channels per
/// packed block, `PW` weight texels per step of one.
pub(super) fn layout_defines(d: Defines, width: Option<u32>) -> Defines {
    let block = packed_block(width);
    d.value("PB", block as u32)
        .value("PW", lanes::slots(width, block) as u32)
}

/// Planes of at most this many texels (14x14 and smaller) take [`SMALL_PLANE_TILE`] at 8 lanes.
const SMALL_PLANE_TEXELS: usize = 64;

/// The tile of 8-lane subgroups on small planes: 32 output channels x 1 texel per lane, which
/// shares each input load (two on 7x7 planes, whose channels start mid-texel) over twice the FMAs.
/// On lavapipe at 8 lanes (AMD Zen 3, AVX2), res2net50_26w_4s, 60 forwards alternating in one
/// process with the previous rule (16 x 1 on 14x14 planes, 16 x 2 on 7x7): the fastest times of
/// the 14x14 pointwise convs 10-16% lower, of the 7x7 ones 1-6%; the median per-forward ratio
/// 0.97 and 0.95, against 1.01-1.02 on the larger planes, whose tile is unchanged. On those 16 x 2
/// stayed faster (by up to 21%); at 4 lanes and over OpenGL 32 x 1 was no faster on any plane.
const SMALL_PLANE_TILE: (usize, usize) = (32, 1);

/// The tile elsewhere below 16 lanes: 16 output channels x 2 texels per lane, 32 vec4
/// accumulators. Over OpenGL it was also faster than 16 x 1 on 12 of the 13 14x14 convs (by up
/// to 22%; 2% slower on the other), which it pads from 56 texels to 64.
const TILE: (usize, usize) = (16, 2);

/// (output channels per block, texels per lane) of a subgroup width (`None`: no subgroups) on
/// planes of `texels` texels. 32 x 1 at 16 lanes and wider, where the per-lane texel loads cost
/// about as much as the arithmetic (they cost the same per lane at any width, the arithmetic half
/// as much as at 8): on lavapipe with 512-bit vectors (AVX-512) 32 channels read a higher share of
/// the FMA peak than 16 in each of 10 alternating rounds of res2net50_26w_4s (28-36% against
/// 24-28% in process CPU time). At 8 lanes, [`SMALL_PLANE_TILE`] on small planes; else [`TILE`].
pub(super) fn tile(width: Option<u32>, texels: usize) -> (usize, usize) {
    match width {
        Some(w) if w >= 16 => (32, 1),
        Some(8) if texels <= SMALL_PLANE_TEXELS => SMALL_PLANE_TILE,
        _ => TILE,
    }
}

/// Every tile [`tile`] gives a subgroup width: the large planes' and the small ones'.
fn rule_tiles(width: Option<u32>) -> Vec<(usize, usize)> {
    let mut all = vec![tile(width, usize::MAX), tile(width, 1)];
    all.dedup();
    all
}

/// Every tile of a subgroup width, for the tuner and the compiled variants: blocks of a whole
/// packed block and of half of one, 1 and 2 texels per lane.
fn all_tiles(width: Option<u32>) -> [Tile; 4] {
    let block = packed_block(width);
    [(block, 1), (block, 2), (block / 2, 1), (block / 2, 2)]
}

/// The tiles the tuner may time for a conv: the rule's, then the others of its width.
fn candidates(s: &ConvShape, caps: &AdapterCaps) -> Vec<Tile> {
    let width = lanes::subgroup_width(caps);
    let rule = tile(width, s.out_plane().div_ceil(4));
    rule_first(rule, all_tiles(width))
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

/// The defines of a tile; `plane4` is the plane's size mod 4 (its channels' shift into their
/// first texel steps by it), 0 for planes of whole texels. With the shifts constants of the
/// variant, res2net50_26w_4s's 7x7 pointwise convs took 0.93-0.96 of the time of shifts computed
/// per step (lavapipe, 8 lanes; two runs of 16 and 20 forwards alternating in one process).
fn defines(width: Option<u32>, (m, p): (usize, usize), plane4: u32) -> Defines {
    let d = layout_defines(lanes::defines(width, m, p, m), width);
    if plane4 > 0 {
        d.flag(lanes::RAGGED_PLANE).value("PLANE4", plane4)
    } else {
        d
    }
}

fn plan(s: &ConvShape, caps: &AdapterCaps, tile: Option<Tile>) -> ConvPlan {
    let width = lanes::subgroup_width(caps);
    let texels = s.out_plane().div_ceil(4);
    let (m, p) = tile.unwrap_or_else(|| self::tile(width, texels));
    let (cout_blocks, x_blocks) = lanes::grid(s.cout_g, m, texels, width, p);
    ConvPlan {
        defines: defines(width, (m, p), (s.out_plane() % 4) as u32),
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
    let block = packed_block(width);
    Packing::Pointwise {
        block,
        slots: lanes::slots(width, block),
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
        .flat_map(|w| {
            all_tiles(w)
                .into_iter()
                .flat_map(move |t| (0..4).map(move |plane4| defines(w, t, plane4)))
        })
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
                let plan = plan(&ConvShape { res, ..POINTWISE }, &caps(sizes), None);
                assert!(all.contains(&plan.defines), "{plan:?}");
                assert!(variants().contains(&(plan.entry, plan.constants.clone())));
                // 104 channels in blocks of 16 (7), or 32 (4) at 8 lanes and wider; 49 texels
                // per channel in tiles of 16 (2 per lane at 4 lanes and without subgroups,
                // 1 at 16 lanes) or 8 (1 per lane at 8 lanes: a plane of at most 64 texels).
                // Weights in blocks of 32 from 8 lanes up.
                let (m, groups) = match sizes {
                    Some((8, 8)) => (32, (4, 7)),
                    Some((16, 16)) => (32, (4, 4)),
                    Some((4, 4)) => (16, (7, 7)),
                    _ => (16, (7, 4)),
                };
                assert_eq!(plan.groups, groups, "{sizes:?}");
                assert_eq!(plan.defines.get("M"), Some(m));
                assert_eq!(plan.defines.get("PB"), Some(m));
                assert_eq!(plan.packing, packing(lanes::subgroup_width(&caps(sizes))));
                assert_eq!(plan.defines.get(lanes::RAGGED_PLANE), None);
            }
            // 13 texels per channel, the last holding one pixel.
            let ragged = plan(&lanes::test_shape(1, 7, 64, 104), &caps(sizes), None);
            assert!(all.contains(&ragged.defines), "{ragged:?}");
            assert_eq!(ragged.defines.get(lanes::RAGGED_PLANE), Some(1));
            assert_eq!(ragged.defines.get("PLANE4"), Some(1));
            for (side, plane4) in [(6, 0), (5, 1), (17, 1), (11, 1), (9, 1), (3, 1)] {
                let d = plan(&lanes::test_shape(1, side, 64, 104), &caps(sizes), None).defines;
                assert!(all.contains(&d), "{d:?}");
                assert_eq!(d.get("PLANE4").unwrap_or(0), plane4, "{side}x{side}");
            }
            // 5x6 and 3x5 planes.
            for (h, w, plane4) in [(5, 6, 2), (3, 5, 3)] {
                let s = ConvShape {
                    in_h: h,
                    out_h: h,
                    in_w: w,
                    out_w: w,
                    ..lanes::test_shape(1, 5, 64, 104)
                };
                let d = plan(&s, &caps(sizes), None).defines;
                assert!(all.contains(&d), "{d:?}");
                assert_eq!(d.get("PLANE4"), Some(plane4), "{h}x{w}");
            }
            let groups = match sizes {
                Some((8, 8)) => (4, 2),
                Some((16, 16)) => (4, 1),
                Some((4, 4)) => (7, 2),
                _ => (7, 1),
            };
            assert_eq!(ragged.groups, groups, "{sizes:?}");
        }
    }

    #[test]
    fn the_tuner_times_every_tile_of_a_width_the_rules_first() {
        for sizes in lanes::TEST_SIZES {
            let caps = caps(sizes);
            for side in [28, 14, 7] {
                let s = lanes::test_shape(1, side, 64, 104);
                let tiles = candidates(&s, &caps);
                assert_eq!(tiles.len(), 4, "{sizes:?} {side}: {tiles:?}");
                let rule = plan(&s, &caps, None);
                assert_eq!(plan(&s, &caps, Some(tiles[0])), rule);
                for t in tiles {
                    let p = plan(&s, &caps, Some(t));
                    assert!(shaders().contains(&p.defines), "{p:?}");
                    assert_eq!(
                        (p.defines.get("M"), p.defines.get("P")),
                        (Some(t.0 as u32), Some(t.1 as u32))
                    );
                    assert_eq!(p.packing, rule.packing, "one weight layout for every tile");
                }
            }
        }
    }

    #[test]
    fn every_tile_reads_the_same_weight_layout() {
        // The 28x28 and 14x14 planes of one conv take different tiles at 8 lanes, one copy of
        // its weights.
        let large = lanes::test_shape(1, 28, 64, 104);
        let caps8 = caps(Some((8, 8)));
        let (a, b) = (plan(&large, &caps8, None), plan(&POINTWISE, &caps8, None));
        assert_ne!(a.defines.get("M"), b.defines.get("M"));
        assert_eq!(a.packing, b.packing);
        // Every block, the rule's and the tuner's, is a whole packed block or a half of one.
        for w in lanes::widths() {
            let block = packed_block(w);
            for (m, _) in rule_tiles(w).into_iter().chain(all_tiles(w)) {
                assert!(m == block || 2 * m == block, "{w:?}: {m}");
            }
        }
        assert_eq!(packed_block(Some(8)), 32);
        assert_eq!(packed_block(Some(4)), 16);
        assert_eq!(packed_block(None), 16);
    }
}
