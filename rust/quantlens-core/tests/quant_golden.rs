//! Checks every kernel bit for bit against gguf-py's reference dequantizer on the fixture
//! `tests/data/quant_golden.bin`, written by `scripts/make_quant_golden.py`.
//!
//! Fixture layout (integers little-endian):
//!
//! - `b"QLGOLD01"`, then a `u32` count of value records, each: `u32` ggml type id, `u32`
//!   source length in bytes, `u32` value count, the source bytes, the expected values as f32.
//!   These hold all-zero and all-0xFF blocks, blocks with special f16 scales (±0, subnormal,
//!   65504, inf, NaN) and random blocks.
//! - A `u32` count of bulk records, each: `u32` type id, `u32` block count, `u64` seed and
//!   the sha256 of the expected f32 little-endian values. The blocks are regenerated here from
//!   the seed with the generator the script uses ([`bulk_blocks`]).
//!
//! Values compare by bits, except that an expected NaN only requires a NaN: IEEE 754 leaves
//! which NaN an operation returns to the implementation.

use quantlens_core::quant::blocks::{
    iq1_m, iq1_s, iq2_s, iq2_xs, iq2_xxs, iq3_s, iq3_xxs, iq4_nl, iq4_xs, q2_k, q3_k, q4_0, q4_1,
    q4_k, q5_0, q5_1, q5_k, q6_k, q8_0, tq1_0, tq2_0,
};
use quantlens_core::quant::dequantize_f32;
use quantlens_core::GgmlType;
use sha2::{Digest, Sha256};

mod fixture_reader;
use fixture_reader::Reader;

const FIXTURE: &[u8] = include_bytes!("data/quant_golden.bin");

/// The types the shared corpus does not cover; each must appear in both sections.
const NOT_IN_CORPUS: [GgmlType; 9] = [
    GgmlType::IQ1_S,
    GgmlType::IQ1_M,
    GgmlType::IQ2_XXS,
    GgmlType::IQ2_XS,
    GgmlType::IQ2_S,
    GgmlType::IQ3_XXS,
    GgmlType::IQ3_S,
    GgmlType::TQ1_0,
    GgmlType::NVFP4,
];

fn same(expected: f32, actual: f32) -> bool {
    if expected.is_nan() {
        actual.is_nan()
    } else {
        expected.to_bits() == actual.to_bits()
    }
}

fn check_values(ty: GgmlType, src: &[u8], expected: &[f32]) {
    let mut actual = vec![0.0f32; expected.len()];
    dequantize_f32(ty, src, &mut actual).unwrap_or_else(|e| panic!("{ty}: {e}"));
    if let Some(i) = (0..expected.len()).find(|&i| !same(expected[i], actual[i])) {
        panic!(
            "{ty}: value {i} (block {}) is {:e} ({:#010x}), gguf-py gives {:e} ({:#010x})",
            i / GgmlType::info(ty).unwrap().block_size as usize,
            actual[i],
            actual[i].to_bits(),
            expected[i],
            expected[i].to_bits(),
        );
    }
}

/// The `SplitMix64` generator of `scripts/make_quant_golden.py`.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A normal f16 of magnitude in [2^-14, 2^6) from 64 random bits (as the script does).
fn moderate_f16(r: u64) -> u16 {
    let exponent = 1 + (r % 20) as u16;
    let mantissa = ((r >> 8) & 0x3FF) as u16;
    let sign = (r >> 63) as u16;
    (sign << 15) | (exponent << 10) | mantissa
}

/// Byte offsets of the f16 scale fields of a block type.
fn f16_fields(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q4_0 => &[q4_0::D],
        GgmlType::Q4_1 => &[q4_1::D, q4_1::M],
        GgmlType::Q5_0 => &[q5_0::D],
        GgmlType::Q5_1 => &[q5_1::D, q5_1::M],
        GgmlType::Q8_0 => &[q8_0::D],
        GgmlType::Q2_K => &[q2_k::D, q2_k::DMIN],
        GgmlType::Q3_K => &[q3_k::D],
        GgmlType::Q4_K => &[q4_k::D, q4_k::DMIN],
        GgmlType::Q5_K => &[q5_k::D, q5_k::DMIN],
        GgmlType::Q6_K => &[q6_k::D],
        GgmlType::IQ2_XXS => &[iq2_xxs::D],
        GgmlType::IQ2_XS => &[iq2_xs::D],
        GgmlType::IQ2_S => &[iq2_s::D],
        GgmlType::IQ3_XXS => &[iq3_xxs::D],
        GgmlType::IQ3_S => &[iq3_s::D],
        GgmlType::IQ1_S => &[iq1_s::D],
        GgmlType::IQ4_NL => &[iq4_nl::D],
        GgmlType::IQ4_XS => &[iq4_xs::D],
        GgmlType::TQ1_0 => &[tq1_0::D],
        GgmlType::TQ2_0 => &[tq2_0::D],
        _ => &[],
    }
}

/// Writes an f16 scale into a block; `IQ1_M` keeps it in the top nibbles of its scale words.
fn set_scale(ty: GgmlType, block: &mut [u8], bits: u16) {
    if ty == GgmlType::IQ1_M {
        for k in 0..4 {
            let at = iq1_m::SCALES + 2 * k;
            let word = u16::from_le_bytes([block[at], block[at + 1]]);
            let word = (word & 0x0FFF) | (((bits >> (4 * k)) & 0xF) << 12);
            block[at..at + 2].copy_from_slice(&word.to_le_bytes());
        }
    } else {
        for &at in f16_fields(ty) {
            block[at..at + 2].copy_from_slice(&bits.to_le_bytes());
        }
    }
}

/// The bulk blocks of `scripts/make_quant_golden.py`: random bytes from the seed's stream,
/// then a moderate f16 scale drawn for each block that has one.
fn bulk_blocks(ty: GgmlType, blocks: usize, seed: u64) -> Vec<u8> {
    let type_size = ty.info().unwrap().type_size as usize;
    let has_scale = ty == GgmlType::IQ1_M || !f16_fields(ty).is_empty();
    let mut rng = SplitMix64(seed);
    let mut out = Vec::with_capacity(blocks * type_size);
    for _ in 0..blocks {
        let mut block: Vec<u8> = std::iter::repeat_with(|| rng.next().to_le_bytes())
            .take(type_size.div_ceil(8))
            .flatten()
            .take(type_size)
            .collect();
        if has_scale {
            set_scale(ty, &mut block, moderate_f16(rng.next()));
        }
        out.extend_from_slice(&block);
    }
    out
}

fn sha256_f32_le(values: &[f32]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for v in values {
        hasher.update(v.to_le_bytes());
    }
    hasher.finalize().into()
}

#[test]
fn kernels_match_gguf_py_bit_for_bit() {
    let mut r = Reader { bytes: FIXTURE };
    assert_eq!(r.take(8), b"QLGOLD01");

    let mut value_types = Vec::new();
    for _ in 0..r.u32() {
        let ty = GgmlType(r.u32());
        let src_len = r.usize();
        let n = r.usize();
        let src = r.take(src_len);
        let expected: Vec<f32> = r
            .take(4 * n)
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        check_values(ty, src, &expected);
        value_types.push(ty);
    }

    let mut bulk_types = Vec::new();
    for _ in 0..r.u32() {
        let ty = GgmlType(r.u32());
        let blocks = r.usize();
        let seed = r.u64();
        let digest = r.take(32);
        let src = bulk_blocks(ty, blocks, seed);
        let mut actual = vec![0.0f32; blocks * ty.info().unwrap().block_size as usize];
        dequantize_f32(ty, &src, &mut actual).unwrap_or_else(|e| panic!("{ty}: {e}"));
        assert_eq!(
            sha256_f32_le(&actual),
            digest,
            "{ty}: bulk blocks differ from gguf-py"
        );
        bulk_types.push(ty);
    }
    assert!(r.bytes.is_empty(), "trailing bytes in the fixture");

    let names = |types: &[GgmlType]| types.iter().map(ToString::to_string).collect::<Vec<_>>();
    eprintln!("value records: {:?}", names(&value_types));
    eprintln!("bulk records: {:?}", names(&bulk_types));
    for ty in NOT_IN_CORPUS {
        assert!(value_types.contains(&ty), "{ty} has no value record");
        assert!(bulk_types.contains(&ty), "{ty} has no bulk record");
    }
}
