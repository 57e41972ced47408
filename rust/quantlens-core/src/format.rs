//! Which kind of file a weight path holds, told from its first bytes rather than its name.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// What the first bytes of a file say it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A GGUF model (`GGUF` magic).
    Gguf,
    /// A safetensors file: a little-endian header length, then a JSON header.
    Safetensors,
    /// A zip archive, as written by `torch.save` since torch 1.6.
    Zip,
    /// A bare pickle stream, as written by `torch.save` before torch 1.6.
    Pickle,
    /// A Git LFS pointer: the real file was never downloaded.
    GitLfsPointer,
    /// An HTML page, usually an error page saved in place of a download.
    Html,
    /// A JSON document (an index or config file, not weights).
    Json,
    /// An empty file.
    Empty,
    /// None of the above.
    Unknown,
}

/// How many leading bytes [`sniff`] looks at.
pub const SNIFF_LEN: usize = 64;

impl FileKind {
    /// A short machine-readable name (`gguf`, `safetensors`, `zip`, …).
    pub fn name(self) -> &'static str {
        match self {
            FileKind::Gguf => "gguf",
            FileKind::Safetensors => "safetensors",
            FileKind::Zip => "zip",
            FileKind::Pickle => "pickle",
            FileKind::GitLfsPointer => "git-lfs-pointer",
            FileKind::Html => "html",
            FileKind::Json => "json",
            FileKind::Empty => "empty",
            FileKind::Unknown => "unknown",
        }
    }

    /// What the file is, in words, for error messages.
    pub fn description(self) -> &'static str {
        match self {
            FileKind::Gguf => "a GGUF model",
            FileKind::Safetensors => "a safetensors file",
            FileKind::Zip => "a zip archive (a PyTorch checkpoint written by torch.save)",
            FileKind::Pickle => {
                "a pickle (a PyTorch checkpoint written by torch.save before torch 1.6)"
            }
            FileKind::GitLfsPointer => {
                "a Git LFS pointer, not the weights: fetch the real file with `git lfs pull`"
            }
            FileKind::Html => "an HTML page, not weights: the download probably failed",
            FileKind::Json => "a JSON document, not weights",
            FileKind::Empty => "an empty file",
            FileKind::Unknown => "not a weight file quantlens recognises",
        }
    }
}

/// Tell what kind of file starts with `prefix`.
pub fn sniff(prefix: &[u8]) -> FileKind {
    if prefix.is_empty() {
        return FileKind::Empty;
    }
    if prefix.starts_with(b"GGUF") {
        return FileKind::Gguf;
    }
    if prefix.starts_with(b"PK\x03\x04") || prefix.starts_with(b"PK\x05\x06") {
        return FileKind::Zip;
    }
    // Before the pickle test: a safetensors header length of 0x2_80..0x5_FF bytes starts
    // with the bytes of a pickle protocol marker, but only safetensors has `{` at byte 8.
    if is_safetensors(prefix) {
        return FileKind::Safetensors;
    }
    if prefix.len() >= 2 && prefix[0] == 0x80 && (2..=5).contains(&prefix[1]) {
        return FileKind::Pickle;
    }
    if prefix.starts_with(b"version https://git-lfs") {
        return FileKind::GitLfsPointer;
    }
    let text = trim_ascii_start(prefix);
    let lower: Vec<u8> = text.iter().take(14).map(u8::to_ascii_lowercase).collect();
    if lower.starts_with(b"<!doctype html") || lower.starts_with(b"<html") {
        return FileKind::Html;
    }
    if text.starts_with(b"{") || text.starts_with(b"[") {
        return FileKind::Json;
    }
    FileKind::Unknown
}

/// An 8-byte header length (little-endian) followed by the JSON header's `{`.
fn is_safetensors(prefix: &[u8]) -> bool {
    let Some(len) = prefix.get(..8) else {
        return false;
    };
    let len = u64::from_le_bytes(len.try_into().expect("8 bytes"));
    len >= 2 && prefix.get(8) == Some(&b'{')
}

fn trim_ascii_start(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// Read the first bytes of `path` and tell what kind of file it is.
pub fn sniff_path(path: &Path) -> Result<FileKind> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut prefix = Vec::with_capacity(SNIFF_LEN);
    file.by_ref()
        .take(SNIFF_LEN as u64)
        .read_to_end(&mut prefix)
        .map_err(|e| Error::io(path, e))?;
    Ok(sniff(&prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_told_from_bytes() {
        assert_eq!(sniff(b""), FileKind::Empty);
        assert_eq!(sniff(b"GGUF\x03\0\0\0"), FileKind::Gguf);
        assert_eq!(sniff(b"PK\x03\x04rest"), FileKind::Zip);
        assert_eq!(sniff(b"\x80\x02}q\0"), FileKind::Pickle);
        assert_eq!(sniff(b"\x10\0\0\0\0\0\0\0{\"a\":1}"), FileKind::Safetensors);
        assert_eq!(
            sniff(b"\x80\x02\0\0\0\0\0\0{\"a\":1}"),
            FileKind::Safetensors
        );
        assert_eq!(
            sniff(b"version https://git-lfs.github.com/spec/v1\n"),
            FileKind::GitLfsPointer
        );
        assert_eq!(sniff(b"\n  <!DOCTYPE html><html>"), FileKind::Html);
        assert_eq!(sniff(b"{\"weight_map\": {}}"), FileKind::Json);
        assert_eq!(sniff(b"\x00\x01\x02"), FileKind::Unknown);
    }
}
