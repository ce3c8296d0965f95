//! `conv_row3.wgsl`: 3x3 stride-1 padding-1 convs along output rows, 32 output channels x two
//! 16-pixel row segments per 8-lane subgroup; each input row is loaded once per kernel row and
//! reused for its 3 taps. Weights as for [`super::gemm32`].

use super::gemm32::{aligned_variants, PACKING};
use super::gemm64::LANES;
use super::{fusions, no_defines, one_tile, ConvFamily, ConvPlan, ConvShape};
use crate::gpu::kernels::ShaderFile;
use crate::gpu::tune::ConvKernel;
use crate::gpu::wgsl::Defines;

/// Output channels per subgroup and pixels per row segment.
const BLOCK: usize = 32;
const SEGMENT: usize = 16;

pub const FAMILY: ConvFamily = ConvFamily {
    kernel: ConvKernel::GemmRow3x3,
    shader: ShaderFile::ConvRow3,
    lanes: Some(LANES),
    fits: ConvShape::row3,
    tiles: one_tile,
    plan: |s, _, _| plan(s),
    variants: || aligned_variants("conv_gemm_row3"),
    shaders: no_defines,
};

fn plan(s: &ConvShape) -> ConvPlan {
    // 16-pixel segments per output row; two per workgroup.
    let segments = s.out_w.div_ceil(SEGMENT);
    let cout_blocks = s.cout_g.div_ceil(BLOCK);
    let mut constants = fusions(s);
    // Rows are read as vec4s when every row starts 16-byte aligned.
    constants.push((
        "ALIGNED",
        u32::from(s.in_w.is_multiple_of(4) && s.input_vec4_aligned()),
    ));
    ConvPlan {
        defines: Defines::new(),
        entry: "conv_gemm_row3",
        constants,
        cout_blocks,
        x_blocks: segments,
        groups: ((s.out_h * segments).div_ceil(2), s.groups * cout_blocks),
        packing: PACKING,
        split_k: None,
        inputs: Vec::new(),
    }
}
