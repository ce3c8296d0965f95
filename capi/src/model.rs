//! The model handle: loading (a checkpoint or the bundled model), freeing, and what a caller may ask
//! about a loaded model.

use std::ffi::{c_char, c_int, CString};
use std::ptr;

use res2net_wgpu::classifier::{Classifier, DeviceChoice};
use res2net_wgpu::gpu::Precision;
use res2net_wgpu::{bundled, Model, Result};

use crate::args;
use crate::boundary;
use crate::features::Features;

/// A loaded model and its executor (GPU sessions or the CPU reference). Opaque: create it with
/// `r2n_model_load`, `r2n_model_load_with` or `r2n_model_bundled`, release it with `r2n_model_free`.
/// One model may serve several threads at once.
#[allow(non_camel_case_types)]
pub struct r2n_model {
    pub(crate) classifier: Classifier,
    /// Backbone mode: the feature points and an extractor per point asked for.
    pub(crate) features: Features,
    arch: CString,
    device: CString,
    fallback: Option<CString>,
    labels: Vec<CString>,
}

// Several threads may use one model at once.
const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<r2n_model>();
};

impl r2n_model {
    fn new(model: Model, device: DeviceChoice, precision: Precision) -> Result<Self> {
        let classifier = Classifier::new(model, device)?.with_precision(precision);
        Ok(r2n_model {
            arch: c_string(classifier.model().name()),
            device: c_string(&classifier.device_name()),
            fallback: classifier.fallback_reason().map(c_string),
            labels: classifier.labels().iter().map(|l| c_string(l)).collect(),
            features: Features::new(&classifier),
            classifier,
        })
    }

    pub(crate) fn num_classes(&self) -> usize {
        self.labels.len()
    }
}

/// `s` as a C string; a NUL inside (never in names this library makes) is escaped.
pub(crate) fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
}

/// The model argument of a call, or a bad input error when it is NULL.
///
/// # Safety
/// A non-NULL `m` must come from one of the constructors and not be freed.
pub(crate) unsafe fn model_arg<'a>(m: *const r2n_model) -> Result<&'a r2n_model> {
    // SAFETY: forwarded contract.
    unsafe { args::non_null(m, "model", "a model from r2n_model_load") }
}

/// Loads a safetensors checkpoint (PyTorch/timm state dict), detecting its architecture, to run on
/// `device` (`R2N_DEVICE_AUTO`, `R2N_DEVICE_GPU` or `R2N_DEVICE_CPU`) with f32 weights.
///
/// Returns NULL on failure; `r2n_last_error` says why.
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn r2n_model_load(path: *const c_char, device: c_int) -> *mut r2n_model {
    // SAFETY: forwarded contract.
    unsafe { r2n_model_load_with(path, ptr::null(), device, crate::R2N_PRECISION_F32) }
}

/// Loads a checkpoint like `r2n_model_load`, as the preset named `arch` (NULL: detect it from the
/// checkpoint; names as `res2net presets` lists them), with GPU weights in `precision`
/// (`R2N_PRECISION_F32` or `R2N_PRECISION_F16`).
///
/// Returns NULL on failure; `r2n_last_error` says why.
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string; so must `arch`.
#[no_mangle]
pub unsafe extern "C" fn r2n_model_load_with(
    path: *const c_char,
    arch: *const c_char,
    device: c_int,
    precision: c_int,
) -> *mut r2n_model {
    boundary::owned(|| {
        // SAFETY: the caller's contract on `path` and `arch`.
        let path = unsafe { args::utf8(path, "path") }?;
        let arch = unsafe { args::optional_utf8(arch, "arch") }?;
        let (device, precision) = (args::device(device)?, args::precision(precision)?);
        let model = match arch {
            Some(a) => Model::load_as(path, a)?,
            None => Model::load(path)?,
        };
        r2n_model::new(model, device, precision)
    })
}

/// The bundled model: a small SE-Res2Net trained on 8x8 digits (classes "0" to "9"), compiled into
/// the library, so an application can try the API without a checkpoint.
///
/// Returns NULL on failure; `r2n_last_error` says why.
#[no_mangle]
pub extern "C" fn r2n_model_bundled(device: c_int, precision: c_int) -> *mut r2n_model {
    boundary::owned(|| {
        let (device, precision) = (args::device(device)?, args::precision(precision)?);
        r2n_model::new(bundled::model()?, device, precision)
    })
}

/// Frees a model and everything it holds (GPU sessions included). NULL is fine. The model must not be
/// in use by another thread.
///
/// # Safety
/// `m` must be NULL or a model from one of the constructors, not freed before.
#[no_mangle]
pub unsafe extern "C" fn r2n_model_free(m: *mut r2n_model) {
    if !m.is_null() {
        // SAFETY: `m` came from `Box::into_raw` in `boundary::owned` and is freed once.
        let model = unsafe { Box::from_raw(m) };
        boundary::quiet((), move || drop(model));
    }
}

/// The number of classes (the length of a logits row); 0 for NULL.
///
/// # Safety
/// `m` must be NULL or a live model.
#[no_mangle]
pub unsafe extern "C" fn r2n_model_num_classes(m: *const r2n_model) -> usize {
    // SAFETY: forwarded contract.
    unsafe { m.as_ref() }.map_or(0, r2n_model::num_classes)
}

/// The architecture: the preset name when the checkpoint equals one (e.g. "res2net50_26w_4s"), else
/// where it came from ("detected config", "metadata config"). NULL for NULL. Valid until the model is
/// freed.
///
/// # Safety
/// `m` must be NULL or a live model.
#[no_mangle]
pub unsafe extern "C" fn r2n_model_arch(m: *const r2n_model) -> *const c_char {
    // SAFETY: forwarded contract.
    unsafe { m.as_ref() }.map_or(ptr::null(), |m| m.arch.as_ptr())
}

/// Where the model runs, in words: the GPU adapter (e.g. "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan,
/// Cpu; one thread per core)") or "cpu". NULL for NULL. Valid until the model is freed.
///
/// # Safety
/// `m` must be NULL or a live model.
#[no_mangle]
pub unsafe extern "C" fn r2n_model_device(m: *const r2n_model) -> *const c_char {
    // SAFETY: forwarded contract.
    unsafe { m.as_ref() }.map_or(ptr::null(), |m| m.device.as_ptr())
}

/// Why `R2N_DEVICE_AUTO` fell back to the CPU; NULL when it did not (or for NULL). Valid until the
/// model is freed.
///
/// # Safety
/// `m` must be NULL or a live model.
#[no_mangle]
pub unsafe extern "C" fn r2n_model_fallback_reason(m: *const r2n_model) -> *const c_char {
    // SAFETY: forwarded contract.
    unsafe { m.as_ref() }
        .and_then(|m| m.fallback.as_ref())
        .map_or(ptr::null(), |c| c.as_ptr())
}

/// The name of class `index` (the checkpoint's own labels, ImageNet's for 1000 classes, else
/// "class N"); NULL when `index` is out of range or `m` is NULL. Valid until the model is freed.
///
/// # Safety
/// `m` must be NULL or a live model.
#[no_mangle]
pub unsafe extern "C" fn r2n_model_label(m: *const r2n_model, index: usize) -> *const c_char {
    // SAFETY: forwarded contract.
    unsafe { m.as_ref() }
        .and_then(|m| m.labels.get(index))
        .map_or(ptr::null(), |c| c.as_ptr())
}

/// The input size images are resized and cropped to by `r2n_model_classify_image` (224x224 for
/// ImageNet models, or the checkpoint's own preprocessing). `r2n_model_infer` accepts any size the
/// network can downsample.
///
/// # Safety
/// `m` must be NULL or a live model; `h` and `w` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn r2n_model_input_size(
    m: *const r2n_model,
    h: *mut usize,
    w: *mut usize,
) -> c_int {
    boundary::status(|| {
        // SAFETY: the caller's contract on `m`.
        let m = unsafe { model_arg(m) }?;
        let [ih, iw] = m.classifier.preprocess().input_size;
        args::check_out_ptr(h, 1, 1, "h", "1 size_t")?;
        args::check_out_ptr(w, 1, 1, "w", "1 size_t")?;
        // SAFETY: both non-NULL and aligned (checked), writable by the caller's contract.
        unsafe {
            h.write(ih);
            w.write(iw);
        }
        Ok(())
    })
}
