//! x86-64 kernels for the 32-weight-block types (`Q4_0` to `Q8_0`, `IQ4_NL`, `MXFP4`, and the
//! 64-weight `NVFP4`) and plain floats (`F16`, `BF16`).
//!
//! One file per family under `small/`; this file only maps types to kernels.

use crate::dtype::GgmlType;
use crate::quant::dispatch::SimdKernel;

#[path = "small/common.rs"]
mod common;
#[path = "small/float.rs"]
mod float;
#[path = "small/legacy.rs"]
mod legacy;
#[path = "small/lut.rs"]
mod lut;
#[path = "small/q5.rs"]
mod q5;

/// The AVX2 kernel for `ty`, if this family has one.
pub(super) fn avx2(ty: GgmlType) -> Option<SimdKernel> {
    Some(match ty {
        GgmlType::F16 => float::f16_avx2,
        GgmlType::BF16 => float::bf16_avx2,
        GgmlType::Q4_0 => legacy::q4_0_avx2,
        GgmlType::Q4_1 => legacy::q4_1_avx2,
        GgmlType::Q5_0 => q5::q5_0_avx2,
        GgmlType::Q5_1 => q5::q5_1_avx2,
        GgmlType::Q8_0 => legacy::q8_0_avx2,
        GgmlType::IQ4_NL => lut::iq4_nl_avx2,
        GgmlType::MXFP4 => lut::mxfp4_avx2,
        GgmlType::NVFP4 => lut::nvfp4_avx2,
        _ => return None,
    })
}

/// The AVX-512 kernel for `ty`, if this family has one.
pub(super) fn avx512(ty: GgmlType) -> Option<SimdKernel> {
    Some(match ty {
        GgmlType::F16 => float::f16_avx512,
        GgmlType::BF16 => float::bf16_avx512,
        GgmlType::Q4_0 => legacy::q4_0_avx512,
        GgmlType::Q4_1 => legacy::q4_1_avx512,
        GgmlType::Q5_0 => q5::q5_0_avx512,
        GgmlType::Q5_1 => q5::q5_1_avx512,
        GgmlType::Q8_0 => legacy::q8_0_avx512,
        GgmlType::IQ4_NL => lut::iq4_nl_avx512,
        GgmlType::MXFP4 => lut::mxfp4_avx512,
        GgmlType::NVFP4 => lut::nvfp4_avx512,
        _ => return None,
    })
}

#[cfg(test)]
#[path = "small/tests.rs"]
mod tests;
