//! [`Limits`]: the caps every reader enforces on what a file claims, which a caller may
//! change per open, and [`OpenOptions`], which carries them with the way files are read.
//!
//! The defaults are far above anything real models use and far below what could exhaust
//! memory or time. Whatever the caps, every length and offset is also checked against the
//! bytes actually present.

use crate::error::{Error, Result};

/// Caps on what a weight file's header may claim. A file over any of them fails with
/// [`Error::LimitExceeded`] naming the cap (`max_tensors`, …) before anything is sized by
/// the claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest header: a GGUF file's metadata and tensor infos, a safetensors JSON header,
    /// a checkpoint's pickles, a sharded model's `*.index.json`.
    pub max_header_bytes: u64,
    /// Most tensors in one file (GGUF tensor infos, safetensors entries, checkpoint
    /// tensors and storages).
    pub max_tensors: u64,
    /// Longest GGUF metadata string (chat templates and tokenizer blobs are a few MiB).
    pub max_string_len: u64,
    /// Most elements in one GGUF metadata array (vocabularies have a few hundred thousand).
    pub max_array_len: u64,
    /// Deepest nesting: GGUF arrays inside arrays, checkpoint containers inside containers.
    pub max_depth: u64,
}

impl Limits {
    /// The defaults: every real file opens, no crafted one can make a reader run away.
    pub const DEFAULT: Limits = Limits {
        max_header_bytes: 100_000_000,
        max_tensors: 1 << 22,
        max_string_len: 256 << 20,
        max_array_len: 1 << 31,
        max_depth: 64,
    };

    /// The caps by name, in the order above.
    pub fn named(&self) -> [(&'static str, u64); 5] {
        [
            ("max_header_bytes", self.max_header_bytes),
            ("max_tensors", self.max_tensors),
            ("max_string_len", self.max_string_len),
            ("max_array_len", self.max_array_len),
            ("max_depth", self.max_depth),
        ]
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Fail with [`Error::LimitExceeded`] naming `setting` when `value > cap`.
pub(crate) fn check(
    format: &'static str,
    what: &'static str,
    setting: &'static str,
    offset: u64,
    value: u64,
    cap: u64,
) -> Result<()> {
    Error::check_cap(format, what, Some(setting), offset, value, cap)
}

/// How a file's bytes reach the readers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Access {
    /// Map the file read-only (the default): nothing is copied until asked for. Tensor
    /// extents are checked against the file's current size before their bytes are used.
    #[default]
    Map,
    /// Read the file into memory with ordinary reads: a file shrunk or changed by another
    /// process afterwards cannot fault this one, at the cost of memory the file's size.
    Read,
}

/// Everything that decides how a file is opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Caps on what the file may claim.
    pub limits: Limits,
    /// Map or read.
    pub access: Access,
}
