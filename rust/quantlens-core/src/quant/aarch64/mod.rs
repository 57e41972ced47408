//! aarch64 NEON kernels, reached only through [`super::dispatch`].
//!
//! Each kernel is an `unsafe fn` with `#[target_feature(enable = "neon")]` and produces
//! exactly the scalar reference's bits (no fused multiply-add where ggml has none). One file
//! per family of block layouts; [`common`] holds the loads, stores and widening steps they
//! share, all bounds-checked against the current block so no kernel reads or writes outside
//! the slices it is given.

use super::dispatch::SimdKernel;
use crate::dtype::GgmlType;

mod common;
mod float;
mod kquants16;
mod kquants32;
mod legacy;
mod table4;
#[cfg(test)]
mod tests;

/// The NEON kernel for `ty`, if there is one.
pub(crate) fn neon(ty: GgmlType) -> Option<SimdKernel> {
    // The kernels reinterpret byte vectors as 16-bit lanes assuming little-endian lane
    // order; big-endian aarch64 keeps the scalar reference.
    if cfg!(target_endian = "big") {
        return None;
    }
    Some(match ty {
        GgmlType::F16 => float::dequantize_f16,
        GgmlType::BF16 => float::dequantize_bf16,
        GgmlType::Q8_0 => legacy::dequantize_q8_0,
        GgmlType::Q4_0 => legacy::dequantize_q4_0,
        GgmlType::Q4_1 => legacy::dequantize_q4_1,
        GgmlType::Q5_0 => legacy::dequantize_q5_0,
        GgmlType::Q5_1 => legacy::dequantize_q5_1,
        GgmlType::Q4_K => kquants32::dequantize_q4_k,
        GgmlType::Q5_K => kquants32::dequantize_q5_k,
        GgmlType::Q6_K => kquants16::dequantize_q6_k,
        GgmlType::Q2_K => kquants16::dequantize_q2_k,
        GgmlType::Q3_K => kquants16::dequantize_q3_k,
        GgmlType::IQ4_NL => table4::dequantize_iq4_nl,
        GgmlType::IQ4_XS => table4::dequantize_iq4_xs,
        GgmlType::MXFP4 => table4::dequantize_mxfp4,
        _ => return None,
    })
}
