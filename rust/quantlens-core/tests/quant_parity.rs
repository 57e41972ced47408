//! Every SIMD kernel equals the scalar reference bit for bit, over random blocks, lengths
//! and source alignments.

use proptest::prelude::*;
use quantlens_core::quant::dispatch::has_simd_kernel;
use quantlens_core::quant::{can_dequantize, dequantize_f32_with, Isa};
use quantlens_core::{GgmlType, KNOWN_TYPES};

/// (isa, type) pairs that have a SIMD kernel on this CPU.
fn simd_pairs() -> Vec<(Isa, GgmlType)> {
    let mut pairs = Vec::new();
    for isa in Isa::ALL {
        for t in KNOWN_TYPES {
            let ty = GgmlType(t.id);
            if can_dequantize(ty) && has_simd_kernel(ty, isa) {
                pairs.push((isa, ty));
            }
        }
    }
    pairs
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// Decode `src` with `isa` and with the scalar reference and compare bit patterns.
fn assert_same(isa: Isa, ty: GgmlType, src: &[u8]) -> Result<(), TestCaseError> {
    let info = ty.info().unwrap();
    let n = src.len() / info.type_size as usize * info.block_size as usize;
    let mut fast = vec![f32::from_bits(0x7fc0_dead); n];
    let mut reference = vec![0.0f32; n];
    dequantize_f32_with(isa, ty, src, &mut fast).unwrap();
    dequantize_f32_with(Isa::Scalar, ty, src, &mut reference).unwrap();
    prop_assert_eq!(bits(&fast), bits(&reference), "{} {}", isa.name(), ty);
    Ok(())
}

#[test]
fn simd_kernels_are_reported() {
    for (isa, ty) in simd_pairs() {
        eprintln!("SIMD kernel: {} {}", isa.name(), ty);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn simd_equals_scalar(
        pick in any::<prop::sample::Index>(),
        blocks in 0usize..40,
        misalign in 0usize..64,
        seed in any::<u64>(),
        scale_bits in prop::sample::select(vec![0x3c00u16, 0x0001, 0x03ff, 0x7bff, 0x7c00, 0x7e00, 0x8000, 0x1400, 0x2e66]),
        fix_scales in any::<bool>(),
    ) {
        let pairs = simd_pairs();
        if pairs.is_empty() {
            return Ok(());
        }
        let (isa, ty) = pairs[pick.index(pairs.len())];
        let type_size = ty.info().unwrap().type_size as usize;
        // Random bytes from a small xorshift generator, placed at a random misalignment.
        let mut state = seed | 1;
        let mut buf: Vec<u8> = (0..misalign + blocks * type_size)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        if fix_scales {
            // Give every block the same leading f16 scale (where most types keep `d`), so
            // extreme and special scales are covered, not only random ones.
            for block in buf[misalign..].chunks_exact_mut(type_size) {
                if type_size >= 2 {
                    block[..2].copy_from_slice(&scale_bits.to_le_bytes());
                }
            }
        }
        assert_same(isa, ty, &buf[misalign..])?;
    }
}
