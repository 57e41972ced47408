//! The importance-matrix quantizers of `Q4_0`, `Q4_1`, `Q5_0` and `Q5_1`, byte-identical
//! with ggml's `quantize_row_q4_0_impl` and its siblings (what `ggml_quantize_chunk` runs
//! when given quantization weights).
//!
//! Every value is weighted by `qw · sqrt(σ² + x²)`, `σ²` the mean square of the whole row;
//! the symmetric types then search their scale with `make_qx_quants`, the offset types
//! their scale and min with `make_qkx3_quants`. Without weights these types use ggml's
//! plain reference quantizers instead, which live beside the other unweighted paths.
//!
//! Each function takes one row: `src` whole 32-value blocks, `dst` exactly their bytes,
//! `weights` one weight per value; only blocks present in all three are written. Any f32
//! input is accepted and nothing panics or allocates; bytes that derive from a NaN follow
//! the policy in [`super::search`].

use super::search::{f16_bits, make_qkx3_quants, make_qx_quants, AffineSearch};
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

/// Symmetric levels biased by `nmax` (always in `0..2·nmax`) as unsigned bytes.
fn unsigned_levels(x: &[f32], w: &[f32; QK], nmax: i32) -> (f32, [u8; QK]) {
    let mut levels = [0i8; QK];
    let d = make_qx_quants(x, nmax, &mut levels, 1, Some(w));
    (d, levels.map(|l| l as u8))
}

/// `Q4_0` with an importance matrix (ggml's `quantize_row_q4_0_impl`).
pub fn quantize_row_q4_0_imatrix(src: &[f32], dst: &mut [u8], weights: &[f32]) {
    for_each_weighted_block(src, dst, weights, q4_0::SIZE, |x, w, out| {
        let (d, levels) = unsigned_levels(x, w, 8);
        out[q4_0::D..q4_0::D + 2].copy_from_slice(&f16_bits(d).to_le_bytes());
        pack_nibbles(&levels, &mut out[q4_0::QS..]);
    });
}

/// `Q5_0` with an importance matrix (ggml's `quantize_row_q5_0_impl`).
pub fn quantize_row_q5_0_imatrix(src: &[f32], dst: &mut [u8], weights: &[f32]) {
    for_each_weighted_block(src, dst, weights, q5_0::SIZE, |x, w, out| {
        let (d, levels) = unsigned_levels(x, w, 16);
        out[q5_0::D..q5_0::D + 2].copy_from_slice(&f16_bits(d).to_le_bytes());
        out[q5_0::QH..q5_0::QH + 4].copy_from_slice(&fifth_bits(&levels));
        pack_nibbles(&levels, &mut out[q5_0::QS..]);
    });
}

/// Affine levels in `0..=nmax` with their scale and min (`x ≈ d·l + m`).
fn affine_levels(x: &[f32], w: &[f32; QK], nmax: i32) -> (f32, f32, [u8; QK]) {
    let (mut levels, mut aux) = ([0u8; QK], [0u8; QK]);
    let (d, the_min) = make_qkx3_quants(x, w, &mut levels, &mut aux, search(nmax));
    (d, -the_min, levels)
}

/// `Q4_1` with an importance matrix (ggml's `quantize_row_q4_1_impl`).
pub fn quantize_row_q4_1_imatrix(src: &[f32], dst: &mut [u8], weights: &[f32]) {
    for_each_weighted_block(src, dst, weights, q4_1::SIZE, |x, w, out| {
        let (d, m, levels) = affine_levels(x, w, 15);
        out[q4_1::D..q4_1::D + 2].copy_from_slice(&f16_bits(d).to_le_bytes());
        out[q4_1::M..q4_1::M + 2].copy_from_slice(&f16_bits(m).to_le_bytes());
        pack_nibbles(&levels, &mut out[q4_1::QS..]);
    });
}

/// `Q5_1` with an importance matrix (ggml's `quantize_row_q5_1_impl`).
pub fn quantize_row_q5_1_imatrix(src: &[f32], dst: &mut [u8], weights: &[f32]) {
    for_each_weighted_block(src, dst, weights, q5_1::SIZE, |x, w, out| {
        let (d, m, levels) = affine_levels(x, w, 31);
        out[q5_1::D..q5_1::D + 2].copy_from_slice(&f16_bits(d).to_le_bytes());
        out[q5_1::M..q5_1::M + 2].copy_from_slice(&f16_bits(m).to_le_bytes());
        out[q5_1::QH..q5_1::QH + 4].copy_from_slice(&fifth_bits(&levels));
        pack_nibbles(&levels, &mut out[q5_1::QS..]);
    });
}
