//! The scale searches behind ggml's k-quants and importance-weighted legacy quants.
//!
//! Each function reproduces the f32 arithmetic of the ggml routine of the same name
//! (`ggml-quants.c`) operation for operation: the same association of products and sums,
//! the same loop bounds and the same strict comparisons, so that ties and near-ties resolve
//! exactly as ggml resolves them. Quant levels are returned in caller-provided slices, with
//! the offset ggml applies (signed levels biased by `nmax`).
//!
//! # Non-finite values
//!
//! Nothing here panics or loops without bound on any input: NaN and infinities flow through
//! the arithmetic exactly as through ggml's (whose `assert`s are compiled out in release
//! builds), and [`nearest_int`] is total. Results equal ggml's on every platform while no
//! NaN arises. Once one does (a NaN input, `inf - inf` after an overflow, an infinite
//! weight times a zero), the bytes that depend on it are not fully pinned down, for ggml
//! either: a NaN made from non-NaN operands is negative on x86 and positive on ARM, and when
//! two NaNs meet, which one survives depends on the operand order the compiler chose. So the
//! sign of an f16 NaN scale, and a level rounded from a NaN, may differ from ggml's (and
//! between the vector builds of [`super::lanes`]); NaN scales are always stored as ggml
//! stores them, `0x7e00` with the sign.

/// Groups whose largest magnitude is below this count as all zero (ggml's `GROUP_MAX_EPS`).
pub const GROUP_MAX_EPS: f32 = 1e-15;

/// Adding 1.5 · 2²³ leaves `x` rounded to an integer (ties to even) in the low mantissa bits.
const ROUNDING_MAGIC: f32 = 12_582_912.0;

/// Rounds `x` to the nearest integer, ties to even, the way ggml's `nearest_int` does: by
/// reading the mantissa of `x + 1.5 · 2²³`.
///
/// Exact for `|x| <= 4194303`; beyond that (and for NaN or infinities) the result is the
/// same wrapped value ggml computes, never a panic.
#[inline]
pub fn nearest_int(x: f32) -> i32 {
    let shifted = x + ROUNDING_MAGIC;
    (shifted.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// ggml's `GGML_FP32_TO_FP16`: round to nearest even; every NaN becomes the quiet NaN
/// `0x7e00` with the sign kept.
#[inline]
pub fn f16_bits(x: f32) -> u16 {
    if x.is_nan() {
        ((x.to_bits() >> 16) as u16 & 0x8000) | 0x7e00
    } else {
        half::f16::from_f32(x).to_bits()
    }
}

/// `x` rounded through f16 and back: the scale a decoder will see.
#[inline]
pub fn f16_round(x: f32) -> f32 {
    half::f16::from_bits(f16_bits(x)).to_f32()
}

/// ggml's `MIN` on floats: `b` unless `a < b` (so a NaN in either place picks `b`).
#[inline]
fn c_min(a: f32, b: f32) -> f32 {
    if a < b {
        a
    } else {
        b
    }
}

/// ggml's `MAX` on floats: `b` unless `a > b`.
#[inline]
fn c_max(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// The element of largest magnitude, first one on ties, as ggml's searches pick it: returns
/// `(amax, max)` with `max` signed.
#[inline]
#[allow(
    clippy::float_cmp,
    reason = "the magnitude sought is an exact copy of one of the weights'"
)]
fn signed_abs_max(x: &[f32]) -> (f32, f32) {
    // NaN never raises the maximum, so it does not depend on the order; the weight is then
    // the first of that magnitude. Two passes without a data-dependent branch each, where
    // a running scan mispredicts at every new maximum.
    let amax = x
        .iter()
        .fold(0.0f32, |m, &v| if v.abs() > m { v.abs() } else { m });
    if amax > 0.0 {
        let max = x.iter().copied().find(|v| v.abs() == amax).unwrap_or(0.0);
        (amax, max)
    } else {
        (amax, 0.0)
    }
}

/// The weight of `x` in `make_qx_quants` when no explicit weights are given, for the
/// `rmse_type` values ggml defines.
#[inline]
fn qx_weight(rmse_type: i32, x: f32) -> f32 {
    match rmse_type {
        1 => x * x,
        2 => 1.0,
        3 => x.abs(),
        _ => x.abs().sqrt(),
    }
}

/// Values per step of [`qx_sums`]: the per-value products of a step are independent, so the
/// compiler can compute them in vector registers, while the sums stay strictly in order.
const LANES: usize = 16;

/// `round(iscale · x)` limited to `-nmax..nmax`.
#[inline]
fn qx_level(x: f32, iscale: f32, nmax: i32) -> i32 {
    nearest_int(iscale * x).min(nmax - 1).max(-nmax)
}

/// `sum(w·x·l)` and `sum(w·l²)` of `x` quantized with `iscale` to `-nmax..nmax`, summed in
/// order; `weights(chunk, start)` gives the weights of the `LANES` values from `start`.
#[inline]
fn qx_sums(
    x: &[f32],
    nmax: i32,
    iscale: f32,
    weights: impl Fn(&[f32; LANES], usize) -> [f32; LANES],
    weight: impl Fn(usize, f32) -> f32,
) -> (f32, f32) {
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    let chunks = x.chunks_exact(LANES);
    let tail_start = x.len() - chunks.remainder().len();
    for (c, chunk) in chunks.enumerate() {
        let Ok(chunk) = <&[f32; LANES]>::try_from(chunk) else {
            continue;
        };
        let w = weights(chunk, c * LANES);
        let mut lx = [0.0f32; LANES];
        let mut ll = [0.0f32; LANES];
        for k in 0..LANES {
            let l = qx_level(chunk[k], iscale, nmax) as f32;
            lx[k] = w[k] * chunk[k] * l;
            ll[k] = w[k] * l * l;
        }
        for k in 0..LANES {
            sumlx += lx[k];
            suml2 += ll[k];
        }
    }
    for (i, &xi) in x.iter().enumerate().skip(tail_start) {
        let l = qx_level(xi, iscale, nmax) as f32;
        let w = weight(i, xi);
        sumlx += w * xi * l;
        suml2 += w * l * l;
    }
    (sumlx, suml2)
}

/// Writes `nmax + clamp(round(iscale · x))` for every `x` into `levels`.
#[inline]
fn qx_levels(x: &[f32], nmax: i32, iscale: f32, levels: &mut [i8]) {
    for (l, &xi) in levels.iter_mut().zip(x) {
        *l = (nmax + qx_level(xi, iscale, nmax)) as i8;
    }
}

/// ggml's `make_qx_quants`: a symmetric scale for `x` with levels in `0..2·nmax` (stored as
/// `l + nmax`), refined over 18 trial scales around `-nmax / max` by weighted least squares.
///
/// `qw` holds one weight per value (`None`: weights from `rmse_type`, 1 being `x²`).
/// A negative `rmse_type` returns after the first fit, `0` without any fit. `levels` must be
/// at least as long as `x`.
pub fn make_qx_quants(
    x: &[f32],
    nmax: i32,
    levels: &mut [i8],
    rmse_type: i32,
    qw: Option<&[f32]>,
) -> f32 {
    let levels = &mut levels[..x.len()];
    let (amax, max) = signed_abs_max(x);
    if amax < GROUP_MAX_EPS {
        levels.fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    if rmse_type == 0 {
        qx_levels(x, nmax, iscale, levels);
        return 1.0 / iscale;
    }
    let return_early = rmse_type < 0;
    // `x²` weights of a short group are computed once rather than on every trial.
    let mut squares = [0.0f32; 4 * LANES];
    let qw = match (qw, rmse_type.abs()) {
        (None, 1) if x.len() <= squares.len() => {
            for (s, &v) in squares.iter_mut().zip(x) {
                *s = v * v;
            }
            Some(&squares[..x.len()])
        }
        _ => qw,
    };
    // One monomorphic search per weighting keeps the inner loops free of dispatch.
    match (qw, rmse_type.abs()) {
        (Some(qw), _) => {
            let qw = &qw[..x.len()];
            let chunk_weights = |_: &[f32; LANES], start: usize| {
                let mut w = [0.0f32; LANES];
                w.copy_from_slice(&qw[start..start + LANES]);
                w
            };
            qx_search(x, nmax, max, levels, return_early, chunk_weights, |i, _| {
                qw[i]
            })
        }
        (None, 1) => qx_search(
            x,
            nmax,
            max,
            levels,
            return_early,
            |c: &[f32; LANES], _| c.map(|v| v * v),
            |_, v| v * v,
        ),
        (None, t) => qx_search(
            x,
            nmax,
            max,
            levels,
            return_early,
            |c: &[f32; LANES], _| c.map(|v| qx_weight(t, v)),
            |_, v| qx_weight(t, v),
        ),
    }
}

/// The weighted least-squares part of [`make_qx_quants`], from the first fit at
/// `-nmax / max` through the 18 trial scales.
#[inline]
fn qx_search(
    x: &[f32],
    nmax: i32,
    max: f32,
    levels: &mut [i8],
    return_early: bool,
    weights: impl Fn(&[f32; LANES], usize) -> [f32; LANES] + Copy,
    weight: impl Fn(usize, f32) -> f32 + Copy,
) -> f32 {
    let mut iscale = -(nmax as f32) / max;
    qx_levels(x, nmax, iscale, levels);
    let (sumlx, suml2) = qx_sums(x, nmax, iscale, weights, weight);
    let mut scale = if suml2 == 0.0 { 0.0 } else { sumlx / suml2 };
    if return_early {
        return if suml2 > 0.0 {
            0.5 * (scale + 1.0 / iscale)
        } else {
            1.0 / iscale
        };
    }
    let mut best = scale * sumlx;
    let (iscales, sums) = qx_trial_sums(x, nmax, max, weight);
    let mut chosen = None;
    for (t, &(sumlx, suml2)) in sums.iter().enumerate() {
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            chosen = Some(t);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    if let Some(t) = chosen {
        iscale = iscales[t];
        qx_levels(x, nmax, iscale, levels);
    }
    scale
}

/// Trial scales of [`make_qx_quants`]: `-(nmax + 0.1·is) / max` for `is` in `-9..=9`, 0 left
/// out.
const QX_TRIALS: usize = 18;

/// Lanes the trial sums are computed in: [`QX_TRIALS`] rounded up to whole vectors (the
/// extra lanes repeat the last trial and are not read).
const QX_TRIAL_LANES: usize = 24;

/// The trial scales of [`make_qx_quants`] in ggml's order, and for each its `sum(w·x·l)`
/// and `sum(w·l²)`, each summed in order over `x`. The trials are independent, so they
/// advance together, one value at a time: many short dependency chains instead of one long
/// chain per trial.
#[inline]
fn qx_trial_sums(
    x: &[f32],
    nmax: i32,
    max: f32,
    weight: impl Fn(usize, f32) -> f32,
) -> ([f32; QX_TRIALS], [(f32, f32); QX_TRIALS]) {
    let trial = |t: usize| {
        let is = if t < 9 { t as i32 - 9 } else { t as i32 - 8 };
        -(nmax as f32 + 0.1 * is as f32) / max
    };
    let iscales: [f32; QX_TRIAL_LANES] = std::array::from_fn(|t| trial(t.min(QX_TRIALS - 1)));
    let (mut lx, mut l2) = ([0.0f32; QX_TRIAL_LANES], [0.0f32; QX_TRIAL_LANES]);
    for (i, &xi) in x.iter().enumerate() {
        let w = weight(i, xi);
        let wx = w * xi;
        for ((lx, l2), &iscale) in lx.iter_mut().zip(&mut l2).zip(&iscales) {
            let l = qx_level(xi, iscale, nmax) as f32;
            *lx += wx * l;
            *l2 += w * l * l;
        }
    }
    (
        std::array::from_fn(|t| iscales[t]),
        std::array::from_fn(|t| (lx[t], l2[t])),
    )
}

/// ggml's `make_q3_quants`: a symmetric scale for `x` with levels `0..2·nmax` (stored as
/// `l + nmax`); with `do_rmse`, up to five passes move single levels while that raises the
/// `x²`-weighted fit. `levels` must be at least as long as `x`.
pub fn make_q3_quants(x: &[f32], nmax: i32, levels: &mut [i8], do_rmse: bool) -> f32 {
    let levels = &mut levels[..x.len()];
    let (amax, max) = signed_abs_max(x);
    if amax < GROUP_MAX_EPS {
        levels.fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    if !do_rmse {
        qx_levels(x, nmax, iscale, levels);
        return 1.0 / iscale;
    }
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for (l, &xi) in levels.iter_mut().zip(x) {
        let q = nearest_int(iscale * xi).clamp(-nmax, nmax - 1);
        *l = q as i8;
        let w = xi * xi;
        sumlx += w * xi * q as f32;
        suml2 += w * q as f32 * q as f32;
    }
    for _ in 0..5 {
        let mut changed = false;
        for (l, &xi) in levels.iter_mut().zip(x) {
            let w = xi * xi;
            let old = f32::from(*l);
            let mut slx = sumlx - w * xi * old;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * old * old;
                let new_l = nearest_int(xi * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != i32::from(*l) {
                    slx += w * xi * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *l = new_l as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    for l in levels.iter_mut() {
        *l = (i32::from(*l) + nmax) as i8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// Parameters of the affine (scale and min) searches: trial inverse scales
/// `(rmin + rdelta·is + nmax) / (max - min)` for `is` in `0..=nstep`, errors measured as
/// absolute (`use_mad`) or squared differences.
#[derive(Clone, Copy, Debug)]
pub struct AffineSearch {
    /// Largest level.
    pub nmax: i32,
    /// Offset of the first trial from `nmax`.
    pub rmin: f32,
    /// Step between trials.
    pub rdelta: f32,
    /// Last trial index; below 1, no search beyond the plain min/max fit.
    pub nstep: i32,
    /// Absolute instead of squared errors.
    pub use_mad: bool,
}

/// Running sums of the weighted least-squares fit `x ≈ scale·l + min`.
struct AffineFit {
    /// `Σ w·l`.
    l1: f32,
    /// `Σ w·l²`.
    l2: f32,
    /// `Σ w·l·x`.
    xl: f32,
}

impl AffineFit {
    /// The best `(scale, min)` for levels with these sums, `min` capped at zero; `None`
    /// where the system is degenerate (determinant not positive).
    #[inline]
    fn solve(&self, sum_w: f32, sum_x: f32) -> Option<(f32, f32)> {
        let det = sum_w * self.l2 - self.l1 * self.l1;
        if det > 0.0 {
            let scale = (sum_w * self.xl - sum_x * self.l1) / det;
            let min = (self.l2 * sum_x - self.l1 * self.xl) / det;
            Some(if min > 0.0 {
                (self.xl / self.l2, 0.0)
            } else {
                (scale, min)
            })
        } else {
            None
        }
    }
}

/// The weighted error of `x` against `scale·l + min`, summed in order (per-value terms in
/// independent lanes, as in [`qx_sums`]).
#[inline]
fn affine_error(
    x: &[f32],
    levels: &[u8],
    weights: &[f32],
    scale: f32,
    min: f32,
    use_mad: bool,
) -> f32 {
    let term = |xi: f32, l: u8, w: f32| {
        let diff = scale * f32::from(l) + min - xi;
        w * if use_mad { diff.abs() } else { diff * diff }
    };
    let mut error = 0.0f32;
    let (xs, ls, ws) = (
        x.chunks_exact(LANES),
        levels.chunks_exact(LANES),
        weights.chunks_exact(LANES),
    );
    let tail = (xs.remainder(), ls.remainder(), ws.remainder());
    for ((xc, lc), wc) in xs.zip(ls).zip(ws) {
        let mut terms = [0.0f32; LANES];
        for (((t, &xi), &l), &w) in terms.iter_mut().zip(xc).zip(lc).zip(wc) {
            *t = term(xi, l, w);
        }
        for t in terms {
            error += t;
        }
    }
    for ((&xi, &l), &w) in tail.0.iter().zip(tail.1).zip(tail.2) {
        error += term(xi, l, w);
    }
    error
}

/// Fills `aux` with the trial levels of `x` and returns their least-squares sums, each sum
/// in order (per-value products in independent lanes, as in [`qx_sums`]).
#[inline]
fn affine_trial(
    x: &[f32],
    weights: &[f32],
    aux: &mut [u8],
    level: impl Fn(f32) -> u8,
) -> AffineFit {
    let mut fit = AffineFit {
        l1: 0.0,
        l2: 0.0,
        xl: 0.0,
    };
    let (xs, ws) = (x.chunks_exact(LANES), weights.chunks_exact(LANES));
    let (x_tail, w_tail) = (xs.remainder(), ws.remainder());
    let mut auxs = aux.chunks_exact_mut(LANES);
    for ((ac, xc), wc) in (&mut auxs).zip(xs).zip(ws) {
        let (mut l1, mut l2, mut xl) = ([0.0f32; LANES], [0.0f32; LANES], [0.0f32; LANES]);
        for (k, ((a, &xi), &w)) in ac.iter_mut().zip(xc).zip(wc).enumerate() {
            *a = level(xi);
            let l = f32::from(*a);
            l1[k] = w * l;
            l2[k] = w * l * l;
            xl[k] = w * l * xi;
        }
        for k in 0..LANES {
            fit.l1 += l1[k];
            fit.l2 += l2[k];
            fit.xl += xl[k];
        }
    }
    for ((a, &xi), &w) in auxs.into_remainder().iter_mut().zip(x_tail).zip(w_tail) {
        *a = level(xi);
        let l = f32::from(*a);
        fit.l1 += w * l;
        fit.l2 += w * l * l;
        fit.xl += w * l * xi;
    }
    fit
}

/// The common body of `make_qkx2_quants` and `make_qkx3_quants`; `trial_level` maps a
/// trial value `iscale·(x - min)` to a level, `degenerate(max, min)` says when to stop at
/// all-zero levels.
fn affine_search(
    x: &[f32],
    weights: &[f32],
    levels: &mut [u8],
    aux: &mut [u8],
    search: AffineSearch,
    degenerate: impl Fn(f32, f32) -> bool,
    trial_level: impl Fn(f32) -> u8,
) -> (f32, f32) {
    let len = x.len();
    let (weights, levels, aux) = (&weights[..len], &mut levels[..len], &mut aux[..len]);
    let (Some(&x0), Some(&w0)) = (x.first(), weights.first()) else {
        return (0.0, 0.0);
    };
    let (mut min, mut max) = (x0, x0);
    let mut sum_w = w0;
    let mut sum_x = sum_w * x0;
    for (&xi, &w) in x.iter().zip(weights).skip(1) {
        if xi < min {
            min = xi;
        }
        if xi > max {
            max = xi;
        }
        sum_w += w;
        sum_x += w * xi;
    }
    if min > 0.0 {
        min = 0.0;
    }
    if degenerate(max, min) {
        levels.fill(0);
        return (0.0, -min);
    }
    let nmax = search.nmax;
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    for (l, &xi) in levels.iter_mut().zip(x) {
        *l = nearest_int(iscale * (xi - min)).min(nmax).max(0) as u8;
    }
    let mut best_error = affine_error(x, levels, weights, scale, min, search.use_mad);
    if search.nstep < 1 {
        return (scale, -min);
    }
    for is in 0..=search.nstep {
        iscale = (search.rmin + search.rdelta * is as f32 + nmax as f32) / (max - min);
        let fit = affine_trial(x, weights, aux, |xi| trial_level(iscale * (xi - min)));
        if let Some((this_scale, this_min)) = fit.solve(sum_w, sum_x) {
            let error = affine_error(x, aux, weights, this_scale, this_min, search.use_mad);
            if error < best_error {
                levels.copy_from_slice(aux);
                best_error = error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// ggml's `make_qkx2_quants`: an affine fit `x ≈ scale·l - the_min` with levels `0..=nmax`,
/// searched over `p`'s trial scales with explicit `weights`. Returns `(scale, the_min)`;
/// `weights`, `levels` and `aux` must be at least as long as `x`.
#[allow(
    clippy::float_cmp,
    reason = "ggml treats exactly equal extremes as a constant group"
)]
pub fn make_qkx2_quants(
    x: &[f32],
    weights: &[f32],
    levels: &mut [u8],
    aux: &mut [u8],
    p: AffineSearch,
) -> (f32, f32) {
    let nmax = p.nmax;
    affine_search(
        x,
        weights,
        levels,
        aux,
        p,
        |max, min| max == min,
        |v| nearest_int(v).min(nmax).max(0) as u8,
    )
}

/// ggml's `make_qkx3_quants` as every ggml quantizer calls it (with explicit weights): as
/// [`make_qkx2_quants`], except that a trial level is 0 unless `iscale·(x - min)` is
/// positive, and at most `nmax` before rounding (which keeps infinite and NaN trial values
/// at 0 or `nmax`).
pub fn make_qkx3_quants(
    x: &[f32],
    weights: &[f32],
    levels: &mut [u8],
    aux: &mut [u8],
    p: AffineSearch,
) -> (f32, f32) {
    let nmax = p.nmax;
    let nmax_f = nmax as f32;
    affine_search(
        x,
        weights,
        levels,
        aux,
        p,
        |max, min| max <= min,
        |v| {
            if v > 0.0 {
                nearest_int(c_min(v, nmax_f)) as u8
            } else {
                0
            }
        },
    )
}

/// ggml's `make_qp_quants`: a scale for non-negative `x` with levels `0..=nmax`, chosen
/// among nine trial scales by weighted squared error and then refined level by level for up
/// to five passes. Used to quantize sub-block scales and mins; `levels` must be at least as
/// long as `x`.
pub fn make_qp_quants(x: &[f32], nmax: i32, levels: &mut [u8], quant_weights: &[f32]) -> f32 {
    let levels = &mut levels[..x.len()];
    let max = x.iter().fold(0.0f32, |m, &v| c_max(m, v));
    if max < GROUP_MAX_EPS {
        levels.fill(0);
        return 0.0;
    }
    let mut iscale = nmax as f32 / max;
    for (l, &xi) in levels.iter_mut().zip(x) {
        *l = nearest_int(iscale * xi) as u8;
    }
    let scale = 1.0 / iscale;
    let mut best_mse = 0.0f32;
    for ((&xi, &l), &w) in x.iter().zip(levels.iter()).zip(quant_weights) {
        let diff = xi - scale * f32::from(l);
        best_mse += w * diff * diff;
    }
    for is in (-4..=4).filter(|&is| is != 0) {
        let iscale_is = (0.1 * is as f32 + nmax as f32) / max;
        let scale_is = 1.0 / iscale_is;
        let mut mse = 0.0f32;
        for (&xi, &w) in x.iter().zip(quant_weights) {
            let l = nearest_int(iscale_is * xi).min(nmax);
            let diff = xi - scale_is * l as f32;
            mse += w * diff * diff;
        }
        if mse < best_mse {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for ((l, &xi), &w) in levels.iter_mut().zip(x).zip(quant_weights) {
        let q = nearest_int(iscale * xi).min(nmax);
        *l = q as u8;
        let q = q as f32;
        sumlx += w * xi * q;
        suml2 += w * q * q;
    }
    for _ in 0..5 {
        let mut changed = false;
        for ((l, &xi), &w) in levels.iter_mut().zip(x).zip(quant_weights) {
            let old = f32::from(*l);
            let mut slx = sumlx - w * xi * old;
            let mut sl2 = suml2 - w * old * old;
            if slx > 0.0 && sl2 > 0.0 {
                let new_l = nearest_int(xi * sl2 / slx).min(nmax);
                if new_l != i32::from(*l) {
                    slx += w * xi * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *l = new_l as u8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

#[cfg(test)]
#[allow(
    clippy::float_cmp,
    reason = "bit-exact equality is what these tests check"
)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        let cases = [
            (0.0, 0),
            (0.5, 0),
            (1.5, 2),
            (2.5, 2),
            (-0.5, 0),
            (-1.5, -2),
            (0.49, 0),
            (-3.7, -4),
            (4_194_303.0, 4_194_303),
            (-4_194_303.0, -4_194_303),
        ];
        for (x, want) in cases {
            assert_eq!(nearest_int(x), want, "{x}");
        }
    }

    #[test]
    fn nearest_int_is_total() {
        for x in [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            -f32::MAX,
        ] {
            let _ = nearest_int(x);
        }
        assert_eq!(nearest_int(f32::INFINITY), -0x40_0000);
    }

    #[test]
    fn f16_bits_rounds_to_nearest_even_and_canonicalizes_nan() {
        assert_eq!(f16_bits(1.0), 0x3c00);
        assert_eq!(f16_bits(65520.0), 0x7c00);
        assert_eq!(f16_bits(-0.0), 0x8000);
        assert_eq!(f16_bits(f32::from_bits(0x7fc1_2345)), 0x7e00);
        assert_eq!(f16_bits(f32::from_bits(0xff80_0001)), 0xfe00);
        // 1 + 2^-11 lies halfway between two f16 values: the even one wins.
        assert_eq!(f16_bits(1.0 + 2f32.powi(-11)), 0x3c00);
    }

    #[test]
    fn zero_groups_give_zero_scales_and_levels() {
        let x = [0.0f32; 16];
        let mut l = [7i8; 16];
        assert_eq!(make_qx_quants(&x, 32, &mut l, 1, None), 0.0);
        assert_eq!(l, [0; 16]);
        let mut l = [7i8; 16];
        assert_eq!(make_q3_quants(&x, 4, &mut l, true), 0.0);
        assert_eq!(l, [0; 16]);
        let mut lu = [7u8; 16];
        assert_eq!(make_qp_quants(&x, 15, &mut lu, &[1.0; 16]), 0.0);
        assert_eq!(lu, [0; 16]);
        let p = AffineSearch {
            nmax: 15,
            rmin: -1.0,
            rdelta: 0.1,
            nstep: 20,
            use_mad: false,
        };
        let mut lu = [7u8; 16];
        let mut aux = [0u8; 16];
        assert_eq!(
            make_qkx2_quants(&x, &[1.0; 16], &mut lu, &mut aux, p),
            (0.0, 0.0)
        );
        assert_eq!(lu, [0; 16]);
        let mut lu = [7u8; 16];
        assert_eq!(
            make_qkx3_quants(&x, &[1.0; 16], &mut lu, &mut aux, p),
            (0.0, 0.0)
        );
        assert_eq!(lu, [0; 16]);
    }

    #[test]
    fn implicit_and_explicit_square_weights_agree_for_any_group_length() {
        // The weighting paths of make_qx_quants (squares precomputed, squares per trial,
        // explicit weights; whole lanes and a tail) must give the same bits.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in [16, 20, 37, 64, 100] {
            let x: Vec<f32> = (0..len)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1);
                    ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 3.0
                })
                .collect();
            let squares: Vec<f32> = x.iter().map(|v| v * v).collect();
            let (mut implicit, mut explicit) = (vec![0i8; len], vec![0i8; len]);
            let a = make_qx_quants(&x, 16, &mut implicit, 1, None);
            let b = make_qx_quants(&x, 16, &mut explicit, 1, Some(&squares));
            assert_eq!(a.to_bits(), b.to_bits(), "{len}");
            assert_eq!(implicit, explicit, "{len}");
            assert!(implicit.iter().all(|&l| (0..32).contains(&l)), "{len}");
        }
    }

    #[test]
    fn exact_grids_are_recovered() {
        // Values on the grid 0.25·(l - 4) fit with that scale exactly.
        let x: Vec<f32> = (0..16).map(|i| 0.25 * ((i % 8) as f32 - 4.0)).collect();
        let mut l = [0i8; 16];
        let scale = make_qx_quants(&x, 4, &mut l, 1, None);
        for (&xi, &li) in x.iter().zip(&l) {
            assert_eq!(scale * f32::from(li - 4), xi);
        }
        // An affine grid 0.5·l - 1 fits with min 1.
        let x: Vec<f32> = (0..32).map(|i| 0.5 * (i % 16) as f32 - 1.0).collect();
        let p = AffineSearch {
            nmax: 15,
            rmin: -1.0,
            rdelta: 0.1,
            nstep: 20,
            use_mad: false,
        };
        let (mut lu, mut aux) = ([0u8; 32], [0u8; 32]);
        let (scale, the_min) = make_qkx2_quants(&x, &[1.0; 32], &mut lu, &mut aux, p);
        assert_eq!((scale, the_min), (0.5, 1.0));
        for (&xi, &li) in x.iter().zip(&lu) {
            assert_eq!(scale * f32::from(li) - the_min, xi);
        }
    }
}
