//! The pipelines of one device: shader modules, bind group layouts and compute pipelines, created on
//! first request and shared by key by every session on the device (any model, batch or input size).

use std::collections::HashMap;
use std::time::Duration;

use super::{KernelKey, ShaderKey, Slot};
use crate::error::{Error, Result};

/// Shader modules, layouts and pipelines of one device, created on first use and shared by key.
pub(crate) struct Pipelines {
    device: wgpu::Device,
    /// Whether pipelines may be compiled on several threads at once. Not on OpenGL: wgpu's GL
    /// backend serialises on one context lock with a one-second timeout, which concurrent
    /// compilation on a busy machine exceeds (a panic, not an error).
    parallel: bool,
    /// Bind group and pipeline layouts by the slots they bind.
    layouts: HashMap<LayoutKey, (wgpu::BindGroupLayout, wgpu::PipelineLayout)>,
    modules: HashMap<ShaderKey, wgpu::ShaderModule>,
    pipelines: HashMap<KernelKey, wgpu::ComputePipeline>,
}

/// What a bind group layout depends on: the shader's slots (each slot has one binding type).
type LayoutKey = &'static [Slot];

fn layout_key(shader: &ShaderKey) -> LayoutKey {
    shader.file.slots()
}

fn entry(slot: Slot) -> wgpu::BindGroupLayoutEntry {
    let buffer = |ty| wgpu::BindingType::Buffer {
        ty,
        has_dynamic_offset: false,
        min_binding_size: None,
    };
    let ty = match slot.texels() {
        Some(texels) => wgpu::BindingType::StorageTexture {
            access: wgpu::StorageTextureAccess::ReadOnly,
            format: texels.format(),
            view_dimension: wgpu::TextureViewDimension::D2,
        },
        None => buffer(match slot {
            Slot::Weights => wgpu::BufferBindingType::Storage { read_only: true },
            Slot::Uniforms => wgpu::BufferBindingType::Uniform,
            _ => wgpu::BufferBindingType::Storage { read_only: false },
        }),
    };
    wgpu::BindGroupLayoutEntry {
        binding: slot.binding(),
        visibility: wgpu::ShaderStages::COMPUTE,
        ty,
        count: None,
    }
}

fn layouts(
    device: &wgpu::Device,
    slots: LayoutKey,
) -> (wgpu::BindGroupLayout, wgpu::PipelineLayout) {
    let entries: Vec<wgpu::BindGroupLayoutEntry> = slots.iter().map(|&s| entry(s)).collect();
    let label = format!("{slots:?}");
    let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(&label),
        entries: &entries,
    });
    let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(&label),
        bind_group_layouts: &[Some(&bgl)],
        immediate_size: 0,
    });
    (bgl, pl)
}

impl Pipelines {
    pub(crate) fn new(device: &wgpu::Device, backend: wgpu::Backend) -> Self {
        Pipelines {
            device: device.clone(),
            parallel: backend != wgpu::Backend::Gl,
            layouts: HashMap::new(),
            modules: HashMap::new(),
            pipelines: HashMap::new(),
        }
    }

    /// The bind group layout of `shader`.
    pub(crate) fn bind_group_layout(&mut self, shader: &ShaderKey) -> wgpu::BindGroupLayout {
        let device = &self.device;
        let key = layout_key(shader);
        self.layouts
            .entry(key)
            .or_insert_with(|| layouts(device, key))
            .0
            .clone()
    }

    /// The keys among `keys` whose pipelines do not exist yet (each once).
    pub(crate) fn missing<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a KernelKey>,
    ) -> Vec<KernelKey> {
        let mut todo: Vec<KernelKey> = Vec::new();
        for key in keys {
            if !self.pipelines.contains_key(key) && !todo.contains(key) {
                todo.push(key.clone());
            }
        }
        todo
    }

    /// Creates the pipelines of every key not made yet, through `cache` when given, on up to one
    /// thread per core: the driver's compiler (LLVM on lavapipe, tens of milliseconds a pipeline) is
    /// the bulk of start-up and compiles independent pipelines in parallel. Errors from the worker
    /// threads are caught by error scopes of their own (scopes belong to the thread that pushed them)
    /// and returned. Returns the host time spent.
    pub(crate) fn prepare<'a>(
        &mut self,
        keys: impl IntoIterator<Item = &'a KernelKey>,
        cache: Option<&wgpu::PipelineCache>,
    ) -> Result<Duration> {
        let start = std::time::Instant::now();
        let todo = self.missing(keys);
        for key in &todo {
            self.module(&key.shader)?;
            self.bind_group_layout(&key.shader);
        }
        let threads = if self.parallel {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(todo.len())
        } else {
            1
        };
        if threads <= 1 {
            for key in &todo {
                let pipeline = self.create(key, cache);
                self.pipelines.insert(key.clone(), pipeline);
            }
            return Ok(start.elapsed());
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let this = &*self;
        let made: Vec<Result<Vec<(usize, wgpu::ComputePipeline)>>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let scopes = crate::gpu::context::ErrorScopes::push(&this.device);
                        let mut out = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(key) = todo.get(i) else { break };
                            out.push((i, this.create(key, cache)));
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
                        Err(Error::Gpu("a pipeline-creating thread panicked".into()))
                    })
                })
                .collect()
        });
        for result in made {
            for (i, pipeline) in result? {
                self.pipelines.insert(todo[i].clone(), pipeline);
            }
        }
        Ok(start.elapsed())
    }

    /// The pipeline for `key`, which [`prepare`](Self::prepare) made.
    pub(crate) fn get(&self, key: &KernelKey) -> Result<wgpu::ComputePipeline> {
        self.pipelines
            .get(key)
            .cloned()
            .ok_or_else(|| Error::Gpu(format!("pipeline {} was not prepared", key.label())))
    }

    fn module(&mut self, shader: &ShaderKey) -> Result<()> {
        if !self.modules.contains_key(shader) {
            let source = shader.source()?;
            let module = self
                .device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(&shader.name()),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                });
            self.modules.insert(shader.clone(), module);
        }
        Ok(())
    }

    /// Creates the pipeline of `key` (its module must exist).
    fn create(
        &self,
        key: &KernelKey,
        cache: Option<&wgpu::PipelineCache>,
    ) -> wgpu::ComputePipeline {
        let module = &self.modules[&key.shader];
        let constants: Vec<(&str, f64)> = key
            .constants
            .iter()
            .map(|&(k, v)| (k, f64::from(v)))
            .collect();
        // Made by `prepare` before any pipeline of this shader.
        let layout = self.layouts.get(&layout_key(&key.shader)).map(|l| &l.1);
        let label = key.label();
        self.device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout,
                module,
                entry_point: Some(key.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache,
            })
    }

    pub(crate) fn count(&self) -> usize {
        self.pipelines.len()
    }
}
