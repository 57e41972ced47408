//! The float conversions ggml's quantizers rely on, reproduced bit for bit.
//!
//! ggml is C: a float converted to an integer type truncates, and on x86-64 (where ggml's
//! reference results are produced) NaN and out-of-range values become `INT32_MIN`
//! (`cvttss2si`/`cvttps2dq`), of which a narrower integer keeps the low bits. Rust's `as`
//! saturates instead, so every conversion of a value the quantizers cannot bound goes
//! through [`trunc_i32`]. The same definition is used on every target, so the bytes for
//! non-finite inputs do not depend on the machine.

/// `2^31` as f32: the first magnitude `cvttss2si` cannot represent.
const I32_LIMIT: f32 = 2_147_483_648.0;

/// C's `(int)x` as x86-64 computes it: truncation toward zero; NaN, infinities and values
/// outside the `i32` range give `i32::MIN`.
///
/// Written so that loops over it vectorise into `cvttps2dq`: Rust's saturating `as` would
/// be converted one lane at a time.
#[inline]
pub(crate) fn trunc_i32(x: f32) -> i32 {
    let in_range = x.abs() < I32_LIMIT;
    let finite = if in_range { x } else { 0.0 };
    // SAFETY: `finite` is either `x`, checked above to be below 2^31 in magnitude (so not
    // NaN and its truncation fits an i32), or 0.0.
    let t: i32 = unsafe { finite.to_int_unchecked() };
    if in_range {
        t
    } else {
        i32::MIN
    }
}

/// The low byte of [`trunc_i32`]: what C keeps when it converts a float to an 8-bit
/// integer on x86-64 (0 for NaN, infinities and values outside the `i32` range).
#[inline]
pub(crate) fn trunc_low_byte(x: f32) -> u8 {
    let finite = if x.abs() < I32_LIMIT { x } else { 0.0 };
    // SAFETY: `finite` is either `x`, checked above to be below 2^31 in magnitude (so not
    // NaN and its truncation fits an i32), or 0.0.
    let t: i32 = unsafe { finite.to_int_unchecked() };
    t as u8
}

/// C's `(int)roundf(x)` on x86-64: round half away from zero, then [`trunc_i32`].
///
/// Written without `f32::round` (a libm call on baseline x86-64) so loops vectorise; below
/// `2^23` the fraction `x - trunc(x)` is exact, above it every float is an integer.
#[inline]
pub(crate) fn round_i32(x: f32) -> i32 {
    const EXACT: f32 = 8_388_608.0;
    let t = trunc_i32(x);
    let frac = x - t as f32;
    let rounded = t
        .wrapping_add(i32::from(frac >= 0.5))
        .wrapping_sub(i32::from(frac <= -0.5));
    if x.abs() < EXACT {
        rounded
    } else {
        t
    }
}

/// ggml's `nearest_int`: round half to even by adding `1.5 * 2^23` and reading the low
/// mantissa bits. Exact for `|x| <= 2^22`; beyond that (and for NaN) ggml gets whatever the
/// bits say, and so does this.
#[inline]
pub(crate) fn nearest_int(x: f32) -> i32 {
    let bits = (x + 12_582_912.0).to_bits();
    (bits & 0x007f_ffff) as i32 - 0x0040_0000
}

/// ggml's `GGML_FP32_TO_FP16` as little-endian bytes: round to nearest even, overflow to
/// infinity, and every NaN to the quiet NaN `0x7e00` with the input's sign.
///
/// The portable conversion, inlined: the F16C path of `half::f16::from_f32` checks the CPU
/// and makes a call per scale, which costs more than quantizing a 32-weight block.
#[inline]
pub(crate) fn fp16_bytes(x: f32) -> [u8; 2] {
    let bits = if x.is_nan() {
        ((x.to_bits() >> 16) as u16 & 0x8000) | 0x7e00
    } else {
        half::f16::from_f32_const(x).to_bits()
    };
    bits.to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn truncation_matches_x86_for_special_values() {
        assert_eq!(trunc_i32(8.99), 8);
        assert_eq!(trunc_i32(-0.5), 0);
        assert_eq!(trunc_i32(f32::NAN), i32::MIN);
        assert_eq!(trunc_i32(f32::INFINITY), i32::MIN);
        assert_eq!(trunc_i32(f32::NEG_INFINITY), i32::MIN);
        assert_eq!(trunc_i32(3.0e9), i32::MIN);
        assert_eq!(trunc_i32(-2_147_483_520.0), -2_147_483_520);
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        for (x, r) in [
            (0.5, 1),
            (-0.5, -1),
            (1.5, 2),
            (2.5, 3),
            (-2.5, -3),
            (0.499_999_97, 0),
            (126.6, 127),
            (-127.0, -127),
        ] {
            assert_eq!(round_i32(x), r, "{x}");
        }
        assert_eq!(round_i32(f32::NAN), i32::MIN);
        assert_eq!(round_i32(1.0e10), i32::MIN);
    }

    #[test]
    fn nearest_int_rounds_half_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(-2.5), -2);
        assert_eq!(nearest_int(-31.7), -32);
    }

    #[test]
    fn fp16_nan_is_canonical_and_signed() {
        assert_eq!(fp16_bytes(f32::NAN), 0x7e00u16.to_le_bytes());
        assert_eq!(fp16_bytes(-f32::NAN), 0xfe00u16.to_le_bytes());
        assert_eq!(
            fp16_bytes(f32::from_bits(0x7f80_0001)),
            0x7e00u16.to_le_bytes()
        );
        assert_eq!(fp16_bytes(65520.0), 0x7c00u16.to_le_bytes());
        assert_eq!(fp16_bytes(-0.0), 0x8000u16.to_le_bytes());
    }

    proptest! {
        #[test]
        fn low_byte_is_the_low_byte_of_the_truncation(bits in any::<u32>()) {
            let x = f32::from_bits(bits);
            prop_assert_eq!(trunc_low_byte(x), trunc_i32(x) as u8);
        }

        #[test]
        fn fp16_equals_half_for_every_number(bits in any::<u32>()) {
            let x = f32::from_bits(bits);
            prop_assume!(!x.is_nan());
            prop_assert_eq!(fp16_bytes(x), half::f16::from_f32(x).to_bits().to_le_bytes());
        }

        #[test]
        fn round_equals_libm_round_for_any_float(bits in any::<u32>()) {
            let x = f32::from_bits(bits);
            prop_assert_eq!(round_i32(x), trunc_i32(x.round()));
        }

        #[test]
        fn trunc_equals_as_within_range(x in -2.0e9f32..2.0e9) {
            prop_assert_eq!(trunc_i32(x), x as i32);
        }
    }
}
