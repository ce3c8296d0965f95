//! What the classifier and the feature extractor share: choosing the device, and keeping one executor
//! (GPU session or CPU graph) per input shape, built on first use and reused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::classifier::DeviceChoice;
use crate::error::{Error, Result};
use crate::gpu::GpuContext;

/// The GPU context for `device`, or `None` for the CPU; with [`DeviceChoice::Auto`] and no adapter,
/// also the reason for falling back to the CPU.
pub(crate) fn context_for(device: DeviceChoice) -> Result<(Option<GpuContext>, Option<String>)> {
    Ok(match device {
        DeviceChoice::Cpu => (None, None),
        DeviceChoice::Gpu => (Some(GpuContext::new()?), None),
        DeviceChoice::Auto => match GpuContext::new() {
            Ok(ctx) => (Some(ctx), None),
            Err(e) => (None, Some(e.to_string())),
        },
    })
}

/// Executors by `(batch, height, width)`.
pub(crate) struct ByShape<T>(Mutex<HashMap<(usize, usize, usize), Arc<T>>>);

impl<T> ByShape<T> {
    pub fn new() -> Self {
        ByShape(Mutex::new(HashMap::new()))
    }

    /// The executor for `shape`, built by `build` the first time (under the lock, so two threads
    /// asking at once build it once).
    pub fn get_or_build(
        &self,
        shape: (usize, usize, usize),
        build: impl FnOnce() -> Result<T>,
    ) -> Result<Arc<T>> {
        let mut cache = self
            .0
            .lock()
            .map_err(|_| Error::Gpu("executor cache poisoned by an earlier panic".into()))?;
        if let Some(e) = cache.get(&shape) {
            return Ok(e.clone());
        }
        let e = Arc::new(build()?);
        cache.insert(shape, e.clone());
        Ok(e)
    }

    /// Forgets every executor (after a setting they were built with changed).
    pub fn clear(&mut self) {
        if let Ok(cache) = self.0.get_mut() {
            cache.clear();
        }
    }
}
