//! x86-64 kernels for the 32-weight-block types (`Q4_0` to `Q8_0`, `IQ4_NL`, `MXFP4`) and plain
//! floats (`F16`, `BF16`).

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
