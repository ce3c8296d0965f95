//! A session: one graph at one batch size on one device, ready to run.
//!
//! Everything is created up front (pipelines, the activation arena, parameter buffers, one uniform
//! buffer, every bind group) and never changed afterwards, so a run is: upload the input, record one
//! command buffer with every dispatch, submit once, read back. Runs may come from several threads.
//!
//! When the activations of the whole batch do not fit one storage binding, the batch is split into
//! chunks that do; each chunk replays the same dispatches (same bind groups, z = images in the chunk)
//! inside the same command buffer.

use std::time::Duration;

use super::context::{ErrorScopes, GpuContext};
use super::kernels::Kernels;
use super::lower::{lower, Lowered};
use super::plan::{plan, ArenaPlan, Interval};
use super::readback::{self, Readback};
use crate::cpu::Output;
use crate::error::{Error, Result};
use crate::graph::{Graph, TensorId};

/// How long a run may take before it fails instead of hanging.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Knobs of a session beyond the graph and the batch size.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// How long a run may take before it returns an error instead of waiting on.
    pub timeout: Duration,
    /// At most this many images per chunk; `None` lets the device's buffer limits decide.
    pub max_chunk: Option<usize>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            timeout: DEFAULT_TIMEOUT,
            max_chunk: None,
        }
    }
}

/// One recorded op.
struct Step {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    groups: (u32, u32),
}

/// What the session remembers of its graph (not the weights: those live on the GPU).
struct GraphInfo {
    input: TensorId,
    logits: TensorId,
    probs: TensorId,
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
    pipeline_count: usize,
    timeout: Duration,
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
        for (what, t) in [
            ("input", graph.input),
            ("logits", graph.logits),
            ("probs", graph.probs),
        ] {
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
        let lowered: Vec<Lowered> = graph
            .nodes
            .iter()
            .map(|n| lower(graph, n, &plan))
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

        let scopes = ErrorScopes::push(device);
        let built = Self::create(ctx, graph, &plan, &lowered, &limits);
        pollster::block_on(scopes.pop("building the session"))?;
        let (arena, steps, pipeline_count) = built?;
        ctx.check_health()?;

        let s = graph.input_shape();
        Ok(Session {
            ctx: ctx.clone(),
            graph: GraphInfo {
                input: graph.input,
                logits: graph.logits,
                probs: graph.probs,
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
            pipeline_count,
            timeout: options.timeout,
        })
    }

    /// Creates every GPU object (inside the caller's error scopes).
    fn create(
        ctx: &GpuContext,
        graph: &Graph,
        plan: &ArenaPlan,
        lowered: &[Lowered],
        limits: &wgpu::Limits,
    ) -> Result<(wgpu::Buffer, Vec<Step>, usize)> {
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

        let mut kernels = Kernels::new(device);
        let mut steps = Vec::with_capacity(lowered.len());
        for ((node, l), &uoff) in graph.nodes.iter().zip(lowered).zip(&uniform_offsets) {
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
                    let bytes: &[u8] = bytemuck::cast_slice(data);
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
            });
        }
        Ok((arena, steps, kernels.pipeline_count()))
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
        let [c, h, w] = self.graph.input_dims;
        let per = c * h * w;
        if input.len() != self.batch * per {
            return Err(Error::input(
                "data",
                format!(
                    "{} values for [{}, {c}, {h}, {w}]",
                    self.batch * per,
                    self.batch
                ),
                format!("{} values", input.len()),
            ));
        }
        if let Some(i) = input.iter().position(|v| !v.is_finite()) {
            let (n, rest) = (i / per, i % per);
            let (ch, y, x) = (rest / (h * w), rest % (h * w) / w, rest % w);
            return Err(Error::input(
                "values",
                "finite numbers",
                format!("{} at [{n}, {ch}, {y}, {x}]", input[i]),
            ));
        }
        Ok(())
    }

    /// Runs the network on `input` (`[batch, 3, H, W]`, row-major), blocking until the results are
    /// back or the timeout passes.
    pub fn run(&self, input: &[f32]) -> Result<Output> {
        let (submission, readback, scopes) = self.submit(input, &[])?;
        pollster::block_on(scopes)?;
        readback::wait(self.ctx.device(), submission, &readback, self.timeout)?;
        self.output(readback)
    }

    /// [`run`](Self::run), also returning the host time spent checking the input, recording the command
    /// buffer and submitting it (the CPU cost of one forward pass).
    pub fn run_timed(&self, input: &[f32]) -> Result<(Output, Duration)> {
        let start = std::time::Instant::now();
        let (submission, readback, scopes) = self.submit(input, &[])?;
        let host = start.elapsed();
        pollster::block_on(scopes)?;
        readback::wait(self.ctx.device(), submission, &readback, self.timeout)?;
        Ok((self.output(readback)?, host))
    }

    /// The same as [`run`](Self::run) without blocking: the future polls the device each time it is
    /// polled (and re-schedules itself until the GPU is done), so no other thread needs to drive it.
    pub async fn run_async(&self, input: &[f32]) -> Result<Output> {
        let (_, readback, scopes) = self.submit(input, &[])?;
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
        let (submission, readback, scopes) = self.submit(input, tensors)?;
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

    fn output(&self, readback: Vec<Readback>) -> Result<Output> {
        let Some(first) = readback.into_iter().next() else {
            return Err(Error::Gpu("no readback buffer".into()));
        };
        let mut data = first.into_f32()?;
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
        Ok(self.ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// Uploads `input`, records and submits one command buffer, and requests the readbacks: the first
    /// holds logits then probs, then one per entry of `extra` that some op touches.
    /// Returns the error-scope future, to be awaited before trusting the readbacks.
    #[allow(clippy::type_complexity)]
    fn submit(
        &self,
        input: &[f32],
        extra: &[TensorId],
    ) -> Result<(
        wgpu::SubmissionIndex,
        Vec<Readback>,
        impl std::future::Future<Output = Result<()>> + Send,
    )> {
        self.ctx.check_health()?;
        self.check_input(input)?;
        let device = self.ctx.device();
        let scopes = ErrorScopes::push(device);
        let recorded = self.record(input, extra);
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
        extra: &[TensorId],
    ) -> Result<(wgpu::SubmissionIndex, Vec<wgpu::Buffer>)> {
        let device = self.ctx.device();
        let g = &self.graph;
        let classes_bytes = (self.batch * g.classes * 4) as u64;
        let out = self.staging("logits+probs", 2 * classes_bytes)?;
        let mut extra_buffers = Vec::with_capacity(extra.len());
        for &t in extra {
            extra_buffers.push(match self.plan.live[t.0] {
                Some(_) => {
                    Some(self.staging("tensor readback", (self.batch * g.numel[t.0] * 4) as u64)?)
                }
                None => None,
            });
        }
        let upload = buffer_with(
            device,
            "input",
            wgpu::BufferUsages::COPY_SRC,
            bytemuck::cast_slice(input),
        )?;

        // Tensor copies due right after each step (step 0 = upload, i + 1 = node i, last = readback).
        let nsteps = self.steps.len();
        let mut due: Vec<Vec<usize>> = vec![Vec::new(); nsteps + 2];
        for (i, &t) in extra.iter().enumerate() {
            if let Some(Interval { last, .. }) = self.plan.live[t.0] {
                due[last.min(nsteps + 1)].push(i);
            }
        }

        let offset_bytes = |t: TensorId| self.plan.offset(t).unwrap_or(0) * 4;
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("forward"),
        });
        let mut n0 = 0;
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
            let in_bytes = (g.numel[g.input.0] * 4) as u64;
            encoder.copy_buffer_to_buffer(
                &upload,
                n0 as u64 * in_bytes,
                &self.arena,
                offset_bytes(g.input),
                n as u64 * in_bytes,
            );
            copy_out(&mut encoder, &due[0]);

            let mut i = 0;
            while i < nsteps {
                // One compute pass up to the next step after which a tensor must be copied out.
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("forward"),
                    timestamp_writes: None,
                });
                loop {
                    let s = &self.steps[i];
                    pass.set_pipeline(&s.pipeline);
                    pass.set_bind_group(0, &s.bind_group, &[]);
                    pass.dispatch_workgroups(s.groups.0, s.groups.1, n as u32);
                    i += 1;
                    if i >= nsteps || !due[i].is_empty() {
                        break;
                    }
                }
                drop(pass);
                copy_out(&mut encoder, &due[i]);
            }
            copy_out(&mut encoder, &due[nsteps + 1]);

            let cls = (g.classes * 4) as u64;
            encoder.copy_buffer_to_buffer(
                &self.arena,
                offset_bytes(g.logits),
                &out,
                n0 as u64 * cls,
                n as u64 * cls,
            );
            encoder.copy_buffer_to_buffer(
                &self.arena,
                offset_bytes(g.probs),
                &out,
                classes_bytes + n0 as u64 * cls,
                n as u64 * cls,
            );
            n0 += n;
        }
        let submission = self.ctx.queue().submit([encoder.finish()]);
        let mut buffers = vec![out];
        buffers.extend(extra_buffers.into_iter().flatten());
        Ok((submission, buffers))
    }
}
