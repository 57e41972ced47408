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
//!
//! Sixteen trials of 32 nearest-level lookups per group make this the costliest search of
//! all the quantizers, so it runs for sixteen groups at once (those of two `IQ4_XS`
//! super-blocks, or sixteen `IQ4_NL` blocks) in vector lanes, with a branch-free lookup, and
//! compiles for AVX-512, AVX2 and portable code (see `super::lanes`). The one-group code
//! it replaces stays as the reference it is tested against, and for `IQ4_NL` blocks that
//! an importance matrix shorter than the row covers only in part.

#![allow(
    clippy::inline_always,
    reason = "the kernels here are inlined into each instruction-set build of their callers, \
              so that they are compiled for it"
)]

use super::lanes::{self, row_builds, transpose, untranspose_levels, Lanes};
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
/// Bytes per `IQ4_NL` block.
const NL_SIZE: usize = 18;
/// Bytes per `IQ4_XS` super-block.
const XS_SIZE: usize = 136;

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

/// One `IQ4_NL` block (18 bytes: f16 scale, 16 bytes of nibbles), one group at a time.
fn nl_block_reference(x: &[f32], qw: Option<&[f32]>, block: &mut [u8]) {
    let mut weight = [0.0f32; GROUP];
    let mut levels = [0u8; GROUP];
    let s2 = if qw.is_some() { sigma2(x) } else { 0.0 };
    group_weights(x, qw, s2, &mut weight);
    let d = group_scale(x, &weight);
    block[..2].copy_from_slice(&fp16_bytes(d));
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    assign(x, id, &mut levels);
    pack_group(&levels, &mut block[2..]);
}

/// `IQ4_NL` one block at a time: the reference for the lane version.
#[cfg(test)]
fn nl_row_reference(src: &[f32], dst: &mut [u8], imatrix: Option<&[f32]>) {
    for (ib, (x, block)) in src
        .chunks_exact(GROUP)
        .zip(dst.chunks_exact_mut(NL_SIZE))
        .enumerate()
    {
        let qw = imatrix.and_then(|w| w.get(ib * GROUP..(ib + 1) * GROUP));
        nl_block_reference(x, qw, block);
    }
}

/// Writes the f16 super-block scale and the eight 6-bit group scales of an `IQ4_XS`
/// super-block from its group scales; returns the inverse scale each group's values are
/// quantized with.
#[inline]
fn finish_xs(scales: &[f32], block: &mut [u8]) -> [f32; SUPER / GROUP] {
    let (mut max_scale, mut amax_scale) = (0.0f32, 0.0f32);
    for &scale in scales {
        if scale.abs() > amax_scale {
            amax_scale = scale.abs();
            max_scale = scale;
        }
    }
    let d = -max_scale / 32.0;
    block[..2].copy_from_slice(&fp16_bytes(d));
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    let (mut scales_h, mut scales_l) = (0u16, [0u8; 4]);
    let mut inverse = [0.0f32; SUPER / GROUP];
    for (ib, (&scale, idl)) in scales.iter().zip(&mut inverse).enumerate() {
        let l = nearest_int(id * scale).clamp(-32, 31);
        let dl = d * l as f32;
        *idl = if dl == 0.0 { 0.0 } else { 1.0 / dl };
        let l = (l + 32) as u8;
        scales_l[ib / 2] |= (l & 0x0f) << (4 * (ib % 2));
        scales_h |= u16::from(l >> 4) << (2 * ib);
    }
    block[2..4].copy_from_slice(&scales_h.to_le_bytes());
    block[4..8].copy_from_slice(&scales_l);
    inverse
}

/// One `IQ4_XS` super-block, one group at a time.
#[cfg(test)]
fn xs_block_reference(x: &[f32], qw: Option<&[f32]>, block: &mut [u8]) {
    let mut weight = [0.0f32; GROUP];
    let mut scales = [0.0f32; SUPER / GROUP];
    let mut levels = [0u8; GROUP];
    let s2 = if qw.is_some() { sigma2(x) } else { 0.0 };
    for (ib, (xb, scale)) in x.chunks_exact(GROUP).zip(&mut scales).enumerate() {
        let w = qw.map(|qw| &qw[ib * GROUP..(ib + 1) * GROUP]);
        group_weights(xb, w, s2, &mut weight);
        *scale = group_scale(xb, &weight);
    }
    let inverse = finish_xs(&scales, block);
    for (ib, (xb, &idl)) in x.chunks_exact(GROUP).zip(&inverse).enumerate() {
        assign(xb, idl, &mut levels);
        pack_group(&levels, &mut block[8 + 16 * ib..8 + 16 * (ib + 1)]);
    }
}

/// `IQ4_XS` one group at a time: the reference for the lane version.
#[cfg(test)]
fn xs_row_reference(src: &[f32], dst: &mut [u8], imatrix: Option<&[f32]>) {
    for (ibl, (x, block)) in src
        .chunks_exact(SUPER)
        .zip(dst.chunks_exact_mut(XS_SIZE))
        .enumerate()
    {
        let qw = imatrix.and_then(|w| w.get(ibl * SUPER..(ibl + 1) * SUPER));
        xs_block_reference(x, qw, block);
    }
}

// ------------------------------------------------------------------------------- lanes
//
// The searches of sixteen groups side by side: values transposed to `x[i][g]` (see
// `super::lanes`), every step a loop over the groups, every branch of the reference a
// per-group selection. Each group sees the f32 operations of the reference, in its order.

/// Groups searched side by side: a 512-bit vector of f32, two of 256 bits.
const LANES: usize = 16;
/// `IQ4_XS` super-blocks searched side by side.
const XS_STEP: usize = LANES * GROUP / SUPER;

/// Lowest whole number [`CANDIDATES`] covers: one below the first level.
const FLOOR_MIN: i32 = KVALUES_IQ4NL[0] as i32 - 1;
/// Highest whole number [`CANDIDATES`] covers: the last level.
const FLOOR_MAX: i32 = KVALUES_IQ4NL[15] as i32;

/// For each whole number `f` in `FLOOR_MIN..=FLOOR_MAX` (at `f - FLOOR_MIN`), the two
/// levels [`best_index`] chooses between for any `x` with `floor(x) = f`, packed as
/// `L[hi - 1] + 128 | (L[hi] + 128) << 8 | hi << 16`, where `hi` is the number of levels
/// `<= f` (the same as `<= x`, the levels being whole) limited to `1..=15`.
const CANDIDATES: [u32; 256] = {
    let mut out = [0u32; 256];
    let mut f = FLOOR_MIN;
    while f <= FLOOR_MAX {
        let mut hi = 0;
        while hi < 16 && KVALUES_IQ4NL[hi] as i32 <= f {
            hi += 1;
        }
        let hi = if hi < 1 {
            1
        } else if hi > 15 {
            15
        } else {
            hi
        };
        let lower = (KVALUES_IQ4NL[hi - 1] as i32 + 128) as u32;
        let upper = (KVALUES_IQ4NL[hi] as i32 + 128) as u32;
        out[(f - FLOOR_MIN) as usize] = lower | upper << 8 | (hi as u32) << 16;
        f += 1;
    }
    out
};

/// [`best_index`] for every lane without a branch: the nearest level and its index.
///
/// Below the first level every `x` has the candidates of `FLOOR_MIN` and is nearer the
/// first; at or above the last, and for NaN, it has those of `FLOOR_MAX` and the
/// comparison fails, as in the reference. In between, `floor(x)` finds `hi`, then the
/// reference's own comparison decides.
#[inline(always)]
fn nearest_levels<const G: usize>(v: &[f32; G]) -> ([f32; G], [i32; G]) {
    let mut level = [0.0f32; G];
    let mut index = [0i32; G];
    for g in 0..G {
        let x = v[g];
        // Into `FLOOR_MIN..=FLOOR_MAX`; NaN fails both tests and ends at the top.
        let low = if x < FLOOR_MIN as f32 {
            FLOOR_MIN as f32
        } else {
            x
        };
        let c = if low < FLOOR_MAX as f32 {
            low
        } else {
            FLOOR_MAX as f32
        };
        // SAFETY: `c` is a number in `FLOOR_MIN..=FLOOR_MAX`, well inside the i32 range.
        let t: i32 = unsafe { c.to_int_unchecked() };
        let floor = t - i32::from(c < t as f32);
        let packed = CANDIDATES[((floor - FLOOR_MIN) & 0xff) as usize];
        let lower = ((packed & 0xff) as i32 - 128) as f32;
        let upper = ((packed >> 8 & 0xff) as i32 - 128) as f32;
        let take_lower = x - lower < upper - x;
        level[g] = if take_lower { lower } else { upper };
        index[g] = (packed >> 16) as i32 - i32::from(take_lower);
    }
    (level, index)
}

/// [`fit`] of every group for its inverse scale `id`.
#[inline(always)]
fn fit_lanes<const G: usize>(
    x: &Lanes<G, GROUP>,
    weight: &Lanes<G, GROUP>,
    id: &[f32; G],
) -> ([f32; G], [f32; G]) {
    let (mut sumqx, mut sumq2) = ([0.0f32; G], [0.0f32; G]);
    for (xr, wr) in x.iter().zip(weight) {
        let mut v = [0.0f32; G];
        for g in 0..G {
            v[g] = id[g] * xr[g];
        }
        let (q, _) = nearest_levels(&v);
        for g in 0..G {
            sumqx[g] += wr[g] * q[g] * xr[g];
            sumq2[g] += wr[g] * q[g] * q[g];
        }
    }
    (sumqx, sumq2)
}

/// [`group_scale`] of every group.
#[inline(always)]
fn group_scales<const G: usize>(x: &Lanes<G, GROUP>, weight: &Lanes<G, GROUP>) -> [f32; G] {
    let (mut amax, mut max) = ([0.0f32; G], [0.0f32; G]);
    for xr in x {
        for g in 0..G {
            let larger = xr[g].abs() > amax[g];
            amax[g] = if larger { xr[g].abs() } else { amax[g] };
            max[g] = if larger { xr[g] } else { max[g] };
        }
    }
    let mut id = [0.0f32; G];
    for g in 0..G {
        let first = -max[g] / LEVELS[0];
        id[g] = 1.0 / first;
    }
    let (sumqx, sumq2) = fit_lanes(x, weight, &id);
    let (mut d, mut best) = ([0.0f32; G], [0.0f32; G]);
    for g in 0..G {
        d[g] = if sumq2[g] > 0.0 {
            sumqx[g] / sumq2[g]
        } else {
            0.0
        };
        best[g] = d[g] * sumqx[g];
    }
    for itry in -NTRY..=NTRY {
        let numerator = (itry + i32::from(KVALUES_IQ4NL[0])) as f32;
        for g in 0..G {
            id[g] = numerator / max[g];
        }
        let (sumqx, sumq2) = fit_lanes(x, weight, &id);
        for g in 0..G {
            let better = sumq2[g] > 0.0 && sumqx[g] * sumqx[g] > best[g] * sumq2[g];
            let this_d = sumqx[g] / sumq2[g];
            let this_best = this_d * sumqx[g];
            d[g] = if better { this_d } else { d[g] };
            best[g] = if better { this_best } else { best[g] };
        }
    }
    for g in 0..G {
        d[g] = if amax[g] < GROUP_MAX_EPS { 0.0 } else { d[g] };
    }
    d
}

/// [`group_weights`] of every group: `x²`, or `qw · sqrt(σ² + x²)` with group `g`'s
/// `sigma2[g]`.
#[inline(always)]
fn weights_lanes<const G: usize>(
    x: &Lanes<G, GROUP>,
    qw: Option<&Lanes<G, GROUP>>,
    sigma2: &[f32; G],
) -> Lanes<G, GROUP> {
    let mut weight = [[0.0f32; G]; GROUP];
    match qw {
        Some(qw) => {
            for ((wr, xr), qr) in weight.iter_mut().zip(x).zip(qw) {
                for g in 0..G {
                    wr[g] = qr[g] * (sigma2[g] + xr[g] * xr[g]).sqrt();
                }
            }
        }
        None => {
            for (wr, xr) in weight.iter_mut().zip(x) {
                for g in 0..G {
                    wr[g] = xr[g] * xr[g];
                }
            }
        }
    }
    weight
}

/// [`assign`] for every group with its inverse scale `id[g]`, then the level indices of
/// group `g` at `levels[32·g..32·(g + 1)]`.
#[inline(always)]
fn assign_lanes<const G: usize>(x: &Lanes<G, GROUP>, id: &[f32; G], levels: &mut [u8]) {
    let mut index = [[0i32; G]; GROUP];
    for (ir, xr) in index.iter_mut().zip(x) {
        let mut v = [0.0f32; G];
        for g in 0..G {
            v[g] = id[g] * xr[g];
        }
        (_, *ir) = nearest_levels(&v);
    }
    untranspose_levels(&index, levels);
}

/// Up to [`LANES`] `IQ4_NL` blocks at once (`x` their weights, `qw` the importance weights
/// of the same, `out` their bytes); missing groups are searched as zeros and dropped.
#[inline(always)]
fn nl_blocks(x: &[f32], qw: Option<&[f32]>, out: &mut [u8]) {
    let xt = transpose::<LANES, GROUP>(x);
    let weight = match qw {
        Some(qw) => {
            let sums = lanes::sum_squares(&xt);
            let mut s2 = [0.0f32; LANES];
            for g in 0..LANES {
                s2[g] = sums[g] * (2.0 / GROUP as f32);
            }
            weights_lanes(&xt, Some(&transpose::<LANES, GROUP>(qw)), &s2)
        }
        None => weights_lanes(&xt, None, &[0.0; LANES]),
    };
    let d = group_scales(&xt, &weight);
    let mut id = [0.0f32; LANES];
    for g in 0..LANES {
        id[g] = if d[g] == 0.0 { 0.0 } else { 1.0 / d[g] };
    }
    let mut levels = [0u8; LANES * GROUP];
    assign_lanes(&xt, &id, &mut levels);
    for ((block, group), &d) in out
        .chunks_exact_mut(NL_SIZE)
        .zip(levels.chunks_exact(GROUP))
        .zip(&d)
    {
        block[..2].copy_from_slice(&fp16_bytes(d));
        pack_group(group, &mut block[2..]);
    }
}

/// One or two (up to [`XS_STEP`]) `IQ4_XS` super-blocks, their groups side by side (`x`
/// their weights, `qw` the importance weights of the same, `out` their bytes); a missing
/// second one is searched as zeros and dropped.
#[inline(always)]
fn xs_blocks(x: &[f32], qw: Option<&[f32]>, out: &mut [u8]) {
    const PER_BLOCK: usize = SUPER / GROUP;
    let xt = transpose::<LANES, GROUP>(x);
    let weight = match qw {
        Some(qw) => {
            let mut s2 = [0.0f32; LANES];
            for (lanes, xb) in s2.chunks_exact_mut(PER_BLOCK).zip(x.chunks_exact(SUPER)) {
                lanes.fill(sigma2(xb));
            }
            weights_lanes(&xt, Some(&transpose::<LANES, GROUP>(qw)), &s2)
        }
        None => weights_lanes(&xt, None, &[0.0; LANES]),
    };
    let scales = group_scales(&xt, &weight);
    let mut inverse = [0.0f32; LANES];
    for ((block, scales), inverse) in out
        .chunks_exact_mut(XS_SIZE)
        .zip(scales.chunks_exact(PER_BLOCK))
        .zip(inverse.chunks_exact_mut(PER_BLOCK))
    {
        inverse.copy_from_slice(&finish_xs(scales, block));
    }
    let mut levels = [0u8; LANES * GROUP];
    assign_lanes(&xt, &inverse, &mut levels);
    for (block, levels) in out
        .chunks_exact_mut(XS_SIZE)
        .zip(levels.chunks_exact(SUPER))
    {
        for (group, qs) in levels
            .chunks_exact(GROUP)
            .zip(block[8..].chunks_exact_mut(16))
        {
            pack_group(group, qs);
        }
    }
}

row_builds!(
    /// `IQ4_NL` (18-byte blocks of 32 weights). `imatrix`, if given, holds one weight per
    /// element of `src`.
    pub quantize_row_iq4_nl,
    nl_row,
    nl_avx2,
    nl_avx512
);

#[inline(always)]
fn nl_row(src: &[f32], dst: &mut [u8], imatrix: Option<&[f32]>) {
    let blocks = (src.len() / GROUP).min(dst.len() / NL_SIZE);
    // Plain loops, not closures: a closure would be compiled apart from this function's
    // instruction set.
    let mut first = 0;
    while first < blocks {
        let end = (first + LANES).min(blocks);
        let x = &src[first * GROUP..end * GROUP];
        let out = &mut dst[first * NL_SIZE..end * NL_SIZE];
        match imatrix.map(|w| w.get(first * GROUP..end * GROUP)) {
            None => nl_blocks(x, None, out),
            Some(Some(qw)) => nl_blocks(x, Some(qw), out),
            // An importance matrix shorter than the row weights only the blocks it covers.
            Some(None) => {
                for (ib, (xb, block)) in x
                    .chunks_exact(GROUP)
                    .zip(out.chunks_exact_mut(NL_SIZE))
                    .enumerate()
                {
                    let at = (first + ib) * GROUP;
                    let qw = imatrix.and_then(|w| w.get(at..at + GROUP));
                    nl_block_reference(xb, qw, block);
                }
            }
        }
        first = end;
    }
}

row_builds!(
    /// `IQ4_XS` (136-byte super-blocks of 256 weights: f16 `d`, the high 2 bits of eight
    /// 6-bit scales, their low 4 bits, then 128 bytes of nibbles).
    pub quantize_row_iq4_xs,
    xs_row,
    xs_avx2,
    xs_avx512
);

#[inline(always)]
fn xs_row(src: &[f32], dst: &mut [u8], imatrix: Option<&[f32]>) {
    let blocks = (src.len() / SUPER).min(dst.len() / XS_SIZE);
    let mut first = 0;
    while first < blocks {
        let end = (first + XS_STEP).min(blocks);
        let x = &src[first * SUPER..end * SUPER];
        let out = &mut dst[first * XS_SIZE..end * XS_SIZE];
        match imatrix.map(|w| w.get(first * SUPER..end * SUPER)) {
            None => xs_blocks(x, None, out),
            Some(Some(qw)) => xs_blocks(x, Some(qw), out),
            // An importance matrix shorter than the row weights only the super-blocks
            // it covers.
            Some(None) => {
                for (ibl, (xb, block)) in x
                    .chunks_exact(SUPER)
                    .zip(out.chunks_exact_mut(XS_SIZE))
                    .enumerate()
                {
                    let at = (first + ibl) * SUPER;
                    let qw = imatrix.and_then(|w| w.get(at..at + SUPER));
                    xs_blocks(xb, qw, block);
                }
            }
        }
        first = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    /// Floats at and around every place [`best_index`] changes its mind: the levels,
    /// the midpoints between neighbours, zero and the ends, a few ulps either way.
    fn edge_values() -> Vec<f32> {
        let mut centres: Vec<f32> = LEVELS.to_vec();
        centres.extend(LEVELS.windows(2).map(|p| f32::midpoint(p[0], p[1])));
        // The ends of the candidate table, and whole numbers, where the floor changes.
        centres.extend([
            FLOOR_MIN as f32,
            FLOOR_MAX as f32,
            0.0,
            0.5,
            1e-30,
            1e30,
            1e38,
        ]);
        centres.extend((-130..=130).map(|i| i as f32));
        let mut out = vec![
            f32::NAN,
            -f32::NAN,
            f32::from_bits(0x7f80_0001),
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
        ];
        for c in centres {
            for centre in [c, -c] {
                let mut up = centre;
                let mut down = centre;
                for _ in 0..4 {
                    out.extend([up, down]);
                    up = up.next_up();
                    down = down.next_down();
                }
            }
        }
        out
    }

    #[test]
    fn nearest_levels_equal_best_index_at_every_edge() {
        let values = edge_values();
        for chunk in values.chunks(LANES) {
            let mut v = [0.0f32; LANES];
            v[..chunk.len()].copy_from_slice(chunk);
            let (level, index) = nearest_levels(&v);
            for g in 0..LANES {
                let want = best_index(v[g]);
                assert_eq!(index[g], want as i32, "{:e}", v[g]);
                assert_eq!(level[g].to_bits(), LEVELS[want].to_bits(), "{:e}", v[g]);
            }
        }
        // Every quarter step across the levels' range.
        let mut x = -140.0f32;
        while x < 140.0 {
            let (_, index) = nearest_levels(&[x]);
            assert_eq!(index[0], best_index(x) as i32, "{x}");
            x += 0.25;
        }
        // Floats of every exponent, both signs.
        for bits in (0..=u32::MAX).step_by(4093) {
            let x = f32::from_bits(bits);
            let (level, index) = nearest_levels(&[x]);
            let want = best_index(x);
            assert_eq!(index[0], want as i32, "{x:e}");
            assert_eq!(level[0].to_bits(), LEVELS[want].to_bits(), "{x:e}");
        }
    }

    /// Values of every kind, ordinary ones most often.
    fn any_value() -> impl Strategy<Value = f32> {
        prop_oneof![
            8 => -10.0f32..10.0,
            1 => Just(0.0f32),
            1 => (-3i32..4).prop_map(|i| i as f32 * 0.25),
            1 => -1e-14f32..1e-14,
            1 => any::<u32>().prop_map(f32::from_bits),
        ]
    }

    /// A row of `len` weights, mostly ordinary, and importance weights for it.
    fn row_and_imatrix(len: usize) -> impl Strategy<Value = (Vec<f32>, Option<Vec<f32>>)> {
        (
            proptest::collection::vec(any_value(), len),
            proptest::option::of(proptest::collection::vec(
                prop_oneof![8 => 0.0f32..4.0, 1 => Just(0.0f32), 1 => any_value()],
                len,
            )),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn nearest_levels_equal_best_index(bits in proptest::array::uniform16(any::<u32>())) {
            let v = bits.map(f32::from_bits);
            let (level, index) = nearest_levels(&v);
            for g in 0..LANES {
                let want = best_index(v[g]);
                prop_assert_eq!(index[g], want as i32);
                prop_assert_eq!(level[g].to_bits(), LEVELS[want].to_bits());
            }
        }

        #[test]
        fn nl_lanes_equal_the_reference(
            (x, w) in (1usize..=40).prop_flat_map(|blocks| row_and_imatrix(blocks * GROUP)),
        ) {
            let blocks = x.len() / GROUP;
            let mut want = vec![0u8; blocks * NL_SIZE];
            let mut got = vec![1u8; blocks * NL_SIZE];
            nl_row_reference(&x, &mut want, w.as_deref());
            nl_row(&x, &mut got, w.as_deref());
            prop_assert_eq!(got, want);
        }

        #[test]
        fn xs_lanes_equal_the_reference(
            (x, w) in (1usize..=5).prop_flat_map(|blocks| row_and_imatrix(blocks * SUPER)),
        ) {
            let blocks = x.len() / SUPER;
            let mut want = vec![0u8; blocks * XS_SIZE];
            let mut got = vec![1u8; blocks * XS_SIZE];
            xs_row_reference(&x, &mut want, w.as_deref());
            xs_row(&x, &mut got, w.as_deref());
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn a_short_importance_matrix_weights_only_the_blocks_it_covers() {
        let x: Vec<f32> = (0..11 * GROUP)
            .map(|i| ((i * 37) % 101) as f32 - 50.0)
            .collect();
        let w: Vec<f32> = (0..9 * GROUP + 5).map(|i| (i % 7) as f32 * 0.5).collect();
        let mut want = vec![0u8; 11 * NL_SIZE];
        let mut got = vec![1u8; 11 * NL_SIZE];
        nl_row_reference(&x, &mut want, Some(&w));
        nl_row(&x, &mut got, Some(&w));
        assert_eq!(got, want);
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

#[cfg(all(test, target_arch = "x86_64"))]
mod build_tests {
    use super::*;
    use crate::quant::dispatch::Isa;
    use proptest::prelude::*;

    type Row = fn(&[f32], &mut [u8], Option<&[f32]>);
    type Build = unsafe fn(&[f32], &mut [u8], Option<&[f32]>);

    proptest! {
        #[test]
        fn vector_builds_equal_the_portable_one(
            mut x in proptest::collection::vec(-100.0f32..100.0, 3 * SUPER + 3 * GROUP),
            special in proptest::collection::vec((0..3 * SUPER + 3 * GROUP, any::<u32>()), 0..4),
            w in proptest::collection::vec(0.0f32..4.0, 3 * SUPER + 3 * GROUP),
            weighted in any::<bool>(),
        ) {
            // A few weights of any bits: NaN, infinities, huge or tiny magnitudes.
            for (i, bits) in special {
                x[i] = f32::from_bits(bits);
            }
            let w = weighted.then_some(w.as_slice());
            let builds: [(Row, Build, Build, usize, usize); 2] = [
                (nl_row, nl_avx2, nl_avx512, GROUP, NL_SIZE),
                (xs_row, xs_avx2, xs_avx512, SUPER, XS_SIZE),
            ];
            for (portable, avx2, avx512, block, size) in builds {
                let blocks = x.len() / block;
                let mut want = vec![0u8; blocks * size];
                portable(&x, &mut want, w);
                let check = |got: &[u8]| {
                    prop_assert_eq!(got, &want[..]);
                    Ok(())
                };
                if Isa::Avx2.is_available() {
                    let mut got = vec![1u8; blocks * size];
                    // SAFETY: AVX2 was just detected.
                    unsafe { avx2(&x, &mut got, w) };
                    check(&got)?;
                }
                if Isa::Avx512.is_available() {
                    let mut got = vec![2u8; blocks * size];
                    // SAFETY: AVX-512 F/BW/VL and AVX2 were just detected.
                    unsafe { avx512(&x, &mut got, w) };
                    check(&got)?;
                }
            }
        }
    }
}
