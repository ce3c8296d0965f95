//! `res2net_wgpu.Model`: a loaded model and its executor. Every method that does real work (loading,
//! decoding images, running the network) releases the GIL, so Python threads overlap.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use res2net_wgpu::classifier::{Classifier, DeviceChoice};
use res2net_wgpu::gpu::Precision;
use res2net_wgpu::{bundled, preprocess, Model as RustModel};

use crate::array;
use crate::errors::{bad_input, to_py};
use crate::features::{Extractors, FeaturePoint};
use crate::options;

/// A Res2Net classifier loaded from a safetensors checkpoint, running on a GPU or the CPU.
///
/// Model(path, device="auto", precision="f32", arch=None)
///
/// path: a PyTorch/timm state dict saved as safetensors. device: "auto" (a GPU when one exists, else
/// the CPU), "gpu" or "cpu". precision: "f32" or "f16" (GPU weights stored as f16). arch: a preset
/// name to force (None: detect the architecture from the checkpoint).
///
/// Bad input (a missing or broken checkpoint, an unknown option) raises ValueError; other failures
/// (no GPU with device="gpu", a lost device) raise RuntimeError. One model may be used from several
/// threads at once.
#[pyclass(frozen, module = "res2net_wgpu")]
pub(crate) struct Model {
    classifier: Classifier,
    extractors: Extractors,
}

impl Model {
    fn build(
        py: Python<'_>,
        device: &str,
        precision: &str,
        load: impl FnOnce() -> res2net_wgpu::Result<RustModel> + Send,
    ) -> PyResult<Self> {
        let device: DeviceChoice = options::device(device)?;
        let precision: Precision = options::precision(precision)?;
        let classifier = py
            .detach(|| Ok(Classifier::new(load()?, device)?.with_precision(precision)))
            .map_err(to_py)?;
        Ok(Model {
            classifier,
            extractors: Extractors::new(),
        })
    }
}

#[pymethods]
impl Model {
    #[new]
    #[pyo3(signature = (path, device = "auto", precision = "f32", arch = None))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        device: &str,
        precision: &str,
        arch: Option<String>,
    ) -> PyResult<Self> {
        Self::build(py, device, precision, move || match &arch {
            Some(a) => RustModel::load_as(&path, a),
            None => RustModel::load(&path),
        })
    }

    /// The bundled model: a small SE-Res2Net trained on 8x8 digits (classes "0" to "9").
    #[staticmethod]
    #[pyo3(signature = (device = "auto", precision = "f32"))]
    fn bundled(py: Python<'_>, device: &str, precision: &str) -> PyResult<Self> {
        Self::build(py, device, precision, bundled::model)
    }

    /// The architecture: the preset name when the checkpoint equals one (e.g. "res2net50_26w_4s"),
    /// else where it came from ("detected config", "metadata config").
    #[getter]
    fn arch(&self) -> &str {
        self.classifier.model().name()
    }

    /// The number of classes (the length of a logits row).
    #[getter]
    fn num_classes(&self) -> usize {
        self.classifier.labels().len()
    }

    /// Where the model runs, in words: the GPU adapter, or "cpu".
    #[getter]
    fn device(&self) -> String {
        self.classifier.device_name()
    }

    /// Why device="auto" fell back to the CPU, or None.
    #[getter]
    fn fallback_reason(&self) -> Option<&str> {
        self.classifier.fallback_reason()
    }

    /// The GPU weight precision: "f32" or "f16".
    #[getter]
    fn precision(&self) -> &'static str {
        self.classifier.precision().name()
    }

    /// The class names, in class-index order.
    #[getter]
    fn labels(&self) -> Vec<String> {
        self.classifier.labels().to_vec()
    }

    /// (height, width) that classify() resizes and crops images to.
    #[getter]
    fn input_size(&self) -> (usize, usize) {
        let [h, w] = self.classifier.preprocess().input_size;
        (h, w)
    }

    /// Runs a normalized float32 batch [N, 3, H, W] and returns {"logits": ..., "probs": ...}, each a
    /// float32 array [N, classes]. Other real dtypes and any strides are converted; a wrong shape, a
    /// non-numeric dtype or a NaN raises ValueError.
    fn infer<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        let b = array::batch(x)?;
        let out = py
            .detach(|| self.classifier.run_tensor(&b.data, b.n, b.h, b.w))
            .map_err(to_py)?;
        let dict = PyDict::new(py);
        dict.set_item(
            "logits",
            array::matrix(py, out.logits, out.batch, out.classes)?,
        )?;
        dict.set_item(
            "probs",
            array::matrix(py, out.probs, out.batch, out.classes)?,
        )?;
        Ok(dict)
    }

    /// Every feature point of the network, by index (as `out_indices` counts them): a list of
    /// FeaturePoint (index, name, channels, reduction).
    #[getter]
    fn points(&self) -> Vec<FeaturePoint> {
        let config = self.classifier.model().config();
        config
            .feature_points()
            .into_iter()
            .map(Into::into)
            .collect()
    }

    /// The feature points `features` returns when `out_indices` is None.
    #[getter]
    fn default_out_indices(&self) -> Vec<usize> {
        self.classifier.model().config().default_out_indices()
    }

    /// Runs the network as a backbone (timm's `features_only=True`) on a normalized batch
    /// [N, 3, H, W] (converted as `infer` converts it) and returns {index: float32 array [N, C, H',
    /// W']} for the feature points `out_indices` (distinct indices into `points`; None: the
    /// architecture's defaults, `default_out_indices`), in ascending index order; `points[index]`
    /// names each map. The network stops at the last point asked for. A bad index list or input
    /// raises ValueError.
    #[pyo3(signature = (x, out_indices = None))]
    fn features<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        out_indices: Option<Vec<i64>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let indices = match out_indices {
            None => None,
            Some(v) => Some(
                v.iter()
                    .map(|&i| {
                        usize::try_from(i).map_err(|_| {
                            bad_input(
                                "out indices",
                                "indices of `points` (0 or more)",
                                i.to_string(),
                            )
                        })
                    })
                    .collect::<PyResult<Vec<usize>>>()?,
            ),
        };
        let b = array::batch(x)?;
        let maps = py
            .detach(|| {
                let shape = (b.n, b.h, b.w);
                self.extractors
                    .run(&self.classifier, indices.as_deref(), &b.data, shape)
            })
            .map_err(to_py)?;
        let dict = PyDict::new(py);
        for m in maps {
            dict.set_item(m.point.index, array::tensor4(py, m.data, m.shape)?)?;
        }
        Ok(dict)
    }

    /// Decodes PNG/JPEG files, preprocesses them as the checkpoint asks (timm's eval transform by
    /// default) and returns, per image, its `top` most probable classes as [(label, prob), ...].
    #[pyo3(signature = (paths, top = 5))]
    fn classify(
        &self,
        py: Python<'_>,
        paths: Vec<PathBuf>,
        top: usize,
    ) -> PyResult<Vec<Vec<(String, f32)>>> {
        if top == 0 {
            return Err(bad_input("top", "at least 1", "0"));
        }
        let top = top.min(self.classifier.labels().len());
        let predictions = py
            .detach(|| {
                let images = paths
                    .iter()
                    .map(|p| preprocess::load_image(p))
                    .collect::<res2net_wgpu::Result<Vec<_>>>()?;
                self.classifier.classify(&images, top)
            })
            .map_err(to_py)?;
        Ok(predictions
            .into_iter()
            .map(|image| image.into_iter().map(|p| (p.label, p.prob)).collect())
            .collect())
    }

    fn __repr__(&self) -> String {
        format!(
            "Model(arch={:?}, num_classes={}, device={:?}, precision={:?})",
            self.arch(),
            self.num_classes(),
            self.device(),
            self.precision()
        )
    }
}
