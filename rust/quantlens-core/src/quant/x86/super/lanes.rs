//! Loads, byte operations and the widen-convert-scale-store step shared by the super-block
//! kernels.
//!
//! The kernels first put 16 or 32 quants into bytes with 256-bit integer operations (the
//! same for both instruction sets), then hand each run of 16 to a `put16_*` function of
//! [`avx2`] or [`avx512`]. Those widen the bytes to f32, apply the sub-block scale with the
//! scalar reference's operations in its order (a multiply, then a separate subtract; never a
//! fused multiply-add) and store the result. Both modules offer the same functions, so one
//! kernel body, instantiated by a macro per instruction set, serves both.
//!
//! Every load and store goes through a range-checked sub-slice of the block or output chunk
//! it reads or writes; with the kernels' constant offsets the checks fold away.

use std::arch::x86_64::{
    __m128i, __m256, __m256i, _mm256_and_si256, _mm256_castsi256_si128, _mm256_extracti128_si256,
    _mm256_loadu_si256, _mm256_set1_epi8, _mm256_sll_epi16, _mm256_srl_epi16, _mm256_storeu_ps,
    _mm_cvtph_ps, _mm_cvtsi32_si128, _mm_cvtss_f32, _mm_loadl_epi64, _mm_loadu_si128,
};

use crate::quant::blocks::u16_at;

/// The 32 bytes of `bytes` starting at `at`.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn load32(bytes: &[u8], at: usize) -> __m256i {
    let b = &bytes[at..at + 32];
    // SAFETY: `b` is exactly 32 bytes long (the indexing above checked it) and `loadu`
    // accepts any alignment.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

/// The 16 bytes of `bytes` starting at `at`.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn load16(bytes: &[u8], at: usize) -> __m128i {
    let b = &bytes[at..at + 16];
    // SAFETY: `b` is exactly 16 bytes long (the indexing above checked it) and `loadu`
    // accepts any alignment.
    unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
}

/// The 8 bytes of `bytes` starting at `at`, in the low half of a vector.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn load8(bytes: &[u8], at: usize) -> __m128i {
    let b = &bytes[at..at + 8];
    // SAFETY: `b` is exactly 8 bytes long (the indexing above checked it) and `loadl`
    // reads 8 bytes at any alignment.
    unsafe { _mm_loadl_epi64(b.as_ptr().cast()) }
}

/// The little-endian f16 at `at` of `block`, widened exactly by F16C (subnormals,
/// infinities and NaNs included, as the scalar `f16_at`).
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) fn f16_at(block: &[u8], at: usize) -> f32 {
    let bits = i32::from(u16_at(block, at));
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)))
}

/// The eight lanes of `v` as an array (for per-sub-block scales read one at a time).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn to_array(v: __m256) -> [f32; 8] {
    let mut a = [0.0; 8];
    // SAFETY: `a` holds exactly 8 f32 and `storeu` accepts any alignment.
    unsafe { _mm256_storeu_ps(a.as_mut_ptr(), v) };
    a
}

/// Each byte of `v` shifted right by `n` (0..8) and masked with `mask`.
///
/// AVX2 has no byte shift: a 16-bit shift moves bits of the upper byte into the lower one,
/// so `mask` must clear at least the top `n` bits of every byte.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn shr_and(v: __m256i, n: u32, mask: u8) -> __m256i {
    let shifted = _mm256_srl_epi16(v, _mm_cvtsi32_si128(n as i32));
    _mm256_and_si256(shifted, _mm256_set1_epi8(mask as i8))
}

/// Each byte of `v` shifted left by `n` (0..8) and masked with `mask`, which must clear at
/// least the low `n` bits of every byte (see [`shr_and`]).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn shl_and(v: __m256i, n: u32, mask: u8) -> __m256i {
    let shifted = _mm256_sll_epi16(v, _mm_cvtsi32_si128(n as i32));
    _mm256_and_si256(shifted, _mm256_set1_epi8(mask as i8))
}

/// The low and high 16 bytes of `v`.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn halves(v: __m256i) -> (__m128i, __m128i) {
    (_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v))
}

/// Sixteen-weight output steps for AVX2: two 8-lane vectors per call.
pub(super) mod avx2 {
    use std::arch::x86_64::{
        __m128i, __m256, _mm256_cvtepi32_ps, _mm256_cvtepi8_epi32, _mm256_cvtepu8_epi32,
        _mm256_mul_ps, _mm256_set1_ps, _mm256_storeu_ps, _mm256_sub_ps, _mm_unpackhi_epi64,
    };

    /// Stores `v` at `out[at..at + 8]`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn store8(out: &mut [f32], at: usize, v: __m256) {
        let o = &mut out[at..at + 8];
        // SAFETY: `o` is exactly 8 f32 long (the indexing above checked it) and `storeu`
        // accepts any alignment.
        unsafe { _mm256_storeu_ps(o.as_mut_ptr(), v) };
    }

    /// `out[at + i] = s * f32(q[i] as i8)` for the 16 bytes of `q`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn put16_scaled_i8(out: &mut [f32], at: usize, q: __m128i, s: f32) {
        let s = _mm256_set1_ps(s);
        let lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
        let hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(q, q)));
        store8(out, at, _mm256_mul_ps(s, lo));
        store8(out, at + 8, _mm256_mul_ps(s, hi));
    }

    /// `out[at + i] = s * f32(q[i]) - m` for the 16 unsigned bytes of `q`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn put16_affine_u8(out: &mut [f32], at: usize, q: __m128i, s: f32, m: f32) {
        let (s, m) = (_mm256_set1_ps(s), _mm256_set1_ps(m));
        let lo = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q));
        let hi = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(q, q)));
        store8(out, at, _mm256_sub_ps(_mm256_mul_ps(s, lo), m));
        store8(out, at + 8, _mm256_sub_ps(_mm256_mul_ps(s, hi), m));
    }
}

/// Sixteen-weight output steps for AVX-512: one 16-lane vector per call.
///
/// Besides the steps of [`avx2`], lookups: where a sub-block has at most 32 distinct outputs
/// (`Q4_K`, `IQ4_XS`), they are computed once into a register (with the reference's
/// operations) and every weight is a `vpermps` lookup by its quant.
pub(super) mod avx512 {
    use std::arch::x86_64::{
        __m128i, __m512, __m512i, _mm512_cvtepi32_ps, _mm512_cvtepi8_epi32, _mm512_cvtepu8_epi32,
        _mm512_mul_ps, _mm512_permutexvar_ps, _mm512_set1_ps, _mm512_setr_ps, _mm512_storeu_ps,
        _mm512_sub_ps,
    };

    /// Stores `v` at `out[at..at + 16]`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    pub(crate) fn store16(out: &mut [f32], at: usize, v: __m512) {
        let o = &mut out[at..at + 16];
        // SAFETY: `o` is exactly 16 f32 long (the indexing above checked it) and `storeu`
        // accepts any alignment.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), v) };
    }

    /// `out[at + i] = s * f32(q[i] as i8)` for the 16 bytes of `q`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    pub(crate) fn put16_scaled_i8(out: &mut [f32], at: usize, q: __m128i, s: f32) {
        let q = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q));
        store16(out, at, _mm512_mul_ps(_mm512_set1_ps(s), q));
    }

    /// `out[at + i] = s * f32(q[i]) - m` for the 16 unsigned bytes of `q`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    pub(crate) fn put16_affine_u8(out: &mut [f32], at: usize, q: __m128i, s: f32, m: f32) {
        let q = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(q));
        let scaled = _mm512_mul_ps(_mm512_set1_ps(s), q);
        store16(out, at, _mm512_sub_ps(scaled, _mm512_set1_ps(m)));
    }

    /// `s * i - m` in lane `i`: the affine outputs of the 4-bit quants.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    pub(crate) fn affine_table(s: f32, m: f32) -> __m512 {
        let q = _mm512_setr_ps(
            0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0,
        );
        _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(s), q), _mm512_set1_ps(m))
    }

    /// The 16 bytes of `q` zero-extended to 32-bit lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    pub(crate) fn widen_u8(q: __m128i) -> __m512i {
        _mm512_cvtepu8_epi32(q)
    }

    /// `out[at + i] = table[idx[i] & 15]`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    pub(crate) fn put16_lookup(out: &mut [f32], at: usize, idx: __m512i, table: __m512) {
        store16(out, at, _mm512_permutexvar_ps(idx, table));
    }
}
