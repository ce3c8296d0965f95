//! The string options of `Model(...)`: device and precision.

use pyo3::PyResult;
use res2net_wgpu::classifier::DeviceChoice;
use res2net_wgpu::gpu::Precision;

use crate::errors::{bad_input, to_py};

pub(crate) fn device(name: &str) -> PyResult<DeviceChoice> {
    match name {
        "auto" => Ok(DeviceChoice::Auto),
        "gpu" => Ok(DeviceChoice::Gpu),
        "cpu" => Ok(DeviceChoice::Cpu),
        other => Err(bad_input(
            "device",
            "auto, gpu or cpu",
            format!("'{other}'"),
        )),
    }
}

pub(crate) fn precision(name: &str) -> PyResult<Precision> {
    name.parse().map_err(to_py)
}
