//! The bundled default model: a seed-flavour SE-Res2Net trained on scikit-learn's digits (see
//! weights/README.md), compiled into the crate so `res2net demo` and `res2net classify` work anywhere.

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::preprocess::RgbPlanes;

const WEIGHTS: &[u8] = include_bytes!("../weights/digits_se_res2net.safetensors");
const HELDOUT: &[u8] = include_bytes!("../weights/digits_heldout.safetensors");

/// The bundled digits classifier.
pub fn model() -> Result<Model> {
    Model::from_checkpoint(
        Checkpoint::from_bytes(WEIGHTS.to_vec(), "bundled digits_se_res2net.safetensors")?,
        None,
    )
}

/// The held-out split the bundled model never saw in training, with PyTorch's predictions.
pub struct Heldout {
    /// `[n, 8, 8]` raw digit pixels, 0..=16.
    pub pixels: Vec<f32>,
    pub labels: Vec<usize>,
    /// PyTorch's predicted class for each image.
    pub torch_pred: Vec<usize>,
    /// PyTorch's accuracy on the split.
    pub torch_accuracy: f64,
    pub description: String,
}

impl Heldout {
    /// The digits as images in [0, 1] (grey, repeated over RGB), ready for the model's preprocessing.
    pub fn images(&self) -> Vec<RgbPlanes> {
        self.pixels
            .chunks(64)
            .map(|p| {
                let grey: Vec<f32> = p.iter().map(|v| v / 16.0).collect();
                RgbPlanes {
                    h: 8,
                    w: 8,
                    data: [grey.as_slice(), &grey, &grey].concat(),
                }
            })
            .collect()
    }
}

/// Loads the bundled held-out split.
pub fn heldout() -> Result<Heldout> {
    let ck = Checkpoint::from_bytes(HELDOUT.to_vec(), "bundled digits_heldout.safetensors")?;
    let (shape, pixels) = ck.tensor_any_shape("pixels")?;
    let n = shape.first().copied().unwrap_or(0);
    let as_classes = |name: &str| -> Result<Vec<usize>> {
        let values = ck.tensor_f32(name, &[n])?;
        Ok(values.iter().map(|v| *v as usize).collect())
    };
    let meta = ck.metadata();
    let torch_accuracy = meta
        .get("heldout_accuracy")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| {
            Error::Config("bundled held-out set: expected 'heldout_accuracy' metadata".into())
        })?;
    Ok(Heldout {
        labels: as_classes("labels")?,
        torch_pred: as_classes("torch_pred")?,
        pixels,
        torch_accuracy,
        description: meta.get("description").cloned().unwrap_or_default(),
    })
}
