//! x86-64 kernels (AVX2, AVX-512), reached only through [`super::dispatch`].
//!
//! Each kernel is an `unsafe fn` with `#[target_feature]`: callable only once the CPU is
//! known to have the features. They produce exactly the scalar reference's bits: no fused
//! multiply-add where ggml multiplies and adds separately, the same operation order.

use super::dispatch::SimdKernel;
use crate::dtype::GgmlType;

mod small_blocks;
mod super_blocks;

/// The AVX2 kernel for `ty`, if there is one.
pub(crate) fn avx2(ty: GgmlType) -> Option<SimdKernel> {
    small_blocks::avx2(ty).or_else(|| super_blocks::avx2(ty))
}

/// The AVX-512 kernel for `ty`, if there is one.
pub(crate) fn avx512(ty: GgmlType) -> Option<SimdKernel> {
    small_blocks::avx512(ty).or_else(|| super_blocks::avx512(ty))
}
