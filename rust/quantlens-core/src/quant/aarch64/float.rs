//! NEON kernels for the plain 16-bit float types, `F16` and `BF16`.
//!
//! Both widen exactly, so there is no operation order to follow: `F16` goes through the
//! hardware conversion (which treats NaNs as `half` does, see [`f16x8_to_f32`]) and `BF16`
//! is a 16-bit left shift. Eight weights (16 bytes) are done at a time; the last up to seven
//! go through the scalar reference, which gives the same bits.

use std::arch::aarch64::{
    float32x4x2_t, vget_low_u16, vreinterpretq_f32_u32, vreinterpretq_u16_u8, vshll_high_n_u16,
    vshll_n_u16,
};

use super::common::{f16x8_to_f32, load16, store8};
use crate::quant::scalar::float;

/// Bytes per vector step: eight 16-bit values.
const STEP_BYTES: usize = 16;
/// Weights per vector step.
const STEP: usize = 8;

/// `F16`: exact widening, subnormals and NaN payloads included.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dequantize_f16(src: &[u8], dst: &mut [f32]) {
    let mut src_steps = src.chunks_exact(STEP_BYTES);
    let mut dst_steps = dst.chunks_exact_mut(STEP);
    for (bytes, out) in (&mut src_steps).zip(&mut dst_steps) {
        // SAFETY: NEON is enabled here; `load16` and `store8` bounds-check their ranges
        // against `bytes` (16 bytes) and `out` (8 floats).
        unsafe {
            // Little-endian lanes: u16 lane j is bytes 2j and 2j + 1.
            let bits = vreinterpretq_u16_u8(load16(bytes, 0));
            store8(out, 0, f16x8_to_f32(bits));
        }
    }
    // Both iterators stopped after the same number of whole steps, so the remainders are
    // the same weights.
    float::dequantize_f16(src_steps.remainder(), dst_steps.into_remainder());
}

/// `BF16`: the 16 stored bits become the top half of an f32.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dequantize_bf16(src: &[u8], dst: &mut [f32]) {
    let mut src_steps = src.chunks_exact(STEP_BYTES);
    let mut dst_steps = dst.chunks_exact_mut(STEP);
    for (bytes, out) in (&mut src_steps).zip(&mut dst_steps) {
        // SAFETY: NEON is enabled here; `load16` and `store8` bounds-check their ranges
        // against `bytes` (16 bytes) and `out` (8 floats).
        unsafe {
            let bits = vreinterpretq_u16_u8(load16(bytes, 0));
            let lo = vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(bits)));
            let hi = vreinterpretq_f32_u32(vshll_high_n_u16::<16>(bits));
            store8(out, 0, float32x4x2_t(lo, hi));
        }
    }
    float::dequantize_bf16(src_steps.remainder(), dst_steps.into_remainder());
}
