//! `conv_t3.wgsl`: 3x3 stride-1 padding-1 convolution over linear textures for rows of a multiple
//! of 4 pixels (the Res2Net chains at 56x56 and 28x28) and, with the `FLAT_ROWS` define, for other
//! planes of a multiple of 4 pixels (14x14), whose texels may straddle two rows. Where
//! [`super::gp`] loads one input value per tap, this family loads a texel of 4 pixels and its two
//! neighbours per input channel and kernel row and assembles the 3 taps from their components: 12
//! products per vec4 accumulator write. Weights use the texture family's layout ([`Packing::Texture`]), so the two share a
//! packing where their blocks agree.
//!
//! A workgroup is one subgroup of `SG` lanes (8 invocations without subgroups); lane `l` owns `P`
//! texels x `M` output channels of one block.

use super::{fusions, lanes, ConvFamily, ConvPlan, ConvShape, Operand, Packing, Variant};
use crate::gpu::kernels::{AdapterCaps, ShaderFile, Slot};
use crate::gpu::tune::ConvKernel;
use crate::gpu::wgsl::Defines;

pub const FAMILY: ConvFamily = ConvFamily {
    kernel: ConvKernel::T3,
    shader: ShaderFile::ConvT3,
    lanes: None,
    fits,
    plan,
    variants,
    shaders,
};

/// (output channels per block, texels per lane). Measured on lavapipe: 28 x 2 for the 26-channel
/// chains, 52 x 1 for the 52-channel ones (about 56 vec4 accumulators either way).
const NARROW: (usize, usize) = (28, 2);
const WIDE: (usize, usize) = (52, 1);

/// The narrowest tile that holds a group's output channels.
fn tile(s: &ConvShape) -> (usize, usize) {
    [NARROW, WIDE]
        .into_iter()
        .find(|t| s.cout_g <= t.0)
        .unwrap_or(WIDE)
}

/// The define for planes whose rows are not whole texels.
const FLAT_ROWS: &str = "FLAT_ROWS";

/// Ungrouped 3x3 stride-1 padding-1 convs over planes of whole texels whose views (input, added
/// input, output, residual) all start on whole vec4s.
fn fits(s: &ConvShape) -> bool {
    let mut views = [Some(s.dst), s.res].into_iter().flatten();
    s.row3()
        && s.groups == 1
        && s.input_vec4_aligned()
        && views.all(|(off, stride)| off.is_multiple_of(4) && stride.is_multiple_of(4))
}

fn defines(width: Option<u32>, tile: (usize, usize), flat: bool) -> Defines {
    let d = lanes::quad_defines(width, tile);
    if flat {
        d.flag(FLAT_ROWS)
    } else {
        d
    }
}

fn plan(s: &ConvShape, caps: &AdapterCaps) -> ConvPlan {
    let width = lanes::subgroup_width(caps);
    let (m, pt) = tile(s);
    let flat = !s.in_w.is_multiple_of(4);
    let (cout_blocks, x_blocks) = lanes::grid(s.cout_g, m, s.out_plane() / 4, width, pt);
    let inputs = [
        Some((Slot::Input, Operand::Src)),
        s.add.map(|_| (Slot::AddInput, Operand::Add)),
        s.res.map(|_| (Slot::Residual, Operand::Res)),
    ];
    ConvPlan {
        defines: defines(width, (m, pt), flat),
        entry: "conv_t3",
        constants: fusions(s),
        cout_blocks,
        x_blocks,
        groups: (cout_blocks, x_blocks),
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
            [NARROW, WIDE]
                .into_iter()
                .flat_map(move |t| [false, true].map(|flat| defines(w, t, flat)))
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
        let plane7 = lanes::test_shape(3, 7, 26, 26);
        let refused = [
            plane7,
            ConvShape { groups: 2, ..CHAIN },
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
    fn planned_defines_are_compiled_shaders() {
        let all = shaders();
        for sizes in lanes::TEST_SIZES {
            for cout_g in [26, 52, 100] {
                let plan = plan(&ConvShape { cout_g, ..CHAIN }, &caps(sizes));
                assert!(all.contains(&plan.defines), "{plan:?}");
                assert!(variants().contains(&(plan.entry, plan.constants.clone())));
                assert_eq!(plan.inputs.len(), 2);
            }
        }
        // 784 texels per channel: 49 tiles of 16 at 8 lanes x 2 texels.
        let aligned = plan(&CHAIN, &caps(Some((8, 8))));
        assert_eq!(aligned.groups, (1, 49));
        assert_eq!(aligned.defines.get(FLAT_ROWS), None);
        let flat = plan(&lanes::test_shape(3, 14, 26, 26), &caps(Some((8, 8))));
        assert!(all.contains(&flat.defines), "{flat:?}");
        assert_eq!(flat.defines.get(FLAT_ROWS), Some(1));
    }
}
