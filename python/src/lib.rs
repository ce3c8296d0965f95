//! The native part of the `res2net_wgpu` Python package: a thin layer over the Rust library that
//! converts numpy arrays and Python values, releases the GIL while a model runs, and maps the library's
//! errors to `ValueError` (bad input) and `RuntimeError` (anything else).

mod array;
mod errors;
mod features;
mod model;
mod options;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<model::Model>()?;
    m.add_class::<features::FeaturePoint>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
