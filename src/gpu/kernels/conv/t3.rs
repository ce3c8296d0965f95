//! `conv_t3.wgsl`: 3x3 stride-1 padding-1 convolution over linear textures for rows of a multiple
//! of 4 pixels (the Res2Net chains at 56x56 and 28x28). Where [`super::gp`] loads one input value
//! per tap, this family loads a texel of 4 pixels and its two neighbours per input channel and
//! kernel row and assembles the 3 taps from their components: 12 products per vec4 accumulator
//! write. Weights use the texture family's layout ([`Packing::Texture`]), so the two share a
//! packing where their blocks agree.
//!
//! A workgroup is one subgroup of `SG` lanes (8 invocations without subgroups); lane `l` owns `PT`
//! texels x `M` output channels of one block.

use super::{
    fusion_variants, fusions, lanes, ConvFamily, ConvPlan, ConvShape, Operand, Packing, Variant,
};
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

fn tile(s: &ConvShape) -> (usize, usize) {
    if s.cout_g <= NARROW.0 {
        NARROW
    } else {
        WIDE
    }
}

/// Ungrouped 3x3 stride-1 padding-1 convs whose rows are whole texels and whose views (input,
/// added input, output, residual) all start on whole vec4s.
fn fits(s: &ConvShape) -> bool {
    let mut views = [Some(s.dst), s.res].into_iter().flatten();
    s.row3()
        && s.groups == 1
        && s.in_w.is_multiple_of(4)
        && s.input_vec4_aligned()
        && views.all(|(off, stride)| off.is_multiple_of(4) && stride.is_multiple_of(4))
}

fn defines(width: Option<u32>, (m, p): (usize, usize)) -> Defines {
    lanes::defines(width, m, p, m / 4)
}

fn plan(s: &ConvShape, caps: &AdapterCaps) -> ConvPlan {
    let width = lanes::subgroup_width(caps);
    let (m, pt) = tile(s);
    let cout_blocks = s.cout_g.div_ceil(m);
    let x_blocks = (s.out_plane() / 4).div_ceil(lanes::lanes(width) * pt);
    let inputs = [
        Some((Slot::Input, Operand::Src)),
        s.add.map(|_| (Slot::AddInput, Operand::Add)),
        s.res.map(|_| (Slot::Residual, Operand::Res)),
    ];
    ConvPlan {
        defines: defines(width, (m, pt)),
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
    fusion_variants(&[])
        .into_iter()
        .map(|c| ("conv_t3", c))
        .collect()
}

fn shaders() -> Vec<Defines> {
    lanes::widths()
        .flat_map(|w| [NARROW, WIDE].map(|t| defines(w, t)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::kernels::conv::lanes::caps;

    const CHAIN: ConvShape = ConvShape {
        cin_g: 26,
        cout_g: 26,
        groups: 1,
        kh: 3,
        kw: 3,
        stride: 1,
        pad: 1,
        in_h: 56,
        in_w: 56,
        out_h: 56,
        out_w: 56,
        act: 1,
        src: (3136 * 26, 3136 * 104),
        add: Some((0, 3136 * 104)),
        dst: (3136 * 26, 3136 * 104),
        res: None,
    };

    #[test]
    fn fits_aligned_rows_of_3x3_stride_1_convs() {
        assert!(fits(&CHAIN));
        let row14 = ConvShape {
            in_h: 14,
            in_w: 14,
            out_h: 14,
            out_w: 14,
            src: (0, 0),
            add: None,
            dst: (0, 0),
            ..CHAIN
        };
        assert!(!fits(&row14));
        assert!(!fits(&ConvShape { groups: 2, ..CHAIN }));
        assert!(!fits(&ConvShape { stride: 2, ..CHAIN }));
        assert!(!fits(&ConvShape {
            add: Some((2, 0)),
            ..CHAIN
        }));
        assert!(!fits(&ConvShape {
            res: Some((1, 0)),
            ..CHAIN
        }));
    }

    #[test]
    fn planned_defines_are_compiled_shaders() {
        let all = shaders();
        for sizes in [
            None,
            Some((4, 4)),
            Some((8, 8)),
            Some((16, 16)),
            Some((4, 16)),
        ] {
            for cout_g in [26, 52, 100] {
                let plan = plan(&ConvShape { cout_g, ..CHAIN }, &caps(sizes));
                assert!(all.contains(&plan.defines), "{plan:?}");
                assert!(variants().contains(&(plan.entry, plan.constants.clone())));
                assert_eq!(plan.inputs.len(), 2);
            }
        }
        // 784 texels per channel: 49 tiles of 16 at 8 lanes x 2 texels.
        let plan = plan(&CHAIN, &caps(Some((8, 8))));
        assert_eq!(plan.groups, (1, 49));
    }
}
