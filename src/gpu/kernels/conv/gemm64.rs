//! `conv_gemm64.wgsl`: implicit GEMM with subgroup sharing, 64 output channels x 16 pixels per
//! 8-lane subgroup (one subgroup per workgroup). Any kernel, stride, padding and groups; wins on the
//! wide 1x1 convs. The K8 family reduces 8 input channels per step instead of 4 (fewer accumulator
//! round trips); for convs with few input channels per group and a kernel larger than 1x1 (the 7x7
//! stem's 3) the other reduces over (input channel, tap) as one flat index (`FLAT`).

use super::{
    any_shape, fusion_variants, fusions, no_defines, one_tile, ConvFamily, ConvPlan, ConvShape,
    Packing, Variant,
};
use crate::gpu::kernels::ShaderFile;
use crate::gpu::tune::ConvKernel;
use crate::gpu::wgsl::Defines;

/// Lanes per subgroup the GEMM kernels are written for.
pub const LANES: u32 = 8;
/// Output channels and pixels per subgroup.
const BLOCK: usize = 64;
const PIXELS: usize = 16;

pub const FAMILY: ConvFamily = ConvFamily {
    kernel: ConvKernel::Gemm64x16,
    shader: ShaderFile::ConvGemm64,
    lanes: Some(LANES),
    fits: any_shape,
    tiles: one_tile,
    plan: |s, _, _| plan(s, false),
    variants: || variants(false),
    shaders: no_defines,
};

pub const FAMILY_K8: ConvFamily = ConvFamily {
    kernel: ConvKernel::Gemm64x16K8,
    plan: |s, _, _| plan(s, true),
    variants: || variants(true),
    ..FAMILY
};

fn plan(s: &ConvShape, k8: bool) -> ConvPlan {
    let x_blocks = s.out_plane().div_ceil(PIXELS);
    let cout_blocks = s.cout_g.div_ceil(BLOCK);
    // Rounding few input channels up to 4 per tap would waste much of each step.
    let flat = !k8 && s.taps() > 1 && !s.cin_g.is_multiple_of(4) && s.cin_g < 16;
    let mut constants = fusions(s);
    constants.push((
        "ALIGNED",
        u32::from(s.pointwise() && s.input_vec4_aligned()),
    ));
    constants.push(("K8", u32::from(k8)));
    constants.push(("FLAT", u32::from(flat)));
    ConvPlan {
        defines: Defines::new(),
        entry: "conv_gemm",
        constants,
        cout_blocks,
        x_blocks,
        groups: (x_blocks, s.groups * cout_blocks),
        packing: Packing::Lanes {
            block: BLOCK,
            lanes: LANES as usize,
            cin_step: if k8 { 8 } else { 4 },
            flat,
        },
        split_k: None,
        inputs: Vec::new(),
    }
}

fn variants(k8: bool) -> Vec<Variant> {
    let flats: &[u32] = if k8 { &[0] } else { &[0, 1] };
    fusion_variants(&["ALIGNED"])
        .into_iter()
        .flat_map(|c| {
            flats.iter().map(move |&flat| {
                let mut c = c.clone();
                c.push(("K8", u32::from(k8)));
                c.push(("FLAT", flat));
                ("conv_gemm", c)
            })
        })
        .collect()
}
