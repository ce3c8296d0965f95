//! The C API of res2net-wgpu: load a Res2Net checkpoint (or the bundled digits model) and run it on a
//! GPU or the CPU from any language with a C FFI, as a classifier or as a backbone returning feature
//! maps. Every function is a thin layer over the Rust library
//! ([`res2net_wgpu::classifier::Classifier`] and [`res2net_wgpu::features::FeatureExtractor`]); none
//! of its logic is repeated here.
//!
//! Conventions, for every exported function:
//! - Functions that can fail return `R2N_OK` (0), `R2N_BAD_INPUT` (2: the caller handed in something
//!   wrong — a NULL pointer, a short buffer, a broken checkpoint, an input of the wrong size) or
//!   `R2N_ERROR` (1: anything else, e.g. a lost GPU), or NULL for constructors; `r2n_last_error`
//!   then says what was expected and what was found, on one line.
//! - No Rust panic crosses the boundary: one is caught and reported as `R2N_ERROR`.
//! - A model may be used from several threads at once; only `r2n_model_free` must not race with
//!   other calls on the same model.
//!
//! `capi/include/res2net.h` is generated from these sources by cbindgen (`capi/header`: a test fails
//! when the committed header is stale).

// The header lists the functions in the order of these four modules.
mod last_error;

mod model;

mod infer;

mod features;

mod args;
mod boundary;

use std::ffi::{c_char, c_int};

pub use features::{
    r2n_model_feature_count, r2n_model_feature_point, r2n_model_feature_shape, r2n_model_features,
};
pub use infer::{r2n_model_classify_image, r2n_model_infer, r2n_model_infer_probs};
pub use last_error::{r2n_last_error, r2n_last_status};
pub use model::{
    r2n_model, r2n_model_arch, r2n_model_bundled, r2n_model_device, r2n_model_fallback_reason,
    r2n_model_free, r2n_model_input_size, r2n_model_label, r2n_model_load, r2n_model_load_with,
    r2n_model_num_classes,
};

/// Success.
pub const R2N_OK: c_int = 0;
/// A failure that is not the caller's input: no GPU, a lost device, an internal error.
pub const R2N_ERROR: c_int = 1;
/// The caller's input was refused: a NULL pointer, a buffer too short, sizes whose product overflows,
/// a path that is not UTF-8, a broken checkpoint or image, an input of the wrong size. The CLI exits
/// with this code for the same errors.
pub const R2N_BAD_INPUT: c_int = 2;

/// Run on a GPU when an adapter exists, else on the CPU (see `r2n_model_fallback_reason`).
pub const R2N_DEVICE_AUTO: c_int = 0;
/// Run on a GPU; loading fails when there is no adapter.
pub const R2N_DEVICE_GPU: c_int = 1;
/// Run on the CPU reference executor.
pub const R2N_DEVICE_CPU: c_int = 2;

/// GPU weights in f32 (the default; the CPU always computes in f32).
pub const R2N_PRECISION_F32: c_int = 0;
/// GPU weights stored as f16, sums in f32 (needs the adapter's SHADER_F16: without it the first
/// inference fails with an error naming the feature).
pub const R2N_PRECISION_F16: c_int = 1;

/// The library's version, e.g. "0.1.0". Static storage: never free it.
#[no_mangle]
pub extern "C" fn r2n_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
