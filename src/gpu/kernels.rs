//! The one place that owns WGSL sources, shader modules, bind group layouts and compute pipelines.
//!
//! Shapes travel in uniforms, so a pipeline depends only on (shader, entry point, override constants):
//! the activation and which optional operands are present. A whole Res2Net-50 needs about a dozen
//! pipelines, and every op with the same key shares one.

use std::collections::HashMap;

/// A shader file in `shaders/`, one per kernel family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shader {
    Conv,
    /// Implicit-GEMM convolution sharing loads through subgroup broadcasts (8-lane subgroups only).
    ConvGemm,
    Pool,
    GlobalPool,
    Linear,
    ScaleAdd,
    Softmax,
    /// [`Shader::Conv`] with f16 weights and biases (generated; needs `Features::SHADER_F16`).
    ConvF16,
    /// [`Shader::ConvGemm`] with f16 weights and biases (generated; needs `Features::SHADER_F16`).
    ConvGemmF16,
    /// [`Shader::Linear`] with f16 weights and biases (generated; needs `Features::SHADER_F16`).
    LinearF16,
}

/// Which bind group layout a shader uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// 0: activation arena (read-write storage), 1: parameters (read-only storage), 2: uniforms.
    ArenaParams,
    /// 0: activation arena (read-write storage), 1: uniforms.
    Arena,
}

impl Shader {
    pub const ALL: [Shader; 10] = [
        Shader::Conv,
        Shader::ConvGemm,
        Shader::Pool,
        Shader::GlobalPool,
        Shader::Linear,
        Shader::ScaleAdd,
        Shader::Softmax,
        Shader::ConvF16,
        Shader::ConvGemmF16,
        Shader::LinearF16,
    ];

    /// File name in `shaders/` (a generated variant names the file it is generated from).
    pub fn file_name(self) -> &'static str {
        match self {
            Shader::Conv | Shader::ConvF16 => "conv.wgsl",
            Shader::ConvGemm | Shader::ConvGemmF16 => "conv_gemm.wgsl",
            Shader::Pool => "pool.wgsl",
            Shader::GlobalPool => "global_pool.wgsl",
            Shader::Linear | Shader::LinearF16 => "linear.wgsl",
            Shader::ScaleAdd => "scale_add.wgsl",
            Shader::Softmax => "softmax.wgsl",
        }
    }

    /// A name for labels: the file name, with `+f16` for the f16-weight variants.
    pub fn name(self) -> &'static str {
        match self {
            Shader::ConvF16 => "conv.wgsl+f16",
            Shader::ConvGemmF16 => "conv_gemm.wgsl+f16",
            Shader::LinearF16 => "linear.wgsl+f16",
            s => s.file_name(),
        }
    }

    /// The shader an f16-weight variant is generated from (itself for a file-backed shader).
    pub fn base(self) -> Shader {
        match self {
            Shader::ConvF16 => Shader::Conv,
            Shader::ConvGemmF16 => Shader::ConvGemm,
            Shader::LinearF16 => Shader::Linear,
            s => s,
        }
    }

    /// The f16-weight variant of this shader, if it has one.
    pub fn with_f16_weights(self) -> Option<Shader> {
        match self.base() {
            Shader::Conv => Some(Shader::ConvF16),
            Shader::ConvGemm => Some(Shader::ConvGemmF16),
            Shader::Linear => Some(Shader::LinearF16),
            _ => None,
        }
    }

    /// Whether the shader stores its weights as f16 (`enable f16;`, needs `Features::SHADER_F16`).
    pub fn needs_f16(self) -> bool {
        self.base() != self
    }

    /// WGSL source, compiled into the crate (the f16-weight variants are generated on first use).
    pub fn source(self) -> &'static str {
        use std::sync::OnceLock;
        static CONV_F16: OnceLock<String> = OnceLock::new();
        static GEMM_F16: OnceLock<String> = OnceLock::new();
        static LINEAR_F16: OnceLock<String> = OnceLock::new();
        let generated = match self {
            Shader::ConvF16 => Some(&CONV_F16),
            Shader::ConvGemmF16 => Some(&GEMM_F16),
            Shader::LinearF16 => Some(&LINEAR_F16),
            _ => None,
        };
        if let Some(cell) = generated {
            return cell.get_or_init(|| f16_weights_source(self.base().source()));
        }
        match self {
            Shader::Conv => include_str!("../../shaders/conv.wgsl"),
            Shader::ConvGemm => include_str!("../../shaders/conv_gemm.wgsl"),
            Shader::Pool => include_str!("../../shaders/pool.wgsl"),
            Shader::GlobalPool => include_str!("../../shaders/global_pool.wgsl"),
            Shader::Linear => include_str!("../../shaders/linear.wgsl"),
            Shader::ScaleAdd => include_str!("../../shaders/scale_add.wgsl"),
            Shader::Softmax => include_str!("../../shaders/softmax.wgsl"),
            Shader::ConvF16 | Shader::ConvGemmF16 | Shader::LinearF16 => unreachable!(),
        }
    }

    /// Whether the shader calls subgroup builtins (needs `Features::SUBGROUP`).
    pub fn needs_subgroups(self) -> bool {
        matches!(self.base(), Shader::ConvGemm)
    }

    pub(crate) fn layout(self) -> Layout {
        match self {
            Shader::Conv
            | Shader::ConvGemm
            | Shader::Linear
            | Shader::ConvF16
            | Shader::ConvGemmF16
            | Shader::LinearF16 => Layout::ArenaParams,
            Shader::Pool | Shader::GlobalPool | Shader::ScaleAdd | Shader::Softmax => Layout::Arena,
        }
    }
}

/// The f16-weight variant of a shader whose weights are `wts: array<vec4<f32>>` or `array<f32>`,
/// every read of them converted to f32 (`vec4<f32>(wts[i])`, `f32(wts[i])`): `enable f16;` and the
/// same declaration with `f16`. Only the storage changes: products and sums stay f32.
fn f16_weights_source(source: &str) -> String {
    const DECLS: [(&str, &str); 2] = [
        (
            "var<storage, read> wts: array<vec4<f32>>;",
            "var<storage, read> wts: array<vec4<f16>>;",
        ),
        (
            "var<storage, read> wts: array<f32>;",
            "var<storage, read> wts: array<f16>;",
        ),
    ];
    let (from, to) = DECLS
        .iter()
        .find(|(from, _)| source.matches(from).count() == 1)
        .expect(
            "an f16 variant's source declares its weights once as array<vec4<f32>> or array<f32>",
        );
    format!("enable f16;\n{}", source.replacen(from, to, 1))
}

/// One compute pipeline: a shader entry point specialised by override constants.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelKey {
    pub shader: Shader,
    pub entry: &'static str,
    /// Override constants by name; booleans are 0 or 1.
    pub constants: Vec<(&'static str, u32)>,
}

impl KernelKey {
    pub(crate) fn new(
        shader: Shader,
        entry: &'static str,
        constants: &[(&'static str, u32)],
    ) -> Self {
        KernelKey {
            shader,
            entry,
            constants: constants.to_vec(),
        }
    }

    /// A readable label: `conv.wgsl:conv_1x1[ACT=1,HAS_ADD=0,HAS_RES=1]`.
    pub fn label(&self) -> String {
        let consts: Vec<String> = self
            .constants
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "{}:{}[{}]",
            self.shader.name(),
            self.entry,
            consts.join(",")
        )
    }
}

/// Every pipeline the runtime can ask for. The naga test validates and translates each of them, so a
/// variant that only breaks on Metal or DX12 fails on any machine.
pub fn all_variants() -> Vec<KernelKey> {
    let mut keys = Vec::new();
    for entry in ["conv_direct", "conv_1x1"] {
        for act in 0..3 {
            for add in 0..2 {
                for res in 0..2 {
                    keys.push(KernelKey::new(
                        Shader::Conv,
                        entry,
                        &[("ACT", act), ("HAS_ADD", add), ("HAS_RES", res)],
                    ));
                }
            }
        }
    }
    for act in 0..3 {
        for add in 0..2 {
            for res in 0..2 {
                for aligned in 0..2 {
                    let c = [
                        ("ACT", act),
                        ("HAS_ADD", add),
                        ("HAS_RES", res),
                        ("ALIGNED", aligned),
                    ];
                    keys.push(KernelKey::new(Shader::ConvGemm, "conv_gemm_32", &c));
                    keys.push(KernelKey::new(Shader::ConvGemm, "conv_gemm_row3", &c));
                    for (k8, flat) in [(0, 0), (1, 0), (0, 1)] {
                        let mut c = c.to_vec();
                        c.push(("K8", k8));
                        c.push(("FLAT", flat));
                        keys.push(KernelKey::new(Shader::ConvGemm, "conv_gemm", &c));
                    }
                }
            }
        }
    }
    for kind in 0..3 {
        keys.push(KernelKey::new(Shader::Pool, "pool", &[("KIND", kind)]));
    }
    keys.push(KernelKey::new(Shader::GlobalPool, "global_avg_pool", &[]));
    for act in 0..3 {
        keys.push(KernelKey::new(Shader::Linear, "linear", &[("ACT", act)]));
        for res in 0..2 {
            keys.push(KernelKey::new(
                Shader::ScaleAdd,
                "scale_add",
                &[("ACT", act), ("HAS_RES", res)],
            ));
        }
    }
    keys.push(KernelKey::new(Shader::Softmax, "softmax", &[]));
    // Every weighted kernel again with f16 weights.
    let f16: Vec<KernelKey> = keys
        .iter()
        .filter_map(|k| {
            k.shader.with_f16_weights().map(|shader| KernelKey {
                shader,
                ..k.clone()
            })
        })
        .collect();
    keys.extend(f16);
    keys
}

/// Shader modules, layouts and pipelines of one device, created on first use and shared by key.
pub(crate) struct Kernels {
    device: wgpu::Device,
    arena_params: (wgpu::BindGroupLayout, wgpu::PipelineLayout),
    arena: (wgpu::BindGroupLayout, wgpu::PipelineLayout),
    modules: HashMap<Shader, wgpu::ShaderModule>,
    pipelines: HashMap<KernelKey, wgpu::ComputePipeline>,
    /// Every pipeline is created through this cache when there is one (see `pipeline_cache`).
    cache: Option<wgpu::PipelineCache>,
    /// Host time spent creating shader modules and pipelines.
    creation_time: std::time::Duration,
}

fn storage(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

fn uniform(binding: u32) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

fn layouts(
    device: &wgpu::Device,
    label: &str,
    entries: &[wgpu::BindGroupLayoutEntry],
) -> (wgpu::BindGroupLayout, wgpu::PipelineLayout) {
    let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(label),
        entries,
    });
    let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(label),
        bind_group_layouts: &[Some(&bgl)],
        immediate_size: 0,
    });
    (bgl, pl)
}

impl Kernels {
    pub(crate) fn new(device: &wgpu::Device, cache: Option<&wgpu::PipelineCache>) -> Self {
        Kernels {
            device: device.clone(),
            arena_params: layouts(
                device,
                "arena+params",
                &[storage(0, false), storage(1, true), uniform(2)],
            ),
            arena: layouts(device, "arena", &[storage(0, false), uniform(1)]),
            modules: HashMap::new(),
            pipelines: HashMap::new(),
            cache: cache.cloned(),
            creation_time: std::time::Duration::ZERO,
        }
    }

    pub(crate) fn bind_group_layout(&self, layout: Layout) -> &wgpu::BindGroupLayout {
        match layout {
            Layout::ArenaParams => &self.arena_params.0,
            Layout::Arena => &self.arena.0,
        }
    }

    /// Creates the pipelines of every key not made yet, on up to one thread per core: the driver's
    /// compiler (LLVM on lavapipe, tens of milliseconds a pipeline) is the bulk of start-up and
    /// compiles independent pipelines in parallel. Errors from the worker threads are caught by
    /// error scopes of their own (scopes belong to the thread that pushed them) and returned.
    pub(crate) fn prepare<'a>(
        &mut self,
        keys: impl IntoIterator<Item = &'a KernelKey>,
    ) -> crate::error::Result<()> {
        let start = std::time::Instant::now();
        let mut todo: Vec<KernelKey> = Vec::new();
        for key in keys {
            if !self.pipelines.contains_key(key) && !todo.contains(key) {
                todo.push(key.clone());
            }
        }
        for key in &todo {
            self.module(key.shader);
        }
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(todo.len());
        if threads <= 1 {
            for key in &todo {
                let pipeline = self.create(key);
                self.pipelines.insert(key.clone(), pipeline);
            }
            self.creation_time += start.elapsed();
            return Ok(());
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let this = &*self;
        let made: Vec<crate::error::Result<Vec<(usize, wgpu::ComputePipeline)>>> =
            std::thread::scope(|scope| {
                let workers: Vec<_> = (0..threads)
                    .map(|_| {
                        scope.spawn(|| {
                            let scopes = super::context::ErrorScopes::push(&this.device);
                            let mut out = Vec::new();
                            loop {
                                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                let Some(key) = todo.get(i) else { break };
                                out.push((i, this.create(key)));
                            }
                            pollster::block_on(scopes.pop("creating pipelines"))?;
                            Ok(out)
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .map(|w| {
                        w.join().unwrap_or_else(|_| {
                            Err(crate::error::Error::Gpu(
                                "a pipeline-creating thread panicked".into(),
                            ))
                        })
                    })
                    .collect()
            });
        for result in made {
            for (i, pipeline) in result? {
                self.pipelines.insert(todo[i].clone(), pipeline);
            }
        }
        self.creation_time += start.elapsed();
        Ok(())
    }

    /// The pipeline for `key`, created on first request.
    pub(crate) fn pipeline(&mut self, key: &KernelKey) -> wgpu::ComputePipeline {
        if let Some(p) = self.pipelines.get(key) {
            return p.clone();
        }
        let start = std::time::Instant::now();
        self.module(key.shader);
        let pipeline = self.create(key);
        self.pipelines.insert(key.clone(), pipeline.clone());
        self.creation_time += start.elapsed();
        pipeline
    }

    fn module(&mut self, shader: Shader) {
        let device = &self.device;
        self.modules.entry(shader).or_insert_with(|| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(shader.file_name()),
                source: wgpu::ShaderSource::Wgsl(shader.source().into()),
            })
        });
    }

    /// Creates the pipeline of `key` (its module must exist).
    fn create(&self, key: &KernelKey) -> wgpu::ComputePipeline {
        let module = &self.modules[&key.shader];
        let constants: Vec<(&str, f64)> = key
            .constants
            .iter()
            .map(|&(k, v)| (k, f64::from(v)))
            .collect();
        let layout = match key.shader.layout() {
            Layout::ArenaParams => &self.arena_params.1,
            Layout::Arena => &self.arena.1,
        };
        let label = key.label();
        self.device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: Some(layout),
                module,
                entry_point: Some(key.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: self.cache.as_ref(),
            })
    }

    /// Host time spent so far creating shader modules and pipelines (driver compilation included).
    pub(crate) fn creation_time(&self) -> std::time::Duration {
        self.creation_time
    }

    pub(crate) fn pipeline_count(&self) -> usize {
        self.pipelines.len()
    }
}
