//! Backbone mode: a model run that returns feature maps (timm's `features_only=True`) instead of
//! logits, for detectors and segmenters. A features graph has no classifier and stops at its last
//! wanted point, so asking for early features does not run the later layers.
//!
//! [`FeatureExtractor`] is the embedding API: load once, run any batch at any input size the network
//! can take, on the GPU or the CPU reference; it builds one executor per `(batch, height, width)` on
//! first use and reuses it, and its GPU sessions share one copy of the weights ([`DeviceWeights`]).
//!
//! ```no_run
//! use res2net_wgpu::classifier::DeviceChoice;
//! use res2net_wgpu::features::FeatureExtractor;
//! use res2net_wgpu::Model;
//!
//! let model = Model::load("res2net50d.safetensors")?;
//! let backbone = FeatureExtractor::new(model, Some(&[1, 2, 3, 4]), DeviceChoice::Auto)?; // C2-C5
//! let input = vec![0.0f32; 3 * 800 * 1333]; // one normalized [1, 3, 800, 1333] image
//! for map in backbone.run(&input, 1, 800, 1333)? {
//!     println!("{} {:?}", map.point.name, map.shape); // layer1 [1, 256, 200, 334] ...
//! }
//! # Ok::<(), res2net_wgpu::Error>(())
//! ```

use std::sync::Arc;

use crate::arch::FeaturePoint;
use crate::classifier::DeviceChoice;
use crate::cpu;
use crate::error::{Error, Result};
use crate::gpu::{ArenaSlice, DeviceWeights, GpuContext, Precision, Session, SessionOptions};
use crate::graph::{Graph, Outputs};
use crate::model::Model;
use crate::per_shape::{context_for, ByShape};

/// One feature map of a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureMap {
    pub point: FeaturePoint,
    /// `[n, channels, h, w]`.
    pub shape: [usize; 4],
    /// Row-major values.
    pub data: Vec<f32>,
}

/// One feature map of a batch where it lies on the GPU, for work on the same device to bind.
#[derive(Clone, Debug)]
pub struct DeviceFeatureMap {
    pub point: FeaturePoint,
    /// `[n, channels, h, w]`.
    pub shape: [usize; 4],
    /// Valid until the extractor runs this shape again.
    pub slice: ArenaSlice,
}

/// Pairs the graph's feature points with their data (one `batch * numel` vector each, in order).
fn maps(graph: &Graph, batch: usize, data: Vec<Vec<f32>>) -> Result<Vec<FeatureMap>> {
    if data.len() != graph.features.len() {
        return Err(Error::Gpu(format!(
            "expected {} feature maps back, found {}",
            graph.features.len(),
            data.len()
        )));
    }
    Ok(graph
        .features
        .iter()
        .zip(data)
        .map(|(f, data)| {
            let s = graph.shape(f.tensor);
            FeatureMap {
                point: f.point.clone(),
                shape: [batch, s.c, s.h, s.w],
                data,
            }
        })
        .collect())
}

/// The graph's feature maps from the CPU reference.
pub fn cpu_features(graph: &Graph, input: &[f32], batch: usize) -> Result<Vec<FeatureMap>> {
    let mut all = cpu::forward_all(graph, input, batch)?;
    let data = graph
        .features
        .iter()
        .map(|f| std::mem::take(&mut all[f.tensor.0]))
        .collect();
    maps(graph, batch, data)
}

/// The graph's feature maps from a GPU session built for it, read back to host memory.
pub fn gpu_features(session: &Session, graph: &Graph, input: &[f32]) -> Result<Vec<FeatureMap>> {
    let ids: Vec<_> = graph.features.iter().map(|f| f.tensor).collect();
    let data = session.run_tensors(input, &ids)?;
    maps(graph, session.batch(), data)
}

/// A built executor for one `(batch, height, width)`.
enum Executor {
    Cpu(Graph),
    Gpu(Graph, Box<Session>),
}

/// A model used as a backbone: returns the chosen feature points for any batch and input size.
pub struct FeatureExtractor {
    model: Model,
    indices: Vec<usize>,
    /// The model's weights on the GPU, shared by the sessions of every shape.
    weights: Option<Arc<DeviceWeights>>,
    fallback: Option<String>,
    /// What every GPU session is built with (precision, kernel choice, tuning, ...).
    options: SessionOptions,
    executors: ByShape<Executor>,
}

impl FeatureExtractor {
    /// Returns the feature points `out_indices` (timm's indices; the architecture's defaults when
    /// `None`). A bad index list is an input error that lists the valid points. With
    /// [`DeviceChoice::Auto`] and no adapter it runs on the CPU and
    /// [`fallback_reason`](Self::fallback_reason) says why.
    pub fn new(model: Model, out_indices: Option<&[usize]>, device: DeviceChoice) -> Result<Self> {
        let indices = model.config().out_indices(out_indices)?;
        let (gpu, fallback) = context_for(device)?;
        Ok(FeatureExtractor {
            model,
            indices,
            weights: gpu.as_ref().map(DeviceWeights::new),
            fallback,
            options: SessionOptions::default(),
            executors: ByShape::new(),
        })
    }

    /// Runs on a GPU context the caller already owns (see [`GpuContext::from_device`]).
    pub fn with_context(
        model: Model,
        out_indices: Option<&[usize]>,
        ctx: GpuContext,
    ) -> Result<Self> {
        Self::with_weights(model, out_indices, DeviceWeights::new(&ctx))
    }

    /// Runs on the GPU with weights already on the device for this model (another extractor's, or a
    /// [`Classifier`](crate::classifier::Classifier)'s through
    /// [`feature_extractor`](crate::classifier::Classifier::feature_extractor)): no second copy of
    /// the weights is uploaded. Weights of another model are refused at the first run.
    pub fn with_weights(
        model: Model,
        out_indices: Option<&[usize]>,
        weights: Arc<DeviceWeights>,
    ) -> Result<Self> {
        let mut f = Self::new(model, out_indices, DeviceChoice::Cpu)?;
        f.weights = Some(weights);
        Ok(f)
    }

    /// GPU sessions store weights in this precision ([`Precision::F16`] needs `SHADER_F16`).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.options.precision = precision;
        self.executors.clear();
        self
    }

    /// Builds every GPU session with these options (precision, conv kernel, tuning, timeout, ...).
    pub fn with_session_options(mut self, options: SessionOptions) -> Self {
        self.options = options;
        self.executors.clear();
        self
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The feature points every run returns, ascending by index.
    pub fn points(&self) -> Vec<FeaturePoint> {
        let all = self.model.config().feature_points();
        self.indices.iter().map(|&i| all[i].clone()).collect()
    }

    /// Whether work runs on a GPU.
    pub fn on_gpu(&self) -> bool {
        self.weights.is_some()
    }

    /// Bytes of the model's weight buffers on the GPU (0 on the CPU): one copy however many input
    /// sizes have run.
    pub fn gpu_weight_bytes(&self) -> u64 {
        self.weights.as_ref().map_or(0, |w| w.bytes())
    }

    /// Why [`DeviceChoice::Auto`] fell back to the CPU, if it did.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// The graph for one input size (BatchNorm folded, no classifier).
    pub fn graph(&self, h: usize, w: usize) -> Result<Graph> {
        self.model
            .graph_with(h, w, &Outputs::features(&self.indices))
    }

    fn executor(&self, batch: usize, h: usize, w: usize) -> Result<Arc<Executor>> {
        self.executors.get_or_build((batch, h, w), || {
            let graph = self.graph(h, w)?;
            let Some(weights) = &self.weights else {
                return Ok(Executor::Cpu(graph));
            };
            let session = Session::for_weights(weights, &graph, batch, &self.options)?;
            Ok(Executor::Gpu(graph, Box::new(session)))
        })
    }

    /// The feature maps of a normalized `[batch, 3, h, w]` tensor, left on the GPU: slices of the
    /// session's activation buffer that the caller's own work on the same device can bind without a
    /// copy, valid until this extractor runs the same `(batch, h, w)` again. An error on the CPU.
    pub fn run_on_device(
        &self,
        input: &[f32],
        batch: usize,
        h: usize,
        w: usize,
    ) -> Result<Vec<DeviceFeatureMap>> {
        let executor = self.executor(batch, h, w)?;
        let Executor::Gpu(graph, session) = &*executor else {
            return Err(Error::Config(
                "feature maps on the device need a GPU; this extractor runs on the CPU".into(),
            ));
        };
        session.run(input)?;
        graph
            .features
            .iter()
            .map(|f| {
                let s = graph.shape(f.tensor);
                Ok(DeviceFeatureMap {
                    point: f.point.clone(),
                    shape: [batch, s.c, s.h, s.w],
                    slice: session.output_slice(f.tensor)?,
                })
            })
            .collect()
    }

    /// The `[n, channels, h, w]` shape of each feature map [`run`](Self::run) returns for this batch
    /// and input size, in the order of [`points`](Self::points), without running anything: it builds
    /// (and keeps for the run) the executor of that shape. An input the network cannot take is an
    /// error, as it is for a run.
    pub fn shapes(&self, batch: usize, h: usize, w: usize) -> Result<Vec<[usize; 4]>> {
        let executor = self.executor(batch, h, w)?;
        let (Executor::Cpu(graph) | Executor::Gpu(graph, _)) = &*executor;
        Ok(graph
            .features
            .iter()
            .map(|f| {
                let s = graph.shape(f.tensor);
                [batch, s.c, s.h, s.w]
            })
            .collect())
    }

    /// The feature maps of a normalized `[batch, 3, h, w]` tensor, in host memory.
    pub fn run(&self, input: &[f32], batch: usize, h: usize, w: usize) -> Result<Vec<FeatureMap>> {
        match &*self.executor(batch, h, w)? {
            Executor::Cpu(graph) => cpu_features(graph, input, batch),
            Executor::Gpu(graph, session) => gpu_features(session, graph, input),
        }
    }
}
