//! Output element types and the f32 → 16-bit conversions used for them.
//!
//! A 16-bit output is written block by block from a small f32 staging buffer that stays in
//! L1, never through a full-size f32 array. The roundings are ggml's (and torch's, numpy's):
//! round to nearest, ties to even.

use half::slice::HalfFloatSliceExt;

/// Where decoded weights go, and in which element type.
#[derive(Debug)]
pub enum Output<'a> {
    /// IEEE binary32.
    F32(&'a mut [f32]),
    /// IEEE binary16, as raw bits.
    F16(&'a mut [u16]),
    /// bfloat16, as raw bits.
    BF16(&'a mut [u16]),
}

impl Output<'_> {
    /// Number of weights the output holds.
    pub fn len(&self) -> usize {
        match self {
            Output::F32(d) => d.len(),
            Output::F16(d) | Output::BF16(d) => d.len(),
        }
    }

    /// Bytes per element.
    pub fn element_size(&self) -> usize {
        match self {
            Output::F32(_) => 4,
            Output::F16(_) | Output::BF16(_) => 2,
        }
    }

    /// Whether the output holds no weights.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type's name: `float32`, `float16` or `bfloat16`.
    pub fn dtype_name(&self) -> &'static str {
        match self {
            Output::F32(_) => "float32",
            Output::F16(_) => "float16",
            Output::BF16(_) => "bfloat16",
        }
    }
}

/// f32 → bfloat16 bits as ggml's `ggml_compute_fp32_to_bf16` does it: round to nearest
/// even; a NaN keeps its sign and top payload bits and is made quiet.
#[inline]
pub fn f32_to_bf16(value: f32) -> u16 {
    let bits = value.to_bits();
    if bits & 0x7fff_ffff > 0x7f80_0000 {
        return ((bits >> 16) | 0x40) as u16;
    }
    ((bits + (0x7fff + ((bits >> 16) & 1))) >> 16) as u16
}

/// Convert `src` into f16 bits in `dst` (equal lengths), with F16C where the CPU has it.
pub fn f32_to_f16_slice(src: &[f32], dst: &mut [u16]) {
    let dst = half::slice::HalfBitsSliceExt::reinterpret_cast_mut::<half::f16>(dst);
    dst.convert_from_f32_slice(src);
}

/// Convert `src` into bfloat16 bits in `dst` (equal lengths).
pub fn f32_to_bf16_slice(src: &[f32], dst: &mut [u16]) {
    // A plain loop over integer operations: the compiler vectorises it.
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f32_to_bf16(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounds_to_nearest_even_and_keeps_nan_sign() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        // Exactly halfway between 0x3f80 and 0x3f81: ties go to even (0x3f80).
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert_eq!(f32_to_bf16(f32::INFINITY), 0x7f80);
        assert_eq!(f32_to_bf16(f32::MAX), 0x7f80);
        assert_eq!(f32_to_bf16(f32::from_bits(0xff80_0001)), 0xffc0);
        assert_eq!(f32_to_bf16(-0.0), 0x8000);
    }

    #[test]
    fn f16_rounds_like_half() {
        let values = [
            0.0f32,
            -0.0,
            1.0,
            65504.0,
            65520.0,
            1e-8,
            5.960_464_5e-8,
            f32::NAN,
            -3.3,
        ];
        let mut out = [0u16; 9];
        f32_to_f16_slice(&values, &mut out);
        for (v, o) in values.iter().zip(out) {
            assert_eq!(o, half::f16::from_f32(*v).to_bits(), "{v}");
        }
    }
}
