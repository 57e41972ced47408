//! Fixed caps on what a GGUF header may claim, beside the settable ones of
//! [`crate::Limits`]. Each is far above anything real models use and far below what could
//! exhaust memory or time; lengths are also checked against the bytes actually present.

use super::cursor::FORMAT;
use crate::error::{Error, Result};

/// Longest key or tensor name.
pub const MAX_NAME_LEN: u64 = 64 << 10;
/// Most metadata key/value pairs.
pub const MAX_KV_COUNT: u64 = 1 << 20;
/// Most dimensions of a tensor (`GGML_MAX_DIMS`).
pub const MAX_DIMS: u64 = 4;
/// Largest `general.alignment`.
pub const MAX_ALIGNMENT: u64 = 1 << 30;

/// Fail with [`Error::LimitExceeded`] when `value > limit`.
pub(crate) fn check(what: &'static str, offset: u64, value: u64, limit: u64) -> Result<()> {
    Error::check_limit(FORMAT, what, offset, value, limit)
}

/// Fail with [`Error::LimitExceeded`] naming the [`crate::Limits`] field `setting`.
pub(crate) fn check_setting(
    what: &'static str,
    setting: &'static str,
    offset: u64,
    value: u64,
    cap: u64,
) -> Result<()> {
    crate::limits::check(FORMAT, what, setting, offset, value, cap)
}
