//! NEON kernels for the k-quants with sixteen 16-weight sub-blocks: `Q2_K`, `Q3_K` and
//! `Q6_K`.
//!
//! A sub-block of 16 weights is exactly one register of quants, so each is decoded in `u8`/
//! `i8` lanes, widened, and multiplied by its scale, which (like the min) is formed in scalar
//! f32 first, in the reference's order.
//!
//! `Q2_K` and `Q3_K` store their low bits as four 2-bit planes per 32-byte half of `qs`:
//! sub-block `8h + 2s` is plane `s` (bits `2s..2s + 2`) of bytes `0..16` of half `h`, and
//! sub-block `8h + 2s + 1` the same plane of bytes `16..32`. `Q3_K`'s high bit of those
//! sub-blocks is bit `4h + s` of `hmask` bytes `0..16` and `16..32` respectively.

use std::arch::aarch64::{
    vandq_u8, vbicq_u8, vdupq_n_f32, vdupq_n_s8, vdupq_n_u8, vorrq_u8, vreinterpretq_s8_u8,
    vshlq_n_u8, vshrq_n_u8, vsubq_s8, vtstq_u8,
};

use super::common::{f16_to_f32, load16, store_i8_mul, store_u8_mul_sub};
use crate::quant::blocks::{q2_k, q3_k, q6_k, u16_at};

/// `Q2_K`: `d * sc * q - dmin * m` with 4-bit `sc`, `m` per 16 weights.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dequantize_q2_k(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(q2_k::SIZE)
        .zip(dst.chunks_exact_mut(q2_k::QK))
    {
        // SAFETY: NEON is enabled in this function; the conversion touches no memory.
        let (d, dmin) = unsafe {
            (
                f16_to_f32(u16_at(block, q2_k::D)),
                f16_to_f32(u16_at(block, q2_k::DMIN)),
            )
        };
        let scales = &block[q2_k::SCALES..q2_k::SCALES + 16];
        for (h, ys) in out.chunks_exact_mut(128).enumerate() {
            let at = q2_k::QS + 32 * h;
            // SAFETY: NEON is enabled here; every load and store is bounds-checked against
            // `block` and `ys`.
            unsafe {
                // Shifted right by two after each plane, so plane `s` is always bits 0..2
                // (through a closure: `#[target_feature]` functions are not `FnMut`).
                let mut planes = [load16(block, at), load16(block, at + 16)];
                for s in 0..4 {
                    for (half, q) in planes.iter().enumerate() {
                        let k = 8 * h + 2 * s + half;
                        let dl = d * f32::from(scales[k] & 0x0F);
                        let ml = dmin * f32::from(scales[k] >> 4);
                        let q = vandq_u8(*q, vdupq_n_u8(3));
                        let at = 16 * (2 * s + half);
                        store_u8_mul_sub(ys, at, q, vdupq_n_f32(dl), vdupq_n_f32(ml));
                    }
                    planes = planes.map(|q| vshrq_n_u8::<2>(q));
                }
            }
        }
    }
}

/// The sixteen `Q3_K` scales, each 6 bits biased by 32: low nibbles from bytes 0..8 (low
/// then high nibbles), high 2-bit pairs from bytes 8..12.
#[inline]
fn q3_k_scales(scales: &[u8]) -> [i8; 16] {
    std::array::from_fn(|k| {
        let low = (scales[k % 8] >> (4 * (k / 8))) & 0x0F;
        let high = (scales[8 + k % 4] >> (2 * (k / 4))) & 3;
        (low | (high << 4)) as i8 - 32
    })
}

/// `Q3_K`: `d * (sc - 32) * q` with `q` in -4..=3; a set `hmask` bit means no -4.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dequantize_q3_k(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(q3_k::SIZE)
        .zip(dst.chunks_exact_mut(q3_k::QK))
    {
        // SAFETY: NEON is enabled in this function; the conversion touches no memory.
        let d = unsafe { f16_to_f32(u16_at(block, q3_k::D)) };
        let scales = q3_k_scales(&block[q3_k::SCALES..q3_k::SCALES + 12]);
        // SAFETY: NEON is enabled here; both loads are bounds-checked against `block`.
        let hmask = unsafe { [load16(block, q3_k::HMASK), load16(block, q3_k::HMASK + 16)] };
        for (h, ys) in out.chunks_exact_mut(128).enumerate() {
            let at = q3_k::QS + 32 * h;
            // SAFETY: NEON is enabled here; every load and store is bounds-checked against
            // `block` and `ys`.
            unsafe {
                // Shifted right by two after each plane, as in `dequantize_q2_k`.
                let mut planes = [load16(block, at), load16(block, at + 16)];
                for s in 0..4 {
                    let bit = vdupq_n_u8(1 << (4 * h + s));
                    for (half, (q, hm)) in planes.iter().zip(hmask).enumerate() {
                        let k = 8 * h + 2 * s + half;
                        let dl = d * f32::from(scales[k]);
                        let low = vandq_u8(*q, vdupq_n_u8(3));
                        // 4 where the high bit is clear, 0 where it is set.
                        let minus = vbicq_u8(vdupq_n_u8(4), vtstq_u8(hm, bit));
                        let q = vsubq_s8(vreinterpretq_s8_u8(low), vreinterpretq_s8_u8(minus));
                        store_i8_mul(ys, 16 * (2 * s + half), q, vdupq_n_f32(dl));
                    }
                    planes = planes.map(|q| vshrq_n_u8::<2>(q));
                }
            }
        }
    }
}

/// `Q6_K`: `d * sc * (q - 32)` with `i8` `sc` per 16 weights.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dequantize_q6_k(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(q6_k::SIZE)
        .zip(dst.chunks_exact_mut(q6_k::QK))
    {
        // SAFETY: NEON is enabled in this function; the conversion touches no memory.
        let d = unsafe { f16_to_f32(u16_at(block, q6_k::D)) };
        let scales = &block[q6_k::SCALES..q6_k::SCALES + 16];
        let sc: [f32; 16] = std::array::from_fn(|i| d * f32::from(scales[i] as i8));
        // Each half of 128 weights uses 64 ql bytes, 32 qh bytes and 8 scales; its quarters
        // of 32 weights are done 16 weights (one scale) at a time.
        for (h, ys) in out.chunks_exact_mut(128).enumerate() {
            for g in 0..2 {
                let ql = q6_k::QL + 64 * h + 16 * g;
                // SAFETY: NEON is enabled here; every load and store is bounds-checked
                // against `block` and `ys`.
                unsafe {
                    let a = load16(block, ql);
                    let b = load16(block, ql + 32);
                    let qh = load16(block, q6_k::QH + 32 * h + 16 * g);
                    let (low, top2) = (vdupq_n_u8(0x0F), vdupq_n_u8(0x30));
                    // Quarter 0 is `a`'s low nibbles with qh bits 0..2, 1 is `b`'s low
                    // nibbles with bits 2..4, 2 is `a`'s high nibbles with bits 4..6, 3 is
                    // `b`'s high nibbles with bits 6..8; each 2-bit field moves to bits 4..6.
                    let quarters = [
                        vorrq_u8(vandq_u8(a, low), vandq_u8(vshlq_n_u8::<4>(qh), top2)),
                        vorrq_u8(vandq_u8(b, low), vandq_u8(vshlq_n_u8::<2>(qh), top2)),
                        vorrq_u8(vshrq_n_u8::<4>(a), vandq_u8(qh, top2)),
                        vorrq_u8(vshrq_n_u8::<4>(b), vandq_u8(vshrq_n_u8::<2>(qh), top2)),
                    ];
                    for (quarter, q) in quarters.into_iter().enumerate() {
                        let q = vsubq_s8(vreinterpretq_s8_u8(q), vdupq_n_s8(32));
                        let scale = vdupq_n_f32(sc[8 * h + 2 * quarter + g]);
                        store_i8_mul(ys, 32 * quarter + 16 * g, q, scale);
                    }
                }
            }
        }
    }
}
