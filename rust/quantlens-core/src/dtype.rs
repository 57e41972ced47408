//! ggml tensor types: ids as stored in GGUF files, names, and block geometry.
//!
//! Ids follow `enum ggml_type` in ggml's `ggml.h`; ids that ggml retired (4, 5, 31–33,
//! 36–38) are not listed and read back as unknown.

use std::fmt;

/// A ggml tensor type id as stored in a GGUF tensor info.
///
/// Any `u32` can be held, so that a tensor whose type this version does not know can still
/// be listed; [`GgmlType::info`] tells whether the id is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GgmlType(pub u32);

/// Name and block geometry of a known ggml type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypeInfo {
    /// The ggml id.
    pub id: u32,
    /// The name used by ggml and gguf-py (`Q4_K`, `BF16`, …).
    pub name: &'static str,
    /// Weights per block.
    pub block_size: u32,
    /// Bytes per block.
    pub type_size: u32,
}

macro_rules! ggml_types {
    ($( $konst:ident = $id:literal, $block:literal, $bytes:literal; )*) => {
        impl GgmlType {
            $(
                #[doc = concat!("`", stringify!($konst), "` (id ", stringify!($id), ").")]
                pub const $konst: GgmlType = GgmlType($id);
            )*
        }

        /// Every ggml type this version knows, in id order.
        pub const KNOWN_TYPES: &[TypeInfo] = &[
            $( TypeInfo { id: $id, name: stringify!($konst), block_size: $block, type_size: $bytes }, )*
        ];
    };
}

ggml_types! {
    F32 = 0, 1, 4;
    F16 = 1, 1, 2;
    Q4_0 = 2, 32, 18;
    Q4_1 = 3, 32, 20;
    Q5_0 = 6, 32, 22;
    Q5_1 = 7, 32, 24;
    Q8_0 = 8, 32, 34;
    Q8_1 = 9, 32, 36;
    Q2_K = 10, 256, 84;
    Q3_K = 11, 256, 110;
    Q4_K = 12, 256, 144;
    Q5_K = 13, 256, 176;
    Q6_K = 14, 256, 210;
    Q8_K = 15, 256, 292;
    IQ2_XXS = 16, 256, 66;
    IQ2_XS = 17, 256, 74;
    IQ3_XXS = 18, 256, 98;
    IQ1_S = 19, 256, 50;
    IQ4_NL = 20, 32, 18;
    IQ3_S = 21, 256, 110;
    IQ2_S = 22, 256, 82;
    IQ4_XS = 23, 256, 136;
    I8 = 24, 1, 1;
    I16 = 25, 1, 2;
    I32 = 26, 1, 4;
    I64 = 27, 1, 8;
    F64 = 28, 1, 8;
    IQ1_M = 29, 256, 56;
    BF16 = 30, 1, 2;
    TQ1_0 = 34, 256, 54;
    TQ2_0 = 35, 256, 66;
    MXFP4 = 39, 32, 17;
    NVFP4 = 40, 64, 36;
    Q1_0 = 41, 128, 18;
}

impl GgmlType {
    /// Name and geometry, or `None` for an id this version does not know.
    pub fn info(self) -> Option<&'static TypeInfo> {
        KNOWN_TYPES
            .binary_search_by_key(&self.0, |t| t.id)
            .ok()
            .map(|i| &KNOWN_TYPES[i])
    }

    /// The type with this ggml name (`"Q4_K"`), case-insensitive.
    pub fn from_name(name: &str) -> Option<GgmlType> {
        KNOWN_TYPES
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
            .map(|t| GgmlType(t.id))
    }

    /// Bytes taken by `n_elements` weights, or `None` when the type is unknown, the count
    /// is not a whole number of blocks, or the size overflows.
    pub fn byte_size(self, n_elements: u64) -> Option<u64> {
        let info = self.info()?;
        let block = u64::from(info.block_size);
        if !n_elements.is_multiple_of(block) {
            return None;
        }
        (n_elements / block).checked_mul(u64::from(info.type_size))
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.info() {
            Some(info) => f.write_str(info.name),
            None => write!(f, "unknown ggml type {}", self.0),
        }
    }
}

/// The label of a `general.file_type` value (llama.cpp's `llama_ftype`), e.g. `Q4_K_M`.
pub fn file_type_label(file_type: u32) -> Option<&'static str> {
    Some(match file_type {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        39 => "NVFP4",
        40 => "Q1_0",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_by_id_for_binary_search() {
        assert!(KNOWN_TYPES.windows(2).all(|w| w[0].id < w[1].id));
    }

    #[test]
    fn retired_ids_are_unknown() {
        for id in [4, 5, 31, 32, 33, 36, 37, 38, 42, u32::MAX] {
            assert!(GgmlType(id).info().is_none(), "{id}");
        }
    }

    #[test]
    fn byte_size_rejects_partial_blocks_and_overflow() {
        assert_eq!(GgmlType::Q4_K.byte_size(512), Some(288));
        assert_eq!(GgmlType::Q4_K.byte_size(100), None);
        assert_eq!(GgmlType::F32.byte_size(u64::MAX), None);
        assert_eq!(GgmlType(4).byte_size(32), None);
    }

    #[test]
    fn names_round_trip() {
        for t in KNOWN_TYPES {
            assert_eq!(GgmlType::from_name(t.name), Some(GgmlType(t.id)));
        }
    }
}
