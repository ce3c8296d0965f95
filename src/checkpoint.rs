//! Reading safetensors files: memory-mapped, header validated before any tensor is touched, every float
//! dtype converted to f32 on demand. Used for model checkpoints and for input/output tensor files.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, Metadata, TensorInfo};
use safetensors::SafeTensors;

use crate::error::{one_line, Error, Result};

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
        if let Some(reason) = offsets_past_end(&bytes) {
            return Err(Error::Format { path, reason });
        }
        let (header_len, meta): (usize, Metadata) =
            SafeTensors::read_metadata(&bytes).map_err(|e| Error::Format {
                path: path.clone(),
                reason: one_line(&describe_format_error(&e, bytes.len())),
            })?;
        // Names end up in error messages, which must stay on one line and not drive the terminal.
        if let Some(name) = meta
            .tensors()
            .into_keys()
            .find(|n| n.chars().any(char::is_control))
        {
            return Err(Error::Format {
                path,
                reason: format!("expected tensor names without control characters, found {name:?}"),
            });
        }
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

    /// The first NaN or infinite value of a float tensor, with its flat index; `None` when all are
    /// finite, or the tensor is absent or not F32/F16/BF16. Reads the bytes in place, allocating
    /// nothing.
    pub fn first_non_finite(&self, name: &str) -> Option<(usize, f32)> {
        let entry = self.entries.get(name)?;
        let raw = &self.bytes[entry.start..entry.end];
        let find = |size: usize, value: &dyn Fn(&[u8]) -> f32| {
            raw.chunks_exact(size)
                .map(value)
                .enumerate()
                .find(|(_, v)| !v.is_finite())
        };
        match entry.dtype {
            Dtype::F32 => find(4, &|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            Dtype::F16 => find(2, &|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
            Dtype::BF16 => find(2, &|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            _ => None,
        }
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

/// A tensor whose data offsets point past the end of the file, found by a light parse of the header.
///
/// safetensors 0.8 adds the last tensor's end offset to the header length without a check: offsets
/// that sum past `usize::MAX` (eight 2^61-byte tensors in a 200-byte file) panic with an overflow in
/// builds with overflow checks. Any header this parse cannot read is left to the real parser, which
/// reports it.
fn offsets_past_end(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Offsets {
        data_offsets: Option<(u64, u64)>,
    }
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let header = bytes.get(8..8usize.checked_add(usize::try_from(n).ok()?)?)?;
    let data_len = (bytes.len() - 8 - header.len()) as u64;
    let entries: BTreeMap<String, Offsets> = serde_json::from_slice(header).ok()?;
    let (name, (start, end)) = entries
        .iter()
        .filter_map(|(name, e)| Some((name, e.data_offsets?)))
        .find(|(_, (start, end))| *start > data_len || *end > data_len)?;
    Some(format!(
        "expected data offsets within the {data_len} bytes after the header, found [{start}, {end}] for tensor '{}'",
        one_line(name)
    ))
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

/// Writes f32 tensors to a safetensors file (used for outputs), atomically: a failed or killed write
/// leaves the previous file (see [`crate::output_file`]).
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
    let bytes = safetensors::serialize(views, metadata).map_err(|e| Error::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    crate::output_file::write_bytes_atomically(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn offsets_summing_past_u64_are_refused_without_overflow() {
        let big = (1u64 << 61) - 1;
        let entries: Vec<String> = (0..8)
            .map(|k| {
                format!(
                    r#""t{k}":{{"dtype":"U8","shape":[{big}],"data_offsets":[{},{}]}}"#,
                    k * big,
                    (k + 1) * big
                )
            })
            .collect();
        let bytes = file(&format!("{{{}}}", entries.join(",")), b"");
        let e = Checkpoint::from_bytes(bytes, "x")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("expected data offsets within the 0 bytes"),
            "{e}"
        );
    }

    #[test]
    fn control_characters_in_names_and_header_errors_stay_escaped() {
        let h = r#"{"fc.we\nig\u001bht":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        let e = Checkpoint::from_bytes(file(h, &[0; 4]), "x")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(r#"found "fc.we\nig\u{1b}ht""#), "{e}");
        let h = r#"{"t":{"dtype":"F\n32","shape":[1],"data_offsets":[0,4]}}"#;
        let e = Checkpoint::from_bytes(file(h, &[0; 4]), "x")
            .err()
            .unwrap()
            .to_string();
        assert!(!e.contains('\n') && e.contains(r#"F\n32"#), "{e}");
    }

    #[test]
    fn non_finite_values_are_found_in_every_float_dtype() {
        let ck = |dtype: &str, data: &[u8]| {
            let h = format!(
                r#"{{"t":{{"dtype":"{dtype}","shape":[2],"data_offsets":[0,{}]}}}}"#,
                data.len()
            );
            Checkpoint::from_bytes(file(&h, data), "x").unwrap()
        };
        let f32s: Vec<u8> = [1.0f32, f32::NAN]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert!(ck("F32", &f32s).first_non_finite("t").unwrap().1.is_nan());
        assert_eq!(
            ck("F16", &[0, 0x3c, 0, 0x7c]).first_non_finite("t"),
            Some((1, f32::INFINITY))
        );
        assert_eq!(
            ck("BF16", &[0x80, 0xff, 0, 0]).first_non_finite("t"),
            Some((0, f32::NEG_INFINITY))
        );
        assert_eq!(ck("F32", &[0; 8]).first_non_finite("t"), None);
    }
}
