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

/// The held-out split the bundled model never saw in training, with PyTorch's logits for it.
pub struct Heldout {
    /// `[n, 8, 8]` raw digit pixels, 0..=16.
    pub pixels: Vec<f32>,
    pub labels: Vec<usize>,
    /// PyTorch's `fc` output for each image, `[n, classes]` (computed in f64, stored as f32).
    pub torch_logits: Vec<f32>,
    pub classes: usize,
    pub description: String,
}

/// How close a run's logits are to PyTorch's on the held-out split.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Agreement {
    /// Largest `|ours - torch|` over every logit.
    pub max_abs_diff: f32,
    /// Whether every image's logits are within `atol + rtol * max |torch logit of that image|` (the
    /// verify harness's rule, per image).
    pub within: bool,
    /// Images whose top class equals PyTorch's.
    pub same_top1: usize,
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
        .map_or(0, |(i, _)| i)
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

    /// PyTorch's predicted class for each image (the argmax of its logits).
    pub fn torch_pred(&self) -> Vec<usize> {
        self.torch_logits
            .chunks(self.classes.max(1))
            .map(argmax)
            .collect()
    }

    /// PyTorch's accuracy on the split, from its logits.
    pub fn torch_accuracy(&self) -> f64 {
        let pred = self.torch_pred();
        let correct = pred
            .iter()
            .zip(&self.labels)
            .filter(|(p, l)| p == l)
            .count();
        correct as f64 / self.labels.len().max(1) as f64
    }

    /// How close `logits` (`[n, classes]`, ours) are to PyTorch's: per image, within
    /// `atol + rtol * max |torch logit|`.
    pub fn agreement(&self, logits: &[f32], (atol, rtol): (f32, f32)) -> Agreement {
        let k = self.classes.max(1);
        let mut max_abs_diff = 0.0f32;
        let mut within = logits.len() == self.torch_logits.len();
        let mut same_top1 = 0;
        for (ours, torch) in logits.chunks(k).zip(self.torch_logits.chunks(k)) {
            let diff = ours
                .iter()
                .zip(torch)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            let scale = torch.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
            within &= diff <= atol + rtol * scale;
            max_abs_diff = max_abs_diff.max(diff);
            same_top1 += usize::from(argmax(ours) == argmax(torch));
        }
        Agreement {
            max_abs_diff,
            within,
            same_top1,
        }
    }
}

/// Loads the bundled held-out split.
pub fn heldout() -> Result<Heldout> {
    let ck = Checkpoint::from_bytes(HELDOUT.to_vec(), "bundled digits_heldout.safetensors")?;
    let (shape, pixels) = ck.tensor_any_shape("pixels")?;
    let n = shape.first().copied().unwrap_or(0);
    let labels = ck
        .tensor_f32("labels", &[n])?
        .iter()
        .map(|v| *v as usize)
        .collect();
    let (shape, torch_logits) = ck.tensor_any_shape("torch_logits")?;
    let [rows, classes] = shape[..] else {
        return Err(Error::Config(format!(
            "bundled held-out set: expected torch_logits [{n}, classes], found {shape:?}"
        )));
    };
    if rows != n {
        return Err(Error::Config(format!(
            "bundled held-out set: expected torch_logits for {n} images, found {rows}"
        )));
    }
    Ok(Heldout {
        labels,
        torch_logits,
        classes,
        pixels,
        description: ck
            .metadata()
            .get("description")
            .cloned()
            .unwrap_or_default(),
    })
}
