//! The i-quants: `IQ1_S`, `IQ1_M`, `IQ2_XXS`, `IQ2_XS`, `IQ2_S`, `IQ3_XXS`, `IQ3_S`, `IQ4_NL`
//! and `IQ4_XS`.
//!
//! The 1–3 bit types pick groups of 4 or 8 magnitudes from the codebooks in
//! [`super::iq_grids`] and apply per-weight signs; the 4-bit types map nibbles through a
//! 16-level table. Group scales are formed first and the grid value is multiplied in
//! afterwards, in ggml's order.

use super::iq_grids::{
    IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KSIGNS_IQ2XS,
    KVALUES_IQ4NL,
};
use crate::quant::blocks::{
    f16_at, iq1_m, iq1_s, iq2_s, iq2_xs, iq2_xxs, iq3_s, iq3_xxs, iq4_nl, iq4_xs, u16_at, u32_at,
};
use half::f16;

/// The shift applied to IQ1 grid values (ggml's `IQ1S_DELTA`).
const IQ1S_DELTA: f32 = 0.125;

/// Writes `db * grid[j] * ±1` for eight unsigned grid magnitudes packed little-endian in
/// `row`, with the signs taken from the bits of `signs`.
#[inline]
fn put_signed(ys: &mut [f32], db: f32, row: u64, signs: u8) {
    for (j, (y, g)) in ys.iter_mut().zip(row.to_le_bytes()).enumerate() {
        let v = db * f32::from(g);
        // A negation rather than ggml's multiply by -1.0: equal for every number, and
        // for NaN it flips the sign bit deterministically, where a multiply's NaN sign is
        // up to the optimiser (which may rewrite it into a negation).
        *y = if signs & (1 << j) != 0 { -v } else { v };
    }
}

/// Writes `dl * (grid[j] + delta)` for eight `i8` grid values packed little-endian in `row`.
#[inline]
fn put_shifted(ys: &mut [f32], dl: f32, row: u64, delta: f32) {
    for (y, g) in ys.iter_mut().zip(row.to_le_bytes()) {
        *y = dl * (f32::from(g as i8) + delta);
    }
}

/// Two 4-value IQ3 grid rows as one 8-value row.
#[inline]
fn join(first: u32, second: u32) -> u64 {
    u64::from(first) | (u64::from(second) << 32)
}

/// `d * (0.5 + s) * f` with a 4-bit group scale `s` (IQ2/IQ3 XXS/XS/S).
#[inline]
fn half_step_scale(d: f32, s: u8, f: f32) -> f32 {
    d * (0.5 + f32::from(s)) * f
}

/// `IQ2_XXS`: per 32 weights, four 8-byte grid indices and a `u32` of signs and scale.
pub fn dequantize_iq2_xxs(src: &[u8], dst: &mut [f32]) {
    let size = iq2_xxs::SIZE;
    for (block, out) in src
        .chunks_exact(size)
        .zip(dst.chunks_exact_mut(iq2_xxs::QK))
    {
        let d = f16_at(block, iq2_xxs::D);
        let qs = &block[iq2_xxs::QS..iq2_xxs::QS + 64];
        for (ys, group) in out.chunks_exact_mut(32).zip(qs.chunks_exact(8)) {
            let aux = u32_at(group, 4);
            let db = half_step_scale(d, (aux >> 28) as u8, 0.25);
            for (l, (ys8, &index)) in ys.chunks_exact_mut(8).zip(&group[..4]).enumerate() {
                let signs = KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
                put_signed(ys8, db, IQ2XXS_GRID[usize::from(index)], signs);
            }
        }
    }
}

/// `IQ2_XS`: `u16` codes of a 9-bit grid index and a 7-bit sign index; a 4-bit scale per 16.
pub fn dequantize_iq2_xs(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(iq2_xs::SIZE)
        .zip(dst.chunks_exact_mut(iq2_xs::QK))
    {
        let d = f16_at(block, iq2_xs::D);
        let qs = &block[iq2_xs::QS..iq2_xs::QS + 64];
        let scales = &block[iq2_xs::SCALES..iq2_xs::SCALES + 8];
        for ((ys, codes), &sc) in out.chunks_exact_mut(32).zip(qs.chunks_exact(8)).zip(scales) {
            let db = [
                half_step_scale(d, sc & 0x0F, 0.25),
                half_step_scale(d, sc >> 4, 0.25),
            ];
            for (l, (ys8, code)) in ys
                .chunks_exact_mut(8)
                .zip(codes.chunks_exact(2))
                .enumerate()
            {
                let code = u16::from_le_bytes([code[0], code[1]]);
                let row = IQ2XS_GRID[usize::from(code & 511)];
                put_signed(ys8, db[l / 2], row, KSIGNS_IQ2XS[usize::from(code >> 9)]);
            }
        }
    }
}

/// `IQ2_S`: 10-bit grid indices (8 bits in `qs`, 2 in `qh`), explicit sign bytes.
pub fn dequantize_iq2_s(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(iq2_s::SIZE)
        .zip(dst.chunks_exact_mut(iq2_s::QK))
    {
        let d = f16_at(block, iq2_s::D);
        let (qs, signs) = block[iq2_s::QS..iq2_s::QS + 64].split_at(32);
        let qh = &block[iq2_s::QH..iq2_s::QH + 8];
        let scales = &block[iq2_s::SCALES..iq2_s::SCALES + 8];
        let groups = out
            .chunks_exact_mut(32)
            .zip(qs.chunks_exact(4).zip(signs.chunks_exact(4)))
            .zip(qh.iter().zip(scales));
        for ((ys, (q4, s4)), (&h, &sc)) in groups {
            let db = [
                half_step_scale(d, sc & 0x0F, 0.25),
                half_step_scale(d, sc >> 4, 0.25),
            ];
            for (l, ((ys8, &q), &s)) in ys.chunks_exact_mut(8).zip(q4).zip(s4).enumerate() {
                let index = usize::from(q) | ((usize::from(h) << (8 - 2 * l)) & 0x300);
                put_signed(ys8, db[l / 2], IQ2S_GRID[index], s);
            }
        }
    }
}

/// `IQ3_XXS`: pairs of 4-value grid rows; per 32 weights a `u32` of signs and scale.
pub fn dequantize_iq3_xxs(src: &[u8], dst: &mut [f32]) {
    let size = iq3_xxs::SIZE;
    for (block, out) in src
        .chunks_exact(size)
        .zip(dst.chunks_exact_mut(iq3_xxs::QK))
    {
        let d = f16_at(block, iq3_xxs::D);
        let (qs, scales_and_signs) = block[iq3_xxs::QS..iq3_xxs::QS + 96].split_at(64);
        let groups = out
            .chunks_exact_mut(32)
            .zip(qs.chunks_exact(8))
            .zip(scales_and_signs.chunks_exact(4));
        for ((ys, q8), aux) in groups {
            let aux = u32_at(aux, 0);
            let db = half_step_scale(d, (aux >> 28) as u8, 0.5);
            for (l, (ys8, q2)) in ys.chunks_exact_mut(8).zip(q8.chunks_exact(2)).enumerate() {
                let signs = KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
                let row = join(
                    IQ3XXS_GRID[usize::from(q2[0])],
                    IQ3XXS_GRID[usize::from(q2[1])],
                );
                put_signed(ys8, db, row, signs);
            }
        }
    }
}

/// `IQ3_S`: 9-bit grid indices (8 bits in `qs`, 1 in `qh`), explicit signs, odd 4-bit scales.
pub fn dequantize_iq3_s(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(iq3_s::SIZE)
        .zip(dst.chunks_exact_mut(iq3_s::QK))
    {
        let d = f16_at(block, iq3_s::D);
        let qs = &block[iq3_s::QS..iq3_s::QS + 64];
        let qh = &block[iq3_s::QH..iq3_s::QH + 8];
        let signs = &block[iq3_s::SIGNS..iq3_s::SIGNS + 32];
        let scales = &block[iq3_s::SCALES..iq3_s::SCALES + 4];
        let groups = out
            .chunks_exact_mut(32)
            .zip(qs.chunks_exact(8))
            .zip(qh.iter().zip(signs.chunks_exact(4)));
        for (ib, ((ys, q8), (&h, s4))) in groups.enumerate() {
            let sc = (scales[ib / 2] >> (4 * (ib % 2))) & 0x0F;
            let db = d * f32::from(1 + 2 * sc);
            // Bit k of `h` is the ninth index bit of q8[k].
            let h = usize::from(h);
            for (l, ((ys8, q2), &s)) in ys
                .chunks_exact_mut(8)
                .zip(q8.chunks_exact(2))
                .zip(s4)
                .enumerate()
            {
                let first = usize::from(q2[0]) | ((h << (8 - 2 * l)) & 256);
                let second = usize::from(q2[1]) | ((h << (7 - 2 * l)) & 256);
                put_signed(ys8, db, join(IQ3S_GRID[first], IQ3S_GRID[second]), s);
            }
        }
    }
}

/// `IQ1_S`: 11-bit indices into the ternary grid, a 3-bit odd scale and a shift sign per 32.
pub fn dequantize_iq1_s(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(iq1_s::SIZE)
        .zip(dst.chunks_exact_mut(iq1_s::QK))
    {
        let d = f16_at(block, iq1_s::D);
        let qs = &block[iq1_s::QS..iq1_s::QS + 32];
        let qh = &block[iq1_s::QH..iq1_s::QH + 16];
        for ((ys, q4), h) in out
            .chunks_exact_mut(32)
            .zip(qs.chunks_exact(4))
            .zip(qh.chunks_exact(2))
        {
            let h = u16::from_le_bytes([h[0], h[1]]);
            let dl = d * f32::from(2 * ((h >> 12) & 7) + 1);
            let delta = if h & 0x8000 != 0 {
                -IQ1S_DELTA
            } else {
                IQ1S_DELTA
            };
            for (l, (ys8, &q)) in ys.chunks_exact_mut(8).zip(q4).enumerate() {
                let index = usize::from(q) | (usize::from((h >> (3 * l)) & 7) << 8);
                put_shifted(ys8, dl, IQ1S_GRID[index], delta);
            }
        }
    }
}

/// The f16 super-block scale of an `IQ1_M` block: the top nibbles of its four scale words.
#[inline]
fn iq1_m_scale(sc: [u16; 4]) -> f32 {
    let bits = (sc[0] >> 12) | ((sc[1] >> 8) & 0x00F0) | ((sc[2] >> 4) & 0x0F00) | (sc[3] & 0xF000);
    f16::from_bits(bits).to_f32()
}

/// `IQ1_M`: as `IQ1_S` with a 3-bit scale per 16 weights and a shift sign per 8.
pub fn dequantize_iq1_m(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(iq1_m::SIZE)
        .zip(dst.chunks_exact_mut(iq1_m::QK))
    {
        let sc: [u16; 4] = std::array::from_fn(|i| u16_at(block, iq1_m::SCALES + 2 * i));
        let d = iq1_m_scale(sc);
        let qs = &block[iq1_m::QS..iq1_m::QS + 32];
        let qh = &block[iq1_m::QH..iq1_m::QH + 16];
        let groups = out
            .chunks_exact_mut(32)
            .zip(qs.chunks_exact(4))
            .zip(qh.chunks_exact(2));
        for (ib, ((ys, q4), h2)) in groups.enumerate() {
            let s = sc[ib / 2] >> (6 * (ib % 2));
            let dl = [
                d * f32::from(2 * (s & 7) + 1),
                d * f32::from(2 * ((s >> 3) & 7) + 1),
            ];
            for (l, (ys8, &q)) in ys.chunks_exact_mut(8).zip(q4).enumerate() {
                // Each qh nibble: 3 high index bits, then the shift sign.
                let h = h2[l / 2] >> (4 * (l % 2));
                let index = usize::from(q) | (usize::from(h & 7) << 8);
                let delta = if h & 8 != 0 { -IQ1S_DELTA } else { IQ1S_DELTA };
                put_shifted(ys8, dl[l / 2], IQ1S_GRID[index], delta);
            }
        }
    }
}

/// `dl * kvalues_iq4nl[q]` for 16 bytes of nibbles: low nibbles to `lo`, high to `hi`.
#[inline]
fn put_iq4(lo: &mut [f32], hi: &mut [f32], dl: f32, qs: &[u8]) {
    for ((&q, lo), hi) in qs.iter().zip(lo).zip(hi) {
        *lo = dl * f32::from(KVALUES_IQ4NL[usize::from(q & 0x0F)]);
        *hi = dl * f32::from(KVALUES_IQ4NL[usize::from(q >> 4)]);
    }
}

/// `IQ4_NL`: `d * kvalues_iq4nl[q]`, nibbles ordered as in `Q4_0`.
pub fn dequantize_iq4_nl(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(iq4_nl::SIZE)
        .zip(dst.chunks_exact_mut(iq4_nl::QK))
    {
        let d = f16_at(block, iq4_nl::D);
        let (lo, hi) = out.split_at_mut(16);
        put_iq4(lo, hi, d, &block[iq4_nl::QS..iq4_nl::QS + 16]);
    }
}

/// `IQ4_XS`: `IQ4_NL` levels in 32-weight groups with 6-bit scales biased by 32.
pub fn dequantize_iq4_xs(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(iq4_xs::SIZE)
        .zip(dst.chunks_exact_mut(iq4_xs::QK))
    {
        let d = f16_at(block, iq4_xs::D);
        let scales_h = u16_at(block, iq4_xs::SCALES_H);
        let scales_l = &block[iq4_xs::SCALES_L..iq4_xs::SCALES_L + 4];
        let qs = &block[iq4_xs::QS..iq4_xs::QS + 128];
        for (ib, (ys, q16)) in out
            .chunks_exact_mut(32)
            .zip(qs.chunks_exact(16))
            .enumerate()
        {
            let low = (scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0F;
            let high = ((scales_h >> (2 * ib)) & 3) as u8;
            let dl = d * f32::from(i16::from(low | (high << 4)) - 32);
            let (lo, hi) = ys.split_at_mut(16);
            put_iq4(lo, hi, dl, q16);
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::float_cmp,
    reason = "bit-exact equality is what these tests check"
)]
mod tests {
    use super::*;

    type Kernel = fn(&[u8], &mut [f32]);

    const KERNELS: [(&str, Kernel, usize, usize); 9] = [
        ("IQ1_S", dequantize_iq1_s, iq1_s::SIZE, 256),
        ("IQ1_M", dequantize_iq1_m, iq1_m::SIZE, 256),
        ("IQ2_XXS", dequantize_iq2_xxs, iq2_xxs::SIZE, 256),
        ("IQ2_XS", dequantize_iq2_xs, iq2_xs::SIZE, 256),
        ("IQ2_S", dequantize_iq2_s, iq2_s::SIZE, 256),
        ("IQ3_XXS", dequantize_iq3_xxs, iq3_xxs::SIZE, 256),
        ("IQ3_S", dequantize_iq3_s, iq3_s::SIZE, 256),
        ("IQ4_NL", dequantize_iq4_nl, iq4_nl::SIZE, 32),
        ("IQ4_XS", dequantize_iq4_xs, iq4_xs::SIZE, 256),
    ];

    #[test]
    fn all_zero_blocks_give_zeros() {
        for (name, kernel, size, qk) in KERNELS {
            let mut out = vec![1.0; qk];
            kernel(&vec![0; size], &mut out);
            assert!(out.iter().all(|&v| v == 0.0), "{name}");
        }
    }

    #[test]
    fn nan_scales_reach_every_weight() {
        // 0xFF everywhere makes every f16 scale a NaN: the NaN must reach every output.
        for (name, kernel, size, qk) in KERNELS {
            let mut out = vec![1.0; qk];
            kernel(&vec![0xFF; size], &mut out);
            assert!(out.iter().all(|v| v.is_nan()), "{name}");
        }
    }

    #[test]
    fn iq2_xxs_first_group() {
        let mut b = vec![0u8; iq2_xxs::SIZE];
        b[..2].copy_from_slice(&0x3c00u16.to_le_bytes()); // d = 1
        b[2] = 1; // grid row 1 is 0x0808_0808_0808_082b: weight 0 is 43, the others 8
        let aux: u32 = (3 << 28) | 1; // scale 3, sign index 1 -> ksigns 129 -> weights 0 and 7
        b[6..10].copy_from_slice(&aux.to_le_bytes());
        let mut out = [0.0; 256];
        dequantize_iq2_xxs(&b, &mut out);
        let db = (0.5 + 3.0) * 0.25;
        assert_eq!(out[0], -db * 43.0);
        assert_eq!(out[1], db * 8.0);
        assert_eq!(out[7], -db * 8.0);
    }

    #[test]
    fn iq1_m_scale_is_assembled_from_nibbles() {
        // f16 1.0 = 0x3C00: nibbles 0, 0, C, 3 from words 0..4.
        let sc = [0x0000, 0x0000, 0xC000, 0x3000];
        assert_eq!(iq1_m_scale(sc), 1.0);
    }

    #[test]
    fn iq1_s_shift_and_scale() {
        let mut b = vec![0u8; iq1_s::SIZE];
        b[..2].copy_from_slice(&0x3c00u16.to_le_bytes());
        let qh: u16 = 0x8000 | (2 << 12); // shift -1/8, scale 2*2+1
        b[iq1_s::QH..iq1_s::QH + 2].copy_from_slice(&qh.to_le_bytes());
        let mut out = [0.0; 256];
        dequantize_iq1_s(&b, &mut out);
        // Grid row 0 is all -1.
        assert!(out[..32].iter().all(|&v| v == 5.0 * (-1.0 - 0.125)));
        // The other groups: scale 1, shift +1/8, grid row 0.
        assert!(out[32..].iter().all(|&v| v == -0.875));
    }

    #[test]
    fn iq4_xs_scales() {
        let mut b = vec![0u8; iq4_xs::SIZE];
        b[..2].copy_from_slice(&0x3c00u16.to_le_bytes());
        // Group 1 gets high scale bits 3.
        b[iq4_xs::SCALES_H..iq4_xs::SCALES_H + 2].copy_from_slice(&0b1100u16.to_le_bytes());
        b[iq4_xs::SCALES_L] = 0x5A; // ib 0 low A, ib 1 low 5
        b[iq4_xs::QS + 16] = 0xF0; // ib 1: weight 32 level 0, weight 48 level 15
        let mut out = [0.0; 256];
        dequantize_iq4_xs(&b, &mut out);
        assert_eq!(out[0], f32::from(0x0Ai8 - 32) * -127.0);
        assert_eq!(out[32], f32::from(0x35i8 - 32) * -127.0);
        assert_eq!(out[48], f32::from(0x35i8 - 32) * 113.0);
    }

    #[test]
    fn infinite_scale_keeps_signs() {
        let mut b = vec![0u8; iq2_s::SIZE];
        b[..2].copy_from_slice(&0x7c00u16.to_le_bytes());
        b[iq2_s::QS + 32] = 0x01; // first weight negative
        let mut out = [0.0; 256];
        dequantize_iq2_s(&b, &mut out);
        assert_eq!(out[0], f32::NEG_INFINITY);
        assert_eq!(out[1], f32::INFINITY);
    }
}
