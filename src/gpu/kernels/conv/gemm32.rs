//! `conv_gemm32.wgsl`: implicit GEMM with subgroup sharing, 32 output channels x 32 pixels per 8-lane
//! subgroup. Any kernel, stride, padding and groups; wins where groups have at most 32 output
//! channels (Res2Net's chains), where 64-channel tiles leave most lanes idle.

use super::gemm64::{needs_8_lanes, LANES};
use super::{fusion_variants, fusions, ConvFamily, ConvPlan, ConvShape, Packing};
use crate::gpu::kernels::{AdapterCaps, ShaderFile};
use crate::gpu::tune::ConvKernel;

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

pub struct Gemm32;

impl ConvFamily for Gemm32 {
    fn kernel(&self) -> ConvKernel {
        ConvKernel::Gemm32x32
    }

    fn shader(&self) -> ShaderFile {
        ShaderFile::ConvGemm32
    }

    fn supports(&self, caps: &AdapterCaps) -> Result<(), String> {
        needs_8_lanes(caps)
    }

    fn fits(&self, _: &ConvShape) -> bool {
        true
    }

    fn plan(&self, s: &ConvShape) -> ConvPlan {
        let x_blocks = s.out_plane().div_ceil(PIXELS);
        let cout_blocks = s.cout_g.div_ceil(BLOCK);
        let mut constants = fusions(s);
        constants.push((
            "ALIGNED",
            u32::from(s.pointwise() && s.input_vec4_aligned()),
        ));
        ConvPlan {
            entry: "conv_gemm_32",
            constants,
            cout_blocks,
            x_blocks,
            groups: (x_blocks, s.groups * cout_blocks),
            packing: PACKING,
        }
    }

    fn variants(&self) -> Vec<(&'static str, Vec<(&'static str, u32)>)> {
        fusion_variants(&["ALIGNED"])
            .into_iter()
            .map(|c| ("conv_gemm_32", c))
            .collect()
    }
}
