//! Quantizers for the k-quants `Q2_K`, `Q3_K`, `Q4_K`, `Q5_K` and `Q6_K`, byte-identical with
//! ggml's `ggml_quantize_chunk`.
//!
//! Without an importance matrix each type follows ggml's `quantize_row_*_K_ref`; with one,
//! ggml's `quantize_row_*_K_impl`, which weights every value by `w · sqrt(σ² + x²)` (`σ²`
//! the block's mean square, doubled for `Q3_K`, `Q4_K` and `Q5_K`) and chooses the
//! super-block scales by a weighted search too. Both paths first fit every sub-block, then
//! quantize the sub-block scales to 4 or 6 bits under f16 super-block scales, and finally
//! requantize the values against the scales a decoder will actually see.
//!
//! Each function takes one row: `src` whole 256-value super-blocks, `dst` exactly their
//! bytes, `imatrix` one weight per value. Only the blocks present in all three are written
//! (the callers check lengths). Any f32 input is accepted and nothing here panics or
//! allocates; bytes that derive from a NaN follow the policy in [`super::search`].

#![allow(
    clippy::inline_always,
    reason = "the kernels here are inlined into each instruction-set build of their callers, \
              so that they are compiled for it"
)]

use super::lanes::{
    self, affine_search, q3_search, qx_search, row_builds, transpose, untranspose_levels, zip_map,
    Lanes, TrialLevel,
};
use super::search::{
    f16_bits, make_qp_quants, make_qx_quants, nearest_int, AffineSearch, GROUP_MAX_EPS,
};
use crate::quant::blocks::{q2_k, q3_k, q4_k, q5_k, q6_k, QK_K};
use crate::quant::scalar::kquants::k4_scale_min;
use half::f16;

/// The value a decoder reads from f16 `bits`.
#[inline]
fn f16_value(bits: u16) -> f32 {
    f16::from_bits(bits).to_f32()
}

/// Stores f16 `bits` little-endian at `at`.
#[inline]
fn put_f16(out: &mut [u8], at: usize, bits: u16) {
    out[at..at + 2].copy_from_slice(&bits.to_le_bytes());
}

/// The super-blocks of a row present in `src`, `dst` (blocks of `size` bytes) and the
/// importance matrix, if any, each with its weights. The caller's loop body, not a
/// closure, does the work, so that it is compiled for the caller's instruction set.
#[inline(always)]
fn super_blocks<'a>(
    src: &'a [f32],
    dst: &'a mut [u8],
    imatrix: Option<&'a [f32]>,
    size: usize,
) -> impl Iterator<Item = (&'a [f32], Option<&'a [f32]>, &'a mut [u8])> {
    let weighted = imatrix.map_or(usize::MAX, |w| w.len() / QK_K);
    let weights = (0..).map(move |i| imatrix.map(|w| &w[i * QK_K..(i + 1) * QK_K]));
    src.chunks_exact(QK_K)
        .zip(dst.chunks_exact_mut(size))
        .take(weighted)
        .zip(weights)
        .map(|((x, out), w)| (x, w, out))
}

/// `Σ x²` of a block, summed in order.
#[inline]
fn sum_squares(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |s, &v| s + v * v)
}

/// The values of `G` groups of `N` transposed, their importance weights
/// `qw · sqrt(sigma2 + x²)` (transposed too) and each group's total weight.
#[inline(always)]
fn importance_lanes<const G: usize, const N: usize>(
    x: &[f32],
    qw: &[f32],
    sigma2: f32,
) -> (Lanes<G, N>, Lanes<G, N>, [f32; G]) {
    let xt = transpose::<G, N>(x);
    let qwt = transpose::<G, N>(qw);
    let mut weights: Lanes<G, N> = [[0.0; G]; N];
    for ((wr, qr), xr) in weights.iter_mut().zip(&qwt).zip(&xt) {
        *wr = zip_map(*qr, *xr, |q, v| q * (sigma2 + v * v).sqrt());
    }
    let total = lanes::sums(&weights);
    (xt, weights, total)
}

/// Packs 2-bit levels (`Q2_K` and the low bits of `Q3_K`): each 128 values fill 32 bytes,
/// value `l + 32·k` in bits `2k` of byte `l`.
#[inline(always)]
fn pack_2bit(levels: &[u8; QK_K], qs: &mut [u8]) {
    for (half, q) in levels.chunks_exact(128).zip(qs.chunks_exact_mut(32)) {
        for (l, b) in q.iter_mut().enumerate() {
            let packed = u32::from(half[l])
                | u32::from(half[l + 32]) << 2
                | u32::from(half[l + 64]) << 4
                | u32::from(half[l + 96]) << 6;
            *b = packed as u8;
        }
    }
}

// ---------------------------------------------------------------------------------- Q2_K

/// The search ggml's `Q2_K` reference runs per 16 values.
const Q2_K_REF_SEARCH: AffineSearch = AffineSearch {
    nmax: 3,
    rmin: -0.5,
    rdelta: 0.1,
    nstep: 15,
    use_mad: true,
};

/// The search every importance-weighted affine quantizer runs per sub-block.
const fn weighted_search(nmax: i32) -> AffineSearch {
    AffineSearch {
        nmax,
        rmin: -0.9,
        rdelta: 0.05,
        nstep: 36,
        use_mad: false,
    }
}

/// Writes a `Q2_K` block from its packed sub-block scales and f16 scales: requantizes each
/// sub-block whose scale is not zero, then packs the levels.
#[inline(always)]
fn finish_q2_k(
    x: &[f32],
    levels: &mut [u8; QK_K],
    scales: &[u8; 16],
    d: u16,
    dmin: u16,
    out: &mut [u8],
) {
    let (dv, mv) = (f16_value(d), f16_value(dmin));
    for (j, &sc) in scales.iter().enumerate() {
        let dl = dv * f32::from(sc & 0x0F);
        if dl == 0.0 {
            continue;
        }
        let ml = mv * f32::from(sc >> 4);
        for (l, &xi) in levels[16 * j..16 * j + 16].iter_mut().zip(&x[16 * j..]) {
            *l = nearest_int((xi + ml) / dl).clamp(0, 3) as u8;
        }
    }
    out[q2_k::SCALES..q2_k::SCALES + 16].copy_from_slice(scales);
    pack_2bit(levels, &mut out[q2_k::QS..q2_k::QS + 64]);
    put_f16(out, q2_k::D, d);
    put_f16(out, q2_k::DMIN, dmin);
}

#[inline(always)]
fn q2_k_block_ref(x: &[f32], out: &mut [u8]) {
    let xt = transpose::<16, 16>(x);
    let weights = xt.map(|row| row.map(f32::abs));
    let mut lanes = [[0i32; 16]; 16];
    let (scales, mins) =
        affine_search(&xt, &weights, &mut lanes, Q2_K_REF_SEARCH, TrialLevel::Qkx2);
    let mut levels = [0u8; QK_K];
    untranspose_levels(&lanes, &mut levels);
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for (&scale, &min) in scales.iter().zip(&mins) {
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }
    let mut packed = [0u8; 16];
    let d = if max_scale > 0.0 {
        let iscale = 15.0 / max_scale;
        for (p, &s) in packed.iter_mut().zip(&scales) {
            *p = nearest_int(iscale * s) as u8;
        }
        f16_bits(max_scale / 15.0)
    } else {
        f16_bits(0.0)
    };
    let dmin = if max_min > 0.0 {
        let iscale = 15.0 / max_min;
        for (p, &m) in packed.iter_mut().zip(&mins) {
            *p |= (nearest_int(iscale * m) << 4) as u8;
        }
        f16_bits(max_min / 15.0)
    } else {
        f16_bits(0.0)
    };
    finish_q2_k(x, &mut levels, &packed, d, dmin, out);
}

#[inline(always)]
fn q2_k_block_weighted(x: &[f32], qw: &[f32], out: &mut [u8]) {
    let sigma2 = sum_squares(x) / QK_K as f32;
    let (xt, weights, sw) = importance_lanes::<16, 16>(x, qw, sigma2);
    let mut lanes = [[0i32; 16]; 16];
    let (scales, mins) = affine_search(
        &xt,
        &weights,
        &mut lanes,
        weighted_search(3),
        TrialLevel::Qkx3,
    );
    let mut levels = [0u8; QK_K];
    untranspose_levels(&lanes, &mut levels);
    let (mut ls, mut lm) = ([0u8; 16], [0u8; 16]);
    let d = f16_bits(make_qp_quants(&scales, 15, &mut ls, &sw));
    let dmin = f16_bits(make_qp_quants(&mins, 15, &mut lm, &sw));
    let packed: [u8; 16] = std::array::from_fn(|j| ls[j] | (u32::from(lm[j]) << 4) as u8);
    finish_q2_k(x, &mut levels, &packed, d, dmin, out);
}

row_builds!(
    /// Quantizes one row to `Q2_K` (ggml's `quantize_row_q2_K_ref`, or
    /// `quantize_row_q2_K_impl` with an importance matrix).
    pub quantize_row_q2_k,
    q2_k_row,
    q2_k_avx2,
    q2_k_avx512
);

#[inline(always)]
fn q2_k_row(src: &[f32], dst: &mut [u8], imatrix: Option<&[f32]>) {
    for (x, w, out) in super_blocks(src, dst, imatrix, q2_k::SIZE) {
        match w {
            None => q2_k_block_ref(x, out),
            Some(w) => q2_k_block_weighted(x, w, out),
        }
    }
}

// ---------------------------------------------------------------------------------- Q3_K

/// Packs sixteen 6-bit `Q3_K` scales (already biased by 32) into 12 bytes: low nibbles in
/// bytes 0..8, high bit pairs in 8..12.
fn pack_q3_k_scales(biased: &[i32; 16]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for (j, &l) in biased.iter().enumerate() {
        if j < 8 {
            s[j] = (l & 0x0F) as u8;
        } else {
            s[j - 8] |= ((l & 0x0F) << 4) as u8;
        }
        s[8 + j % 4] |= ((l >> 4) << (2 * (j / 4))) as u8;
    }
    s
}

/// Scale `j` of packed `Q3_K` scales, unbiased (-32..=31).
#[inline]
fn q3_k_scale(s: &[u8; 12], j: usize) -> i32 {
    let low = if j < 8 { s[j] & 0x0F } else { s[j - 8] >> 4 };
    let high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    i32::from(low | (high << 4)) - 32
}

/// Writes a `Q3_K` block from its packed scales and f16 scale: requantizes each sub-block
/// whose scale is not zero, splits off the high bits, packs the rest.
#[inline(always)]
fn finish_q3_k(x: &[f32], levels: &mut [u8; QK_K], scales: &[u8; 12], d: u16, out: &mut [u8]) {
    let dv = f16_value(d);
    for j in 0..16 {
        let dl = dv * q3_k_scale(scales, j) as f32;
        if dl == 0.0 {
            continue;
        }
        for (l, &xi) in levels[16 * j..16 * j + 16].iter_mut().zip(&x[16 * j..]) {
            *l = (nearest_int(xi / dl).clamp(-4, 3) + 4) as u8;
        }
    }
    // The high bit of value j goes to bit j / 32 of hmask byte j % 32.
    let hmask = &mut out[q3_k::HMASK..q3_k::HMASK + 32];
    hmask.fill(0);
    for (j, l) in levels.iter_mut().enumerate() {
        // Without a branch: which values have the bit is as random as the weights.
        let high = u8::from(*l > 3);
        hmask[j % 32] |= high << (j / 32);
        *l -= 4 * high;
    }
    pack_2bit(levels, &mut out[q3_k::QS..q3_k::QS + 64]);
    out[q3_k::SCALES..q3_k::SCALES + 12].copy_from_slice(scales);
    put_f16(out, q3_k::D, d);
}

#[inline(always)]
fn q3_k_block_ref(x: &[f32], out: &mut [u8]) {
    let mut lanes = [[0i32; 16]; 16];
    let scales = q3_search(&transpose::<16, 16>(x), 4, &mut lanes);
    let mut levels = [0u8; QK_K];
    untranspose_levels(&lanes, &mut levels);
    let (mut max_scale, mut amax) = (0.0f32, 0.0f32);
    for &s in &scales {
        if s.abs() > amax {
            amax = s.abs();
            max_scale = s;
        }
    }
    let (packed, d) = if max_scale == 0.0 {
        ([0u8; 12], f16_bits(0.0))
    } else {
        let iscale = -32.0 / max_scale;
        let biased: [i32; 16] = std::array::from_fn(|j| {
            let l = i32::from(nearest_int(iscale * scales[j]) as i8);
            l.clamp(-32, 31) + 32
        });
        (pack_q3_k_scales(&biased), f16_bits(1.0 / iscale))
    };
    finish_q3_k(x, &mut levels, &packed, d, out);
}

#[inline(always)]
fn q3_k_block_weighted(x: &[f32], qw: &[f32], out: &mut [u8]) {
    let sigma2 = 2.0 * sum_squares(x) / QK_K as f32;
    let (xt, weights, sw) = importance_lanes::<16, 16>(x, qw, sigma2);
    let mut lanes = [[0i32; 16]; 16];
    let scales = qx_search(&xt, &weights, 4, &mut lanes);
    let mut levels = [0u8; QK_K];
    untranspose_levels(&lanes, &mut levels);
    let mut ls = [0i8; 16];
    let d_block = make_qx_quants(&scales, 32, &mut ls, 1, Some(&sw));
    let biased: [i32; 16] = ls.map(i32::from);
    finish_q3_k(
        x,
        &mut levels,
        &pack_q3_k_scales(&biased),
        f16_bits(d_block),
        out,
    );
}

row_builds!(
    /// Quantizes one row to `Q3_K` (ggml's `quantize_row_q3_K_ref`, or
    /// `quantize_row_q3_K_impl` with an importance matrix).
    pub quantize_row_q3_k,
    q3_k_row,
    q3_k_avx2,
    q3_k_avx512
);

#[inline(always)]
fn q3_k_row(src: &[f32], dst: &mut [u8], imatrix: Option<&[f32]>) {
    for (x, w, out) in super_blocks(src, dst, imatrix, q3_k::SIZE) {
        match w {
            None => q3_k_block_ref(x, out),
            Some(w) => q3_k_block_weighted(x, w, out),
        }
    }
}

// ------------------------------------------------------------------------------ Q4_K, Q5_K

/// Packs eight 6-bit scales and mins the `Q4_K`/`Q5_K` way: the first four of each whole
/// in bytes 0..8, the last four as nibbles in 8..12 with their top two bits in the spare
/// bits of 0..8. Levels above 63 keep only the bits ggml keeps.
fn pack_k4_scales(ls: [u8; 8], lm: [u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..8 {
        let (sc, m) = (u32::from(ls[j]), u32::from(lm[j]));
        if j < 4 {
            s[j] = sc as u8;
            s[j + 4] = m as u8;
        } else {
            s[j + 4] = ((sc & 0x0F) | ((m & 0x0F) << 4)) as u8;
            s[j - 4] |= ((sc >> 4) << 6) as u8;
            s[j] |= ((m >> 4) << 6) as u8;
        }
    }
    s
}

/// Requantizes the sub-blocks of 32 of a `Q4_K`/`Q5_K` block against their decoded scales
/// and mins, leaving sub-blocks whose scale is zero as the search left them.
#[inline(always)]
fn requantize_k4(
    x: &[f32],
    levels: &mut [u8; QK_K],
    scales: &[u8; 12],
    d: u16,
    dmin: u16,
    nmax: i32,
) {
    let (dv, mv) = (f16_value(d), f16_value(dmin));
    for j in 0..8 {
        let (dl, ml) = k4_scale_min(dv, mv, scales, j);
        if dl == 0.0 {
            continue;
        }
        for (l, &xi) in levels[32 * j..32 * j + 32].iter_mut().zip(&x[32 * j..]) {
            *l = nearest_int((xi + ml) / dl).clamp(0, nmax) as u8;
        }
    }
}

/// The reference fit shared by `Q4_K` and `Q5_K`: per 32 values, weights `rms + |x|` and
/// an affine search; the largest scale and min set the f16 super-block scales, and each
/// sub-block's scale and min are rounded to 6 bits against them.
/// Returns the packed scales and the f16 `d`, `dmin`.
#[inline(always)]
fn k4_fit_ref(x: &[f32], levels: &mut [u8; QK_K], search: AffineSearch) -> ([u8; 12], u16, u16) {
    let xt = transpose::<8, 32>(x);
    let av_x = lanes::sum_squares(&xt).map(|s| (s / 32.0).sqrt());
    let weights = xt.map(|row| zip_map(av_x, row, |av, v| av + v.abs()));
    let mut lanes = [[0i32; 8]; 32];
    let (scales, mins) = affine_search(&xt, &weights, &mut lanes, search, TrialLevel::Qkx2);
    untranspose_levels(&lanes, levels);
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for (&scale, &min) in scales.iter().zip(&mins) {
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let ls: [u8; 8] = std::array::from_fn(|j| (nearest_int(inv_scale * scales[j]) as u8).min(63));
    let lm: [u8; 8] = std::array::from_fn(|j| (nearest_int(inv_min * mins[j]) as u8).min(63));
    (
        pack_k4_scales(ls, lm),
        f16_bits(max_scale / 63.0),
        f16_bits(max_min / 63.0),
    )
}

/// The importance-weighted fit shared by `Q4_K` and `Q5_K`: per 32 values an affine search
/// under importance weights, then weighted 6-bit searches over the scales and over the
/// mins, weighted by each sub-block's total weight. `cap` applies ggml's `MIN(63, ·)` where
/// it does (`Q5_K` only).
#[inline(always)]
fn k4_fit_weighted(
    x: &[f32],
    qw: &[f32],
    levels: &mut [u8; QK_K],
    nmax: i32,
    cap: bool,
) -> ([u8; 12], u16, u16) {
    let sigma2 = 2.0 * sum_squares(x) / QK_K as f32;
    let (xt, weights, sw) = importance_lanes::<8, 32>(x, qw, sigma2);
    let mut lanes = [[0i32; 8]; 32];
    let search = weighted_search(nmax);
    let (scales, mins) = affine_search(&xt, &weights, &mut lanes, search, TrialLevel::Qkx3);
    untranspose_levels(&lanes, levels);
    let (mut ls, mut lm) = ([0u8; 8], [0u8; 8]);
    let d_block = make_qp_quants(&scales, 63, &mut ls, &sw);
    let m_block = make_qp_quants(&mins, 63, &mut lm, &sw);
    if cap {
        ls = ls.map(|l| l.min(63));
        lm = lm.map(|l| l.min(63));
    }
    (pack_k4_scales(ls, lm), f16_bits(d_block), f16_bits(m_block))
}

/// Writes a `Q4_K` block: scales, requantized nibbles (each 64 values fill 32 bytes, low
/// nibbles first).
#[inline(always)]
fn finish_q4_k(x: &[f32], levels: &mut [u8; QK_K], fit: ([u8; 12], u16, u16), out: &mut [u8]) {
    let (scales, d, dmin) = fit;
    requantize_k4(x, levels, &scales, d, dmin, 15);
    put_f16(out, q4_k::D, d);
    put_f16(out, q4_k::DMIN, dmin);
    out[q4_k::SCALES..q4_k::SCALES + 12].copy_from_slice(&scales);
    let qs = &mut out[q4_k::QS..q4_k::QS + 128];
    for (chunk, q) in levels.chunks_exact(64).zip(qs.chunks_exact_mut(32)) {
        for (l, b) in q.iter_mut().enumerate() {
            *b = chunk[l] | (chunk[l + 32] << 4);
        }
    }
}

row_builds!(
    /// Quantizes one row to `Q4_K` (ggml's `quantize_row_q4_K_ref`, or
    /// `quantize_row_q4_K_impl` with an importance matrix).
    pub quantize_row_q4_k,
    q4_k_row,
    q4_k_avx2,
    q4_k_avx512
);

#[inline(always)]
fn q4_k_row(src: &[f32], dst: &mut [u8], imatrix: Option<&[f32]>) {
    const SEARCH: AffineSearch = AffineSearch {
        nmax: 15,
        rmin: -1.0,
        rdelta: 0.1,
        nstep: 20,
        use_mad: false,
    };
    let mut levels = [0u8; QK_K];
    for (x, w, out) in super_blocks(src, dst, imatrix, q4_k::SIZE) {
        let fit = match w {
            None => k4_fit_ref(x, &mut levels, SEARCH),
            Some(w) => k4_fit_weighted(x, w, &mut levels, 15, false),
        };
        finish_q4_k(x, &mut levels, fit, out);
    }
}

/// Writes a `Q5_K` block: scales, requantized values as low nibbles (as in `Q4_K`) and
/// fifth bits (value `64c + l` in bit `2c` of `qh[l]`, value `64c + 32 + l` in bit `2c + 1`).
#[inline(always)]
fn finish_q5_k(x: &[f32], levels: &mut [u8; QK_K], fit: ([u8; 12], u16, u16), out: &mut [u8]) {
    let (scales, d, dmin) = fit;
    requantize_k4(x, levels, &scales, d, dmin, 31);
    put_f16(out, q5_k::D, d);
    put_f16(out, q5_k::DMIN, dmin);
    out[q5_k::SCALES..q5_k::SCALES + 12].copy_from_slice(&scales);
    let mut qh = [0u8; 32];
    let qs = &mut out[q5_k::QS..q5_k::QS + 128];
    for (c, (chunk, q)) in levels
        .chunks_exact(64)
        .zip(qs.chunks_exact_mut(32))
        .enumerate()
    {
        for (l, b) in q.iter_mut().enumerate() {
            let (lo, hi) = (chunk[l], chunk[l + 32]);
            qh[l] |= (lo >> 4) << (2 * c) | (hi >> 4) << (2 * c + 1);
            *b = (lo & 0x0F) | ((hi & 0x0F) << 4);
        }
    }
    out[q5_k::QH..q5_k::QH + 32].copy_from_slice(&qh);
}

row_builds!(
    /// Quantizes one row to `Q5_K` (ggml's `quantize_row_q5_K_ref`, or
    /// `quantize_row_q5_K_impl` with an importance matrix).
    pub quantize_row_q5_k,
    q5_k_row,
    q5_k_avx2,
    q5_k_avx512
);

#[inline(always)]
fn q5_k_row(src: &[f32], dst: &mut [u8], imatrix: Option<&[f32]>) {
    const SEARCH: AffineSearch = AffineSearch {
        nmax: 31,
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        use_mad: false,
    };
    let mut levels = [0u8; QK_K];
    for (x, w, out) in super_blocks(src, dst, imatrix, q5_k::SIZE) {
        let fit = match w {
            None => k4_fit_ref(x, &mut levels, SEARCH),
            Some(w) => k4_fit_weighted(x, w, &mut levels, 31, true),
        };
        finish_q5_k(x, &mut levels, fit, out);
    }
}

// ---------------------------------------------------------------------------------- Q6_K

row_builds!(
    /// Quantizes one row to `Q6_K` (ggml's `quantize_row_q6_K_ref`, or
    /// `quantize_row_q6_K_impl` with an importance matrix, which only weights the per-16
    /// scale search).
    pub quantize_row_q6_k,
    q6_k_row,
    q6_k_avx2,
    q6_k_avx512
);

#[inline(always)]
fn q6_k_row(src: &[f32], dst: &mut [u8], imatrix: Option<&[f32]>) {
    for (x, w, out) in super_blocks(src, dst, imatrix, q6_k::SIZE) {
        q6_k_block(x, w, out);
    }
}

#[inline(always)]
fn q6_k_block(x: &[f32], qw: Option<&[f32]>, out: &mut [u8]) {
    let xt = transpose::<16, 16>(x);
    // ggml's implicit weights are `x²`; an importance matrix is used as it is.
    let weights = match qw {
        Some(qw) => transpose::<16, 16>(qw),
        None => xt.map(|row| row.map(|v| v * v)),
    };
    let mut lanes = [[0i32; 16]; 16];
    let scales = qx_search(&xt, &weights, 32, &mut lanes);
    let mut levels = [0u8; QK_K];
    untranspose_levels(&lanes, &mut levels);
    let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
    for &s in &scales {
        if s.abs() > max_abs_scale {
            max_abs_scale = s.abs();
            max_scale = s;
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        out.fill(0);
        return;
    }
    let iscale = -128.0 / max_scale;
    let d_bits = f16_bits(1.0 / iscale);
    let sc: [i8; 16] = scales.map(|s| nearest_int(iscale * s).min(127) as i8);
    let dv = f16_value(d_bits);
    for (j, &s) in sc.iter().enumerate() {
        let dl = dv * f32::from(s);
        if dl == 0.0 {
            continue;
        }
        for (l, &xi) in levels[16 * j..16 * j + 16].iter_mut().zip(&x[16 * j..]) {
            *l = (nearest_int(xi / dl).clamp(-32, 31) + 32) as u8;
        }
    }
    // Each 128 values fill 64 ql bytes and 32 qh bytes: values l, l+32, l+64, l+96 share
    // qh[l]; their low nibbles go to ql[l] (l, l+64) and ql[l+32] (l+32, l+96).
    let (ql, rest) = out[q6_k::QL..].split_at_mut(128);
    let qh = &mut rest[..64];
    for ((chunk, ql), qh) in levels
        .chunks_exact(128)
        .zip(ql.chunks_exact_mut(64))
        .zip(qh.chunks_exact_mut(32))
    {
        for (l, h) in qh.iter_mut().enumerate() {
            let quarter = [chunk[l], chunk[l + 32], chunk[l + 64], chunk[l + 96]];
            ql[l] = (quarter[0] & 0x0F) | ((quarter[2] & 0x0F) << 4);
            ql[l + 32] = (quarter[1] & 0x0F) | ((quarter[3] & 0x0F) << 4);
            *h = (quarter[0] >> 4)
                | (quarter[1] >> 4) << 2
                | (quarter[2] >> 4) << 4
                | (quarter[3] >> 4) << 6;
        }
    }
    for (o, &s) in out[q6_k::SCALES..q6_k::SCALES + 16].iter_mut().zip(&sc) {
        *o = s as u8;
    }
    put_f16(out, q6_k::D, d_bits);
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::quant::dispatch::Isa;
    use proptest::prelude::*;

    type Row = fn(&[f32], &mut [u8], Option<&[f32]>);
    type Build = unsafe fn(&[f32], &mut [u8], Option<&[f32]>);

    proptest! {
        #[test]
        fn vector_builds_equal_the_portable_one(
            mut x in proptest::collection::vec(-100.0f32..100.0, 2 * QK_K),
            special in proptest::collection::vec((0..2 * QK_K, any::<u32>()), 0..3),
            w in proptest::collection::vec(0.0f32..4.0, 2 * QK_K),
            weighted in any::<bool>(),
        ) {
            // A few weights of any bits: NaN, infinities, huge or tiny magnitudes.
            for (i, bits) in special {
                x[i] = f32::from_bits(bits);
            }
            let builds: [(Row, Build, Build, usize); 5] = [
                (q2_k_row, q2_k_avx2, q2_k_avx512, q2_k::SIZE),
                (q3_k_row, q3_k_avx2, q3_k_avx512, q3_k::SIZE),
                (q6_k_row, q6_k_avx2, q6_k_avx512, q6_k::SIZE),
                (q4_k_row, q4_k_avx2, q4_k_avx512, q4_k::SIZE),
                (q5_k_row, q5_k_avx2, q5_k_avx512, q5_k::SIZE),
            ];
            let w = weighted.then_some(w.as_slice());
            // Where the arithmetic makes a NaN (non-finite or overflowing weights), which
            // NaN survives depends on operand order, which differs between builds: only
            // blocks free of that must be equal.
            let clean: Vec<bool> = x
                .chunks_exact(QK_K)
                .map(|b| b.iter().all(|v| v.abs() <= 1e15))
                .collect();
            for (portable, avx2, avx512, size) in builds {
                let mut want = vec![0u8; 2 * size];
                portable(&x, &mut want, w);
                let check = |got: &[u8]| {
                    for ((g, e), &clean) in got.chunks(size).zip(want.chunks(size)).zip(&clean) {
                        if clean {
                            prop_assert_eq!(g, e);
                        }
                    }
                    Ok(())
                };
                if Isa::Avx2.is_available() {
                    let mut got = vec![1u8; 2 * size];
                    // SAFETY: AVX2 was just detected.
                    unsafe { avx2(&x, &mut got, w) };
                    check(&got)?;
                }
                if Isa::Avx512.is_available() {
                    let mut got = vec![2u8; 2 * size];
                    // SAFETY: AVX-512 F/BW/VL and AVX2 were just detected.
                    unsafe { avx512(&x, &mut got, w) };
                    check(&got)?;
                }
            }
        }
    }
}
