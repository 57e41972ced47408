//! PyTorch checkpoints written by `torch.save`: the zip index and a pickle reader that
//! understands only tensor rebuilds and plain containers, and never executes anything.
//!
//! - [`archive`]: zip checkpoints (torch ≥ 1.6): `<prefix>/data.pkl` plus one stored record
//!   per storage, mapped zero-copy.
//! - [`legacy`]: the older single-stream format (torch < 1.6): five pickles followed by the
//!   storages' raw bytes.
//! - [`pickle`]: the reader both share, with its allow-list of globals.
//! - [`tensors`]: turns the pickled object tree into dotted names, tensors and metadata.

pub mod archive;
pub mod legacy;
pub mod pickle;
pub mod tensors;

use crate::error::{Error, FileRef, Result};
use crate::format::{sniff, FileKind, SNIFF_LEN};
use crate::limits::Limits;
use crate::weights::Parsed;

/// The format name errors carry.
pub(crate) const FORMAT: &str = "PyTorch";

/// Read the tensors of a `torch.save` checkpoint held in `bytes` (zip or legacy pickle).
///
/// Tensor offsets are absolute in `bytes`; tensors that share a storage point into the same
/// bytes. Non-tensor entries (epochs, hyper-parameters) are returned as metadata.
pub fn parse(bytes: &[u8]) -> Result<Parsed> {
    parse_with(bytes, &Limits::DEFAULT)
}

/// [`parse`] under `limits`.
pub fn parse_with(bytes: &[u8], limits: &Limits) -> Result<Parsed> {
    match sniff(&bytes[..bytes.len().min(SNIFF_LEN)]) {
        FileKind::Zip => archive::parse_with(bytes, limits),
        FileKind::Pickle => legacy::parse_with(bytes, limits),
        kind => Err(malformed(
            0,
            format!(
                "not a PyTorch checkpoint: the file is {}",
                kind.description()
            ),
        )),
    }
}

/// [`Error::Malformed`] at file offset `offset`.
pub(crate) fn malformed(offset: u64, message: impl Into<String>) -> Error {
    Error::Malformed {
        file: FileRef::default(),
        format: FORMAT,
        offset,
        message: message.into(),
    }
}

/// [`Error::Truncated`]: `what` at `offset` needs `needed` bytes, `available` are there.
pub(crate) fn truncated(what: &str, offset: u64, needed: u64, available: u64) -> Error {
    Error::Truncated {
        file: FileRef::default(),
        format: FORMAT,
        what: what.to_owned(),
        offset,
        needed,
        available,
    }
}

/// Fail with [`Error::LimitExceeded`] when `value > cap`.
pub(crate) fn limit(what: &'static str, offset: u64, value: u64, cap: u64) -> Result<()> {
    Error::check_limit(FORMAT, what, offset, value, cap)
}

/// Fail with [`Error::LimitExceeded`] naming the [`Limits`] field `setting`.
pub(crate) fn limit_setting(
    what: &'static str,
    setting: &'static str,
    offset: u64,
    value: u64,
    cap: u64,
) -> Result<()> {
    crate::limits::check(FORMAT, what, setting, offset, value, cap)
}

/// A valid checkpoint feature quantlens does not read (compressed or big-endian storages,
/// pre-0.4 storage views), reported as [`Error::UnsupportedVersion`].
pub(crate) fn unsupported(offset: u64, message: impl std::fmt::Display) -> Error {
    Error::UnsupportedVersion {
        file: FileRef::default(),
        version: 0,
        message: format!("PyTorch checkpoint, byte {offset}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_kinds_are_refused_by_what_they_are() {
        let err = parse(b"version https://git-lfs.github.com/spec/v1\n").unwrap_err();
        assert!(err.to_string().contains("Git LFS"), "{err}");
        assert!(parse(b"").is_err());
        assert!(matches!(parse(b"PK\x03\x04"), Err(Error::Malformed { .. })));
        assert!(parse(b"\x80\x02").is_err());
    }
}
