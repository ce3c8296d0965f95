//! Running a model: normalized tensors in, logits and probabilities out; or an image file in, its
//! top classes out.

use std::ffi::{c_char, c_int};
use std::path::Path;

use res2net_wgpu::preprocess;

use crate::args::{self, float_count};
use crate::boundary;
use crate::model::{model_arg, r2n_model};

/// Runs `n` images through the model and writes their logits.
///
/// `input`: `n*3*h*w` floats, NCHW, already normalized (as the model was trained: for ImageNet
/// models, RGB in [0, 1] minus mean, divided by std). `logits`: room for `logits_len` floats, at least
/// `n * r2n_model_num_classes(m)`; row `i` is image `i`'s logits.
///
/// Returns `R2N_OK`, `R2N_BAD_INPUT` (a NULL pointer, `logits_len` too small, sizes whose product
/// overflows, an input the network cannot take, a NaN or infinity in the input) or `R2N_ERROR`;
/// `r2n_last_error` says why. Several threads may call this on one model at once.
///
/// # Safety
/// `m` must be NULL or a live model; `input` NULL or `n*3*h*w` readable floats; `logits` NULL or
/// `logits_len` writable floats.
#[no_mangle]
pub unsafe extern "C" fn r2n_model_infer(
    m: *mut r2n_model,
    input: *const f32,
    n: usize,
    h: usize,
    w: usize,
    logits: *mut f32,
    logits_len: usize,
) -> c_int {
    boundary::status(|| {
        let outputs = [Out::required(logits, logits_len, "logits")];
        // SAFETY: the caller's contract on every pointer.
        unsafe { infer_into(m, input, n, h, w, outputs) }
    })
}

/// Like `r2n_model_infer`, writing the logits and the softmax probabilities (each `n * classes`
/// floats). Either output may be NULL to skip it.
///
/// # Safety
/// As for `r2n_model_infer`; `probs` NULL or `probs_len` writable floats.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn r2n_model_infer_probs(
    m: *mut r2n_model,
    input: *const f32,
    n: usize,
    h: usize,
    w: usize,
    logits: *mut f32,
    logits_len: usize,
    probs: *mut f32,
    probs_len: usize,
) -> c_int {
    boundary::status(|| {
        let outputs = [
            Out::optional(logits, logits_len, "logits"),
            Out::optional(probs, probs_len, "probs"),
        ];
        // SAFETY: the caller's contract on every pointer.
        unsafe { infer_into(m, input, n, h, w, outputs) }
    })
}

/// A caller's output buffer.
struct Out {
    ptr: *mut f32,
    capacity: usize,
    what: &'static str,
    required: bool,
}

impl Out {
    fn required(ptr: *mut f32, capacity: usize, what: &'static str) -> Self {
        Out {
            ptr,
            capacity,
            what,
            required: true,
        }
    }

    fn optional(ptr: *mut f32, capacity: usize, what: &'static str) -> Self {
        Out {
            required: false,
            ..Out::required(ptr, capacity, what)
        }
    }

    fn used(&self) -> bool {
        self.required || !self.ptr.is_null()
    }
}

/// Checks every argument (outputs first, so a bad buffer costs no work), runs the batch and writes
/// the logits then the probabilities to the outputs in that order.
///
/// # Safety
/// As for `r2n_model_infer`, for every output.
unsafe fn infer_into<const N: usize>(
    m: *const r2n_model,
    input: *const f32,
    n: usize,
    h: usize,
    w: usize,
    outputs: [Out; N],
) -> res2net_wgpu::Result<()> {
    // SAFETY: the caller's contract on `m`.
    let m = unsafe { model_arg(m) }?;
    let classes = m.num_classes();
    let needed = float_count("output size", &[("n", n), ("classes", classes)])?;
    let words = format!("{needed} floats ({n} images x {classes} classes)");
    for out in outputs.iter().filter(|o| o.used()) {
        args::check_out_ptr(out.ptr, out.capacity, needed, out.what, &words)?;
    }
    let len = float_count("input size", &[("n", n), ("3", 3), ("h", h), ("w", w)])?;
    // SAFETY: the caller's contract: `input` holds n*3*h*w floats.
    let input = unsafe { args::floats(input, len, "input") }?;
    let result = m.classifier.run_tensor(input, n, h, w)?;
    let values = [&result.logits, &result.probs];
    for (out, values) in outputs.iter().zip(values).filter(|(o, _)| o.used()) {
        // SAFETY: checked above; writable by the caller's contract.
        unsafe { args::write_floats(out.ptr, out.capacity, values, out.what, &words) }?;
    }
    Ok(())
}

/// Decodes a PNG or JPEG file, preprocesses it as the model expects (see `r2n_model_input_size`) and
/// writes its `k` most probable classes, most probable first: indices to `classes`, probabilities to
/// `probs` (each room for `k` values, `1 <= k <= r2n_model_num_classes(m)`). `r2n_model_label` names
/// the classes.
///
/// Returns `R2N_OK`, `R2N_BAD_INPUT` (a NULL pointer, `k` out of range, a path that is not UTF-8, a
/// missing file, a file that is not an image) or `R2N_ERROR`; `r2n_last_error` says why.
///
/// # Safety
/// `m` must be NULL or a live model; `path` NULL or a NUL-terminated string; `classes` and `probs`
/// NULL or `k` writable values each.
#[no_mangle]
pub unsafe extern "C" fn r2n_model_classify_image(
    m: *mut r2n_model,
    path: *const c_char,
    k: usize,
    classes: *mut usize,
    probs: *mut f32,
) -> c_int {
    boundary::status(|| {
        // SAFETY: the caller's contract on every pointer.
        let m = unsafe { model_arg(m) }?;
        let path = unsafe { args::utf8(path, "path") }?;
        let total = m.num_classes();
        if k == 0 || k > total {
            return Err(args::bad(
                "k",
                format!("1 to {total} classes"),
                k.to_string(),
            ));
        }
        let words = format!("{k} values");
        args::check_out_ptr(classes, k, k, "classes", &words)?;
        args::check_out_ptr(probs, k, k, "probs", &words)?;
        let image = preprocess::load_image(Path::new(path))?;
        let top = m.classifier.classify(&[image], k)?;
        let top = top.first().map(Vec::as_slice).unwrap_or_default();
        for (i, p) in top.iter().enumerate().take(k) {
            // SAFETY: room for `k` values of each was checked; the caller's contract makes them
            // writable.
            unsafe {
                classes.add(i).write(p.class);
                probs.add(i).write(p.prob);
            }
        }
        Ok(())
    })
}
