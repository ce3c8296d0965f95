//! One error type for the whole crate. Every message says what was expected and what was found, on one
//! line, so the CLI can print it as-is and a program can match on the variant.

use std::path::PathBuf;

/// Everything that can go wrong while loading, building or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened or read.
    #[error("{path}: expected a readable file, found: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An output file could not be written (the previous file, if any, is left as it was).
    #[error("{path}: cannot write: {reason}")]
    Write { path: PathBuf, reason: String },

    /// An output path refused before any work: it is one of the inputs, names a directory, or its
    /// directory is missing or cannot take a new file. `arg` is the argument that named it.
    #[error("{arg} {path}: {reason}")]
    Output {
        arg: String,
        path: PathBuf,
        reason: String,
    },

    /// A file is not a valid safetensors file (empty, truncated, lying header, ...).
    #[error("{path}: not a valid safetensors file: {reason}")]
    Format { path: PathBuf, reason: String },

    /// A tensor has the wrong dtype, rank or shape, or is missing.
    #[error("{context}: expected {expected}, found {found}")]
    Tensor {
        context: String,
        expected: String,
        found: String,
    },

    /// The checkpoint does not match any architecture this crate can build, or the one asked for.
    #[error("checkpoint does not fit {arch}: {detail}")]
    Architecture { arch: String, detail: String },

    /// A configuration (preset name, metadata config, input size) is not usable.
    #[error("{0}")]
    Config(String),

    /// The input tensor or image does not fit the model.
    #[error("input {context}: expected {expected}, found {found}")]
    Input {
        context: String,
        expected: String,
        found: String,
    },

    /// No GPU adapter, a device limit, a lost device or a validation error on the GPU side.
    #[error("gpu: {0}")]
    Gpu(String),
}

/// For each `name => Variant` of the variants that say what was expected and what was found,
/// `Error::name(context, expected, found)`, taking anything that converts into the three strings.
macro_rules! mismatch_constructors {
    ($($name:ident => $variant:ident),*) => {$(
        pub(crate) fn $name(
            context: impl Into<String>,
            expected: impl Into<String>,
            found: impl Into<String>,
        ) -> Self {
            Error::$variant {
                context: context.into(),
                expected: expected.into(),
                found: found.into(),
            }
        }
    )*};
}

impl Error {
    /// Whether the error was caused by what the user handed in (exit code 2), rather than by the
    /// machine or a bug (exit code 1).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::Format { .. }
                | Error::Tensor { .. }
                | Error::Architecture { .. }
                | Error::Config(_)
                | Error::Input { .. }
                | Error::Output { .. }
        ) || matches!(self, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound
            || source.kind() == std::io::ErrorKind::InvalidData
            || source.kind() == std::io::ErrorKind::IsADirectory)
    }

    mismatch_constructors!(tensor => Tensor, input => Input);
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `s` with control characters (newlines, terminal escapes) written as escapes, so a message that
/// quotes file content stays on one line.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}
