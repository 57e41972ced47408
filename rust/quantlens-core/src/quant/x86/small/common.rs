//! Building blocks shared by the small-block kernels: scale broadcasts, lookup tables and
//! nibble splitting.
//!
//! Every helper is a safe `#[target_feature]` function. The loads and stores here take
//! fixed-size arrays, so their types bound every access; kernels get those arrays from
//! `as_chunks` and array patterns rather than from offsets computed at run time.

use core::arch::x86_64::{
    __m128i, __m256, __m512, _mm256_broadcastss_ps, _mm256_cvtepi32_ps, _mm256_cvtepi8_epi32,
    _mm256_cvtph_ps, _mm256_storeu_ps, _mm512_broadcastss_ps, _mm512_cvtepi32_ps,
    _mm512_cvtepi8_epi32, _mm512_storeu_ps, _mm_and_si128, _mm_cvtph_ps, _mm_cvtsi32_si128,
    _mm_loadl_epi64, _mm_loadu_si128, _mm_movehdup_ps, _mm_set1_epi16, _mm_set1_epi8,
    _mm_setr_epi8, _mm_srli_epi16, _mm_unpackhi_epi64,
};

/// The f16 `bits` widened by F16C and broadcast to 8 lanes.
///
/// The conversion is exact and matches `half::f16::to_f32` bit for bit, NaNs included: both
/// set the quiet bit and keep the payload (checked over all 65536 values in the tests).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn splat_f16_x8(bits: u16) -> __m256 {
    _mm256_cvtph_ps(_mm_set1_epi16(bits as i16))
}

/// [`splat_f16_x8`] for 16 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(super) fn splat_f16_x16(bits: u16) -> __m512 {
    _mm512_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
}

/// Two adjacent f16 fields (`d`, then `m`) widened by one F16C conversion and each
/// broadcast to 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn splat_f16_pair_x8(bytes: [u8; 4]) -> (__m256, __m256) {
    let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes(bytes)));
    (
        _mm256_broadcastss_ps(dm),
        _mm256_broadcastss_ps(_mm_movehdup_ps(dm)),
    )
}

/// [`splat_f16_pair_x8`] for 16 lanes. One conversion of both fields is cheaper than two
/// 16-lane ones, which is what the compiler makes of two [`splat_f16_x16`] calls.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(super) fn splat_f16_pair_x16(bytes: [u8; 4]) -> (__m512, __m512) {
    let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes(bytes)));
    (
        _mm512_broadcastss_ps(dm),
        _mm512_broadcastss_ps(_mm_movehdup_ps(dm)),
    )
}

/// A 16-entry `i8` table in a register, for `pshufb` lookups by nibble.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn lut_i8(t: &[i8; 16]) -> __m128i {
    _mm_setr_epi8(
        t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9], t[10], t[11], t[12], t[13],
        t[14], t[15],
    )
}

/// A 16-entry table widened exactly to f32 (as `f32::from(i8)` does), for `vpermps`
/// lookups, which read only the low 4 bits of each index lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(super) fn lut_f32(t: &[i8; 16]) -> __m512 {
    _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lut_i8(t)))
}

/// The 16 low nibbles and the 16 high nibbles of 16 bytes, each in the low bits of a byte.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn nibbles(q: __m128i) -> (__m128i, __m128i) {
    let mask = _mm_set1_epi8(0x0F);
    // A 16-bit shift moves each high nibble down; the mask drops what crossed from the
    // neighbouring byte.
    (
        _mm_and_si128(q, mask),
        _mm_and_si128(_mm_srli_epi16(q, 4), mask),
    )
}

/// 16 signed bytes widened exactly to f32: lanes 0–7 and lanes 8–15.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn widen_i8_x16(v: __m128i) -> (__m256, __m256) {
    (
        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)),
        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(v, v))),
    )
}

/// 8 bytes in the low half of a register (the high half zero); reads exactly those 8.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn load_x8(bytes: &[u8; 8]) -> __m128i {
    // SAFETY: `_mm_loadl_epi64` reads 8 bytes, all inside `bytes`, at any alignment.
    unsafe { _mm_loadl_epi64(bytes.as_ptr().cast()) }
}

/// 16 bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn load_x16(bytes: &[u8; 16]) -> __m128i {
    // SAFETY: `bytes` is 16 readable bytes; `loadu` needs no alignment.
    unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) }
}

/// Stores four vectors of 8 as one 32-weight block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn store_x32_avx2(out: &mut [f32; 32], v: [__m256; 4]) {
    for (i, v) in v.into_iter().enumerate() {
        // SAFETY: for `i < 4`, floats `8 * i .. 8 * i + 8` lie inside the 32 of `out`;
        // `storeu` needs no alignment.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(8 * i), v) };
    }
}

/// Stores one vector of 16.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(super) fn store_x16_avx512(out: &mut [f32; 16], v: __m512) {
    // SAFETY: `out` is 16 writable floats; `storeu` needs no alignment.
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), v) };
}

/// Stores two vectors of 16 as one 32-weight block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(super) fn store_x32_avx512(out: &mut [f32; 32], v: [__m512; 2]) {
    // SAFETY: floats 0..16 and 16..32 lie inside the 32 of `out`; `storeu` needs no
    // alignment.
    unsafe {
        _mm512_storeu_ps(out.as_mut_ptr(), v[0]);
        _mm512_storeu_ps(out.as_mut_ptr().add(16), v[1]);
    }
}

/// Whether the f16 `bits` are an infinity or a NaN.
///
/// Kernels computing `q * d + m` send blocks with such a `d` to the scalar reference: the
/// product can then be a NaN, and if `m` is a NaN too, which of the two the add returns
/// depends on the order of its operands (x86 returns the first), which the compiler is free
/// to swap. Decoding those rare blocks with the reference itself keeps the bits equal.
#[inline]
pub(super) fn is_non_finite_f16(bits: u16) -> bool {
    bits & 0x7C00 == 0x7C00
}

/// Decodes one block with the scalar reference `kernel`; kept out of line so that the rare
/// blocks taking this path (see [`is_non_finite_f16`]) cost the hot loop nothing.
#[cold]
#[inline(never)]
pub(super) fn reference_block(kernel: fn(&[u8], &mut [f32]), block: &[u8], out: &mut [f32]) {
    kernel(block, out);
}
