//! Building a session: checks, batch chunking, lowering, pipelines (shared per device), uniforms,
//! weight buffers (shared per model) and bind groups.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{BuildStats, Dispatch, GraphInfo, OpInfo, Session, SessionOptions};
use crate::error::{Error, Result};
use crate::gpu::autotune::{self, TuneReport};
use crate::gpu::context::{ErrorScopes, GpuContext};
use crate::gpu::kernels::conv::{self, ConvShape};
use crate::gpu::kernels::{AdapterCaps, Slot};
use crate::gpu::lower::{lower, Ctx, LowerCtx, Lowered};
use crate::gpu::pipeline_cache::DiskPipelineCache;
use crate::gpu::plan::{plan, ArenaPlan};
use crate::gpu::profile::op_kind;
use crate::gpu::texture::{self, Texels};
use crate::gpu::tune::{ConvKernel, ConvPolicy, Precision};
use crate::gpu::upload::UploadPool;
use crate::gpu::weights::{DeviceWeights, WeightResource};
use crate::graph::{Graph, Op, TensorId};

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
pub(crate) fn buffer_with(
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
        view.slice(..data.len()).copy_from_slice(data);
    }
    buffer.unmap();
    Ok(buffer)
}

pub(crate) fn check_size(what: &str, bytes: u64, limit: u64, limit_name: &str) -> Result<()> {
    if bytes > limit {
        return Err(Error::Gpu(format!(
            "{what} needs {bytes} bytes in one buffer, more than this device's {limit_name} ({limit} bytes)"
        )));
    }
    Ok(())
}

pub(super) fn staging_buffer(device: &wgpu::Device, label: &str, bytes: u64) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(4),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// The checks a graph must pass before anything is created for it.
fn check_graph(graph: &Graph, batch: usize) -> Result<()> {
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
        if what != "input" && (s.h != 1 || s.w != 1 || s.c != graph.num_classes()) {
            return Err(Error::Config(format!(
                "graph {what} tensor is [{}, {}, {}], expected [{}, 1, 1]",
                s.c,
                s.h,
                s.w,
                graph.num_classes()
            )));
        }
    }
    Ok(())
}

/// The checked shape of every conv of `graph` (for the tuner).
fn conv_shapes(graph: &Graph, plan: &ArenaPlan) -> Result<Vec<ConvShape>> {
    graph
        .nodes
        .iter()
        .filter_map(|node| match &node.op {
            Op::Conv(c) => Some((node, c)),
            _ => None,
        })
        .map(|(node, c)| {
            let cx = Ctx {
                graph,
                plan,
                node: &node.name,
            };
            conv::shape(&cx, c)
        })
        .collect()
}

/// Lowers every node, checking the workgroup counts against the device.
pub(crate) fn lower_all(
    graph: &Graph,
    plan: &ArenaPlan,
    policy: &ConvPolicy,
    caps: &AdapterCaps,
    max_groups: u32,
) -> Result<Vec<Lowered>> {
    let lcx = LowerCtx { plan, policy, caps };
    let lowered: Vec<Lowered> = graph
        .nodes
        .iter()
        .map(|n| lower(graph, n, &lcx))
        .collect::<Result<_>>()?;
    for (node, l) in graph.nodes.iter().zip(&lowered) {
        for step in &l.steps {
            let (x, y) = step.groups;
            if x > max_groups || y > max_groups {
                return Err(Error::Gpu(format!(
                    "{} needs {x}x{y} workgroups, more than this device's max_compute_workgroups_per_dimension ({max_groups})",
                    node.name
                )));
            }
        }
    }
    Ok(lowered)
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
        Self::for_weights(&DeviceWeights::new(ctx), graph, batch, options)
    }

    /// A session that reads its weights from (and adds missing ones to) `weights`, the model's
    /// buffers on its device: sessions of one model for several batch or input sizes share them, and
    /// every session on a device shares its pipelines.
    pub fn for_weights(
        weights: &Arc<DeviceWeights>,
        graph: &Graph,
        batch: usize,
        options: &SessionOptions,
    ) -> Result<Self> {
        let ctx = weights.context();
        ctx.check_health()?;
        check_graph(graph, batch)?;
        let device = ctx.device();
        let limits = device.limits();
        if limits.max_storage_buffers_per_shader_stage < 2 {
            return Err(Error::Gpu(format!(
                "the kernels bind 2 storage buffers per stage; this device allows {}",
                limits.max_storage_buffers_per_shader_stage
            )));
        }
        if options.precision == Precision::F16
            && !device.features().contains(wgpu::Features::SHADER_F16)
        {
            return Err(Error::Gpu(format!(
                "f16 precision needs the adapter feature SHADER_F16 (WGSL `enable f16`), which {} does not offer; use f32",
                ctx.describe()
            )));
        }
        let (chunk, plan) = choose_chunk(graph, batch, options.max_chunk, &limits)?;
        let caps = AdapterCaps::of(ctx);
        if options.conv_tile.is_some() && options.conv_kernel == ConvKernel::Auto {
            return Err(Error::Config(
                "a conv tile applies to a forced conv kernel family; the kernel is auto".into(),
            ));
        }
        let mut policy = ConvPolicy::for_session(options, chunk);
        policy.held = weights.held_packings(policy.f16_weights);
        let mut tuning = TuneReport::default();
        if options.conv_kernel == ConvKernel::Auto {
            let shapes = conv_shapes(graph, &plan)?;
            (policy.tuned, tuning) = autotune::tune(
                ctx,
                &shapes,
                chunk,
                policy.f16_weights,
                options.tune,
                &options.pipeline_cache,
            )?;
        }
        let lowered = lower_all(
            graph,
            &plan,
            &policy,
            &caps,
            limits.max_compute_workgroups_per_dimension,
        )?;
        let io_bytes = |t: TensorId| (batch * graph.shape(t).numel() * 4) as u64;
        let logits = graph.head.map(|h| ("the logits readback", h.logits));
        for (what, t) in [("the input batch", graph.input)].into_iter().chain(logits) {
            check_size(what, io_bytes(t), limits.max_buffer_size, "max_buffer_size")?;
        }

        let scopes = ErrorScopes::push(device);
        let built = create(ctx, weights, graph, &plan, &lowered, options);
        let input_buffer = (chunk < batch).then(|| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("input"),
                size: io_bytes(graph.input).max(4),
                usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        });
        pollster::block_on(scopes.pop("building the session"))?;
        let (arena, textures, dispatches, mut build) = built?;
        build.tuning = tuning;
        ctx.check_health()?;
        let mut keys: Vec<&_> = lowered
            .iter()
            .flat_map(|l| &l.steps)
            .map(|s| &s.key)
            .collect();
        keys.sort();
        keys.dedup();
        let ops = graph
            .nodes
            .iter()
            .zip(&lowered)
            .map(|(n, l)| OpInfo {
                name: n.name.clone(),
                kind: op_kind(&n.op),
                flops: 2 * graph.op_macs(&n.op),
                kernel: l
                    .steps
                    .iter()
                    .map(|s| s.key.label())
                    .collect::<Vec<_>>()
                    .join(" + "),
            })
            .collect();

        let mut session = Session {
            ctx: ctx.clone(),
            weights: Arc::clone(weights),
            graph: GraphInfo {
                input: graph.input,
                outputs: graph
                    .head
                    .map_or_else(Vec::new, |h| vec![h.logits, h.probs]),
                numel: graph.tensors.iter().map(|t| t.shape.numel()).collect(),
                input_shape: graph.input_shape(),
                classes: graph.num_classes(),
                total_activation_elems: graph.total_activation_elems(),
            },
            batch,
            chunk,
            plan,
            arena,
            textures,
            dispatches,
            ops,
            pipeline_count: keys.len(),
            timeout: options.timeout,
            uploads: UploadPool::new(ctx.device(), io_bytes(graph.input)),
            input_buffer,
            submit_lock: Mutex::new(()),
            plain: super::record::Recording::default(),
            staging_pool: Mutex::new(Vec::new()),
            build,
        };
        session.plain = session.recording(&[], false);
        let first_set = session.new_staging_set(&session.plain);
        if let Ok(mut pool) = session.staging_pool.lock() {
            pool.push(first_set);
        }
        Ok(session)
    }
}

/// Creates the arena, the uniforms, the missing pipelines and weight buffers, and every bind group
/// (inside the caller's error scopes).
fn create(
    ctx: &GpuContext,
    weights: &DeviceWeights,
    graph: &Graph,
    plan: &ArenaPlan,
    lowered: &[Lowered],
    options: &SessionOptions,
) -> Result<Built> {
    let device = ctx.device();
    let limits = device.limits();
    let arena = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("activation arena"),
        // Slack past the last tensor: a view copied as vec4 texels may read up to 3 values beyond
        // its end.
        size: plan.arena_bytes() + 16,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });

    let textures = input_textures(device, lowered, plan.batch, &limits)?;
    let views: BTreeMap<Slot, wgpu::TextureView> = textures
        .iter()
        .map(|(slot, t)| (*slot, t.create_view(&Default::default())))
        .collect();

    // Scratch space for the ops that need some (one op at a time uses it), per chunk.
    let scratch_bytes =
        lowered.iter().map(|l| l.scratch).max().unwrap_or(0) as u64 * plan.batch as u64 * 4;
    check_size(
        "the scratch space",
        scratch_bytes,
        limits.max_storage_buffer_binding_size,
        "max_storage_buffer_binding_size",
    )?;
    let scratch = (scratch_bytes > 0).then(|| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("scratch"),
            size: scratch_bytes,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        })
    });

    // All uniforms in one buffer, each at an offset the device accepts.
    let align = u64::from(limits.min_uniform_buffer_offset_alignment.max(16));
    let mut uniform_data = Vec::new();
    let mut uniform_offsets = Vec::new();
    for step in lowered.iter().flat_map(|l| &l.steps) {
        let off = (uniform_data.len() as u64).div_ceil(align) * align;
        uniform_data.resize(off as usize, 0);
        uniform_offsets.push(off);
        uniform_data.extend_from_slice(&step.uniform);
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

    let mut build = BuildStats::default();
    let pipelines_lock = ctx.pipelines();
    let mut pipelines = pipelines_lock
        .lock()
        .map_err(|_| Error::Gpu("pipeline store poisoned by an earlier panic".into()))?;
    let missing = pipelines.missing(lowered.iter().flat_map(|l| &l.steps).map(|s| &s.key));
    if !missing.is_empty() {
        // The disk cache is only read (and written back) when something has to be compiled.
        let (disk_cache, report) =
            DiskPipelineCache::open(device, ctx.adapter_info(), &options.pipeline_cache);
        build.pipeline_cache = report;
        build.pipelines = pipelines.prepare(&missing, disk_cache.as_ref().map(|c| c.cache()))?;
        build.pipelines_created = missing.len();
        if let Some(cache) = &disk_cache {
            cache.save(&mut build.pipeline_cache);
        }
    }

    let mut dispatches = Vec::with_capacity(uniform_offsets.len());
    let mut uniform_offsets = uniform_offsets.into_iter();
    for (index, (node, l)) in graph.nodes.iter().zip(lowered).enumerate() {
        let params = match &l.weights {
            Some(spec) => Some(weights.resource(node, spec)?),
            None => None,
        };
        let (weight_buffer, weight_texture) = match &params {
            Some(WeightResource::Buffer(b)) => (Some(b), None),
            Some(WeightResource::Texture(t)) => (None, Some(t)),
            None => (None, None),
        };
        for step in &l.steps {
            let uniform = wgpu::BufferBinding {
                buffer: &uniforms,
                offset: uniform_offsets.next().unwrap_or(0),
                size: wgpu::BufferSize::new(step.uniform.len() as u64),
            };
            let slots = step.key.shader.file.slots();
            let entries = slots
                .iter()
                .map(|&slot| {
                    let resource = match slot {
                        Slot::Arena => Some(arena.as_entire_binding()),
                        Slot::Weights => weight_buffer.map(|b| b.as_entire_binding()),
                        Slot::Uniforms => Some(wgpu::BindingResource::Buffer(uniform.clone())),
                        Slot::Scratch => scratch.as_ref().map(|s| s.as_entire_binding()),
                        Slot::WeightTexture => {
                            weight_texture.map(wgpu::BindingResource::TextureView)
                        }
                        Slot::Input
                        | Slot::AddInput
                        | Slot::InputScalar
                        | Slot::AddInputScalar
                        | Slot::Residual
                        | Slot::ResidualScalar => {
                            views.get(&slot).map(wgpu::BindingResource::TextureView)
                        }
                    };
                    let resource = resource.ok_or_else(|| {
                        Error::Gpu(format!(
                            "{}: kernel {} binds {slot:?}, which the op does not provide",
                            node.name,
                            step.key.label()
                        ))
                    })?;
                    Ok(wgpu::BindGroupEntry {
                        binding: slot.binding(),
                        resource,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(&node.name),
                layout: &pipelines.bind_group_layout(&step.key.shader),
                entries: &entries,
            });
            dispatches.push(Dispatch {
                pipeline: pipelines.get(&step.key)?,
                bind_group,
                groups: step.groups,
                node: index,
                inputs: step.inputs.clone(),
            });
        }
    }
    Ok((arena, textures, dispatches, build))
}

/// What `create` makes.
type Built = (
    wgpu::Buffer,
    BTreeMap<Slot, wgpu::Texture>,
    Vec<Dispatch>,
    BuildStats,
);

/// One texture per input slot any step binds, tall enough for its largest view at `images`
/// images (each image starting on a row of its own).
fn input_textures(
    device: &wgpu::Device,
    lowered: &[Lowered],
    images: usize,
    limits: &wgpu::Limits,
) -> Result<BTreeMap<Slot, wgpu::Texture>> {
    let mut rows: BTreeMap<Slot, (Texels, u32)> = BTreeMap::new();
    let steps = || lowered.iter().flat_map(|l| &l.steps);
    // Every input slot a kernel binds gets a texture: one row where no op reads it (a shader binds
    // the added-input and residual textures whether or not a conv has those views).
    for step in steps() {
        for &slot in step.key.shader.file.slots() {
            if let (Some(format), true) = (slot.texels(), slot.is_input()) {
                rows.entry(slot).or_insert((format, 1));
            }
        }
    }
    for input in steps().flat_map(|s| &s.inputs) {
        let Some(format) = input.slot.texels() else {
            return Err(Error::Gpu(format!(
                "{:?} is not a texture slot",
                input.slot
            )));
        };
        let need = texture::rows(format.texels(input.len)) as usize * images;
        let need = u32::try_from(need).unwrap_or(u32::MAX);
        let entry = rows.entry(input.slot).or_insert((format, 0));
        entry.1 = entry.1.max(need);
    }
    rows.into_iter()
        .map(|(slot, (format, rows))| {
            if rows > limits.max_texture_dimension_2d {
                return Err(Error::Gpu(format!(
                    "the {slot:?} texture needs {rows} rows for {images} images, more than this device's max_texture_dimension_2d ({}); use a smaller batch",
                    limits.max_texture_dimension_2d
                )));
            }
            Ok((slot, texture::create(device, &format!("{slot:?}"), format, rows)))
        })
        .collect()
}

/// The pipeline every node of `graph` would run at `batch` images on an adapter with `caps`, in
/// graph order, without a device (for tests and reports).
pub fn pipeline_keys(
    graph: &Graph,
    batch: usize,
    caps: &AdapterCaps,
    options: &SessionOptions,
) -> Result<Vec<crate::gpu::kernels::KernelKey>> {
    check_graph(graph, batch)?;
    let plan = plan(graph, batch);
    let policy = ConvPolicy::for_session(options, batch);
    Ok(lower_all(graph, &plan, &policy, caps, u32::MAX)?
        .into_iter()
        .flat_map(|l| l.steps.into_iter().map(|s| s.key))
        .collect())
}
