//! A session: one graph at one batch size on one device, ready to run.
//!
//! Everything is created up front (pipelines, the activation arena, parameter buffers, one uniform
//! buffer, every bind group, the input buffer and a readback buffer) and never changed afterwards, so
//! a run is: write the input (`queue.write_buffer`), record one command buffer with every dispatch,
//! submit once, read back. Runs may come from several threads: writing the input and submitting
//! happen under one lock (the GPU runs submissions in order, so each run reads its own input), and
//! readback buffers come from a small pool (one per run in flight).
//!
//! When the activations of the whole batch do not fit one storage binding, the batch is split into
//! chunks that do; each chunk replays the same dispatches (same bind groups, z = images in the chunk)
//! inside the same command buffer.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::context::{ErrorScopes, GpuContext};
use super::host_clock::{HostCost, Stopwatch};
use super::kernels::Kernels;
use super::lower::{lower, Lowered};
use super::pipeline_cache::{DiskPipelineCache, PipelineCacheReport, PipelineCacheSetting};
use super::plan::{plan, ArenaPlan, Interval};
use super::profile::{op_kind, OpTime, Profile, ProfileSource, Timestamps};
use super::readback::{self, Readback};
use super::tune::{ConvKernel, ConvPolicy, Precision};
use super::upload::{Upload, UploadPool};
use crate::cpu::{self, Output};
use crate::error::{Error, Result};
use crate::graph::{Graph, Head, Shape, TensorId};

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
    /// The number format of the weights ([`Precision::F16`] needs `Features::SHADER_F16`).
    pub precision: Precision,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            timeout: DEFAULT_TIMEOUT,
            max_chunk: None,
            pipeline_cache: PipelineCacheSetting::Default,
            conv_kernel: ConvKernel::Auto,
            precision: Precision::F32,
        }
    }
}

/// What building the session cost, and what the pipeline cache did.
#[derive(Clone, Debug, Default)]
pub struct BuildStats {
    /// Host time creating shader modules and pipelines (driver compilation included).
    pub pipelines: Duration,
    pub pipeline_cache: PipelineCacheReport,
}

/// One recorded dispatch.
struct Step {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    groups: (u32, u32),
    /// The graph node it belongs to.
    node: usize,
}

/// A graph node, for profiles.
struct OpInfo {
    name: String,
    kind: String,
    kernel: String,
}

/// What the session remembers of its graph (not the weights: those live on the GPU).
struct GraphInfo {
    input: TensorId,
    /// Logits and probabilities; `None` for a features-only graph (its runs read back no classes).
    head: Option<Head>,
    /// Per-image element count of every tensor.
    numel: Vec<usize>,
    input_dims: [usize; 3],
    classes: usize,
    total_activation_elems: usize,
}

/// A graph ready to run on a GPU for a fixed batch size.
pub struct Session {
    ctx: GpuContext,
    graph: GraphInfo,
    batch: usize,
    chunk: usize,
    plan: ArenaPlan,
    arena: wgpu::Buffer,
    steps: Vec<Step>,
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
    /// Idle logits+probs readback buffers; a run takes one (or makes one when all are in flight).
    staging_pool: Mutex<Vec<wgpu::Buffer>>,
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

/// Picks the images per chunk: the whole batch if its arena fits one storage binding and one buffer,
/// else the most that do.
fn choose_chunk(
    graph: &Graph,
    batch: usize,
    max_chunk: Option<usize>,
    limits: &wgpu::Limits,
) -> Result<(usize, ArenaPlan)> {
    let max_bytes = limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size);
    let max_z = limits.max_compute_workgroups_per_dimension.max(1) as usize;
    let mut chunk = batch.min(max_z).min(max_chunk.unwrap_or(usize::MAX)).max(1);
    let mut p = plan(graph, chunk);
    while p.arena_bytes() > max_bytes {
        if chunk == 1 {
            let s = graph.input_shape();
            return Err(Error::Gpu(format!(
                "one {}x{} image needs {:.1} MiB of activations, more than this device binds at once \
                 (max_storage_buffer_binding_size {:.1} MiB, max_buffer_size {:.1} MiB); use a smaller input size",
                s.h,
                s.w,
                p.arena_bytes() as f64 / 1048576.0,
                limits.max_storage_buffer_binding_size as f64 / 1048576.0,
                limits.max_buffer_size as f64 / 1048576.0,
            )));
        }
        let per_image = p.arena_bytes().div_ceil(chunk as u64).max(1);
        let fit = (max_bytes / per_image) as usize;
        chunk = fit.clamp(1, chunk - 1);
        p = plan(graph, chunk);
    }
    Ok((chunk, p))
}

/// A buffer filled with `data`, without wgpu's panicking `create_buffer_init`.
fn buffer_with(
    device: &wgpu::Device,
    label: &str,
    usage: wgpu::BufferUsages,
    data: &[u8],
) -> Result<wgpu::Buffer> {
    let size = (data.len() as u64)
        .div_ceil(wgpu::COPY_BUFFER_ALIGNMENT)
        .max(1)
        * wgpu::COPY_BUFFER_ALIGNMENT;
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage,
        mapped_at_creation: true,
    });
    {
        let mut view = buffer.get_mapped_range_mut(..).map_err(|e| {
            Error::Gpu(format!("could not fill buffer {label} ({size} bytes): {e}"))
        })?;
        let mut padded = data.to_vec();
        padded.resize(size as usize, 0);
        view.copy_from_slice(&padded);
    }
    buffer.unmap();
    Ok(buffer)
}

fn check_size(what: &str, bytes: u64, limit: u64, limit_name: &str) -> Result<()> {
    if bytes > limit {
        return Err(Error::Gpu(format!(
            "{what} needs {bytes} bytes in one buffer, more than this device's {limit_name} ({limit} bytes)"
        )));
    }
    Ok(())
}

impl Session {
    /// Builds a session for `graph` at `batch` images per run: compiles pipelines, places activations,
    /// uploads weights. Blocks while the driver compiles shaders.
    pub fn new(ctx: &GpuContext, graph: &Graph, batch: usize) -> Result<Self> {
        Self::with_options(ctx, graph, batch, &SessionOptions::default())
    }

    /// [`Session::new`] with explicit options.
    pub fn with_options(
        ctx: &GpuContext,
        graph: &Graph,
        batch: usize,
        options: &SessionOptions,
    ) -> Result<Self> {
        ctx.check_health()?;
        if batch == 0 {
            return Err(Error::input(
                "batch",
                "at least one image",
                "an empty batch",
            ));
        }
        if !graph.has_weights {
            return Err(Error::Config(
                "cannot run a shape-only graph: it has no weights".into(),
            ));
        }
        let device = ctx.device();
        let limits = device.limits();
        if limits.max_storage_buffers_per_shader_stage < 2 {
            return Err(Error::Gpu(format!(
                "the kernels bind 2 storage buffers per stage; this device allows {}",
                limits.max_storage_buffers_per_shader_stage
            )));
        }
        let head = graph
            .head
            .map(|h| [("logits", h.logits), ("probs", h.probs)]);
        for (what, t) in [("input", graph.input)]
            .into_iter()
            .chain(head.into_iter().flatten())
        {
            let Some(info) = graph.tensors.get(t.0) else {
                return Err(Error::Config(format!(
                    "graph {what} names tensor {} which does not exist",
                    t.0
                )));
            };
            let s = info.shape;
            if what == "input" {
                continue;
            }
            if s.h != 1 || s.w != 1 || s.c != graph.num_classes() {
                return Err(Error::Config(format!(
                    "graph {what} tensor is [{}, {}, {}], expected [{}, 1, 1]",
                    s.c,
                    s.h,
                    s.w,
                    graph.num_classes()
                )));
            }
        }
        let (chunk, plan) = choose_chunk(graph, batch, options.max_chunk, &limits)?;
        if options.precision == Precision::F16
            && !device.features().contains(wgpu::Features::SHADER_F16)
        {
            return Err(Error::Gpu(format!(
                "f16 precision needs the adapter feature SHADER_F16 (WGSL `enable f16`), which {} does not offer; use f32",
                ctx.describe()
            )));
        }
        let conv_policy = ConvPolicy::new(ctx, options.conv_kernel, options.precision);
        let lowered: Vec<Lowered> = graph
            .nodes
            .iter()
            .map(|n| lower(graph, n, &plan, &conv_policy))
            .collect::<Result<_>>()?;
        let max_groups = limits.max_compute_workgroups_per_dimension;
        for (node, l) in graph.nodes.iter().zip(&lowered) {
            if l.groups.0 > max_groups || l.groups.1 > max_groups {
                return Err(Error::Gpu(format!(
                    "{} needs {}x{} workgroups, more than this device's max_compute_workgroups_per_dimension ({max_groups})",
                    node.name, l.groups.0, l.groups.1
                )));
            }
        }
        let io_bytes = |t: TensorId| (batch * graph.shape(t).numel() * 4) as u64;
        check_size(
            "the input batch",
            io_bytes(graph.input),
            limits.max_buffer_size,
            "max_buffer_size",
        )?;

        let out_bytes = graph.head.map_or(0, |h| 2 * io_bytes(h.logits));
        check_size(
            "the logits+probs readback",
            out_bytes,
            limits.max_buffer_size,
            "max_buffer_size",
        )?;

        let scopes = ErrorScopes::push(device);
        let (disk_cache, cache_report) =
            DiskPipelineCache::open(device, ctx.adapter_info(), &options.pipeline_cache);
        let built = Self::create(
            ctx,
            graph,
            &plan,
            &lowered,
            &limits,
            disk_cache.as_ref().map(DiskPipelineCache::cache),
        );
        let input_buffer = (chunk < batch).then(|| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("input"),
                size: io_bytes(graph.input).max(4),
                usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        });
        let staging = staging_buffer(device, "logits+probs", out_bytes);
        pollster::block_on(scopes.pop("building the session"))?;
        let (arena, steps, pipeline_count, pipelines_time) = built?;
        ctx.check_health()?;
        let mut build = BuildStats {
            pipelines: pipelines_time,
            pipeline_cache: cache_report,
        };
        if let Some(cache) = &disk_cache {
            cache.save(&mut build.pipeline_cache);
        }
        let ops = graph
            .nodes
            .iter()
            .zip(&lowered)
            .map(|(n, l)| OpInfo {
                name: n.name.clone(),
                kind: op_kind(&n.op),
                kernel: l.key.label(),
            })
            .collect();

        let s = graph.input_shape();
        Ok(Session {
            ctx: ctx.clone(),
            graph: GraphInfo {
                input: graph.input,
                head: graph.head,
                numel: graph.tensors.iter().map(|t| t.shape.numel()).collect(),
                input_dims: [s.c, s.h, s.w],
                classes: graph.num_classes(),
                total_activation_elems: graph.total_activation_elems(),
            },
            batch,
            chunk,
            plan,
            arena,
            steps,
            ops,
            pipeline_count,
            timeout: options.timeout,
            uploads: UploadPool::new(ctx.device(), io_bytes(graph.input)),
            input_buffer,
            submit_lock: Mutex::new(()),
            staging_pool: Mutex::new(vec![staging]),
            build,
        })
    }

    /// Creates every GPU object (inside the caller's error scopes).
    fn create(
        ctx: &GpuContext,
        graph: &Graph,
        plan: &ArenaPlan,
        lowered: &[Lowered],
        limits: &wgpu::Limits,
        cache: Option<&wgpu::PipelineCache>,
    ) -> Result<(wgpu::Buffer, Vec<Step>, usize, Duration)> {
        let device = ctx.device();
        let arena = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("activation arena"),
            size: plan.arena_bytes().max(4),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });

        // All uniforms in one buffer, each at an offset the device accepts.
        let align = u64::from(limits.min_uniform_buffer_offset_alignment.max(16));
        let mut uniform_data = Vec::new();
        let mut uniform_offsets = Vec::with_capacity(lowered.len());
        for l in lowered {
            let off = (uniform_data.len() as u64).div_ceil(align) * align;
            uniform_data.resize(off as usize, 0);
            uniform_offsets.push(off);
            uniform_data.extend_from_slice(&l.uniform);
        }
        check_size(
            "the uniforms",
            uniform_data.len() as u64,
            limits.max_buffer_size,
            "max_buffer_size",
        )?;
        let uniforms = buffer_with(
            device,
            "uniforms",
            wgpu::BufferUsages::UNIFORM,
            &uniform_data,
        )?;

        let mut kernels = Kernels::new(device, cache);
        kernels.prepare(lowered.iter().map(|l| &l.key))?;
        let mut steps = Vec::with_capacity(lowered.len());
        for (index, ((node, l), &uoff)) in graph
            .nodes
            .iter()
            .zip(lowered)
            .zip(&uniform_offsets)
            .enumerate()
        {
            let pipeline = kernels.pipeline(&l.key);
            let uniform_binding = wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &uniforms,
                offset: uoff,
                size: wgpu::BufferSize::new(l.uniform.len() as u64),
            });
            let arena_binding = arena.as_entire_binding();
            let params;
            let entries: Vec<wgpu::BindGroupEntry> = match &l.params {
                Some(data) => {
                    let halves: Vec<u16>;
                    let bytes: &[u8] = if l.key.shader.needs_f16() {
                        halves = data
                            .iter()
                            .map(|&v| half::f16::from_f32(v).to_bits())
                            .collect();
                        bytemuck::cast_slice(&halves)
                    } else {
                        bytemuck::cast_slice(data)
                    };
                    check_size(
                        &format!("the parameters of {}", node.name),
                        bytes.len() as u64,
                        limits.max_storage_buffer_binding_size,
                        "max_storage_buffer_binding_size",
                    )?;
                    params = buffer_with(device, &node.name, wgpu::BufferUsages::STORAGE, bytes)?;
                    vec![
                        wgpu::BindGroupEntry {
                            binding: 0,
                            resource: arena_binding,
                        },
                        wgpu::BindGroupEntry {
                            binding: 1,
                            resource: params.as_entire_binding(),
                        },
                        wgpu::BindGroupEntry {
                            binding: 2,
                            resource: uniform_binding,
                        },
                    ]
                }
                None => vec![
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: arena_binding,
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: uniform_binding,
                    },
                ],
            };
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(&node.name),
                layout: kernels.bind_group_layout(l.key.shader.layout()),
                entries: &entries,
            });
            steps.push(Step {
                pipeline,
                bind_group,
                groups: l.groups,
                node: index,
            });
        }
        Ok((
            arena,
            steps,
            kernels.pipeline_count(),
            kernels.creation_time(),
        ))
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
        self.steps.len() * self.batch.div_ceil(self.chunk)
    }

    /// Distinct compute pipelines the session uses.
    pub fn pipeline_count(&self) -> usize {
        self.pipeline_count
    }

    /// The device the session runs on.
    pub fn context(&self) -> &GpuContext {
        &self.ctx
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
            Err(self.non_finite(input))
        }
    }

    fn check_len(&self, input: &[f32]) -> Result<()> {
        if input.len() != self.batch * self.input_shape().numel() {
            return Err(cpu::wrong_input_len(
                self.input_shape(),
                self.batch,
                input.len(),
            ));
        }
        Ok(())
    }

    fn input_shape(&self) -> Shape {
        let [c, h, w] = self.graph.input_dims;
        Shape::new(c, h, w)
    }

    /// The error for an input with a NaN or infinity, naming the first one.
    fn non_finite(&self, input: &[f32]) -> Error {
        cpu::non_finite_input(self.input_shape(), input)
    }

    /// Runs the network on `input` (`[batch, 3, H, W]`, row-major), blocking until the results are
    /// back or the timeout passes.
    pub fn run(&self, input: &[f32]) -> Result<Output> {
        let (submission, readback, scopes) = self.submit(input, &[], None, None)?;
        pollster::block_on(scopes)?;
        readback::wait(self.ctx.device(), submission, &readback, self.timeout)?;
        self.output(readback)
    }

    /// [`run`](Self::run), also returning what the forward pass cost the calling thread before it
    /// could wait for the GPU: checking and copying the input, then recording and submitting.
    pub fn run_timed(&self, input: &[f32]) -> Result<(Output, HostCost)> {
        let mut watch = Stopwatch::start();
        let mut input_time = Duration::ZERO;
        let (submission, readback, scopes) =
            self.submit(input, &[], None, Some((&mut watch, &mut input_time)))?;
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
        let (_, readback, scopes) = self.submit(input, &[], None, None)?;
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
        let (submission, readback, scopes) = self.submit(input, tensors, None, None)?;
        pollster::block_on(scopes)?;
        readback::wait(self.ctx.device(), submission, &readback, self.timeout)?;
        // The first readback holds logits and probs; then one per asked-for tensor that is used.
        let mut rest = readback.into_iter().skip(1);
        tensors
            .iter()
            .map(|t| match self.plan.live[t.0].and_then(|_| rest.next()) {
                Some(r) => r.into_f32(),
                None => Ok(vec![0.0; self.batch * self.graph.numel[t.0]]),
            })
            .collect()
    }

    /// Runs the network once with every op timed: on the GPU with timestamp queries (one compute
    /// pass per op, one submit) where the device has `Features::TIMESTAMP_QUERY`, else on the host
    /// with one submit per op ([`ProfileSource::WallClock`]). Every graph node appears once, in graph
    /// order, summed over its dispatches and batch chunks. Plain runs are not slowed by any of this.
    pub fn profile(&self, input: &[f32]) -> Result<Profile> {
        let device = self.ctx.device();
        if !device.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            return self.profile_wall_clock(input);
        }
        let nsteps = self.steps.len();
        let passes = u32::try_from(nsteps * self.batch.div_ceil(self.chunk))
            .map_err(|_| Error::Gpu("too many dispatches to profile".into()))?;
        let scopes = ErrorScopes::push(device);
        let timestamps = Timestamps::new(device, passes);
        pollster::block_on(scopes.pop("creating the timestamp queries"))?;

        let start = Instant::now();
        let (submission, readback, scopes) = self.submit(input, &[], Some(&timestamps), None)?;
        pollster::block_on(scopes)?;
        readback::wait(device, submission, &readback, self.timeout)?;
        let wall = start.elapsed();
        let raw = match readback.last() {
            Some(r) => r.read_bytes()?,
            None => return Err(Error::Gpu("no timestamp readback".into())),
        };
        let period = self.ctx.queue().get_timestamp_period();
        let mut ms = vec![0.0; self.ops.len()];
        for (k, d) in timestamps
            .durations_ms(&raw, passes, period)
            .into_iter()
            .enumerate()
        {
            ms[self.steps[k % nsteps].node] += d;
        }
        self.output(readback)?;
        Ok(self.make_profile(ProfileSource::Timestamps, ms, wall))
    }

    /// The profile without timestamp queries: each op submitted alone and waited for.
    fn profile_wall_clock(&self, input: &[f32]) -> Result<Profile> {
        self.ctx.check_health()?;
        self.check_input(input)?;
        let device = self.ctx.device();
        let queue = self.ctx.queue();
        let wait = |index: wgpu::SubmissionIndex| {
            device
                .poll(wgpu::PollType::Wait {
                    submission_index: Some(index),
                    timeout: Some(self.timeout),
                })
                .map(|_| ())
                .map_err(|e| Error::Gpu(format!("waiting for the GPU failed: {e}")))
        };
        let scopes = ErrorScopes::push(device);
        let guard = self
            .submit_lock
            .lock()
            .map_err(|_| Error::Gpu("a run panicked while submitting".into()))?;
        let start = Instant::now();
        let mut ms = vec![0.0; self.ops.len()];
        let mut timed = || -> Result<()> {
            self.write_input(input);
            wait(queue.submit([]))?;
            let g = &self.graph;
            let mut n0 = 0;
            while n0 < self.batch {
                let n = self.chunk.min(self.batch - n0);
                if let Some(upload) = &self.input_buffer {
                    let in_bytes = (g.numel[g.input.0] * 4) as u64;
                    let mut encoder = device.create_command_encoder(&Default::default());
                    encoder.copy_buffer_to_buffer(
                        upload,
                        n0 as u64 * in_bytes,
                        &self.arena,
                        self.plan.offset(g.input).unwrap_or(0) * 4,
                        n as u64 * in_bytes,
                    );
                    wait(queue.submit([encoder.finish()]))?;
                }
                for s in &self.steps {
                    let mut encoder = device.create_command_encoder(&Default::default());
                    {
                        let mut pass = encoder.begin_compute_pass(&Default::default());
                        pass.set_pipeline(&s.pipeline);
                        pass.set_bind_group(0, &s.bind_group, &[]);
                        pass.dispatch_workgroups(s.groups.0, s.groups.1, n as u32);
                    }
                    let command_buffer = encoder.finish();
                    let t = Instant::now();
                    wait(queue.submit([command_buffer]))?;
                    ms[s.node] += t.elapsed().as_secs_f64() * 1e3;
                }
                n0 += n;
            }
            Ok(())
        };
        let result = timed();
        let wall = start.elapsed();
        drop(guard);
        pollster::block_on(scopes.pop("profiling the session"))?;
        result?;
        self.ctx.check_health()?;
        Ok(self.make_profile(ProfileSource::WallClock, ms, wall))
    }

    fn make_profile(&self, source: ProfileSource, ms: Vec<f64>, wall: Duration) -> Profile {
        Profile {
            source,
            ops: self
                .ops
                .iter()
                .zip(ms)
                .map(|(o, ms)| OpTime {
                    name: o.name.clone(),
                    kind: o.kind.clone(),
                    kernel: o.kernel.clone(),
                    ms,
                })
                .collect(),
            wall_ms: wall.as_secs_f64() * 1e3,
            batch: self.batch,
        }
    }

    fn output(&self, readback: Vec<Readback>) -> Result<Output> {
        let Some(first) = readback.into_iter().next() else {
            return Err(Error::Gpu("no readback buffer".into()));
        };
        let mut data = first.read_f32()?;
        // Read and unmapped: ready for the next run.
        if let Ok(mut pool) = self.staging_pool.lock() {
            pool.push(first.buffer().clone());
        }
        let n = self.batch * self.graph.classes;
        if data.len() < 2 * n {
            return Err(Error::Gpu(format!(
                "read back {} values, expected {}",
                data.len(),
                2 * n
            )));
        }
        let mut probs = data.split_off(n);
        probs.truncate(n);
        Ok(Output {
            batch: self.batch,
            classes: self.graph.classes,
            logits: data,
            probs,
        })
    }

    fn staging(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
        check_size(
            label,
            bytes,
            self.ctx.device().limits().max_buffer_size,
            "max_buffer_size",
        )?;
        Ok(staging_buffer(self.ctx.device(), label, bytes))
    }

    /// An idle logits+probs readback buffer from the pool, or a new one when every one is in flight.
    fn take_staging(&self) -> wgpu::Buffer {
        let pooled = self.staging_pool.lock().ok().and_then(|mut p| p.pop());
        pooled.unwrap_or_else(|| {
            let bytes = (2 * self.batch * self.graph.classes * 4) as u64;
            staging_buffer(self.ctx.device(), "logits+probs", bytes)
        })
    }

    /// Writes `input` where the first copy or dispatch of a run reads it. Call with `submit_lock`
    /// held until the submit.
    fn write_input(&self, input: &[f32]) {
        let bytes: &[u8] = bytemuck::cast_slice(input);
        match &self.input_buffer {
            Some(buffer) => self.ctx.queue().write_buffer(buffer, 0, bytes),
            None => {
                let offset = self.plan.offset(self.graph.input).unwrap_or(0) * 4;
                self.ctx.queue().write_buffer(&self.arena, offset, bytes);
            }
        }
    }

    /// Uploads `input`, records and submits one command buffer, and requests the readbacks: the first
    /// holds logits then probs, then one per entry of `extra` that some op touches.
    /// Returns the error-scope future, to be awaited before trusting the readbacks. With `timing`,
    /// the time spent on the input (a lap of the stopwatch) is stored in its second half.
    #[allow(clippy::type_complexity)]
    fn submit(
        &self,
        input: &[f32],
        extra: &[TensorId],
        timestamps: Option<&Timestamps>,
        timing: Option<(&mut Stopwatch, &mut Duration)>,
    ) -> Result<(
        wgpu::SubmissionIndex,
        Vec<Readback>,
        impl std::future::Future<Output = Result<()>> + Send,
    )> {
        self.ctx.check_health()?;
        self.check_len(input)?;
        // Copy the input into a mapped upload buffer and check it in the same pass; without a free
        // upload buffer, check here and write it with `queue.write_buffer` at submit.
        let upload = match self.uploads.fill(input) {
            Some((up, true)) => Some(up),
            Some((up, false)) => {
                self.uploads.recycle(up);
                return Err(self.non_finite(input));
            }
            None => {
                self.check_input(input)?;
                None
            }
        };
        if let Some((watch, input_time)) = timing {
            *input_time = watch.lap();
        }
        let device = self.ctx.device();
        let scopes = ErrorScopes::push(device);
        let recorded = self.record(input, upload, extra, timestamps);
        let errors = scopes.pop("running the session");
        let (submission, buffers) = match recorded {
            Ok(r) => r,
            Err(e) => {
                // Prefer the device's own explanation (a lost device, a validation error) when there
                // is one; the device-lost callback runs on the next poll.
                let _ = device.poll(wgpu::PollType::Poll);
                self.ctx.check_health()?;
                pollster::block_on(errors)?;
                return Err(e);
            }
        };
        let readbacks = buffers.into_iter().map(Readback::start).collect();
        Ok((submission, readbacks, errors))
    }

    fn record(
        &self,
        input: &[f32],
        upload: Option<Upload>,
        extra: &[TensorId],
        timestamps: Option<&Timestamps>,
    ) -> Result<(wgpu::SubmissionIndex, Vec<wgpu::Buffer>)> {
        let device = self.ctx.device();
        let g = &self.graph;
        let classes_bytes = (self.batch * g.classes * 4) as u64;
        let mut extra_buffers = Vec::with_capacity(extra.len());
        for &t in extra {
            extra_buffers.push(match self.plan.live[t.0] {
                Some(_) => {
                    Some(self.staging("tensor readback", (self.batch * g.numel[t.0] * 4) as u64)?)
                }
                None => None,
            });
        }
        let out = self.take_staging();
        // Chunks copy their input from here; `None`: written straight into the arena at submit.
        let source = upload
            .as_ref()
            .map(|u| u.buffer())
            .or(self.input_buffer.as_ref());

        // Tensor copies due right after each step (step 0 = upload, i + 1 = node i, last = readback);
        // nothing to allocate for a plain run.
        let nsteps = self.steps.len();
        let mut due: Vec<Vec<usize>> = Vec::new();
        if !extra.is_empty() {
            due = vec![Vec::new(); nsteps + 2];
            for (i, &t) in extra.iter().enumerate() {
                if let Some(Interval { last, .. }) = self.plan.live[t.0] {
                    due[last.min(nsteps + 1)].push(i);
                }
            }
        }
        let due_at = |i: usize| due.get(i).map_or(&[][..], Vec::as_slice);

        let offset_bytes = |t: TensorId| self.plan.offset(t).unwrap_or(0) * 4;
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("forward"),
        });
        let mut n0 = 0;
        let mut timed = 0u32;
        while n0 < self.batch {
            let n = self.chunk.min(self.batch - n0);
            let copy_out = |encoder: &mut wgpu::CommandEncoder, idx: &[usize]| {
                for &i in idx {
                    let t = extra[i];
                    if let Some(buf) = &extra_buffers[i] {
                        let per = (g.numel[t.0] * 4) as u64;
                        encoder.copy_buffer_to_buffer(
                            &self.arena,
                            offset_bytes(t),
                            buf,
                            n0 as u64 * per,
                            n as u64 * per,
                        );
                    }
                }
            };
            if let Some(src) = source {
                let in_bytes = (g.numel[g.input.0] * 4) as u64;
                encoder.copy_buffer_to_buffer(
                    src,
                    n0 as u64 * in_bytes,
                    &self.arena,
                    offset_bytes(g.input),
                    n as u64 * in_bytes,
                );
            }
            copy_out(&mut encoder, due_at(0));

            let mut i = 0;
            while i < nsteps {
                // One compute pass up to the next step after which a tensor must be copied out; one
                // pass per step when profiling.
                let timestamp_writes = timestamps.map(|t| t.writes(timed));
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("forward"),
                    timestamp_writes,
                });
                let mut bound: Option<&wgpu::ComputePipeline> = None;
                loop {
                    let s = &self.steps[i];
                    // wgpu re-validates the layout on every set_pipeline: skip repeats.
                    if bound != Some(&s.pipeline) {
                        pass.set_pipeline(&s.pipeline);
                        bound = Some(&s.pipeline);
                    }
                    pass.set_bind_group(0, &s.bind_group, &[]);
                    pass.dispatch_workgroups(s.groups.0, s.groups.1, n as u32);
                    i += 1;
                    if i >= nsteps || !due_at(i).is_empty() || timestamps.is_some() {
                        break;
                    }
                }
                drop(pass);
                timed += 1;
                copy_out(&mut encoder, due_at(i));
            }
            copy_out(&mut encoder, due_at(nsteps + 1));

            if let Some(head) = g.head {
                let cls = (g.classes * 4) as u64;
                encoder.copy_buffer_to_buffer(
                    &self.arena,
                    offset_bytes(head.logits),
                    &out,
                    n0 as u64 * cls,
                    n as u64 * cls,
                );
                encoder.copy_buffer_to_buffer(
                    &self.arena,
                    offset_bytes(head.probs),
                    &out,
                    classes_bytes + n0 as u64 * cls,
                    n as u64 * cls,
                );
            }
            n0 += n;
        }
        if let Some(t) = timestamps {
            t.resolve(&mut encoder);
        }
        let command_buffer = encoder.finish();
        let submission = {
            let _guard = self
                .submit_lock
                .lock()
                .map_err(|_| Error::Gpu("a run panicked while submitting".into()))?;
            if upload.is_none() {
                self.write_input(input);
            }
            self.ctx.queue().submit([command_buffer])
        };
        if let Some(up) = upload {
            self.uploads.recycle(up);
        }
        let mut buffers = vec![out];
        buffers.extend(extra_buffers.into_iter().flatten());
        if let Some(t) = timestamps {
            buffers.push(t.staging.clone());
        }
        Ok((submission, buffers))
    }
}

fn staging_buffer(device: &wgpu::Device, label: &str, bytes: u64) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(4),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}
