//! `conv_gemm64.wgsl`: implicit GEMM with subgroup sharing, 64 output channels x 16 pixels per
//! 8-lane subgroup (one subgroup per workgroup). Any kernel, stride, padding and groups; wins on the
//! wide 1x1 convs. With `k8` it reduces 8 input channels per step instead of 4 (fewer accumulator
//! round trips), and for convs with few input channels per group and a kernel larger than 1x1 (the
//! 7x7 stem's 3) it reduces over (input channel, tap) as one flat index (`FLAT`).

use super::{fusion_variants, fusions, ConvFamily, ConvPlan, ConvShape, Packing};
use crate::gpu::kernels::{AdapterCaps, ShaderFile};
use crate::gpu::tune::ConvKernel;

/// Lanes per subgroup the kernel is written for.
pub const LANES: u32 = 8;
/// Output channels and pixels per subgroup.
const BLOCK: usize = 64;
const PIXELS: usize = 16;

pub struct Gemm64 {
    pub k8: bool,
}

impl Gemm64 {
    /// `FLAT`: rounding few input channels up to 4 per tap would waste much of each step.
    fn flat(&self, s: &ConvShape) -> bool {
        !self.k8 && s.taps() > 1 && !s.cin_g.is_multiple_of(4) && s.cin_g < 16
    }
}

/// `Err` unless every subgroup has exactly [`LANES`] lanes (shared by the 8-lane families).
pub(crate) fn needs_8_lanes(caps: &AdapterCaps) -> Result<(), String> {
    if caps.subgroups_of(LANES) {
        Ok(())
    } else {
        Err(format!(
            "needs {LANES}-lane subgroups; this adapter has {}",
            caps.describe_subgroups()
        ))
    }
}

impl ConvFamily for Gemm64 {
    fn kernel(&self) -> ConvKernel {
        if self.k8 {
            ConvKernel::Gemm64x16K8
        } else {
            ConvKernel::Gemm64x16
        }
    }

    fn shader(&self) -> ShaderFile {
        ShaderFile::ConvGemm64
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
        let flat = self.flat(s);
        let mut constants = fusions(s);
        constants.push((
            "ALIGNED",
            u32::from(s.pointwise() && s.input_vec4_aligned()),
        ));
        constants.push(("K8", u32::from(self.k8)));
        constants.push(("FLAT", u32::from(flat)));
        ConvPlan {
            entry: "conv_gemm",
            constants,
            cout_blocks,
            x_blocks,
            groups: (x_blocks, s.groups * cout_blocks),
            packing: Packing::Lanes {
                block: BLOCK,
                lanes: LANES as usize,
                cin_step: if self.k8 { 8 } else { 4 },
                flat,
            },
        }
    }

    fn variants(&self) -> Vec<(&'static str, Vec<(&'static str, u32)>)> {
        let flats: &[u32] = if self.k8 { &[0] } else { &[0, 1] };
        fusion_variants(&["ALIGNED"])
            .into_iter()
            .flat_map(|c| {
                flats.iter().map(move |&flat| {
                    let mut c = c.clone();
                    c.push(("K8", u32::from(self.k8)));
                    c.push(("FLAT", flat));
                    ("conv_gemm", c)
                })
            })
            .collect()
    }
}
