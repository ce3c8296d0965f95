//! Reading safetensors files: memory-mapped, header validated before any tensor is touched, every float
//! dtype converted to f32 on demand. Used for model checkpoints and for input/output tensor files.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, Metadata, TensorInfo};
use safetensors::SafeTensors;

use crate::error::{Error, Result};

/// Bytes of a safetensors file: a read-only memory map of a file, or an owned buffer.
enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// One tensor's place in the file.
#[derive(Clone, Debug)]
struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// A parsed safetensors file. Construction validates the header (sizes, offsets, dtypes against the
/// byte ranges), so reading a tensor afterwards cannot run past the end of the data.
pub struct Checkpoint {
    path: PathBuf,
    bytes: Bytes,
    entries: BTreeMap<String, Entry>,
    metadata: HashMap<String, String>,
}

impl Checkpoint {
    /// Memory-maps and validates a safetensors file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if meta.is_dir() {
            return Err(Error::Format {
                path,
                reason: "expected a file, found a directory".into(),
            });
        }
        if meta.len() == 0 {
            return Err(Error::Format {
                path,
                reason: "expected at least an 8-byte header length, found an empty file".into(),
            });
        }
        // SAFETY: the map is read-only; a file truncated by another process while mapped is outside
        // what any reader can guard against, as with every mmap-based loader.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Self::parse(path, Bytes::Mapped(map))
    }

    /// Parses a safetensors file held in memory; `name` is used in error messages.
    pub fn from_bytes(bytes: Vec<u8>, name: impl Into<PathBuf>) -> Result<Self> {
        Self::parse(name.into(), Bytes::Owned(bytes))
    }

    fn parse(path: PathBuf, bytes: Bytes) -> Result<Self> {
        let (header_len, meta): (usize, Metadata) =
            SafeTensors::read_metadata(&bytes).map_err(|e| Error::Format {
                path: path.clone(),
                reason: describe_format_error(&e, bytes.len()),
            })?;
        let data_start = 8 + header_len;
        let mut entries = BTreeMap::new();
        for (name, info) in meta.tensors() {
            let TensorInfo {
                dtype,
                shape,
                data_offsets,
            } = info.clone();
            entries.insert(
                name,
                Entry {
                    dtype,
                    shape,
                    start: data_start + data_offsets.0,
                    end: data_start + data_offsets.1,
                },
            );
        }
        let metadata = meta.metadata().clone().unwrap_or_default();
        Ok(Checkpoint {
            path,
            bytes,
            entries,
            metadata,
        })
    }

    /// The file this checkpoint came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The free-form string map of the header's `__metadata__`.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// Tensor names in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The shape of a tensor, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    /// The dtype name of a tensor, if present (e.g. "F32", "I64").
    pub fn dtype(&self, name: &str) -> Option<String> {
        self.entries.get(name).map(|e| format!("{:?}", e.dtype))
    }

    /// Whether a tensor holds floating-point values this crate can read.
    pub fn is_float(&self, name: &str) -> bool {
        self.entries
            .get(name)
            .is_some_and(|e| matches!(e.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16))
    }

    /// Reads a float tensor as f32 and checks its shape.
    pub fn tensor_f32(&self, name: &str, expected_shape: &[usize]) -> Result<Vec<f32>> {
        let ctx = || format!("{}: tensor '{name}'", self.path.display());
        let entry = self.entries.get(name).ok_or_else(|| {
            Error::tensor(ctx(), format!("shape {expected_shape:?}"), "no such tensor")
        })?;
        if entry.shape != expected_shape {
            return Err(Error::tensor(
                ctx(),
                format!("shape {expected_shape:?}"),
                format!("shape {:?}", entry.shape),
            ));
        }
        self.read_f32(name, entry)
    }

    /// Reads a float tensor as f32 with whatever shape it has.
    pub fn tensor_any_shape(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let entry = self.entries.get(name).ok_or_else(|| {
            Error::tensor(
                format!("{}: tensor '{name}'", self.path.display()),
                "a tensor of that name",
                format!("none (tensors: {})", self.name_list(6)),
            )
        })?;
        Ok((entry.shape.clone(), self.read_f32(name, entry)?))
    }

    fn read_f32(&self, name: &str, entry: &Entry) -> Result<Vec<f32>> {
        let raw = &self.bytes[entry.start..entry.end];
        let out = match entry.dtype {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(Error::tensor(
                    format!("{}: tensor '{name}'", self.path.display()),
                    "dtype F32, F16 or BF16",
                    format!("dtype {other:?}"),
                ))
            }
        };
        Ok(out)
    }

    /// A short comma-separated list of tensor names for error messages.
    pub fn name_list(&self, max: usize) -> String {
        let mut names: Vec<&str> = self.names().take(max).collect();
        if self.len() > max {
            names.push("...");
        }
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }
}

/// Turns the safetensors crate's error into a sentence saying what was expected and found.
fn describe_format_error(e: &safetensors::SafeTensorError, file_len: usize) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::HeaderTooSmall => {
            format!("expected an 8-byte header length, found a {file_len}-byte file")
        }
        E::HeaderTooLarge => "expected a header of at most 100 MB, found a larger declared size".into(),
        E::InvalidHeaderLength => format!(
            "expected the declared header to fit in the file, found a {file_len}-byte file"
        ),
        E::InvalidHeader(_) => "expected a UTF-8 JSON header, found invalid UTF-8".into(),
        E::InvalidHeaderDeserialization(err) => {
            format!("expected a JSON header of tensor entries, found: {err}")
        }
        E::MetadataIncompleteBuffer => format!(
            "expected the tensor data to fill the file exactly, found {file_len} bytes that do not match the header's offsets"
        ),
        E::InvalidOffset(name) => {
            format!("expected contiguous in-bounds data offsets, found bad offsets for tensor '{name}'")
        }
        E::TensorInvalidInfo => {
            "expected each tensor's byte range to equal its shape times its dtype size, found a mismatch".into()
        }
        E::ValidationOverflow => "expected tensor sizes that fit in memory, found an overflowing shape".into(),
        other => format!("{other}"),
    }
}

/// Writes f32 tensors to a safetensors file (used for outputs).
pub fn write_f32(
    path: impl AsRef<Path>,
    tensors: &[(&str, &[usize], &[f32])],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    use safetensors::tensor::TensorView;
    let path = path.as_ref();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, shape, data)| {
            TensorView::new(Dtype::F32, shape.to_vec(), bytemuck::cast_slice(data))
                .map(|v| (name.to_string(), v))
                .map_err(|e| {
                    Error::tensor(
                        format!("output '{name}'"),
                        "consistent shape",
                        e.to_string(),
                    )
                })
        })
        .collect::<Result<_>>()?;
    safetensors::serialize_to_file(views, metadata, path).map_err(|e| Error::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}
