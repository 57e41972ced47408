//! Caps on what a GGUF header may claim. Each is far above anything real models use and
//! far below what could exhaust memory or time; lengths are also checked against the
//! bytes actually present.

use super::cursor::FORMAT;
use crate::error::{Error, Result};

/// Longest metadata string (chat templates and tokenizer blobs are at most a few MiB).
pub const MAX_STRING_LEN: u64 = 256 << 20;
/// Longest key or tensor name.
pub const MAX_NAME_LEN: u64 = 64 << 10;
/// Most elements in one metadata array (vocabularies have a few hundred thousand).
pub const MAX_ARRAY_LEN: u64 = 1 << 31;
/// Deepest nesting of arrays inside arrays.
pub const MAX_DEPTH: u64 = 8;
/// Most metadata key/value pairs.
pub const MAX_KV_COUNT: u64 = 1 << 20;
/// Most tensors in one file (the largest models have about 100,000).
pub const MAX_TENSOR_COUNT: u64 = 1 << 22;
/// Most dimensions of a tensor (`GGML_MAX_DIMS`).
pub const MAX_DIMS: u64 = 4;
/// Largest `general.alignment`.
pub const MAX_ALIGNMENT: u64 = 1 << 30;

/// Fail with [`Error::LimitExceeded`] when `value > limit`.
pub(crate) fn check(what: &'static str, offset: u64, value: u64, limit: u64) -> Result<()> {
    Error::check_limit(FORMAT, what, offset, value, limit)
}
