//! Input and output tensor files of the `infer` and `features` commands: one f32 tensor `input` of
//! shape `[N, 3, H, W]` in, f32 `logits` and `probs` of shape `[N, classes]` out, or one f32 tensor
//! `[N, C, H, W]` per feature map.

use std::path::Path;

use crate::checkpoint::{self, Checkpoint};
use crate::cpu::Output;
use crate::error::{Error, Result};
use crate::features::FeatureMap;

/// An input batch: `[n, 3, h, w]` values, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct InputBatch {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub data: Vec<f32>,
}

/// Name of the tensor an input file must hold.
pub const INPUT_NAME: &str = "input";

/// Reads and checks an input tensor file.
pub fn read_input(path: impl AsRef<Path>) -> Result<InputBatch> {
    let path = path.as_ref();
    input_from(Checkpoint::open(path)?, path)
}

/// Reads and checks an input tensor file held in memory; `name` is used in error messages.
pub fn read_input_bytes(bytes: Vec<u8>, name: &str) -> Result<InputBatch> {
    input_from(Checkpoint::from_bytes(bytes, name)?, Path::new(name))
}

fn input_from(ck: Checkpoint, path: &Path) -> Result<InputBatch> {
    let ctx = format!("{}: tensor '{INPUT_NAME}'", path.display());
    let Some(shape) = ck.shape(INPUT_NAME).map(<[usize]>::to_vec) else {
        return Err(Error::input(
            format!("{}", path.display()),
            format!("a tensor named '{INPUT_NAME}'"),
            format!("tensors: {}", ck.name_list(6)),
        ));
    };
    let dtype = ck.dtype(INPUT_NAME).unwrap_or_default();
    if dtype != "F32" {
        return Err(Error::input(&ctx, "dtype F32", format!("dtype {dtype}")));
    }
    if shape.len() != 4 {
        return Err(Error::input(
            &ctx,
            "shape [N, 3, H, W] (rank 4)",
            format!("shape {shape:?} (rank {})", shape.len()),
        ));
    }
    if shape[1] != 3 {
        return Err(Error::input(
            &ctx,
            "3 channels in shape [N, 3, H, W]",
            format!("{} channels in shape {shape:?}", shape[1]),
        ));
    }
    if shape[0] == 0 {
        return Err(Error::input(
            &ctx,
            "a batch of at least one image",
            format!("shape {shape:?}"),
        ));
    }
    if shape[2] == 0 || shape[3] == 0 {
        return Err(Error::input(
            &ctx,
            "a non-empty image",
            format!("shape {shape:?}"),
        ));
    }
    let data = ck.tensor_f32(INPUT_NAME, &shape)?;
    Ok(InputBatch {
        n: shape[0],
        h: shape[2],
        w: shape[3],
        data,
    })
}

/// Writes an input tensor file (used by tools and tests).
pub fn write_input(path: impl AsRef<Path>, batch: &InputBatch) -> Result<()> {
    checkpoint::write_f32(
        path,
        &[(INPUT_NAME, &[batch.n, 3, batch.h, batch.w], &batch.data)],
        None,
    )
}

/// Writes one f32 tensor per feature map, named by its module (`layer1`, `level5`), `[N, C, H, W]`.
pub fn write_features(path: impl AsRef<Path>, maps: &[FeatureMap]) -> Result<()> {
    let tensors: Vec<(&str, &[usize], &[f32])> = maps
        .iter()
        .map(|m| (m.point.name.as_str(), &m.shape[..], &m.data[..]))
        .collect();
    checkpoint::write_f32(path, &tensors, None)
}

/// Writes `logits` and `probs`, each `[N, classes]`.
pub fn write_output(path: impl AsRef<Path>, out: &Output) -> Result<()> {
    let shape = [out.batch, out.classes];
    checkpoint::write_f32(
        path,
        &[
            ("logits", &shape, &out.logits),
            ("probs", &shape, &out.probs),
        ],
        None,
    )
}
