//! `Q4_K` and `Q5_K`: eight sub-blocks of 32 weights, `d * sc * q - dmin * m` with 6-bit
//! `sc`, `m` and 4-bit (`Q4_K`) or 5-bit (`Q5_K`) `q`.
//!
//! Per super-block the eight `d * sc` and `dmin * m` are formed once, eight lanes at a time
//! (each lane the same single f32 multiply as the scalar reference). AVX2 then turns each
//! quant into `d1 * q - m1`: a multiply and a separate subtract. For `Q4_K`, AVX-512
//! computes the 16 possible outputs of a sub-block once, with those same operations, and
//! looks each weight up by its nibble.

use std::arch::x86_64::{
    __m256i, _mm256_and_si256, _mm256_broadcastss_ps, _mm256_cvtepi32_ps, _mm256_cvtepu8_epi32,
    _mm256_mul_ps, _mm256_or_si256, _mm256_set1_epi32, _mm256_set1_ps, _mm256_slli_epi16,
    _mm256_srli_epi32, _mm256_sub_ps, _mm512_srli_epi32, _mm_cvtph_ps, _mm_cvtsi32_si128,
    _mm_cvtsi64_si128, _mm_movehdup_ps,
};

use super::lanes::avx2::{put16_affine_u8, store8};
use super::lanes::avx512::{self, affine_table, put16_lookup, widen_u8};
use super::lanes::{halves, load16, load32, load8, shr_and, to_array};
use crate::quant::blocks::{q4_k, q5_k, u32_at, QK_K};

/// Masks of ggml's `get_scale_min_k4` unpacking, applied four bytes at a time: six bits,
const LOW6: u32 = 0x3f3f_3f3f;
/// four bits,
const LOW4: u32 = 0x0f0f_0f0f;
/// and two bits of each byte.
const LOW2: u32 = 0x0303_0303;

/// The eight 6-bit scales and the eight 6-bit mins of the 12 bytes at `at`, one per byte
/// (sub-block `j` in byte `j`), as ggml's `get_scale_min_k4` unpacks them.
#[inline]
fn unpack_scales_mins(block: &[u8], at: usize) -> (u64, u64) {
    let (s0, s1, s2) = (
        u32_at(block, at),
        u32_at(block, at + 4),
        u32_at(block, at + 8),
    );
    // Sub-blocks 0..4 keep their 6 bits whole; 4..8 take a nibble from bytes 8..12 and
    // two high bits from the top of bytes 0..4 (scales) or 4..8 (mins).
    let scales_hi = (s2 & LOW4) | (((s0 >> 6) & LOW2) << 4);
    let mins_hi = ((s2 >> 4) & LOW4) | (((s1 >> 6) & LOW2) << 4);
    (
        u64::from(s0 & LOW6) | (u64::from(scales_hi) << 32),
        u64::from(s1 & LOW6) | (u64::from(mins_hi) << 32),
    )
}

/// `d * sc` and `dmin * m` of the eight sub-blocks of a `Q4_K`/`Q5_K` block (whose `d`,
/// `dmin` and packed scales sit at the same offsets in both types).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scales_mins(block: &[u8]) -> ([f32; 8], [f32; 8]) {
    const _: () = assert!(q4_k::D == q5_k::D && q4_k::SCALES == q5_k::SCALES);
    let (sc, m) = unpack_scales_mins(block, q4_k::SCALES);
    let sc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(sc as i64)));
    let m = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(m as i64)));
    // Both f16 at once: lane 0 is `d`, lane 1 `dmin`.
    let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(u32_at(block, q4_k::D) as i32));
    let d = _mm256_broadcastss_ps(dm);
    let dmin = _mm256_broadcastss_ps(_mm_movehdup_ps(dm));
    (
        to_array(_mm256_mul_ps(d, sc)),
        to_array(_mm256_mul_ps(dmin, m)),
    )
}

/// The 5-bit quants of sub-block `j` of a `Q5_K` block: the nibbles of `q` (low ones for
/// even `j`, high for odd) topped by bit `j` of each `qh` byte.
#[inline]
#[target_feature(enable = "avx2")]
fn q5_quants(q: __m256i, qh: __m256i, j: usize) -> __m256i {
    let fifth = _mm256_slli_epi16::<4>(shr_and(qh, j as u32, 1));
    _mm256_or_si256(shr_and(q, 4 * (j % 2) as u32, 0x0F), fifth)
}

/// `Q4_K` with AVX2: each 32 bytes of `qs` hold sub-block `2c` in their low nibbles and
/// `2c + 1` in their high ones. Eight bytes at a time are zero-extended straight from the
/// block into 32-bit lanes, where one mask or shift leaves each nibble (fewer shuffles than
/// splitting nibbles as bytes first).
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q4_k_avx2(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src.chunks_exact(q4_k::SIZE).zip(dst.chunks_exact_mut(QK_K)) {
        let (d1, m1) = scales_mins(block);
        for c in 0..4 {
            let (s_lo, m_lo) = (_mm256_set1_ps(d1[2 * c]), _mm256_set1_ps(m1[2 * c]));
            let (s_hi, m_hi) = (_mm256_set1_ps(d1[2 * c + 1]), _mm256_set1_ps(m1[2 * c + 1]));
            for i in 0..4 {
                let x = _mm256_cvtepu8_epi32(load8(block, q4_k::QS + 32 * c + 8 * i));
                let lo = _mm256_cvtepi32_ps(_mm256_and_si256(x, _mm256_set1_epi32(0x0F)));
                let hi = _mm256_cvtepi32_ps(_mm256_srli_epi32::<4>(x));
                let (lo_at, hi_at) = (64 * c + 8 * i, 64 * c + 32 + 8 * i);
                store8(out, lo_at, _mm256_sub_ps(_mm256_mul_ps(s_lo, lo), m_lo));
                store8(out, hi_at, _mm256_sub_ps(_mm256_mul_ps(s_hi, hi), m_hi));
            }
        }
    }
}

/// `Q5_K` with AVX2: as `Q4_K`, with bits `2c` and `2c + 1` of `qh[l]` the fifth bits of the
/// two nibbles of `qs[32c + l]`.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q5_k_avx2(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src.chunks_exact(q5_k::SIZE).zip(dst.chunks_exact_mut(QK_K)) {
        let (d1, m1) = scales_mins(block);
        let qh = load32(block, q5_k::QH);
        for c in 0..4 {
            let q = load32(block, q5_k::QS + 32 * c);
            for j in [2 * c, 2 * c + 1] {
                let (a, b) = halves(q5_quants(q, qh, j));
                put16_affine_u8(out, 32 * j, a, d1[j], m1[j]);
                put16_affine_u8(out, 32 * j + 16, b, d1[j], m1[j]);
            }
        }
    }
}

/// `Q4_K` with AVX-512: a 16-entry table per sub-block, indexed by the nibbles (`vpermps`
/// reads only the low four bits of each index, so the low nibbles need no mask).
///
/// # Safety
/// The CPU must have AVX2, FMA, F16C and AVX-512 F/BW/VL.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn q4_k_avx512(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src.chunks_exact(q4_k::SIZE).zip(dst.chunks_exact_mut(QK_K)) {
        let (d1, m1) = scales_mins(block);
        for c in 0..4 {
            let low = affine_table(d1[2 * c], m1[2 * c]);
            let high = affine_table(d1[2 * c + 1], m1[2 * c + 1]);
            for i in 0..2 {
                let x = widen_u8(load16(block, q4_k::QS + 32 * c + 16 * i));
                put16_lookup(out, 64 * c + 16 * i, x, low);
                put16_lookup(out, 64 * c + 32 + 16 * i, _mm512_srli_epi32::<4>(x), high);
            }
        }
    }
}

/// `Q5_K` with AVX-512: as with AVX2, sixteen lanes at a time. (A 32-entry lookup through
/// `vpermt2ps` measured no faster here: building two tables per sub-block costs what it
/// saves.)
///
/// # Safety
/// The CPU must have AVX2, FMA, F16C and AVX-512 F/BW/VL.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn q5_k_avx512(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src.chunks_exact(q5_k::SIZE).zip(dst.chunks_exact_mut(QK_K)) {
        let (d1, m1) = scales_mins(block);
        let qh = load32(block, q5_k::QH);
        for c in 0..4 {
            let q = load32(block, q5_k::QS + 32 * c);
            for j in [2 * c, 2 * c + 1] {
                let (a, b) = halves(q5_quants(q, qh, j));
                avx512::put16_affine_u8(out, 32 * j, a, d1[j], m1[j]);
                avx512::put16_affine_u8(out, 32 * j + 16, b, d1[j], m1[j]);
            }
        }
    }
}
