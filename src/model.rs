//! A loaded model: an architecture plus where its parameters come from (a checkpoint, or seeded random
//! values for tests and benchmarks). Builds graphs for any input size.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use crate::arch::{self, ConfigSource, Res2NetConfig, METADATA_KEY};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::graph::{self, Graph, Outputs, ParamSource, ShapeOnly};

/// Where parameter values come from.
#[derive(Clone)]
enum Params {
    Checkpoint { ck: Arc<Checkpoint>, prefix: String },
    Random { seed: u64 },
}

/// A Res2Net ready to be built into graphs.
#[derive(Clone)]
pub struct Model {
    config: Res2NetConfig,
    source: ConfigSource,
    params: Params,
    name: String,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.name)
            .field("source", &self.source)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A parameter as a state dict holds it: key, shape, values.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// Prefixes that wrappers add to every key (DataParallel's `module.`, some training loops' `model.`).
const KNOWN_PREFIXES: [&str; 3] = ["", "module.", "model."];

impl Model {
    /// Loads a checkpoint, detecting its architecture (a config in its metadata wins).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_checkpoint(Checkpoint::open(path)?, None)
    }

    /// Loads a checkpoint as the named preset.
    pub fn load_as(path: impl AsRef<Path>, preset: &str) -> Result<Self> {
        Self::from_checkpoint(Checkpoint::open(path)?, Some(preset))
    }

    /// Builds a model from a parsed checkpoint; `preset` forces an architecture.
    pub fn from_checkpoint(ck: Checkpoint, preset: Option<&str>) -> Result<Self> {
        let prefix = KNOWN_PREFIXES
            .iter()
            .find(|p| ck.contains(&format!("{p}fc.weight")))
            .map_or_else(String::new, |p| p.to_string());
        let key = |k: &str| format!("{prefix}{k}");
        let (config, source, name) = if let Some(p) = preset {
            (
                arch::preset(p)?,
                ConfigSource::Preset(p.to_string()),
                p.to_string(),
            )
        } else if let Some(json) = ck.metadata().get(METADATA_KEY) {
            (
                Res2NetConfig::from_json(json)?,
                ConfigSource::Metadata,
                "metadata config".to_string(),
            )
        } else {
            let config = arch::detect(&ck, &key)?;
            let name = matching_preset(&config).unwrap_or_else(|| "detected config".into());
            (config, ConfigSource::Detected, name)
        };
        let model = Model {
            config,
            source,
            params: Params::Checkpoint {
                ck: Arc::new(ck),
                prefix,
            },
            name,
        };
        model.check_checkpoint()?;
        Ok(model)
    }

    /// A model with seeded random parameters (for tests and benchmarks). BatchNorm statistics and
    /// affine terms are random too, so no block is an identity.
    pub fn from_config(config: &Res2NetConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let preset = matching_preset(config);
        Ok(Model {
            name: preset.clone().unwrap_or_else(|| "custom config".into()),
            config: config.clone(),
            source: preset.map_or(ConfigSource::Given, ConfigSource::Preset),
            params: Params::Random { seed },
        })
    }

    pub fn config(&self) -> &Res2NetConfig {
        &self.config
    }

    /// Preset name when the config equals one, else a description of where it came from.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config_source(&self) -> &ConfigSource {
        &self.source
    }

    /// The checkpoint's metadata (empty for random models).
    pub fn metadata(&self) -> std::collections::HashMap<String, String> {
        match &self.params {
            Params::Checkpoint { ck, .. } => ck.metadata().clone(),
            Params::Random { .. } => Default::default(),
        }
    }

    /// Builds the classifier graph for a `[3, h, w]` input, with BatchNorm folded.
    pub fn graph(&self, h: usize, w: usize) -> Result<Graph> {
        self.graph_with(h, w, &Outputs::classifier())
    }

    /// Builds the graph for a `[3, h, w]` input that returns `outputs` (feature points, the head or
    /// both); a graph without the head stops at its last feature point.
    pub fn graph_with(&self, h: usize, w: usize, outputs: &Outputs) -> Result<Graph> {
        match &self.params {
            Params::Checkpoint { ck, prefix } => {
                let mut src = CheckpointParams::new(ck, prefix, &self.name);
                graph::build_with(&self.config, &mut src, h, w, outputs)
            }
            Params::Random { seed } => {
                let mut src = RandomParams { seed: *seed };
                graph::build_with(&self.config, &mut src, h, w, outputs)
            }
        }
    }

    /// Every parameter the network reads, proven present with the right shape and dtype and free of
    /// NaN and infinity, and no tensor left over.
    fn check_checkpoint(&self) -> Result<()> {
        let Params::Checkpoint { ck, prefix } = &self.params else {
            return Ok(());
        };
        // Each key is checked as the builder asks for it, so a config that does not fit stops at its
        // first missing tensor instead of first listing every key of a possibly huge network.
        let mut keys = CheckedKeys {
            ck,
            prefix,
            arch: &self.name,
            used: HashSet::new(),
        };
        graph::build(&self.config, &mut keys, 64, 64)?;
        let used = keys.used;
        if let Some(extra) = ck
            .names()
            .find(|n| !used.contains(*n) && !n.ends_with("num_batches_tracked"))
        {
            return Err(Error::Architecture {
                arch: self.name.clone(),
                detail: format!(
                    "expected no tensor '{extra}' (shape {:?}): it is not part of this network",
                    ck.shape(extra).unwrap_or_default()
                ),
            });
        }
        Ok(())
    }

    /// Parameters (weights, biases and BatchNorm affine terms; not running statistics).
    pub fn param_count(&self) -> u64 {
        param_count(&self.config)
    }

    /// The unfolded parameters under their checkpoint keys (as a PyTorch state dict holds them,
    /// without the `num_batches_tracked` counters), in build order.
    pub fn state_dict(&self) -> Result<Vec<NamedTensor>> {
        let mut keys = ShapeOnly::default();
        graph::build(&self.config, &mut keys, 64, 64)?;
        let mut out = Vec::with_capacity(keys.keys.len());
        for (k, shape) in keys.keys {
            let values = match &self.params {
                Params::Checkpoint { ck, prefix } => {
                    CheckpointParams::new(ck, prefix, &self.name).fetch(&k, &shape)?
                }
                Params::Random { seed } => RandomParams { seed: *seed }.fetch(&k, &shape)?,
            };
            out.push((k, shape, values));
        }
        Ok(out)
    }

    /// Saves the parameters as an f32 safetensors checkpoint with the config in its metadata, so it
    /// loads back with no flags.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let dict = self.state_dict()?;
        let tensors: Vec<(&str, &[usize], &[f32])> = dict
            .iter()
            .map(|(k, s, v)| (k.as_str(), s.as_slice(), v.as_slice()))
            .collect();
        let meta = [(METADATA_KEY.to_string(), self.config.to_json())]
            .into_iter()
            .collect();
        crate::checkpoint::write_f32(path, &tensors, Some(meta))
    }
}

/// Parameter count of a config, from the keys the graph builder asks for.
pub fn param_count(config: &Res2NetConfig) -> u64 {
    let mut keys = ShapeOnly::default();
    match graph::build(config, &mut keys, 64, 64) {
        Ok(_) => graph::count_params(&keys.keys),
        Err(_) => 0,
    }
}

/// A graph with shapes but no weights: for FLOPs, shapes and key lists from a config alone.
pub fn shape_graph(config: &Res2NetConfig, h: usize, w: usize) -> Result<Graph> {
    graph::build(config, &mut ShapeOnly::default(), h, w)
}

/// [`shape_graph`] returning `outputs`.
pub fn shape_graph_with(
    config: &Res2NetConfig,
    h: usize,
    w: usize,
    outputs: &Outputs,
) -> Result<Graph> {
    graph::build_with(config, &mut ShapeOnly::default(), h, w, outputs)
}

fn matching_preset(config: &Res2NetConfig) -> Option<String> {
    arch::presets()
        .into_iter()
        .find(|p| &p.config == config)
        .map(|p| p.name.to_string())
}

/// A shape-only source that proves every key the builder asks for is in the checkpoint with the right
/// shape and dtype and only finite values, and records the keys it saw.
struct CheckedKeys<'a> {
    ck: &'a Checkpoint,
    prefix: &'a str,
    arch: &'a str,
    used: HashSet<String>,
}

impl ParamSource for CheckedKeys<'_> {
    fn fetch(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let (ck, full) = (self.ck, format!("{}{key}", self.prefix));
        let found = ck.shape(&full).ok_or_else(|| Error::Architecture {
            arch: self.arch.to_string(),
            detail: format!("expected tensor '{full}' of shape {shape:?}, found none"),
        })?;
        if found != shape {
            return Err(Error::Architecture {
                arch: self.arch.to_string(),
                detail: format!("tensor '{full}': expected shape {shape:?}, found {found:?}"),
            });
        }
        if !ck.is_float(&full) {
            return Err(Error::Architecture {
                arch: self.arch.to_string(),
                detail: format!(
                    "tensor '{full}': expected dtype F32, F16 or BF16, found {}",
                    ck.dtype(&full).unwrap_or_default()
                ),
            });
        }
        if let Some((i, v)) = ck.first_non_finite(&full) {
            return Err(Error::tensor(
                format!("{}: tensor '{full}'", ck.path().display()),
                "finite values",
                format!("{v} at flat index {i}"),
            ));
        }
        self.used.insert(full);
        Ok(Vec::new())
    }

    fn has_values(&self) -> bool {
        false
    }
}

/// Reads parameters from a checkpoint, turning every mismatch into an architecture error.
struct CheckpointParams<'a> {
    ck: &'a Checkpoint,
    prefix: &'a str,
    arch: &'a str,
}

impl<'a> CheckpointParams<'a> {
    fn new(ck: &'a Checkpoint, prefix: &'a str, arch: &'a str) -> Self {
        CheckpointParams { ck, prefix, arch }
    }
}

impl ParamSource for CheckpointParams<'_> {
    fn fetch(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let full = format!("{}{key}", self.prefix);
        self.ck.tensor_f32(&full, shape).map_err(|e| match e {
            Error::Tensor {
                expected, found, ..
            } => Error::Architecture {
                arch: self.arch.to_string(),
                detail: format!("tensor '{full}': expected {expected}, found {found}"),
            },
            other => other,
        })
    }
}

/// Seeded random parameters keyed by name, so graphs of any size get the same values. Distributions
/// keep activations of order one through any depth: conv weights scaled by fan-in, BatchNorm scales
/// around one, small shifts, variances in [0.5, 2].
struct RandomParams {
    seed: u64,
}

impl ParamSource for RandomParams {
    fn fetch(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let n: usize = shape.iter().product();
        let mut rng = SplitMix::new(self.seed ^ fnv1a(key));
        let uniform = |rng: &mut SplitMix, lo: f32, hi: f32| lo + (hi - lo) * rng.next_f32();
        let values = if key.ends_with("running_var") {
            (0..n).map(|_| uniform(&mut rng, 0.5, 2.0)).collect()
        } else if key.ends_with("running_mean") || key.ends_with("bias") {
            (0..n).map(|_| uniform(&mut rng, -0.1, 0.1)).collect()
        } else if shape.len() == 1 {
            (0..n).map(|_| uniform(&mut rng, 0.5, 1.5)).collect()
        } else {
            let fan_in: usize = shape[1..].iter().product();
            let a = (3.0 / fan_in.max(1) as f32).sqrt();
            (0..n).map(|_| uniform(&mut rng, -a, a)).collect()
        };
        Ok(values)
    }
}

/// FNV-1a hash of a key, to seed each tensor independently.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A tiny deterministic generator (SplitMix64): tests need reproducible values, not cryptography.
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [-1, 1).
    pub fn symmetric(&mut self) -> f32 {
        self.next_f32() * 2.0 - 1.0
    }
}
