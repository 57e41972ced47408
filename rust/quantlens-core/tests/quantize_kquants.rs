//! Checks the k-quant and importance-weighted legacy quantizers byte for byte against ggml's
//! `ggml_quantize_chunk`, recorded in `tests/data/kquant_golden.bin` by
//! `scripts/make_kquant_golden.py` (whose docstring describes the layout), and checks that
//! no f32 input makes them panic or leave output bytes unwritten.
//!
//! The fixture has explicit rows (values, weights and ggml's bytes stored in full) and
//! generated rows (regenerated here from a `SplitMix64` seed, ggml's bytes stored as sha256).
//! It was recorded on x86-64. Rows the script marks portable (finite, moderate values and
//! weights) must match everywhere. In the others (NaN, infinities, overflowing magnitudes,
//! random bit patterns), the bytes that derive from a NaN depend on how the compiler ordered
//! NaN operands, ggml's compiler and ours alike (see `quant::quantize::search`); on x86-64
//! every block without NaN or infinity must still match (every row, for the
//! importance-weighted legacy types), and elsewhere only their lengths are checked.

use proptest::prelude::*;
use quantlens_core::quant::quantize::kquants::{
    quantize_row_q2_k, quantize_row_q3_k, quantize_row_q4_k, quantize_row_q5_k, quantize_row_q6_k,
};
use quantlens_core::quant::quantize::legacy_imatrix::{
    quantize_row_q4_0_imatrix, quantize_row_q4_1_imatrix, quantize_row_q5_0_imatrix,
    quantize_row_q5_1_imatrix,
};
use quantlens_core::quant::scalar::{kquants, legacy};
use quantlens_core::GgmlType;
use sha2::{Digest, Sha256};

mod fixture_reader;
use fixture_reader::Reader;

const FIXTURE: &[u8] = include_bytes!("data/kquant_golden.bin");

/// A row quantizer: `(src, dst, weights)`.
type Quantizer = fn(&[f32], &mut [u8], Option<&[f32]>);

fn q4_0_weighted(src: &[f32], dst: &mut [u8], w: Option<&[f32]>) {
    quantize_row_q4_0_imatrix(src, dst, w.expect("weights"));
}

fn q4_1_weighted(src: &[f32], dst: &mut [u8], w: Option<&[f32]>) {
    quantize_row_q4_1_imatrix(src, dst, w.expect("weights"));
}

fn q5_0_weighted(src: &[f32], dst: &mut [u8], w: Option<&[f32]>) {
    quantize_row_q5_0_imatrix(src, dst, w.expect("weights"));
}

fn q5_1_weighted(src: &[f32], dst: &mut [u8], w: Option<&[f32]>) {
    quantize_row_q5_1_imatrix(src, dst, w.expect("weights"));
}

/// Every quantizer under test: type, whether it takes weights only, block values and bytes.
const QUANTIZERS: [(GgmlType, Quantizer, bool, usize, usize); 9] = [
    (GgmlType::Q2_K, quantize_row_q2_k, false, 256, 84),
    (GgmlType::Q3_K, quantize_row_q3_k, false, 256, 110),
    (GgmlType::Q4_K, quantize_row_q4_k, false, 256, 144),
    (GgmlType::Q5_K, quantize_row_q5_k, false, 256, 176),
    (GgmlType::Q6_K, quantize_row_q6_k, false, 256, 210),
    (GgmlType::Q4_0, q4_0_weighted, true, 32, 18),
    (GgmlType::Q4_1, q4_1_weighted, true, 32, 20),
    (GgmlType::Q5_0, q5_0_weighted, true, 32, 22),
    (GgmlType::Q5_1, q5_1_weighted, true, 32, 24),
];

fn quantizer(ty: GgmlType) -> (Quantizer, usize, usize) {
    let &(_, q, _, block, size) = QUANTIZERS
        .iter()
        .find(|(t, ..)| *t == ty)
        .unwrap_or_else(|| panic!("no quantizer for {ty}"));
    (q, block, size)
}

/// Quantizes one row with `ty`'s quantizer into a fresh buffer of exactly its bytes.
fn quantize(ty: GgmlType, row: &[f32], weights: Option<&[f32]>) -> Vec<u8> {
    let (q, block, size) = quantizer(ty);
    let mut out = vec![0u8; row.len() / block * size];
    q(row, &mut out, weights);
    out
}

/// One explicit record.
struct Explicit {
    name: String,
    portable: bool,
    values: Vec<f32>,
    weights: Option<Vec<f32>>,
    outputs: Vec<(GgmlType, bool, Vec<u8>)>,
}

/// One generated record: rows regenerated from `seed`, ggml's output as sha256.
struct Generated {
    seed: u64,
    rows: usize,
    n_per_row: usize,
    outputs: Vec<(GgmlType, bool, [u8; 32])>,
}

fn fixture() -> (Vec<Explicit>, Vec<Generated>) {
    let mut r = Reader { bytes: FIXTURE };
    assert_eq!(r.take(8), b"QLKQGD01", "fixture magic");
    let explicit = (0..r.usize())
        .map(|_| {
            let name_len = r.usize();
            let name = String::from_utf8(r.take(name_len).to_vec()).unwrap();
            let n = r.usize();
            let has_weights = r.u32() == 1;
            let portable = r.u32() == 1;
            let values = r.f32s(n);
            let weights = has_weights.then(|| r.f32s(n));
            let outputs = (0..r.usize())
                .map(|_| {
                    let ty = GgmlType(r.u32());
                    let weighted = r.u32() == 1;
                    let len = r.usize();
                    (ty, weighted, r.take(len).to_vec())
                })
                .collect();
            Explicit {
                name,
                portable,
                values,
                weights,
                outputs,
            }
        })
        .collect();
    let generated = (0..r.usize())
        .map(|_| {
            let seed = r.u64();
            let rows = r.usize();
            let n_per_row = r.usize();
            let outputs = (0..r.usize())
                .map(|_| {
                    let ty = GgmlType(r.u32());
                    let weighted = r.u32() == 1;
                    (ty, weighted, r.take(32).try_into().unwrap())
                })
                .collect();
            Generated {
                seed,
                rows,
                n_per_row,
                outputs,
            }
        })
        .collect();
    assert!(r.bytes.is_empty(), "trailing bytes in the fixture");
    (explicit, generated)
}

/// The first block where `ours` and `ggml` differ, described.
fn first_difference(ours: &[u8], ggml: &[u8], block_size: usize) -> Option<String> {
    if ours.len() != ggml.len() {
        return Some(format!("{} bytes instead of {}", ours.len(), ggml.len()));
    }
    let i = (0..ours.len()).find(|&i| ours[i] != ggml[i])?;
    let b = i / block_size;
    let block = b * block_size..(b + 1) * block_size;
    Some(format!(
        "byte {} of block {b} differs\n ours {:02x?}\n ggml {:02x?}",
        i % block_size,
        &ours[block.clone()],
        &ggml[block]
    ))
}

/// Which blocks of a row ggml's bytes must match exactly when the row holds NaN or
/// infinities: those whose values (and weights) are all finite. The importance-weighted
/// legacy types weight every block by the whole row's statistics, so there a single
/// non-finite value spoils the row. Elsewhere, the bytes ggml writes depend on how its
/// compiler ordered NaN operands (see `quant::quantize::search`).
fn clean_blocks(
    weighted: bool,
    values: &[f32],
    weights: Option<&[f32]>,
    block: usize,
) -> Vec<bool> {
    let finite = |i: usize| {
        let range = i * block..(i + 1) * block;
        values[range.clone()].iter().all(|v| v.is_finite())
            && weights.is_none_or(|w| w[range].iter().all(|v| v.is_finite()))
    };
    let blocks = values.len() / block;
    if weighted && block == 32 {
        vec![(0..blocks).all(finite); blocks]
    } else {
        (0..blocks).map(finite).collect()
    }
}

/// [`first_difference`] over the blocks marked clean only.
fn first_clean_difference(
    ours: &[u8],
    ggml: &[u8],
    block_size: usize,
    clean: &[bool],
) -> Option<String> {
    if ours.len() != ggml.len() {
        return Some(format!("{} bytes instead of {}", ours.len(), ggml.len()));
    }
    let b = (0..clean.len()).find(|&b| {
        let range = b * block_size..(b + 1) * block_size;
        clean[b] && ours[range.clone()] != ggml[range]
    })?;
    let range = b * block_size..(b + 1) * block_size;
    Some(format!(
        "clean block {b} differs\n ours {:02x?}\n ggml {:02x?}",
        &ours[range.clone()],
        &ggml[range]
    ))
}

#[test]
fn explicit_rows_match_ggml_byte_for_byte() {
    let (explicit, _) = fixture();
    let mut checked = std::collections::HashSet::new();
    let mut failures = Vec::new();
    for rec in &explicit {
        for (ty, weighted, expected) in &rec.outputs {
            let weights = if *weighted {
                Some(
                    rec.weights
                        .as_deref()
                        .expect("weighted output without weights"),
                )
            } else {
                None
            };
            let ours = quantize(*ty, &rec.values, weights);
            let (_, block, size) = quantizer(*ty);
            let diff = if rec.portable {
                first_difference(&ours, expected, size)
            } else if cfg!(target_arch = "x86_64") {
                let clean = clean_blocks(*weighted, &rec.values, weights, block);
                first_clean_difference(&ours, expected, size, &clean)
            } else {
                (ours.len() != expected.len()).then(|| format!("{} bytes", ours.len()))
            };
            if let Some(diff) = diff {
                failures.push(format!(
                    "{ty} weighted={weighted} on {:?} ({} values): {diff}",
                    rec.name,
                    rec.values.len()
                ));
            }
            checked.insert((*ty, *weighted));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every quantizer was exercised, in every mode it has.
    for (ty, _, weights_only, ..) in QUANTIZERS {
        assert!(checked.contains(&(ty, true)), "{ty} weighted not covered");
        assert_eq!(
            checked.contains(&(ty, false)),
            !weights_only,
            "{ty} unweighted"
        );
    }
    assert!(
        explicit.len() >= 60,
        "only {} explicit records",
        explicit.len()
    );
    let portable = explicit.iter().filter(|r| r.portable).count();
    assert!(portable >= 40, "only {portable} portable records");
}

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Draw `i` of the stream seeded with `seed` (`SplitMix64`, as the script computes it).
fn draw(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add((i + 1).wrapping_mul(GAMMA));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The sum of four 16-bit uniforms, centred: a bell-shaped value in `[-2, 2)`, exact in f32.
fn bell(main: u64) -> f32 {
    let fields = (0..4).map(|k| ((main >> (16 * k)) & 0xFFFF) as f32);
    fields.fold(0.0f32, |s, f| s + f) / 65536.0 - 2.0
}

/// Row `r` of a generated record and its weights, as the script's docstring defines them.
fn generated_row(seed: u64, r: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
    let base = (r * (3 * n + 1)) as u64;
    let exp = (draw(seed, base) % 41) as i32 - 20;
    let scale = f32::from_bits(((127 + exp) as u32) << 23);
    let values = (0..n as u64)
        .map(|j| {
            let main = draw(seed, base + 1 + 2 * j);
            let aux = draw(seed, base + 2 + 2 * j);
            let mut x = bell(main);
            // Low 6 bits zero: an outlier; bits 6..11 zero: a zero.
            if aux.trailing_zeros() >= 6 {
                x *= 37.0;
            }
            if (aux >> 6).trailing_zeros() >= 5 {
                x = 0.0;
            }
            x * scale
        })
        .collect();
    let weights = (0..n as u64)
        .map(|j| (draw(seed, base + 1 + 2 * n as u64 + j) >> 40) as f32 * 2f32.powi(-23))
        .collect();
    (values, weights)
}

#[test]
fn generated_rows_match_ggml_hashes() {
    let (_, generated) = fixture();
    assert!(!generated.is_empty());
    let mut failures = Vec::new();
    for rec in &generated {
        let rows: Vec<_> = (0..rec.rows)
            .map(|r| generated_row(rec.seed, r, rec.n_per_row))
            .collect();
        for (ty, weighted, expected) in &rec.outputs {
            let mut hash = Sha256::new();
            for (values, weights) in &rows {
                hash.update(quantize(
                    *ty,
                    values,
                    weighted.then_some(weights.as_slice()),
                ));
            }
            if hash.finalize().as_slice() != expected {
                failures.push(format!(
                    "{ty} weighted={weighted}: seed {} ({} rows of {})",
                    rec.seed, rec.rows, rec.n_per_row
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The scalar dequantizer of `ty`.
fn dequantizer(ty: GgmlType) -> fn(&[u8], &mut [f32]) {
    match ty {
        GgmlType::Q2_K => kquants::dequantize_q2_k,
        GgmlType::Q3_K => kquants::dequantize_q3_k,
        GgmlType::Q4_K => kquants::dequantize_q4_k,
        GgmlType::Q5_K => kquants::dequantize_q5_k,
        GgmlType::Q6_K => kquants::dequantize_q6_k,
        GgmlType::Q4_0 => legacy::dequantize_q4_0,
        GgmlType::Q4_1 => legacy::dequantize_q4_1,
        GgmlType::Q5_0 => legacy::dequantize_q5_0,
        GgmlType::Q5_1 => legacy::dequantize_q5_1,
        _ => unreachable!(),
    }
}

/// Root mean square of `a - b` over root mean square of `a`.
fn relative_rms_error(a: &[f32], b: &[f32]) -> f64 {
    let err: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x - y).powi(2))
        .sum();
    let norm: f64 = a.iter().map(|&x| f64::from(x).powi(2)).sum();
    (err / norm).sqrt()
}

#[test]
fn dequantized_output_is_close_to_the_input() {
    // Bounds sit a little above the errors these types reach on normal data.
    let bounds = [
        (GgmlType::Q2_K, 0.33),
        (GgmlType::Q3_K, 0.18),
        (GgmlType::Q4_K, 0.09),
        (GgmlType::Q5_K, 0.05),
        (GgmlType::Q6_K, 0.025),
        (GgmlType::Q4_0, 0.1),
        (GgmlType::Q4_1, 0.09),
        (GgmlType::Q5_0, 0.05),
        (GgmlType::Q5_1, 0.045),
    ];
    for (seed, scale) in [(1u64, 1.0f32), (2, 0.02), (3, 700.0)] {
        let values: Vec<f32> = (0..2048).map(|i| bell(draw(seed, i)) * scale).collect();
        let weights: Vec<f32> = (0..2048).map(|i| bell(draw(!seed, i)).abs()).collect();
        for (ty, bound) in bounds {
            let (_, block, _) = quantizer(ty);
            let mut back = vec![f32::NAN; values.len()];
            let weighted = QUANTIZERS.iter().any(|q| q.0 == ty && q.2);
            for w in [None, Some(weights.as_slice())] {
                if weighted && w.is_none() {
                    continue;
                }
                dequantizer(ty)(&quantize(ty, &values, w), &mut back);
                let err = relative_rms_error(&values, &back);
                assert!(
                    err < bound,
                    "{ty} (weights: {}) relative error {err} on {} values in blocks of {block}",
                    w.is_some(),
                    values.len()
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any f32 bit patterns, as values or weights: no panic, every output byte written
    /// (the same bytes whatever the buffer held before), and the same bytes twice.
    #[test]
    fn any_f32_bits_quantize_without_panicking(
        blocks in 1usize..3,
        bits in proptest::collection::vec(any::<u32>(), 512),
        weight_bits in proptest::collection::vec(any::<u32>(), 512),
        pick in 0usize..9,
        with_weights in any::<bool>(),
    ) {
        let (ty, q, weights_only, block, size) = QUANTIZERS[pick];
        let n = (blocks * 256).min(bits.len());
        let values: Vec<f32> = bits[..n].iter().map(|&b| f32::from_bits(b)).collect();
        let weights: Vec<f32> = weight_bits[..n].iter().map(|&b| f32::from_bits(b)).collect();
        let w = (with_weights || weights_only).then_some(weights.as_slice());
        let mut zeros = vec![0x00u8; n / block * size];
        let mut ones = vec![0xFFu8; n / block * size];
        q(&values, &mut zeros, w);
        q(&values, &mut ones, w);
        prop_assert_eq!(&zeros, &ones, "{} left bytes unwritten", ty);
        prop_assert_eq!(zeros, quantize(ty, &values, w));
    }
}
