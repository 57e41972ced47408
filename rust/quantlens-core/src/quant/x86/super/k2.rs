//! `Q2_K` (`d * sc * q - dmin * m`, 2-bit `q`) and `Q3_K` (`d * (sc - 32) * q`, `q` in
//! -4..=3): sixteen sub-blocks of 16 weights with 2-bit planes in `qs`.
//!
//! Each 32-byte half of `qs` holds 128 weights as four 2-bit planes of 32; plane `s` of half
//! `h` is weights `128h + 32s ..`, sub-blocks `8h + 2s` and `8h + 2s + 1`. The sub-block
//! scales are formed once per block, eight lanes at a time, each lane the reference's f32
//! multiply.

use std::arch::x86_64::{
    __m128i, __m256, _mm256_broadcastss_ps, _mm256_cvtepi32_ps, _mm256_cvtepi8_epi32,
    _mm256_cvtepu8_epi32, _mm256_mul_ps, _mm256_or_si256, _mm256_set1_epi8, _mm256_set1_ps,
    _mm256_slli_epi16, _mm256_sub_epi8, _mm_and_si128, _mm_cvtph_ps, _mm_cvtsi32_si128,
    _mm_movehdup_ps, _mm_set1_epi8, _mm_set_epi32, _mm_srli_epi16, _mm_sub_epi8,
    _mm_unpackhi_epi64,
};

use super::lanes::{f16_at, halves, load16, load32, shr_and, to_array};
use crate::quant::blocks::{q2_k, q3_k, u32_at, QK_K};

/// `s * f32(q)` for the 16 bytes of `q` (unsigned if `signed` is false), as 16 values.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scale_bytes(s: __m256, q: __m128i, signed: bool) -> [f32; 16] {
    let upper = _mm_unpackhi_epi64(q, q);
    let (lo, hi) = if signed {
        (_mm256_cvtepi8_epi32(q), _mm256_cvtepi8_epi32(upper))
    } else {
        (_mm256_cvtepu8_epi32(q), _mm256_cvtepu8_epi32(upper))
    };
    let lo = to_array(_mm256_mul_ps(s, _mm256_cvtepi32_ps(lo)));
    let hi = to_array(_mm256_mul_ps(s, _mm256_cvtepi32_ps(hi)));
    let mut all = [0.0; 16];
    all[..8].copy_from_slice(&lo);
    all[8..].copy_from_slice(&hi);
    all
}

/// `d * sc` and `dmin * m` of the 16 sub-blocks of a `Q2_K` block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q2_k_scales(block: &[u8]) -> ([f32; 16], [f32; 16]) {
    // `d` and `dmin` are adjacent: lanes 0 and 1.
    let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(u32_at(block, q2_k::D) as i32));
    let packed = load16(block, q2_k::SCALES);
    let sc = _mm_and_si128(packed, _mm_set1_epi8(0x0F));
    let m = _mm_and_si128(_mm_srli_epi16::<4>(packed), _mm_set1_epi8(0x0F));
    (
        scale_bytes(_mm256_broadcastss_ps(dm), sc, false),
        scale_bytes(_mm256_broadcastss_ps(_mm_movehdup_ps(dm)), m, false),
    )
}

/// `d * (sc - 32)` of the 16 sub-blocks of a `Q3_K` block, with the 6-bit scales unpacked
/// as ggml does: low nibbles from bytes 0..8, two high bits each from bytes 8..12.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q3_k_scales(block: &[u8]) -> [f32; 16] {
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    let at = q3_k::SCALES;
    let (a0, a1, hi) = (
        u32_at(block, at),
        u32_at(block, at + 4),
        u32_at(block, at + 8),
    );
    let sc = _mm_set_epi32(
        (((a1 >> 4) & LOW4) | (((hi >> 6) & LOW2) << 4)) as i32,
        (((a0 >> 4) & LOW4) | (((hi >> 4) & LOW2) << 4)) as i32,
        ((a1 & LOW4) | (((hi >> 2) & LOW2) << 4)) as i32,
        ((a0 & LOW4) | ((hi & LOW2) << 4)) as i32,
    );
    let sc = _mm_sub_epi8(sc, _mm_set1_epi8(32));
    scale_bytes(_mm256_set1_ps(f16_at(block, q3_k::D)), sc, true)
}

/// Defines the `Q2_K` and `Q3_K` kernels for one instruction set: `$features` to enable and
/// `$affine`, `$scaled` the matching `lanes::*::put16_*`.
macro_rules! k2_kernels {
    ($features:literal, $affine:path, $scaled:path, $q2_k:ident, $q3_k:ident) => {
        /// `Q2_K`: `dl * q - ml` per plane of 2-bit quants.
        ///
        /// # Safety
        /// The CPU must have the enabled target features.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn $q2_k(src: &[u8], dst: &mut [f32]) {
            for (block, out) in src.chunks_exact(q2_k::SIZE).zip(dst.chunks_exact_mut(QK_K)) {
                let (dl, ml) = q2_k_scales(block);
                for half in 0..2 {
                    let q = load32(block, q2_k::QS + 32 * half);
                    for plane in 0..4 {
                        let (lo, hi) = halves(shr_and(q, 2 * plane as u32, 3));
                        let k = 8 * half + 2 * plane;
                        $affine(out, 16 * k, lo, dl[k], ml[k]);
                        $affine(out, 16 * k + 16, hi, dl[k + 1], ml[k + 1]);
                    }
                }
            }
        }

        /// `Q3_K`: `dl * q`, with bit `4h + s` of `hmask[l]` the high bit of weight
        /// `128h + 32s + l` (a clear bit subtracts 4).
        ///
        /// # Safety
        /// The CPU must have the enabled target features.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn $q3_k(src: &[u8], dst: &mut [f32]) {
            for (block, out) in src.chunks_exact(q3_k::SIZE).zip(dst.chunks_exact_mut(QK_K)) {
                let dl = q3_k_scales(block);
                let hmask = load32(block, q3_k::HMASK);
                let four = _mm256_set1_epi8(4);
                for half in 0..2 {
                    let q = load32(block, q3_k::QS + 32 * half);
                    for plane in 0..4 {
                        let high = shr_and(hmask, (4 * half + plane) as u32, 1);
                        let q3 = _mm256_or_si256(
                            shr_and(q, 2 * plane as u32, 3),
                            _mm256_slli_epi16::<2>(high),
                        );
                        let (lo, hi) = halves(_mm256_sub_epi8(q3, four));
                        let k = 8 * half + 2 * plane;
                        $scaled(out, 16 * k, lo, dl[k]);
                        $scaled(out, 16 * k + 16, hi, dl[k + 1]);
                    }
                }
            }
        }
    };
}

k2_kernels!(
    "avx2,fma,f16c",
    super::lanes::avx2::put16_affine_u8,
    super::lanes::avx2::put16_scaled_i8,
    q2_k_avx2,
    q3_k_avx2
);
k2_kernels!(
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl",
    super::lanes::avx512::put16_affine_u8,
    super::lanes::avx512::put16_scaled_i8,
    q2_k_avx512,
    q3_k_avx512
);
