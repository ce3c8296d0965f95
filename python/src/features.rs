//! Backbone mode: `Model.features` and `Model.points`. The model keeps one extractor per set of
//! feature points asked for, made from its classifier
//! ([`Classifier::feature_extractor`](res2net_wgpu::classifier::Classifier::feature_extractor)), so
//! on a GPU every extractor shares the weights already uploaded for inference.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use res2net_wgpu::arch::FeaturePoint as RustPoint;
use res2net_wgpu::classifier::Classifier;
use res2net_wgpu::features::{FeatureExtractor, FeatureMap};
use res2net_wgpu::{Error, Result};

/// One feature point of a model: where a feature map is taken (timm's `feature_info`).
///
/// index: its key in `out_indices` and in the dict `Model.features` returns. name: the module whose
/// output it is ("act1", "layer1".."layer4"; "level0".."level5" for DLA models). channels: the map's
/// channels. reduction: its nominal stride against the input.
#[pyclass(frozen, module = "res2net_wgpu", get_all)]
pub(crate) struct FeaturePoint {
    index: usize,
    name: String,
    channels: usize,
    reduction: usize,
}

impl From<RustPoint> for FeaturePoint {
    fn from(p: RustPoint) -> Self {
        FeaturePoint {
            index: p.index,
            name: p.name,
            channels: p.channels,
            reduction: p.reduction,
        }
    }
}

#[pymethods]
impl FeaturePoint {
    fn __repr__(&self) -> String {
        format!(
            "FeaturePoint(index={}, name={:?}, channels={}, reduction={})",
            self.index, self.name, self.channels, self.reduction
        )
    }
}

/// The extractors of one model, by the (checked, ascending) indices they return.
pub(crate) struct Extractors(Mutex<HashMap<Vec<usize>, Arc<FeatureExtractor>>>);

impl Extractors {
    pub(crate) fn new() -> Self {
        Extractors(Mutex::new(HashMap::new()))
    }

    /// Runs `classifier`'s model as a backbone returning `out_indices` (the architecture's defaults
    /// when `None`; a bad list is the library's input error).
    pub(crate) fn run(
        &self,
        classifier: &Classifier,
        out_indices: Option<&[usize]>,
        input: &[f32],
        (n, h, w): (usize, usize, usize),
    ) -> Result<Vec<FeatureMap>> {
        let indices = classifier.model().config().out_indices(out_indices)?;
        let extractor = {
            let mut cache = self.0.lock().map_err(|_| {
                Error::Gpu("feature extractors poisoned by an earlier panic".into())
            })?;
            match cache.get(&indices) {
                Some(e) => e.clone(),
                None => {
                    let e = Arc::new(classifier.feature_extractor(Some(&indices))?);
                    cache.insert(indices, e.clone());
                    e
                }
            }
        };
        extractor.run(input, n, h, w)
    }
}
