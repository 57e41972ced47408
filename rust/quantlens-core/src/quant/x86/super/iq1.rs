//! `IQ1_S` and `IQ1_M`: groups of 8 weights from the 2048-row ternary grid, shifted by ±1/8
//! and scaled: `dl * (grid + delta)`.
//!
//! Grid rows are looked up one at a time; two rows (16 weights) at once are widened,
//! shifted and scaled by `grid::avx2::put16_shifted`. There is no AVX-512 version: wider
//! vectors measured no faster, the scalar index work dominates.

use std::arch::x86_64::{_mm_cvtph_ps, _mm_cvtsi32_si128, _mm_cvtss_f32};

use super::grid::{avx2::put16_shifted, rows};
use super::lanes::f16_at;
use crate::quant::blocks::{iq1_m, iq1_s, u16_at, QK_K};
use crate::quant::scalar::iq_grids::IQ1S_GRID;

/// The shift of IQ1 grid values (ggml's `IQ1S_DELTA`).
const DELTA: f32 = 0.125;

/// The grid row of 11-bit index `low | high << 8`.
#[inline]
fn row(low: u8, high: u16) -> u64 {
    IQ1S_GRID[usize::from(low) | (usize::from(high & 7) << 8)]
}

/// `-DELTA` if bit `bit` (0..16) of `h` is set, else `DELTA`.
///
/// Built from the bits (the sign bit of `DELTA` taken from `h`) rather than chosen by a
/// branch: on real data these bits are random, and mispredicted branches cost more than the
/// whole group's arithmetic.
#[inline]
fn delta(h: u16, bit: u32) -> f32 {
    let sign = (u32::from(h) >> bit) & 1;
    f32::from_bits(DELTA.to_bits() | (sign << 31))
}

/// The f16 super-block scale of an `IQ1_M` block, assembled from the top nibbles of its four
/// scale words and widened by F16C.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn iq1_m_scale(sc: [u16; 4]) -> f32 {
    let bits = (sc[0] >> 12) | ((sc[1] >> 8) & 0x00F0) | ((sc[2] >> 4) & 0x0F00) | (sc[3] & 0xF000);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
}

/// `IQ1_S`: per 32 weights a `u16` of three 3-bit index highs, a 3-bit odd scale and
/// the shift sign.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn iq1_s_avx2(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(iq1_s::SIZE)
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let d = f16_at(block, iq1_s::D);
        for ib in 0..8 {
            let qh = u16_at(block, iq1_s::QH + 2 * ib);
            let dl = d * f32::from(2 * ((qh >> 12) & 7) + 1);
            let delta = delta(qh, 15);
            let low = &block[iq1_s::QS + 4 * ib..iq1_s::QS + 4 * ib + 4];
            let grid: [u64; 4] = std::array::from_fn(|l| row(low[l], qh >> (3 * l)));
            let (first, second) = (rows(grid[0], grid[1]), rows(grid[2], grid[3]));
            put16_shifted(out, 32 * ib, first, dl, (delta, delta));
            put16_shifted(out, 32 * ib + 16, second, dl, (delta, delta));
        }
    }
}

/// `IQ1_M`: a 3-bit odd scale per 16 weights, and per 8 weights a nibble of `qh`
/// holding 3 index highs and the shift sign.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn iq1_m_avx2(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(iq1_m::SIZE)
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let sc: [u16; 4] = std::array::from_fn(|i| u16_at(block, iq1_m::SCALES + 2 * i));
        let d = iq1_m_scale(sc);
        for ib in 0..8 {
            let scales = sc[ib / 2] >> (6 * (ib % 2));
            let dl0 = d * f32::from(2 * (scales & 7) + 1);
            let dl1 = d * f32::from(2 * ((scales >> 3) & 7) + 1);
            let low = &block[iq1_m::QS + 4 * ib..iq1_m::QS + 4 * ib + 4];
            let qh = u16_at(block, iq1_m::QH + 2 * ib);
            // Nibble `l` of the two qh bytes serves weights 8l..8l+8 of the group.
            let high: [u16; 4] = std::array::from_fn(|l| qh >> (4 * l));
            let grid: [u64; 4] = std::array::from_fn(|l| row(low[l], high[l]));
            let deltas: [f32; 4] = std::array::from_fn(|l| delta(high[l], 3));
            let (first, second) = (rows(grid[0], grid[1]), rows(grid[2], grid[3]));
            put16_shifted(out, 32 * ib, first, dl0, (deltas[0], deltas[1]));
            put16_shifted(out, 32 * ib + 16, second, dl1, (deltas[2], deltas[3]));
        }
    }
}
