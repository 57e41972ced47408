//! `IQ4_XS`: `d * (ls - 32) * kvalues_iq4nl[q]` with a 6-bit `ls` per 32 weights.
//!
//! The 16-level table fits one `vpshufb`: nibbles index it directly, giving the signed
//! levels as bytes. Each 32 bytes of `qs` cover groups `2g` (bytes 0..16: low nibbles are
//! weights 0..16 of the group, high nibbles 16..32) and `2g + 1` (bytes 16..32).

use std::arch::x86_64::{
    _mm256_and_si256, _mm256_broadcastsi128_si256, _mm256_cvtepi32_ps, _mm256_mul_ps,
    _mm256_or_si256, _mm256_set1_epi32, _mm256_set1_ps, _mm256_setr_epi32, _mm256_shuffle_epi8,
    _mm256_slli_epi32, _mm256_srlv_epi32, _mm256_sub_epi32,
};

use std::arch::x86_64::{
    _mm512_cvtepi32_ps, _mm512_cvtepi8_epi32, _mm512_mul_ps, _mm512_set1_ps, _mm512_srli_epi32,
};

use super::lanes::avx512::{put16_lookup, widen_u8};
use super::lanes::{f16_at, halves, load16, load32, shr_and, to_array};
use crate::quant::blocks::{iq4_xs, u16_at, u32_at, QK_K};
use crate::quant::scalar::iq_grids::KVALUES_IQ4NL;

/// `d * (ls - 32)` for the eight groups of an `IQ4_XS` block: lane `ib` takes nibble `ib`
/// of `scales_l` and bit pair `ib` of `scales_h`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn group_scales(block: &[u8]) -> [f32; 8] {
    let low = _mm256_srlv_epi32(
        _mm256_set1_epi32(u32_at(block, iq4_xs::SCALES_L) as i32),
        _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28),
    );
    let high = _mm256_srlv_epi32(
        _mm256_set1_epi32(i32::from(u16_at(block, iq4_xs::SCALES_H))),
        _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14),
    );
    let ls = _mm256_or_si256(
        _mm256_and_si256(low, _mm256_set1_epi32(0x0F)),
        _mm256_slli_epi32::<4>(_mm256_and_si256(high, _mm256_set1_epi32(3))),
    );
    let ls = _mm256_cvtepi32_ps(_mm256_sub_epi32(ls, _mm256_set1_epi32(32)));
    to_array(_mm256_mul_ps(_mm256_set1_ps(f16_at(block, iq4_xs::D)), ls))
}

/// Defines the `IQ4_XS` kernel for one instruction set: `$features` to enable and `$put`
/// the matching `lanes::*::put16_scaled_i8`.
macro_rules! iq4_xs_kernel {
    ($features:literal, $put:path, $name:ident) => {
        /// `IQ4_XS`: levels looked up with `vpshufb`, then `dl * level`.
        ///
        /// # Safety
        /// The CPU must have the enabled target features.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn $name(src: &[u8], dst: &mut [f32]) {
            let levels: [u8; 16] = KVALUES_IQ4NL.map(|v| v as u8);
            let table = _mm256_broadcastsi128_si256(load16(&levels, 0));
            for (block, out) in src
                .chunks_exact(iq4_xs::SIZE)
                .zip(dst.chunks_exact_mut(QK_K))
            {
                let dl = group_scales(block);
                for g in 0..4 {
                    let q = load32(block, iq4_xs::QS + 32 * g);
                    let lo = _mm256_shuffle_epi8(table, shr_and(q, 0, 0x0F));
                    let hi = _mm256_shuffle_epi8(table, shr_and(q, 4, 0x0F));
                    let ((lo_a, lo_b), (hi_a, hi_b)) = (halves(lo), halves(hi));
                    $put(out, 64 * g, lo_a, dl[2 * g]);
                    $put(out, 64 * g + 16, hi_a, dl[2 * g]);
                    $put(out, 64 * g + 32, lo_b, dl[2 * g + 1]);
                    $put(out, 64 * g + 48, hi_b, dl[2 * g + 1]);
                }
            }
        }
    };
}

iq4_xs_kernel!(
    "avx2,fma,f16c",
    super::lanes::avx2::put16_scaled_i8,
    iq4_xs_avx2
);

/// `IQ4_XS` with AVX-512: per group, the 16 possible outputs `dl * level` (the reference's
/// products) in one register, looked up by nibble with `vpermps`, which reads only the low
/// four bits of each index.
///
/// # Safety
/// The CPU must have AVX2, FMA, F16C and AVX-512 F/BW/VL.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn iq4_xs_avx512(src: &[u8], dst: &mut [f32]) {
    let levels = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(load16(
        &KVALUES_IQ4NL.map(|v| v as u8),
        0,
    )));
    for (block, out) in src
        .chunks_exact(iq4_xs::SIZE)
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let dl = group_scales(block);
        for (ib, &dl) in dl.iter().enumerate() {
            let table = _mm512_mul_ps(_mm512_set1_ps(dl), levels);
            let x = widen_u8(load16(block, iq4_xs::QS + 16 * ib));
            put16_lookup(out, 32 * ib, x, table);
            put16_lookup(out, 32 * ib + 16, _mm512_srli_epi32::<4>(x), table);
        }
    }
}
