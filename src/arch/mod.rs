//! Which network a checkpoint holds: the two block flavours, the two layouts (ResNet and DLA), every
//! published variant as a preset, detection of the configuration from a checkpoint's keys and shapes
//! alone, and the feature points a backbone exposes.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod detect;
mod features;
mod presets;

pub use detect::detect;
pub use features::{parse_out_indices, FeaturePoint};
pub use presets::{dla, preset, presets, seed, Preset};

/// The two formulations of the Res2Net block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavour {
    /// The paper's equation 1 as written in the seed document: biased convs, stride on the first 1x1,
    /// first chunk passes through, hierarchical adds in every block, softmax head.
    Seed,
    /// The official code, timm and every published checkpoint: bias-free convs, last chunk passes
    /// through, "stage" first blocks with strided 3x3 convs and an average-pooled last chunk.
    Official,
}

/// The stem before the first stage of the ResNet layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Stem {
    /// conv 7x7 stride 2 -> BN -> ReLU -> max pool 3x3 stride 2.
    Conv7 { channels: usize },
    /// v1b / "d" stem: three 3x3 convs (3 -> mid stride 2, mid -> mid, mid -> channels), BN and ReLU
    /// between them, then BN, ReLU, max pool.
    Deep { mid: usize, channels: usize },
}

impl Stem {
    pub fn channels(&self) -> usize {
        match *self {
            Stem::Conv7 { channels } | Stem::Deep { channels, .. } => channels,
        }
    }
}

/// The ResNet layout of every Res2Net of the paper and of timm's `res2net*`: a stem, then four stages
/// of bottleneck blocks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResNetLayout {
    /// Blocks per stage.
    pub layers: [usize; 4],
    /// Bottleneck planes per stage; a block outputs `4 * planes` channels.
    pub planes: [usize; 4],
    pub stem: Stem,
    /// Downsample shortcut through AvgPool(2, ceil) + 1x1 conv instead of a strided 1x1 conv.
    #[serde(default)]
    pub avg_down: bool,
}

/// The DLA layout of timm's `dla60_res2net` and `dla60_res2next`: a 7x7 stride-1 base layer, two conv
/// levels, then four trees of Res2Net bottlenecks joined by 1x1 "root" convs over concatenations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlaLayout {
    /// Convs in level 0 and level 1, then the depth of the trees of levels 2 to 5 (a tree of depth
    /// `d` holds `2^d` blocks).
    pub levels: [usize; 6],
    /// Output channels of the base layer and level 0 (`channels[0]`), then of levels 1 to 5.
    pub channels: [usize; 6],
}

/// How the blocks are arranged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Backbone {
    ResNet(ResNetLayout),
    Dla(DlaLayout),
}

/// Everything needed to build a Res2Net. The layout's fields sit beside the others in the JSON form
/// (`res2net.config`), so the configs written before DLA existed still read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Res2NetConfig {
    pub flavour: Flavour,
    #[serde(flatten)]
    pub backbone: Backbone,
    /// Official: the 3x3 width is `floor(planes * base_width / 64) * cardinality` (halved in the DLA
    /// layout, whose blocks have expansion 2). Seed: the seed's `width` argument (`planes[0] / scale`),
    /// informational.
    pub base_width: usize,
    /// Number of chunks the bottleneck is split into.
    pub scale: usize,
    /// Groups of every 3x3 conv (Res2NeXt cardinality, the seed's `groups`).
    pub cardinality: usize,
    /// Squeeze-and-excitation after the last BN of every block.
    #[serde(default)]
    pub se: bool,
    pub num_classes: usize,
}

/// Bottleneck expansion of the ResNet layout: a block outputs `EXPANSION * planes` channels.
pub const EXPANSION: usize = 4;
/// Metadata key under which a checkpoint may carry its own config as JSON.
pub const METADATA_KEY: &str = "res2net.config";
/// Deepest DLA tree accepted (a tree of depth `d` holds `2^d` blocks; DLA-169 uses 4).
pub const MAX_TREE_DEPTH: usize = 8;

fn invalid(what: String) -> Error {
    Error::Config(format!("invalid config: {what}"))
}

impl Res2NetConfig {
    /// The ResNet layout, unless this is a DLA.
    pub fn resnet(&self) -> Option<&ResNetLayout> {
        match &self.backbone {
            Backbone::ResNet(r) => Some(r),
            Backbone::Dla(_) => None,
        }
    }

    /// The DLA layout, if this is one.
    pub fn dla(&self) -> Option<&DlaLayout> {
        match &self.backbone {
            Backbone::Dla(d) => Some(d),
            Backbone::ResNet(_) => None,
        }
    }

    /// Chunk width (channels per scale) of a ResNet-layout block with `planes` bottleneck planes.
    pub fn chunk_width(&self, planes: usize) -> usize {
        match self.flavour {
            Flavour::Seed => self.cardinality * planes / self.scale,
            Flavour::Official => planes * self.base_width / 64 * self.cardinality,
        }
    }

    /// Chunk width of a DLA block with `out` output channels (timm's `DlaBottle2neck`: expansion 2).
    pub fn dla_chunk_width(&self, out: usize) -> usize {
        out * self.base_width / 64 * self.cardinality / 2
    }

    /// Hidden width of the SE module over `channels` channels.
    pub fn se_channels(&self, channels: usize) -> usize {
        match self.flavour {
            Flavour::Seed => channels / 16,
            // timm's make_divisible(channels / 16, 8, round_limit=0).
            Flavour::Official => ((channels / 16 + 4) / 8 * 8).max(8),
        }
    }

    /// Checks the numbers make a buildable network; the message names the first that does not.
    pub fn validate(&self) -> Result<()> {
        if self.scale == 0 || self.scale > 64 {
            return Err(invalid(format!(
                "expected scale in 1..=64, found {}",
                self.scale
            )));
        }
        if self.cardinality == 0 {
            return Err(invalid("expected cardinality >= 1, found 0".into()));
        }
        // Bounds before any width is computed from them, so the products below cannot overflow.
        if self.cardinality > 1 << 16 || self.base_width > 1 << 16 {
            return Err(invalid(format!(
                "expected cardinality and base width at most 65536, found cardinality {}, base width {}",
                self.cardinality, self.base_width
            )));
        }
        if self.num_classes == 0 || self.num_classes > 1 << 20 {
            return Err(invalid(format!(
                "expected 1..=1048576 classes, found {}",
                self.num_classes
            )));
        }
        match &self.backbone {
            Backbone::ResNet(r) => self.validate_resnet(r),
            Backbone::Dla(d) => self.validate_dla(d),
        }
    }

    fn validate_resnet(&self, r: &ResNetLayout) -> Result<()> {
        if r.layers.contains(&0) {
            return Err(invalid(format!(
                "expected at least one block per stage, found layers {:?}",
                r.layers
            )));
        }
        if r.layers.iter().any(|&l| l > 1000) || r.planes.iter().any(|&p| p > 1 << 16) {
            return Err(invalid(format!(
                "expected at most 1000 blocks and 65536 planes per stage, found layers {:?}, planes {:?}",
                r.layers, r.planes
            )));
        }
        if r.stem.channels() == 0 || matches!(r.stem, Stem::Deep { mid: 0, .. }) {
            return Err(invalid(format!(
                "expected non-zero stem widths, found {:?}",
                r.stem
            )));
        }
        for (stage, &planes) in r.planes.iter().enumerate() {
            let w = self.chunk_width(planes);
            if planes == 0 || w == 0 {
                return Err(invalid(format!(
                    "expected a non-zero width in stage {}, found 0",
                    stage + 1
                )));
            }
            self.check_groups(w, &format!("stage {}", stage + 1))?;
            if self.flavour == Flavour::Seed
                && !(self.cardinality * planes).is_multiple_of(self.scale)
            {
                return Err(invalid(format!(
                    "expected planes {planes} of stage {} to be divisible by scales {}",
                    stage + 1,
                    self.scale
                )));
            }
            if self.se && self.se_channels(EXPANSION * planes) == 0 {
                return Err(invalid(format!(
                    "expected at least 16 channels for SE in stage {}, found {}",
                    stage + 1,
                    EXPANSION * planes
                )));
            }
        }
        if self.flavour == Flavour::Seed && (r.avg_down || matches!(r.stem, Stem::Deep { .. })) {
            return Err(invalid(
                "expected the seed flavour with a 7x7 stem and conv downsample".into(),
            ));
        }
        Ok(())
    }

    fn validate_dla(&self, d: &DlaLayout) -> Result<()> {
        if self.flavour != Flavour::Official || self.se {
            return Err(invalid(
                "expected the DLA layout with the official block flavour and no SE".into(),
            ));
        }
        if d.levels[..2].iter().any(|&l| l == 0 || l > 1000)
            || d.levels[2..].iter().any(|&l| l == 0 || l > MAX_TREE_DEPTH)
        {
            return Err(invalid(format!(
                "expected 1..=1000 convs in levels 0-1 and tree depths 1..={MAX_TREE_DEPTH} in levels 2-5, found levels {:?}",
                d.levels
            )));
        }
        if d.channels.iter().any(|&c| c == 0 || c > 1 << 16) {
            return Err(invalid(format!(
                "expected 1..=65536 channels per level, found channels {:?}",
                d.channels
            )));
        }
        for level in 2..6 {
            let w = self.dla_chunk_width(d.channels[level]);
            if w == 0 {
                return Err(invalid(format!(
                    "expected a non-zero width in level {level}, found 0 (channels {}, base width {}, cardinality {})",
                    d.channels[level], self.base_width, self.cardinality
                )));
            }
            self.check_groups(w, &format!("level {level}"))?;
        }
        Ok(())
    }

    fn check_groups(&self, width: usize, place: &str) -> Result<()> {
        if !width.is_multiple_of(self.cardinality) {
            return Err(invalid(format!(
                "expected the 3x3 width {width} of {place} to be divisible by cardinality {}",
                self.cardinality
            )));
        }
        Ok(())
    }

    /// A one-line human description.
    pub fn summary(&self) -> String {
        let layout = match &self.backbone {
            Backbone::ResNet(r) => {
                let stem = match r.stem {
                    Stem::Conv7 { channels } => format!("7x7 stem ({channels})"),
                    Stem::Deep { mid, channels } => format!("deep stem ({mid}/{channels})"),
                };
                format!(
                    "layers {:?}, planes {:?}, {stem}, {} downsample",
                    r.layers,
                    r.planes,
                    if r.avg_down { "avg-pool" } else { "conv" },
                )
            }
            Backbone::Dla(d) => format!("DLA levels {:?}, channels {:?}", d.levels, d.channels),
        };
        format!(
            "{:?} flavour, {layout}, base width {}, scale {}, cardinality {}, SE {}, {} classes",
            self.flavour,
            self.base_width,
            self.scale,
            self.cardinality,
            if self.se { "on" } else { "off" },
            self.num_classes
        )
    }

    /// The config as the JSON stored under [`METADATA_KEY`].
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses and validates a JSON config.
    pub fn from_json(json: &str) -> Result<Self> {
        let config: Res2NetConfig = serde_json::from_str(json).map_err(|e| {
            Error::Config(format!(
                "'{METADATA_KEY}' metadata: expected a Res2Net config in JSON, found: {}",
                crate::error::one_line(&e.to_string())
            ))
        })?;
        config.validate()?;
        Ok(config)
    }
}

/// Where a config came from, for reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// The checkpoint's `res2net.config` metadata.
    Metadata,
    /// Detected from the checkpoint's keys and shapes.
    Detected,
    /// A named preset.
    Preset(String),
    /// Handed in by the caller.
    Given,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_unique() {
        let all = presets();
        for p in &all {
            p.config.validate().unwrap();
            assert_eq!(all.iter().filter(|q| q.name == p.name).count(), 1);
        }
    }

    #[test]
    fn json_round_trip() {
        for p in presets() {
            let back = Res2NetConfig::from_json(&p.config.to_json()).unwrap();
            assert_eq!(back, p.config);
        }
    }

    #[test]
    fn timm_se_width_rounds_to_eight() {
        let c = preset("res2net50_26w_4s").unwrap();
        assert_eq!(c.se_channels(256), 16);
        assert_eq!(c.se_channels(64), 8);
        assert_eq!(c.se_channels(200), 16);
    }

    #[test]
    fn huge_cardinality_or_base_width_is_refused_not_overflowed() {
        let mut c = seed([1, 1, 1, 1], 3, 1, 1, 1, false);
        c.cardinality = 1 << 63;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("cardinality"), "{e}");
        let mut c = preset("res2net50_26w_4s").unwrap();
        c.base_width = 1 << 62;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("base width"), "{e}");
    }

    #[test]
    fn json_errors_quoting_the_config_stay_on_one_line() {
        let e = Res2NetConfig::from_json(r#"{"flavour":"se\ned"}"#)
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\n') && e.contains(r"se\ned"), "{e}");
    }

    #[test]
    fn unknown_preset_lists_names() {
        let e = preset("resnet50").unwrap_err().to_string();
        assert!(e.contains("res2net50_26w_4s"), "{e}");
    }
}
