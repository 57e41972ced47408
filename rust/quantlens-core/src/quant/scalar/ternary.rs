//! The ternary types of `BitNet` b1.58 and `TriLM` models: `TQ1_0` (base-3 packed) and
//! `TQ2_0` (2-bit).
//!
//! Both decode to `(t - 1) * d` with `t` in 0..=2.

use crate::quant::blocks::{f16_at, tq1_0, tq2_0};

/// Powers of three that rotate trit `n` of a packed byte into the top position.
const POW3: [u8; 5] = [1, 3, 9, 27, 81];

/// Trit `n` (0 = most significant) of a `TQ1_0` byte, as `t - 1`.
///
/// A byte holds five trits as a fixed-point fraction of 3^5; multiplying by 3^n (mod 256)
/// drops the leading `n` trits and `* 3 >> 8` reads the next one, as ggml does.
#[inline]
fn trit(byte: u8, n: usize) -> f32 {
    let q = byte.wrapping_mul(POW3[n]);
    let t = (u16::from(q) * 3) >> 8;
    f32::from(t as i16 - 1)
}

/// Decodes `bytes.len()`-wide runs of `ys`: run `n` takes trit `n` of every byte.
#[inline]
fn put_trits(ys: &mut [f32], bytes: &[u8], d: f32) {
    for (n, run) in ys.chunks_exact_mut(bytes.len()).enumerate() {
        for (y, &b) in run.iter_mut().zip(bytes) {
            *y = trit(b, n) * d;
        }
    }
}

/// `TQ1_0`: 48 bytes of five trits (in runs of 32 and 16 bytes) and 4 bytes of four trits.
pub fn dequantize_tq1_0(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(tq1_0::SIZE)
        .zip(dst.chunks_exact_mut(tq1_0::QK))
    {
        let d = f16_at(block, tq1_0::D);
        let (qs32, qs16) = block[tq1_0::QS..tq1_0::QS + 48].split_at(32);
        let qh = &block[tq1_0::QH..tq1_0::QH + 4];
        let (ys32, rest) = out.split_at_mut(5 * 32);
        let (ys16, ys_h) = rest.split_at_mut(5 * 16);
        put_trits(ys32, qs32, d);
        put_trits(ys16, qs16, d);
        put_trits(ys_h, qh, d);
    }
}

/// `TQ2_0`: 2-bit `q` per weight, each 32 bytes giving four runs of 32 weights.
pub fn dequantize_tq2_0(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(tq2_0::SIZE)
        .zip(dst.chunks_exact_mut(tq2_0::QK))
    {
        let d = f16_at(block, tq2_0::D);
        let qs = &block[tq2_0::QS..tq2_0::QS + 64];
        for (ys128, q32) in out.chunks_exact_mut(128).zip(qs.chunks_exact(32)) {
            for (l, run) in ys128.chunks_exact_mut(32).enumerate() {
                for (y, &q) in run.iter_mut().zip(q32) {
                    let t = (q >> (2 * l)) & 3;
                    *y = f32::from(t as i8 - 1) * d;
                }
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

    /// Packs five trits (most significant first) the way ggml's quantizer does.
    fn pack5(trits: [u8; 5]) -> u8 {
        let q = trits.iter().fold(0u16, |acc, &t| acc * 3 + u16::from(t));
        (q * 256).div_ceil(243) as u8
    }

    #[test]
    fn trits_round_trip_for_every_code() {
        for code in 0..243u16 {
            let trits: [u8; 5] =
                std::array::from_fn(|i| ((code / 3u16.pow(4 - i as u32)) % 3) as u8);
            let b = pack5(trits);
            for (n, &t) in trits.iter().enumerate() {
                assert_eq!(trit(b, n), f32::from(t) - 1.0, "code {code} trit {n}");
            }
        }
    }

    #[test]
    fn tq1_0_layout() {
        let mut b = vec![0u8; tq1_0::SIZE];
        b[0] = pack5([2, 0, 1, 1, 1]); // weights 0, 32, 64, 96, 128
        b[32] = pack5([0, 1, 1, 1, 2]); // weights 160, 176, 192, 208, 224
        b[48] = pack5([2, 1, 1, 0, 1]); // weights 240, 244, 248, 252 (4 trits)
        b[tq1_0::D..].copy_from_slice(&0x4000u16.to_le_bytes()); // d = 2
        let mut out = [0.0; 256];
        dequantize_tq1_0(&b, &mut out);
        assert_eq!((out[0], out[32], out[64]), (2.0, -2.0, 0.0));
        assert_eq!((out[160], out[224]), (-2.0, 2.0));
        assert_eq!((out[240], out[244], out[252]), (2.0, 0.0, -2.0));
        assert_eq!(out[1], -2.0); // a zero byte is all -1 trits
    }

    #[test]
    fn tq2_0_layout() {
        let mut b = vec![0x55u8; tq2_0::SIZE];
        b[0] = 0b1001_0010; // weight 0 -> 2, 32 -> 0, 64 -> 1, 96 -> 2
        b[tq2_0::D..].copy_from_slice(&0x3c00u16.to_le_bytes());
        let mut out = [0.0; 256];
        dequantize_tq2_0(&b, &mut out);
        assert_eq!((out[0], out[32], out[64], out[96]), (1.0, -1.0, 0.0, 1.0));
        assert!(out[1..32].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn zero_and_special_scales() {
        let mut out = [1.0; 256];
        dequantize_tq1_0(&[0; tq1_0::SIZE], &mut out);
        assert!(out.iter().all(|&v| v == 0.0));
        dequantize_tq2_0(&[0; tq2_0::SIZE], &mut out);
        assert!(out.iter().all(|&v| v == 0.0));
        let mut b = vec![0x55u8; tq2_0::SIZE];
        b[tq2_0::D..].copy_from_slice(&0x7c00u16.to_le_bytes());
        dequantize_tq2_0(&b, &mut out);
        assert!(out.iter().all(|v| v.is_nan()), "0 * inf");
        b[tq2_0::D..].copy_from_slice(&0x0001u16.to_le_bytes());
        b[0] = 0xFF;
        dequantize_tq2_0(&b, &mut out);
        assert_eq!(out[0], 2f32.powi(-24) * 2.0);
    }
}
