//! The 32-weight legacy blocks: `Q4_0`, `Q4_1`, `Q5_0`, `Q5_1` and `Q8_0`.
//!
//! In the 4- and 5-bit types, byte `j` of `qs` holds weight `j` in its low nibble and weight
//! `j + 16` in its high nibble.

use crate::quant::blocks::{f16_at, q4_0, q4_1, q5_0, q5_1, q8_0, u32_at};

/// The fifth bit of weight `j` from a Q5 `qh` word, in place as bit 4.
#[inline]
fn high_bit(qh: u32, j: usize) -> u8 {
    (((qh >> j) & 1) as u8) << 4
}

/// `Q4_0`: `(q - 8) * d`.
pub fn dequantize_q4_0(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(q4_0::SIZE)
        .zip(dst.chunks_exact_mut(q4_0::QK))
    {
        let d = f16_at(block, q4_0::D);
        let (lo, hi) = out.split_at_mut(q4_0::QK / 2);
        for ((&q, lo), hi) in block[q4_0::QS..].iter().zip(lo).zip(hi) {
            *lo = f32::from(i16::from(q & 0x0F) - 8) * d;
            *hi = f32::from(i16::from(q >> 4) - 8) * d;
        }
    }
}

/// `Q4_1`: `q * d + m`.
pub fn dequantize_q4_1(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(q4_1::SIZE)
        .zip(dst.chunks_exact_mut(q4_1::QK))
    {
        let d = f16_at(block, q4_1::D);
        let m = f16_at(block, q4_1::M);
        let (lo, hi) = out.split_at_mut(q4_1::QK / 2);
        for ((&q, lo), hi) in block[q4_1::QS..].iter().zip(lo).zip(hi) {
            *lo = f32::from(q & 0x0F) * d + m;
            *hi = f32::from(q >> 4) * d + m;
        }
    }
}

/// `Q5_0`: `(q - 16) * d`, the fifth bits coming from `qh`.
pub fn dequantize_q5_0(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(q5_0::SIZE)
        .zip(dst.chunks_exact_mut(q5_0::QK))
    {
        let d = f16_at(block, q5_0::D);
        let qh = u32_at(block, q5_0::QH);
        let (lo, hi) = out.split_at_mut(q5_0::QK / 2);
        for (j, ((&q, lo), hi)) in block[q5_0::QS..].iter().zip(lo).zip(hi).enumerate() {
            let q0 = (q & 0x0F) | high_bit(qh, j);
            let q1 = (q >> 4) | high_bit(qh, j + 16);
            *lo = f32::from(i16::from(q0) - 16) * d;
            *hi = f32::from(i16::from(q1) - 16) * d;
        }
    }
}

/// `Q5_1`: `q * d + m`, the fifth bits coming from `qh`.
pub fn dequantize_q5_1(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(q5_1::SIZE)
        .zip(dst.chunks_exact_mut(q5_1::QK))
    {
        let d = f16_at(block, q5_1::D);
        let m = f16_at(block, q5_1::M);
        let qh = u32_at(block, q5_1::QH);
        let (lo, hi) = out.split_at_mut(q5_1::QK / 2);
        for (j, ((&q, lo), hi)) in block[q5_1::QS..].iter().zip(lo).zip(hi).enumerate() {
            let q0 = (q & 0x0F) | high_bit(qh, j);
            let q1 = (q >> 4) | high_bit(qh, j + 16);
            *lo = f32::from(q0) * d + m;
            *hi = f32::from(q1) * d + m;
        }
    }
}

/// `Q8_0`: `q * d` with signed 8-bit `q`.
pub fn dequantize_q8_0(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(q8_0::SIZE)
        .zip(dst.chunks_exact_mut(q8_0::QK))
    {
        let d = f16_at(block, q8_0::D);
        for (&q, y) in block[q8_0::QS..].iter().zip(out) {
            *y = f32::from(q as i8) * d;
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

    const ONE: [u8; 2] = [0x00, 0x3c];
    const INF: [u8; 2] = [0x00, 0x7c];
    const NAN: [u8; 2] = [0x00, 0x7e];
    const SUBNORMAL: [u8; 2] = [0x01, 0x00];

    fn block(len: usize, head: &[u8], rest: u8) -> Vec<u8> {
        let mut b = vec![rest; len];
        b[..head.len()].copy_from_slice(head);
        b
    }

    #[test]
    fn all_zero_blocks() {
        let mut out = [1.0; 32];
        dequantize_q4_0(&[0; 18], &mut out);
        assert!(out.iter().all(|&v| v == 0.0));
        dequantize_q8_0(&[0; 34], &mut out);
        assert!(out.iter().all(|&v| v == 0.0));
        dequantize_q5_1(&[0; 24], &mut out);
        assert!(out.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn q4_0_nibble_order_and_offset() {
        let mut b = block(18, &ONE, 0x88);
        b[2] = 0xF0; // weight 0 = 0 - 8, weight 16 = 15 - 8
        let mut out = [0.0; 32];
        dequantize_q4_0(&b, &mut out);
        assert_eq!((out[0], out[16], out[1]), (-8.0, 7.0, 0.0));
    }

    #[test]
    fn q4_1_adds_the_min() {
        let mut b = block(20, &[0x00, 0x40, 0x00, 0xbc], 0x00); // d = 2, m = -1
        b[4] = 0x3F;
        let mut out = [0.0; 32];
        dequantize_q4_1(&b, &mut out);
        assert_eq!((out[0], out[16], out[1]), (29.0, 5.0, -1.0));
    }

    #[test]
    fn q5_high_bits_come_from_qh() {
        // qh bit 0 -> weight 0, bit 16 -> weight 16, bit 31 -> weight 31.
        let mut b = block(22, &ONE, 0);
        b[2..6].copy_from_slice(&(1u32 | 1 << 16 | 1 << 31).to_le_bytes());
        let mut out = [0.0; 32];
        dequantize_q5_0(&b, &mut out);
        assert_eq!((out[0], out[1], out[16], out[31]), (0.0, -16.0, 0.0, 0.0));
        let mut b1 = block(24, &[0x00, 0x3c, 0x00, 0x00], 0);
        b1[4..8].copy_from_slice(&(1u32 << 5).to_le_bytes());
        dequantize_q5_1(&b1, &mut out);
        assert_eq!((out[5], out[6]), (16.0, 0.0));
    }

    #[test]
    fn q8_0_is_signed() {
        let b = block(34, &[0x00, 0x40, 0x80, 0x7f, 0xff], 0);
        let mut out = [0.0; 32];
        dequantize_q8_0(&b, &mut out);
        assert_eq!(&out[..3], &[-256.0, 254.0, -2.0]);
    }

    #[test]
    fn special_scales_pass_through() {
        let mut out = [0.0; 32];
        dequantize_q8_0(&block(34, &INF, 1), &mut out);
        assert!(out.iter().all(|&v| v == f32::INFINITY));
        dequantize_q8_0(&block(34, &INF, 0), &mut out);
        assert!(out.iter().all(|v| v.is_nan()), "0 * inf is NaN, as in ggml");
        dequantize_q4_0(&block(18, &NAN, 0x99), &mut out);
        assert!(out.iter().all(|v| v.is_nan()));
        dequantize_q4_0(&block(18, &SUBNORMAL, 0x99), &mut out);
        assert!(out.iter().all(|&v| v == 2f32.powi(-24)));
    }

    #[test]
    fn partial_output_is_left_alone() {
        let mut out = [5.0; 40];
        dequantize_q4_0(&block(18, &ONE, 0x88), &mut out);
        assert!(out[..32].iter().all(|&v| v == 0.0));
        assert!(out[32..].iter().all(|&v| v == 5.0));
    }
}
