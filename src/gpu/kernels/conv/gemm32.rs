//! `conv_gemm32.wgsl`: implicit GEMM with subgroup sharing, 32 output channels x 32 pixels per 8-lane
//! subgroup. Any kernel, stride, padding and groups; wins where groups have at most 32 output
//! channels (Res2Net's chains), where 64-channel tiles leave most lanes idle.

use super::gemm64::LANES;
use super::{
    any_shape, fusion_variants, fusions, no_defines, one_tile, ConvFamily, ConvPlan, ConvShape,
    Packing, Variant,
};
use crate::gpu::kernels::ShaderFile;
use crate::gpu::tune::ConvKernel;
use crate::gpu::wgsl::Defines;

/// Output channels and pixels per subgroup.
const BLOCK: usize = 32;
const PIXELS: usize = 32;

/// The weight layout of the 32 x 32 tile (shared with [`super::row3`]).
pub(crate) const PACKING: Packing = Packing::Lanes {
    block: BLOCK,
    lanes: LANES as usize,
    cin_step: 4,
    flat: false,
};

pub const FAMILY: ConvFamily = ConvFamily {
    kernel: ConvKernel::Gemm32x32,
    shader: ShaderFile::ConvGemm32,
    lanes: Some(LANES),
    fits: any_shape,
    tiles: one_tile,
    plan: |s, _, _| plan(s),
    variants: || aligned_variants("conv_gemm_32"),
    shaders: no_defines,
};

fn plan(s: &ConvShape) -> ConvPlan {
    let x_blocks = s.out_plane().div_ceil(PIXELS);
    let cout_blocks = s.cout_g.div_ceil(BLOCK);
    let mut constants = fusions(s);
    constants.push((
        "ALIGNED",
        u32::from(s.pointwise() && s.input_vec4_aligned()),
    ));
    ConvPlan {
        defines: Defines::new(),
        entry: "conv_gemm_32",
        constants,
        cout_blocks,
        x_blocks,
        groups: (x_blocks, s.groups * cout_blocks),
        packing: PACKING,
        split_k: None,
        inputs: Vec::new(),
    }
}

/// Every fusion with `ALIGNED` on and off, for one entry point.
pub(crate) fn aligned_variants(entry: &'static str) -> Vec<Variant> {
    fusion_variants(&["ALIGNED"])
        .into_iter()
        .map(|c| (entry, c))
        .collect()
}
