//! `conv_gp.wgsl`: direct convolution over linear textures, for any kernel, stride, padding and
//! groups, on any adapter. On CPU adapters (lavapipe, llvmpipe) a storage-texture load is one vector
//! fetch while a storage-buffer or workgroup load is a loop over the SIMD lanes (about 30 times
//! dearer), so the kernel reads its weights and its input (copied into an r32float texture before
//! the dispatch) only from textures, and writes the arena.
//!
//! A workgroup is one subgroup of `SG` lanes (8 invocations without subgroups); lane `l` owns
//! `P` pixels `tile * SG * P + j * SG + l` x `M` output channels of one block. Each step reduces 4
//! input channels of one tap, so every accumulator takes 4 products per write. With subgroups each
//! lane loads `ceil(M / 4 / SG)` weight texels per input channel and tap, shared with
//! `subgroupBroadcast`; without (OpenGL, adapters whose subgroup size varies) every lane loads the
//! `M / 4` texels at uniform coordinates. The subgroup width is a define, one variant per width.

use super::{
    any_shape, fusions, lanes, px, rule_first, ConvFamily, ConvPlan, ConvShape, Operand, Packing,
    Tile, Variant,
};
use crate::gpu::kernels::{AdapterCaps, ShaderFile, Slot};
use crate::gpu::tune::ConvKernel;
use crate::gpu::wgsl::Defines;

pub const FAMILY: ConvFamily = ConvFamily {
    kernel: ConvKernel::Gp,
    shader: ShaderFile::ConvGp,
    lanes: None,
    fits: any_shape,
    tiles: candidates,
    plan,
    variants,
    shaders,
};

/// (output channels per block, pixels per lane). Measured on lavapipe: 64 x 2 on the wide convs;
/// 4 pixels per lane where a group has few output channels, and a 28-channel block for the
/// 26-channel Res2Net chains (a 32-channel one would compute 6 idle channels).
const WIDE: (usize, usize) = (64, 2);
/// The wide tile with 52 channels, for groups of 52, 104 or 208 channels (Res2Net's 26w-4s widths
/// at stages 2-4), which 64-channel blocks would pad by 19%.
const WIDE_52: (usize, usize) = (52, 2);
const NARROW: (usize, usize) = (32, 4);
const CHAIN: (usize, usize) = (28, 4);
/// Blocks for groups of at most 4, 8 or 16 output channels (ResNeXt-style grouped convs, a DLA
/// stem of 16 channels), which a 28-channel block would compute 7, 3.5 or 1.75 times over. Every
/// input load feeds only `M` accumulators here whatever the tile, so the pixels per lane come from
/// [`SMALL_PIXELS`], chosen by padding.
const SMALL: [usize; 3] = [4, 8, 16];
/// The pixels per lane of the small blocks, best first.
const SMALL_PIXELS: [usize; 2] = [8, 4];
/// The pixels per lane of convs whose weights are in the pointwise family's layout (blocks of
/// [`pointwise_block`] output channels), best first: 8 keep the accumulators as many as in the
/// wide tile; 7 and 4 fit the 49-pixel planes of 7x7 maps (at 4 and 8 lanes, at 16) with fewer
/// idle lanes.
const POINTWISE_PIXELS: [usize; 3] = [8, 7, 4];

/// Input channels per step where a group's input channels are a multiple of 3 and not of 4 (the
/// `CU` define; 4 otherwise): an RGB stem's steps would otherwise be a quarter padding.
const THREE_CHANNEL_STEPS: u32 = 3;

/// The `CU` define of a conv whose steps take 3 input channels.
fn three_channel_steps(s: &ConvShape) -> bool {
    !s.cin_g.is_multiple_of(4) && s.cin_g.is_multiple_of(3)
}

/// The defines of a tile in the texture layout, with 3-channel steps where asked.
fn tile_defines(width: Option<u32>, tile: (usize, usize), threes: bool) -> Defines {
    let d = lanes::quad_defines(width, tile);
    if threes {
        d.value("CU", THREE_CHANNEL_STEPS)
    } else {
        d
    }
}

/// The define that reads the pointwise family's weight layout.
const POINTWISE_WEIGHTS: &str = "POINTWISE_WEIGHTS";

/// Whether the conv's weights take the pointwise family's layout: ungrouped 1x1 stride-1 convs
/// with a multiple of 4 input channels, which that family runs wherever the planes allow. At other
/// input sizes this family runs them from the same copy of the weights.
fn pointwise_weights(s: &ConvShape) -> bool {
    s.pointwise() && s.groups == 1 && s.cin_g.is_multiple_of(4)
}

/// Output channels per block on the pointwise layout: px's block on large planes (32 at 16 lanes
/// and wider, 16 elsewhere: a half of each packed block at 8 lanes).
fn pointwise_block(width: Option<u32>) -> usize {
    px::tile(width, usize::MAX).0
}

fn pointwise_defines(width: Option<u32>, p: usize) -> Defines {
    let m = pointwise_block(width);
    px::layout_defines(lanes::defines(width, m, p, m), width).flag(POINTWISE_WEIGHTS)
}

/// Of `options` (pixels per lane), the one whose tiles of `lanes * p` pixels pad a plane of `units`
/// least (the first on ties).
fn least_padding(options: &[usize], units: usize, lanes: usize) -> usize {
    options
        .iter()
        .copied()
        .min_by_key(|&p| units.div_ceil(lanes * p) * lanes * p)
        .unwrap_or(1)
}

fn tile(s: &ConvShape, lanes: usize) -> (usize, usize) {
    if let Some(&m) = SMALL.iter().find(|&&m| s.cout_g <= m) {
        (m, least_padding(&SMALL_PIXELS, s.out_plane(), lanes))
    } else if s.cout_g <= CHAIN.0 {
        CHAIN
    } else if s.cout_g <= NARROW.0 {
        NARROW
    } else {
        let padded = |m: usize| s.cout_g.div_ceil(m) * m;
        if padded(WIDE_52.0) < padded(WIDE.0) {
            WIDE_52
        } else {
            WIDE
        }
    }
}

/// The rule's tile for a conv: [`tile`], or on the pointwise layout its block with the pixels per
/// lane that pad the plane least.
fn rule(s: &ConvShape, width: Option<u32>) -> Tile {
    if pointwise_weights(s) {
        let p = least_padding(&POINTWISE_PIXELS, s.out_plane(), lanes::lanes(width));
        (pointwise_block(width), p)
    } else {
        tile(s, lanes::lanes(width))
    }
}

/// The tiles the tuner may time for a conv: the rule's, then the other pixels per lane of the
/// pointwise layout's block or of a small group's, or the other wide tiles.
fn candidates(s: &ConvShape, caps: &AdapterCaps) -> Vec<Tile> {
    let width = lanes::subgroup_width(caps);
    let rule = rule(s, width);
    let others: Vec<Tile> = if pointwise_weights(s) {
        POINTWISE_PIXELS.map(|p| (rule.0, p)).to_vec()
    } else if SMALL.contains(&rule.0) {
        SMALL_PIXELS.map(|p| (rule.0, p)).to_vec()
    } else {
        [WIDE, WIDE_52, NARROW, CHAIN].to_vec()
    };
    rule_first(rule, others)
}

fn plan(s: &ConvShape, caps: &AdapterCaps, tile: Option<Tile>) -> ConvPlan {
    let width = lanes::subgroup_width(caps);
    let pointwise = pointwise_weights(s);
    let (m, p) = tile.unwrap_or_else(|| rule(s, width));
    let (cout_blocks, x_blocks) = lanes::grid(s.cout_g, m, s.out_plane(), width, p);
    let mut inputs = vec![(Slot::InputScalar, Operand::Src)];
    if s.add.is_some() {
        inputs.push((Slot::AddInputScalar, Operand::Add));
    }
    if s.res.is_some() {
        inputs.push((Slot::ResidualScalar, Operand::Res));
    }
    ConvPlan {
        defines: if pointwise {
            pointwise_defines(width, p)
        } else {
            tile_defines(width, (m, p), three_channel_steps(s))
        },
        entry: "conv_gp",
        constants: fusions(s),
        cout_blocks,
        x_blocks,
        groups: (s.groups * cout_blocks, x_blocks),
        packing: if pointwise {
            px::packing(width)
        } else {
            Packing::Texture {
                block: m,
                slots: lanes::slots(width, m / 4),
            }
        },
        split_k: None,
        inputs,
    }
}

fn variants() -> Vec<Variant> {
    lanes::fused("conv_gp")
}

fn shaders() -> Vec<Defines> {
    let small = SMALL.iter().flat_map(|&m| SMALL_PIXELS.map(|p| (m, p)));
    let tiles: Vec<_> = [WIDE, WIDE_52, NARROW, CHAIN]
        .into_iter()
        .chain(small)
        .collect();
    let mut all: Vec<Defines> = lanes::widths()
        .flat_map(|w| {
            tiles
                .iter()
                .flat_map(move |&t| [false, true].map(|threes| tile_defines(w, t, threes)))
        })
        .collect();
    for p in POINTWISE_PIXELS {
        all.extend(lanes::widths().map(|w| pointwise_defines(w, p)));
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::kernels::conv::lanes::caps;
    use crate::gpu::texture::TEXELS_PER_ROW;

    #[test]
    fn the_shader_addresses_rows_of_the_texture_layout() {
        // The texture families split a texel index with the mask and shift made from the layout's
        // row length.
        let texels = crate::gpu::kernels::import("texels").unwrap_or_default();
        assert!(texels.contains("#import texel_at"));
        let at = crate::gpu::kernels::import("texel_at").unwrap_or_default();
        let shift = TEXELS_PER_ROW.trailing_zeros();
        assert!(at.contains(&format!("t & {}u, t >> {shift}u", (1 << shift) - 1)));
    }

    #[test]
    fn planned_defines_are_compiled_shaders() {
        let s = ConvShape {
            cin_g: 26,
            cout_g: 26,
            groups: 1,
            kh: 3,
            kw: 3,
            stride: 1,
            pad: 1,
            in_h: 7,
            in_w: 7,
            out_h: 7,
            out_w: 7,
            act: 1,
            src: (0, 0),
            add: Some((0, 0)),
            dst: (0, 0),
            res: None,
        };
        let all = shaders();
        for sizes in [
            None,
            Some((4, 4)),
            Some((8, 8)),
            Some((64, 64)),
            Some((4, 16)),
        ] {
            for cout_g in [4, 7, 16, 26, 30, 64, 104, 130] {
                let s = ConvShape { cout_g, ..s };
                let plan = plan(&s, &caps(sizes), None);
                assert!(all.contains(&plan.defines), "{plan:?}");
                assert!(variants().contains(&(plan.entry, plan.constants.clone())));
                assert_eq!(plan.inputs.len(), 2);
                assert_eq!(plan.defines.get("CU"), None);
            }
            // An RGB stem steps over 3 channels; 6 and 9 input channels too, 12 over 4.
            for (cin_g, cu) in [
                (3, Some(3)),
                (6, Some(3)),
                (9, Some(3)),
                (12, None),
                (5, None),
            ] {
                let stem = plan(
                    &ConvShape {
                        cin_g,
                        kh: 7,
                        kw: 7,
                        stride: 2,
                        pad: 3,
                        ..s
                    },
                    &caps(sizes),
                    None,
                );
                assert!(all.contains(&stem.defines), "{stem:?}");
                assert_eq!(stem.defines.get("CU"), cu, "{cin_g}");
            }
            // Every tile the tuner may time is a compiled variant, the rule's first.
            for shape in [
                ConvShape { cout_g: 4, ..s },
                ConvShape { cout_g: 104, ..s },
                ConvShape { cout_g: 26, ..s },
                lanes::test_shape(1, 7, 64, 104),
            ] {
                let caps = caps(sizes);
                let tiles = candidates(&shape, &caps);
                assert!(tiles.len() > 1, "{tiles:?}");
                assert_eq!(
                    plan(&shape, &caps, Some(tiles[0])),
                    plan(&shape, &caps, None)
                );
                for t in tiles {
                    let p = plan(&shape, &caps, Some(t));
                    assert!(all.contains(&p.defines), "{p:?}");
                    assert_eq!(p.defines.get("P"), Some(t.1 as u32));
                }
            }
            for side in [7, 14, 56] {
                let plan = plan(&lanes::test_shape(1, side, 64, 104), &caps(sizes), None);
                assert!(all.contains(&plan.defines), "{plan:?}");
                assert_eq!(plan.defines.get(POINTWISE_WEIGHTS), Some(1));
            }
        }
    }

    #[test]
    fn tiles_pad_few_channels_and_pixels() {
        let channels = |cout_g| tile(&lanes::test_shape(3, 14, 64, cout_g), 8).0;
        assert_eq!(channels(104), 52);
        assert_eq!(channels(208), 52);
        assert_eq!(channels(512), 64);
        assert_eq!(channels(96), 52);
        assert_eq!(channels(128), 64);
        assert_eq!(channels(26), 28);
        assert_eq!(channels(17), 28);
        assert_eq!(channels(16), 16);
        assert_eq!(channels(5), 8);
        assert_eq!(channels(4), 4);
        assert_eq!(channels(1), 4);
        // Small blocks: 8 pixels per lane on 56x56 maps, 4 where 8 pads more (196 pixels at 8
        // lanes: 224 against 256), 8 on ties (49 pixels at 4 lanes: 64 either way).
        let pixels = |side, lanes| tile(&lanes::test_shape(3, side, 64, 16), lanes).1;
        assert_eq!(pixels(56, 8), 8);
        assert_eq!(pixels(14, 8), 4);
        assert_eq!(pixels(28, 8), 4);
        assert_eq!(pixels(7, 4), 8);
        // 49 pixels: 7 per lane at 4 and 8 lanes (56), 4 at 16 (64); 8 where it pads no more.
        assert_eq!(least_padding(&POINTWISE_PIXELS, 49, 8), 7);
        assert_eq!(least_padding(&POINTWISE_PIXELS, 49, 4), 7);
        assert_eq!(least_padding(&POINTWISE_PIXELS, 49, 16), 4);
        assert_eq!(least_padding(&POINTWISE_PIXELS, 3136, 8), 8);
    }
}
