//! `F16` and `BF16` widened to f32: F16C conversions and 16-bit shifts, 32 (AVX2) or 64
//! (AVX-512) values per step, the last few values by the scalar reference.
//!
//! F16C's `vcvtph2ps` is exact and, like `half` (the reference), quiets signalling NaNs by
//! setting the top mantissa bit and keeps the rest of the payload, so the bits agree for
//! every input (see the exhaustive test below).

use core::arch::x86_64::{
    _mm256_castsi256_ps, _mm256_cvtepu16_epi32, _mm256_cvtph_ps, _mm256_loadu_si256,
    _mm256_slli_epi32, _mm256_storeu_ps, _mm512_castsi512_ps, _mm512_cvtepu16_epi32,
    _mm512_cvtph_ps, _mm512_slli_epi32, _mm512_storeu_ps, _mm_loadu_si128,
};

use crate::quant::scalar::float;

/// Values per AVX2 step: four vectors of 8.
const STEP_AVX2: usize = 32;
/// Values per AVX-512 step: four vectors of 16.
const STEP_AVX512: usize = 64;

/// `F16` with AVX2 and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant::x86) unsafe fn f16_avx2(src: &[u8], dst: &mut [f32]) {
    let (src_steps, src_tail) = src.as_chunks::<{ 2 * STEP_AVX2 }>();
    let (dst_steps, dst_tail) = dst.as_chunks_mut::<STEP_AVX2>();
    for (s, d) in src_steps.iter().zip(dst_steps) {
        for i in 0..4 {
            // SAFETY: `s` is 64 bytes and `d` 32 floats; for `i < 4` the 16 bytes read at
            // `16 * i` and the 8 floats written at `8 * i` lie inside them. `loadu`/`storeu`
            // need no alignment.
            unsafe {
                let h = _mm_loadu_si128(s.as_ptr().add(16 * i).cast());
                _mm256_storeu_ps(d.as_mut_ptr().add(8 * i), _mm256_cvtph_ps(h));
            }
        }
    }
    // Whole steps pair up, so the tails correspond (`src` holds two bytes per value).
    float::dequantize_f16(src_tail, dst_tail);
}

/// `F16` with AVX-512.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(in crate::quant::x86) unsafe fn f16_avx512(src: &[u8], dst: &mut [f32]) {
    let (src_steps, src_tail) = src.as_chunks::<{ 2 * STEP_AVX512 }>();
    let (dst_steps, dst_tail) = dst.as_chunks_mut::<STEP_AVX512>();
    for (s, d) in src_steps.iter().zip(dst_steps) {
        for i in 0..4 {
            // SAFETY: `s` is 128 bytes and `d` 64 floats; for `i < 4` the 32 bytes read at
            // `32 * i` and the 16 floats written at `16 * i` lie inside them.
            unsafe {
                let h = _mm256_loadu_si256(s.as_ptr().add(32 * i).cast());
                _mm512_storeu_ps(d.as_mut_ptr().add(16 * i), _mm512_cvtph_ps(h));
            }
        }
    }
    float::dequantize_f16(src_tail, dst_tail);
}

/// `BF16` with AVX2: each 16-bit value zero-extended and shifted into the top half.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant::x86) unsafe fn bf16_avx2(src: &[u8], dst: &mut [f32]) {
    let (src_steps, src_tail) = src.as_chunks::<{ 2 * STEP_AVX2 }>();
    let (dst_steps, dst_tail) = dst.as_chunks_mut::<STEP_AVX2>();
    for (s, d) in src_steps.iter().zip(dst_steps) {
        for i in 0..4 {
            // SAFETY: as in `f16_avx2`: 16 bytes at `16 * i` of 64, 8 floats at `8 * i` of 32.
            unsafe {
                let h = _mm_loadu_si128(s.as_ptr().add(16 * i).cast());
                let w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
                _mm256_storeu_ps(d.as_mut_ptr().add(8 * i), _mm256_castsi256_ps(w));
            }
        }
    }
    float::dequantize_bf16(src_tail, dst_tail);
}

/// `BF16` with AVX-512.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(in crate::quant::x86) unsafe fn bf16_avx512(src: &[u8], dst: &mut [f32]) {
    let (src_steps, src_tail) = src.as_chunks::<{ 2 * STEP_AVX512 }>();
    let (dst_steps, dst_tail) = dst.as_chunks_mut::<STEP_AVX512>();
    for (s, d) in src_steps.iter().zip(dst_steps) {
        for i in 0..4 {
            // SAFETY: as in `f16_avx512`: 32 bytes at `32 * i` of 128, 16 floats at `16 * i`
            // of 64.
            unsafe {
                let h = _mm256_loadu_si256(s.as_ptr().add(32 * i).cast());
                let w = _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16);
                _mm512_storeu_ps(d.as_mut_ptr().add(16 * i), _mm512_castsi512_ps(w));
            }
        }
    }
    float::dequantize_bf16(src_tail, dst_tail);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::dispatch::SimdKernel;
    use crate::quant::Isa;

    /// A scalar reference kernel.
    type Reference = fn(&[u8], &mut [f32]);

    /// The bit patterns of `v`.
    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Every 16-bit pattern, through each kernel this CPU runs, against the reference.
    #[test]
    fn every_bit_pattern_matches_the_reference() {
        // One leading byte so that the values start at an odd address.
        let src: Vec<u8> = std::iter::once(0)
            .chain((0..=u16::MAX).flat_map(u16::to_le_bytes))
            .collect();
        let kernels: [(Isa, [SimdKernel; 2]); 2] = [
            (Isa::Avx2, [f16_avx2, bf16_avx2]),
            (Isa::Avx512, [f16_avx512, bf16_avx512]),
        ];
        let scalar: [Reference; 2] = [float::dequantize_f16, float::dequantize_bf16];
        for (isa, pair) in kernels {
            if !isa.is_available() {
                continue;
            }
            for (kernel, reference) in pair.into_iter().zip(scalar) {
                // Lengths around the step sizes exercise the scalar tails.
                for len in [0, 1, 7, 31, 32, 33, 63, 64, 65, 100, 65535, 65536] {
                    let s = &src[1 + 2 * (65536 - len)..];
                    let mut fast = vec![f32::from_bits(0x7fc0_dead); len];
                    let mut slow = vec![0.0; len];
                    // SAFETY: `isa.is_available()` holds, and the lengths match.
                    unsafe { kernel(s, &mut fast) };
                    reference(s, &mut slow);
                    assert_eq!(bits(&fast), bits(&slow), "{} len {len}", isa.name());
                }
            }
        }
    }
}
