//! The affine scale searches of [`super::search`], run for many groups at once.
//!
//! A k-quant super-block holds 8 or 16 groups whose searches are independent, and each
//! search is a few long chains of in-order sums: ggml's arithmetic leaves no freedom to
//! reorder them. So the groups go side by side instead: values are transposed to
//! `x[i][g]` (value `i` of group `g`), and every step of the search runs over all groups
//! in one loop, which the compiler turns into vector instructions. Each group still sees
//! exactly the operations of [`super::search::make_qkx2_quants`] or
//! [`super::search::make_qkx3_quants`], in the same order, with every data-dependent branch
//! of theirs turned into a per-group selection, so the results are the same bits.
//!
//! The searches are `#[inline(always)]` so that they compile for the instruction set of
//! the quantizer that calls them (see [`row_builds`]).

#![allow(
    clippy::inline_always,
    reason = "the kernels here are inlined into each instruction-set build of their callers, \
              so that they are compiled for it"
)]

use super::search::{nearest_int, AffineSearch, GROUP_MAX_EPS};

/// How a trial value `iscale·(x - min)` becomes a level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TrialLevel {
    /// `make_qkx2_quants`: round, then limit to `0..=nmax`; constant groups are degenerate.
    Qkx2,
    /// `make_qkx3_quants`: 0 unless positive, at most `nmax` before rounding; groups whose
    /// largest value does not exceed their smallest are degenerate.
    Qkx3,
}

/// Groups of `N` values, transposed: `[i][g]` is value `i` of group `g`.
pub(super) type Lanes<const G: usize, const N: usize> = [[f32; G]; N];

/// Transposes `G` consecutive groups of `N` values of `x` into lanes.
#[inline(always)]
pub(super) fn transpose<const G: usize, const N: usize>(x: &[f32]) -> Lanes<G, N> {
    // Loops rather than `array::from_fn`, which is not always inlined at this size.
    let mut t = [[0.0f32; G]; N];
    for (g, group) in x.chunks_exact(N).take(G).enumerate() {
        for (row, &v) in t.iter_mut().zip(group) {
            row[g] = v;
        }
    }
    t
}

/// `f(a, b)` for every group.
#[inline(always)]
pub(super) fn zip_map<const G: usize>(
    a: [f32; G],
    b: [f32; G],
    f: impl Fn(f32, f32) -> f32,
) -> [f32; G] {
    std::array::from_fn(|g| f(a[g], b[g]))
}

/// `Σ x²` of every group, summed in order.
#[inline(always)]
pub(super) fn sum_squares<const G: usize, const N: usize>(x: &Lanes<G, N>) -> [f32; G] {
    sums(&x.map(|row| row.map(|v| v * v)))
}

/// `Σ w` of every group, summed in order.
#[inline(always)]
pub(super) fn sums<const G: usize, const N: usize>(w: &Lanes<G, N>) -> [f32; G] {
    let mut sum = [0.0f32; G];
    for row in w {
        for (s, &v) in sum.iter_mut().zip(row) {
            *s += v;
        }
    }
    sum
}

/// The levels of every group, transposed back: group `g`'s levels at `g·N..(g + 1)·N`.
#[inline(always)]
pub(super) fn untranspose_levels<const G: usize, const N: usize>(
    levels: &[[i32; G]; N],
    out: &mut [u8],
) {
    for (g, group) in out.chunks_exact_mut(N).take(G).enumerate() {
        for (o, row) in group.iter_mut().zip(levels) {
            *o = row[g] as u8;
        }
    }
}

/// The affine search of `make_qkx2_quants` / `make_qkx3_quants` for `G` groups of `N`
/// values at once. Writes each group's levels to `levels` (transposed, like `x`) and
/// returns every group's `(scale, the_min)`.
#[allow(
    clippy::float_cmp,
    clippy::too_many_lines,
    reason = "ggml treats exactly equal extremes as a constant group; one search, step by \
              step"
)]
#[inline(always)]
pub(super) fn affine_search<const G: usize, const N: usize>(
    x: &Lanes<G, N>,
    w: &Lanes<G, N>,
    levels: &mut [[i32; G]; N],
    search: AffineSearch,
    kind: TrialLevel,
) -> ([f32; G], [f32; G]) {
    let nmax = search.nmax;
    let nmax_f = nmax as f32;
    // Extremes and weighted sums, started from the first value as ggml does.
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = w[0];
    let mut sum_x: [f32; G] = std::array::from_fn(|g| sum_w[g] * x[0][g]);
    for (xr, wr) in x.iter().zip(w).skip(1) {
        for g in 0..G {
            let xi = xr[g];
            min[g] = if xi < min[g] { xi } else { min[g] };
            max[g] = if xi > max[g] { xi } else { max[g] };
            sum_w[g] += wr[g];
            sum_x[g] += wr[g] * xi;
        }
    }
    let mut degenerate = [false; G];
    for g in 0..G {
        min[g] = if min[g] > 0.0 { 0.0 } else { min[g] };
        degenerate[g] = match kind {
            TrialLevel::Qkx2 => max[g] == min[g],
            TrialLevel::Qkx3 => max[g] <= min[g],
        };
    }
    // The plain min/max fit.
    let iscale: [f32; G] = std::array::from_fn(|g| nmax_f / (max[g] - min[g]));
    let mut scale: [f32; G] = std::array::from_fn(|g| 1.0 / iscale[g]);
    for (lr, xr) in levels.iter_mut().zip(x) {
        for g in 0..G {
            lr[g] = nearest_int(iscale[g] * (xr[g] - min[g])).min(nmax).max(0);
        }
    }
    let mut best_error = affine_errors(x, w, levels, scale, min, search.use_mad);
    if search.nstep >= 1 {
        let mut aux = [[0i32; G]; N];
        for is in 0..=search.nstep {
            let numerator = search.rmin + search.rdelta * is as f32 + nmax_f;
            let iscale: [f32; G] = std::array::from_fn(|g| numerator / (max[g] - min[g]));
            let (mut l1, mut l2, mut xl) = ([0.0f32; G], [0.0f32; G], [0.0f32; G]);
            for ((ar, xr), wr) in aux.iter_mut().zip(x).zip(w) {
                for g in 0..G {
                    let v = iscale[g] * (xr[g] - min[g]);
                    let level = match kind {
                        TrialLevel::Qkx2 => nearest_int(v).min(nmax).max(0),
                        TrialLevel::Qkx3 => {
                            // Rounded whatever the sign, then selected: no branch.
                            let rounded = nearest_int(if v < nmax_f { v } else { nmax_f });
                            if v > 0.0 {
                                rounded
                            } else {
                                0
                            }
                        }
                    };
                    ar[g] = level;
                    let l = level as f32;
                    l1[g] += wr[g] * l;
                    l2[g] += wr[g] * l * l;
                    xl[g] += wr[g] * l * xr[g];
                }
            }
            // The least-squares solution of every group, min capped at zero.
            let (mut this_scale, mut this_min) = ([0.0f32; G], [0.0f32; G]);
            let mut solved = [false; G];
            for g in 0..G {
                let det = sum_w[g] * l2[g] - l1[g] * l1[g];
                solved[g] = det > 0.0;
                let s = (sum_w[g] * xl[g] - sum_x[g] * l1[g]) / det;
                let m = (l2[g] * sum_x[g] - l1[g] * xl[g]) / det;
                (this_scale[g], this_min[g]) = if m > 0.0 {
                    (xl[g] / l2[g], 0.0)
                } else {
                    (s, m)
                };
            }
            let error = affine_errors(x, w, &aux, this_scale, this_min, search.use_mad);
            let mut better = [false; G];
            for g in 0..G {
                better[g] = solved[g] && !degenerate[g] && error[g] < best_error[g];
                if better[g] {
                    best_error[g] = error[g];
                    scale[g] = this_scale[g];
                    min[g] = this_min[g];
                }
            }
            for (lr, ar) in levels.iter_mut().zip(&aux) {
                for g in 0..G {
                    lr[g] = if better[g] { ar[g] } else { lr[g] };
                }
            }
        }
    }
    for lr in levels.iter_mut() {
        for g in 0..G {
            lr[g] = if degenerate[g] { 0 } else { lr[g] };
        }
    }
    let scale = std::array::from_fn(|g| if degenerate[g] { 0.0 } else { scale[g] });
    (scale, min.map(|m| -m))
}

/// `make_qx_quants` with `rmse_type` 1 and explicit weights `w` (for ggml's implicit
/// weights, pass `x²`) for `G` groups of `N` values at once: each group's symmetric scale,
/// and its levels in `0..2·nmax` (biased by `nmax`, transposed like `x`) in `levels`.
/// The 18 trial scales are tried in ggml's order; a group keeps the levels of the last
/// trial that improved its fit.
#[allow(
    clippy::float_cmp,
    reason = "ggml tests the sum of squares for exactly zero"
)]
#[inline(always)]
pub(super) fn qx_search<const G: usize, const N: usize>(
    x: &Lanes<G, N>,
    w: &Lanes<G, N>,
    nmax: i32,
    levels: &mut [[i32; G]; N],
) -> [f32; G] {
    let nmax_f = nmax as f32;
    let level = |v: f32, iscale: f32| nearest_int(iscale * v).min(nmax - 1).max(-nmax);
    // The first value of largest magnitude, as `signed_abs_max` picks it.
    let (mut amax, mut max) = ([0.0f32; G], [0.0f32; G]);
    for xr in x {
        for g in 0..G {
            let a = xr[g].abs();
            let larger = a > amax[g];
            amax[g] = if larger { a } else { amax[g] };
            max[g] = if larger { xr[g] } else { max[g] };
        }
    }
    let mut best_iscale = [0.0f32; G];
    for g in 0..G {
        best_iscale[g] = -nmax_f / max[g];
    }
    let (mut sumlx, mut suml2) = ([0.0f32; G], [0.0f32; G]);
    for (xr, wr) in x.iter().zip(w) {
        for g in 0..G {
            let l = level(xr[g], best_iscale[g]) as f32;
            sumlx[g] += wr[g] * xr[g] * l;
            suml2[g] += wr[g] * l * l;
        }
    }
    let mut scale = [0.0f32; G];
    let mut best = [0.0f32; G];
    for g in 0..G {
        scale[g] = if suml2[g] == 0.0 {
            0.0
        } else {
            sumlx[g] / suml2[g]
        };
        best[g] = scale[g] * sumlx[g];
    }
    for is in (-9..=9).filter(|&is| is != 0) {
        let mut iscale = [0.0f32; G];
        for g in 0..G {
            iscale[g] = -(nmax_f + 0.1 * is as f32) / max[g];
        }
        let (mut lx, mut l2) = ([0.0f32; G], [0.0f32; G]);
        for (xr, wr) in x.iter().zip(w) {
            for g in 0..G {
                let l = level(xr[g], iscale[g]) as f32;
                lx[g] += wr[g] * xr[g] * l;
                l2[g] += wr[g] * l * l;
            }
        }
        for g in 0..G {
            let better = l2[g] > 0.0 && lx[g] * lx[g] > best[g] * l2[g];
            let this_scale = lx[g] / l2[g];
            scale[g] = if better { this_scale } else { scale[g] };
            best[g] = if better { this_scale * lx[g] } else { best[g] };
            best_iscale[g] = if better { iscale[g] } else { best_iscale[g] };
        }
    }
    for (lr, xr) in levels.iter_mut().zip(x) {
        for g in 0..G {
            let flat = amax[g] < GROUP_MAX_EPS;
            lr[g] = if flat {
                0
            } else {
                nmax + level(xr[g], best_iscale[g])
            };
        }
    }
    std::array::from_fn(|g| {
        if amax[g] < GROUP_MAX_EPS {
            0.0
        } else {
            scale[g]
        }
    })
}

/// `make_q3_quants` with `do_rmse` for `G` groups of `N` values at once: each group's
/// symmetric scale, its levels (biased by `nmax`, transposed like `x`) in `levels`.
/// A group stops after its first pass that changes no level, as in ggml; the others go on.
#[inline(always)]
pub(super) fn q3_search<const G: usize, const N: usize>(
    x: &Lanes<G, N>,
    nmax: i32,
    levels: &mut [[i32; G]; N],
) -> [f32; G] {
    // The first value of largest magnitude, as `signed_abs_max` picks it.
    let (mut amax, mut max) = ([0.0f32; G], [0.0f32; G]);
    for xr in x {
        for g in 0..G {
            let a = xr[g].abs();
            let larger = a > amax[g];
            amax[g] = if larger { a } else { amax[g] };
            max[g] = if larger { xr[g] } else { max[g] };
        }
    }
    let iscale: [f32; G] = std::array::from_fn(|g| -(nmax as f32) / max[g]);
    let (mut sumlx, mut suml2) = ([0.0f32; G], [0.0f32; G]);
    for (lr, xr) in levels.iter_mut().zip(x) {
        for g in 0..G {
            let xi = xr[g];
            let q = nearest_int(iscale[g] * xi).clamp(-nmax, nmax - 1);
            lr[g] = q;
            let w = xi * xi;
            sumlx[g] += w * xi * q as f32;
            suml2[g] += w * q as f32 * q as f32;
        }
    }
    let mut active: [bool; G] = std::array::from_fn(|g| amax[g] >= GROUP_MAX_EPS);
    for _ in 0..5 {
        if !active.contains(&true) {
            break;
        }
        let mut changed = [false; G];
        for (lr, xr) in levels.iter_mut().zip(x) {
            for g in 0..G {
                let xi = xr[g];
                let w = xi * xi;
                let old = lr[g] as f32;
                // The sums without this value, then with its new level.
                let rest_lx = sumlx[g] - w * xi * old;
                let rest_l2 = suml2[g] - w * old * old;
                let new_l = nearest_int(xi * rest_l2 / rest_lx).clamp(-nmax, nmax - 1);
                let slx = rest_lx + w * xi * new_l as f32;
                let sl2 = rest_l2 + w * new_l as f32 * new_l as f32;
                let take = active[g]
                    && rest_lx > 0.0
                    && new_l != lr[g]
                    && sl2 > 0.0
                    && slx * slx * suml2[g] > sumlx[g] * sumlx[g] * sl2;
                if take {
                    lr[g] = new_l;
                    sumlx[g] = slx;
                    suml2[g] = sl2;
                    changed[g] = true;
                }
            }
        }
        for g in 0..G {
            active[g] = active[g] && changed[g];
        }
    }
    let scale = std::array::from_fn(|g| {
        if amax[g] >= GROUP_MAX_EPS && suml2[g] > 0.0 {
            sumlx[g] / suml2[g]
        } else {
            0.0
        }
    });
    for lr in levels.iter_mut() {
        for g in 0..G {
            lr[g] = if amax[g] < GROUP_MAX_EPS {
                0
            } else {
                lr[g] + nmax
            };
        }
    }
    scale
}

/// The weighted error of every group against `scale·l + min`, summed in order.
#[inline(always)]
fn affine_errors<const G: usize, const N: usize>(
    x: &Lanes<G, N>,
    w: &Lanes<G, N>,
    levels: &[[i32; G]; N],
    scale: [f32; G],
    min: [f32; G],
    use_mad: bool,
) -> [f32; G] {
    let mut error = [0.0f32; G];
    for ((xr, wr), lr) in x.iter().zip(w).zip(levels) {
        for g in 0..G {
            let diff = scale[g] * lr[g] as f32 + min[g] - xr[g];
            error[g] += wr[g] * if use_mad { diff.abs() } else { diff * diff };
        }
    }
    error
}

/// Defines `pub fn $name(src, dst, imatrix)`, a row quantizer running `$row` compiled for
/// the best instruction set this CPU has: AVX-512 (`$avx512`), AVX2 (`$avx2`) or portable
/// code (`$row` itself). Every build does the same f32 operations; only the vector width
/// differs.
macro_rules! row_builds {
    ($(#[$doc:meta])* $vis:vis $name:ident, $row:ident, $avx2:ident, $avx512:ident) => {
        $(#[$doc])*
        $vis fn $name(src: &[f32], dst: &mut [u8], imatrix: Option<&[f32]>) {
            #[cfg(target_arch = "x86_64")]
            {
                use crate::quant::dispatch::{isa, Isa};
                match isa() {
                    // SAFETY: `isa()` chose AVX-512 only after detecting F, BW, VL and AVX2.
                    Isa::Avx512 => return unsafe { $avx512(src, dst, imatrix) },
                    // SAFETY: `isa()` chose AVX2 only after detecting it.
                    Isa::Avx2 => return unsafe { $avx2(src, dst, imatrix) },
                    _ => {}
                }
            }
            $row(src, dst, imatrix);
        }

        /// The AVX-512 build.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
        fn $avx512(src: &[f32], dst: &mut [u8], imatrix: Option<&[f32]>) {
            $row(src, dst, imatrix);
        }

        /// The AVX2 build.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        fn $avx2(src: &[f32], dst: &mut [u8], imatrix: Option<&[f32]>) {
            $row(src, dst, imatrix);
        }
    };
}
pub(super) use row_builds;

#[cfg(test)]
mod tests {
    use super::super::search::{
        make_q3_quants, make_qkx2_quants, make_qkx3_quants, make_qx_quants,
    };
    use super::*;
    use proptest::prelude::*;

    /// Values of every kind, ordinary ones most often.
    fn any_value() -> impl Strategy<Value = f32> {
        prop_oneof![
            6 => -10.0f32..10.0,
            1 => 0.0f32..5.0,
            1 => Just(0.0f32),
            1 => (-3i32..4).prop_map(|i| i as f32 * 0.25),
            1 => any::<u32>().prop_map(f32::from_bits),
        ]
    }

    /// The lane search of 4 groups of 16 against the scalar search of each group.
    fn check(x: &[f32], w: &[f32], search: AffineSearch, kind: TrialLevel) {
        const G: usize = 4;
        const N: usize = 16;
        let (xt, wt) = (transpose::<G, N>(x), transpose::<G, N>(w));
        let mut lanes = [[0i32; G]; N];
        let (scale, the_min) = affine_search(&xt, &wt, &mut lanes, search, kind);
        let mut got = [0u8; G * N];
        untranspose_levels(&lanes, &mut got);
        for g in 0..G {
            let (xs, ws) = (&x[g * N..(g + 1) * N], &w[g * N..(g + 1) * N]);
            let (mut levels, mut aux) = ([0u8; N], [0u8; N]);
            let want = match kind {
                TrialLevel::Qkx2 => make_qkx2_quants(xs, ws, &mut levels, &mut aux, search),
                TrialLevel::Qkx3 => make_qkx3_quants(xs, ws, &mut levels, &mut aux, search),
            };
            let finite = xs.iter().chain(ws).all(|v| v.is_finite());
            if finite {
                assert_eq!(
                    (scale[g].to_bits(), the_min[g].to_bits()),
                    (want.0.to_bits(), want.1.to_bits()),
                    "group {g}: {xs:?} {ws:?}"
                );
            } else {
                // NaN signs may differ (see `search`); everything else may not.
                let same = |a: f32, b: f32| a.to_bits() == b.to_bits() || a.is_nan() && b.is_nan();
                assert!(
                    same(scale[g], want.0) && same(the_min[g], want.1),
                    "group {g}"
                );
            }
            if finite {
                assert_eq!(&got[g * N..(g + 1) * N], &levels, "group {g}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn qx_lanes_equal_the_scalar_search(
            x in proptest::collection::vec(any_value(), 64),
            w in proptest::collection::vec(any_value(), 64),
            explicit in any::<bool>(),
            nmax in prop::sample::select(vec![4, 8, 16, 32]),
        ) {
            const G: usize = 4;
            const N: usize = 16;
            let w: Vec<f32> = if explicit {
                w.iter().map(|v| v.abs()).collect()
            } else {
                x.iter().map(|v| v * v).collect()
            };
            let mut lanes = [[0i32; G]; N];
            let scale = qx_search(&transpose::<G, N>(&x), &transpose::<G, N>(&w), nmax, &mut lanes);
            let mut got = [0u8; G * N];
            untranspose_levels(&lanes, &mut got);
            for g in 0..G {
                let xs = &x[g * N..(g + 1) * N];
                let mut levels = [0i8; N];
                let qw = explicit.then(|| &w[g * N..(g + 1) * N]);
                let want = make_qx_quants(xs, nmax, &mut levels, 1, qw);
                if xs.iter().chain(&w[g * N..(g + 1) * N]).all(|v| v.is_finite()) {
                    prop_assert_eq!(scale[g].to_bits(), want.to_bits(), "group {}", g);
                    prop_assert_eq!(&got[g * N..(g + 1) * N], &levels.map(|l| l as u8)[..]);
                } else {
                    prop_assert!(scale[g].to_bits() == want.to_bits() || scale[g].is_nan() && want.is_nan());
                }
            }
        }

        #[test]
        fn q3_lanes_equal_the_scalar_search(x in proptest::collection::vec(any_value(), 64)) {
            const G: usize = 4;
            const N: usize = 16;
            let mut lanes = [[0i32; G]; N];
            let scale = q3_search(&transpose::<G, N>(&x), 4, &mut lanes);
            let mut got = [0u8; G * N];
            untranspose_levels(&lanes, &mut got);
            for g in 0..G {
                let xs = &x[g * N..(g + 1) * N];
                let mut levels = [0i8; N];
                let want = make_q3_quants(xs, 4, &mut levels, true);
                if xs.iter().all(|v| v.is_finite()) {
                    prop_assert_eq!(scale[g].to_bits(), want.to_bits(), "group {}", g);
                    prop_assert_eq!(&got[g * N..(g + 1) * N], &levels.map(|l| l as u8)[..]);
                } else {
                    prop_assert!(scale[g].to_bits() == want.to_bits() || scale[g].is_nan() && want.is_nan());
                }
            }
        }

        #[test]
        fn lanes_equal_the_scalar_searches(
            x in proptest::collection::vec(any_value(), 64),
            w in proptest::collection::vec(any_value(), 64),
            pick in 0usize..4,
        ) {
            let w: Vec<f32> = w.iter().map(|v| v.abs()).collect();
            let searches = [
                (AffineSearch { nmax: 3, rmin: -0.5, rdelta: 0.1, nstep: 15, use_mad: true },
                 TrialLevel::Qkx2),
                (AffineSearch { nmax: 15, rmin: -1.0, rdelta: 0.1, nstep: 20, use_mad: false },
                 TrialLevel::Qkx2),
                (AffineSearch { nmax: 3, rmin: -0.9, rdelta: 0.05, nstep: 36, use_mad: false },
                 TrialLevel::Qkx3),
                (AffineSearch { nmax: 31, rmin: -0.9, rdelta: 0.05, nstep: 36, use_mad: false },
                 TrialLevel::Qkx3),
            ];
            let (search, kind) = searches[pick];
            check(&x, &w, search, kind);
        }
    }
}
