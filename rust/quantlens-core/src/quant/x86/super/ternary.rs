//! `TQ1_0` and `TQ2_0`, the ternary types: `(t - 1) * d` with `t` in 0..=2.
//!
//! `TQ2_0` keeps `t` in 2-bit planes. `TQ1_0` packs five trits per byte as a fixed-point
//! fraction of 3^5: multiplying by 3^n (mod 256) drops the leading `n` trits and
//! `(q * 3) >> 8` reads the next one. The kernels do that in 16-bit lanes (bytes have no
//! multiply), where `mulhi(q, 768)` is exactly `(q * 3) >> 8`.
//!
//! Both hand `t - 1` to `put16_scaled_i8`, which computes `d * (t - 1)`: bit for bit the
//! reference's `(t - 1) * d`, as IEEE multiplication is commutative (and with one NaN
//! operand x86 returns that NaN whichever side it is on).

use std::arch::x86_64::{
    __m128i, __m256i, _mm256_and_si256, _mm256_castsi256_si128, _mm256_cvtepu8_epi16,
    _mm256_extracti128_si256, _mm256_mulhi_epu16, _mm256_mullo_epi16, _mm256_set1_epi16,
    _mm256_set1_epi8, _mm256_setr_epi16, _mm256_sub_epi16, _mm256_sub_epi8, _mm_packs_epi16,
    _mm_set1_epi32,
};

use super::lanes::{f16_at, halves, load16, load32, shr_and};
use crate::quant::blocks::{tq1_0, tq2_0, u32_at, QK_K};

/// Powers of three that rotate trit `n` of a packed byte into the top position.
const POW3: [i16; 5] = [1, 3, 9, 27, 81];

/// `t - 1` of the trit that multiplying by `pow` brings to the top of each byte of `x`
/// (one byte per 16-bit lane), as 16 `i8`.
#[inline]
#[target_feature(enable = "avx2")]
fn trits(x: __m256i, pow: __m256i) -> __m128i {
    let q = _mm256_and_si256(_mm256_mullo_epi16(x, pow), _mm256_set1_epi16(0xFF));
    let t = _mm256_mulhi_epu16(q, _mm256_set1_epi16(3 << 8));
    let t = _mm256_sub_epi16(t, _mm256_set1_epi16(1));
    // Values are -1..=1, so the saturating pack is exact.
    _mm_packs_epi16(_mm256_castsi256_si128(t), _mm256_extracti128_si256::<1>(t))
}

/// Defines the ternary kernels for one instruction set: `$features` to enable and `$put`
/// the matching `lanes::*::put16_scaled_i8`.
macro_rules! ternary_kernels {
    ($features:literal, $put:path, $tq1_0:ident, $tq2_0:ident) => {
        /// `TQ1_0`: 32 bytes of five trits (runs of 32 weights), 16 bytes of five trits
        /// (runs of 16) and 4 bytes of four trits (runs of 4).
        ///
        /// # Safety
        /// The CPU must have the enabled target features.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn $tq1_0(src: &[u8], dst: &mut [f32]) {
            for (block, out) in src
                .chunks_exact(tq1_0::SIZE)
                .zip(dst.chunks_exact_mut(QK_K))
            {
                let d = f16_at(block, tq1_0::D);
                let first = _mm256_cvtepu8_epi16(load16(block, tq1_0::QS));
                let second = _mm256_cvtepu8_epi16(load16(block, tq1_0::QS + 16));
                let third = _mm256_cvtepu8_epi16(load16(block, tq1_0::QS + 32));
                for (n, &pow) in POW3.iter().enumerate() {
                    let pow = _mm256_set1_epi16(pow);
                    $put(out, 32 * n, trits(first, pow), d);
                    $put(out, 32 * n + 16, trits(second, pow), d);
                    $put(out, 160 + 16 * n, trits(third, pow), d);
                }
                // The last 16 weights: trit `n` of `qh[l]` is weight `240 + 4n + l`, so lane
                // `4n + l` holds `qh[l]` and multiplies by 3^n.
                let qh = u32_at(block, tq1_0::QH) as i32;
                let qh = _mm256_cvtepu8_epi16(_mm_set1_epi32(qh));
                let pow = _mm256_setr_epi16(1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27);
                $put(out, 240, trits(qh, pow), d);
            }
        }

        /// `TQ2_0`: each 32 bytes of `qs` give four runs of 32 weights, one per bit pair.
        ///
        /// # Safety
        /// The CPU must have the enabled target features.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn $tq2_0(src: &[u8], dst: &mut [f32]) {
            for (block, out) in src
                .chunks_exact(tq2_0::SIZE)
                .zip(dst.chunks_exact_mut(QK_K))
            {
                let d = f16_at(block, tq2_0::D);
                let one = _mm256_set1_epi8(1);
                for half in 0..2 {
                    let q = load32(block, tq2_0::QS + 32 * half);
                    for l in 0..4 {
                        let t = _mm256_sub_epi8(shr_and(q, 2 * l as u32, 3), one);
                        let (lo, hi) = halves(t);
                        $put(out, 128 * half + 32 * l, lo, d);
                        $put(out, 128 * half + 32 * l + 16, hi, d);
                    }
                }
            }
        }
    };
}

ternary_kernels!(
    "avx2,fma,f16c",
    super::lanes::avx2::put16_scaled_i8,
    tq1_0_avx2,
    tq2_0_avx2
);
ternary_kernels!(
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl",
    super::lanes::avx512::put16_scaled_i8,
    tq1_0_avx512,
    tq2_0_avx512
);
