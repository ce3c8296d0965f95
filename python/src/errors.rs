//! Library errors as Python exceptions: bad input (what the caller handed in: an array, a checkpoint,
//! an image, an option) raises `ValueError`, anything else `RuntimeError`, with the CLI's one-line
//! message.

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::PyErr;
use res2net_wgpu::error::one_line;
use res2net_wgpu::Error;

pub(crate) fn to_py(e: Error) -> PyErr {
    let message = one_line(&e.to_string());
    if e.is_bad_input() {
        PyValueError::new_err(message)
    } else {
        PyRuntimeError::new_err(message)
    }
}

/// A bad input error about `what`, worded as the library words its own.
pub(crate) fn bad_input(
    what: &str,
    expected: impl Into<String>,
    found: impl Into<String>,
) -> PyErr {
    to_py(Error::Input {
        context: what.into(),
        expected: expected.into(),
        found: found.into(),
    })
}
