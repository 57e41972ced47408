//! The FP4 types: MXFP4 (E8M0 scale per 32) and NVFP4 (UE4M3 scale per 16).
//!
//! Both store E2M1 codes that index [`KVALUES_MXFP4`], which holds the E2M1 values doubled;
//! the scale decoders return half the scale to compensate, exactly as ggml's
//! `ggml_e8m0_to_fp32_half` and `ggml_ue4m3_to_fp32` do.

use super::iq_grids::KVALUES_MXFP4;
use crate::quant::blocks::{mxfp4, nvfp4};

/// Half of the E8M0 scale `2^(e - 127)`, i.e. `2^(e - 128)`, built from its bits; `e < 2`
/// gives subnormals.
#[inline]
pub fn e8m0_to_f32_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        u32::from(e - 1) << 23
    };
    f32::from_bits(bits)
}

/// `2^e` for `e` in the normal f32 range.
#[inline]
fn pow2(e: i32) -> f32 {
    f32::from_bits(((e + 127) as u32) << 23)
}

/// Half of an unsigned E4M3 scale (bias 7, bit 7 ignored); `0x00` and `0x7F` (the NaN code)
/// give zero. Every result is exact, so the formula's order does not matter.
#[inline]
pub fn ue4m3_to_f32_half(x: u8) -> f32 {
    if x == 0 || x == 0x7F {
        return 0.0;
    }
    let exp = (x >> 3) & 0x0F;
    let man = f32::from(x & 0x07);
    let raw = if exp == 0 {
        man * pow2(-9)
    } else {
        (1.0 + man / 8.0) * pow2(i32::from(exp) - 7)
    };
    raw * 0.5
}

/// `kvalues_mxfp4[code] * d` for 2 × `qs.len()` nibbles: low nibbles to `lo`, high to `hi`.
#[inline]
fn put_e2m1(lo: &mut [f32], hi: &mut [f32], d: f32, qs: &[u8]) {
    for ((&q, lo), hi) in qs.iter().zip(lo).zip(hi) {
        *lo = f32::from(KVALUES_MXFP4[usize::from(q & 0x0F)]) * d;
        *hi = f32::from(KVALUES_MXFP4[usize::from(q >> 4)]) * d;
    }
}

/// MXFP4: 32 E2M1 values sharing one E8M0 scale; nibbles ordered as in `Q4_0`.
pub fn dequantize_mxfp4(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(mxfp4::SIZE)
        .zip(dst.chunks_exact_mut(mxfp4::QK))
    {
        let d = e8m0_to_f32_half(block[mxfp4::E]);
        let (lo, hi) = out.split_at_mut(16);
        put_e2m1(lo, hi, d, &block[mxfp4::QS..]);
    }
}

/// NVFP4: four sub-blocks of 16 E2M1 values, each with its own UE4M3 scale.
pub fn dequantize_nvfp4(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(nvfp4::SIZE)
        .zip(dst.chunks_exact_mut(nvfp4::QK))
    {
        let scales = &block[nvfp4::D..nvfp4::D + 4];
        let qs = &block[nvfp4::QS..nvfp4::QS + 32];
        for ((ys, q8), &s) in out.chunks_exact_mut(16).zip(qs.chunks_exact(8)).zip(scales) {
            let (lo, hi) = ys.split_at_mut(8);
            put_e2m1(lo, hi, ue4m3_to_f32_half(s), q8);
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
    fn e8m0_half_covers_subnormals_and_the_top() {
        assert_eq!(e8m0_to_f32_half(0).to_bits(), 0x0020_0000); // 2^-128
        assert_eq!(e8m0_to_f32_half(1).to_bits(), 0x0040_0000); // 2^-127
        assert_eq!(e8m0_to_f32_half(127), 0.5);
        assert_eq!(e8m0_to_f32_half(128), 1.0);
        assert_eq!(e8m0_to_f32_half(255), 2f32.powi(127));
    }

    #[test]
    fn ue4m3_half_matches_the_format() {
        assert_eq!(ue4m3_to_f32_half(0x00), 0.0);
        assert_eq!(ue4m3_to_f32_half(0x7F), 0.0);
        assert_eq!(ue4m3_to_f32_half(0x01), 2f32.powi(-10)); // smallest subnormal, halved
        assert_eq!(ue4m3_to_f32_half(0x38), 0.5); // exp 7 -> 1.0, halved
        assert_eq!(ue4m3_to_f32_half(0x7E), 224.0); // 1.75 * 2^8, halved
        assert_eq!(ue4m3_to_f32_half(0x80), 0.0); // bit 7 ignored: exp 0, man 0
        assert_eq!(ue4m3_to_f32_half(0xFF), 240.0); // only 0x7F itself is the NaN code
        assert_eq!(ue4m3_to_f32_half(0xB8), 0.5);
    }

    #[test]
    fn mxfp4_block() {
        let mut b = [0u8; mxfp4::SIZE];
        b[0] = 128; // d = 1
        b[1] = 0xF7; // weight 0 -> 12, weight 16 -> -12
        let mut out = [1.0; 32];
        dequantize_mxfp4(&b, &mut out);
        assert_eq!((out[0], out[16], out[1]), (12.0, -12.0, 0.0));
        b[0] = 255;
        dequantize_mxfp4(&b, &mut out);
        assert_eq!(out[0], f32::INFINITY, "12 * 2^127 overflows as in ggml");
    }

    #[test]
    fn nvfp4_sub_blocks() {
        let mut b = [0u8; nvfp4::SIZE];
        b[..4].copy_from_slice(&[0x38, 0x40, 0x00, 0x7F]); // 0.5, 1.0, 0, 0
        b[4] = 0x21; // sub-block 0: weight 0 -> 1, weight 8 -> 2
        b[12] = 0x0F; // sub-block 1: weight 16 -> -12
        b[20] = 0x77; // zero scale
        let mut out = [1.0; 64];
        dequantize_nvfp4(&b, &mut out);
        assert_eq!((out[0], out[8], out[1]), (0.5, 1.0, 0.0));
        assert_eq!(out[16], -12.0);
        assert!(out[32..].iter().all(|&v| v == 0.0));
    }
}
