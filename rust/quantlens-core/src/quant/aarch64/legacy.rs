//! NEON kernels for the 32-weight legacy blocks: `Q4_0`, `Q4_1`, `Q5_0`, `Q5_1` and `Q8_0`.
//!
//! A block's 16 bytes of nibbles are one register: low nibbles give weights 0..16, high
//! nibbles weights 16..32. The Q5 fifth bits come from the little-endian `qh` word, bits
//! 0..16 for the low half and 16..32 for the high half. Offsets (`- 8`, `- 16`) are applied
//! in `i8` before widening, which is exact, so each weight costs the same single f32
//! multiply (and add, for the `_1` types) as in the scalar reference.

use std::arch::aarch64::{
    uint8x16_t, vandq_u8, vdupq_n_s8, vdupq_n_u8, vorrq_u8, vreinterpretq_s8_u8, vshrq_n_u8,
    vsubq_s8,
};

use super::common::{f16_splat, lanes_with_bit, load16, store_i8_mul, store_u8_mul_add};
use crate::quant::blocks::{q4_0, q4_1, q5_0, q5_1, q8_0, u16_at, u32_at};

/// The low and high nibbles of 16 bytes: weights `0..16` and `16..32` of a block.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn nibbles(block: &[u8], at: usize) -> (uint8x16_t, uint8x16_t) {
    // SAFETY: a bounds-checked load, then register arithmetic.
    unsafe {
        let q = load16(block, at);
        (vandq_u8(q, vdupq_n_u8(0x0F)), vshrq_n_u8::<4>(q))
    }
}

/// The 5-bit quants of a Q5 block: the nibbles at `qs` with bit 4 set from the `qh` word at
/// `qh`, weights `0..16` and `16..32`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn five_bit_quants(block: &[u8], qs: usize, qh: usize) -> (uint8x16_t, uint8x16_t) {
    let qh = u32_at(block, qh);
    // SAFETY: a bounds-checked load, then register arithmetic.
    unsafe {
        let (lo, hi) = nibbles(block, qs);
        let bit4 = vdupq_n_u8(0x10);
        let lo = vorrq_u8(lo, vandq_u8(lanes_with_bit(qh as u16), bit4));
        let hi = vorrq_u8(hi, vandq_u8(lanes_with_bit((qh >> 16) as u16), bit4));
        (lo, hi)
    }
}

/// `Q4_0`: `(q - 8) * d`.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dequantize_q4_0(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(q4_0::SIZE)
        .zip(dst.chunks_exact_mut(q4_0::QK))
    {
        // SAFETY: NEON is enabled here; every load and store is bounds-checked against
        // `block` and `out`.
        unsafe {
            let d = f16_splat(u16_at(block, q4_0::D));
            let (lo, hi) = nibbles(block, q4_0::QS);
            let eight = vdupq_n_s8(8);
            store_i8_mul(out, 0, vsubq_s8(vreinterpretq_s8_u8(lo), eight), d);
            store_i8_mul(out, 16, vsubq_s8(vreinterpretq_s8_u8(hi), eight), d);
        }
    }
}

/// `Q4_1`: `q * d + m`.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dequantize_q4_1(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(q4_1::SIZE)
        .zip(dst.chunks_exact_mut(q4_1::QK))
    {
        // SAFETY: NEON is enabled here; every load and store is bounds-checked against
        // `block` and `out`.
        unsafe {
            let d = f16_splat(u16_at(block, q4_1::D));
            let m = f16_splat(u16_at(block, q4_1::M));
            let (lo, hi) = nibbles(block, q4_1::QS);
            store_u8_mul_add(out, 0, lo, d, m);
            store_u8_mul_add(out, 16, hi, d, m);
        }
    }
}

/// `Q5_0`: `(q - 16) * d`, the fifth bits coming from `qh`.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dequantize_q5_0(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(q5_0::SIZE)
        .zip(dst.chunks_exact_mut(q5_0::QK))
    {
        // SAFETY: NEON is enabled here; every load and store is bounds-checked against
        // `block` and `out`.
        unsafe {
            let d = f16_splat(u16_at(block, q5_0::D));
            let (lo, hi) = five_bit_quants(block, q5_0::QS, q5_0::QH);
            let sixteen = vdupq_n_s8(16);
            store_i8_mul(out, 0, vsubq_s8(vreinterpretq_s8_u8(lo), sixteen), d);
            store_i8_mul(out, 16, vsubq_s8(vreinterpretq_s8_u8(hi), sixteen), d);
        }
    }
}

/// `Q5_1`: `q * d + m`, the fifth bits coming from `qh`.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dequantize_q5_1(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(q5_1::SIZE)
        .zip(dst.chunks_exact_mut(q5_1::QK))
    {
        // SAFETY: NEON is enabled here; every load and store is bounds-checked against
        // `block` and `out`.
        unsafe {
            let d = f16_splat(u16_at(block, q5_1::D));
            let m = f16_splat(u16_at(block, q5_1::M));
            let (lo, hi) = five_bit_quants(block, q5_1::QS, q5_1::QH);
            store_u8_mul_add(out, 0, lo, d, m);
            store_u8_mul_add(out, 16, hi, d, m);
        }
    }
}

/// `Q8_0`: `q * d` with signed 8-bit `q`.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dequantize_q8_0(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(q8_0::SIZE)
        .zip(dst.chunks_exact_mut(q8_0::QK))
    {
        // SAFETY: NEON is enabled here; every load and store is bounds-checked against
        // `block` and `out`.
        unsafe {
            let d = f16_splat(u16_at(block, q8_0::D));
            let lo = vreinterpretq_s8_u8(load16(block, q8_0::QS));
            let hi = vreinterpretq_s8_u8(load16(block, q8_0::QS + 16));
            store_i8_mul(out, 0, lo, d);
            store_i8_mul(out, 16, hi, d);
        }
    }
}
