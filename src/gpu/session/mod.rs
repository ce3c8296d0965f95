//! A session: one graph at one batch size, ready to run on a device.
//!
//! Everything is created up front (the activation arena, one uniform buffer, every bind group, the
//! input and readback buffers), over pipelines and weight buffers that belong to the device and the
//! model ([`DeviceWeights`]), so sessions for other batch or input sizes share them. A run is: write
//! the input, record one command buffer from a [`Recording`](record::Recording) (the list of copies
//! and compute passes of that kind of run, made once), submit once, read back. Runs may come from
//! several threads: writing the input and submitting happen under one lock (the GPU runs
//! submissions in order, so each run reads its own input), and readback buffers come from a small
//! pool.
//!
//! When the activations of the whole batch do not fit one storage binding, the batch is split into
//! chunks that do; each chunk replays the same dispatches (same bind groups, z = images in the chunk)
//! inside the same command buffer.
//!
//! - `build`: options, chunking, uniforms, bind groups.
//! - `record`: recordings as data, and the one encoder that turns them into command buffers.
//! - `profile`: per-op times, with timestamp queries or submit by submit.

mod build;
mod profile;
mod record;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::autotune::{Tune, TuneReport};
use super::context::GpuContext;
use super::host_clock::{HostCost, Stopwatch};
use super::kernels::Slot;
use super::lower::TextureInput;
use super::pipeline_cache::PipelineCacheReport;
use super::pipeline_cache::PipelineCacheSetting;
use super::plan::ArenaPlan;
use super::readback::{self, Readback};
use super::tune::{ConvKernel, Precision};
use super::upload::UploadPool;
use super::weights::DeviceWeights;
use crate::error::{Error, Result};
use crate::executor::{self, Output};
use crate::graph::{Shape, TensorId};

pub use build::pipeline_keys;
pub(crate) use build::{buffer_with, check_size};
use record::Recording;

/// How long a run may take before it fails instead of hanging.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Knobs of a session beyond the graph and the batch size.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// How long a run may take before it returns an error instead of waiting on.
    pub timeout: Duration,
    /// At most this many images per chunk; `None` lets the device's buffer limits decide.
    pub max_chunk: Option<usize>,
    /// Where compiled pipelines are cached between processes (Vulkan).
    pub pipeline_cache: PipelineCacheSetting,
    /// Which conv kernel family to use (tests force each one; `Auto` picks per adapter).
    pub conv_kernel: ConvKernel,
    /// With a forced `conv_kernel`, the tile it runs the convs it offers this tile for (the others
    /// take its rule's): for the texture families (output channels per block, pixels or texels
    /// per lane), for the workgroup-tiled ones (output pixels, output channels). The tuner times
    /// tiles this way; `None` keeps every family's rule. A tile with `ConvKernel::Auto` is refused.
    pub conv_tile: Option<(usize, usize)>,
    /// The number format of the weights ([`Precision::F16`] needs `Features::SHADER_F16`).
    pub precision: Precision,
    /// Whether conv families are timed on this adapter ([`Tune::Auto`] by default, or what
    /// `RES2NET_TUNE` says); the choice of a forced `conv_kernel` always wins.
    pub tune: Tune,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            timeout: DEFAULT_TIMEOUT,
            max_chunk: None,
            pipeline_cache: PipelineCacheSetting::Default,
            conv_kernel: ConvKernel::Auto,
            conv_tile: None,
            precision: Precision::F32,
            tune: Tune::from_env(),
        }
    }
}

/// What building the session cost, and what the pipeline cache did.
#[derive(Clone, Debug, Default)]
pub struct BuildStats {
    /// Host time creating the shader modules and pipelines this session needed that the device did
    /// not have yet (driver compilation included); zero when every one existed.
    pub pipelines: Duration,
    /// Pipelines created for this session (the rest were shared).
    pub pipelines_created: usize,
    pub pipeline_cache: PipelineCacheReport,
    /// What the autotuner did (its time is not part of `pipelines`).
    pub tuning: TuneReport,
}

/// One recorded dispatch.
struct Dispatch {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    groups: (u32, u32),
    /// The graph node it belongs to.
    node: usize,
    /// Views copied into the session's input textures before it runs.
    inputs: Vec<TextureInput>,
}

/// A graph node, for profiles.
struct OpInfo {
    name: String,
    kind: String,
    kernel: String,
    /// Floating-point operations per image (0 for pools, softmax, ...).
    flops: u64,
}

/// What the session remembers of its graph (not the weights: those live on the GPU).
struct GraphInfo {
    input: TensorId,
    /// The tensors a plain run reads back: logits, then probabilities; none for a features-only
    /// graph (no head), whose maps come back through [`Session::run_tensors`].
    outputs: Vec<TensorId>,
    /// Per-image element count of every tensor.
    numel: Vec<usize>,
    input_shape: Shape,
    classes: usize,
    total_activation_elems: usize,
}

/// A graph ready to run on a GPU for a fixed batch size.
pub struct Session {
    ctx: GpuContext,
    weights: Arc<DeviceWeights>,
    graph: GraphInfo,
    batch: usize,
    chunk: usize,
    plan: ArenaPlan,
    arena: wgpu::Buffer,
    /// The input textures of the texture families, by slot (see `gpu::texture`).
    textures: BTreeMap<Slot, wgpu::Texture>,
    /// Every dispatch of a chunk, in order (one or more per graph node).
    dispatches: Vec<Dispatch>,
    ops: Vec<OpInfo>,
    pipeline_count: usize,
    timeout: Duration,
    /// Mapped buffers a run copies its input into (the usual path).
    uploads: UploadPool,
    /// Where `queue.write_buffer` puts the input when no upload buffer is free: the whole batch when
    /// it does not fit the arena at once (chunked runs), else `None` for its arena slot.
    input_buffer: Option<wgpu::Buffer>,
    /// Held from writing the input to submitting, so that concurrent runs never mix inputs.
    submit_lock: Mutex<()>,
    /// The recording of a plain run (inputs in, outputs out).
    plain: Recording,
    /// Idle readback buffer sets of plain runs; a run takes one (or makes one when all are in
    /// flight).
    staging_pool: Mutex<Vec<Vec<wgpu::Buffer>>>,
    build: BuildStats,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("device", &self.ctx)
            .field("batch", &self.batch)
            .field("chunk", &self.chunk)
            .field("dispatches", &self.dispatch_count())
            .field("pipelines", &self.pipeline_count)
            .field("activation_bytes_peak", &self.activation_bytes_peak())
            .finish()
    }
}

/// Where an output of the last run sits in the session's activation buffer: work of the caller's own
/// on the same device can bind it directly, without a copy, until the session runs again. The data is
/// `[batch, C, H, W]` f32, row-major.
#[derive(Clone, Debug)]
pub struct ArenaSlice {
    pub buffer: wgpu::Buffer,
    /// Byte offset into `buffer` (a multiple of 256).
    pub offset: u64,
    /// Bytes.
    pub size: u64,
}

impl Session {
    /// The slice of the activation buffer holding output `t` (a feature point, the logits or the
    /// probabilities) after a run. Refused for a tensor later ops overwrite, and for a batch the
    /// session runs in chunks (the buffer holds one chunk at a time): read those back with
    /// [`run_tensors`](Self::run_tensors).
    pub fn output_slice(&self, t: TensorId) -> Result<ArenaSlice> {
        if self.chunk < self.batch {
            return Err(Error::Gpu(format!(
                "the batch of {} runs in chunks of {}, so no buffer holds all of an output; read it back with run_tensors",
                self.batch, self.chunk
            )));
        }
        // Plan steps: 0 = upload, i + 1 = graph node i, then the end of the run.
        let end = self.ops.len() + 1;
        let live = self.plan.live.get(t.0).copied().flatten();
        match (live, self.plan.offset(t)) {
            (Some(iv), Some(offset)) if iv.last == end => Ok(ArenaSlice {
                buffer: self.arena.clone(),
                offset: offset * 4,
                size: (self.batch * self.graph.numel[t.0] * 4) as u64,
            }),
            _ => Err(Error::input(
                "tensor",
                "an output of the graph (a feature point, logits or probabilities)",
                format!("tensor {}, which later ops overwrite", t.0),
            )),
        }
    }

    /// What building the session cost (pipeline creation time) and what the pipeline cache did.
    pub fn build_stats(&self) -> &BuildStats {
        &self.build
    }

    /// Sets how long a run may take before it returns an error.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Images per run.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Images per chunk (equal to [`batch`](Self::batch) unless the activations had to be split).
    pub fn chunk(&self) -> usize {
        self.chunk
    }

    /// Bytes of the activation arena: the peak activation memory of a run.
    pub fn activation_bytes_peak(&self) -> u64 {
        self.plan.arena_bytes()
    }

    /// The smallest arena any placement could achieve (largest set of tensors live at once), in bytes.
    pub fn activation_bytes_lower_bound(&self) -> u64 {
        self.plan.lower_bound_elems * 4
    }

    /// Bytes all activations of a chunk would take without reuse (input excluded).
    pub fn activation_bytes_total(&self) -> u64 {
        (self.graph.total_activation_elems * self.chunk * 4) as u64
    }

    /// Compute dispatches per run (every op, every chunk).
    pub fn dispatch_count(&self) -> usize {
        self.dispatches.len() * self.batch.div_ceil(self.chunk)
    }

    /// Distinct compute pipelines the session uses.
    pub fn pipeline_count(&self) -> usize {
        self.pipeline_count
    }

    /// The device the session runs on.
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// The model's weight buffers this session reads (shared with the model's other sessions).
    pub fn weights(&self) -> &Arc<DeviceWeights> {
        &self.weights
    }

    /// The pipeline each graph node runs, in graph order (`conv_gemm32.wgsl:conv_gemm_32[...]`).
    pub fn kernels(&self) -> Vec<&str> {
        self.ops.iter().map(|o| o.kernel.as_str()).collect()
    }

    /// How many ops run each kernel (shader file and entry point, without constants), most used
    /// first: which families the rule or the tuner chose.
    pub fn kernel_counts(&self) -> Vec<(String, usize)> {
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for op in &self.ops {
            let kernel = op
                .kernel
                .split(" + ")
                .map(|k| k.split('[').next().unwrap_or(k))
                .collect::<Vec<_>>()
                .join(" + ");
            *counts.entry(kernel).or_default() += 1;
        }
        let mut counts: Vec<_> = counts.into_iter().collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        counts
    }

    fn check_len(&self, input: &[f32]) -> Result<()> {
        if input.len() != self.batch * self.graph.input_shape.numel() {
            return Err(executor::wrong_input_len(
                self.graph.input_shape,
                self.batch,
                input.len(),
            ));
        }
        Ok(())
    }

    fn check_input(&self, input: &[f32]) -> Result<()> {
        self.check_len(input)?;
        // A branch-free pass first (vectorised), the position only when something is wrong.
        let all_finite = input
            .chunks(4096)
            .all(|c| c.iter().fold(true, |ok, v| ok & v.is_finite()));
        if all_finite {
            Ok(())
        } else {
            Err(executor::non_finite_input(self.graph.input_shape, input))
        }
    }

    /// Runs the network on `input` (`[batch, 3, H, W]`, row-major), blocking until the results are
    /// back or the timeout passes.
    pub fn run(&self, input: &[f32]) -> Result<Output> {
        let (submission, readback, scopes) = self.submit(input, &self.plain, None, None)?;
        pollster::block_on(scopes)?;
        readback::wait(self.ctx.device(), submission, &readback, self.timeout)?;
        self.output(readback)
    }

    /// [`run`](Self::run), also returning what the forward pass cost the calling thread before it
    /// could wait for the GPU: checking and copying the input, then recording and submitting.
    pub fn run_timed(&self, input: &[f32]) -> Result<(Output, HostCost)> {
        let mut watch = Stopwatch::start();
        let mut input_time = Duration::ZERO;
        let (submission, readback, scopes) = self.submit(
            input,
            &self.plain,
            None,
            Some((&mut watch, &mut input_time)),
        )?;
        let cost = HostCost {
            input: input_time,
            record_submit: watch.lap(),
            wall: watch.wall(),
            clock: watch.clock(),
        };
        pollster::block_on(scopes)?;
        readback::wait(self.ctx.device(), submission, &readback, self.timeout)?;
        Ok((self.output(readback)?, cost))
    }

    /// The same as [`run`](Self::run) without blocking: the future polls the device each time it is
    /// polled (and re-schedules itself until the GPU is done), so no other thread needs to drive it.
    pub async fn run_async(&self, input: &[f32]) -> Result<Output> {
        let (_, readback, scopes) = self.submit(input, &self.plain, None, None)?;
        scopes.await?;
        readback::wait_async(self.ctx.device(), &readback, self.timeout).await?;
        self.output(readback)
    }

    /// Runs the network and returns the data of every tensor (indexed by [`TensorId`], each
    /// `batch * numel` long, like [`crate::cpu::forward_all`]); tensors no op touches are zero.
    pub fn run_all(&self, input: &[f32]) -> Result<Vec<Vec<f32>>> {
        let all: Vec<TensorId> = (0..self.graph.numel.len()).map(TensorId).collect();
        self.run_tensors(input, &all)
    }

    /// Runs the network and returns the data of the given tensors (each `batch * numel` long), copied
    /// out of the arena at the end of each one's lifetime.
    pub fn run_tensors(&self, input: &[f32], tensors: &[TensorId]) -> Result<Vec<Vec<f32>>> {
        for t in tensors {
            if t.0 >= self.graph.numel.len() {
                return Err(Error::input(
                    "tensor",
                    format!("an id below {}", self.graph.numel.len()),
                    t.0.to_string(),
                ));
            }
        }
        let recording = self.recording(tensors, false);
        let (submission, readback, scopes) = self.submit(input, &recording, None, None)?;
        pollster::block_on(scopes)?;
        readback::wait(self.ctx.device(), submission, &readback, self.timeout)?;
        let mut data: Vec<Option<Vec<f32>>> = readback
            .into_iter()
            .map(|r| r.into_f32().map(Some))
            .collect::<Result<_>>()?;
        let mut results: Vec<Vec<f32>> = Vec::with_capacity(tensors.len());
        for t in tensors {
            let values = match recording.slots.iter().position(|s| s == t) {
                // A tensor asked for twice: the first answer was moved out; copy it.
                Some(i) => match data[i].take() {
                    Some(v) => v,
                    None => results[tensors.iter().position(|u| u == t).unwrap_or(0)].clone(),
                },
                None => vec![0.0; self.batch * self.graph.numel[t.0]],
            };
            results.push(values);
        }
        Ok(results)
    }

    /// Logits and probabilities of a plain run's readbacks; the buffers go back to the pool.
    fn output(&self, readback: Vec<Readback>) -> Result<Output> {
        let mut data = Vec::with_capacity(2);
        let mut buffers = Vec::with_capacity(2);
        for r in readback {
            data.push(r.read_f32()?);
            buffers.push(r.buffer().clone());
        }
        // Read and unmapped: ready for the next run.
        if let Ok(mut pool) = self.staging_pool.lock() {
            pool.push(buffers);
        }
        if self.graph.outputs.is_empty() {
            return Ok(Output {
                batch: self.batch,
                classes: 0,
                logits: Vec::new(),
                probs: Vec::new(),
            });
        }
        let n = self.batch * self.graph.classes;
        let mut data = data.into_iter();
        let (Some(mut logits), Some(mut probs)) = (data.next(), data.next()) else {
            return Err(Error::Gpu("expected logits and probabilities back".into()));
        };
        if logits.len() < n || probs.len() < n {
            return Err(Error::Gpu(format!(
                "read back {} and {} values, expected {n} each",
                logits.len(),
                probs.len()
            )));
        }
        logits.truncate(n);
        probs.truncate(n);
        Ok(Output {
            batch: self.batch,
            classes: self.graph.classes,
            logits,
            probs,
        })
    }
}
