//! Which convolution kernel family each conv runs on, per adapter.
//!
//! lavapipe (and other CPU adapters) and real GPUs reward different kernels: on lavapipe a storage load
//! is a loop over the SIMD lanes, so the kernels that read textures (`shaders/conv_px.wgsl`,
//! `conv_t3.wgsl`, `conv_gp.wgsl`) or share loads through subgroups (`conv_gemm64.wgsl`,
//! `conv_gemm32.wgsl`, `conv_row3.wgsl`, written for exactly 8 lanes) win. The rule takes the
//! texture families; the autotuner ([`super::autotune`]) replaces it per conv shape with what it
//! measured fastest. The subgroup GEMMs and the workgroup-tiled families (`shaders/conv_tiled.wgsl`,
//! written for discrete GPUs) run when forced or tuned, the direct kernels (`conv.wgsl`) also
//! where a texture family's inputs do not fit the adapter's textures.

use std::collections::BTreeMap;

use super::autotune::Bucket;
use super::kernels::conv::{self, ConvFamily, ConvShape, Packing, Tile};
use super::kernels::AdapterCaps;
use super::SessionOptions;

/// A conv kernel family, for [`SessionOptions::conv_kernel`](super::SessionOptions::conv_kernel).
///
/// A forced family runs every conv whose shape it can run (the others get the automatic choice);
/// building a session with a family the adapter cannot run at all (e.g. no 8-lane subgroups) fails
/// with an error that says why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ConvKernel {
    /// The best family this adapter supports for each conv's shape.
    #[default]
    Auto,
    /// `conv.wgsl`: `conv_1x1` for 1x1 stride-1 convs, `conv_direct` for the rest. Runs everywhere.
    Direct,
    /// `conv_gemm64.wgsl`: implicit GEMM with subgroup broadcasts, 64 output channels x 16 pixels per
    /// subgroup. Needs 8-lane subgroups.
    Gemm64x16,
    /// [`ConvKernel::Gemm64x16`] reducing 8 input channels per step instead of 4.
    Gemm64x16K8,
    /// `conv_gemm32.wgsl`: the same with 32 output channels x 32 pixels per subgroup.
    Gemm32x32,
    /// `conv_row3.wgsl`: 3x3 stride-1 padding-1 convs only, 32 output channels x two 16-pixel row
    /// segments per subgroup, each input row loaded once per kernel row and reused for its 3 taps.
    GemmRow3x3,
    /// `conv_tiled.wgsl`: implicit GEMM over workgroup-memory tiles (64 pixels x 64 channels, or
    /// 128 x 32 for groups of at most 32 channels; 256 invocations of 4 x 4 each), one buffer of
    /// 16-deep K slices. Runs everywhere; written for discrete GPUs.
    Tiled,
    /// [`ConvKernel::Tiled`] with two buffers of 8-deep slices, the next slice fetched into
    /// registers while the current one's FMAs run.
    TiledDouble,
    /// `conv_tiled_split.wgsl`: [`ConvKernel::TiledDouble`] with K split into partial sums in the
    /// session's scratch space and a second dispatch that adds them up, for convs whose few output
    /// pixels leave most of a GPU idle. Convs whose K fits one 16-row slice get the automatic choice.
    TiledSplitK,
    /// `conv_gp.wgsl`: direct convolution reading weights and inputs from linear textures (inputs
    /// copied there before each dispatch), any kernel, stride, padding and groups, built for the
    /// adapter's subgroup width or without subgroups. Runs everywhere; written for CPU adapters.
    Gp,
    /// `conv_px.wgsl`: [`ConvKernel::Gp`] for ungrouped 1x1 stride-1 convs whose planes and views
    /// are whole vec4s, reading texels of 4 pixels and storing vec4s. Runs everywhere; written for
    /// CPU adapters.
    Px,
    /// `conv_t3.wgsl`: [`ConvKernel::Gp`] for 3x3 padding-1 convs, grouped or not, at stride 1
    /// over views of whole vec4s, and at stride 2 where the input is twice the output and output
    /// rows are whole vec4s, assembling the 3 taps of a kernel row from a texel and its
    /// neighbours. Runs everywhere; written for CPU adapters.
    T3,
}

impl ConvKernel {
    /// Every family that can be forced, for tests and benchmarks.
    pub const FORCEABLE: [ConvKernel; 11] = [
        ConvKernel::Direct,
        ConvKernel::Gemm64x16,
        ConvKernel::Gemm64x16K8,
        ConvKernel::Gemm32x32,
        ConvKernel::GemmRow3x3,
        ConvKernel::Tiled,
        ConvKernel::TiledDouble,
        ConvKernel::TiledSplitK,
        ConvKernel::Gp,
        ConvKernel::Px,
        ConvKernel::T3,
    ];

    /// The name a caller forces it by: its variant's name in lower case (`gemm32x32`, `tiled`).
    pub fn name(self) -> String {
        format!("{self:?}").to_ascii_lowercase()
    }
}

impl std::str::FromStr for ConvKernel {
    type Err = crate::error::Error;

    fn from_str(s: &str) -> crate::error::Result<Self> {
        let wanted = s.trim().to_ascii_lowercase();
        std::iter::once(ConvKernel::Auto)
            .chain(ConvKernel::FORCEABLE)
            .find(|k| k.name() == wanted)
            .ok_or_else(|| {
                let names: Vec<String> = std::iter::once(ConvKernel::Auto)
                    .chain(ConvKernel::FORCEABLE)
                    .map(ConvKernel::name)
                    .collect();
                crate::error::Error::input("conv kernel", names.join(", "), s)
            })
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

/// A conv family and, for one with several tiles, the tile it runs (`None`: its rule's): what the
/// tuner times and keeps per conv bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvChoice {
    pub kernel: ConvKernel,
    pub tile: Option<Tile>,
}

impl ConvChoice {
    /// A family at its rule's tile.
    pub fn rule(kernel: ConvKernel) -> Self {
        ConvChoice { kernel, tile: None }
    }

    /// `Px`, or `Px 16x2` with a tile: how the tuning cache names it.
    pub fn label(&self) -> String {
        match self.tile {
            None => format!("{:?}", self.kernel),
            Some((a, b)) => format!("{:?} {a}x{b}", self.kernel),
        }
    }
}

/// How lowering picks a conv family: the requested one, else the tuner's choice for the conv's
/// bucket, else the automatic rule; and whether weights are stored as f16.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConvPolicy {
    pub requested: ConvKernel,
    /// The requested family's tile, for the convs it offers it for.
    pub requested_tile: Option<Tile>,
    /// Store conv and linear weights as f16 (the device has `SHADER_F16`; checked by the session).
    pub f16_weights: bool,
    /// Images per dispatch (the session's chunk), part of a tuning bucket.
    pub images: usize,
    /// The tuner's choices (empty when tuning is off or nothing needed timing).
    pub tuned: BTreeMap<Bucket, ConvChoice>,
    /// The weight layout each node already has on the device (by node name), from earlier sessions
    /// of the model: a family that reads it is preferred, so one copy of the weights serves every
    /// input size.
    pub held: BTreeMap<String, Packing>,
}

impl ConvPolicy {
    pub(crate) fn new(requested: ConvKernel, precision: Precision) -> Self {
        ConvPolicy {
            requested,
            requested_tile: None,
            f16_weights: precision == Precision::F16,
            images: 1,
            tuned: BTreeMap::new(),
            held: BTreeMap::new(),
        }
    }

    /// The policy a session's options ask for, at `images` per dispatch (before tuning and
    /// without held weights).
    pub(crate) fn for_session(options: &SessionOptions, images: usize) -> Self {
        ConvPolicy {
            requested_tile: options.conv_tile,
            images,
            ..Self::new(options.conv_kernel, options.precision)
        }
    }

    /// The family and tile for one conv. A forced family runs every conv whose shape it fits (the
    /// others get the automatic choice), with the forced tile where it offers it for the conv (else
    /// its rule's); a forced family the adapter cannot run at all is an error, never a silent
    /// substitute.
    pub(crate) fn choose(
        &self,
        node: &str,
        s: &ConvShape,
        caps: &AdapterCaps,
    ) -> Result<(&'static ConvFamily, Option<Tile>), String> {
        let Some(family) = conv::family(self.requested) else {
            let usable = |f: &&ConvFamily| f.usable(s, caps, self.images);
            let bucket = Bucket::new(s, self.images, self.f16_weights);
            let tuned = self.tuned.get(&bucket).and_then(|c| {
                let f = conv::family(c.kernel).filter(usable)?;
                Some((f, f.offered(s, caps, c.tile)))
            });
            let choice = tuned.unwrap_or_else(|| (automatic(s, caps, self.images), None));
            // Weights already on the device in another layout: the chosen family at a tile that
            // reads them, else the best family that does at its rule's tile.
            let Some(held) = self.held.get(node) else {
                return Ok(choice);
            };
            let reads_held =
                |&(f, t): &(&ConvFamily, Option<Tile>)| (f.plan)(s, caps, t).packing == *held;
            let tiles = (choice.0.tiles)(s, caps).into_iter();
            let others = tiles
                .map(|t| (choice.0, Some(t)))
                .chain(conv::FAMILIES.into_iter().filter(usable).map(|f| (f, None)));
            return Ok(std::iter::once(choice)
                .chain(others)
                .find(reads_held)
                .unwrap_or(choice));
        };
        family
            .supports(caps)
            .map_err(|why| format!("conv kernel {:?} {why}", self.requested))?;
        Ok(if family.usable(s, caps, self.images) {
            (family, family.offered(s, caps, self.requested_tile))
        } else {
            (automatic(s, caps, self.images), None)
        })
    }
}

/// The shape-specific texture families (measured on lavapipe at 4 and 8 lanes and over OpenGL:
/// about twice as fast as the general one on the shapes they run).
pub(crate) const SHAPE_SPECIFIC: [&ConvFamily; 2] = [&conv::px::FAMILY, &conv::t3::FAMILY];

/// The texture families in order of preference: the shape-specific ones, then the general one.
pub(crate) const TEXTURE_FAMILIES: [&ConvFamily; 3] =
    [SHAPE_SPECIFIC[0], SHAPE_SPECIFIC[1], &conv::gp::FAMILY];

/// The rule when nothing is forced or tuned: the first texture family that runs the conv (the
/// direct kernels where their input textures do not fit a chunk of `images` images). Measured on
/// lavapipe at 4 and 8 lanes and llvmpipe over OpenGL (res2net50_26w_4s, every conv shape at batch
/// 1 and 8): the texture families run 3-10 times faster than the 8-lane subgroup GEMMs and about 20
/// times faster than the direct kernels. On other adapters the tuner times every usable family.
pub(crate) fn automatic(s: &ConvShape, caps: &AdapterCaps, images: usize) -> &'static ConvFamily {
    TEXTURE_FAMILIES
        .into_iter()
        .find(|f| f.usable(s, caps, images))
        .unwrap_or(&conv::direct::FAMILY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::kernels::conv::lanes::{caps, test_shape};

    const NODE: &str = "layer3.0.conv2";

    #[test]
    fn a_forced_tile_runs_where_the_family_offers_it() {
        let pointwise = test_shape(1, 14, 64, 104);
        let caps8 = caps(Some((8, 8)));
        let mut policy = ConvPolicy::new(ConvKernel::Px, Precision::F32);
        policy.requested_tile = Some((16, 1));
        let (family, tile) = policy.choose(NODE, &pointwise, &caps8).unwrap();
        assert_eq!((family.kernel, tile), (ConvKernel::Px, Some((16, 1))));
        // A tile px does not offer gives its rule's; a conv px does not fit, the automatic family.
        policy.requested_tile = Some((7, 3));
        let (_, tile) = policy.choose(NODE, &pointwise, &caps8).unwrap();
        assert_eq!(tile, None);
        let chain = test_shape(3, 14, 52, 52);
        let (family, tile) = policy.choose(NODE, &chain, &caps8).unwrap();
        assert_eq!((family.kernel, tile), (ConvKernel::T3, None));
    }

    #[test]
    fn a_tuned_tile_yields_to_weights_held_in_another_layout() {
        let chain = test_shape(3, 14, 52, 52);
        let caps8 = caps(Some((8, 8)));
        let mut policy = ConvPolicy::new(ConvKernel::Auto, Precision::F32);
        let tuned = ConvChoice {
            kernel: ConvKernel::T3,
            tile: Some((28, 2)),
        };
        policy.tuned.insert(Bucket::new(&chain, 1, false), tuned);
        let (family, tile) = policy.choose(NODE, &chain, &caps8).unwrap();
        assert_eq!((family.kernel, tile), (ConvKernel::T3, Some((28, 2))));
        // Weights packed for the rule's 52-channel blocks by an earlier session: t3 again, at a
        // tile that reads them.
        let rule = (conv::t3::FAMILY.plan)(&chain, &caps8, None);
        policy.held.insert(NODE.into(), rule.packing);
        let (family, tile) = policy.choose(NODE, &chain, &caps8).unwrap();
        assert_eq!(family.kernel, ConvKernel::T3);
        assert_eq!((family.plan)(&chain, &caps8, tile).packing, rule.packing);
        assert_ne!(tile, Some((28, 2)));
    }
}
