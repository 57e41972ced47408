//! NEON kernels for the 4-bit lookup-table types: `IQ4_NL`, `IQ4_XS` and `MXFP4`.
//!
//! Each nibble indexes a 16-entry `i8` table (`kvalues_iq4nl` or the doubled E2M1 values
//! `kvalues_mxfp4`); one `vqtbl1q_s8` maps 16 nibbles at once, and the `i8` levels widen
//! exactly to f32 before the single multiply by the block (or sub-block) scale. Nibbles are
//! ordered as in `Q4_0`: low nibbles are weights `0..16`, high nibbles `16..32`.

use std::arch::aarch64::{
    float32x4_t, int8x16_t, vandq_u8, vdupq_n_f32, vdupq_n_u8, vqtbl1q_s8, vshrq_n_u8,
};

use super::common::{f16_splat, f16_to_f32, load16, load_table, store_i8_mul};
use crate::quant::blocks::{iq4_nl, iq4_xs, mxfp4, u16_at};
use crate::quant::scalar::fp4::e8m0_to_f32_half;
use crate::quant::scalar::iq_grids::{KVALUES_IQ4NL, KVALUES_MXFP4};

/// Writes the 32 weights of 16 bytes of nibbles at `block[at..at + 16]`:
/// `table[nibble] * d`, low nibbles to `out[0..16]`, high nibbles to `out[16..32]`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn store_nibbles(
    out: &mut [f32],
    block: &[u8],
    at: usize,
    table: int8x16_t,
    d: float32x4_t,
) {
    // SAFETY: a bounds-checked load from `block`, bounds-checked stores into `out`; the
    // table lookups only see indices 0..16, all inside the 16-byte table.
    unsafe {
        let q = load16(block, at);
        let lo = vqtbl1q_s8(table, vandq_u8(q, vdupq_n_u8(0x0F)));
        let hi = vqtbl1q_s8(table, vshrq_n_u8::<4>(q));
        store_i8_mul(out, 0, lo, d);
        store_i8_mul(out, 16, hi, d);
    }
}

/// `IQ4_NL`: `d * kvalues_iq4nl[q]`.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dequantize_iq4_nl(src: &[u8], dst: &mut [f32]) {
    // SAFETY: NEON is enabled here; the table is a 16-byte array.
    let table = unsafe { load_table(&KVALUES_IQ4NL) };
    for (block, out) in src
        .chunks_exact(iq4_nl::SIZE)
        .zip(dst.chunks_exact_mut(iq4_nl::QK))
    {
        // SAFETY: NEON is enabled here; every load and store is bounds-checked against
        // `block` and `out`.
        unsafe {
            let d = f16_splat(u16_at(block, iq4_nl::D));
            store_nibbles(out, block, iq4_nl::QS, table, d);
        }
    }
}

/// `IQ4_XS`: `IQ4_NL` levels in 32-weight groups with 6-bit scales biased by 32; each
/// group's `d * (scale - 32)` is formed in scalar f32 first, as in the reference.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dequantize_iq4_xs(src: &[u8], dst: &mut [f32]) {
    // SAFETY: NEON is enabled here; the table is a 16-byte array.
    let table = unsafe { load_table(&KVALUES_IQ4NL) };
    for (block, out) in src
        .chunks_exact(iq4_xs::SIZE)
        .zip(dst.chunks_exact_mut(iq4_xs::QK))
    {
        // SAFETY: NEON is enabled in this function; the conversion touches no memory.
        let d = unsafe { f16_to_f32(u16_at(block, iq4_xs::D)) };
        let scales_h = u16_at(block, iq4_xs::SCALES_H);
        let scales_l = &block[iq4_xs::SCALES_L..iq4_xs::SCALES_L + 4];
        for (ib, ys) in out.chunks_exact_mut(32).enumerate() {
            let low = (scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0F;
            let high = ((scales_h >> (2 * ib)) & 3) as u8;
            let dl = d * f32::from(i16::from(low | (high << 4)) - 32);
            // SAFETY: NEON is enabled here; every load and store is bounds-checked against
            // `block` and `ys`.
            unsafe {
                store_nibbles(ys, block, iq4_xs::QS + 16 * ib, table, vdupq_n_f32(dl));
            }
        }
    }
}

/// `MXFP4`: `kvalues_mxfp4[q] * d` with `d` half the block's E8M0 power of two (the table
/// holds the E2M1 values doubled).
#[target_feature(enable = "neon")]
pub(super) unsafe fn dequantize_mxfp4(src: &[u8], dst: &mut [f32]) {
    // SAFETY: NEON is enabled here; the table is a 16-byte array.
    let table = unsafe { load_table(&KVALUES_MXFP4) };
    for (block, out) in src
        .chunks_exact(mxfp4::SIZE)
        .zip(dst.chunks_exact_mut(mxfp4::QK))
    {
        let d = e8m0_to_f32_half(block[mxfp4::E]);
        // SAFETY: NEON is enabled here; every load and store is bounds-checked against
        // `block` and `out`.
        unsafe {
            store_nibbles(out, block, mxfp4::QS, table, vdupq_n_f32(d));
        }
    }
}
