//! The crate's error type: one variant per failure class, each carrying where it happened.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::dtype::GgmlType;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which file an error is about, when known. Parsers work on bytes and leave it empty;
/// the layer that opened the file fills it in with [`Error::in_file`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileRef(pub Option<PathBuf>);

impl fmt::Display for FileRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(path) => write!(f, "{}: ", path.display()),
            None => Ok(()),
        }
    }
}

/// Every way reading a weight file can fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operating system refused to open, read or map the file.
    #[error("{file}{source}")]
    Io {
        /// The file.
        file: FileRef,
        /// The underlying error; its kind decides the Python exception.
        #[source]
        source: io::Error,
    },
    /// The bytes contradict the format: bad magic, impossible value, overlapping data.
    #[error("{file}malformed {format} file at byte {offset}: {message}")]
    Malformed {
        /// The file.
        file: FileRef,
        /// The format being read (`GGUF`, …).
        format: &'static str,
        /// Byte offset of the offending field.
        offset: u64,
        /// What is wrong.
        message: String,
    },
    /// The file ends before a field or a tensor's data does.
    #[error("{file}truncated {format} file: {what} at byte {offset} needs {needed} bytes but the file has {available}")]
    Truncated {
        /// The file.
        file: FileRef,
        /// The format being read.
        format: &'static str,
        /// What was being read.
        what: String,
        /// Where it starts.
        offset: u64,
        /// Bytes it needs from `offset`.
        needed: u64,
        /// Bytes the file has from `offset`.
        available: u64,
    },
    /// A claimed count, length or depth is over the cap this reader enforces.
    #[error("{file}{format} file at byte {offset}: {what} {value} exceeds the limit of {limit}{}", SettingNote(*.setting))]
    LimitExceeded {
        /// The file.
        file: FileRef,
        /// The format being read.
        format: &'static str,
        /// The field.
        what: &'static str,
        /// Where it was read.
        offset: u64,
        /// The claimed value.
        value: u64,
        /// The cap.
        limit: u64,
        /// The [`crate::Limits`] field that sets the cap; `None` for fixed caps.
        setting: Option<&'static str>,
    },
    /// A format version this reader does not read.
    #[error("{file}{message}")]
    UnsupportedVersion {
        /// The file.
        file: FileRef,
        /// The version found.
        version: u32,
        /// What to do about it.
        message: String,
    },
    /// A tensor whose ggml type cannot be decoded.
    #[error("{file}tensor '{tensor}' has {ty}, which quantlens cannot decode")]
    UnsupportedType {
        /// The file.
        file: FileRef,
        /// The tensor.
        tensor: String,
        /// Its type.
        ty: GgmlType,
    },
    /// Big-endian data of a type whose big-endian layout has no defined meaning.
    #[error("{file}tensor '{tensor}' holds big-endian {ty} data, which has no defined byte order conversion")]
    UnsupportedByteOrder {
        /// The file.
        file: FileRef,
        /// The tensor.
        tensor: String,
        /// Its type.
        ty: GgmlType,
    },
    /// The output given for decoded weights does not fit the data.
    #[error("{file}{message}")]
    InvalidOutput {
        /// The file.
        file: FileRef,
        /// The tensor, when decoding one.
        tensor: Option<String>,
        /// What does not fit.
        message: String,
    },
    /// No tensor of that name.
    #[error("{file}no tensor named '{name}'")]
    TensorNotFound {
        /// The file.
        file: FileRef,
        /// The name asked for.
        name: String,
    },
    /// A shard of a split model is missing or does not belong with the others.
    #[error("{file}{message}")]
    Split {
        /// The shard at fault.
        file: FileRef,
        /// What is wrong and which shard.
        message: String,
    },
    /// The file is not a weight format this reader reads (a Git LFS pointer, an HTML page…).
    #[error("{file}{message}")]
    UnsupportedFormat {
        /// The file.
        file: FileRef,
        /// What kind of file it is ([`crate::format::FileKind::name`]).
        kind: &'static str,
        /// What the file is and what to do about it.
        message: String,
    },
    /// A tensor whose element type quantlens does not represent (e.g. 4-bit `F4`).
    #[error("{file}tensor '{tensor}' has element type {dtype}, which quantlens does not read")]
    UnsupportedDType {
        /// The file.
        file: FileRef,
        /// The tensor.
        tensor: String,
        /// The type's name as the file spells it.
        dtype: String,
    },
    /// A pickle names a global outside the allow-list; nothing was imported or run.
    #[error("{file}unsafe pickle at byte {offset}: global '{global}' is not allowed (quantlens reads only tensors, storages and plain containers, and never runs code from a file)")]
    UnsafePickle {
        /// The file.
        file: FileRef,
        /// Byte offset of the opcode that named the global.
        offset: u64,
        /// The global, as `module.name`.
        global: String,
    },
}

/// Tells, after a limit, which setting raises it.
struct SettingNote(Option<&'static str>);

impl fmt::Display for SettingNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(name) => write!(f, " (set by Limits.{name})"),
            None => Ok(()),
        }
    }
}

impl Error {
    /// Attach the file this error is about, unless one is already named.
    #[must_use]
    pub fn in_file(mut self, path: &Path) -> Self {
        let slot = match &mut self {
            Error::Io { file, .. }
            | Error::Malformed { file, .. }
            | Error::Truncated { file, .. }
            | Error::LimitExceeded { file, .. }
            | Error::UnsupportedVersion { file, .. }
            | Error::UnsupportedType { file, .. }
            | Error::UnsupportedByteOrder { file, .. }
            | Error::InvalidOutput { file, .. }
            | Error::TensorNotFound { file, .. }
            | Error::Split { file, .. }
            | Error::UnsupportedFormat { file, .. }
            | Error::UnsupportedDType { file, .. }
            | Error::UnsafePickle { file, .. } => file,
        };
        if slot.0.is_none() {
            slot.0 = Some(path.to_path_buf());
        }
        self
    }

    /// The file this error is about, if known.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::Io { file, .. }
            | Error::Malformed { file, .. }
            | Error::Truncated { file, .. }
            | Error::LimitExceeded { file, .. }
            | Error::UnsupportedVersion { file, .. }
            | Error::UnsupportedType { file, .. }
            | Error::UnsupportedByteOrder { file, .. }
            | Error::InvalidOutput { file, .. }
            | Error::TensorNotFound { file, .. }
            | Error::Split { file, .. }
            | Error::UnsupportedFormat { file, .. }
            | Error::UnsupportedDType { file, .. }
            | Error::UnsafePickle { file, .. } => file.0.as_deref(),
        }
    }

    /// The byte offset this error is about, if it has one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Error::Malformed { offset, .. }
            | Error::Truncated { offset, .. }
            | Error::LimitExceeded { offset, .. }
            | Error::UnsafePickle { offset, .. } => Some(*offset),
            _ => None,
        }
    }

    /// The tensor this error is about, if it has one.
    pub fn tensor(&self) -> Option<&str> {
        match self {
            Error::UnsupportedType { tensor, .. }
            | Error::UnsupportedByteOrder { tensor, .. }
            | Error::UnsupportedDType { tensor, .. } => Some(tensor),
            Error::InvalidOutput { tensor, .. } => tensor.as_deref(),
            Error::TensorNotFound { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The error for a failed decode of `tensor` (if any), in no file yet.
    pub fn from_dequant(err: crate::quant::DequantError, tensor: Option<&str>) -> Self {
        use crate::quant::DequantError;
        let file = FileRef::default();
        let name = tensor.unwrap_or("<data>").to_owned();
        match err {
            DequantError::UnsupportedType(ty) => Error::UnsupportedType {
                file,
                tensor: name,
                ty,
            },
            DequantError::BigEndianUnsupported(ty) => Error::UnsupportedByteOrder {
                file,
                tensor: name,
                ty,
            },
            other => Error::InvalidOutput {
                file,
                tensor: tensor.map(str::to_owned),
                message: other.to_string(),
            },
        }
    }

    /// Fail with [`Error::LimitExceeded`] (in no file yet) when `value > limit`.
    pub(crate) fn check_limit(
        format: &'static str,
        what: &'static str,
        offset: u64,
        value: u64,
        limit: u64,
    ) -> Result<()> {
        Self::check_cap(format, what, None, offset, value, limit)
    }

    /// [`Error::check_limit`] for a cap that is the [`crate::Limits`] field `setting`.
    pub(crate) fn check_cap(
        format: &'static str,
        what: &'static str,
        setting: Option<&'static str>,
        offset: u64,
        value: u64,
        limit: u64,
    ) -> Result<()> {
        if value > limit {
            return Err(Error::LimitExceeded {
                file: FileRef::default(),
                format,
                what,
                offset,
                value,
                limit,
                setting,
            });
        }
        Ok(())
    }

    /// The [`crate::Limits`] field a [`Error::LimitExceeded`] names, if any.
    pub fn limit_setting(&self) -> Option<&'static str> {
        match self {
            Error::LimitExceeded { setting, .. } => *setting,
            _ => None,
        }
    }

    /// An I/O error about `path`.
    pub fn io(path: &Path, source: io::Error) -> Self {
        Error::Io {
            file: FileRef(Some(path.to_path_buf())),
            source,
        }
    }
}
