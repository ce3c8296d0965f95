//! Which convolution kernel each conv runs on, per adapter.
//!
//! lavapipe (and other CPU adapters) and real GPUs reward different kernels: on lavapipe a storage load
//! is a loop over the SIMD lanes, so the subgroup-sharing implicit GEMM (`shaders/conv_gemm.wgsl`)
//! wins by loading each value once per subgroup; it is written for 8-lane subgroups and is only used
//! where the adapter reports exactly that. Everywhere else the register-blocked kernels of
//! `shaders/conv.wgsl` run.

use super::context::GpuContext;

/// A conv kernel family, for [`SessionOptions::conv_kernel`](super::SessionOptions::conv_kernel).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ConvKernel {
    /// The best family this adapter supports for each conv's shape.
    #[default]
    Auto,
    /// `conv.wgsl`: `conv_1x1` for 1x1 stride-1 convs, `conv_direct` for the rest. Runs everywhere.
    Direct,
    /// `conv_gemm.wgsl:conv_gemm`: implicit GEMM with subgroup broadcasts, 64 output channels x 16
    /// pixels per subgroup. Needs 8-lane subgroups; where the adapter lacks them,
    /// [`ConvKernel::Direct`] runs instead.
    Gemm64x16,
    /// [`ConvKernel::Gemm64x16`] reducing 8 input channels per step instead of 4.
    Gemm64x16K8,
    /// `conv_gemm.wgsl:conv_gemm_32`: the same with 32 output channels x 32 pixels per subgroup.
    Gemm32x32,
}

impl ConvKernel {
    /// Every family that can be forced, for tests and benchmarks.
    pub const FORCEABLE: [ConvKernel; 4] = [
        ConvKernel::Direct,
        ConvKernel::Gemm64x16,
        ConvKernel::Gemm64x16K8,
        ConvKernel::Gemm32x32,
    ];

    /// Output channels x pixels per subgroup of a GEMM family.
    pub(crate) fn gemm_tile(self) -> Option<(usize, usize)> {
        match self {
            ConvKernel::Gemm64x16 | ConvKernel::Gemm64x16K8 => Some((64, 16)),
            ConvKernel::Gemm32x32 => Some((32, 32)),
            _ => None,
        }
    }
}

/// Subgroup width the GEMM kernel is written for.
const GEMM_SUBGROUP: u32 = 8;

/// Whether this device can run [`ConvKernel::SubgroupGemm`]: subgroup operations enabled and every
/// subgroup exactly 8 lanes wide.
pub fn subgroup_gemm_supported(ctx: &GpuContext) -> bool {
    let info = ctx.adapter_info();
    ctx.device().features().contains(wgpu::Features::SUBGROUP)
        && info.subgroup_min_size == GEMM_SUBGROUP
        && info.subgroup_max_size == GEMM_SUBGROUP
}

/// What lowering needs to pick a conv kernel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvPolicy {
    pub requested: ConvKernel,
    pub gemm_supported: bool,
}

impl ConvPolicy {
    pub(crate) fn new(ctx: &GpuContext, requested: ConvKernel) -> Self {
        ConvPolicy {
            requested,
            gemm_supported: subgroup_gemm_supported(ctx),
        }
    }

    /// The family for one conv with `cout_g` output channels per group; `pointwise`: 1x1, stride 1,
    /// no padding.
    pub(crate) fn choose(&self, cout_g: usize, pointwise: bool) -> ConvKernel {
        match self.requested {
            ConvKernel::Direct => ConvKernel::Direct,
            _ if !self.gemm_supported => ConvKernel::Direct,
            // Measured on lavapipe (res2net50_26w_4s): 64 x 16 wins on the wide 1x1 convs, 32 x 32
            // on groups of at most 32 output channels (the 26-channel Res2Net chain), where 64-channel
            // tiles leave most lanes idle.
            // Reducing 8 input channels per step gained 3-8% on the 1x1 convs and nothing clear on
            // the others.
            ConvKernel::Auto if cout_g <= 32 => ConvKernel::Gemm32x32,
            ConvKernel::Auto if pointwise => ConvKernel::Gemm64x16K8,
            ConvKernel::Auto => ConvKernel::Gemm64x16,
            k => k,
        }
    }
}

impl Default for ConvPolicy {
    fn default() -> Self {
        ConvPolicy {
            requested: ConvKernel::Direct,
            gemm_supported: false,
        }
    }
}
