//! Detection of a configuration from a checkpoint's tensor names and shapes alone. The proposal is then
//! proven by building the graph, which checks every tensor.

use super::{
    Backbone, DlaLayout, Flavour, Res2NetConfig, ResNetLayout, Stem, EXPANSION, MAX_TREE_DEPTH,
};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};

/// Reads the checkpoint's tensor names and shapes (through `key`, which maps a model key to the
/// checkpoint's own name) and proposes the configuration they describe.
pub fn detect(ck: &Checkpoint, key: &dyn Fn(&str) -> String) -> Result<Res2NetConfig> {
    let keys = Keys { ck, key };
    keys.dim("fc.weight", 1)?;
    let num_classes = keys.dim("fc.weight", 0)?;
    let dla = keys.has("base_layer.0.weight");
    let resnet = ["layer1.0.conv1.weight", "conv1.weight", "conv1.0.weight"]
        .into_iter()
        .find(|k| keys.has(k));
    let config = match (dla, resnet) {
        (true, Some(r)) => {
            return Err(keys.unfit(format!(
                "expected the tensors of one layout, found ResNet tensors ('{}') and DLA tensors ('{}') together",
                key(r),
                key("base_layer.0.weight")
            )))
        }
        (true, None) => detect_dla(&keys, num_classes)?,
        (false, _) => detect_resnet(&keys, num_classes)?,
    };
    config
        .validate()
        .map_err(|e| keys.unfit(format!("detected an unbuildable network: {e}")))?;
    Ok(config)
}

/// Shape queries by model key, with errors that name the checkpoint's key.
struct Keys<'a> {
    ck: &'a Checkpoint,
    key: &'a dyn Fn(&str) -> String,
}

impl Keys<'_> {
    fn shape(&self, k: &str) -> Option<Vec<usize>> {
        self.ck.shape(&(self.key)(k)).map(|s| s.to_vec())
    }

    fn has(&self, k: &str) -> bool {
        self.ck.contains(&(self.key)(k))
    }

    fn unfit(&self, detail: String) -> Error {
        Error::Architecture {
            arch: "any Res2Net".into(),
            detail,
        }
    }

    fn dim(&self, k: &str, d: usize) -> Result<usize> {
        let s = self.shape(k).ok_or_else(|| {
            self.unfit(format!(
                "expected tensor '{}', found none (tensors: {})",
                (self.key)(k),
                self.ck.name_list(5)
            ))
        })?;
        s.get(d).copied().ok_or_else(|| {
            self.unfit(format!(
                "tensor '{}': expected at least {} dimensions, found shape {s:?}",
                (self.key)(k),
                d + 1
            ))
        })
    }

    /// `(chunk width, cardinality)` from a grouped 3x3 conv's `[out, in / groups, 3, 3]`.
    fn conv3x3(&self, k: &str) -> Result<Option<(usize, usize)>> {
        match self.shape(k) {
            Some(s) if s.len() == 4 && s[1] > 0 => Ok(Some((s[0], (s[0] / s[1]).max(1)))),
            Some(s) => Err(self.unfit(format!(
                "tensor '{}': expected [out, in, 3, 3], found {s:?}",
                (self.key)(k)
            ))),
            None => Ok(None),
        }
    }

    /// The scale: the bottleneck width over the chunk width.
    fn scale(&self, conv3x3: &str, bottleneck: usize, chunk: usize) -> Result<usize> {
        if chunk == 0 || !bottleneck.is_multiple_of(chunk) {
            return Err(self.unfit(format!(
                "tensor '{}': expected a width dividing the bottleneck {bottleneck}, found {chunk}",
                (self.key)(conv3x3)
            )));
        }
        Ok(bottleneck / chunk)
    }
}

/// The base width that gives every `(out, width)` pair through `width_of(out, base_width)`.
fn base_width(
    keys: &Keys,
    pairs: &[(usize, usize)],
    width_of: impl Fn(usize, usize) -> Option<usize>,
    rule: &str,
) -> Result<usize> {
    (1..=4096)
        .find(|&bw| pairs.iter().all(|&(p, w)| width_of(p, bw) == Some(w)))
        .ok_or_else(|| {
            let (outs, widths): (Vec<usize>, Vec<usize>) = pairs.iter().copied().unzip();
            keys.unfit(format!(
                "expected 3x3 widths {rule} for {outs:?}, found widths {widths:?}"
            ))
        })
}

fn detect_resnet(keys: &Keys, num_classes: usize) -> Result<Res2NetConfig> {
    let flavour = if keys.has("layer1.0.conv1.bias") || keys.has("layer1.0.conv2.0.weight") {
        Flavour::Seed
    } else if keys.has("layer1.0.convs.0.weight") {
        Flavour::Official
    } else {
        return Err(keys.unfit(format!(
            "expected 'layer1.0.convs.0.weight' (official/timm) or 'layer1.0.conv2.0.weight' (seed), found neither (tensors: {})",
            keys.ck.name_list(5)
        )));
    };

    let mut layers = [0usize; 4];
    let mut planes = [0usize; 4];
    for s in 0..4 {
        while keys.has(&format!("layer{}.{}.conv1.weight", s + 1, layers[s])) {
            layers[s] += 1;
            if layers[s] > 1000 {
                break;
            }
        }
        if layers[s] == 0 {
            return Err(keys.unfit(format!(
                "expected tensor '{}', found none",
                (keys.key)(&format!("layer{}.0.conv1.weight", s + 1))
            )));
        }
        let conv3 = format!("layer{}.0.conv3.weight", s + 1);
        let out = keys.dim(&conv3, 0)?;
        if out % EXPANSION != 0 {
            return Err(keys.unfit(format!(
                "tensor '{}': expected output channels divisible by {EXPANSION}, found {out}",
                (keys.key)(&conv3)
            )));
        }
        planes[s] = out / EXPANSION;
    }

    let bottleneck = keys.dim("layer1.0.conv1.weight", 0)?;
    let conv3x3 = match flavour {
        Flavour::Seed => "layer1.0.conv2.0.weight",
        Flavour::Official => "layer1.0.convs.0.weight",
    };
    let found = keys.conv3x3(conv3x3)?;
    // A seed block with scales = 1 has no 3x3 convs at all.
    let (chunk, cardinality) = found.unwrap_or((bottleneck, 1));
    let scale = keys.scale(conv3x3, bottleneck, chunk)?;
    let se = keys.has("layer1.0.se.fc1.weight");

    let (stem, avg_down, base_width, cardinality) = match flavour {
        Flavour::Seed => {
            let stem = Stem::Conv7 {
                channels: keys.dim("conv1.weight", 0)?,
            };
            // Without 3x3 convs (scales = 1) the groups show only in the bottleneck width.
            let cardinality = if found.is_some() {
                cardinality
            } else {
                (bottleneck / planes[0].max(1)).max(1)
            };
            (stem, false, planes[0] / scale.max(1), cardinality)
        }
        Flavour::Official => {
            let stem = if keys.has("conv1.0.weight") {
                Stem::Deep {
                    mid: keys.dim("conv1.0.weight", 0)?,
                    channels: keys.dim("conv1.6.weight", 0)?,
                }
            } else {
                Stem::Conv7 {
                    channels: keys.dim("conv1.weight", 0)?,
                }
            };
            let avg_down = (1..=4).any(|s| {
                keys.shape(&format!("layer{s}.0.downsample.1.weight"))
                    .is_some_and(|sh| sh.len() == 4)
            });
            let mut pairs = Vec::new();
            for (s, &p) in planes.iter().enumerate() {
                pairs.push((p, keys.dim(&format!("layer{}.0.convs.0.weight", s + 1), 0)?));
            }
            // Checked: planes and cardinality come straight from the file's shapes.
            let width_of = |p: usize, bw: usize| {
                p.checked_mul(bw)
                    .and_then(|x| (x / 64).checked_mul(cardinality))
            };
            let rule = format!("floor(planes * baseWidth / 64) * {cardinality}");
            let bw = base_width(keys, &pairs, width_of, &rule)?;
            (stem, avg_down, bw, cardinality)
        }
    };
    Ok(Res2NetConfig {
        flavour,
        backbone: Backbone::ResNet(ResNetLayout {
            layers,
            planes,
            stem,
            avg_down,
        }),
        base_width,
        scale,
        cardinality,
        se,
        num_classes,
    })
}

/// Convs in a `Sequential` of (conv, BN, ReLU) triples: `level0.0`, `level0.3`, ...
fn conv_level_depth(keys: &Keys, level: usize) -> Result<usize> {
    let mut n = 0;
    while n < 1000 && keys.has(&format!("level{level}.{}.weight", 3 * n)) {
        n += 1;
    }
    if n == 0 {
        return Err(keys.unfit(format!(
            "expected tensor '{}', found none",
            (keys.key)(&format!("level{level}.0.weight"))
        )));
    }
    Ok(n)
}

/// Depth of the tree of `level`: how many `tree1` steps lead to the first block.
fn tree_depth(keys: &Keys, level: usize) -> Result<(usize, String)> {
    let mut prefix = format!("level{level}");
    for depth in 1..=MAX_TREE_DEPTH {
        prefix.push_str(".tree1");
        if keys.has(&format!("{prefix}.conv1.weight")) {
            return Ok((depth, prefix));
        }
    }
    Err(keys.unfit(format!(
        "expected tensor '{}' (a tree of depth 1 to {MAX_TREE_DEPTH}), found none",
        (keys.key)(&format!("level{level}.tree1.conv1.weight"))
    )))
}

fn detect_dla(keys: &Keys, num_classes: usize) -> Result<Res2NetConfig> {
    let mut levels = [0usize; 6];
    let mut channels = [0usize; 6];
    channels[0] = keys.dim("base_layer.0.weight", 0)?;
    levels[0] = conv_level_depth(keys, 0)?;
    levels[1] = conv_level_depth(keys, 1)?;
    channels[1] = keys.dim("level1.0.weight", 0)?;
    let mut first_blocks = Vec::new();
    for level in 2..6 {
        let (depth, block) = tree_depth(keys, level)?;
        levels[level] = depth;
        channels[level] = keys.dim(&format!("{block}.conv3.weight"), 0)?;
        first_blocks.push(block);
    }
    let conv3x3 = format!("{}.convs.0.weight", first_blocks[0]);
    let (chunk, cardinality) = keys.conv3x3(&conv3x3)?.ok_or_else(|| {
        keys.unfit(format!(
            "expected tensor '{}', found none",
            (keys.key)(&conv3x3)
        ))
    })?;
    let bottleneck = keys.dim(&format!("{}.conv1.weight", first_blocks[0]), 0)?;
    let scale = keys.scale(&conv3x3, bottleneck, chunk)?;
    let mut pairs = Vec::new();
    for (block, &out) in first_blocks.iter().zip(&channels[2..]) {
        pairs.push((out, keys.dim(&format!("{block}.convs.0.weight"), 0)?));
    }
    let width_of = |out: usize, bw: usize| {
        out.checked_mul(bw)
            .and_then(|x| (x / 64).checked_mul(cardinality))
            .map(|x| x / 2)
    };
    let rule = format!("floor(channels * baseWidth / 64) * {cardinality} / 2");
    let base_width = base_width(keys, &pairs, width_of, &rule)?;
    Ok(Res2NetConfig {
        flavour: Flavour::Official,
        backbone: Backbone::Dla(DlaLayout { levels, channels }),
        base_width,
        scale,
        cardinality,
        se: false,
        num_classes,
    })
}
