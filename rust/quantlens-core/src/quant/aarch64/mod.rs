//! aarch64 NEON kernels, reached only through [`super::dispatch`].
//!
//! Each kernel is an `unsafe fn` with `#[target_feature(enable = "neon")]` and produces
//! exactly the scalar reference's bits (no fused multiply-add where ggml has none).

use super::dispatch::SimdKernel;
use crate::dtype::GgmlType;

/// The NEON kernel for `ty`, if there is one.
pub(crate) fn neon(ty: GgmlType) -> Option<SimdKernel> {
    let _ = ty;
    None
}
