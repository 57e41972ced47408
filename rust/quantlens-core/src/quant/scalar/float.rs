//! Plain element types widened or narrowed to f32: F32, F16, BF16, F64 and the integers.
//!
//! F16 and BF16 widen exactly (ggml's `ggml_fp16_to_fp32_row`/`ggml_bf16_to_fp32_row`); F64
//! and the 32/64-bit integers round to nearest-even, as a C or numpy cast to `float` does.

use half::f16;

/// F32: the little-endian bits, unchanged.
pub fn dequantize_f32(src: &[u8], dst: &mut [f32]) {
    for (b, out) in src.chunks_exact(4).zip(dst) {
        *out = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

/// F16: exact widening, subnormals and NaN payloads included.
pub fn dequantize_f16(src: &[u8], dst: &mut [f32]) {
    for (b, out) in src.chunks_exact(2).zip(dst) {
        *out = f16::from_le_bytes([b[0], b[1]]).to_f32();
    }
}

/// BF16: the 16 stored bits become the top half of an f32.
pub fn dequantize_bf16(src: &[u8], dst: &mut [f32]) {
    for (b, out) in src.chunks_exact(2).zip(dst) {
        *out = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16);
    }
}

/// F64: rounded to the nearest f32.
pub fn dequantize_f64(src: &[u8], dst: &mut [f32]) {
    for (b, out) in src.chunks_exact(8).zip(dst) {
        *out = f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32;
    }
}

/// I8: exact.
pub fn dequantize_i8(src: &[u8], dst: &mut [f32]) {
    for (&b, out) in src.iter().zip(dst) {
        *out = f32::from(b as i8);
    }
}

/// I16: exact.
pub fn dequantize_i16(src: &[u8], dst: &mut [f32]) {
    for (b, out) in src.chunks_exact(2).zip(dst) {
        *out = f32::from(i16::from_le_bytes([b[0], b[1]]));
    }
}

/// I32: rounded to the nearest f32 beyond 2^24.
pub fn dequantize_i32(src: &[u8], dst: &mut [f32]) {
    for (b, out) in src.chunks_exact(4).zip(dst) {
        *out = i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32;
    }
}

/// I64: rounded to the nearest f32 beyond 2^24.
pub fn dequantize_i64(src: &[u8], dst: &mut [f32]) {
    for (b, out) in src.chunks_exact(8).zip(dst) {
        *out = i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32;
    }
}

#[cfg(test)]
#[allow(
    clippy::float_cmp,
    reason = "bit-exact equality is what these tests check"
)]
mod tests {
    use super::*;

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn f32_keeps_every_bit_pattern() {
        let pats = [
            0u32,
            0x8000_0000,
            1,
            0x7f80_0000,
            0xff80_0000,
            0x7fc0_0001,
            0x7f80_0001,
        ];
        let src: Vec<u8> = pats.iter().flat_map(|p| p.to_le_bytes()).collect();
        let mut dst = [0.0; 7];
        dequantize_f32(&src, &mut dst);
        assert_eq!(bits(&dst), pats);
    }

    #[test]
    fn f16_widens_subnormals_infinities_and_nans() {
        let src = [
            0x01, 0x00, 0xff, 0x7b, 0x00, 0x7c, 0x00, 0xfc, 0x00, 0x7e, 0x00, 0x80,
        ];
        let mut dst = [0.0; 6];
        dequantize_f16(&src, &mut dst);
        assert_eq!(dst[0], 2f32.powi(-24));
        assert_eq!(dst[1], 65504.0);
        assert_eq!(dst[2], f32::INFINITY);
        assert_eq!(dst[3], f32::NEG_INFINITY);
        assert!(dst[4].is_nan());
        assert_eq!(dst[5].to_bits(), 0x8000_0000);
    }

    #[test]
    fn bf16_is_the_top_half() {
        let mut dst = [0.0; 2];
        dequantize_bf16(&[0x80, 0x3f, 0xc1, 0xff], &mut dst);
        assert_eq!(bits(&dst), [0x3f80_0000, 0xffc1_0000]);
    }

    #[test]
    fn wide_types_round_to_nearest() {
        let mut dst = [0.0; 1];
        dequantize_f64(&(1.0f64 + f64::EPSILON).to_le_bytes(), &mut dst);
        assert_eq!(dst[0], 1.0);
        dequantize_i32(&16_777_217i32.to_le_bytes(), &mut dst);
        assert_eq!(dst[0], 16_777_216.0);
        dequantize_i64(&(-(1i64 << 40) - 1).to_le_bytes(), &mut dst);
        assert_eq!(dst[0], -(2f32.powi(40)));
        dequantize_i16(&(-300i16).to_le_bytes(), &mut dst);
        assert_eq!(dst[0], -300.0);
        dequantize_i8(&[0x80], &mut dst);
        assert_eq!(dst[0], -128.0);
    }

    #[test]
    fn stops_at_the_shorter_side() {
        let mut dst = [7.0; 3];
        dequantize_f16(&[0, 0x3c, 0], &mut dst);
        assert_eq!(dst, [1.0, 7.0, 7.0]);
    }
}
