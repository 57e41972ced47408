//! The k-quants: `Q2_K`, `Q3_K`, `Q4_K`, `Q5_K`, `Q6_K` and `Q8_K`, 256 weights per
//! super-block.
//!
//! Sub-block scales are formed first (`d * sc`, `dmin * m`, in f32) and then applied to each
//! quant, the order ggml uses; changing it would change rounding.

use crate::quant::blocks::{f16_at, f32_at, q2_k, q3_k, q4_k, q5_k, q6_k, q8_k};

/// Where sub-block `k` (of 16 weights) of a `Q2_K`/`Q3_K` block finds its quants: the first of
/// 16 consecutive `qs` bytes and the bit shift of its 2-bit field.
///
/// Each 32-byte half of `qs` holds 128 weights: four 2-bit planes of 32 weights each, and
/// each plane is split into two sub-blocks of 16.
#[inline]
fn two_bit_plane(k: usize) -> (usize, u8) {
    let start = 32 * (k / 8) + 16 * (k % 2);
    let shift = 2 * ((k % 8) / 2) as u8;
    (start, shift)
}

/// `Q2_K`: `d * sc * q - dmin * m` with 4-bit `sc`, `m` per 16 weights.
pub fn dequantize_q2_k(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(q2_k::SIZE)
        .zip(dst.chunks_exact_mut(q2_k::QK))
    {
        let d = f16_at(block, q2_k::D);
        let dmin = f16_at(block, q2_k::DMIN);
        let scales = &block[q2_k::SCALES..q2_k::SCALES + 16];
        let qs = &block[q2_k::QS..q2_k::QS + 64];
        for (k, (ys, &sc)) in out.chunks_exact_mut(16).zip(scales).enumerate() {
            let dl = d * f32::from(sc & 0x0F);
            let ml = dmin * f32::from(sc >> 4);
            let (start, shift) = two_bit_plane(k);
            for (y, &q) in ys.iter_mut().zip(&qs[start..start + 16]) {
                *y = dl * f32::from((q >> shift) & 3) - ml;
            }
        }
    }
}

/// Scale `k` (0..16) of a `Q3_K` block: a low nibble from bytes 0..8 and two high bits from
/// bytes 8..12, biased by 32.
#[inline]
fn q3_k_scale(scales: &[u8], k: usize) -> i8 {
    let low = if k < 8 {
        scales[k] & 0x0F
    } else {
        scales[k - 8] >> 4
    };
    let high = (scales[8 + k % 4] >> (2 * (k / 4))) & 3;
    (low | (high << 4)) as i8 - 32
}

/// `Q3_K`: `d * (sc - 32) * q` with `q` in -4..=3; a set `hmask` bit means no -4.
pub fn dequantize_q3_k(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(q3_k::SIZE)
        .zip(dst.chunks_exact_mut(q3_k::QK))
    {
        let d = f16_at(block, q3_k::D);
        let hmask = &block[q3_k::HMASK..q3_k::HMASK + 32];
        let qs = &block[q3_k::QS..q3_k::QS + 64];
        let scales = &block[q3_k::SCALES..q3_k::SCALES + 12];
        for (k, ys) in out.chunks_exact_mut(16).enumerate() {
            let dl = d * f32::from(q3_k_scale(scales, k));
            let (start, shift) = two_bit_plane(k);
            // The high bits of all 256 weights cycle through the 32 hmask bytes once per bit.
            let hm = &hmask[16 * (k % 2)..16 * (k % 2) + 16];
            let bit = 1u8 << (4 * (k / 8) + (k % 8) / 2);
            for ((y, &q), &h) in ys.iter_mut().zip(&qs[start..start + 16]).zip(hm) {
                let low = ((q >> shift) & 3) as i8;
                let q = if h & bit == 0 { low - 4 } else { low };
                *y = dl * f32::from(q);
            }
        }
    }
}

/// Scale and min of sub-block `j` (0..8) of a `Q4_K`/`Q5_K` block (ggml's `get_scale_min_k4`):
/// 6 bits each, the first four whole in bytes 0..8, the last four split over 8..12 and the
/// top bits of 0..8.
#[inline]
fn scale_min_k4(scales: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        let sc = (scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4);
        let m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
        (sc, m)
    }
}

/// `d * sc` and `dmin * m` of sub-block `j` of a `Q4_K`/`Q5_K` block.
#[inline]
pub(crate) fn k4_scale_min(d: f32, dmin: f32, scales: &[u8], j: usize) -> (f32, f32) {
    let (sc, m) = scale_min_k4(scales, j);
    (d * f32::from(sc), dmin * f32::from(m))
}

/// `Q4_K`: `d * sc * q - dmin * m` with 6-bit `sc`, `m` per 32 weights.
pub fn dequantize_q4_k(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(q4_k::SIZE)
        .zip(dst.chunks_exact_mut(q4_k::QK))
    {
        let d = f16_at(block, q4_k::D);
        let dmin = f16_at(block, q4_k::DMIN);
        let scales = &block[q4_k::SCALES..q4_k::SCALES + 12];
        let qs = &block[q4_k::QS..q4_k::QS + 128];
        // Each 32 bytes of qs give 64 weights: low nibbles first, then high nibbles.
        for (c, (ys, q32)) in out
            .chunks_exact_mut(64)
            .zip(qs.chunks_exact(32))
            .enumerate()
        {
            let (d1, m1) = k4_scale_min(d, dmin, scales, 2 * c);
            let (d2, m2) = k4_scale_min(d, dmin, scales, 2 * c + 1);
            let (lo, hi) = ys.split_at_mut(32);
            for ((&q, lo), hi) in q32.iter().zip(lo).zip(hi) {
                *lo = d1 * f32::from(q & 0x0F) - m1;
                *hi = d2 * f32::from(q >> 4) - m2;
            }
        }
    }
}

/// `Q5_K`: as `Q4_K` with a fifth bit per weight from `qh`.
pub fn dequantize_q5_k(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(q5_k::SIZE)
        .zip(dst.chunks_exact_mut(q5_k::QK))
    {
        let d = f16_at(block, q5_k::D);
        let dmin = f16_at(block, q5_k::DMIN);
        let scales = &block[q5_k::SCALES..q5_k::SCALES + 12];
        let qh = &block[q5_k::QH..q5_k::QH + 32];
        let qs = &block[q5_k::QS..q5_k::QS + 128];
        for (c, (ys, q32)) in out
            .chunks_exact_mut(64)
            .zip(qs.chunks_exact(32))
            .enumerate()
        {
            let (d1, m1) = k4_scale_min(d, dmin, scales, 2 * c);
            let (d2, m2) = k4_scale_min(d, dmin, scales, 2 * c + 1);
            // Bits 2c and 2c+1 of qh[l] are the fifth bits of the two nibbles of q32[l].
            let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
            let (lo, hi) = ys.split_at_mut(32);
            for (((&q, &h), lo), hi) in q32.iter().zip(qh).zip(lo).zip(hi) {
                let q0 = (q & 0x0F) + if h & u1 != 0 { 16 } else { 0 };
                let q1 = (q >> 4) + if h & u2 != 0 { 16 } else { 0 };
                *lo = d1 * f32::from(q0) - m1;
                *hi = d2 * f32::from(q1) - m2;
            }
        }
    }
}

/// A 6-bit `Q6_K` quant from its low nibble and the 2-bit field at `shift` of `qh`, minus 32.
#[inline]
fn q6(low_nibble: u8, qh: u8, shift: u8) -> f32 {
    f32::from((low_nibble | (((qh >> shift) & 3) << 4)) as i8 - 32)
}

/// `Q6_K`: `d * sc * (q - 32)` with `i8` `sc` per 16 weights.
pub fn dequantize_q6_k(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(q6_k::SIZE)
        .zip(dst.chunks_exact_mut(q6_k::QK))
    {
        let d = f16_at(block, q6_k::D);
        let ql = &block[q6_k::QL..q6_k::QL + 128];
        let qh = &block[q6_k::QH..q6_k::QH + 64];
        let scales = &block[q6_k::SCALES..q6_k::SCALES + 16];
        // Each half of 128 weights uses 64 ql bytes, 32 qh bytes and 8 scales; its four
        // quarters of 32 weights take ql's low nibbles, then high nibbles, of the two 32-byte
        // halves of ql, with successive 2-bit fields of qh.
        let halves = out
            .chunks_exact_mut(128)
            .zip(ql.chunks_exact(64))
            .zip(qh.chunks_exact(32).zip(scales.chunks_exact(8)));
        for ((ys, ql), (qh, sc)) in halves {
            let sc: [f32; 8] = std::array::from_fn(|i| d * f32::from(sc[i] as i8));
            let (ys01, ys23) = ys.split_at_mut(64);
            let (ys0, ys1) = ys01.split_at_mut(32);
            let (ys2, ys3) = ys23.split_at_mut(32);
            let (ql_a, ql_b) = ql.split_at(32);
            let rows = ys0
                .iter_mut()
                .zip(ys1.iter_mut())
                .zip(ys2.iter_mut().zip(ys3.iter_mut()));
            for (l, (((y0, y1), (y2, y3)), ((&a, &b), &h))) in
                rows.zip(ql_a.iter().zip(ql_b).zip(qh)).enumerate()
            {
                let is = l / 16;
                *y0 = sc[is] * q6(a & 0x0F, h, 0);
                *y1 = sc[is + 2] * q6(b & 0x0F, h, 2);
                *y2 = sc[is + 4] * q6(a >> 4, h, 4);
                *y3 = sc[is + 6] * q6(b >> 4, h, 6);
            }
        }
    }
}

/// `Q8_K`: `d * q` with an f32 `d` and `i8` `q`.
pub fn dequantize_q8_k(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(q8_k::SIZE)
        .zip(dst.chunks_exact_mut(q8_k::QK))
    {
        let d = f32_at(block, q8_k::D);
        for (&q, y) in block[q8_k::QS..q8_k::QS + 256].iter().zip(out) {
            *y = d * f32::from(q as i8);
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

    const KERNELS: [(Kernel, usize); 6] = [
        (dequantize_q2_k, q2_k::SIZE),
        (dequantize_q3_k, q3_k::SIZE),
        (dequantize_q4_k, q4_k::SIZE),
        (dequantize_q5_k, q5_k::SIZE),
        (dequantize_q6_k, q6_k::SIZE),
        (dequantize_q8_k, q8_k::SIZE),
    ];

    fn with_f16(mut block: Vec<u8>, at: usize, bits: u16) -> Vec<u8> {
        block[at..at + 2].copy_from_slice(&bits.to_le_bytes());
        block
    }

    #[test]
    fn all_zero_blocks_give_zeros() {
        for (kernel, size) in KERNELS {
            let mut out = [1.0; 256];
            kernel(&vec![0; size], &mut out);
            assert!(out.iter().all(|&v| v == 0.0), "size {size}");
        }
    }

    #[test]
    fn q2_k_layout() {
        let mut b = vec![0u8; q2_k::SIZE];
        b[0] = 0x21; // sub-block 0: sc 1, m 2
        b[15] = 0x03; // sub-block 15: sc 3, m 0
        b[q2_k::QS] = 0b1110_0100; // weight 0 -> 0, weight 32 -> 1, 64 -> 2, 96 -> 3
        b[q2_k::QS + 63] = 0b1100_0000; // weight 255 -> 3
        let b = with_f16(with_f16(b, q2_k::D, 0x3c00), q2_k::DMIN, 0x3800); // d 1, dmin 0.5
        let mut out = [0.0; 256];
        dequantize_q2_k(&b, &mut out);
        assert_eq!(out[0], -1.0);
        assert_eq!(out[255], 9.0);
    }

    #[test]
    fn q3_k_scale_unpacking() {
        let mut scales = [0u8; 12];
        // Low nibbles of k = 3 and 11: A and 5.
        scales[3] = 0x5A;
        // High bits of k = 3, 7, 11, 15 in successive pairs: 2, 0, 1, 3.
        scales[11] = 0b1101_0010;
        assert_eq!(q3_k_scale(&scales, 3), 0x2A - 32);
        assert_eq!(q3_k_scale(&scales, 11), 0x15 - 32);
        assert_eq!(q3_k_scale(&scales, 15), 0x30 - 32);
        assert_eq!(q3_k_scale(&scales, 0), -32);
    }

    #[test]
    fn q3_k_high_bit_plane() {
        let mut b = vec![0u8; q3_k::SIZE];
        b[q3_k::SCALES..q3_k::SCALES + 8].fill(0x11);
        b[q3_k::SCALES + 8..q3_k::SCALES + 12].fill(0xAA); // every scale 0x21 -> 1
        b[q3_k::HMASK + 16] = 1 << 4; // weight 128 + 16 keeps its high bit
        let b = with_f16(b, q3_k::D, 0x3c00);
        let mut out = [0.0; 256];
        dequantize_q3_k(&b, &mut out);
        assert_eq!(out[0], -4.0);
        assert_eq!(out[144], 0.0);
        assert_eq!(out[145], -4.0);
    }

    #[test]
    fn scale_min_k4_unpacking() {
        let mut s = [0u8; 12];
        s[1] = 0b1100_0101; // j=1 scale 5, j=5 scale top bits 3
        s[5] = 0b0100_0111; // j=1 min 7, j=5 min top bits 1
        s[9] = 0x9E; // j=5 scale low E, min low 9
        assert_eq!(scale_min_k4(&s, 1), (5, 7));
        assert_eq!(scale_min_k4(&s, 5), (0x3E, 0x19));
    }

    #[test]
    fn q6_k_quarters() {
        let mut b = vec![0u8; q6_k::SIZE];
        b[q6_k::QL] = 0x21; // weight 0 low nibble 1, weight 64 low nibble 2
        b[q6_k::QH] = 0b1110_0111; // weight 0: 3, weight 32: 1, weight 64: 2, weight 96: 3
        for (i, s) in b[q6_k::SCALES..q6_k::SCALES + 16].iter_mut().enumerate() {
            *s = i as u8 + 1;
        }
        let b = with_f16(b, q6_k::D, 0x3c00);
        let mut out = [0.0; 256];
        dequantize_q6_k(&b, &mut out);
        assert_eq!(out[0], f32::from(0x31i8 - 32));
        assert_eq!(out[32], f32::from(0x10i8 - 32) * 3.0);
        assert_eq!(out[64], f32::from(0x22i8 - 32) * 5.0);
        assert_eq!(out[96], f32::from(0x30i8 - 32) * 7.0);
        assert_eq!(out[16], -32.0 * 2.0);
        assert_eq!(out[128], -32.0 * 9.0);
    }

    #[test]
    fn special_scales_pass_through() {
        let mut out = [0.0; 256];
        let mut b = vec![0x11u8; q4_k::SIZE];
        b = with_f16(with_f16(b, q4_k::D, 0x7c00), q4_k::DMIN, 0x0000);
        dequantize_q4_k(&b, &mut out);
        assert!(out.iter().all(|&v| v == f32::INFINITY));
        let b = with_f16(vec![0x11u8; q6_k::SIZE], q6_k::D, 0x7e00);
        dequantize_q6_k(&b, &mut out);
        assert!(out.iter().all(|v| v.is_nan()));
        let b = with_f16(vec![0x55u8; q2_k::SIZE], q2_k::D, 0x0001);
        let b = with_f16(b, q2_k::DMIN, 0x0000);
        dequantize_q2_k(&b, &mut out);
        assert!(out.iter().all(|&v| v == 5.0 * 2f32.powi(-24)));
        let mut b = vec![0u8; q8_k::SIZE];
        b[..4].copy_from_slice(&f32::NEG_INFINITY.to_le_bytes());
        b[4] = 1;
        dequantize_q8_k(&b, &mut out);
        assert_eq!(out[0], f32::NEG_INFINITY);
        assert!(out[1].is_nan());
    }
}
