//! The GPU executor: the same [`Graph`](crate::graph::Graph) the CPU reference runs, on any adapter
//! wgpu supports (Vulkan, Metal, DX12, OpenGL), through WGSL compute shaders in `shaders/`.
//!
//! - [`context`]: the adapter and device (opened here, or the caller's own), and its pipelines.
//! - [`kernels`]: the kernel families, one module each (eligibility, tile, weight packing, uniforms,
//!   dispatch size, pipeline keys and variants), over `shaders/*.wgsl`.
//! - [`wgsl`]: the shader preprocessor (`#import`, `#ifdef`), [`uniforms`]: every uniform struct,
//!   declared once for Rust and WGSL.
//! - `lower`: graph node -> dispatch, by asking the node's family.
//! - [`tune`]: which conv family runs each conv on this adapter; [`autotune`]: timing the families
//!   per conv shape at session build, cached per adapter.
//! - [`plan`]: the activation arena (liveness-based reuse).
//! - [`DeviceWeights`]: a model's packed weights on a device, shared by all its sessions.
//! - [`Session`]: everything built once per (graph, batch); a run records one command buffer from a
//!   recording (a list of copies and passes).
//! - [`host_clock`]: the CPU time a forward pass costs the calling thread.
//! - [`profile`]: per-op GPU time from timestamp queries ([`Session::profile`]).
//! - [`pipeline_cache`]: compiled pipelines kept on disk between processes (Vulkan).
//! - [`llvmpipe`]: how many threads Mesa's CPU driver computes on.
//!
//! ```no_run
//! use res2net_wgpu::{arch, gpu, Model};
//!
//! let model = Model::from_config(&arch::seed([1, 1, 1, 1], 10, 2, 4, 1, true), 7)?;
//! let graph = model.graph(32, 32)?;
//! let ctx = gpu::GpuContext::new()?;
//! let session = gpu::Session::new(&ctx, &graph, 1)?;
//! let out = session.run(&vec![0.5f32; 3 * 32 * 32])?;
//! assert_eq!(out.probs.len(), 10);
//! # Ok::<(), res2net_wgpu::Error>(())
//! ```

pub mod autotune;
pub mod context;
pub mod host_clock;
pub mod kernels;
pub mod llvmpipe;
mod lower;
pub mod peak;
pub mod pipeline_cache;
pub mod plan;
pub mod profile;
mod readback;
mod session;
pub mod texture;
pub mod tune;
pub mod uniforms;
mod upload;
mod weights;
pub mod wgsl;

pub use autotune::{Tune, TuneReport};
pub use context::GpuContext;
pub use host_clock::{HostClock, HostCost};
pub use pipeline_cache::{PipelineCacheReport, PipelineCacheSetting};
pub use profile::{Profile, ProfileSource};
pub use session::{
    pipeline_keys, ArenaSlice, BuildStats, Session, SessionOptions, DEFAULT_TIMEOUT,
};
pub use tune::{ConvKernel, Precision};
pub use weights::DeviceWeights;
