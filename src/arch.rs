//! Which network a checkpoint holds: the two block flavours, every published variant as a preset, and
//! detection of the configuration from a checkpoint's keys and shapes alone.

use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};

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

/// The stem before the first stage.
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

/// Everything needed to build a Res2Net.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Res2NetConfig {
    pub flavour: Flavour,
    /// Blocks per stage.
    pub layers: [usize; 4],
    /// Bottleneck planes per stage; a block outputs `4 * planes` channels.
    pub planes: [usize; 4],
    pub stem: Stem,
    /// Official: the 3x3 width is `floor(planes * base_width / 64) * cardinality`. Seed: the seed's
    /// `width` argument (`planes[0] / scale`), informational.
    pub base_width: usize,
    /// Number of chunks the bottleneck is split into.
    pub scale: usize,
    /// Groups of every 3x3 conv (Res2NeXt cardinality, the seed's `groups`).
    pub cardinality: usize,
    /// Downsample shortcut through AvgPool(2, ceil) + 1x1 conv instead of a strided 1x1 conv.
    #[serde(default)]
    pub avg_down: bool,
    /// Squeeze-and-excitation after the last BN of every block.
    #[serde(default)]
    pub se: bool,
    pub num_classes: usize,
}

/// Bottleneck expansion: a block outputs `EXPANSION * planes` channels.
pub const EXPANSION: usize = 4;
/// Metadata key under which a checkpoint may carry its own config as JSON.
pub const METADATA_KEY: &str = "res2net.config";

impl Res2NetConfig {
    /// Chunk width (channels per scale) of the blocks in `stage`.
    pub fn chunk_width(&self, stage: usize) -> usize {
        match self.flavour {
            Flavour::Seed => self.cardinality * self.planes[stage] / self.scale,
            Flavour::Official => self.planes[stage] * self.base_width / 64 * self.cardinality,
        }
    }

    /// Output channels of the blocks in `stage`.
    pub fn stage_channels(&self, stage: usize) -> usize {
        EXPANSION * self.planes[stage]
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
        let bad = |what: String| Err(Error::Config(format!("invalid config: {what}")));
        if self.layers.contains(&0) {
            return bad(format!(
                "expected at least one block per stage, found layers {:?}",
                self.layers
            ));
        }
        if self.layers.iter().any(|&l| l > 1000) || self.planes.iter().any(|&p| p > 1 << 16) {
            return bad(format!(
                "expected at most 1000 blocks and 65536 planes per stage, found layers {:?}, planes {:?}",
                self.layers, self.planes
            ));
        }
        if self.scale == 0 || self.scale > 64 {
            return bad(format!("expected scale in 1..=64, found {}", self.scale));
        }
        if self.cardinality == 0 {
            return bad("expected cardinality >= 1, found 0".into());
        }
        // Bounds before any width is computed from them, so the products below cannot overflow.
        if self.cardinality > 1 << 16 || self.base_width > 1 << 16 {
            return bad(format!(
                "expected cardinality and base width at most 65536, found cardinality {}, base width {}",
                self.cardinality, self.base_width
            ));
        }
        if self.num_classes == 0 || self.num_classes > 1 << 20 {
            return bad(format!(
                "expected 1..=1048576 classes, found {}",
                self.num_classes
            ));
        }
        if self.stem.channels() == 0 || matches!(self.stem, Stem::Deep { mid: 0, .. }) {
            return bad(format!(
                "expected non-zero stem widths, found {:?}",
                self.stem
            ));
        }
        for stage in 0..4 {
            let w = self.chunk_width(stage);
            if self.planes[stage] == 0 || w == 0 {
                return bad(format!(
                    "expected a non-zero width in stage {}, found 0",
                    stage + 1
                ));
            }
            if !w.is_multiple_of(self.cardinality) {
                return bad(format!(
                    "expected the 3x3 width {w} of stage {} to be divisible by cardinality {}",
                    stage + 1,
                    self.cardinality
                ));
            }
            if self.flavour == Flavour::Seed
                && !(self.cardinality * self.planes[stage]).is_multiple_of(self.scale)
            {
                return bad(format!(
                    "expected planes {} of stage {} to be divisible by scales {}",
                    self.planes[stage],
                    stage + 1,
                    self.scale
                ));
            }
            if self.se && self.se_channels(self.stage_channels(stage)) == 0 {
                return bad(format!(
                    "expected at least 16 channels for SE in stage {}, found {}",
                    stage + 1,
                    self.stage_channels(stage)
                ));
            }
        }
        if self.flavour == Flavour::Seed
            && (self.avg_down || matches!(self.stem, Stem::Deep { .. }))
        {
            return bad("expected the seed flavour with a 7x7 stem and conv downsample".into());
        }
        Ok(())
    }

    /// A one-line human description.
    pub fn summary(&self) -> String {
        let stem = match self.stem {
            Stem::Conv7 { channels } => format!("7x7 stem ({channels})"),
            Stem::Deep { mid, channels } => format!("deep stem ({mid}/{channels})"),
        };
        format!(
            "{:?} flavour, layers {:?}, planes {:?}, {}, base width {}, scale {}, cardinality {}, {} downsample, SE {}, {} classes",
            self.flavour,
            self.layers,
            self.planes,
            stem,
            self.base_width,
            self.scale,
            self.cardinality,
            if self.avg_down { "avg-pool" } else { "conv" },
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
    Res2NetConfig {
        flavour: Flavour::Official,
        layers,
        planes: IMAGENET_PLANES,
        stem: if deep {
            Stem::Deep {
                mid: 32,
                channels: 64,
            }
        } else {
            Stem::Conv7 { channels: 64 }
        },
        base_width,
        scale,
        cardinality,
        avg_down: deep,
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
        layers,
        planes: [0, 1, 2, 3].map(|i| (width * scales) << i),
        stem: Stem::Conv7 {
            channels: width * scales,
        },
        base_width: width,
        scale: scales,
        cardinality: groups,
        avg_down: false,
        se,
        num_classes,
    }
}

/// Every published Res2Net variant and the seed document's defaults.
pub fn presets() -> Vec<Preset> {
    const R50: [usize; 4] = [3, 4, 6, 3];
    const R101: [usize; 4] = [3, 4, 23, 3];
    vec![
        Preset {
            name: "res2net50_26w_4s",
            description: "Res2Net-50, 26w x 4s",
            config: official(R50, 26, 4, 1, false),
        },
        Preset {
            name: "res2net50_48w_2s",
            description: "Res2Net-50, 48w x 2s",
            config: official(R50, 48, 2, 1, false),
        },
        Preset {
            name: "res2net50_14w_8s",
            description: "Res2Net-50, 14w x 8s",
            config: official(R50, 14, 8, 1, false),
        },
        Preset {
            name: "res2net50_26w_6s",
            description: "Res2Net-50, 26w x 6s",
            config: official(R50, 26, 6, 1, false),
        },
        Preset {
            name: "res2net50_26w_8s",
            description: "Res2Net-50, 26w x 8s",
            config: official(R50, 26, 8, 1, false),
        },
        Preset {
            name: "res2net101_26w_4s",
            description: "Res2Net-101, 26w x 4s",
            config: official(R101, 26, 4, 1, false),
        },
        Preset {
            name: "res2next50",
            description: "Res2NeXt-50, 4w x 4s x 8 groups",
            config: official(R50, 4, 4, 8, false),
        },
        Preset {
            name: "res2net50d",
            description: "Res2Net-50-v1b: deep stem, avg-pool downsample",
            config: official(R50, 26, 4, 1, true),
        },
        Preset {
            name: "res2net101d",
            description: "Res2Net-101-v1b: deep stem, avg-pool downsample",
            config: official(R101, 26, 4, 1, true),
        },
        Preset {
            name: "seed_se_res2net50",
            description: "the seed document's SE-Res2Net defaults (width 16, scales 4, 5 classes)",
            config: seed(R50, 5, 16, 4, 1, true),
        },
        Preset {
            name: "seed_res2net50",
            description: "the seed document's Res2Net without SE",
            config: seed(R50, 5, 16, 4, 1, false),
        },
    ]
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

/// Reads the checkpoint's tensor names and shapes (through `key`, which maps a model key to the
/// checkpoint's own name) and proposes the configuration they describe. The proposal is then proven by
/// building the graph, which checks every tensor.
pub fn detect(ck: &Checkpoint, key: &dyn Fn(&str) -> String) -> Result<Res2NetConfig> {
    let shape = |k: &str| ck.shape(&key(k)).map(|s| s.to_vec());
    let dim = |k: &str, d: usize| -> Result<usize> {
        let s = shape(k).ok_or_else(|| Error::Architecture {
            arch: "any Res2Net".into(),
            detail: format!(
                "expected tensor '{}', found none (tensors: {})",
                key(k),
                ck.name_list(5)
            ),
        })?;
        s.get(d).copied().ok_or_else(|| Error::Architecture {
            arch: "any Res2Net".into(),
            detail: format!(
                "tensor '{}': expected at least {} dimensions, found shape {s:?}",
                key(k),
                d + 1
            ),
        })
    };
    let unfit = |detail: String| Error::Architecture {
        arch: "any Res2Net".into(),
        detail,
    };

    dim("fc.weight", 1)?;
    let num_classes = dim("fc.weight", 0)?;
    let flavour = if shape("layer1.0.conv1.bias").is_some()
        || shape("layer1.0.conv2.0.weight").is_some()
    {
        Flavour::Seed
    } else if shape("layer1.0.convs.0.weight").is_some() {
        Flavour::Official
    } else {
        return Err(unfit(format!(
            "expected 'layer1.0.convs.0.weight' (official/timm) or 'layer1.0.conv2.0.weight' (seed), found neither (tensors: {})",
            ck.name_list(5)
        )));
    };

    let mut layers = [0usize; 4];
    let mut planes = [0usize; 4];
    for s in 0..4 {
        while shape(&format!("layer{}.{}.conv1.weight", s + 1, layers[s])).is_some() {
            layers[s] += 1;
            if layers[s] > 1000 {
                break;
            }
        }
        if layers[s] == 0 {
            return Err(unfit(format!(
                "expected tensor '{}', found none",
                key(&format!("layer{}.0.conv1.weight", s + 1))
            )));
        }
        let out = dim(&format!("layer{}.0.conv3.weight", s + 1), 0)?;
        if out % EXPANSION != 0 {
            return Err(unfit(format!(
                "tensor '{}': expected output channels divisible by {EXPANSION}, found {out}",
                key(&format!("layer{}.0.conv3.weight", s + 1))
            )));
        }
        planes[s] = out / EXPANSION;
    }

    let bottleneck = dim("layer1.0.conv1.weight", 0)?;
    let conv3x3 = match flavour {
        Flavour::Seed => "layer1.0.conv2.0.weight",
        Flavour::Official => "layer1.0.convs.0.weight",
    };
    let (chunk, cardinality) = match shape(conv3x3) {
        Some(s) if s.len() == 4 && s[1] > 0 => (s[0], (s[0] / s[1]).max(1)),
        Some(s) => {
            return Err(unfit(format!(
                "tensor '{}': expected [out, in, 3, 3], found {s:?}",
                key(conv3x3)
            )))
        }
        // A seed block with scales = 1 has no 3x3 convs at all.
        None => (bottleneck, 1),
    };
    if chunk == 0 || bottleneck % chunk != 0 {
        return Err(unfit(format!(
            "tensor '{}': expected a width dividing the bottleneck {bottleneck}, found {chunk}",
            key(conv3x3)
        )));
    }
    let scale = bottleneck / chunk;
    let se = shape("layer1.0.se.fc1.weight").is_some();

    let config = match flavour {
        Flavour::Seed => {
            let stem = dim("conv1.weight", 0)?;
            // Without 3x3 convs (scales = 1) the groups show only in the bottleneck width.
            let cardinality = if shape(conv3x3).is_some() {
                cardinality
            } else {
                (bottleneck / planes[0].max(1)).max(1)
            };
            Res2NetConfig {
                flavour,
                layers,
                planes,
                stem: Stem::Conv7 { channels: stem },
                base_width: planes[0] / scale.max(1),
                scale,
                cardinality,
                avg_down: false,
                se,
                num_classes,
            }
        }
        Flavour::Official => {
            let stem = if shape("conv1.0.weight").is_some() {
                Stem::Deep {
                    mid: dim("conv1.0.weight", 0)?,
                    channels: dim("conv1.6.weight", 0)?,
                }
            } else {
                Stem::Conv7 {
                    channels: dim("conv1.weight", 0)?,
                }
            };
            let avg_down = (1..=4).any(|s| {
                shape(&format!("layer{s}.0.downsample.1.weight")).is_some_and(|sh| sh.len() == 4)
            });
            let mut widths = [0usize; 4];
            for (s, w) in widths.iter_mut().enumerate() {
                *w = dim(&format!("layer{}.0.convs.0.weight", s + 1), 0)?;
            }
            let base_width = (1..=4096)
                .find(|&bw| {
                    // Checked: planes and cardinality come straight from the file's shapes.
                    (0..4).all(|s| {
                        planes[s]
                            .checked_mul(bw)
                            .and_then(|p| (p / 64).checked_mul(cardinality))
                            == Some(widths[s])
                    })
                })
                .ok_or_else(|| {
                    unfit(format!(
                        "expected 3x3 widths floor(planes * baseWidth / 64) * {cardinality} for planes {planes:?}, found widths {widths:?}"
                    ))
                })?;
            Res2NetConfig {
                flavour,
                layers,
                planes,
                stem,
                base_width,
                scale,
                cardinality,
                avg_down,
                se,
                num_classes,
            }
        }
    };
    config
        .validate()
        .map_err(|e| unfit(format!("detected an unbuildable network: {e}")))?;
    Ok(config)
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
