//! `conv_t3.wgsl`: 3x3 padding-1 convolution over linear textures for rows of a multiple of 4
//! pixels (the Res2Net chains at 56x56 and 28x28); with the `FLAT_ROWS` define for planes whose
//! texels may straddle two rows (14x14), with `RAGGED_PLANE` too for planes that are not a multiple
//! of 4 pixels (7x7), and with `STRIDE2` for stride 2 from an input twice the output's size
//! (56x56 -> 28x28; with `FLAT_ROWS` for output rows that are not whole texels, 28x28 -> 14x14 and
//! 14x14 -> 7x7). `STEM7` takes 7x7 kernels with padding 3 instead, at stride 1 over rows of whole
//! texels (the DLAs' stems) or 2 with `STRIDE2` (the RGB stems). Where [`super::gp`] loads one
//! input value per tap, this family loads a texel of 4 pixels and its two neighbours per input
//! channel and kernel row and assembles the 3 taps from their components: 12 products per vec4
//! accumulator write.
//! Weights use the texture family's layout ([`Packing::Texture`]), so the two share a packing
//! where their blocks agree.
//!
//! A workgroup is one subgroup of `SG` lanes (8 invocations without subgroups); lane `l` owns `P`
//! texels x `M` output channels of one block.

use super::{
    fusions, lanes, rule_first, ConvFamily, ConvPlan, ConvShape, Operand, Packing, Tile, Variant,
};
use crate::gpu::kernels::{AdapterCaps, ShaderFile, Slot};
use crate::gpu::tune::ConvKernel;
use crate::gpu::wgsl::Defines;

pub const FAMILY: ConvFamily = ConvFamily {
    kernel: ConvKernel::T3,
    shader: ShaderFile::ConvT3,
    lanes: None,
    fits,
    tiles: candidates,
    plan,
    variants,
    shaders,
};

/// (output channels per block, texels per lane). Measured on lavapipe: 28 x 2 for the 26-channel
/// chains, 52 x 1 for the 52-channel ones (about 56 vec4 accumulators either way).
const NARROW: (usize, usize) = (28, 2);
const WIDE: (usize, usize) = (52, 1);
/// Tiles for groups of at most 4, 8 or 16 output channels (ResNeXt-style grouped convs), which
/// wider blocks would compute several times over (a 32-channel tile is among [`WIDER`]). Every
/// texel loaded feeds only the block's channels, so these keep fewer accumulators than the wide
/// tiles.
const SMALL: [(usize, usize); 3] = [(4, 4), (8, 4), (16, 2)];
/// The tiles for wider groups, preferred first; the 1-texel ones pad small planes less (a 14x14
/// plane is 49 texels: 56 in tiles of 8, 64 in tiles of 16).
const WIDER: [(usize, usize); 5] = [WIDE, (32, 2), NARROW, (32, 1), (28, 1)];
/// The same at 4 lanes and at 16 and wider, preferring one texel per lane: on lavapipe (AMD Zen 3,
/// res2net50_26w_4s, two sessions in one process, 16 forwards each, alternating) 32 x 1 took
/// 0.85-0.87 of 32 x 2's time on the RGB stem, and 28 x 1 0.79-0.85 of 28 x 2's on layer1's
/// 26-channel chains; at 8 lanes both read within noise (1.02-1.05), over OpenGL slower (1.16 and
/// 1.34). A tile of 2 texels does no less work than its 1-texel twin, so none is listed.
const WIDER_ONE_TEXEL: [(usize, usize); 3] = [WIDE, (32, 1), (28, 1)];

/// Every tile.
fn tiles() -> impl Iterator<Item = (usize, usize)> {
    SMALL.into_iter().chain(WIDER)
}

/// The tile of a group's output channels over planes of `texels` for a subgroup width (`None`:
/// no subgroups): the narrowest small tile that holds up to 16 channels; else the first of
/// [`WIDER`] (at 4 lanes and 16 and wider, [`WIDER_ONE_TEXEL`]) whose padded work (channels x
/// texels, both rounded up to whole blocks and tiles) is within 5% of the least. So 56 channels
/// take two 28-channel blocks, where 52-channel ones would compute 48 idle ones.
fn tile(s: &ConvShape, width: Option<u32>) -> (usize, usize) {
    if let Some(&t) = SMALL.iter().find(|t| s.cout_g <= t.0) {
        return t;
    }
    let lanes = lanes::lanes(width);
    let texels = s.out_plane().div_ceil(4);
    let work =
        |(m, p): (usize, usize)| s.cout_g.div_ceil(m) * m * texels.div_ceil(lanes * p) * lanes * p;
    let order: &[(usize, usize)] = match width {
        Some(w) if w != 8 => &WIDER_ONE_TEXEL,
        _ => &WIDER,
    };
    let least = order.iter().map(|&t| work(t)).min().unwrap_or(0);
    order
        .iter()
        .copied()
        .find(|&t| work(t) * 100 <= least * 105)
        .unwrap_or(WIDE)
}

/// The tiles the tuner may time for a conv: the rule's, then for groups of more than 16 output
/// channels every other tile of [`WIDER`] (the small tiles would compute a wide group in many
/// blocks, re-reading its input for each; a small group keeps its one tile).
fn candidates(s: &ConvShape, caps: &AdapterCaps) -> Vec<Tile> {
    let rule = tile(s, lanes::subgroup_width(caps));
    if SMALL.contains(&rule) {
        return vec![rule];
    }
    rule_first(rule, WIDER)
}

/// The define for planes whose rows are not whole texels.
const FLAT_ROWS: &str = "FLAT_ROWS";

/// The define of [`Rows::Flat`]'s width mod 4, which makes each kernel row's shift into the texels
/// a constant. With FLAT_ROWS at stride 1 the shader also takes the 3 kernel rows of an input
/// channel per loop iteration and writes each accumulator once per 9 taps. On lavapipe at 8 lanes
/// (res2net50_26w_4s, sessions alternating in one process, 16 forwards each): constant shifts took
/// 0.97 of the time of shifts computed per row on the 14x14 chains (median; fastest times
/// 0.88-0.96 ms against 0.92-0.98), and the 9-tap writes about 0.95 of that again (fastest
/// 0.82-0.92 ms against 0.87-0.99); on the 7x7 chains (shifts computed, RAGGED_PLANE) the 9-tap
/// writes read 0.93-1.00 of the fastest times. On rows of whole texels they were 4-6% faster on
/// layer1's 26-channel chains but up to 15% slower on layer2's first chain convs, so those keep
/// a write per kernel row. At 4 and 16 lanes and over OpenGL the 14x14 and 7x7 chains took the
/// same time as with shifts computed per row (ratios 0.96-1.07, 12 forwards each).
const W4: &str = "W4";

/// How a plane lies in texels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rows {
    /// Every row whole texels.
    Whole,
    /// [`Rows::Whole`] for a 7x7 kernel with padding 3 at stride 1 (`STEM7`).
    WholeStem,
    /// A plane of whole texels whose rows are not (`FLAT_ROWS`), of this width mod 4 ([`W4`]).
    Flat(u32),
    /// A plane of any size in views of whole texels (`FLAT_ROWS` and `RAGGED_PLANE`).
    Ragged,
    /// Stride 2 from an input twice the output's size, output rows of whole texels (`STRIDE2`).
    Halved,
    /// [`Rows::Halved`] for a 7x7 kernel with padding 3 (`STRIDE2` and `STEM7`).
    HalvedStem,
    /// Stride 2 from an input twice the output's size, output rows not of whole texels, the
    /// output plane whole texels (`STRIDE2` and `FLAT_ROWS`: 28x28 -> 14x14)...
    HalvedFlat,
    /// ... or not (`RAGGED_PLANE` too: 14x14 -> 7x7).
    HalvedRagged,
}

/// The define for stride 2 ([`Rows::Halved`]).
const STRIDE2: &str = "STRIDE2";

/// The define for a 7x7 kernel with padding 3 ([`Rows::WholeStem`], [`Rows::HalvedStem`]).
const STEM7: &str = "STEM7";

/// Stride 2 over an input of twice the output's (even) size: 3x3 with padding 1 (Res2Net's and
/// the DLAs' strided 3x3 convs), or 7x7 with padding 3 where output rows are whole texels (the RGB
/// stems).
fn halves(s: &ConvShape) -> bool {
    let kernel = match (s.kh, s.kw, s.stride, s.pad) {
        (3, 3, 2, 1) => true,
        (7, 7, 2, 3) => s.out_w.is_multiple_of(4),
        _ => false,
    };
    kernel && (s.in_h, s.in_w) == (2 * s.out_h, 2 * s.out_w)
}

/// 7x7, stride 1, padding 3 over rows of whole texels: the DLAs' stems.
fn stem_rows(s: &ConvShape) -> bool {
    (s.kh, s.kw, s.stride, s.pad) == (7, 7, 1, 3) && s.in_w.is_multiple_of(4)
}

fn rows(s: &ConvShape) -> Rows {
    if stem_rows(s) {
        Rows::WholeStem
    } else if s.stride == 2 && s.kh == 7 {
        Rows::HalvedStem
    } else if s.stride == 2 && s.out_w.is_multiple_of(4) {
        Rows::Halved
    } else if s.stride == 2 && lanes::ragged(s) {
        Rows::HalvedRagged
    } else if s.stride == 2 {
        Rows::HalvedFlat
    } else if lanes::ragged(s) {
        Rows::Ragged
    } else if !s.in_w.is_multiple_of(4) {
        Rows::Flat((s.in_w % 4) as u32)
    } else {
        Rows::Whole
    }
}

/// 3x3 padding-1 convs, grouped or not, at stride 1, the stride-2 convs of [`halves`] and the
/// stride-1 stems of [`stem_rows`], over views of whole texels ([`ConvShape::views_whole_texels`]).
fn fits(s: &ConvShape) -> bool {
    (s.row3() || halves(s) || stem_rows(s)) && s.views_whole_texels()
}

fn defines(width: Option<u32>, tile: (usize, usize), rows: Rows) -> Defines {
    let d = lanes::quad_defines(width, tile);
    match rows {
        Rows::Whole => d,
        Rows::WholeStem => d.flag(STEM7),
        Rows::Flat(w4) => d.flag(FLAT_ROWS).value(W4, w4),
        Rows::Ragged => d.flag(FLAT_ROWS).flag(lanes::RAGGED_PLANE),
        Rows::Halved => d.flag(STRIDE2),
        Rows::HalvedStem => d.flag(STRIDE2).flag(STEM7),
        Rows::HalvedFlat => d.flag(STRIDE2).flag(FLAT_ROWS),
        Rows::HalvedRagged => d.flag(STRIDE2).flag(FLAT_ROWS).flag(lanes::RAGGED_PLANE),
    }
}

fn plan(s: &ConvShape, caps: &AdapterCaps, tile: Option<Tile>) -> ConvPlan {
    let width = lanes::subgroup_width(caps);
    let (m, pt) = tile.unwrap_or_else(|| self::tile(s, width));
    let (cout_blocks, x_blocks) = lanes::grid(s.cout_g, m, s.out_plane().div_ceil(4), width, pt);
    let inputs = [
        Some((Slot::Input, Operand::Src)),
        s.add.map(|_| (Slot::AddInput, Operand::Add)),
        s.res.map(|_| (Slot::Residual, Operand::Res)),
    ];
    ConvPlan {
        defines: defines(width, (m, pt), rows(s)),
        entry: "conv_t3",
        constants: fusions(s),
        cout_blocks,
        x_blocks,
        groups: (s.groups * cout_blocks, x_blocks),
        packing: Packing::Texture {
            block: m,
            slots: lanes::slots(width, m / 4),
        },
        split_k: None,
        inputs: inputs.into_iter().flatten().collect(),
    }
}

fn variants() -> Vec<Variant> {
    lanes::fused("conv_t3")
}

fn shaders() -> Vec<Defines> {
    lanes::widths()
        .flat_map(|w| {
            tiles().flat_map(move |t| {
                [
                    Rows::Whole,
                    Rows::WholeStem,
                    Rows::Flat(1),
                    Rows::Flat(2),
                    Rows::Flat(3),
                    Rows::Ragged,
                    Rows::Halved,
                    Rows::HalvedStem,
                    Rows::HalvedFlat,
                    Rows::HalvedRagged,
                ]
                .map(|r| defines(w, t, r))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::kernels::conv::lanes::{self, caps};

    const CHAIN: ConvShape = ConvShape {
        add: Some((0, 3136 * 104)),
        ..lanes::test_shape(3, 56, 26, 26)
    };

    #[test]
    fn fits_aligned_planes_of_3x3_stride_1_convs() {
        assert!(fits(&CHAIN));
        let row14 = lanes::test_shape(3, 14, 26, 26);
        assert!(fits(&row14));
        // 7x7 planes in views of whole texels (28 channels), stored value by value.
        assert!(fits(&lanes::test_shape(3, 7, 28, 28)));
        // Stride 2 from 56x56 to 28x28 (output rows of 7 texels), from 28x28 to 14x14 (rows of
        // 3.5 texels) and from 14x14 to 7x7 (a plane of 12.25); not from an odd size.
        let halved = |side: usize, out: usize| ConvShape {
            stride: 2,
            in_h: side,
            in_w: side,
            out_h: out,
            out_w: out,
            ..lanes::test_shape(3, out, 26, 26)
        };
        assert!(fits(&halved(56, 28)));
        assert_eq!(rows(&halved(56, 28)), Rows::Halved);
        assert_eq!(rows(&halved(28, 14)), Rows::HalvedFlat);
        // The 7x7 output stored value by value from any offset.
        assert!(fits(&ConvShape {
            dst: (3, 49 * 27),
            ..halved(14, 7)
        }));
        assert_eq!(rows(&halved(14, 7)), Rows::HalvedRagged);
        assert!(!fits(&halved(57, 29)));
        // 7x7 stride-1 stems over rows of whole texels, not over rows of 63 pixels.
        let stem = |side| lanes::test_shape(7, side, 4, 16);
        assert!(fits(&stem(224)));
        assert_eq!(rows(&stem(224)), Rows::WholeStem);
        assert!(!fits(&stem(63)));
        // Grouped convs: 8 groups of 4 channels.
        assert!(fits(&ConvShape {
            groups: 8,
            cin_g: 4,
            cout_g: 4,
            ..CHAIN
        }));
        let refused = [
            lanes::test_shape(3, 7, 26, 26),
            ConvShape { stride: 2, ..CHAIN },
            ConvShape {
                add: Some((2, 0)),
                ..CHAIN
            },
            ConvShape {
                res: Some((1, 0)),
                ..CHAIN
            },
        ];
        for s in refused {
            assert!(!fits(&s), "{s:?}");
        }
    }

    #[test]
    fn the_tuner_times_the_wide_tiles_of_wide_groups_the_rules_first() {
        for sizes in lanes::TEST_SIZES {
            let caps = caps(sizes);
            for (side, cout) in [(56, 26), (14, 52), (7, 104), (28, 64)] {
                let s = lanes::test_shape(3, side, cout, cout);
                let tiles = candidates(&s, &caps);
                assert_eq!(tiles.len(), WIDER.len(), "{tiles:?}");
                assert_eq!(plan(&s, &caps, Some(tiles[0])), plan(&s, &caps, None));
                for t in tiles {
                    let p = plan(&s, &caps, Some(t));
                    assert!(shaders().contains(&p.defines), "{p:?}");
                    assert_eq!(p.defines.get("M"), Some(t.0 as u32));
                    assert_eq!(
                        p.packing,
                        Packing::Texture {
                            block: t.0,
                            slots: lanes::slots(lanes::subgroup_width(&caps), t.0 / 4)
                        }
                    );
                }
            }
            let small = ConvShape {
                groups: 8,
                cin_g: 8,
                cout_g: 8,
                ..CHAIN
            };
            assert_eq!(
                candidates(&small, &caps),
                [tile(&small, lanes::subgroup_width(&caps))]
            );
        }
    }

    #[test]
    fn planned_defines_are_compiled_shaders() {
        let all = shaders();
        for sizes in lanes::TEST_SIZES {
            for cout_g in [26, 52, 100] {
                let plan = plan(&ConvShape { cout_g, ..CHAIN }, &caps(sizes), None);
                assert!(all.contains(&plan.defines), "{plan:?}");
                assert!(variants().contains(&(plan.entry, plan.constants.clone())));
                assert_eq!(plan.inputs.len(), 2);
            }
        }
        // 784 texels per channel: 49 tiles of 16 at 8 lanes x 2 texels.
        let aligned = plan(&CHAIN, &caps(Some((8, 8))), None);
        assert_eq!(aligned.groups, (1, 49));
        assert_eq!(aligned.defines.get(FLAT_ROWS), None);
        let flat = plan(&lanes::test_shape(3, 14, 26, 26), &caps(Some((8, 8))), None);
        assert!(all.contains(&flat.defines), "{flat:?}");
        assert_eq!(flat.defines.get(FLAT_ROWS), Some(1));
        assert_eq!(flat.defines.get(lanes::RAGGED_PLANE), None);
        // Rows of 14 pixels: each kernel row's shift is a constant (W4 = 14 mod 4).
        assert_eq!(flat.defines.get(W4), Some(2));
        let rows7 = ConvShape {
            in_h: 4,
            out_h: 4,
            in_w: 7,
            out_w: 7,
            ..lanes::test_shape(3, 14, 26, 26)
        };
        let flat7 = plan(&rows7, &caps(Some((8, 8))), None);
        assert!(all.contains(&flat7.defines), "{flat7:?}");
        assert_eq!(flat7.defines.get(W4), Some(3));
        // 13 texels per channel: 2 tiles of 8 texels (8 lanes x 1) for 52-channel blocks.
        let ragged = plan(&lanes::test_shape(3, 7, 52, 52), &caps(Some((8, 8))), None);
        assert!(all.contains(&ragged.defines), "{ragged:?}");
        assert_eq!(ragged.defines.get(lanes::RAGGED_PLANE), Some(1));
        assert_eq!(ragged.defines.get(W4), None);
        assert_eq!(ragged.groups, (1, 2));
        // 8 groups of 4 channels: 4-channel blocks, a block per group; 4 texels per lane.
        let grouped = plan(
            &ConvShape {
                groups: 8,
                cin_g: 4,
                cout_g: 4,
                ..CHAIN
            },
            &caps(Some((8, 8))),
            None,
        );
        assert!(all.contains(&grouped.defines), "{grouped:?}");
        assert_eq!(
            (grouped.defines.get("M"), grouped.defines.get("P")),
            (Some(4), Some(4))
        );
        assert_eq!(grouped.groups, (8, 25));
        // 26 channels keep the 28-channel block, 30 the 32-channel one.
        let m = |cout_g| tile(&ConvShape { cout_g, ..CHAIN }, Some(8)).0;
        assert_eq!(
            [m(3), m(5), m(16), m(26), m(30), m(40)],
            [4, 8, 16, 28, 32, 52]
        );
        // Least padding at 56x56: 48 -> 52, 56 and 112 -> 28 (no padding), 104 and 208 -> 52.
        assert_eq!([m(48), m(56), m(112), m(104), m(208)], [52, 28, 28, 52, 52]);
        // On 14x14 planes (49 texels) 112 channels take 28-channel blocks of one texel per lane
        // (56 texels against 64); 104 keep 52-channel blocks.
        let plane14_at = |width, cout_g| tile(&lanes::test_shape(3, 14, 26, cout_g), width);
        let plane14 = |cout_g| plane14_at(Some(8), cout_g);
        assert_eq!(plane14(112), (28, 1));
        assert_eq!(plane14(104), (52, 1));
        // The Res2Net chains keep their tiles at 8 lanes and without subgroups; at 4 and 16 lanes
        // the 26-channel ones take one texel per lane.
        for width in [Some(8), None] {
            assert_eq!(tile(&CHAIN, width), NARROW);
            assert_eq!(tile(&lanes::test_shape(3, 28, 52, 52), width), WIDE);
        }
        for width in [Some(4), Some(16)] {
            assert_eq!(tile(&CHAIN, width), (28, 1));
            assert_eq!(tile(&lanes::test_shape(3, 28, 52, 52), width), WIDE);
            assert_eq!(plane14_at(width, 104), (52, 1));
        }
    }
}
