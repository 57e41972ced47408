//! x86-64 kernels for the 256-weight super-block types (k-quants, `IQ4_XS`, ternary and
//! other i-quants).
//!
//! One file per family under `super/` (a keyword, hence the `#[path]`s). Most define their
//! AVX2 and AVX-512 kernels from one body, differing only in the final widen-scale-store
//! step ([`lanes`], and [`grid`] for the grid i-quants); `Q4_K` and `IQ4_XS` have their own
//! AVX-512 bodies (table lookups). `IQ1_S` and `IQ1_M` have no AVX-512 kernel: it measured
//! no faster, so dispatch runs the AVX2 one.

use crate::dtype::GgmlType;
use crate::quant::dispatch::SimdKernel;

#[path = "super/grid.rs"]
mod grid;
#[path = "super/iq1.rs"]
mod iq1;
#[path = "super/iq2.rs"]
mod iq2;
#[path = "super/iq3.rs"]
mod iq3;
#[path = "super/iq4_xs.rs"]
mod iq4_xs;
#[path = "super/k2.rs"]
mod k2;
#[path = "super/k4.rs"]
mod k4;
#[path = "super/k6.rs"]
mod k6;
#[path = "super/lanes.rs"]
mod lanes;
#[path = "super/ternary.rs"]
mod ternary;

/// The AVX2 kernel for `ty`, if this family has one.
pub(super) fn avx2(ty: GgmlType) -> Option<SimdKernel> {
    Some(match ty {
        GgmlType::Q2_K => k2::q2_k_avx2,
        GgmlType::Q3_K => k2::q3_k_avx2,
        GgmlType::Q4_K => k4::q4_k_avx2,
        GgmlType::Q5_K => k4::q5_k_avx2,
        GgmlType::Q6_K => k6::q6_k_avx2,
        GgmlType::Q8_K => k6::q8_k_avx2,
        GgmlType::IQ4_XS => iq4_xs::iq4_xs_avx2,
        GgmlType::IQ1_S => iq1::iq1_s_avx2,
        GgmlType::IQ1_M => iq1::iq1_m_avx2,
        GgmlType::IQ2_XXS => iq2::iq2_xxs_avx2,
        GgmlType::IQ2_XS => iq2::iq2_xs_avx2,
        GgmlType::IQ2_S => iq2::iq2_s_avx2,
        GgmlType::IQ3_XXS => iq3::iq3_xxs_avx2,
        GgmlType::IQ3_S => iq3::iq3_s_avx2,
        GgmlType::TQ1_0 => ternary::tq1_0_avx2,
        GgmlType::TQ2_0 => ternary::tq2_0_avx2,
        _ => return None,
    })
}

/// The AVX-512 kernel for `ty`, if this family has one.
pub(super) fn avx512(ty: GgmlType) -> Option<SimdKernel> {
    Some(match ty {
        GgmlType::Q2_K => k2::q2_k_avx512,
        GgmlType::Q3_K => k2::q3_k_avx512,
        GgmlType::Q4_K => k4::q4_k_avx512,
        GgmlType::Q5_K => k4::q5_k_avx512,
        GgmlType::Q6_K => k6::q6_k_avx512,
        GgmlType::Q8_K => k6::q8_k_avx512,
        GgmlType::IQ4_XS => iq4_xs::iq4_xs_avx512,
        GgmlType::IQ2_XXS => iq2::iq2_xxs_avx512,
        GgmlType::IQ2_XS => iq2::iq2_xs_avx512,
        GgmlType::IQ2_S => iq2::iq2_s_avx512,
        GgmlType::IQ3_XXS => iq3::iq3_xxs_avx512,
        GgmlType::IQ3_S => iq3::iq3_s_avx512,
        GgmlType::TQ1_0 => ternary::tq1_0_avx512,
        GgmlType::TQ2_0 => ternary::tq2_0_avx512,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{dequantize_f32_with, Isa};

    /// Every type this family has a kernel for.
    const TYPES: [GgmlType; 16] = [
        GgmlType::IQ1_S,
        GgmlType::IQ1_M,
        GgmlType::IQ2_XXS,
        GgmlType::IQ2_XS,
        GgmlType::IQ2_S,
        GgmlType::IQ3_XXS,
        GgmlType::IQ3_S,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q8_K,
        GgmlType::IQ4_XS,
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
    ];

    /// f16 patterns worth covering as scales: normal, tiny, subnormal, huge, infinite, NaN
    /// (quiet and signalling), negative zero.
    const SPECIAL_F16: [u16; 9] = [
        0x3c00, 0x0001, 0x03ff, 0x7bff, 0x7c00, 0xfc00, 0x7e00, 0x7d01, 0x8000,
    ];

    /// Decodes `src` with each instruction set's kernel (where this CPU has it) and with the
    /// scalar reference, and compares the bits.
    fn assert_parity(ty: GgmlType, src: &[u8]) {
        let info = ty.info().unwrap();
        let n = src.len() / info.type_size as usize * info.block_size as usize;
        let mut reference = vec![0.0f32; n];
        dequantize_f32_with(Isa::Scalar, ty, src, &mut reference).unwrap();
        assert!(avx2(ty).is_some(), "{ty} has an AVX2 kernel");
        for (isa, kernel) in [(Isa::Avx2, avx2(ty)), (Isa::Avx512, avx512(ty))] {
            // Types without an AVX-512 kernel run the AVX2 one there.
            let (true, Some(kernel)) = (isa.is_available(), kernel) else {
                continue;
            };
            let mut fast = vec![f32::from_bits(0x7fc0_dead); n];
            // SAFETY: `isa.is_available()` confirmed the CPU runs `kernel`.
            unsafe { kernel(src, &mut fast) };
            for (i, (f, r)) in fast.iter().zip(&reference).enumerate() {
                assert_eq!(f.to_bits(), r.to_bits(), "{} {ty}: weight {i}", isa.name());
            }
        }
    }

    /// `len` bytes of xorshift output.
    fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn random_blocks_match_the_reference() {
        for ty in TYPES {
            let size = ty.info().unwrap().type_size as usize;
            for seed in 0..64 {
                assert_parity(ty, &random_bytes(seed, 8 * size));
            }
        }
    }

    #[test]
    fn special_scales_match_the_reference() {
        for ty in TYPES {
            let size = ty.info().unwrap().type_size as usize;
            for (seed, &bits) in SPECIAL_F16.iter().enumerate() {
                let mut src = random_bytes(seed as u64, 4 * size);
                // Overwrite every aligned f16 of the block's edges: whichever holds `d`
                // (and `dmin`) gets the special value.
                for block in src.chunks_exact_mut(size) {
                    for at in [0, 2, size - 4, size - 2] {
                        block[at..at + 2].copy_from_slice(&bits.to_le_bytes());
                    }
                }
                assert_parity(ty, &src);
            }
        }
    }

    #[test]
    fn uniform_blocks_match_the_reference() {
        for ty in TYPES {
            let size = ty.info().unwrap().type_size as usize;
            for byte in [0x00, 0x11, 0x55, 0xAA, 0xFF] {
                assert_parity(ty, &vec![byte; 3 * size]);
            }
        }
    }

    #[test]
    fn odd_offsets_and_empty_input_are_fine() {
        for ty in TYPES {
            let size = ty.info().unwrap().type_size as usize;
            let bytes = random_bytes(7, 5 * size + 3);
            for skip in 0..4 {
                assert_parity(ty, &bytes[skip..skip + 5 * size]);
            }
            assert_parity(ty, &[]);
        }
    }
}
