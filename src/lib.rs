//! # res2net-wgpu
//!
//! Runs the Res2Net family of image classifiers (every published variant, and the seed document's
//! SE-Res2Net) from PyTorch/timm checkpoints saved as safetensors, on a CPU reference executor and on any
//! GPU through wgpu.
//!
//! ```
//! use res2net_wgpu::{arch, cpu, Model};
//!
//! // A small seed-flavour SE-Res2Net with random weights; `Model::load(path)` reads a checkpoint.
//! let config = arch::seed([1, 1, 1, 1], 10, 2, 4, 1, true);
//! let model = Model::from_config(&config, 7)?;
//! let graph = model.graph(32, 32)?;
//! let input = vec![0.5f32; 3 * 32 * 32];
//! let out = cpu::forward(&graph, &input, 1)?;
//! assert_eq!(out.probs.len(), 10);
//! assert!((out.probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
//! # Ok::<(), res2net_wgpu::Error>(())
//! ```

pub mod arch;
pub mod bench;
pub mod bundled;
pub mod cam;
pub mod checkpoint;
pub mod classifier;
pub mod cpu;
pub mod error;
pub mod executor;
pub mod features;
pub mod gpu;
pub mod graph;
pub mod labels;
pub mod model;
pub mod output_file;
mod per_shape;
pub mod preprocess;
pub mod tensor_io;
pub mod verify;

pub use arch::Res2NetConfig;
pub use error::{Error, Result};
pub use model::Model;
