//! `conv_tiled.wgsl` and `conv_tiled_split.wgsl` (over `lib/tiled.wgsl`): implicit GEMM with
//! workgroup-memory tiles, written for discrete GPUs and correct on any adapter (no subgroups).
//! 256 invocations per workgroup, each a 4 x 4 register block of a 64-pixel x 64-channel tile, or of
//! a 128 x 32 tile where groups have at most 32 output channels (the Res2Net chains), where a
//! 64-channel tile would leave most of its columns idle. Any kernel, stride, padding and groups.
//!
//! Three families share the tile: [`FAMILY`] stages 16-deep K slices in one workgroup buffer (two
//! barriers per slice); [`FAMILY_DOUBLE`] 8-deep slices in two buffers, fetching the next slice into
//! registers during the current one's FMAs (one barrier per slice); [`FAMILY_SPLIT_K`] is the
//! double-buffered kernel with K split into partial sums that a second dispatch adds up, for convs
//! whose few output pixels give too few tiles to fill a GPU.

use super::{
    any_shape, fusion_variants, fusions, no_defines, rule_first, ConvFamily, ConvPlan, ConvShape,
    Packing, SplitK, Tile, Variant, TILED_K_ROWS,
};
use crate::gpu::kernels::{with_activations, with_flags, ShaderFile};
use crate::gpu::tune::ConvKernel;
use crate::gpu::wgsl::Defines;

/// The two tiles: (output pixels, output channels).
const WIDE: (usize, usize) = (64, 64);
const NARROW: (usize, usize) = (128, 32);

/// Workgroups per image the split-K rule aims for: a few per compute unit of a large GPU.
const TARGET_WORKGROUPS: usize = 256;
/// Fewest K values per split the rule makes (fewer cost more in partial-sum traffic than they gain).
const MIN_SPLIT_K: usize = 64;
/// Invocations per workgroup of the split-sum dispatch.
const SUM_THREADS: usize = 64;

pub const FAMILY: ConvFamily = ConvFamily {
    kernel: ConvKernel::Tiled,
    shader: ShaderFile::ConvTiled,
    lanes: None,
    fits: any_shape,
    tiles: |s, _| candidates(s),
    plan: |s, _, t| plan(s, false, t),
    variants: || variants(false),
    shaders: no_defines,
};

pub const FAMILY_DOUBLE: ConvFamily = ConvFamily {
    kernel: ConvKernel::TiledDouble,
    plan: |s, _, t| plan(s, true, t),
    variants: || variants(true),
    ..FAMILY
};

/// Whether `family` is one of these workgroup-memory families, which a CPU adapter runs at about
/// 1% of its peak (a workgroup load costs as much as 30 texture loads on lavapipe): the tuner does
/// not spend its time on them there.
pub fn is_tiled(family: &ConvFamily) -> bool {
    [FAMILY.kernel, FAMILY_DOUBLE.kernel, FAMILY_SPLIT_K.kernel].contains(&family.kernel)
}

/// Runs the convs whose K splits in two (more than one 16-row slice); the others get the automatic
/// choice.
pub const FAMILY_SPLIT_K: ConvFamily = ConvFamily {
    kernel: ConvKernel::TiledSplitK,
    shader: ShaderFile::ConvTiledSplit,
    lanes: None,
    fits: |s| k_chunks(s) >= 2,
    tiles: |s, _| candidates(s),
    plan: |s, _, t| plan_split(s, t),
    variants: split_variants,
    shaders: no_defines,
};

/// The tile for a conv: the narrow one where a group has at most 32 output channels.
fn tile(s: &ConvShape) -> (usize, usize) {
    if s.cout_g <= NARROW.1 {
        NARROW
    } else {
        WIDE
    }
}

/// The tiles the tuner may time: the rule's, then the other.
fn candidates(s: &ConvShape) -> Vec<Tile> {
    rule_first(tile(s), [WIDE, NARROW])
}

/// Input read as vec4s: 1x1 stride-1 convs on planes of whole, aligned vec4s.
fn aligned(s: &ConvShape) -> u32 {
    u32::from(s.pointwise() && s.input_vec4_aligned())
}

fn plan(s: &ConvShape, double: bool, tile: Option<Tile>) -> ConvPlan {
    let (tile_m, tile_n) = tile.unwrap_or_else(|| self::tile(s));
    let x_blocks = s.out_plane().div_ceil(tile_m);
    let cout_blocks = s.cout_g.div_ceil(tile_n);
    let mut constants = fusions(s);
    constants.extend([
        ("ALIGNED", aligned(s)),
        ("DOUBLE", u32::from(double)),
        ("TILE_M", tile_m as u32),
    ]);
    ConvPlan {
        defines: Defines::new(),
        entry: "conv_tiled",
        constants,
        cout_blocks,
        x_blocks,
        groups: (x_blocks, s.groups * cout_blocks),
        packing: Packing::Tiled { bn: tile_n },
        split_k: None,
        inputs: Vec::new(),
    }
}

fn variants(double: bool) -> Vec<Variant> {
    fusion_variants(&["ALIGNED"])
        .into_iter()
        .flat_map(|mut c| {
            c.push(("DOUBLE", u32::from(double)));
            [WIDE, NARROW].map(|(tile_m, _)| {
                let mut c = c.clone();
                c.push(("TILE_M", tile_m as u32));
                ("conv_tiled", c)
            })
        })
        .collect()
}

/// K in the packed layout's 16-row chunks.
fn k_chunks(s: &ConvShape) -> usize {
    (s.cin_g * s.taps()).div_ceil(TILED_K_ROWS)
}

/// K values per split of a conv with `tiles` tiles per image: enough splits for
/// [`TARGET_WORKGROUPS`] workgroups, at least 2, with at least [`MIN_SPLIT_K`] values each where K
/// has them; whole 16-row chunks, so that every split is whole slices of either depth.
fn split_len(s: &ConvShape, tiles: usize) -> usize {
    let chunks = k_chunks(s);
    // (No clamp: one chunk, which the family does not fit, gives one split instead of a panic.)
    let most = (chunks * TILED_K_ROWS / MIN_SPLIT_K).max(2).min(chunks);
    let splits = TARGET_WORKGROUPS.div_ceil(tiles.max(1)).max(2).min(most);
    chunks.div_ceil(splits) * TILED_K_ROWS
}

fn plan_split(s: &ConvShape, tile: Option<Tile>) -> ConvPlan {
    let tile = tile.unwrap_or_else(|| self::tile(s));
    let mut plan = plan(s, true, Some(tile));
    let tiles = plan.x_blocks * s.groups * plan.cout_blocks;
    let k_split = split_len(s, tiles);
    let splits = (k_chunks(s) * TILED_K_ROWS).div_ceil(k_split.max(1));
    let cout = s.groups * s.cout_g;
    let quads = s.out_plane().div_ceil(4);
    plan.entry = "conv_tiled_partial";
    plan.constants = partial_constants(u32::from(s.add.is_some()), aligned(s), tile.0 as u32);
    plan.groups.0 *= splits;
    plan.split_k = Some(SplitK {
        k_split,
        finish: (
            "conv_split_sum",
            vec![("ACT", s.act), ("HAS_RES", u32::from(s.res.is_some()))],
        ),
        finish_groups: (quads.div_ceil(SUM_THREADS), cout),
        scratch: splits * cout * quads * 4,
    });
    plan
}

/// The partial-sum kernel's constants: it has no epilogue, and is always double-buffered.
fn partial_constants(has_add: u32, aligned: u32, tile_m: u32) -> Vec<(&'static str, u32)> {
    vec![
        ("HAS_ADD", has_add),
        ("ALIGNED", aligned),
        ("DOUBLE", 1),
        ("TILE_M", tile_m),
    ]
}

fn split_variants() -> Vec<Variant> {
    let mut all: Vec<Variant> = Vec::new();
    for has_add in [0, 1] {
        for aligned in [0, 1] {
            for (tile_m, _) in [WIDE, NARROW] {
                let c = partial_constants(has_add, aligned, tile_m as u32);
                all.push(("conv_tiled_partial", c));
            }
        }
    }
    for c in with_activations(&[]) {
        for c in with_flags(&c, &["HAS_RES"]) {
            all.push(("conv_split_sum", c));
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(cin_g: usize, cout_g: usize, kernel: usize, out: usize) -> ConvShape {
        ConvShape {
            cin_g,
            cout_g,
            groups: 1,
            kh: kernel,
            kw: kernel,
            stride: 1,
            pad: kernel / 2,
            in_h: out,
            in_w: out,
            out_h: out,
            out_w: out,
            act: 0,
            src: (0, 0),
            add: None,
            dst: (0, 0),
            res: None,
        }
    }

    #[test]
    fn split_k_fills_late_layers_and_keeps_splits_whole() {
        // res2net50 layer4 conv1 at 224: 2048 -> 416 on 7x7, 7 tiles, K = 2048: 32 splits of 64.
        let s = shape(2048, 416, 1, 7);
        let plan = plan_split(&s, None);
        let split = plan.split_k.clone().unwrap();
        assert_eq!(split.k_split, 64);
        assert_eq!(plan.groups, (32, 7));
        assert_eq!(split.scratch, 32 * 416 * 13 * 4);
        // A 3x3 chain conv, 26 -> 26 on 7x7: 1 tile, K = 234 (15 chunks): 3 splits of 80.
        let split = plan_split(&shape(26, 26, 3, 7), None).split_k.unwrap();
        assert_eq!(split.k_split, 80);
        // Many tiles still split in two; K of 2 chunks splits into 2 of 16.
        assert_eq!(split_len(&shape(64, 64, 1, 56), 49), 32);
        assert_eq!(split_len(&shape(8, 8, 2, 56), 49), 16);
        assert!(!(FAMILY_SPLIT_K.fits)(&shape(16, 8, 1, 7)));
    }

    #[test]
    fn planned_constants_are_variants() {
        let shapes = [
            shape(26, 26, 3, 7),
            shape(70, 130, 1, 8),
            shape(3, 64, 7, 9),
        ];
        let caps = crate::gpu::kernels::AdapterCaps {
            subgroup_sizes: None,
            f16: false,
            max_texture_rows: 8192,
        };
        for family in [&FAMILY, &FAMILY_DOUBLE, &FAMILY_SPLIT_K] {
            let all = (family.variants)();
            for s in &shapes {
                let plan = (family.plan)(s, &caps, None);
                assert!(
                    all.contains(&(plan.entry, plan.constants.clone())),
                    "{plan:?}"
                );
                if let Some(split) = plan.split_k {
                    assert!(all.contains(&split.finish), "{split:?}");
                }
            }
        }
    }
}
