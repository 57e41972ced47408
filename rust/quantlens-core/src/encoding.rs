//! Which encoding a set of tensors is: every stored type weighed by the bytes or the
//! elements its tensors hold, ranked so that the same tensors always give the same answer.
//!
//! An *encoding* is a stored type that weights can be kept in: a float type or a ggml
//! block type (integer types only when a model has nothing else). GGUF's plain ggml types
//! (`F32`, `F16`, `BF16`, …) are the same encodings as the safetensors dtypes of those
//! names. Ties are broken by [`ENCODING_ORDER`], the declaration order of the Python
//! `SupportedEncoding` enum, never by hashing or by file order.

use crate::dtype::GgmlType;
use crate::tensor::DType;

/// Every encoding, in the order that breaks ties (the five of Modular MAX first, then the
/// other floats, the ggml block types by id, and the integer types).
pub const ENCODING_ORDER: [DType; 34] = [
    DType::F32,
    DType::BF16,
    DType::Ggml(GgmlType::Q4_K),
    DType::Ggml(GgmlType::Q4_0),
    DType::Ggml(GgmlType::Q6_K),
    DType::F16,
    DType::F8E4M3,
    DType::F64,
    DType::Ggml(GgmlType::Q4_1),
    DType::Ggml(GgmlType::Q5_0),
    DType::Ggml(GgmlType::Q5_1),
    DType::Ggml(GgmlType::Q8_0),
    DType::Ggml(GgmlType::Q2_K),
    DType::Ggml(GgmlType::Q3_K),
    DType::Ggml(GgmlType::Q5_K),
    DType::Ggml(GgmlType::Q8_K),
    DType::Ggml(GgmlType::IQ2_XXS),
    DType::Ggml(GgmlType::IQ2_XS),
    DType::Ggml(GgmlType::IQ3_XXS),
    DType::Ggml(GgmlType::IQ1_S),
    DType::Ggml(GgmlType::IQ4_NL),
    DType::Ggml(GgmlType::IQ3_S),
    DType::Ggml(GgmlType::IQ2_S),
    DType::Ggml(GgmlType::IQ4_XS),
    DType::Ggml(GgmlType::IQ1_M),
    DType::Ggml(GgmlType::TQ1_0),
    DType::Ggml(GgmlType::TQ2_0),
    DType::Ggml(GgmlType::MXFP4),
    DType::Ggml(GgmlType::NVFP4),
    DType::Ggml(GgmlType::Q1_0),
    DType::I8,
    DType::I16,
    DType::I32,
    DType::I64,
];

/// What tensors are weighed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weighting {
    /// Bytes on disk (GGUF: a block-quantized tensor weighs what it occupies).
    Bytes,
    /// Number of elements (parameters), whatever their width.
    Elements,
}

/// One tensor as the ranking sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorWeight {
    /// Stored type.
    pub dtype: DType,
    /// Number of elements.
    pub elements: u64,
    /// Bytes the elements occupy.
    pub bytes: u64,
}

/// One encoding and the weight of the tensors stored in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncodingShare {
    /// The encoding, in its canonical spelling (plain ggml types as plain dtypes).
    pub encoding: DType,
    /// How many tensors use it.
    pub tensors: u64,
    /// Total weight of those tensors (saturating).
    pub weight: u64,
}

/// The canonical encoding of a stored type, or `None` when weights are never kept in it
/// (booleans, unsigned and complex numbers, other float8 kinds, unknown ggml ids, and
/// `Q8_1`, which only ever holds activations).
pub fn canonical(dtype: DType) -> Option<DType> {
    let plain = match dtype {
        DType::Ggml(GgmlType::F32) => DType::F32,
        DType::Ggml(GgmlType::F16) => DType::F16,
        DType::Ggml(GgmlType::BF16) => DType::BF16,
        DType::Ggml(GgmlType::F64) => DType::F64,
        DType::Ggml(GgmlType::I8) => DType::I8,
        DType::Ggml(GgmlType::I16) => DType::I16,
        DType::Ggml(GgmlType::I32) => DType::I32,
        DType::Ggml(GgmlType::I64) => DType::I64,
        other => other,
    };
    order_of(plain).map(|_| plain)
}

/// Position of a canonical encoding in [`ENCODING_ORDER`].
fn order_of(encoding: DType) -> Option<usize> {
    ENCODING_ORDER.iter().position(|&e| e == encoding)
}

fn is_integer(encoding: DType) -> bool {
    matches!(encoding, DType::I8 | DType::I16 | DType::I32 | DType::I64)
}

/// The ggml type most tensors of a GGUF file hold, as its `general.file_type` states
/// (`Q4_K_M` → `Q4_K`, `MOSTLY_F16` → `F16`, `IQ3_M` → `IQ3_S`, …), as a canonical encoding.
pub fn file_type_encoding(file_type: u32) -> Option<DType> {
    let ggml = match file_type {
        0 => GgmlType::F32,
        1 => GgmlType::F16,
        2 => GgmlType::Q4_0,
        3 => GgmlType::Q4_1,
        7 => GgmlType::Q8_0,
        8 => GgmlType::Q5_0,
        9 => GgmlType::Q5_1,
        10 | 21 => GgmlType::Q2_K,
        11..=13 => GgmlType::Q3_K,
        14 | 15 => GgmlType::Q4_K,
        16 | 17 => GgmlType::Q5_K,
        18 => GgmlType::Q6_K,
        19 => GgmlType::IQ2_XXS,
        20 => GgmlType::IQ2_XS,
        22 | 26 | 27 => GgmlType::IQ3_S,
        23 => GgmlType::IQ3_XXS,
        24 => GgmlType::IQ1_S,
        25 => GgmlType::IQ4_NL,
        28 | 29 => GgmlType::IQ2_S,
        30 => GgmlType::IQ4_XS,
        31 => GgmlType::IQ1_M,
        32 => GgmlType::BF16,
        36 => GgmlType::TQ1_0,
        37 => GgmlType::TQ2_0,
        38 => GgmlType::MXFP4,
        39 => GgmlType::NVFP4,
        40 => GgmlType::Q1_0,
        _ => return None,
    };
    canonical(DType::Ggml(ggml))
}

/// Weigh `tensors` per encoding and rank the encodings, heaviest first.
///
/// Types that are not encodings are left out; integer types count only when no float or
/// block type is present. `stated` (a GGUF file's `general.file_type` encoding) goes first
/// when tensors really hold it, so a label that the tensors contradict is ignored. Equal
/// weights keep [`ENCODING_ORDER`]. The result does not depend on the order of `tensors`.
pub fn rank<I>(tensors: I, weighting: Weighting, stated: Option<DType>) -> Vec<EncodingShare>
where
    I: IntoIterator<Item = TensorWeight>,
{
    let mut shares: Vec<EncodingShare> = ENCODING_ORDER
        .iter()
        .map(|&encoding| EncodingShare {
            encoding,
            tensors: 0,
            weight: 0,
        })
        .collect();
    for tensor in tensors {
        let Some(index) = canonical(tensor.dtype).and_then(order_of) else {
            continue;
        };
        let share = &mut shares[index];
        share.tensors += 1;
        let weight = match weighting {
            Weighting::Bytes => tensor.bytes,
            Weighting::Elements => tensor.elements,
        };
        share.weight = share.weight.saturating_add(weight);
    }
    shares.retain(|s| s.tensors > 0);
    if shares.iter().any(|s| !is_integer(s.encoding)) {
        shares.retain(|s| !is_integer(s.encoding));
    }
    let stated = stated.and_then(canonical);
    // A stable sort keeps ENCODING_ORDER among equals.
    shares.sort_by_key(|s| (Some(s.encoding) != stated, std::cmp::Reverse(s.weight)));
    shares
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(dtype: DType, elements: u64, bytes: u64) -> TensorWeight {
        TensorWeight {
            dtype,
            elements,
            bytes,
        }
    }

    fn encodings(shares: &[EncodingShare]) -> Vec<DType> {
        shares.iter().map(|s| s.encoding).collect()
    }

    #[test]
    fn heaviest_first_by_the_chosen_weighting() {
        // 100 Q4_K elements take fewer bytes than 80 F16 elements.
        let tensors = [
            t(DType::Ggml(GgmlType::Q4_K), 256, 144),
            t(DType::Ggml(GgmlType::F16), 200, 400),
        ];
        let by_bytes = rank(tensors, Weighting::Bytes, None);
        assert_eq!(
            encodings(&by_bytes),
            [DType::F16, DType::Ggml(GgmlType::Q4_K)]
        );
        assert_eq!(by_bytes[0].weight, 400);
        let by_elements = rank(tensors, Weighting::Elements, None);
        assert_eq!(
            encodings(&by_elements),
            [DType::Ggml(GgmlType::Q4_K), DType::F16]
        );
    }

    #[test]
    fn plain_ggml_types_are_the_plain_dtypes() {
        let tensors = [
            t(DType::Ggml(GgmlType::F32), 10, 40),
            t(DType::F32, 5, 20),
            t(DType::Ggml(GgmlType::BF16), 1, 2),
        ];
        let shares = rank(tensors, Weighting::Elements, None);
        assert_eq!(encodings(&shares), [DType::F32, DType::BF16]);
        assert_eq!((shares[0].tensors, shares[0].weight), (2, 15));
    }

    #[test]
    fn ties_follow_the_declaration_order() {
        let tensors = [
            t(DType::F16, 8, 16),
            t(DType::BF16, 8, 16),
            t(DType::F32, 8, 32),
        ];
        let shares = rank(tensors, Weighting::Elements, None);
        assert_eq!(encodings(&shares), [DType::F32, DType::BF16, DType::F16]);
    }

    #[test]
    fn integers_count_only_alone_and_non_encodings_never() {
        let tensors = [
            t(DType::I64, 1000, 8000),
            t(DType::Bool, 1000, 1000),
            t(DType::U8, 1000, 1000),
            t(DType::BF16, 1, 2),
        ];
        assert_eq!(
            encodings(&rank(tensors, Weighting::Bytes, None)),
            [DType::BF16]
        );
        let only_ints = [t(DType::I32, 4, 16), t(DType::U8, 9, 9)];
        assert_eq!(
            encodings(&rank(only_ints, Weighting::Bytes, None)),
            [DType::I32]
        );
        assert!(rank([t(DType::C64, 1, 8)], Weighting::Bytes, None).is_empty());
        let q8_1 = t(DType::Ggml(GgmlType::Q8_1), 32, 36);
        assert!(rank([q8_1], Weighting::Bytes, None).is_empty());
    }

    #[test]
    fn a_stated_file_type_leads_only_when_tensors_hold_it() {
        let q4_k_m = [
            t(DType::Ggml(GgmlType::Q4_K), 256, 144),
            t(DType::Ggml(GgmlType::Q6_K), 512, 420),
            t(DType::Ggml(GgmlType::F32), 64, 256),
        ];
        let stated = file_type_encoding(15);
        assert_eq!(stated, Some(DType::Ggml(GgmlType::Q4_K)));
        let shares = rank(q4_k_m, Weighting::Bytes, stated);
        assert_eq!(
            encodings(&shares),
            [
                DType::Ggml(GgmlType::Q4_K),
                DType::Ggml(GgmlType::Q6_K),
                DType::F32
            ]
        );
        // A file labelled Q4_0 that holds Q4_1 tensors is Q4_1.
        let mislabelled = [t(DType::Ggml(GgmlType::Q4_1), 32, 20)];
        let shares = rank(mislabelled, Weighting::Bytes, file_type_encoding(2));
        assert_eq!(encodings(&shares), [DType::Ggml(GgmlType::Q4_1)]);
    }

    #[test]
    fn file_types_map_to_their_main_tensor_type() {
        assert_eq!(file_type_encoding(0), Some(DType::F32));
        assert_eq!(file_type_encoding(1), Some(DType::F16));
        assert_eq!(file_type_encoding(32), Some(DType::BF16));
        assert_eq!(file_type_encoding(12), Some(DType::Ggml(GgmlType::Q3_K)));
        assert_eq!(file_type_encoding(27), Some(DType::Ggml(GgmlType::IQ3_S)));
        // Retired file types (4, 5, 6: Q4_1_SOME_F16, Q4_2, Q4_3) and unknown ones say nothing.
        for retired in [4, 5, 6, 33, 1000] {
            assert_eq!(file_type_encoding(retired), None);
        }
        // Every labelled file type names a ggml encoding.
        for file_type in 0..64 {
            if crate::dtype::file_type_label(file_type).is_some() {
                assert!(file_type_encoding(file_type).is_some(), "{file_type}");
            }
        }
    }

    #[test]
    fn weights_saturate_instead_of_overflowing() {
        let tensors = [t(DType::F32, u64::MAX, u64::MAX), t(DType::F32, 5, 5)];
        assert_eq!(rank(tensors, Weighting::Bytes, None)[0].weight, u64::MAX);
    }

    #[test]
    fn every_known_ggml_type_but_q8_1_is_an_encoding() {
        for info in crate::dtype::KNOWN_TYPES {
            let ggml = DType::Ggml(GgmlType(info.id));
            assert_eq!(
                canonical(ggml).is_some(),
                info.name != "Q8_1",
                "{}",
                info.name
            );
        }
    }

    fn any_encoding() -> impl Strategy<Value = DType> {
        prop::sample::select(ENCODING_ORDER.to_vec())
    }

    proptest! {
        #[test]
        fn ranking_ignores_tensor_order(
            mut tensors in prop::collection::vec(
                (any_encoding(), 0u64..1000, 0u64..1000)
                    .prop_map(|(d, e, b)| t(d, e, b)),
                0..40,
            ),
            seed in any::<u64>(),
        ) {
            let before = rank(tensors.clone(), Weighting::Bytes, None);
            // A deterministic shuffle.
            let n = tensors.len();
            for i in (1..n).rev() {
                let j = (seed.wrapping_mul(i as u64 + 7) % (i as u64 + 1)) as usize;
                tensors.swap(i, j);
            }
            prop_assert_eq!(&before, &rank(tensors, Weighting::Bytes, None));
            for pair in before.windows(2) {
                prop_assert!(pair[0].weight >= pair[1].weight);
                if pair[0].weight == pair[1].weight {
                    prop_assert!(order_of(pair[0].encoding) < order_of(pair[1].encoding));
                }
            }
        }
    }
}
