//! Table-driven 4-bit types: `IQ4_NL` (`d * kvalues_iq4nl[q]`), `MXFP4` and `NVFP4`
//! (`kvalues_mxfp4[q] * d`, E2M1 values doubled, with halved E8M0 or UE4M3 scales).
//!
//! AVX2 looks the nibbles up as bytes with `pshufb`, then widens and converts; AVX-512 maps
//! them straight to f32 with `vpermps` (see `legacy`). The tables hold small integers, so the
//! looked-up values are exact and the single multiply rounds as the reference's does.

use core::arch::x86_64::{
    __m128i, __m256, _mm256_mul_ps, _mm256_set1_ps, _mm512_mul_ps, _mm512_set1_ps,
    _mm512_shuffle_f32x4, _mm_shuffle_epi8, _mm_unpackhi_epi64, _mm_unpacklo_epi64,
};

use super::common::{
    load_x16, lut_f32, lut_i8, nibbles, splat_f16_x16, splat_f16_x8, store_x16_avx512,
    store_x32_avx2, store_x32_avx512, widen_i8_x16,
};
use super::legacy::lookup_nibbles_x16;
use crate::quant::blocks::{iq4_nl, mxfp4, nvfp4};
use crate::quant::scalar::fp4::e8m0_to_f32_half;
use crate::quant::scalar::iq_grids::{KVALUES_IQ4NL, KVALUES_MXFP4};

const _: () = assert!(iq4_nl::D == 0 && iq4_nl::QS == 2 && iq4_nl::SIZE == 18);
const _: () = assert!(mxfp4::E == 0 && mxfp4::QS == 1 && mxfp4::SIZE == 17);
const _: () = assert!(nvfp4::D == 0 && nvfp4::QS == 4 && nvfp4::SIZE == 36 && nvfp4::QK == 64);

/// Half of every UE4M3 scale byte: the reference's `ue4m3_to_f32_half` as a table (the
/// tests compare all 256 entries). Bit 7 is ignored, except that the NaN code, which decodes
/// to zero, is `0x7F` alone: `0xFF` decodes as exponent 15, mantissa 7.
static UE4M3_HALF: [f32; 256] = {
    let mut t = [0.0f32; 256];
    let mut x = 0;
    while x < 256 {
        let exp = ((x >> 3) & 0x0F) as u32;
        let man = (x & 7) as u32;
        let bits = if x == 0x7F || (exp == 0 && man == 0) {
            0
        } else if exp == 0 {
            // man * 2^-10 for man in 1..8: normalise around its top bit `p`.
            let p = man.ilog2();
            ((p + 127 - 10) << 23) | ((man << (23 - p)) & 0x007F_FFFF)
        } else {
            // (1 + man / 8) * 2^(exp - 7), halved.
            ((exp + 127 - 8) << 23) | (man << 20)
        };
        t[x] = f32::from_bits(bits);
        x += 1;
    }
    t
};

/// Half of the UE4M3 scale byte `s`.
#[inline]
fn ue4m3_half(s: u8) -> f32 {
    UE4M3_HALF[usize::from(s)]
}

/// 16 nibble bytes (as [`nibbles`] returns them) looked up in the byte table `t` and
/// widened: two vectors of 8.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn lookup_x16(t: __m128i, idx: __m128i) -> (__m256, __m256) {
    widen_i8_x16(_mm_shuffle_epi8(t, idx))
}

/// A 32-weight block of nibbles `qs` looked up in the byte table `t`, times `d` (AVX2).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn put_block_avx2(out: &mut [f32; 32], t: __m128i, qs: &[u8; 16], d: __m256) {
    let (lo, hi) = nibbles(load_x16(qs));
    let (w0, w1) = lookup_x16(t, lo);
    let (w2, w3) = lookup_x16(t, hi);
    store_x32_avx2(out, [w0, w1, w2, w3].map(|w| _mm256_mul_ps(w, d)));
}

/// `IQ4_NL` with AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant::x86) unsafe fn iq4_nl_avx2(src: &[u8], dst: &mut [f32]) {
    let t = lut_i8(&KVALUES_IQ4NL);
    let (blocks, _) = src.as_chunks::<{ iq4_nl::SIZE }>();
    let (outs, _) = dst.as_chunks_mut::<{ iq4_nl::QK }>();
    for ([d0, d1, qs @ ..], out) in blocks.iter().zip(outs) {
        put_block_avx2(out, t, qs, splat_f16_x8(u16::from_le_bytes([*d0, *d1])));
    }
}

/// `MXFP4` with AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant::x86) unsafe fn mxfp4_avx2(src: &[u8], dst: &mut [f32]) {
    let t = lut_i8(&KVALUES_MXFP4);
    let (blocks, _) = src.as_chunks::<{ mxfp4::SIZE }>();
    let (outs, _) = dst.as_chunks_mut::<{ mxfp4::QK }>();
    for ([e, qs @ ..], out) in blocks.iter().zip(outs) {
        put_block_avx2(out, t, qs, _mm256_set1_ps(e8m0_to_f32_half(*e)));
    }
}

/// `NVFP4` with AVX2: two 16-weight sub-blocks (8 bytes each) per 16-byte load.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant::x86) unsafe fn nvfp4_avx2(src: &[u8], dst: &mut [f32]) {
    let t = lut_i8(&KVALUES_MXFP4);
    let (blocks, _) = src.as_chunks::<{ nvfp4::SIZE }>();
    let (outs, _) = dst.as_chunks_mut::<{ nvfp4::QK }>();
    for ([s0, s1, s2, s3, qs @ ..], out) in blocks.iter().zip(outs) {
        let (pairs, _) = qs.as_chunks::<16>();
        let (halves, _) = out.as_chunks_mut::<32>();
        for ((q, out), [sa, sb]) in pairs.iter().zip(halves).zip([[s0, s1], [s2, s3]]) {
            // Low nibbles of sub-block a, then its high nibbles; the same for b.
            let (lo, hi) = nibbles(load_x16(q));
            let (w0, w1) = lookup_x16(t, _mm_unpacklo_epi64(lo, hi));
            let (w2, w3) = lookup_x16(t, _mm_unpackhi_epi64(lo, hi));
            let (da, db) = (
                _mm256_set1_ps(ue4m3_half(*sa)),
                _mm256_set1_ps(ue4m3_half(*sb)),
            );
            store_x32_avx2(
                out,
                [
                    _mm256_mul_ps(w0, da),
                    _mm256_mul_ps(w1, da),
                    _mm256_mul_ps(w2, db),
                    _mm256_mul_ps(w3, db),
                ],
            );
        }
    }
}

/// `IQ4_NL` with AVX-512.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(in crate::quant::x86) unsafe fn iq4_nl_avx512(src: &[u8], dst: &mut [f32]) {
    let levels = lut_f32(&KVALUES_IQ4NL);
    let (blocks, _) = src.as_chunks::<{ iq4_nl::SIZE }>();
    let (outs, _) = dst.as_chunks_mut::<{ iq4_nl::QK }>();
    for ([d0, d1, qs @ ..], out) in blocks.iter().zip(outs) {
        let d = splat_f16_x16(u16::from_le_bytes([*d0, *d1]));
        let (lo, hi) = lookup_nibbles_x16(qs, levels);
        store_x32_avx512(out, [_mm512_mul_ps(d, lo), _mm512_mul_ps(d, hi)]);
    }
}

/// `MXFP4` with AVX-512.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(in crate::quant::x86) unsafe fn mxfp4_avx512(src: &[u8], dst: &mut [f32]) {
    let levels = lut_f32(&KVALUES_MXFP4);
    let (blocks, _) = src.as_chunks::<{ mxfp4::SIZE }>();
    let (outs, _) = dst.as_chunks_mut::<{ mxfp4::QK }>();
    for ([e, qs @ ..], out) in blocks.iter().zip(outs) {
        let d = _mm512_set1_ps(e8m0_to_f32_half(*e));
        let (lo, hi) = lookup_nibbles_x16(qs, levels);
        store_x32_avx512(out, [_mm512_mul_ps(lo, d), _mm512_mul_ps(hi, d)]);
    }
}

/// `NVFP4` with AVX-512: two sub-blocks per 16-byte load, their low- and high-nibble halves
/// regrouped by 128-bit lanes.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(in crate::quant::x86) unsafe fn nvfp4_avx512(src: &[u8], dst: &mut [f32]) {
    let levels = lut_f32(&KVALUES_MXFP4);
    let (blocks, _) = src.as_chunks::<{ nvfp4::SIZE }>();
    let (outs, _) = dst.as_chunks_mut::<{ nvfp4::QK }>();
    for ([s0, s1, s2, s3, qs @ ..], out) in blocks.iter().zip(outs) {
        let (pairs, _) = qs.as_chunks::<16>();
        let (subs, _) = out.as_chunks_mut::<16>();
        for (i, (q, [sa, sb])) in pairs.iter().zip([[s0, s1], [s2, s3]]).enumerate() {
            // `lo` holds the low nibbles of sub-block a (lanes 0-7) and b (8-15), `hi` the
            // high ones: a is lanes 0-7 of both, b lanes 8-15 of both.
            let (lo, hi) = lookup_nibbles_x16(q, levels);
            let a = _mm512_shuffle_f32x4::<0x44>(lo, hi);
            let b = _mm512_shuffle_f32x4::<0xEE>(lo, hi);
            let (da, db) = (
                _mm512_set1_ps(ue4m3_half(*sa)),
                _mm512_set1_ps(ue4m3_half(*sb)),
            );
            store_x16_avx512(&mut subs[2 * i], _mm512_mul_ps(a, da));
            store_x16_avx512(&mut subs[2 * i + 1], _mm512_mul_ps(b, db));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::scalar::fp4::ue4m3_to_f32_half;

    #[test]
    fn ue4m3_table_matches_the_reference() {
        for s in 0..=u8::MAX {
            assert_eq!(
                ue4m3_half(s).to_bits(),
                ue4m3_to_f32_half(s).to_bits(),
                "{s:#04x}"
            );
        }
    }
}
