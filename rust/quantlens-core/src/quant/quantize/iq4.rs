//! `IQ4_NL` and `IQ4_XS`: 4-bit indices into the 16 non-linear levels `kvalues_iq4nl`, as
//! ggml's `quantize_iq4_nl` / `quantize_iq4_xs` make them (with 7 scale tries on each side,
//! which is what `ggml_quantize_chunk` runs, with or without an importance matrix).
//!
//! Per 32 weights a scale is searched: start from `max / 127`, then try the inverse scales
//! `(t - 127) / max` for `t` in -7..=7 and keep the one with the best weighted fit. `IQ4_NL`
//! stores that scale as f16; `IQ4_XS` stores the eight scales of a 256-weight super-block
//! as 6-bit multiples of one f16 scale. Every quant is then the level nearest to `x / d`.
//! Weights are `x²`, or with an importance matrix `w * sqrt(σ² + x²)` where σ² is twice the
//! mean square of the super-block.

use super::rounding::{fp16_bytes, nearest_int};
use crate::quant::scalar::iq_grids::KVALUES_IQ4NL;

/// Magnitudes below this make a 32-weight group all zero (ggml's `GROUP_MAX_EPS`).
const GROUP_MAX_EPS: f32 = 1e-15;
/// Scale tries on each side of the first guess.
const NTRY: i32 = 7;
/// Weights per scale group.
const GROUP: usize = 32;
/// Weights per `IQ4_XS` super-block.
const SUPER: usize = 256;

/// The levels as f32, in increasing order.
const LEVELS: [f32; 16] = {
    let mut out = [0.0f32; 16];
    let mut i = 0;
    while i < 16 {
        out[i] = KVALUES_IQ4NL[i] as f32;
        i += 1;
    }
    out
};

/// ggml's `best_index_int8` over [`LEVELS`]: the index of the nearest level, the upper one
/// on ties; 0 below the first level, 15 above the last and for NaN.
#[inline]
fn best_index(x: f32) -> usize {
    if x <= LEVELS[0] {
        return 0;
    }
    if x >= LEVELS[15] {
        return 15;
    }
    let (mut lo, mut hi) = (0usize, 15usize);
    while hi - lo > 1 {
        let mid = usize::midpoint(lo, hi);
        if x < LEVELS[mid] {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    if x - LEVELS[hi - 1] < LEVELS[hi] - x {
        hi - 1
    } else {
        hi
    }
}

/// `Σ w·q·x` and `Σ w·q²` over a group for the inverse scale `id`, summed in order.
#[inline]
fn fit(xb: &[f32], weight: &[f32], id: f32) -> (f32, f32) {
    let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
    for (&x, &w) in xb.iter().zip(weight) {
        let q = LEVELS[best_index(id * x)];
        sumqx += w * q * x;
        sumq2 += w * q * q;
    }
    (sumqx, sumq2)
}

/// The best scale of one group (0 for an all-but-zero group).
fn group_scale(xb: &[f32], weight: &[f32]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &x in xb {
        if x.abs() > amax {
            amax = x.abs();
            max = x;
        }
    }
    if amax < GROUP_MAX_EPS {
        return 0.0;
    }
    let first = -max / LEVELS[0];
    let (sumqx, sumq2) = fit(xb, weight, 1.0 / first);
    // No fit (all weights zero, or NaN among them) gives scale 0.
    let mut d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
    let mut best = d * sumqx;
    for itry in -NTRY..=NTRY {
        let id = (itry + i32::from(KVALUES_IQ4NL[0])) as f32 / max;
        let (sumqx, sumq2) = fit(xb, weight, id);
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    d
}

/// Per-weight fit weights of a group: `x²`, or `w · sqrt(σ² + x²)` with an importance
/// matrix.
#[inline]
fn group_weights(xb: &[f32], imatrix: Option<&[f32]>, sigma2: f32, out: &mut [f32; GROUP]) {
    match imatrix {
        Some(qw) => {
            for ((o, &x), &w) in out.iter_mut().zip(xb).zip(qw) {
                *o = w * (sigma2 + x * x).sqrt();
            }
        }
        None => {
            for (o, &x) in out.iter_mut().zip(xb) {
                *o = x * x;
            }
        }
    }
}

/// `2 · mean(x²)` of a super-block, summed in order.
#[inline]
fn sigma2(x: &[f32]) -> f32 {
    let sum = x.iter().fold(0.0f32, |s, &v| s + v * v);
    sum * (2.0 / x.len() as f32)
}

/// Nibbles of 32 level indices: `j` and `j + 16` share byte `j`.
#[inline]
fn pack_group(levels: &[u8], qs: &mut [u8]) {
    let (lo, hi) = levels.split_at(16);
    for ((q, &a), &b) in qs.iter_mut().zip(lo).zip(hi) {
        *q = a | (b << 4);
    }
}

/// Level indices of `xb` for the inverse scale `id`.
#[inline]
fn assign(xb: &[f32], id: f32, out: &mut [u8]) {
    for (l, &x) in out.iter_mut().zip(xb) {
        *l = best_index(id * x) as u8;
    }
}

/// `IQ4_NL` (18-byte blocks of 32 weights). `imatrix`, if given, holds one weight per
/// element of `src`.
pub fn quantize_row_iq4_nl(src: &[f32], dst: &mut [u8], imatrix: Option<&[f32]>) {
    let mut weight = [0.0f32; GROUP];
    let mut levels = [0u8; GROUP];
    for (ib, (x, block)) in src
        .chunks_exact(GROUP)
        .zip(dst.chunks_exact_mut(18))
        .enumerate()
    {
        let qw = imatrix.and_then(|w| w.get(ib * GROUP..(ib + 1) * GROUP));
        let s2 = if qw.is_some() { sigma2(x) } else { 0.0 };
        group_weights(x, qw, s2, &mut weight);
        let d = group_scale(x, &weight);
        block[..2].copy_from_slice(&fp16_bytes(d));
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        assign(x, id, &mut levels);
        pack_group(&levels, &mut block[2..]);
    }
}

/// `IQ4_XS` (136-byte super-blocks of 256 weights: f16 `d`, the high 2 bits of eight 6-bit
/// scales, their low 4 bits, then 128 bytes of nibbles).
pub fn quantize_row_iq4_xs(src: &[f32], dst: &mut [u8], imatrix: Option<&[f32]>) {
    let mut weight = [0.0f32; GROUP];
    let mut scales = [0.0f32; SUPER / GROUP];
    let mut levels = [0u8; GROUP];
    for (ibl, (x, block)) in src
        .chunks_exact(SUPER)
        .zip(dst.chunks_exact_mut(136))
        .enumerate()
    {
        let qw = imatrix.and_then(|w| w.get(ibl * SUPER..(ibl + 1) * SUPER));
        let s2 = if qw.is_some() { sigma2(x) } else { 0.0 };
        let (mut max_scale, mut amax_scale) = (0.0f32, 0.0f32);
        for (ib, (xb, scale)) in x.chunks_exact(GROUP).zip(&mut scales).enumerate() {
            let w = qw.map(|qw| &qw[ib * GROUP..(ib + 1) * GROUP]);
            group_weights(xb, w, s2, &mut weight);
            *scale = group_scale(xb, &weight);
            if scale.abs() > amax_scale {
                amax_scale = scale.abs();
                max_scale = *scale;
            }
        }
        let d = -max_scale / 32.0;
        block[..2].copy_from_slice(&fp16_bytes(d));
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        let (mut scales_h, mut scales_l) = (0u16, [0u8; 4]);
        for (ib, (xb, &scale)) in x.chunks_exact(GROUP).zip(&scales).enumerate() {
            let l = nearest_int(id * scale).clamp(-32, 31);
            let dl = d * l as f32;
            let idl = if dl == 0.0 { 0.0 } else { 1.0 / dl };
            assign(xb, idl, &mut levels);
            pack_group(&levels, &mut block[8 + 16 * ib..8 + 16 * (ib + 1)]);
            let l = (l + 32) as u8;
            scales_l[ib / 2] |= (l & 0x0f) << (4 * (ib % 2));
            scales_h |= u16::from(l >> 4) << (2 * ib);
        }
        block[2..4].copy_from_slice(&scales_h.to_le_bytes());
        block[4..8].copy_from_slice(&scales_l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_index_matches_a_linear_search() {
        let nearest = |x: f32| {
            if x <= LEVELS[0] {
                return 0;
            }
            if x >= LEVELS[15] {
                return 15;
            }
            // The upper level on ties, as ggml's strict comparison gives.
            let hi = LEVELS.iter().position(|&v| v > x).unwrap();
            if x - LEVELS[hi - 1] < LEVELS[hi] - x {
                hi - 1
            } else {
                hi
            }
        };
        let mut x = -140.0f32;
        while x < 140.0 {
            assert_eq!(best_index(x), nearest(x), "{x}");
            x += 0.25;
        }
        assert_eq!(best_index(f32::NAN), 15);
        assert_eq!(best_index(-4.5), 8);
        assert_eq!(best_index(0.0), 8);
    }

    #[test]
    fn all_zero_super_block_has_negative_zero_scale() {
        let x = [0.0f32; 256];
        let mut out = [0u8; 136];
        quantize_row_iq4_xs(&x, &mut out, None);
        assert_eq!(&out[..2], &[0x00, 0x80]);
        // Every 6-bit scale is l + 32 = 32: low nibbles 0, high bits 2.
        assert_eq!(&out[2..4], &0xaaaau16.to_le_bytes());
        assert!(out[4..8].iter().all(|&b| b == 0));
        assert!(out[8..].iter().all(|&b| b == 0x88));
    }
}
