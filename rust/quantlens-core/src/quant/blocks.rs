//! Byte layouts of ggml's blocks (`ggml-common.h`) and the little-endian readers for their fields.
//!
//! Each type has a module named after it holding `QK` (weights per block), `SIZE` (bytes per
//! block) and the byte offset of every field, named as in ggml's `block_*` structs. The
//! offsets are checked at compile time to tile the block exactly and to agree with the
//! geometry in [`crate::dtype::KNOWN_TYPES`].
//!
//! Kernels walk `src.chunks_exact(SIZE)`, so every offset below is in bounds of the block
//! it is applied to by construction.

use crate::dtype::{GgmlType, KNOWN_TYPES};
use half::f16;

/// Weights in a k-quant or i-quant super-block (`QK_K`).
pub const QK_K: usize = 256;

/// The little-endian f16 at `at`, widened to f32 exactly (subnormals, infinities and NaNs
/// included, as ggml's `GGML_FP16_TO_FP32` does).
#[inline]
pub fn f16_at(block: &[u8], at: usize) -> f32 {
    f16::from_bits(u16_at(block, at)).to_f32()
}

/// The little-endian `u16` at `at`.
#[inline]
pub fn u16_at(block: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([block[at], block[at + 1]])
}

/// The little-endian `u32` at `at`.
#[inline]
pub fn u32_at(block: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([block[at], block[at + 1], block[at + 2], block[at + 3]])
}

/// The little-endian f32 at `at`, bit for bit.
#[inline]
pub fn f32_at(block: &[u8], at: usize) -> f32 {
    f32::from_bits(u32_at(block, at))
}

/// Whether `ty` is known with exactly this geometry; usable in `const` assertions.
const fn geometry_is(ty: GgmlType, qk: usize, size: usize) -> bool {
    let mut i = 0;
    while i < KNOWN_TYPES.len() {
        let t = &KNOWN_TYPES[i];
        if t.id == ty.0 {
            return t.block_size as usize == qk && t.type_size as usize == size;
        }
        i += 1;
    }
    false
}

/// Declares one block layout: its geometry, its fields in storage order, and compile-time
/// checks that the fields tile `SIZE` and that the geometry matches the type table.
macro_rules! layout {
    (
        $(#[$doc:meta])*
        $module:ident = $ty:ident, qk $qk:expr, size $size:expr;
        $( $(#[$fdoc:meta])* $field:ident: $len:expr ),+ $(,)?
    ) => {
        $(#[$doc])*
        pub mod $module {
            /// Weights per block.
            pub const QK: usize = $qk;
            /// Bytes per block.
            pub const SIZE: usize = $size;
            layout!(@fields 0usize; $( $(#[$fdoc])* $field: $len, )+);
            const _: () = assert!(
                layout!(@end 0usize; $( $len, )+) == SIZE,
                "fields must tile the block"
            );
            const _: () = assert!(
                super::geometry_is(crate::dtype::GgmlType::$ty, QK, SIZE),
                "layout must match dtype::KNOWN_TYPES"
            );
        }
    };
    (@fields $at:expr; $(#[$fdoc:meta])* $field:ident: $len:expr, $($rest:tt)*) => {
        $(#[$fdoc])*
        pub const $field: usize = $at;
        layout!(@fields $at + $len; $($rest)*);
    };
    (@fields $at:expr;) => {};
    (@end $at:expr; $len:expr, $($rest:tt)*) => { layout!(@end $at + $len; $($rest)*) };
    (@end $at:expr;) => { $at };
}

layout! {
    /// `block_q4_0`: `d * (q - 8)` with 4-bit `q`.
    q4_0 = Q4_0, qk 32, size 18;
    /// f16 scale.
    D: 2,
    /// 16 bytes: weight `j` in the low nibble of byte `j`, weight `j + 16` in the high one.
    QS: 16,
}

layout! {
    /// `block_q4_1`: `d * q + m` with 4-bit `q`.
    q4_1 = Q4_1, qk 32, size 20;
    /// f16 scale.
    D: 2,
    /// f16 offset (the block minimum).
    M: 2,
    /// 16 bytes of nibbles, as in `Q4_0`.
    QS: 16,
}

layout! {
    /// `block_q5_0`: `d * (q - 16)` with 5-bit `q`.
    q5_0 = Q5_0, qk 32, size 22;
    /// f16 scale.
    D: 2,
    /// 32 fifth bits, bit `j` of the little-endian `u32` for weight `j`.
    QH: 4,
    /// 16 bytes of low nibbles, as in `Q4_0`.
    QS: 16,
}

layout! {
    /// `block_q5_1`: `d * q + m` with 5-bit `q`.
    q5_1 = Q5_1, qk 32, size 24;
    /// f16 scale.
    D: 2,
    /// f16 offset (the block minimum).
    M: 2,
    /// 32 fifth bits, as in `Q5_0`.
    QH: 4,
    /// 16 bytes of low nibbles, as in `Q4_0`.
    QS: 16,
}

layout! {
    /// `block_q8_0`: `d * q` with `i8` `q`.
    q8_0 = Q8_0, qk 32, size 34;
    /// f16 scale.
    D: 2,
    /// 32 `i8` quants.
    QS: 32,
}

layout! {
    /// `block_q2_K`: 16 sub-blocks of 16, `d * sc * q - dmin * m` with 2-bit `q`.
    q2_k = Q2_K, qk 256, size 84;
    /// 16 bytes: sub-block scale in the low nibble, sub-block min in the high one.
    SCALES: 16,
    /// 64 bytes of 2-bit quants, four per byte.
    QS: 64,
    /// f16 super-block scale of the scales.
    D: 2,
    /// f16 super-block scale of the mins.
    DMIN: 2,
}

layout! {
    /// `block_q3_K`: 16 sub-blocks of 16, `d * (sc - 32) * q` with 3-bit signed `q`.
    q3_k = Q3_K, qk 256, size 110;
    /// 32 bytes of high bits; a clear bit subtracts 4 from the quant.
    HMASK: 32,
    /// 64 bytes of low 2-bit quants.
    QS: 64,
    /// 12 bytes holding sixteen 6-bit scales.
    SCALES: 12,
    /// f16 super-block scale.
    D: 2,
}

layout! {
    /// `block_q4_K`: 8 sub-blocks of 32, `d * sc * q - dmin * m` with 4-bit `q`.
    q4_k = Q4_K, qk 256, size 144;
    /// f16 super-block scale of the scales.
    D: 2,
    /// f16 super-block scale of the mins.
    DMIN: 2,
    /// 12 bytes holding eight 6-bit scales and eight 6-bit mins.
    SCALES: 12,
    /// 128 bytes of nibbles.
    QS: 128,
}

layout! {
    /// `block_q5_K`: 8 sub-blocks of 32, `d * sc * q - dmin * m` with 5-bit `q`.
    q5_k = Q5_K, qk 256, size 176;
    /// f16 super-block scale of the scales.
    D: 2,
    /// f16 super-block scale of the mins.
    DMIN: 2,
    /// 12 bytes holding eight 6-bit scales and eight 6-bit mins, as in `Q4_K`.
    SCALES: 12,
    /// 32 bytes of fifth bits.
    QH: 32,
    /// 128 bytes of low nibbles.
    QS: 128,
}

layout! {
    /// `block_q6_K`: 16 sub-blocks of 16, `d * sc * (q - 32)` with 6-bit `q`.
    q6_k = Q6_K, qk 256, size 210;
    /// 128 bytes of low nibbles.
    QL: 128,
    /// 64 bytes of high 2-bit pairs.
    QH: 64,
    /// 16 `i8` sub-block scales.
    SCALES: 16,
    /// f16 super-block scale.
    D: 2,
}

layout! {
    /// `block_q8_K`: `d * q` with an f32 scale (ggml's intermediate type for dot products).
    q8_k = Q8_K, qk 256, size 292;
    /// f32 scale.
    D: 4,
    /// 256 `i8` quants.
    QS: 256,
    /// 16 `i16` sums of groups of 16 quants (not needed to dequantize).
    BSUMS: 32,
}

layout! {
    /// `block_iq2_xxs`: groups of 8 from a 256-entry grid, 4-bit scale per 32 weights.
    iq2_xxs = IQ2_XXS, qk 256, size 66;
    /// f16 scale.
    D: 2,
    /// 64 bytes: per 32 weights, four grid indices then a `u32` of 4 × 7 sign bits and a scale.
    QS: 64,
}

layout! {
    /// `block_iq2_xs`: groups of 8 from a 512-entry grid, 4-bit scale per 16 weights.
    iq2_xs = IQ2_XS, qk 256, size 74;
    /// f16 scale.
    D: 2,
    /// 32 `u16`: a 9-bit grid index and a 7-bit sign index each.
    QS: 64,
    /// 8 bytes of two 4-bit scales.
    SCALES: 8,
}

layout! {
    /// `block_iq2_s`: groups of 8 from a 1024-entry grid with explicit sign bytes.
    iq2_s = IQ2_S, qk 256, size 82;
    /// f16 scale.
    D: 2,
    /// 64 bytes: 32 low bytes of grid indices, then 32 sign bytes.
    QS: 64,
    /// 8 bytes: the high 2 bits of four grid indices each.
    QH: 8,
    /// 8 bytes of two 4-bit scales.
    SCALES: 8,
}

layout! {
    /// `block_iq3_xxs`: groups of 4 from a 256-entry grid, 4-bit scale per 32 weights.
    iq3_xxs = IQ3_XXS, qk 256, size 98;
    /// f16 scale.
    D: 2,
    /// 96 bytes: 64 grid indices, then 8 `u32` of 4 × 7 sign bits and a scale.
    QS: 96,
}

layout! {
    /// `block_iq3_s`: groups of 4 from a 512-entry grid with explicit sign bytes.
    iq3_s = IQ3_S, qk 256, size 110;
    /// f16 scale.
    D: 2,
    /// 64 low bytes of grid indices.
    QS: 64,
    /// 8 bytes: the ninth bit of eight grid indices each.
    QH: 8,
    /// 32 sign bytes, one bit per weight.
    SIGNS: 32,
    /// 4 bytes of two 4-bit scales.
    SCALES: 4,
}

layout! {
    /// `block_iq1_s`: groups of 8 from a 2048-entry ternary grid, shifted by ±1/8.
    iq1_s = IQ1_S, qk 256, size 50;
    /// f16 scale.
    D: 2,
    /// 32 low bytes of grid indices.
    QS: 32,
    /// 8 `u16`: three 3-bit index highs, a 3-bit scale and the shift sign.
    QH: 16,
}

layout! {
    /// `block_iq1_m`: like `IQ1_S` with per-16 scales; the f16 scale is spread over `scales`.
    iq1_m = IQ1_M, qk 256, size 56;
    /// 32 low bytes of grid indices.
    QS: 32,
    /// 16 bytes: per group, a 3-bit index high and a shift-sign bit in each nibble.
    QH: 16,
    /// 4 `u16`: four 3-bit scales each, the top nibbles together form the f16 scale.
    SCALES: 8,
}

layout! {
    /// `block_iq4_nl`: `d * kvalues_iq4nl[q]` with 4-bit `q`.
    iq4_nl = IQ4_NL, qk 32, size 18;
    /// f16 scale.
    D: 2,
    /// 16 bytes of nibbles, as in `Q4_0`.
    QS: 16,
}

layout! {
    /// `block_iq4_xs`: `IQ4_NL` levels with a 6-bit scale per 32 weights.
    iq4_xs = IQ4_XS, qk 256, size 136;
    /// f16 scale.
    D: 2,
    /// `u16`: the high 2 bits of the eight scales.
    SCALES_H: 2,
    /// 4 bytes: the low 4 bits of the eight scales.
    SCALES_L: 4,
    /// 128 bytes of nibbles.
    QS: 128,
}

layout! {
    /// `block_tq1_0`: ternary weights packed five per byte (base 3), `d * (t - 1)`.
    tq1_0 = TQ1_0, qk 256, size 54;
    /// 48 bytes of five trits each.
    QS: 48,
    /// 4 bytes of four trits each.
    QH: 4,
    /// f16 scale.
    D: 2,
}

layout! {
    /// `block_tq2_0`: ternary weights in 2 bits each, `d * (q - 1)`.
    tq2_0 = TQ2_0, qk 256, size 66;
    /// 64 bytes of 2-bit quants.
    QS: 64,
    /// f16 scale.
    D: 2,
}

layout! {
    /// `block_mxfp4`: E2M1 values with one E8M0 (power of two) scale.
    mxfp4 = MXFP4, qk 32, size 17;
    /// E8M0 exponent byte.
    E: 1,
    /// 16 bytes of E2M1 nibbles, as in `Q4_0`.
    QS: 16,
}

layout! {
    /// `block_nvfp4`: E2M1 values with a UE4M3 scale per 16 weights.
    nvfp4 = NVFP4, qk 64, size 36;
    /// 4 UE4M3 scale bytes.
    D: 4,
    /// 32 bytes: 8 per sub-block of 16, nibbles as in `Q4_0`.
    QS: 32,
}

layout! {
    /// `block_q1_0`: one sign bit per weight, `±d`.
    q1_0 = Q1_0, qk 128, size 18;
    /// f16 scale.
    D: 2,
    /// 16 bytes: bit `j % 8` of byte `j / 8` set means `+d` for weight `j`.
    QS: 16,
}

/// Where a block keeps a scale, and in which encoding: what a generator of valid blocks
/// must write (random bytes elsewhere are valid quants).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleField {
    /// A little-endian IEEE f16 at this offset.
    F16(usize),
    /// A little-endian IEEE f32 at this offset.
    F32(usize),
    /// A one-byte power-of-two exponent (E8M0) at this offset.
    E8M0(usize),
    /// Four one-byte unsigned E4M3 scales starting at this offset.
    Ue4m3x4(usize),
    /// `IQ1_M`'s f16, split into the top nibbles of the four `u16` scale words starting at
    /// this offset.
    Iq1mF16(usize),
}

/// The scale fields of a block of `ty` (empty for plain numbers and unknown types).
pub fn scale_fields(ty: GgmlType) -> &'static [ScaleField] {
    use ScaleField::{Iq1mF16, Ue4m3x4, E8M0, F16, F32};
    match ty {
        GgmlType::Q4_0 => &[F16(q4_0::D)],
        GgmlType::Q4_1 => &[F16(q4_1::D), F16(q4_1::M)],
        GgmlType::Q5_0 => &[F16(q5_0::D)],
        GgmlType::Q5_1 => &[F16(q5_1::D), F16(q5_1::M)],
        GgmlType::Q8_0 => &[F16(q8_0::D)],
        GgmlType::Q2_K => &[F16(q2_k::D), F16(q2_k::DMIN)],
        GgmlType::Q3_K => &[F16(q3_k::D)],
        GgmlType::Q4_K => &[F16(q4_k::D), F16(q4_k::DMIN)],
        GgmlType::Q5_K => &[F16(q5_k::D), F16(q5_k::DMIN)],
        GgmlType::Q6_K => &[F16(q6_k::D)],
        GgmlType::Q8_K => &[F32(q8_k::D)],
        GgmlType::IQ2_XXS => &[F16(iq2_xxs::D)],
        GgmlType::IQ2_XS => &[F16(iq2_xs::D)],
        GgmlType::IQ2_S => &[F16(iq2_s::D)],
        GgmlType::IQ3_XXS => &[F16(iq3_xxs::D)],
        GgmlType::IQ3_S => &[F16(iq3_s::D)],
        GgmlType::IQ1_S => &[F16(iq1_s::D)],
        GgmlType::IQ1_M => &[Iq1mF16(iq1_m::SCALES)],
        GgmlType::IQ4_NL => &[F16(iq4_nl::D)],
        GgmlType::IQ4_XS => &[F16(iq4_xs::D)],
        GgmlType::TQ1_0 => &[F16(tq1_0::D)],
        GgmlType::TQ2_0 => &[F16(tq2_0::D)],
        GgmlType::MXFP4 => &[E8M0(mxfp4::E)],
        GgmlType::NVFP4 => &[Ue4m3x4(nvfp4::D)],
        GgmlType::Q1_0 => &[F16(q1_0::D)],
        _ => &[],
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
    fn readers_are_little_endian() {
        let bytes = [0x00, 0x3c, 0x78, 0x56, 0x34, 0x12];
        assert_eq!(f16_at(&bytes, 0), 1.0);
        assert_eq!(u16_at(&bytes, 2), 0x5678);
        assert_eq!(u32_at(&bytes, 2), 0x1234_5678);
        assert_eq!(f32_at(&1.5f32.to_le_bytes(), 0).to_bits(), 1.5f32.to_bits());
    }

    #[test]
    fn f16_widening_is_exact_for_special_values() {
        assert_eq!(f16_at(&[0x01, 0x00], 0), 2f32.powi(-24));
        assert_eq!(f16_at(&[0x00, 0x7c], 0), f32::INFINITY);
        assert_eq!(f16_at(&[0x00, 0xfc], 0), f32::NEG_INFINITY);
        assert!(f16_at(&[0x01, 0x7e], 0).is_nan());
        assert_eq!(f16_at(&[0x00, 0x80], 0).to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn field_offsets_follow_storage_order() {
        assert_eq!(
            (q2_k::SCALES, q2_k::QS, q2_k::D, q2_k::DMIN),
            (0, 16, 80, 82)
        );
        assert_eq!(
            (q3_k::HMASK, q3_k::QS, q3_k::SCALES, q3_k::D),
            (0, 32, 96, 108)
        );
        assert_eq!((q5_k::SCALES, q5_k::QH, q5_k::QS), (4, 16, 48));
        assert_eq!(
            (q6_k::QL, q6_k::QH, q6_k::SCALES, q6_k::D),
            (0, 128, 192, 208)
        );
        assert_eq!(
            (iq3_s::QS, iq3_s::QH, iq3_s::SIGNS, iq3_s::SCALES),
            (2, 66, 74, 106)
        );
        assert_eq!((iq1_m::QS, iq1_m::QH, iq1_m::SCALES), (0, 32, 48));
        assert_eq!((tq1_0::QS, tq1_0::QH, tq1_0::D), (0, 48, 52));
        assert_eq!((nvfp4::D, nvfp4::QS), (0, 4));
    }
}
