//! `Q6_K` (`d * sc * (q - 32)` with 6-bit `q` and an `i8` scale per 16 weights) and `Q8_K`
//! (`d * q` with an f32 `d` and `i8` `q`).
//!
//! Both come down to one multiply per weight by an already formed scale, so the kernels
//! assemble the signed quants as bytes and hand them to `put16_scaled_i8`.

use std::arch::x86_64::{
    _mm256_cvtepi32_ps, _mm256_cvtepi8_epi32, _mm256_mul_ps, _mm256_or_si256, _mm256_set1_epi8,
    _mm256_set1_ps, _mm256_sub_epi8, _mm_unpackhi_epi64,
};

use super::lanes::{f16_at, halves, load16, load32, shl_and, shr_and, to_array};
use crate::quant::blocks::{f32_at, q6_k, q8_k, QK_K};

/// `d * sc` for the 16 `i8` sub-block scales of a `Q6_K` block, the reference's first
/// multiply, eight lanes at a time.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k_scales(block: &[u8]) -> [f32; 16] {
    let d = _mm256_set1_ps(f16_at(block, q6_k::D));
    let sc = load16(block, q6_k::SCALES);
    let lo = to_array(_mm256_mul_ps(
        d,
        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc)),
    ));
    let hi = to_array(_mm256_mul_ps(
        d,
        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(sc, sc))),
    ));
    let mut all = [0.0; 16];
    all[..8].copy_from_slice(&lo);
    all[8..].copy_from_slice(&hi);
    all
}

/// Defines the `Q6_K` and `Q8_K` kernels for one instruction set: `$features` to enable and
/// `$put` the matching `lanes::*::put16_scaled_i8`.
macro_rules! k6_kernels {
    ($features:literal, $put:path, $q6_k:ident, $q8_k:ident) => {
        /// `Q6_K`: each half of 128 weights takes 64 `ql` bytes (`a`, `b`), 32 `qh` bytes
        /// (`h`) and 8 scales; its four quarters are the low nibbles of `a`, of `b`, then the
        /// high nibbles of `a`, of `b`, topped by successive 2-bit fields of `h`.
        ///
        /// # Safety
        /// The CPU must have the enabled target features.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn $q6_k(src: &[u8], dst: &mut [f32]) {
            for (block, out) in src.chunks_exact(q6_k::SIZE).zip(dst.chunks_exact_mut(QK_K)) {
                let sc = q6_k_scales(block);
                let bias = _mm256_set1_epi8(32);
                for half in 0..2 {
                    let a = load32(block, q6_k::QL + 64 * half);
                    let b = load32(block, q6_k::QL + 64 * half + 32);
                    let h = load32(block, q6_k::QH + 32 * half);
                    let quarters = [
                        _mm256_or_si256(shr_and(a, 0, 0x0F), shl_and(h, 4, 0x30)),
                        _mm256_or_si256(shr_and(b, 0, 0x0F), shl_and(h, 2, 0x30)),
                        _mm256_or_si256(shr_and(a, 4, 0x0F), shr_and(h, 0, 0x30)),
                        _mm256_or_si256(shr_and(b, 4, 0x0F), shr_and(h, 2, 0x30)),
                    ];
                    for (k, q) in quarters.into_iter().enumerate() {
                        // 0..64 minus 32 stays in i8 range.
                        let (lo, hi) = halves(_mm256_sub_epi8(q, bias));
                        let s = 8 * half + 2 * k;
                        $put(out, 128 * half + 32 * k, lo, sc[s]);
                        $put(out, 128 * half + 32 * k + 16, hi, sc[s + 1]);
                    }
                }
            }
        }

        /// `Q8_K`: `d * q`, sixteen quants at a time.
        ///
        /// # Safety
        /// The CPU must have the enabled target features.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn $q8_k(src: &[u8], dst: &mut [f32]) {
            for (block, out) in src.chunks_exact(q8_k::SIZE).zip(dst.chunks_exact_mut(QK_K)) {
                let d = f32_at(block, q8_k::D);
                for i in 0..16 {
                    $put(out, 16 * i, load16(block, q8_k::QS + 16 * i), d);
                }
            }
        }
    };
}

k6_kernels!(
    "avx2,fma,f16c",
    super::lanes::avx2::put16_scaled_i8,
    q6_k_avx2,
    q8_k_avx2
);
k6_kernels!(
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl",
    super::lanes::avx512::put16_scaled_i8,
    q6_k_avx512,
    q8_k_avx512
);
