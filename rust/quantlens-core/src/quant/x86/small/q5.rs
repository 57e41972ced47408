//! `Q5_0` (`(q - 16) * d`) and `Q5_1` (`q * d + m`), the fifth bit of weight `j` being bit
//! `j` of the block's `qh` word.
//!
//! AVX2 expands `qh` to 32 bytes (`0xFF` where the bit is set) with a byte shuffle and a
//! compare, merges it into the nibbles as bytes, then widens and converts. AVX-512 uses the
//! 32 bits directly as two lane masks: a `vpermps` by nibble into the table for a clear fifth
//! bit, then a masked `vpermps` into the table for a set one, so each value comes straight
//! out of a table of exact integers.

use core::arch::x86_64::{
    __m256, __m256i, __m512, _cvtu32_mask16, _mm256_add_ps, _mm256_and_si256, _mm256_andnot_si256,
    _mm256_castsi256_si128, _mm256_cmpeq_epi8, _mm256_extracti128_si256, _mm256_mul_ps,
    _mm256_or_si256, _mm256_set1_epi32, _mm256_set1_epi64x, _mm256_set1_epi8, _mm256_set_m128i,
    _mm256_setr_epi8, _mm256_shuffle_epi8, _mm256_sub_epi8, _mm512_add_ps, _mm512_cvtepu8_epi32,
    _mm512_mask_permutexvar_ps, _mm512_mul_ps, _mm512_permutexvar_ps, _mm512_srli_epi32,
};

use super::common::{
    is_non_finite_f16, load_x16, lut_f32, nibbles, reference_block, splat_f16_pair_x16,
    splat_f16_pair_x8, splat_f16_x16, splat_f16_x8, store_x32_avx2, store_x32_avx512, widen_i8_x16,
};

use crate::quant::blocks::{q5_0, q5_1};
use crate::quant::scalar;

const _: () = assert!(q5_0::D == 0 && q5_0::QH == 2 && q5_0::QS == 6 && q5_0::SIZE == 22);
const _: () = assert!(q5_1::D == 0 && q5_1::M == 2 && q5_1::QH == 4 && q5_1::QS == 8);
const _: () = assert!(q5_1::SIZE == 24 && q5_0::QK == 32 && q5_1::QK == 32);

/// `Q5_0` values with the fifth bit clear (`q - 16` for `q` in 0..16) ...
const Q5_0_LOW: [i8; 16] = [
    -16, -15, -14, -13, -12, -11, -10, -9, -8, -7, -6, -5, -4, -3, -2, -1,
];
/// ... and set (`q - 16` for `q` in 16..32).
const Q5_0_HIGH: [i8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
/// `Q5_1` values with the fifth bit clear ...
const Q5_1_LOW: [i8; 16] = Q5_0_HIGH;
/// ... and set.
const Q5_1_HIGH: [i8; 16] = [
    16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
];

/// The 32 quants of a Q5 block as bytes `nibble | fifth_bit << 4`, minus `offset`, in weight
/// order: weights 0–15 in the low 128-bit lane, 16–31 in the high one.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_bytes(qs: &[u8; 16], qh: u32, offset: i8) -> __m256i {
    let (lo, hi) = nibbles(load_x16(qs));
    let nib = _mm256_set_m128i(hi, lo);
    // Byte j takes byte j / 8 of `qh` and keeps bit j % 8: 0xFF where weight j's bit is set.
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(qh as i32),
        _mm256_setr_epi8(
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3,
            3, 3, 3,
        ),
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    let sixteen = _mm256_set1_epi8(16);
    if offset == 16 {
        // `q - 16` is the nibble when the bit is set and the nibble minus 16 when clear.
        _mm256_sub_epi8(nib, _mm256_andnot_si256(set, sixteen))
    } else {
        _mm256_or_si256(nib, _mm256_and_si256(set, sixteen))
    }
}

/// Widens 32 signed bytes (weight order) to four vectors of 8 floats.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn widen_i8_x32(q: __m256i) -> [__m256; 4] {
    let (w0, w1) = widen_i8_x16(_mm256_castsi256_si128(q));
    let (w2, w3) = widen_i8_x16(_mm256_extracti128_si256::<1>(q));
    [w0, w1, w2, w3]
}

/// `Q5_0` with AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant::x86) unsafe fn q5_0_avx2(src: &[u8], dst: &mut [f32]) {
    let (blocks, _) = src.as_chunks::<{ q5_0::SIZE }>();
    let (outs, _) = dst.as_chunks_mut::<{ q5_0::QK }>();
    for ([d0, d1, h0, h1, h2, h3, qs @ ..], out) in blocks.iter().zip(outs) {
        let d = splat_f16_x8(u16::from_le_bytes([*d0, *d1]));
        let qh = u32::from_le_bytes([*h0, *h1, *h2, *h3]);
        let w = widen_i8_x32(q5_bytes(qs, qh, 16));
        store_x32_avx2(out, w.map(|w| _mm256_mul_ps(w, d)));
    }
}

/// `Q5_1` with AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant::x86) unsafe fn q5_1_avx2(src: &[u8], dst: &mut [f32]) {
    let (blocks, _) = src.as_chunks::<{ q5_1::SIZE }>();
    let (outs, _) = dst.as_chunks_mut::<{ q5_1::QK }>();
    for (block, out) in blocks.iter().zip(outs) {
        let [d0, d1, m0, m1, h0, h1, h2, h3, qs @ ..] = block;
        let d_bits = u16::from_le_bytes([*d0, *d1]);
        if is_non_finite_f16(d_bits) {
            reference_block(scalar::legacy::dequantize_q5_1, block, out);
            continue;
        }
        let (d, m) = splat_f16_pair_x8([*d0, *d1, *m0, *m1]);
        let qh = u32::from_le_bytes([*h0, *h1, *h2, *h3]);
        let w = widen_i8_x32(q5_bytes(qs, qh, 0));
        store_x32_avx2(out, w.map(|w| _mm256_add_ps(_mm256_mul_ps(w, d), m)));
    }
}

/// The 32 values of a Q5 block from its nibbles `qs` and fifth bits `qh`: `low` where a
/// weight's fifth bit is clear, `high` where it is set (both [`lut_f32`] tables).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
fn q5_values(qs: &[u8; 16], qh: u32, low: __m512, high: __m512) -> [__m512; 2] {
    let x = _mm512_cvtepu8_epi32(load_x16(qs));
    let y = _mm512_srli_epi32(x, 4);
    let k_lo = _cvtu32_mask16(qh & 0xFFFF);
    let k_hi = _cvtu32_mask16(qh >> 16);
    [
        _mm512_mask_permutexvar_ps(_mm512_permutexvar_ps(x, low), k_lo, x, high),
        _mm512_mask_permutexvar_ps(_mm512_permutexvar_ps(y, low), k_hi, y, high),
    ]
}

/// `Q5_0` with AVX-512.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(in crate::quant::x86) unsafe fn q5_0_avx512(src: &[u8], dst: &mut [f32]) {
    let (low, high) = (lut_f32(&Q5_0_LOW), lut_f32(&Q5_0_HIGH));
    let (blocks, _) = src.as_chunks::<{ q5_0::SIZE }>();
    let (outs, _) = dst.as_chunks_mut::<{ q5_0::QK }>();
    for ([d0, d1, h0, h1, h2, h3, qs @ ..], out) in blocks.iter().zip(outs) {
        let d = splat_f16_x16(u16::from_le_bytes([*d0, *d1]));
        let qh = u32::from_le_bytes([*h0, *h1, *h2, *h3]);
        let v = q5_values(qs, qh, low, high);
        store_x32_avx512(out, v.map(|v| _mm512_mul_ps(v, d)));
    }
}

/// `Q5_1` with AVX-512.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(in crate::quant::x86) unsafe fn q5_1_avx512(src: &[u8], dst: &mut [f32]) {
    let (low, high) = (lut_f32(&Q5_1_LOW), lut_f32(&Q5_1_HIGH));
    let (blocks, _) = src.as_chunks::<{ q5_1::SIZE }>();
    let (outs, _) = dst.as_chunks_mut::<{ q5_1::QK }>();
    for (block, out) in blocks.iter().zip(outs) {
        let [d0, d1, m0, m1, h0, h1, h2, h3, qs @ ..] = block;
        let d_bits = u16::from_le_bytes([*d0, *d1]);
        if is_non_finite_f16(d_bits) {
            reference_block(scalar::legacy::dequantize_q5_1, block, out);
            continue;
        }
        let (d, m) = splat_f16_pair_x16([*d0, *d1, *m0, *m1]);
        let qh = u32::from_le_bytes([*h0, *h1, *h2, *h3]);
        let v = q5_values(qs, qh, low, high);
        store_x32_avx512(out, v.map(|v| _mm512_add_ps(_mm512_mul_ps(v, d), m)));
    }
}
