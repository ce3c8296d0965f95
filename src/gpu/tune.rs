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
    /// `conv_gemm.wgsl:conv_gemm_row3`: 3x3 stride-1 padding-1 convs only, 32 output channels x two
    /// 16-pixel row segments per subgroup, each input row loaded once per kernel row and reused for
    /// its 3 taps. Other convs run [`ConvKernel::Gemm32x32`]; without 8-lane subgroups,
    /// [`ConvKernel::Direct`].
    GemmRow3x3,
}

impl ConvKernel {
    /// Every family that can be forced, for tests and benchmarks.
    pub const FORCEABLE: [ConvKernel; 5] = [
        ConvKernel::Direct,
        ConvKernel::Gemm64x16,
        ConvKernel::Gemm64x16K8,
        ConvKernel::Gemm32x32,
        ConvKernel::GemmRow3x3,
    ];

    /// Output channels x pixels per subgroup of a GEMM family.
    pub(crate) fn gemm_tile(self) -> Option<(usize, usize)> {
        match self {
            ConvKernel::Gemm64x16 | ConvKernel::Gemm64x16K8 => Some((64, 16)),
            ConvKernel::Gemm32x32 | ConvKernel::GemmRow3x3 => Some((32, 32)),
            _ => None,
        }
    }
}

/// The number format of a session's weights, for
/// [`SessionOptions::precision`](super::SessionOptions::precision).
///
/// Activations are f32 in both, and so is every product and sum: `F16` only stores the conv and linear
/// weights and biases as f16 (half the parameter memory and weight bandwidth), converting each to f32
/// as it is read. It needs `Features::SHADER_F16` (WGSL `enable f16;`); a session asked for `F16` on
/// an adapter without it fails with an error naming the feature. A weight outside f16's range
/// (|w| > 65504) keeps its op in f32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    #[default]
    F32,
    F16,
}

impl Precision {
    /// `"f32"` or `"f16"`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = crate::error::Error;

    fn from_str(s: &str) -> crate::error::Result<Self> {
        match s {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            other => Err(crate::error::Error::input("precision", "f32 or f16", other)),
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
    /// Store conv and linear weights as f16 (the device has `SHADER_F16`; checked by the session).
    pub f16_weights: bool,
}

impl ConvPolicy {
    pub(crate) fn new(ctx: &GpuContext, requested: ConvKernel, precision: Precision) -> Self {
        ConvPolicy {
            requested,
            gemm_supported: subgroup_gemm_supported(ctx),
            f16_weights: precision == Precision::F16,
        }
    }

    /// The family for one conv with `cout_g` output channels per group; `pointwise`: 1x1, stride 1,
    /// no padding; `row3`: 3x3, stride 1, padding 1, `out_w` its output width.
    pub(crate) fn choose(
        &self,
        cout_g: usize,
        pointwise: bool,
        row3: bool,
        out_w: usize,
    ) -> ConvKernel {
        // Measured on lavapipe (res2net50_26w_4s): the row kernel gains 10-50% on the 3x3 chains at
        // 56x56 and 14x14 (also where rows are gathered), and loses at 7x7, where a 16-pixel
        // segment leaves 9 of 16 pixels idle: it is chosen where segments are at least 3/4 used.
        let segments_used = out_w * 4 >= 3 * 16 * out_w.div_ceil(16);
        match self.requested {
            ConvKernel::Direct => ConvKernel::Direct,
            _ if !self.gemm_supported => ConvKernel::Direct,
            ConvKernel::GemmRow3x3 if !row3 => ConvKernel::Gemm32x32,
            ConvKernel::Auto if row3 && segments_used => ConvKernel::GemmRow3x3,
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
            f16_weights: false,
        }
    }
}
