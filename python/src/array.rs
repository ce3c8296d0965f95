//! numpy arrays in and out. An input is read in its logical (C) order whatever its strides, and
//! real-valued dtypes other than float32 are converted, so an array is never misread; anything else is
//! refused with a `ValueError`.

use numpy::ndarray::{Array2, Array4};
use numpy::{IntoPyArray, PyArray2, PyArray4, PyArrayDescrMethods, PyArrayDyn, PyUntypedArray};
use numpy::{PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::errors::bad_input;

/// A batch of images as the library takes it.
pub(crate) struct Batch {
    pub data: Vec<f32>,
    pub n: usize,
    pub h: usize,
    pub w: usize,
}

const EXPECTED: &str = "a float32 array of shape [N, 3, H, W]";

/// Reads `x` (a numpy array, or anything `numpy.asarray` takes) as a `[N, 3, H, W]` float32 batch,
/// copied so the caller may change the array while the model runs.
pub(crate) fn batch(x: &Bound<'_, PyAny>) -> PyResult<Batch> {
    let py = x.py();
    let array = match x.cast::<PyUntypedArray>() {
        Ok(a) => a.clone(),
        Err(_) => py
            .import("numpy")?
            .call_method1("asarray", (x,))?
            .cast_into::<PyUntypedArray>()
            .map_err(PyErr::from)?,
    };
    let shape = array.shape().to_vec();
    if shape.len() != 4 || shape[1] != 3 {
        return Err(bad_input("array", EXPECTED, format!("shape {shape:?}")));
    }
    let typed = match array.cast::<PyArrayDyn<f32>>() {
        Ok(a) => a.clone(),
        Err(_) => {
            let dtype = array.dtype();
            // Real numbers only: floats of other widths or byte orders, and integers.
            if !matches!(dtype.kind(), b'f' | b'i' | b'u') {
                return Err(bad_input(
                    "array",
                    EXPECTED,
                    format!("dtype {}", dtype.str()?),
                ));
            }
            array
                .call_method1("astype", ("float32",))?
                .cast_into::<PyArrayDyn<f32>>()
                .map_err(PyErr::from)?
        }
    };
    let view = typed.try_readonly()?;
    // `as_slice` also accepts Fortran order, whose memory order is not the logical one: only a
    // C-contiguous array is copied as it lies; any other layout is read in logical order.
    let data = match view.as_slice() {
        Ok(memory) if typed.is_c_contiguous() => memory.to_vec(),
        _ => view.as_array().iter().copied().collect(),
    };
    Ok(Batch {
        data,
        n: shape[0],
        h: shape[2],
        w: shape[3],
    })
}

/// `[rows, cols]` values as a float32 numpy array.
pub(crate) fn matrix<'py>(
    py: Python<'py>,
    values: Vec<f32>,
    rows: usize,
    cols: usize,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let array = Array2::from_shape_vec((rows, cols), values).map_err(|e| {
        pyo3::exceptions::PyRuntimeError::new_err(format!(
            "output: expected {rows} x {cols} values, found: {e}"
        ))
    })?;
    Ok(array.into_pyarray(py))
}

/// `[n, c, h, w]` values as a float32 numpy array.
pub(crate) fn tensor4<'py>(
    py: Python<'py>,
    values: Vec<f32>,
    shape: [usize; 4],
) -> PyResult<Bound<'py, PyArray4<f32>>> {
    let [n, c, h, w] = shape;
    let array = Array4::from_shape_vec((n, c, h, w), values).map_err(|e| {
        pyo3::exceptions::PyRuntimeError::new_err(format!(
            "output: expected {shape:?} values, found: {e}"
        ))
    })?;
    Ok(array.into_pyarray(py))
}
