//! Every published Res2Net variant (timm's names) and the seed document's defaults, by name.

use super::{Backbone, DlaLayout, Flavour, Res2NetConfig, ResNetLayout, Stem};
use crate::error::{Error, Result};

/// A named, published (or seed-default) architecture.
pub struct Preset {
    pub name: &'static str,
    pub description: &'static str,
    pub config: Res2NetConfig,
}

const IMAGENET_PLANES: [usize; 4] = [64, 128, 256, 512];

fn official(
    layers: [usize; 4],
    base_width: usize,
    scale: usize,
    cardinality: usize,
    deep: bool,
) -> Res2NetConfig {
    let stem = if deep {
        Stem::Deep {
            mid: 32,
            channels: 64,
        }
    } else {
        Stem::Conv7 { channels: 64 }
    };
    Res2NetConfig {
        flavour: Flavour::Official,
        backbone: Backbone::ResNet(ResNetLayout {
            layers,
            planes: IMAGENET_PLANES,
            stem,
            avg_down: deep,
        }),
        base_width,
        scale,
        cardinality,
        se: false,
        num_classes: 1000,
    }
}

/// The seed document's `Res2Net(layers, num_classes, width, scales, groups, se)`.
pub fn seed(
    layers: [usize; 4],
    num_classes: usize,
    width: usize,
    scales: usize,
    groups: usize,
    se: bool,
) -> Res2NetConfig {
    Res2NetConfig {
        flavour: Flavour::Seed,
        backbone: Backbone::ResNet(ResNetLayout {
            layers,
            planes: [0, 1, 2, 3].map(|i| (width * scales) << i),
            stem: Stem::Conv7 {
                channels: width * scales,
            },
            avg_down: false,
        }),
        base_width: width,
        scale: scales,
        cardinality: groups,
        se,
        num_classes,
    }
}

/// timm's `DLA(levels, channels, cardinality, base_width, block=DlaBottle2neck)` (scale 4, the block's
/// default).
pub fn dla(
    levels: [usize; 6],
    channels: [usize; 6],
    base_width: usize,
    cardinality: usize,
    num_classes: usize,
) -> Res2NetConfig {
    Res2NetConfig {
        flavour: Flavour::Official,
        backbone: Backbone::Dla(DlaLayout { levels, channels }),
        base_width,
        scale: 4,
        cardinality,
        se: false,
        num_classes,
    }
}

/// Name, description, blocks per stage, base width, scale, cardinality, deep stem with avg-pool
/// downsample.
type OfficialRow = (
    &'static str,
    &'static str,
    [usize; 4],
    usize,
    usize,
    usize,
    bool,
);

/// The published ResNet-layout Res2Nets.
#[rustfmt::skip]
const OFFICIAL: [OfficialRow; 9] = [
    ("res2net50_26w_4s", "Res2Net-50, 26w x 4s", R50, 26, 4, 1, false),
    ("res2net50_48w_2s", "Res2Net-50, 48w x 2s", R50, 48, 2, 1, false),
    ("res2net50_14w_8s", "Res2Net-50, 14w x 8s", R50, 14, 8, 1, false),
    ("res2net50_26w_6s", "Res2Net-50, 26w x 6s", R50, 26, 6, 1, false),
    ("res2net50_26w_8s", "Res2Net-50, 26w x 8s", R50, 26, 8, 1, false),
    ("res2net101_26w_4s", "Res2Net-101, 26w x 4s", R101, 26, 4, 1, false),
    ("res2next50", "Res2NeXt-50, 4w x 4s x 8 groups", R50, 4, 4, 8, false),
    ("res2net50d", "Res2Net-50-v1b: deep stem, avg-pool downsample", R50, 26, 4, 1, true),
    ("res2net101d", "Res2Net-101-v1b: deep stem, avg-pool downsample", R101, 26, 4, 1, true),
];
const R50: [usize; 4] = [3, 4, 6, 3];
const R101: [usize; 4] = [3, 4, 23, 3];
const DLA60: [usize; 6] = [1, 1, 1, 2, 3, 1];
const DLA60_CHANNELS: [usize; 6] = [16, 32, 128, 256, 512, 1024];

/// Every published Res2Net variant and the seed document's defaults.
pub fn presets() -> Vec<Preset> {
    let preset = |name, description, config| Preset {
        name,
        description,
        config,
    };
    let mut v: Vec<Preset> = OFFICIAL
        .iter()
        .map(|&(name, description, layers, bw, scale, card, deep)| {
            preset(name, description, official(layers, bw, scale, card, deep))
        })
        .collect();
    v.extend([
        preset(
            "dla60_res2net",
            "DLA-60 trees of Res2Net blocks, 28w x 4s",
            dla(DLA60, DLA60_CHANNELS, 28, 1, 1000),
        ),
        preset(
            "dla60_res2next",
            "DLA-60 trees of Res2NeXt blocks, 4w x 4s x 8 groups",
            dla(DLA60, DLA60_CHANNELS, 4, 8, 1000),
        ),
        preset(
            "seed_se_res2net50",
            "the seed document's SE-Res2Net defaults (width 16, scales 4, 5 classes)",
            seed(R50, 5, 16, 4, 1, true),
        ),
        preset(
            "seed_res2net50",
            "the seed document's Res2Net without SE",
            seed(R50, 5, 16, 4, 1, false),
        ),
    ]);
    v
}

/// Looks up a preset by name.
pub fn preset(name: &str) -> Result<Res2NetConfig> {
    presets()
        .into_iter()
        .find(|p| p.name == name)
        .map(|p| p.config)
        .ok_or_else(|| {
            let names: Vec<&str> = presets().iter().map(|p| p.name).collect();
            Error::Config(format!(
                "unknown architecture '{name}': expected one of {}",
                names.join(", ")
            ))
        })
}
