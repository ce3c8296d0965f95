//! Backbone mode: the model's feature points (timm's `features_only` maps, counted as `out_indices`
//! counts them) and the feature map of one point for a batch, for detectors and segmenters.
//!
//! Each call asks for one point; the model keeps one extractor per point, built on first use from
//! the model's classifier ([`Classifier::feature_extractor`]), so on a GPU it shares the weights
//! already uploaded for inference instead of holding a second copy. A point's network stops at that
//! point: asking for an early level does not run the later layers, and asking for several levels
//! runs their common early layers once per call.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, CString};
use std::sync::{Arc, Mutex};

use res2net_wgpu::classifier::Classifier;
use res2net_wgpu::features::FeatureExtractor;
use res2net_wgpu::{Error, Result};

use crate::args::{self, float_count};
use crate::boundary;
use crate::model::{c_string, model_arg, r2n_model};

/// A feature point as C callers read it.
struct Point {
    name: CString,
    channels: usize,
    reduction: usize,
}

/// The model's feature points and an extractor per point asked for so far.
pub(crate) struct Features {
    points: Vec<Point>,
    extractors: Mutex<HashMap<usize, Arc<FeatureExtractor>>>,
}

impl Features {
    pub(crate) fn new(classifier: &Classifier) -> Self {
        let points = classifier
            .model()
            .config()
            .feature_points()
            .into_iter()
            .map(|p| Point {
                name: c_string(&p.name),
                channels: p.channels,
                reduction: p.reduction,
            })
            .collect();
        Features {
            points,
            extractors: Mutex::new(HashMap::new()),
        }
    }

    /// The extractor of point `index`, built on first use; an index out of range is the library's
    /// input error listing the points.
    fn extractor(&self, classifier: &Classifier, index: usize) -> Result<Arc<FeatureExtractor>> {
        let mut extractors = self
            .extractors
            .lock()
            .map_err(|_| Error::Gpu("feature extractors poisoned by an earlier panic".into()))?;
        if let Some(e) = extractors.get(&index) {
            return Ok(e.clone());
        }
        let e = Arc::new(classifier.feature_extractor(Some(&[index]))?);
        extractors.insert(index, e.clone());
        Ok(e)
    }
}

/// The number of feature points (valid `index` values are 0 to this minus 1); 0 for NULL.
///
/// # Safety
/// `m` must be NULL or a live model.
#[no_mangle]
pub unsafe extern "C" fn r2n_model_feature_count(m: *const r2n_model) -> usize {
    // SAFETY: forwarded contract.
    unsafe { m.as_ref() }.map_or(0, |m| m.features.points.len())
}

/// Feature point `index`: its module name (e.g. "act1", "layer1".."layer4", or "level0".."level5"
/// for DLA models; valid until the model is freed), its channels and its nominal stride against the
/// input. Any of `name`, `channels`, `reduction` may be NULL to skip it.
///
/// Returns `R2N_OK`, or `R2N_BAD_INPUT` (`m` NULL, `index` out of range); `r2n_last_error` says why.
///
/// # Safety
/// `m` must be NULL or a live model; `name`, `channels` and `reduction` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn r2n_model_feature_point(
    m: *const r2n_model,
    index: usize,
    name: *mut *const c_char,
    channels: *mut usize,
    reduction: *mut usize,
) -> c_int {
    boundary::status(|| {
        // SAFETY: the caller's contract on `m`.
        let m = unsafe { model_arg(m) }?;
        let points = &m.features.points;
        let point = points.get(index).ok_or_else(|| {
            args::bad(
                "index",
                format!(
                    "a feature point from 0 to {}",
                    points.len().saturating_sub(1)
                ),
                index.to_string(),
            )
        })?;
        if !name.is_null() {
            args::check_out_ptr(name, 1, 1, "name", "1 pointer")?;
            // SAFETY: non-NULL and aligned (checked), writable by the caller's contract.
            unsafe { name.write(point.name.as_ptr()) };
        }
        for (out, value, what) in [
            (channels, point.channels, "channels"),
            (reduction, point.reduction, "reduction"),
        ] {
            if !out.is_null() {
                args::check_out_ptr(out, 1, 1, what, "1 size_t")?;
                // SAFETY: non-NULL and aligned (checked), writable by the caller's contract.
                unsafe { out.write(value) };
            }
        }
        Ok(())
    })
}

/// The shape `[n, channels, height, width]` of feature point `index`'s map for `n` images of
/// `h x w`, written to `shape` (room for 4 values), without running the network (the executor it
/// builds is kept for `r2n_model_features`).
///
/// Returns `R2N_OK`, `R2N_BAD_INPUT` (a NULL pointer, `index` out of range, an input size the network
/// cannot take) or `R2N_ERROR`; `r2n_last_error` says why.
///
/// # Safety
/// `m` must be NULL or a live model; `shape` NULL or 4 writable values.
#[no_mangle]
pub unsafe extern "C" fn r2n_model_feature_shape(
    m: *mut r2n_model,
    index: usize,
    n: usize,
    h: usize,
    w: usize,
    shape: *mut usize,
) -> c_int {
    boundary::status(|| {
        // SAFETY: the caller's contract on `m`.
        let m = unsafe { model_arg(m) }?;
        args::check_out_ptr(shape, 4, 4, "shape", "4 size_t")?;
        let extractor = m.features.extractor(&m.classifier, index)?;
        let dims = one(extractor.shapes(n, h, w)?)?;
        // SAFETY: room for 4 values was checked; writable by the caller's contract.
        unsafe { std::ptr::copy_nonoverlapping(dims.as_ptr(), shape, 4) };
        Ok(())
    })
}

/// Runs `n` images through the model up to feature point `index` and writes its map, `[n, channels,
/// height, width]` row-major as `r2n_model_feature_shape` gives it.
///
/// `input`: `n*3*h*w` floats, NCHW, normalized as for `r2n_model_infer`. `out`: room for `out_len`
/// floats, at least the product of the map's shape.
///
/// Returns `R2N_OK`, `R2N_BAD_INPUT` (a NULL pointer, `index` out of range, `out_len` too small,
/// sizes whose product overflows, an input the network cannot take, a NaN or infinity in the input)
/// or `R2N_ERROR`; `r2n_last_error` says why. Several threads may call this on one model at once.
///
/// # Safety
/// `m` must be NULL or a live model; `input` NULL or `n*3*h*w` readable floats; `out` NULL or
/// `out_len` writable floats.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn r2n_model_features(
    m: *mut r2n_model,
    input: *const f32,
    n: usize,
    h: usize,
    w: usize,
    index: usize,
    out: *mut f32,
    out_len: usize,
) -> c_int {
    boundary::status(|| {
        // SAFETY: the caller's contract on `m`.
        let m = unsafe { model_arg(m) }?;
        let extractor = m.features.extractor(&m.classifier, index)?;
        let len = float_count("input size", &[("n", n), ("3", 3), ("h", h), ("w", w)])?;
        let [_, c, fh, fw] = one(extractor.shapes(n, h, w)?)?;
        let sizes = [("n", n), ("channels", c), ("height", fh), ("width", fw)];
        let needed = float_count("output size", &sizes)?;
        let words = format!("{needed} floats ([{n}, {c}, {fh}, {fw}])");
        args::check_out_ptr(out, out_len, needed, "out", &words)?;
        // SAFETY: the caller's contract: `input` holds n*3*h*w floats.
        let input = unsafe { args::floats(input, len, "input") }?;
        let map = one(extractor.run(input, n, h, w)?)?;
        // SAFETY: checked above; writable by the caller's contract.
        unsafe { args::write_floats(out, out_len, &map.data, "out", &words) }
    })
}

/// The only element of a one-point extractor's result.
fn one<T>(v: Vec<T>) -> Result<T> {
    let found = v.len();
    let mut v = v.into_iter();
    match (v.next(), v.next()) {
        (Some(x), None) => Ok(x),
        _ => Err(Error::Gpu(format!("expected 1 feature map, found {found}"))),
    }
}
