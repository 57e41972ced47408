//! The importance-matrix quantizers of `Q4_0`, `Q4_1`, `Q5_0` and `Q5_1`, byte-identical
//! with ggml's `quantize_row_q4_0_impl` and its siblings (what `ggml_quantize_chunk` runs
//! when given quantization weights).
//!
//! Every value is weighted by `qw · sqrt(σ² + x²)`, `σ²` the mean square of the whole row;
//! the symmetric types then search their scale with `make_qx_quants`, the offset types
//! their scale and min with `make_qkx3_quants`, eight blocks at a time in vector lanes. Without weights these types use ggml's
//! plain reference quantizers instead, which live beside the other unweighted paths.
//!
//! Each function takes one row: `src` whole 32-value blocks, `dst` exactly their bytes,
//! `weights` one weight per value; only blocks present in all three are written. Any f32
//! input is accepted and nothing panics or allocates; bytes that derive from a NaN follow
//! the policy in [`super::search`].

#![allow(
    clippy::inline_always,
    reason = "the kernels here are inlined into each instruction-set build of their callers, \
              so that they are compiled for it"
)]

use super::lanes::{
    affine_search, qx_search, row_builds, transpose, untranspose_levels, Lanes, TrialLevel,
};
use super::search::{f16_bits, AffineSearch};
use crate::quant::blocks::{q4_0, q4_1, q5_0, q5_1};

/// Values per block of every legacy type.
const QK: usize = 32;

/// The affine search of the offset types.
const fn search(nmax: i32) -> AffineSearch {
    AffineSearch {
        nmax,
        rmin: -0.9,
        rdelta: 0.05,
        nstep: 36,
        use_mad: false,
    }
}

/// Packs 32 levels of up to 4 bits: value `j` in the low nibble of byte `j`, value `j + 16`
/// in the high one.
fn pack_nibbles(levels: &[u8; QK], qs: &mut [u8]) {
    for (j, q) in qs[..QK / 2].iter_mut().enumerate() {
        *q = (levels[j] & 0x0F) | (levels[j + QK / 2] << 4);
    }
}

/// The fifth bits of 32 levels as ggml's little-endian `qh` word: bit `j` for value `j`.
fn fifth_bits(levels: &[u8; QK]) -> [u8; 4] {
    let qh = levels
        .iter()
        .enumerate()
        .fold(0u32, |qh, (j, &l)| qh | u32::from((l >> 4) & 1) << j);
    qh.to_le_bytes()
}

/// Blocks whose scale searches run side by side (see [`super::lanes`]).
const LANE_BLOCKS: usize = 8;

/// Blocks `first..first + count` of a row (`count` at most [`LANE_BLOCKS`]) and their
/// weights `qw · sqrt(σ² + x²)`, transposed into lanes; missing blocks are zero values of
/// zero weight.
#[inline(always)]
fn weighted_lanes(
    src: &[f32],
    weights: &[f32],
    sigma2: f32,
    first: usize,
    count: usize,
) -> (Lanes<LANE_BLOCKS, QK>, Lanes<LANE_BLOCKS, QK>) {
    let (mut x, mut w) = ([0.0f32; LANE_BLOCKS * QK], [0.0f32; LANE_BLOCKS * QK]);
    let values = first * QK..(first + count) * QK;
    x[..count * QK].copy_from_slice(&src[values.clone()]);
    for ((w, &qw), &v) in w.iter_mut().zip(&weights[values]).zip(&x) {
        *w = qw * (sigma2 + v * v).sqrt();
    }
    (
        transpose::<LANE_BLOCKS, QK>(&x),
        transpose::<LANE_BLOCKS, QK>(&w),
    )
}

/// How a weighted legacy type fits a block: a symmetric scale with levels in `0..2·nmax`
/// (`make_qx_quants`), or a scale and min with levels in `0..=nmax` (`make_qkx3_quants`).
#[derive(Clone, Copy)]
enum Fit {
    Symmetric { nmax: i32 },
    Offset { nmax: i32 },
}

/// Quantizes a row of weighted legacy blocks: `write(d, m, levels, out)` stores each block
/// from its scale, its min (`x ≈ d·l + m`; 0 for symmetric fits) and its levels. The blocks
/// are searched [`LANE_BLOCKS`] at a time; a last, partial group is padded with zero values
/// of zero weight, whose results are dropped.
#[inline(always)]
fn weighted_row(
    src: &[f32],
    dst: &mut [u8],
    weights: &[f32],
    size: usize,
    fit: Fit,
    write: impl Fn(f32, f32, &[u8; QK], &mut [u8]),
) {
    let sum_x2 = src.iter().fold(0.0f32, |s, &v| s + v * v);
    let sigma2 = sum_x2 / src.len() as f32;
    let blocks = (src.len() / QK)
        .min(weights.len() / QK)
        .min(dst.len() / size);
    for first in (0..blocks).step_by(LANE_BLOCKS) {
        let count = (blocks - first).min(LANE_BLOCKS);
        let (xt, wt) = weighted_lanes(src, weights, sigma2, first, count);
        let mut lanes = [[0i32; LANE_BLOCKS]; QK];
        let (d, m) = match fit {
            Fit::Symmetric { nmax } => (qx_search(&xt, &wt, nmax, &mut lanes), [0.0; LANE_BLOCKS]),
            Fit::Offset { nmax } => {
                let (d, the_min) =
                    affine_search(&xt, &wt, &mut lanes, search(nmax), TrialLevel::Qkx3);
                (d, the_min.map(|v| -v))
            }
        };
        let mut levels = [0u8; LANE_BLOCKS * QK];
        untranspose_levels(&lanes, &mut levels);
        let outs = dst[first * size..(first + count) * size].chunks_exact_mut(size);
        for (b, out) in outs.enumerate() {
            let mut block = [0u8; QK];
            block.copy_from_slice(&levels[b * QK..(b + 1) * QK]);
            write(d[b], m[b], &block, out);
        }
    }
}

/// Stores a `Q4_0` block.
fn write_q4_0(d: f32, _m: f32, levels: &[u8; QK], out: &mut [u8]) {
    out[q4_0::D..q4_0::D + 2].copy_from_slice(&f16_bits(d).to_le_bytes());
    pack_nibbles(levels, &mut out[q4_0::QS..]);
}

/// Stores a `Q5_0` block.
fn write_q5_0(d: f32, _m: f32, levels: &[u8; QK], out: &mut [u8]) {
    out[q5_0::D..q5_0::D + 2].copy_from_slice(&f16_bits(d).to_le_bytes());
    out[q5_0::QH..q5_0::QH + 4].copy_from_slice(&fifth_bits(levels));
    pack_nibbles(levels, &mut out[q5_0::QS..]);
}

#[inline(always)]
fn q4_0_row(src: &[f32], dst: &mut [u8], weights: Option<&[f32]>) {
    if let Some(w) = weights {
        weighted_row(
            src,
            dst,
            w,
            q4_0::SIZE,
            Fit::Symmetric { nmax: 8 },
            write_q4_0,
        );
    }
}

#[inline(always)]
fn q5_0_row(src: &[f32], dst: &mut [u8], weights: Option<&[f32]>) {
    if let Some(w) = weights {
        weighted_row(
            src,
            dst,
            w,
            q5_0::SIZE,
            Fit::Symmetric { nmax: 16 },
            write_q5_0,
        );
    }
}

row_builds!(q4_0_dispatch, q4_0_row, q4_0_avx2, q4_0_avx512);
row_builds!(q5_0_dispatch, q5_0_row, q5_0_avx2, q5_0_avx512);

/// `Q4_0` with an importance matrix (ggml's `quantize_row_q4_0_impl`).
pub fn quantize_row_q4_0_imatrix(src: &[f32], dst: &mut [u8], weights: &[f32]) {
    q4_0_dispatch(src, dst, Some(weights));
}

/// `Q5_0` with an importance matrix (ggml's `quantize_row_q5_0_impl`).
pub fn quantize_row_q5_0_imatrix(src: &[f32], dst: &mut [u8], weights: &[f32]) {
    q5_0_dispatch(src, dst, Some(weights));
}

/// Stores a `Q4_1` block.
fn write_q4_1(d: f32, m: f32, levels: &[u8; QK], out: &mut [u8]) {
    out[q4_1::D..q4_1::D + 2].copy_from_slice(&f16_bits(d).to_le_bytes());
    out[q4_1::M..q4_1::M + 2].copy_from_slice(&f16_bits(m).to_le_bytes());
    pack_nibbles(levels, &mut out[q4_1::QS..]);
}

/// Stores a `Q5_1` block.
fn write_q5_1(d: f32, m: f32, levels: &[u8; QK], out: &mut [u8]) {
    out[q5_1::D..q5_1::D + 2].copy_from_slice(&f16_bits(d).to_le_bytes());
    out[q5_1::M..q5_1::M + 2].copy_from_slice(&f16_bits(m).to_le_bytes());
    out[q5_1::QH..q5_1::QH + 4].copy_from_slice(&fifth_bits(levels));
    pack_nibbles(levels, &mut out[q5_1::QS..]);
}

#[inline(always)]
fn q4_1_row(src: &[f32], dst: &mut [u8], weights: Option<&[f32]>) {
    if let Some(w) = weights {
        weighted_row(
            src,
            dst,
            w,
            q4_1::SIZE,
            Fit::Offset { nmax: 15 },
            write_q4_1,
        );
    }
}

#[inline(always)]
fn q5_1_row(src: &[f32], dst: &mut [u8], weights: Option<&[f32]>) {
    if let Some(w) = weights {
        weighted_row(
            src,
            dst,
            w,
            q5_1::SIZE,
            Fit::Offset { nmax: 31 },
            write_q5_1,
        );
    }
}

row_builds!(q4_1_dispatch, q4_1_row, q4_1_avx2, q4_1_avx512);
row_builds!(q5_1_dispatch, q5_1_row, q5_1_avx2, q5_1_avx512);

/// `Q4_1` with an importance matrix (ggml's `quantize_row_q4_1_impl`).
pub fn quantize_row_q4_1_imatrix(src: &[f32], dst: &mut [u8], weights: &[f32]) {
    q4_1_dispatch(src, dst, Some(weights));
}

/// `Q5_1` with an importance matrix (ggml's `quantize_row_q5_1_impl`).
pub fn quantize_row_q5_1_imatrix(src: &[f32], dst: &mut [u8], weights: &[f32]) {
    q5_1_dispatch(src, dst, Some(weights));
}

#[cfg(test)]
mod tests {
    use super::super::search::{make_qkx3_quants, make_qx_quants};
    use super::*;
    use proptest::prelude::*;

    type Writer = fn(f32, f32, &[u8; QK], &mut [u8]);
    type Pair = (Writer, usize, i32, fn(&[f32], &mut [u8], &[f32]));

    /// Calls `quantize_block` with each block, its weights `qw · sqrt(σ² + x²)` and its output.
    fn for_each_weighted_block(
        src: &[f32],
        dst: &mut [u8],
        weights: &[f32],
        size: usize,
        mut quantize_block: impl FnMut(&[f32], &[f32; QK], &mut [u8]),
    ) {
        let sum_x2 = src.iter().fold(0.0f32, |s, &v| s + v * v);
        let sigma2 = sum_x2 / src.len() as f32;
        let blocks = src
            .chunks_exact(QK)
            .zip(weights.chunks_exact(QK))
            .zip(dst.chunks_exact_mut(size));
        for ((x, qw), out) in blocks {
            let w: [f32; QK] = std::array::from_fn(|j| qw[j] * (sigma2 + x[j] * x[j]).sqrt());
            quantize_block(x, &w, out);
        }
    }

    /// One block at a time through the scalar search: what the lanes must reproduce.
    fn one_by_one(src: &[f32], weights: &[f32], size: usize, nmax: i32, write: Writer) -> Vec<u8> {
        let mut out = vec![0u8; src.len() / QK * size];
        for_each_weighted_block(src, &mut out, weights, size, |x, w, out| {
            let (mut levels, mut aux) = ([0u8; QK], [0u8; QK]);
            let (d, the_min) = make_qkx3_quants(x, w, &mut levels, &mut aux, search(nmax));
            write(d, -the_min, &levels, out);
        });
        out
    }

    /// The symmetric types one block at a time through the scalar search.
    fn symmetric_one_by_one(
        src: &[f32],
        weights: &[f32],
        size: usize,
        nmax: i32,
        write: Writer,
    ) -> Vec<u8> {
        let mut out = vec![0u8; src.len() / QK * size];
        for_each_weighted_block(src, &mut out, weights, size, |x, w, out| {
            let mut levels = [0i8; QK];
            let d = make_qx_quants(x, nmax, &mut levels, 1, Some(w));
            write(d, 0.0, &levels.map(|l| l as u8), out);
        });
        out
    }

    proptest! {
        #[test]
        fn symmetric_lanes_equal_one_block_at_a_time(
            blocks in 1usize..20,
            seed in proptest::collection::vec(-8.0f32..8.0, 20 * QK),
            qw in proptest::collection::vec(0.0f32..2.0, 20 * QK),
        ) {
            let (x, w) = (&seed[..blocks * QK], &qw[..blocks * QK]);
            let cases: [Pair; 2] = [
                (write_q4_0, q4_0::SIZE, 8, quantize_row_q4_0_imatrix),
                (write_q5_0, q5_0::SIZE, 16, quantize_row_q5_0_imatrix),
            ];
            for (write, size, nmax, quantize) in cases {
                let want = symmetric_one_by_one(x, w, size, nmax, write);
                let mut got = vec![0xa5u8; want.len()];
                quantize(x, &mut got, w);
                prop_assert_eq!(&got, &want);
                let mut portable = vec![0x5au8; want.len()];
                if nmax == 8 { q4_0_row(x, &mut portable, Some(w)) } else { q5_0_row(x, &mut portable, Some(w)) }
                prop_assert_eq!(&portable, &want);
                #[cfg(target_arch = "x86_64")]
                if crate::quant::dispatch::Isa::Avx2.is_available() {
                    let mut avx2 = vec![0x3cu8; want.len()];
                    // SAFETY: AVX2 was just detected.
                    unsafe {
                        if nmax == 8 { q4_0_avx2(x, &mut avx2, Some(w)) } else { q5_0_avx2(x, &mut avx2, Some(w)) }
                    }
                    prop_assert_eq!(&avx2, &want);
                }
            }
        }

        #[test]
        fn lanes_equal_one_block_at_a_time(
            blocks in 1usize..20,
            seed in proptest::collection::vec(-8.0f32..8.0, 20 * QK),
            qw in proptest::collection::vec(0.0f32..2.0, 20 * QK),
        ) {
            let (x, w) = (&seed[..blocks * QK], &qw[..blocks * QK]);
            let pairs: [Pair; 2] = [
                (write_q4_1, q4_1::SIZE, 15, quantize_row_q4_1_imatrix),
                (write_q5_1, q5_1::SIZE, 31, quantize_row_q5_1_imatrix),
            ];
            for (write, size, nmax, quantize) in pairs {
                let want = one_by_one(x, w, size, nmax, write);
                let mut got = vec![0xa5u8; want.len()];
                quantize(x, &mut got, w);
                prop_assert_eq!(&got, &want);
                let mut portable = vec![0x5au8; want.len()];
                if nmax == 15 { q4_1_row(x, &mut portable, Some(w)) } else { q5_1_row(x, &mut portable, Some(w)) }
                prop_assert_eq!(&portable, &want);
                #[cfg(target_arch = "x86_64")]
                if crate::quant::dispatch::Isa::Avx2.is_available() {
                    let mut avx2 = vec![0x3cu8; want.len()];
                    // SAFETY: AVX2 was just detected.
                    unsafe {
                        if nmax == 15 { q4_1_avx2(x, &mut avx2, Some(w)) } else { q5_1_avx2(x, &mut avx2, Some(w)) }
                    }
                    prop_assert_eq!(&avx2, &want);
                }
            }
        }
    }
}
