//! What the texture families ([`super::gp`], [`super::px`], [`super::t3`]) share: the subgroup
//! width a variant is built for, how many weight texels its lanes load per step, and the defines
//! of a tile. Each family's shader takes `SG` (lanes, or invocations without subgroups), `M`
//! (output channels per block), `P` (pixels or texels per lane), `WQ` (weight texels per step)
//! and the `SUBGROUPS` flag.

use super::{fusion_variants, Variant};
use crate::gpu::kernels::{AdapterCaps, SUBGROUPS};
use crate::gpu::wgsl::Defines;

/// Subgroup widths with a variant of their own (adapters reporting one fixed width).
pub const WIDTHS: [u32; 5] = [4, 8, 16, 32, 64];

/// Invocations per workgroup of the variants without subgroups.
pub const PLAIN_LANES: u32 = 8;

/// The subgroup width the kernels are built for on this adapter, `None` for the variants without
/// subgroups (no subgroups, a width that varies, or one without a variant).
pub fn subgroup_width(caps: &AdapterCaps) -> Option<u32> {
    caps.fixed_subgroup().filter(|w| WIDTHS.contains(w))
}

/// Every width a variant is built for, `None` first.
pub fn widths() -> impl Iterator<Item = Option<u32>> {
    std::iter::once(None).chain(WIDTHS.map(Some))
}

/// Invocations per workgroup.
pub fn lanes(width: Option<u32>) -> usize {
    width.unwrap_or(PLAIN_LANES) as usize
}

/// Weight texels per step for a block that needs `texels`: rounded up to whole subgroups where
/// lanes load them and share them by broadcasts.
pub fn slots(width: Option<u32>, texels: usize) -> usize {
    match width {
        Some(w) => texels.div_ceil(w as usize) * w as usize,
        None => texels,
    }
}

/// The defines of a tile of `m` channels x `p` pixels per lane whose block needs `texels` weight
/// texels per step.
pub fn defines(width: Option<u32>, m: usize, p: usize, texels: usize) -> Defines {
    let d = Defines::new()
        .value("SG", width.unwrap_or(PLAIN_LANES))
        .value("M", m as u32)
        .value("P", p as u32)
        .value("WQ", slots(width, texels) as u32);
    match width {
        Some(_) => d.flag(SUBGROUPS),
        None => d,
    }
}

/// The define of the vec4 families' variants for planes that are not a multiple of 4 pixels: the
/// views are still whole texels, each channel's pixels read through a shift and the results
/// stored value by value.
pub const RAGGED_PLANE: &str = "RAGGED_PLANE";

/// Whether the conv's plane is not a multiple of 4 pixels ([`RAGGED_PLANE`]).
pub fn ragged(s: &super::ConvShape) -> bool {
    !s.out_plane().is_multiple_of(4)
}

/// The defines of a tile `(m, p)` whose block loads one weight texel per 4 output channels.
pub fn quad_defines(width: Option<u32>, (m, p): (usize, usize)) -> Defines {
    defines(width, m, p, m / 4)
}

/// (output-channel blocks, pixel tiles) of a group of `cout_g` channels in blocks of `m` over
/// `units` pixels (or texels), `p` per lane.
pub fn grid(cout_g: usize, m: usize, units: usize, width: Option<u32>, p: usize) -> (usize, usize) {
    (cout_g.div_ceil(m), units.div_ceil(lanes(width) * p))
}

/// A conv of `cin -> cout` channels with a `k x k` kernel (padding `k / 2`) on a `side x side`
/// plane, reading channels from 8 of a 64-channel tensor and writing a whole one, for the
/// families' tests.
#[cfg(test)]
pub const fn test_shape(k: usize, side: usize, cin: usize, cout: usize) -> super::ConvShape {
    let plane = (side * side) as u32;
    super::ConvShape {
        cin_g: cin,
        cout_g: cout,
        groups: 1,
        kh: k,
        kw: k,
        stride: 1,
        pad: k / 2,
        in_h: side,
        in_w: side,
        out_h: side,
        out_w: side,
        act: 1,
        src: (plane * 8, plane * 64),
        add: None,
        dst: (0, plane * cout as u32),
        res: None,
    }
}

/// `entry` with every combination of the fusion constants.
pub fn fused(entry: &'static str) -> Vec<Variant> {
    fusion_variants(&[])
        .into_iter()
        .map(|c| (entry, c))
        .collect()
}

/// Subgroup sizes the families' tests plan for: fixed widths of 4, 8 and 16, a range, none.
#[cfg(test)]
pub const TEST_SIZES: [Option<(u32, u32)>; 5] = [
    None,
    Some((4, 4)),
    Some((8, 8)),
    Some((16, 16)),
    Some((4, 16)),
];

/// An adapter with these subgroup sizes and room for any texture, for the families' tests.
#[cfg(test)]
pub fn caps(subgroup_sizes: Option<(u32, u32)>) -> AdapterCaps {
    AdapterCaps {
        subgroup_sizes,
        f16: false,
        max_texture_rows: 8192,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_width_follows_fixed_subgroups_only() {
        assert_eq!(subgroup_width(&caps(Some((8, 8)))), Some(8));
        assert_eq!(subgroup_width(&caps(Some((4, 4)))), Some(4));
        assert_eq!(subgroup_width(&caps(Some((4, 16)))), None);
        assert_eq!(subgroup_width(&caps(Some((128, 128)))), None);
        assert_eq!(subgroup_width(&caps(None)), None);
        // 7 texels: one per lane at 8 lanes, two at 4, 7 loaded by every invocation without.
        assert_eq!(slots(Some(8), 7), 8);
        assert_eq!(slots(Some(4), 7), 8);
        assert_eq!(slots(None, 7), 7);
    }
}
