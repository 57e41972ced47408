//! x86-64 kernels for the 256-weight super-block types (k-quants, `IQ4_XS`, ternary and
//! other i-quants).

use crate::dtype::GgmlType;
use crate::quant::dispatch::SimdKernel;

/// The AVX2 kernel for `ty`, if this family has one.
pub(super) fn avx2(ty: GgmlType) -> Option<SimdKernel> {
    let _ = ty;
    None
}

/// The AVX-512 kernel for `ty`, if this family has one.
pub(super) fn avx512(ty: GgmlType) -> Option<SimdKernel> {
    let _ = ty;
    None
}
