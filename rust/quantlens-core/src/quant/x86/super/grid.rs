//! Output steps of the grid i-quants (`IQ1_*`, `IQ2_*`, `IQ3_*`): sixteen weights at a time
//! from two 8-value grid rows.
//!
//! The grid rows are looked up one `u64` at a time (the index computations differ per type
//! and are cheap in scalar code); these steps widen the 16 grid values to f32 and apply the
//! group scale, the signs or the shift in the reference's order.
//!
//! Signs are applied as the scalar reference applies them: by flipping the sign bit (an
//! XOR), which equals ggml's multiply by ±1.0 for every number and is deterministic for
//! NaN, whatever the optimiser does.

use std::arch::x86_64::{__m128i, _mm_set_epi64x};

/// Two grid rows as 16 bytes: `first` in bytes 0..8.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn rows(first: u64, second: u64) -> __m128i {
    _mm_set_epi64x(second as i64, first as i64)
}

/// The steps for AVX2: two 8-lane vectors per call.
pub(super) mod avx2 {
    use std::arch::x86_64::{
        __m128i, __m256, _mm256_add_ps, _mm256_and_ps, _mm256_and_si256, _mm256_castsi256_ps,
        _mm256_cmpeq_epi32, _mm256_cvtepi32_ps, _mm256_cvtepi8_epi32, _mm256_cvtepu8_epi32,
        _mm256_mul_ps, _mm256_set1_epi32, _mm256_set1_ps, _mm256_setr_epi32, _mm256_xor_ps,
        _mm_unpackhi_epi64,
    };

    use super::super::lanes::avx2::store8;

    /// The f32 sign bit in lane `j` where bit `j` of `signs` is set, zero elsewhere.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn sign_bits(signs: u8) -> __m256 {
        let bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
        let set = _mm256_cmpeq_epi32(
            _mm256_and_si256(_mm256_set1_epi32(i32::from(signs)), bit),
            bit,
        );
        _mm256_and_ps(_mm256_castsi256_ps(set), _mm256_set1_ps(-0.0))
    }

    /// `out[at + i] = db * f32(g[i]) * ±1` for 16 unsigned grid magnitudes `g`, with the
    /// minus sign where bit `i` of `signs` is set.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn put16_signed(out: &mut [f32], at: usize, g: __m128i, db: f32, signs: u16) {
        let db = _mm256_set1_ps(db);
        let lo = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(g));
        let hi = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(g, g)));
        let lo = _mm256_xor_ps(_mm256_mul_ps(db, lo), sign_bits(signs as u8));
        let hi = _mm256_xor_ps(_mm256_mul_ps(db, hi), sign_bits((signs >> 8) as u8));
        store8(out, at, lo);
        store8(out, at + 8, hi);
    }

    /// `out[at + i] = dl * (f32(g[i]) + delta)` for 16 `i8` grid values `g`, with
    /// `deltas.0` for the first 8 and `deltas.1` for the last 8.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn put16_shifted(
        out: &mut [f32],
        at: usize,
        g: __m128i,
        dl: f32,
        deltas: (f32, f32),
    ) {
        let dl = _mm256_set1_ps(dl);
        let lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(g));
        let hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(g, g)));
        store8(
            out,
            at,
            _mm256_mul_ps(dl, _mm256_add_ps(lo, _mm256_set1_ps(deltas.0))),
        );
        store8(
            out,
            at + 8,
            _mm256_mul_ps(dl, _mm256_add_ps(hi, _mm256_set1_ps(deltas.1))),
        );
    }
}

/// The steps for AVX-512: one 16-lane vector per call, signs as an XOR under a mask.
pub(super) mod avx512 {
    use std::arch::x86_64::{
        __m128i, _mm512_castps_si512, _mm512_castsi512_ps, _mm512_cvtepi32_ps,
        _mm512_cvtepu8_epi32, _mm512_mask_xor_epi32, _mm512_mul_ps, _mm512_set1_epi32,
        _mm512_set1_ps,
    };

    use super::super::lanes::avx512::store16;

    /// `out[at + i] = db * f32(g[i]) * ±1` for 16 unsigned grid magnitudes `g`, with the
    /// minus sign where bit `i` of `signs` is set.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    pub(crate) fn put16_signed(out: &mut [f32], at: usize, g: __m128i, db: f32, signs: u16) {
        let g = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(g));
        let v = _mm512_castps_si512(_mm512_mul_ps(_mm512_set1_ps(db), g));
        let flipped = _mm512_mask_xor_epi32(v, signs, v, _mm512_set1_epi32(i32::MIN));
        store16(out, at, _mm512_castsi512_ps(flipped));
    }
}
