//! NEON kernels for the k-quants with eight 32-weight sub-blocks: `Q4_K` and `Q5_K`.
//!
//! Each 32 bytes of `qs` hold 64 weights: low nibbles for sub-block `2c`, high nibbles for
//! sub-block `2c + 1`. The per-sub-block `d * sc` and `dmin * m` are formed in scalar f32,
//! exactly as the reference does, then broadcast; each weight is then `d1 * q - m1`, a
//! multiply and a subtract, never fused.

use std::arch::aarch64::{
    uint8x16_t, vaddq_u8, vandq_u8, vdupq_n_f32, vdupq_n_u8, vshrq_n_u8, vtstq_u8,
};

use super::common::{f16_to_f32, load16, store_u8_mul_sub};
use crate::quant::blocks::{q4_k, q5_k, u16_at};
use crate::quant::scalar::kquants::k4_scale_min;

/// `d * sc` and `dmin * m` of all eight sub-blocks, in the reference's f32 order.
#[inline]
fn scales_and_mins(d: f32, dmin: f32, scales: &[u8]) -> [(f32, f32); 8] {
    std::array::from_fn(|j| k4_scale_min(d, dmin, scales, j))
}

/// Writes the 64 weights of one 32-byte group of quants: `lo_*` (weights `0..32`, low
/// nibbles, already widened to 5 bits for `Q5_K`) with `(d1, m1)` and `hi_*` (weights
/// `32..64`) with `(d2, m2)`. `a` holds bytes `0..16` of the group, `b` bytes `16..32`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn store_group(
    out: &mut [f32],
    (lo_a, lo_b): (uint8x16_t, uint8x16_t),
    (hi_a, hi_b): (uint8x16_t, uint8x16_t),
    (d1, m1): (f32, f32),
    (d2, m2): (f32, f32),
) {
    // SAFETY: bounds-checked stores into `out`; the rest is register arithmetic.
    unsafe {
        let (d1, m1) = (vdupq_n_f32(d1), vdupq_n_f32(m1));
        let (d2, m2) = (vdupq_n_f32(d2), vdupq_n_f32(m2));
        store_u8_mul_sub(out, 0, lo_a, d1, m1);
        store_u8_mul_sub(out, 16, lo_b, d1, m1);
        store_u8_mul_sub(out, 32, hi_a, d2, m2);
        store_u8_mul_sub(out, 48, hi_b, d2, m2);
    }
}

/// `Q4_K`: `d * sc * q - dmin * m` with 6-bit `sc`, `m` per 32 weights.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dequantize_q4_k(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(q4_k::SIZE)
        .zip(dst.chunks_exact_mut(q4_k::QK))
    {
        // SAFETY: NEON is enabled in this function; the conversion touches no memory.
        let (d, dmin) = unsafe {
            (
                f16_to_f32(u16_at(block, q4_k::D)),
                f16_to_f32(u16_at(block, q4_k::DMIN)),
            )
        };
        let sm = scales_and_mins(d, dmin, &block[q4_k::SCALES..q4_k::SCALES + 12]);
        for (c, ys) in out.chunks_exact_mut(64).enumerate() {
            let at = q4_k::QS + 32 * c;
            // SAFETY: NEON is enabled here; every load and store is bounds-checked against
            // `block` and `ys`.
            unsafe {
                let a = load16(block, at);
                let b = load16(block, at + 16);
                let low = vdupq_n_u8(0x0F);
                store_group(
                    ys,
                    (vandq_u8(a, low), vandq_u8(b, low)),
                    (vshrq_n_u8::<4>(a), vshrq_n_u8::<4>(b)),
                    sm[2 * c],
                    sm[2 * c + 1],
                );
            }
        }
    }
}

/// `Q5_K`: as `Q4_K` with a fifth bit per weight from `qh`.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dequantize_q5_k(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(q5_k::SIZE)
        .zip(dst.chunks_exact_mut(q5_k::QK))
    {
        // SAFETY: NEON is enabled in this function; the conversion touches no memory.
        let (d, dmin) = unsafe {
            (
                f16_to_f32(u16_at(block, q5_k::D)),
                f16_to_f32(u16_at(block, q5_k::DMIN)),
            )
        };
        let sm = scales_and_mins(d, dmin, &block[q5_k::SCALES..q5_k::SCALES + 12]);
        // SAFETY: NEON is enabled here; both loads are bounds-checked against `block`.
        let (qh_a, qh_b) = unsafe { (load16(block, q5_k::QH), load16(block, q5_k::QH + 16)) };
        for (c, ys) in out.chunks_exact_mut(64).enumerate() {
            let at = q5_k::QS + 32 * c;
            // Bits 2c and 2c + 1 of qh[l] are the fifth bits of the two nibbles of byte l.
            let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
            // SAFETY: NEON is enabled here; every load and store is bounds-checked against
            // `block` and `ys`.
            unsafe {
                let a = load16(block, at);
                let b = load16(block, at + 16);
                let (low, sixteen) = (vdupq_n_u8(0x0F), vdupq_n_u8(16));
                // 16 where the qh bit is set, 0 elsewhere; added like the reference adds it.
                let high = |qh, bit| vandq_u8(vtstq_u8(qh, vdupq_n_u8(bit)), sixteen);
                store_group(
                    ys,
                    (
                        vaddq_u8(vandq_u8(a, low), high(qh_a, u1)),
                        vaddq_u8(vandq_u8(b, low), high(qh_b, u1)),
                    ),
                    (
                        vaddq_u8(vshrq_n_u8::<4>(a), high(qh_a, u2)),
                        vaddq_u8(vshrq_n_u8::<4>(b), high(qh_b, u2)),
                    ),
                    sm[2 * c],
                    sm[2 * c + 1],
                );
            }
        }
    }
}
