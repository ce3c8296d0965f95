//! Kernel families. Each module here owns one family of compute kernels end to end: which ops it can
//! run, its tile, how it packs weights, its uniforms, its dispatch size, its pipeline keys and every
//! variant it can produce. Lowering (`super::lower`) asks the families; nothing else knows their
//! details. A family's WGSL is `shaders/<file>.wgsl`, expanded by the [`wgsl`](super::wgsl)
//! preprocessor with the pieces of `shaders/lib/` and the generated uniform structs.
//!
//! A pipeline depends only on its [`KernelKey`]: the shader (file + defines such as f16 weights),
//! the entry point and the override constants (activation, optional operands, alignment). Shapes
//! travel in uniforms, so a whole Res2Net needs a few dozen pipelines at most, shared by every op,
//! session and model on a device.

pub mod conv;
pub(crate) mod global_pool;
pub(crate) mod linear;
mod pipelines;
pub(crate) mod pool;
pub(crate) mod scale_add;
pub(crate) mod softmax;

pub(crate) use pipelines::Pipelines;

use super::lower::{Lowered, TextureInput};
use super::uniforms;
use super::wgsl::{self, Defines};
use crate::error::{Error, Result};

/// A WGSL file of `shaders/`, one per kernel family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ShaderFile {
    /// Direct convolution and the 1x1 kernel, for any adapter.
    Conv,
    /// Implicit GEMM, 64 output channels x 16 pixels per 8-lane subgroup.
    ConvGemm64,
    /// Implicit GEMM, 32 output channels x 32 pixels per 8-lane subgroup.
    ConvGemm32,
    /// 3x3 stride-1 convolution along rows, 32 x 32 per 8-lane subgroup.
    ConvRow3,
    /// Implicit GEMM over workgroup-memory tiles, any adapter.
    ConvTiled,
    /// The same with the reduction split over K: partial sums in the scratch space, then their sum.
    ConvTiledSplit,
    /// Direct convolution over linear textures (weights and inputs), any adapter and subgroup width.
    ConvGp,
    /// 1x1 stride-1 convolution over linear textures, 4 pixels per texel.
    ConvPx,
    /// 3x3 convolution (stride 1, or 2 on halved planes) over linear textures, 4 pixels per texel.
    ConvT3,
    Pool,
    GlobalPool,
    Linear,
    ScaleAdd,
    Softmax,
    /// The FMA peak benchmark (not a model op).
    FmaPeak,
}

/// A resource a kernel binds, each at a fixed binding number (its discriminant) in group 0, so a
/// shader's bindings read the same in every file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slot {
    /// 0: the activation arena (read-write storage buffer).
    Arena = 0,
    /// 1: the op's packed weights (read-only storage buffer).
    Weights = 1,
    /// 2: the op's uniforms.
    Uniforms = 2,
    /// 3: the session's scratch space (read-write storage buffer), e.g. split-K partial sums.
    Scratch = 3,
    /// 4: the op's packed weights as a linear read-only storage texture (rgba32float; see
    /// [`crate::gpu::texture`]).
    WeightTexture = 4,
    /// 5: the op's input view, copied per image into a linear rgba32float storage texture.
    Input = 5,
    /// 6: the view added to the input on read, likewise.
    AddInput = 6,
    /// 7: the op's input view in a linear r32float storage texture (any alignment).
    InputScalar = 7,
    /// 8: the added view, likewise.
    AddInputScalar = 8,
    /// 9: the op's residual view, copied per image into a linear rgba32float storage texture.
    Residual = 9,
    /// 10: the residual view in a linear r32float storage texture (any alignment).
    ResidualScalar = 10,
}

impl Slot {
    pub fn binding(self) -> u32 {
        self as u32
    }

    /// Whether the slot holds a view an op reads (copied in per dispatch).
    pub fn is_input(self) -> bool {
        self.texels().is_some() && self != Slot::WeightTexture
    }

    /// The texel format of a texture slot (`None` for buffers). Weight textures are rgba32float in
    /// f16 sessions too (rgba16float is no read-only storage format in core WebGPU): the weights
    /// are rounded to f16 values instead.
    pub fn texels(self) -> Option<crate::gpu::texture::Texels> {
        use crate::gpu::texture::Texels;
        match self {
            Slot::WeightTexture | Slot::Input | Slot::AddInput | Slot::Residual => {
                Some(Texels::Vec4)
            }
            Slot::InputScalar | Slot::AddInputScalar | Slot::ResidualScalar => Some(Texels::Scalar),
            Slot::Arena | Slot::Weights | Slot::Uniforms | Slot::Scratch => None,
        }
    }
}

impl ShaderFile {
    pub const ALL: [ShaderFile; 15] = [
        ShaderFile::Conv,
        ShaderFile::ConvGemm64,
        ShaderFile::ConvGemm32,
        ShaderFile::ConvRow3,
        ShaderFile::ConvTiled,
        ShaderFile::ConvTiledSplit,
        ShaderFile::ConvGp,
        ShaderFile::ConvPx,
        ShaderFile::ConvT3,
        ShaderFile::Pool,
        ShaderFile::GlobalPool,
        ShaderFile::Linear,
        ShaderFile::ScaleAdd,
        ShaderFile::Softmax,
        ShaderFile::FmaPeak,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            ShaderFile::Conv => "conv.wgsl",
            ShaderFile::ConvGemm64 => "conv_gemm64.wgsl",
            ShaderFile::ConvGemm32 => "conv_gemm32.wgsl",
            ShaderFile::ConvRow3 => "conv_row3.wgsl",
            ShaderFile::ConvTiled => "conv_tiled.wgsl",
            ShaderFile::ConvTiledSplit => "conv_tiled_split.wgsl",
            ShaderFile::ConvGp => "conv_gp.wgsl",
            ShaderFile::ConvPx => "conv_px.wgsl",
            ShaderFile::ConvT3 => "conv_t3.wgsl",
            ShaderFile::Pool => "pool.wgsl",
            ShaderFile::GlobalPool => "global_pool.wgsl",
            ShaderFile::Linear => "linear.wgsl",
            ShaderFile::ScaleAdd => "scale_add.wgsl",
            ShaderFile::Softmax => "softmax.wgsl",
            ShaderFile::FmaPeak => "fma_peak.wgsl",
        }
    }

    /// The file's text as compiled into the crate (before preprocessing).
    pub fn text(self) -> &'static str {
        match self {
            ShaderFile::Conv => include_str!("../../../shaders/conv.wgsl"),
            ShaderFile::ConvGemm64 => include_str!("../../../shaders/conv_gemm64.wgsl"),
            ShaderFile::ConvGemm32 => include_str!("../../../shaders/conv_gemm32.wgsl"),
            ShaderFile::ConvRow3 => include_str!("../../../shaders/conv_row3.wgsl"),
            ShaderFile::ConvTiled => include_str!("../../../shaders/conv_tiled.wgsl"),
            ShaderFile::ConvTiledSplit => include_str!("../../../shaders/conv_tiled_split.wgsl"),
            ShaderFile::ConvGp => include_str!("../../../shaders/conv_gp.wgsl"),
            ShaderFile::ConvPx => include_str!("../../../shaders/conv_px.wgsl"),
            ShaderFile::ConvT3 => include_str!("../../../shaders/conv_t3.wgsl"),
            ShaderFile::Pool => include_str!("../../../shaders/pool.wgsl"),
            ShaderFile::GlobalPool => include_str!("../../../shaders/global_pool.wgsl"),
            ShaderFile::Linear => include_str!("../../../shaders/linear.wgsl"),
            ShaderFile::ScaleAdd => include_str!("../../../shaders/scale_add.wgsl"),
            ShaderFile::Softmax => include_str!("../../../shaders/softmax.wgsl"),
            ShaderFile::FmaPeak => include_str!("../../../shaders/fma_peak.wgsl"),
        }
    }

    /// Whether the shader calls subgroup builtins (needs `Features::SUBGROUP`) in every variant;
    /// the texture families call them only with the [`SUBGROUPS`] define
    /// ([`ShaderKey::needs_subgroups`]).
    pub fn needs_subgroups(self) -> bool {
        matches!(
            self,
            ShaderFile::ConvGemm64 | ShaderFile::ConvGemm32 | ShaderFile::ConvRow3
        )
    }

    /// Whether the shader reads a weight buffer (and can store it as f16). The texture families and
    /// the linear layer read rgba32float weight textures in every precision (rgba16float is no core WebGPU
    /// read-only storage format); f16 weights are stored there rounded to f16.
    pub fn has_weights(self) -> bool {
        matches!(
            self,
            ShaderFile::Conv
                | ShaderFile::ConvGemm64
                | ShaderFile::ConvGemm32
                | ShaderFile::ConvRow3
                | ShaderFile::ConvTiled
                | ShaderFile::ConvTiledSplit
        )
    }

    /// The resources the shader binds.
    pub fn slots(self) -> &'static [Slot] {
        if self == ShaderFile::ConvTiledSplit {
            &[Slot::Arena, Slot::Weights, Slot::Uniforms, Slot::Scratch]
        } else if self == ShaderFile::ConvGp {
            &[
                Slot::Arena,
                Slot::Uniforms,
                Slot::WeightTexture,
                Slot::InputScalar,
                Slot::AddInputScalar,
                Slot::ResidualScalar,
            ]
        } else if self == ShaderFile::ConvPx {
            &[
                Slot::Arena,
                Slot::Uniforms,
                Slot::WeightTexture,
                Slot::Input,
                Slot::Residual,
            ]
        } else if self == ShaderFile::ConvT3 {
            &[
                Slot::Arena,
                Slot::Uniforms,
                Slot::WeightTexture,
                Slot::Input,
                Slot::AddInput,
                Slot::Residual,
            ]
        } else if self == ShaderFile::Linear {
            &[
                Slot::Arena,
                Slot::Uniforms,
                Slot::WeightTexture,
                Slot::InputScalar,
            ]
        } else if self == ShaderFile::ScaleAdd {
            &[Slot::Arena, Slot::Uniforms, Slot::Input, Slot::Residual]
        } else if self == ShaderFile::Pool || self == ShaderFile::GlobalPool {
            &[Slot::Arena, Slot::Uniforms, Slot::Input, Slot::InputScalar]
        } else if self.has_weights() {
            &[Slot::Arena, Slot::Weights, Slot::Uniforms]
        } else {
            &[Slot::Arena, Slot::Uniforms]
        }
    }
}

/// The shared modules of `shaders/lib/`, by import name.
pub const LIBRARY: [(&str, &str); 13] = [
    ("arena", include_str!("../../../shaders/lib/arena.wgsl")),
    ("weights", include_str!("../../../shaders/lib/weights.wgsl")),
    (
        "activation",
        include_str!("../../../shaders/lib/activation.wgsl"),
    ),
    ("gemm_io", include_str!("../../../shaders/lib/gemm_io.wgsl")),
    ("tile32", include_str!("../../../shaders/lib/tile32.wgsl")),
    ("origins", include_str!("../../../shaders/lib/origins.wgsl")),
    ("tiled", include_str!("../../../shaders/lib/tiled.wgsl")),
    ("texels", include_str!("../../../shaders/lib/texels.wgsl")),
    ("tile", include_str!("../../../shaders/lib/tile.wgsl")),
    (
        "chunk_tiles",
        include_str!("../../../shaders/lib/chunk_tiles.wgsl"),
    ),
    (
        "store_texels",
        include_str!("../../../shaders/lib/store_texels.wgsl"),
    ),
    (
        "store_values",
        include_str!("../../../shaders/lib/store_values.wgsl"),
    ),
    (
        "input_values",
        include_str!("../../../shaders/lib/input_values.wgsl"),
    ),
];

/// The text of an `#import`: a file of `shaders/lib/` or a module generated from Rust.
pub fn import(name: &str) -> Option<String> {
    LIBRARY
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| text.to_string())
        .or_else(|| uniforms::generated_module(name))
}

/// The define of the texture families' subgroup variants: weights are shared with
/// `subgroupBroadcast` (its value is 1; the subgroup width is the `SG` define). Without it the
/// kernels load every weight texel at uniform coordinates.
pub const SUBGROUPS: &str = "SUBGROUPS";

/// The flag of the kernels outside the conv families (the pools, the global pool, the linear layer)
/// that read their input views from r32float textures, used where a chunk's views fit the adapter's
/// textures (they read the arena otherwise).
pub const TEXTURE_INPUT: &str = "TEXTURE_INPUT";

/// `file` with [`TEXTURE_INPUT`] when `on`, plus `defines`.
pub(crate) fn texture_input_shader(file: ShaderFile, defines: Defines, on: bool) -> ShaderKey {
    ShaderKey {
        file,
        defines: if on {
            defines.flag(TEXTURE_INPUT)
        } else {
            defines
        },
    }
}

/// `lowered` (one dispatch) reading its input view (element offset and per-image stride of image
/// 0, `len` values per image) from a copy in the r32float input texture when `on`.
pub(crate) fn with_texture_input(
    lowered: Lowered,
    on: bool,
    view: (u32, u32),
    len: u32,
) -> Lowered {
    if on {
        with_copies(lowered, &[(Slot::InputScalar, view)], len)
    } else {
        lowered
    }
}

/// `lowered` (one dispatch) reading each view (element offset and per-image stride of image 0,
/// `len` values per image) from its copy in the slot's texture.
pub(crate) fn with_copies(mut lowered: Lowered, views: &[(Slot, (u32, u32))], len: u32) -> Lowered {
    lowered.steps[0].inputs = views
        .iter()
        .map(|&(slot, (offset, stride))| TextureInput {
            slot,
            offset,
            stride,
            len,
        })
        .collect();
    lowered
}

/// How an op outside the conv families (a pool, the global pool) reads its input view: from the
/// arena value by value, from an r32float copy ([`TEXTURE_INPUT`]), or from an rgba32float copy, 4
/// values per load, under the shader's own flag for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InputLayout {
    Values,
    ScalarTexels,
    Texels,
}

impl InputLayout {
    pub const ALL: [InputLayout; 3] = [
        InputLayout::Values,
        InputLayout::ScalarTexels,
        InputLayout::Texels,
    ];

    /// `Texels` where `texels_fit` (the op's views and rows allow rgba32float copies) and a
    /// chunk's copies fit the adapter's rgba32float textures (`values` input values per image,
    /// `images` images), else `ScalarTexels` where they fit its r32float ones, else `Values`.
    pub fn choose(texels_fit: bool, values: usize, images: usize, caps: &AdapterCaps) -> Self {
        use crate::gpu::texture::Texels;
        if texels_fit && caps.texture_holds(Texels::Vec4, values, images) {
            InputLayout::Texels
        } else if caps.texture_holds(Texels::Scalar, values, images) {
            InputLayout::ScalarTexels
        } else {
            InputLayout::Values
        }
    }

    /// The shader of `file` for this layout; `texels_flag` is the file's define for `Texels`.
    pub fn shader(self, file: ShaderFile, texels_flag: &'static str) -> ShaderKey {
        let defines = match self {
            InputLayout::Texels => Defines::new().flag(texels_flag),
            _ => Defines::new(),
        };
        texture_input_shader(file, defines, self == InputLayout::ScalarTexels)
    }

    /// The texel format of the copy (r32float for `Values`, which has none).
    pub fn texels(self) -> crate::gpu::texture::Texels {
        use crate::gpu::texture::Texels;
        if self == InputLayout::Texels {
            Texels::Vec4
        } else {
            Texels::Scalar
        }
    }

    /// `lowered` (one dispatch) reading its input view `src` (element offset and per-image stride
    /// of image 0, `len` values per image) from its copy, if this layout has one.
    pub fn with_copy(self, lowered: Lowered, src: (u32, u32), len: u32) -> Lowered {
        match self {
            InputLayout::Texels => with_copies(lowered, &[(Slot::Input, src)], len),
            InputLayout::ScalarTexels => with_copies(lowered, &[(Slot::InputScalar, src)], len),
            InputLayout::Values => lowered,
        }
    }
}

/// Whether views at these (element offset, per-image stride) pairs start on a texel of 4 values
/// in every image: what rgba32float copies and vec4 stores need.
pub(crate) fn on_texel_boundaries(views: &[(u32, u32)]) -> bool {
    views
        .iter()
        .all(|&(offset, stride)| offset.is_multiple_of(4) && stride.is_multiple_of(4))
}

/// The flag that stores a shader's weights as f16 (`enable f16;`, needs `Features::SHADER_F16`).
pub const F16_WEIGHTS: &str = "F16_WEIGHTS";

/// One shader module: a file expanded with a set of defines.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShaderKey {
    pub file: ShaderFile,
    pub defines: Defines,
}

impl ShaderKey {
    pub fn new(file: ShaderFile) -> Self {
        ShaderKey {
            file,
            defines: Defines::new(),
        }
    }

    /// This shader with f16 weight storage when `f16` (only for shaders with weights).
    pub fn with_f16_weights(mut self, f16: bool) -> Self {
        if f16 && self.file.has_weights() {
            self.defines = self.defines.flag(F16_WEIGHTS);
        }
        self
    }

    /// Whether the module stores weights as f16 (needs `Features::SHADER_F16`).
    pub fn needs_f16(&self) -> bool {
        self.defines.get(F16_WEIGHTS).is_some()
    }

    pub fn needs_subgroups(&self) -> bool {
        self.file.needs_subgroups() || self.defines.get(SUBGROUPS).is_some()
    }

    /// `conv.wgsl` or `conv.wgsl+F16_WEIGHTS`, for labels.
    pub fn name(&self) -> String {
        if self.defines.is_empty() {
            self.file.file_name().to_string()
        } else {
            format!("{}+{}", self.file.file_name(), self.defines.label())
        }
    }

    /// The WGSL the device compiles: the file expanded with its defines and imports.
    pub fn source(&self) -> Result<String> {
        wgsl::preprocess(
            self.file.file_name(),
            self.file.text(),
            &self.defines,
            &import,
        )
        .map_err(|e| Error::Gpu(format!("shader preprocessing failed: {e}")))
    }
}

/// One compute pipeline: a shader entry point specialised by override constants.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelKey {
    pub shader: ShaderKey,
    pub entry: &'static str,
    /// Override constants by name; booleans are 0 or 1.
    pub constants: Vec<(&'static str, u32)>,
}

impl KernelKey {
    pub(crate) fn new(
        shader: ShaderKey,
        entry: &'static str,
        constants: &[(&'static str, u32)],
    ) -> Self {
        KernelKey {
            shader,
            entry,
            constants: constants.to_vec(),
        }
    }

    /// A readable label: `conv.wgsl:conv_1x1[ACT=1,HAS_ADD=0,HAS_RES=1]`.
    pub fn label(&self) -> String {
        let consts: Vec<String> = self
            .constants
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "{}:{}[{}]",
            self.shader.name(),
            self.entry,
            consts.join(",")
        )
    }
}

/// What an adapter offers that the choice of kernels depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdapterCaps {
    /// `(min, max)` lanes per subgroup when subgroup operations are enabled.
    pub subgroup_sizes: Option<(u32, u32)>,
    /// `Features::SHADER_F16` is enabled.
    pub f16: bool,
    /// Rows a linear texture may have (`max_texture_dimension_2d`): a texture family whose input
    /// views do not fit a chunk of images is not used.
    pub max_texture_rows: u32,
}

impl AdapterCaps {
    /// What the device of `ctx` offers.
    pub fn of(ctx: &super::GpuContext) -> Self {
        let features = ctx.device().features();
        let info = ctx.adapter_info();
        AdapterCaps {
            subgroup_sizes: features
                .contains(wgpu::Features::SUBGROUP)
                .then_some((info.subgroup_min_size, info.subgroup_max_size)),
            f16: features.contains(wgpu::Features::SHADER_F16),
            max_texture_rows: ctx.device().limits().max_texture_dimension_2d,
        }
    }

    /// Lanes of every subgroup where all have the same number (`None`: no subgroup operations, or
    /// sizes that vary).
    pub fn fixed_subgroup(&self) -> Option<u32> {
        self.subgroup_sizes.filter(|(a, b)| a == b).map(|(a, _)| a)
    }

    /// Whether a linear texture of `format` holds `values` values per image for `images` images,
    /// each image on rows of its own.
    pub fn texture_holds(
        &self,
        format: crate::gpu::texture::Texels,
        values: usize,
        images: usize,
    ) -> bool {
        let rows = u32::try_from(values)
            .map(|v| crate::gpu::texture::rows(format.texels(v)) as usize)
            .unwrap_or(usize::MAX);
        rows.saturating_mul(images) <= self.max_texture_rows as usize
    }

    /// Whether every subgroup has exactly `lanes` lanes.
    pub fn subgroups_of(&self, lanes: u32) -> bool {
        self.subgroup_sizes == Some((lanes, lanes))
    }

    /// A one-line description for errors: `8-lane subgroups`, `4- to 16-lane subgroups`, `no subgroups`.
    pub fn describe_subgroups(&self) -> String {
        match self.subgroup_sizes {
            None => "no subgroup operations".into(),
            Some((a, b)) if a == b => format!("{a}-lane subgroups"),
            Some((a, b)) => format!("{a}- to {b}-lane subgroups"),
        }
    }
}

/// Every pipeline the runtime can ask for on any adapter: every family's variants plus the FMA
/// benchmark. The naga test validates and translates each of them, so a variant that only breaks on
/// Metal or DX12 fails on any machine; a test also checks that lowering never asks for a key
/// outside this list.
pub fn all_variants() -> Vec<KernelKey> {
    let mut keys = conv::variants();
    keys.extend(pool::variants());
    keys.extend(global_pool::variants());
    keys.extend(linear::variants());
    keys.extend(scale_add::variants());
    keys.extend(softmax::variants());
    keys.push(KernelKey::new(
        ShaderKey::new(ShaderFile::FmaPeak),
        "main",
        &[],
    ));
    keys
}

/// `base` with every combination of the boolean override constants `flags` (0 and 1 each).
pub(crate) fn with_flags(
    base: &[(&'static str, u32)],
    flags: &[&'static str],
) -> Vec<Vec<(&'static str, u32)>> {
    let mut all = vec![base.to_vec()];
    for flag in flags {
        all = all
            .into_iter()
            .flat_map(|c| {
                [0, 1].map(|v| {
                    let mut c = c.clone();
                    c.push((flag, v));
                    c
                })
            })
            .collect();
    }
    all
}

/// Every `ACT` override value, as constants lists.
pub(crate) fn with_activations(base: &[(&'static str, u32)]) -> Vec<Vec<(&'static str, u32)>> {
    uniforms::ACTIVATIONS
        .iter()
        .map(|&a| {
            let mut c = vec![("ACT", uniforms::act_code(a))];
            c.extend_from_slice(base);
            c
        })
        .collect()
}
