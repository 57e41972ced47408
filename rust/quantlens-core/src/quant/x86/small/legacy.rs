//! The legacy types without fifth bits: `Q4_0` (`(q - 8) * d`), `Q4_1` (`q * d + m`) and
//! `Q8_0` (`q * d` with signed bytes); `Q5_0` and `Q5_1` are in `q5`.
//!
//! AVX2 splits the 16 bytes of nibbles into two registers of bytes, widens them to i32 and
//! converts. AVX-512 zero-extends the 16 bytes to 16 dwords once and lets `vpermps` map each
//! nibble straight to its f32 value: the permute reads only the low 4 bits of an index lane,
//! so the byte itself indexes by its low nibble and the byte shifted right by 4 by its high
//! one. The tables hold exact small integers, so the looked-up value equals the reference's
//! integer-to-float conversion bit for bit; the multiply (and add) follow as in the
//! reference, never fused.
//!
//! `Q8_0` sign-extends its bytes to i32, 8 or 16 at a time, and converts them exactly.

use core::arch::x86_64::{
    __m512, _mm256_add_ps, _mm256_cvtepi32_ps, _mm256_cvtepi8_epi32, _mm256_mul_ps, _mm512_add_ps,
    _mm512_cvtepi32_ps, _mm512_cvtepi8_epi32, _mm512_cvtepu8_epi32, _mm512_mul_ps,
    _mm512_permutexvar_ps, _mm512_srli_epi32, _mm_set1_epi8, _mm_sub_epi8,
};

use super::common::{
    is_non_finite_f16, load_x16, load_x8, lut_f32, nibbles, reference_block, splat_f16_pair_x16,
    splat_f16_pair_x8, splat_f16_x16, splat_f16_x8, store_x32_avx2, store_x32_avx512, widen_i8_x16,
};
use crate::quant::blocks::{q4_0, q4_1, q8_0};
use crate::quant::scalar;

const _: () = assert!(q4_0::D == 0 && q4_0::QS == 2 && q4_0::SIZE == 18 && q4_0::QK == 32);
const _: () = assert!(q8_0::D == 0 && q8_0::QS == 2 && q8_0::SIZE == 34 && q8_0::QK == 32);
const _: () = assert!(q4_1::D == 0 && q4_1::M == 2 && q4_1::QS == 4 && q4_1::SIZE == 20);

/// `q - 8` for every nibble `q`.
const Q4_0_LEVELS: [i8; 16] = [-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7];
/// `q` for every nibble `q`.
const Q4_1_LEVELS: [i8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

/// `Q4_0` with AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant::x86) unsafe fn q4_0_avx2(src: &[u8], dst: &mut [f32]) {
    let (blocks, _) = src.as_chunks::<{ q4_0::SIZE }>();
    let (outs, _) = dst.as_chunks_mut::<{ q4_0::QK }>();
    for ([d0, d1, qs @ ..], out) in blocks.iter().zip(outs) {
        let d = splat_f16_x8(u16::from_le_bytes([*d0, *d1]));
        let (lo, hi) = nibbles(load_x16(qs));
        let eight = _mm_set1_epi8(8);
        let (w0, w1) = widen_i8_x16(_mm_sub_epi8(lo, eight));
        let (w2, w3) = widen_i8_x16(_mm_sub_epi8(hi, eight));
        store_x32_avx2(
            out,
            [
                _mm256_mul_ps(w0, d),
                _mm256_mul_ps(w1, d),
                _mm256_mul_ps(w2, d),
                _mm256_mul_ps(w3, d),
            ],
        );
    }
}

/// `Q4_1` with AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant::x86) unsafe fn q4_1_avx2(src: &[u8], dst: &mut [f32]) {
    let (blocks, _) = src.as_chunks::<{ q4_1::SIZE }>();
    let (outs, _) = dst.as_chunks_mut::<{ q4_1::QK }>();
    for (block, out) in blocks.iter().zip(outs) {
        let [d0, d1, m0, m1, qs @ ..] = block;
        let d_bits = u16::from_le_bytes([*d0, *d1]);
        if is_non_finite_f16(d_bits) {
            reference_block(scalar::legacy::dequantize_q4_1, block, out);
            continue;
        }
        let (d, m) = splat_f16_pair_x8([*d0, *d1, *m0, *m1]);
        let (lo, hi) = nibbles(load_x16(qs));
        let (w0, w1) = widen_i8_x16(lo);
        let (w2, w3) = widen_i8_x16(hi);
        store_x32_avx2(
            out,
            [
                _mm256_add_ps(_mm256_mul_ps(w0, d), m),
                _mm256_add_ps(_mm256_mul_ps(w1, d), m),
                _mm256_add_ps(_mm256_mul_ps(w2, d), m),
                _mm256_add_ps(_mm256_mul_ps(w3, d), m),
            ],
        );
    }
}

/// The 16 low-nibble values and the 16 high-nibble values of 16 bytes, looked up in
/// `levels` (a [`lut_f32`] table).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(super) fn lookup_nibbles_x16(qs: &[u8; 16], levels: __m512) -> (__m512, __m512) {
    let x = _mm512_cvtepu8_epi32(load_x16(qs));
    (
        _mm512_permutexvar_ps(x, levels),
        _mm512_permutexvar_ps(_mm512_srli_epi32(x, 4), levels),
    )
}

/// `Q4_0` with AVX-512.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(in crate::quant::x86) unsafe fn q4_0_avx512(src: &[u8], dst: &mut [f32]) {
    let levels = lut_f32(&Q4_0_LEVELS);
    let (blocks, _) = src.as_chunks::<{ q4_0::SIZE }>();
    let (outs, _) = dst.as_chunks_mut::<{ q4_0::QK }>();
    for ([d0, d1, qs @ ..], out) in blocks.iter().zip(outs) {
        let d = splat_f16_x16(u16::from_le_bytes([*d0, *d1]));
        let (lo, hi) = lookup_nibbles_x16(qs, levels);
        store_x32_avx512(out, [_mm512_mul_ps(lo, d), _mm512_mul_ps(hi, d)]);
    }
}

/// `Q4_1` with AVX-512.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(in crate::quant::x86) unsafe fn q4_1_avx512(src: &[u8], dst: &mut [f32]) {
    let levels = lut_f32(&Q4_1_LEVELS);
    let (blocks, _) = src.as_chunks::<{ q4_1::SIZE }>();
    let (outs, _) = dst.as_chunks_mut::<{ q4_1::QK }>();
    for (block, out) in blocks.iter().zip(outs) {
        let [d0, d1, m0, m1, qs @ ..] = block;
        if is_non_finite_f16(u16::from_le_bytes([*d0, *d1])) {
            reference_block(scalar::legacy::dequantize_q4_1, block, out);
            continue;
        }
        let (d, m) = splat_f16_pair_x16([*d0, *d1, *m0, *m1]);
        let (lo, hi) = lookup_nibbles_x16(qs, levels);
        store_x32_avx512(
            out,
            [
                _mm512_add_ps(_mm512_mul_ps(lo, d), m),
                _mm512_add_ps(_mm512_mul_ps(hi, d), m),
            ],
        );
    }
}

/// `Q8_0` with AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant::x86) unsafe fn q8_0_avx2(src: &[u8], dst: &mut [f32]) {
    let (blocks, _) = src.as_chunks::<{ q8_0::SIZE }>();
    let (outs, _) = dst.as_chunks_mut::<{ q8_0::QK }>();
    for ([d0, d1, qs @ ..], out) in blocks.iter().zip(outs) {
        let d = splat_f16_x8(u16::from_le_bytes([*d0, *d1]));
        let (eighths, _) = qs.as_chunks::<8>();
        let w: [_; 4] = core::array::from_fn(|i| {
            _mm256_mul_ps(
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(load_x8(&eighths[i]))),
                d,
            )
        });
        store_x32_avx2(out, w);
    }
}

/// `Q8_0` with AVX-512.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(in crate::quant::x86) unsafe fn q8_0_avx512(src: &[u8], dst: &mut [f32]) {
    let (blocks, _) = src.as_chunks::<{ q8_0::SIZE }>();
    let (outs, _) = dst.as_chunks_mut::<{ q8_0::QK }>();
    for ([d0, d1, qs @ ..], out) in blocks.iter().zip(outs) {
        let d = splat_f16_x16(u16::from_le_bytes([*d0, *d1]));
        let (halves, _) = qs.as_chunks::<16>();
        let w: [_; 2] = core::array::from_fn(|i| {
            _mm512_mul_ps(
                _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(load_x16(&halves[i]))),
                d,
            )
        });
        store_x32_avx512(out, w);
    }
}
