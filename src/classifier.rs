//! The embedding API: load once, classify many. Owns the model, its preprocessing and labels, and an
//! executor (GPU session or CPU reference) per input shape, built on first use and reused. Never prints:
//! a CPU fallback is reported through [`Classifier::fallback_reason`].

use std::sync::Arc;

use crate::cam;
use crate::cpu::{self, Output};
use crate::error::{Error, Result};
use crate::features::FeatureExtractor;
use crate::gpu::{DeviceWeights, GpuContext, Precision, Session, SessionOptions};
use crate::graph::Graph;
use crate::labels;
use crate::model::Model;
use crate::per_shape::{context_for, ByShape};
use crate::preprocess::{Preprocess, RgbPlanes};

/// Where to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The CPU reference executor.
    Cpu,
    /// A GPU adapter; an error when there is none.
    Gpu,
    /// A GPU when an adapter exists, else the CPU.
    Auto,
}

/// One class of a prediction.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub class: usize,
    pub label: String,
    pub prob: f32,
}

/// An output with each image's class activation map of its top class.
pub struct CamOutput {
    pub out: Output,
    /// One `[h, w]` map per image, values in [0, 1].
    pub maps: Vec<Vec<f32>>,
    /// `(h, w)` of the maps: the last feature map's size.
    pub map_size: (usize, usize),
}

/// A built executor for one `(batch, height, width)`.
enum Prepared {
    Cpu(Graph),
    Gpu(Graph, Box<Session>),
}

/// A model ready to classify images or run tensors, on the GPU or the CPU.
pub struct Classifier {
    model: Model,
    preprocess: Preprocess,
    labels: Vec<String>,
    gpu: Option<GpuContext>,
    /// The model's weights on the GPU, shared by the sessions of every shape.
    weights: Option<Arc<DeviceWeights>>,
    fallback: Option<String>,
    /// What every GPU session is built with (precision, kernel choice, tuning, ...).
    options: SessionOptions,
    prepared: ByShape<Prepared>,
}

impl Classifier {
    /// A classifier on the chosen device. With [`DeviceChoice::Auto`] and no adapter it runs on the
    /// CPU and [`fallback_reason`](Self::fallback_reason) says why.
    pub fn new(model: Model, device: DeviceChoice) -> Result<Self> {
        let (gpu, fallback) = context_for(device)?;
        Self::build(model, gpu, fallback)
    }

    /// A classifier on a GPU context the caller already owns (see [`GpuContext::from_device`]).
    pub fn with_context(model: Model, ctx: GpuContext) -> Result<Self> {
        Self::build(model, Some(ctx), None)
    }

    fn build(model: Model, gpu: Option<GpuContext>, fallback: Option<String>) -> Result<Self> {
        let meta = model.metadata();
        let preprocess = Preprocess::from_metadata(&meta)?.unwrap_or_else(Preprocess::imagenet);
        let labels = labels::class_names(&meta, model.config().num_classes)?;
        Ok(Classifier {
            model,
            preprocess,
            labels,
            weights: gpu.as_ref().map(DeviceWeights::new),
            gpu,
            fallback,
            options: SessionOptions::default(),
            prepared: ByShape::new(),
        })
    }

    /// Runs GPU sessions with this weight precision ([`Precision::F16`] needs the adapter's
    /// `SHADER_F16`; without it the first run fails with an error naming the feature). The CPU
    /// reference always runs in f32.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.options.precision = precision;
        self.prepared.clear();
        self
    }

    /// Builds every GPU session with these options (precision, conv kernel, tuning, timeout, ...).
    pub fn with_session_options(mut self, options: SessionOptions) -> Self {
        self.options = options;
        self.prepared.clear();
        self
    }

    /// The same model as a backbone returning the feature points `out_indices` (timm's indices; the
    /// architecture's defaults when `None`), on this classifier's device with its session options.
    /// On a GPU it shares this classifier's weights: no second copy is uploaded.
    pub fn feature_extractor(&self, out_indices: Option<&[usize]>) -> Result<FeatureExtractor> {
        let model = self.model.clone();
        let extractor = match &self.weights {
            Some(weights) => FeatureExtractor::with_weights(model, out_indices, weights.clone())?,
            None => FeatureExtractor::new(model, out_indices, DeviceChoice::Cpu)?,
        };
        Ok(extractor.with_session_options(self.options.clone()))
    }

    /// Bytes of the model's weight buffers on the GPU (0 on the CPU): one copy per layout and
    /// precision, however many input shapes the classifier has run.
    pub fn gpu_weight_bytes(&self) -> u64 {
        self.weights.as_ref().map_or(0, |w| w.bytes())
    }

    /// The weight precision of GPU sessions.
    pub fn precision(&self) -> Precision {
        self.options.precision
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn preprocess(&self) -> &Preprocess {
        &self.preprocess
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Whether work runs on a GPU.
    pub fn on_gpu(&self) -> bool {
        self.gpu.is_some()
    }

    /// The adapter's description, or "cpu".
    pub fn device_name(&self) -> String {
        self.gpu
            .as_ref()
            .map_or_else(|| "cpu".into(), GpuContext::describe)
    }

    /// Why [`DeviceChoice::Auto`] fell back to the CPU, if it did.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// The executor for a shape, built on first use.
    fn prepared(&self, batch: usize, h: usize, w: usize) -> Result<Arc<Prepared>> {
        self.prepared.get_or_build((batch, h, w), || {
            let graph = self.model.graph(h, w)?;
            Ok(match &self.weights {
                Some(weights) => {
                    let session = Session::for_weights(weights, &graph, batch, &self.options)?;
                    Prepared::Gpu(graph, Box::new(session))
                }
                None => Prepared::Cpu(graph),
            })
        })
    }

    /// Runs a normalized `[batch, 3, h, w]` tensor.
    pub fn run_tensor(&self, input: &[f32], batch: usize, h: usize, w: usize) -> Result<Output> {
        match &*self.prepared(batch, h, w)? {
            Prepared::Cpu(graph) => cpu::forward(graph, input, batch),
            Prepared::Gpu(_, session) => session.run(input),
        }
    }

    /// [`run_tensor`](Self::run_tensor) without blocking the caller's thread on the GPU.
    pub async fn run_tensor_async(
        &self,
        input: &[f32],
        batch: usize,
        h: usize,
        w: usize,
    ) -> Result<Output> {
        match &*self.prepared(batch, h, w)? {
            Prepared::Cpu(graph) => cpu::forward(graph, input, batch),
            Prepared::Gpu(_, session) => session.run_async(input).await,
        }
    }

    /// Runs a tensor and returns, with the output, each image's class activation map of its top class
    /// (`[h, w]` values in [0, 1]) and the map's size.
    pub fn run_with_cam(
        &self,
        input: &[f32],
        batch: usize,
        h: usize,
        w: usize,
    ) -> Result<CamOutput> {
        let prepared = self.prepared(batch, h, w)?;
        let graph = match &*prepared {
            Prepared::Cpu(g) | Prepared::Gpu(g, _) => g,
        };
        let head = graph
            .head
            .ok_or_else(|| Error::Config("the classifier's graph has no head".into()))?;
        let ids = [head.logits, head.probs, head.last_map];
        let tensors = match &*prepared {
            Prepared::Cpu(_) => {
                let mut all = cpu::forward_all(graph, input, batch)?;
                ids.iter().map(|t| std::mem::take(&mut all[t.0])).collect()
            }
            Prepared::Gpu(_, session) => session.run_tensors(input, &ids)?,
        };
        let [logits, probs, features]: [Vec<f32>; 3] = tensors
            .try_into()
            .map_err(|_| Error::Gpu("expected logits, probs and features back".into()))?;
        let out = Output {
            batch,
            classes: graph.num_classes(),
            logits,
            probs,
        };
        let fs = graph.shape(head.last_map);
        let maps = (0..batch)
            .map(|n| {
                let class = out.top_k(n, 1)[0].0;
                cam::class_activation_map(
                    graph,
                    &features[n * fs.numel()..(n + 1) * fs.numel()],
                    class,
                )
            })
            .collect::<Result<_>>()?;
        Ok(CamOutput {
            out,
            maps,
            map_size: (fs.h, fs.w),
        })
    }

    /// Preprocesses images into one input batch.
    pub fn to_tensor(&self, images: &[RgbPlanes]) -> Vec<f32> {
        images
            .iter()
            .flat_map(|img| self.preprocess.apply(img))
            .collect()
    }

    /// Classifies a batch of images; returns the top `k` classes of each.
    pub fn classify(&self, images: &[RgbPlanes], k: usize) -> Result<Vec<Vec<Prediction>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let [h, w] = self.preprocess.input_size;
        let out = self.run_tensor(&self.to_tensor(images), images.len(), h, w)?;
        Ok(self.top_k(&out, k))
    }

    /// The top `k` predictions of every image of an output.
    pub fn top_k(&self, out: &Output, k: usize) -> Vec<Vec<Prediction>> {
        (0..out.batch)
            .map(|n| {
                out.top_k(n, k)
                    .into_iter()
                    .map(|(class, prob)| Prediction {
                        class,
                        label: self.labels[class].clone(),
                        prob,
                    })
                    .collect()
            })
            .collect()
    }
}
