//! The device a session runs on: either one this crate opens (honouring `WGPU_BACKEND`,
//! `WGPU_ADAPTER_NAME` and `WGPU_POWER_PREF`), or the caller's own `wgpu::Device`/`Queue`.
//!
//! A device this crate opens reports uncaptured errors and device loss into shared state instead of
//! wgpu's default (a panic), so a broken device turns into an `Error::Gpu` on the next call. Work done
//! by this crate is always wrapped in error scopes, so on a caller's device the caller's own error
//! handler is left alone.

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};

use super::autotune::TuneStore;
use super::kernels::Pipelines;

use crate::error::{Error, Result};

/// What happened to the device behind our back: loss, or errors outside any error scope.
#[derive(Default)]
struct Health {
    lost: Mutex<Option<String>>,
    uncaptured: Mutex<Option<String>>,
}

/// A wgpu device and queue, shared by every session built on it (cloning is cheap).
#[derive(Clone)]
pub struct GpuContext {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    health: Arc<Health>,
    /// The device's pipelines, shared by every session on it (made on first use).
    pipelines: Arc<OnceLock<Mutex<Pipelines>>>,
    /// The device's tuned conv families (loaded from disk on first use).
    tuned: Arc<Mutex<TuneStore>>,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.info.name)
            .field("backend", &self.info.backend)
            .finish()
    }
}

/// How to get an adapter on a machine that has none.
const NO_ADAPTER_HINT: &str = "no GPU adapter found (on headless Linux install mesa-vulkan-drivers for lavapipe, or set WGPU_BACKEND=gl for llvmpipe)";

impl GpuContext {
    /// Opens the default adapter (blocking). See [`GpuContext::new_async`].
    pub fn new() -> Result<Self> {
        pollster::block_on(Self::new_async())
    }

    /// Opens an adapter chosen by wgpu's environment variables (`WGPU_BACKEND=vulkan|metal|dx12|gl`,
    /// `WGPU_ADAPTER_NAME`, `WGPU_POWER_PREF`) and a device with every limit the adapter offers (large
    /// storage buffers matter for big batches).
    pub async fn new_async() -> Result<Self> {
        let adapter = open_adapter().await?;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("res2net"),
                // Timestamps for `Session::profile`, a pipeline cache for warm starts: both only
                // where the adapter has them (neither costs anything until used).
                // SUBGROUP enables the subgroup-sharing conv kernels (chosen per adapter, with a
                // fallback where it is missing). SHADER_F16 enables sessions with f16 weights
                // (`Precision::F16`); f32 sessions never use it.
                required_features: adapter.features()
                    & (wgpu::Features::TIMESTAMP_QUERY
                        | wgpu::Features::PIPELINE_CACHE
                        | wgpu::Features::SUBGROUP
                        | wgpu::Features::SHADER_F16),
                required_limits: adapter.limits(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| {
                Error::Gpu(format!(
                    "could not open a device on {} ({:?}): {e}",
                    adapter.get_info().name,
                    adapter.get_info().backend
                ))
            })?;

        let health = Arc::new(Health::default());
        let h = Arc::clone(&health);
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut lost) = h.lost.lock() {
                *lost = Some(if message.is_empty() {
                    format!("{reason:?}")
                } else {
                    format!("{reason:?}: {message}")
                });
            }
        });
        let h = Arc::clone(&health);
        device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
            if let Ok(mut slot) = h.uncaptured.lock() {
                slot.get_or_insert_with(|| error.to_string());
            }
        }));
        Ok(GpuContext {
            info: adapter.get_info(),
            device,
            queue,
            health,
            pipelines: Arc::default(),
            tuned: Arc::default(),
        })
    }

    /// Wraps a device and queue the caller already has (e.g. a renderer's). The caller's error handler
    /// and device-lost callback are kept; this crate catches its own errors with error scopes.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        GpuContext {
            info: device.adapter_info(),
            device,
            queue,
            health: Arc::new(Health::default()),
            pipelines: Arc::default(),
            tuned: Arc::default(),
        }
    }

    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// The device's pipeline store (shared by every session on this device).
    pub(crate) fn pipelines(&self) -> &Mutex<Pipelines> {
        self.pipelines
            .get_or_init(|| Mutex::new(Pipelines::new(&self.device, self.info.backend)))
    }

    /// The device's tuned conv family choices.
    pub(crate) fn tune_store(&self) -> &Mutex<TuneStore> {
        &self.tuned
    }

    /// Compute pipelines created on this device so far (every session shares them).
    pub fn pipeline_count(&self) -> usize {
        self.pipelines().lock().map_or(0, |p| p.count())
    }

    /// Name, backend and driver of the adapter.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// One line describing the adapter, for reports: `llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu;
    /// 16 threads (LP_NUM_THREADS))`, the threads only for llvmpipe.
    pub fn describe(&self) -> String {
        let threads = super::llvmpipe::threads_note(&self.info.name)
            .map(|t| format!("; {t}"))
            .unwrap_or_default();
        format!(
            "{} ({:?}, {:?}{threads})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// `Err` when the device was lost or reported an error outside any error scope.
    pub(crate) fn check_health(&self) -> Result<()> {
        if let Some(reason) = self.health.lost.lock().ok().and_then(|l| l.clone()) {
            return Err(Error::Gpu(format!(
                "the device was lost ({reason}); build a new context and session"
            )));
        }
        if let Some(message) = self
            .health
            .uncaptured
            .lock()
            .ok()
            .and_then(|mut u| u.take())
        {
            return Err(Error::Gpu(format!("uncaptured device error: {message}")));
        }
        Ok(())
    }
}

/// The adapter chosen by `WGPU_BACKEND` (and wgpu's other variables) when set; otherwise the first
/// found on the primary backends (Vulkan, Metal, DX12), then on OpenGL. Trying OpenGL only when there is
/// nothing better keeps EGL from probing (and complaining about) display servers a headless machine
/// does not have.
async fn open_adapter() -> Result<wgpu::Adapter> {
    let explicit = std::env::var_os("WGPU_BACKEND").is_some();
    let tiers: &[Option<wgpu::Backends>] = if explicit {
        &[None]
    } else {
        &[
            Some(wgpu::Backends::PRIMARY),
            Some(wgpu::Backends::SECONDARY),
        ]
    };
    let mut last = String::from("no backend tried");
    for tier in tiers {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        if let Some(backends) = tier {
            desc.backends = *backends;
        }
        let instance = wgpu::Instance::new(desc);
        match wgpu::util::initialize_adapter_from_env_or_default(&instance, None).await {
            Ok(adapter) => return Ok(adapter),
            Err(e) => last = e.to_string(),
        }
    }
    Err(Error::Gpu(format!("{NO_ADAPTER_HINT}: {last}")))
}

/// Validation, out-of-memory and internal error scopes around a piece of work, popped together.
pub(crate) struct ErrorScopes {
    guards: Vec<wgpu::ErrorScopeGuard>,
}

impl ErrorScopes {
    pub(crate) fn push(device: &wgpu::Device) -> Self {
        let guards = [
            wgpu::ErrorFilter::Internal,
            wgpu::ErrorFilter::OutOfMemory,
            wgpu::ErrorFilter::Validation,
        ]
        .into_iter()
        .map(|f| device.push_error_scope(f))
        .collect();
        ErrorScopes { guards }
    }

    /// Pops the scopes now (innermost first) and returns a future that yields the first error any
    /// of them caught, described with `what` (e.g. "building the session").
    pub(crate) fn pop(self, what: &'static str) -> impl Future<Output = Result<()>> + Send {
        let futures: Vec<_> = self.guards.into_iter().rev().map(|g| g.pop()).collect();
        async move {
            for f in futures {
                if let Some(e) = f.await {
                    return Err(Error::Gpu(format!("{what}: {e}")));
                }
            }
            Ok(())
        }
    }
}
