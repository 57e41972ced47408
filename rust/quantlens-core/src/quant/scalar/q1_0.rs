//! `Q1_0`: one sign bit per weight and an f16 scale per 128 weights, `±d`.
//!
//! Layout and semantics from ggml's `block_q1_0` and `dequantize_row_q1_0`: bit `j % 8` of
//! byte `j / 8` set gives `+d`, clear gives `-d`. gguf-py 0.19.0 has no `Q1_0` dequantizer.

use crate::quant::blocks::{f16_at, q1_0};

/// `Q1_0`: `+d` for a set bit, `-d` for a clear one, least significant bit first.
pub fn dequantize_q1_0(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(q1_0::SIZE)
        .zip(dst.chunks_exact_mut(q1_0::QK))
    {
        let d = f16_at(block, q1_0::D);
        let neg_d = -d;
        for (ys, &bits) in out.chunks_exact_mut(8).zip(&block[q1_0::QS..q1_0::QS + 16]) {
            for (j, y) in ys.iter_mut().enumerate() {
                *y = if (bits >> j) & 1 != 0 { d } else { neg_d };
            }
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

    #[test]
    fn bit_order_and_sign() {
        let mut b = [0u8; q1_0::SIZE];
        b[..2].copy_from_slice(&0x3800u16.to_le_bytes()); // d = 0.5
        b[2] = 0b0000_0101; // weights 0 and 2 positive
        b[17] = 0x80; // weight 127 positive
        let mut out = [0.0; 128];
        dequantize_q1_0(&b, &mut out);
        assert_eq!(&out[..4], &[0.5, -0.5, 0.5, -0.5]);
        assert_eq!((out[126], out[127]), (-0.5, 0.5));
    }

    #[test]
    fn zero_and_special_scales() {
        let mut b = [0u8; q1_0::SIZE];
        let mut out = [1.0; 128];
        dequantize_q1_0(&b, &mut out);
        assert!(out.iter().all(|&v| v == 0.0 && v.is_sign_negative()));
        b[..2].copy_from_slice(&0x7c00u16.to_le_bytes());
        b[2] = 1;
        dequantize_q1_0(&b, &mut out);
        assert_eq!((out[0], out[1]), (f32::INFINITY, f32::NEG_INFINITY));
        b[..2].copy_from_slice(&0x7e00u16.to_le_bytes());
        dequantize_q1_0(&b, &mut out);
        assert!(out.iter().all(|v| v.is_nan()));
    }
}
