//! Every kernel of this family against the scalar reference, bit for bit, on blocks built to
//! reach what random bytes rarely do: every pair of special f16 scale and offset (zeros,
//! subnormals, the largest finite, infinities, quiet and signalling NaNs with payloads),
//! every E8M0 and UE4M3 scale byte, and lengths and alignments around the step sizes.

use crate::dtype::GgmlType;
use crate::quant::dispatch::has_simd_kernel;
use crate::quant::{dequantize_f32_with, Isa};

/// The types this family has kernels for, on both instruction sets.
const TYPES: [GgmlType; 10] = [
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::IQ4_NL,
    GgmlType::MXFP4,
    GgmlType::NVFP4,
];

/// f16 bit patterns for scales and offsets.
const SPECIAL_F16: [u16; 16] = [
    0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x3C00, 0xBC00, 0x2E66, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00,
    0x7E00, 0x7C01, 0xFE01, 0x7FFF,
];

/// Blocks: 512, so that each (scale, offset) pair occurs twice with different quants.
const BLOCKS: usize = 2 * SPECIAL_F16.len() * SPECIAL_F16.len();

/// `n` bytes from a xorshift generator seeded with `state`.
fn random_bytes(n: usize, mut state: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Overwrites the scale fields of block `i` of `ty` with the `i`-th special pattern.
fn set_scales(ty: GgmlType, i: usize, block: &mut [u8]) {
    let d = SPECIAL_F16[i % 16].to_le_bytes();
    let m = SPECIAL_F16[(i / 16) % 16].to_le_bytes();
    match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 | GgmlType::IQ4_NL => {
            block[..2].copy_from_slice(&d);
        }
        GgmlType::Q4_1 | GgmlType::Q5_1 => {
            block[..2].copy_from_slice(&d);
            block[2..4].copy_from_slice(&m);
        }
        GgmlType::MXFP4 => block[0] = i as u8,
        GgmlType::NVFP4 => {
            block[..4].copy_from_slice(&[0, 64, 128, 192].map(|k: u8| k.wrapping_add(i as u8)));
        }
        _ => {}
    }
}

/// The bit patterns of `v`, so that NaNs compare by payload.
fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Both instruction sets, every type, aligned and odd starts, lengths around the steps.
#[test]
fn every_kernel_matches_the_reference() {
    for isa in [Isa::Avx2, Isa::Avx512] {
        if !isa.is_available() {
            continue;
        }
        for (t, ty) in TYPES.into_iter().enumerate() {
            assert!(has_simd_kernel(ty, isa), "{} {ty}", isa.name());
            let info = ty.info().unwrap();
            let (size, weights) = (info.type_size as usize, info.block_size as usize);
            // One spare byte in front, to run on both an aligned and an odd start.
            let mut buf = random_bytes(1 + BLOCKS * size, 0x9E37_79B9 + t as u64);
            for (i, block) in buf[1..].chunks_exact_mut(size).enumerate() {
                set_scales(ty, i, block);
            }
            for offset in [0, 1] {
                for blocks in [0, 1, 2, 3, 4, 5, 7, 8, 9, 31, 33, 64, BLOCKS - 1] {
                    let src = &buf[offset..offset + blocks * size];
                    let mut fast = vec![f32::from_bits(0x7FC0_DEAD); blocks * weights];
                    let mut slow = vec![0.0; blocks * weights];
                    dequantize_f32_with(isa, ty, src, &mut fast).unwrap();
                    dequantize_f32_with(Isa::Scalar, ty, src, &mut slow).unwrap();
                    assert!(
                        bits(&fast) == bits(&slow),
                        "{} {ty}: {blocks} blocks at offset {offset}",
                        isa.name()
                    );
                }
            }
        }
    }
}

/// The kernels write whole blocks of the destination and nothing else: a destination
/// carved out of a larger buffer keeps its neighbours.
#[test]
fn kernels_write_only_their_destination() {
    for isa in [Isa::Avx2, Isa::Avx512] {
        if !isa.is_available() {
            continue;
        }
        for ty in TYPES {
            let info = ty.info().unwrap();
            let (size, weights) = (info.type_size as usize, info.block_size as usize);
            let blocks = 37;
            let src = random_bytes(blocks * size, 7);
            let mut buf = vec![-1.5f32; blocks * weights + 2 * 64];
            dequantize_f32_with(isa, ty, &src, &mut buf[64..64 + blocks * weights]).unwrap();
            assert!(buf[..64]
                .iter()
                .all(|&v| v.to_bits() == (-1.5f32).to_bits()));
            assert!(buf[64 + blocks * weights..]
                .iter()
                .all(|&v| v.to_bits() == (-1.5f32).to_bits()));
        }
    }
}
