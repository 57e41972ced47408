//! Big-endian GGUF tensor data to the little-endian layout the kernels read.
//!
//! A big-endian GGUF (written for s390x and the like, usually by gguf-py's
//! `gguf_convert_endian`) stores each multi-byte field of a block in big-endian order.
//! Only types whose byte order has a defined meaning are converted: plain numbers, and the
//! block types that converter handles (`Q4_0`, `Q8_0`, `Q4_K`, `Q6_K`, and the FP4 types,
//! whose fields are single bytes). For the others, ggml reads some byte arrays as wider
//! integers, so a big-endian file's bytes have no agreed meaning, and they are refused.

use super::DequantError;
use crate::dtype::GgmlType;

/// Byte offset and width of every multi-byte field of one block of `ty`, or `None` when
/// big-endian data of `ty` has no defined conversion.
fn fields(ty: GgmlType) -> Option<&'static [(usize, usize)]> {
    Some(match ty {
        GgmlType::I8 | GgmlType::MXFP4 | GgmlType::NVFP4 => &[],
        // One 2-byte number, or a block whose f16 `d` leads it.
        GgmlType::F16 | GgmlType::BF16 | GgmlType::I16 | GgmlType::Q4_0 | GgmlType::Q8_0 => {
            &[(0, 2)]
        }
        GgmlType::F32 | GgmlType::I32 => &[(0, 4)],
        GgmlType::F64 | GgmlType::I64 => &[(0, 8)],
        // d and dmin (f16) lead the block.
        GgmlType::Q4_K => &[(0, 2), (2, 2)],
        // d (f16) ends the block, after ql[128], qh[64] and scales[16].
        GgmlType::Q6_K => &[(208, 2)],
        _ => return None,
    })
}

/// Whether big-endian data of `ty` can be converted.
pub fn can_convert(ty: GgmlType) -> bool {
    fields(ty).is_some()
}

/// Rewrite big-endian blocks of `ty` in place as little-endian ones. A trailing partial
/// block is left as it is (decoding refuses it anyway).
pub fn to_little_endian(ty: GgmlType, blocks: &mut [u8]) -> Result<(), DequantError> {
    let (Some(fields), Some(info)) = (fields(ty), ty.info()) else {
        return Err(DequantError::BigEndianUnsupported(ty));
    };
    if fields.is_empty() {
        return Ok(());
    }
    for block in blocks.chunks_exact_mut(info.type_size as usize) {
        for &(at, width) in fields {
            block[at..at + width].reverse();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_fit_their_blocks() {
        for t in crate::dtype::KNOWN_TYPES {
            if let Some(fields) = fields(GgmlType(t.id)) {
                for &(at, width) in fields {
                    assert!(at + width <= t.type_size as usize, "{}", t.name);
                }
            }
        }
    }

    #[test]
    fn swaps_scales_and_leaves_quants() {
        let mut block = vec![0u8; 210];
        block[208] = 0x3c;
        block[0] = 7;
        to_little_endian(GgmlType::Q6_K, &mut block).unwrap();
        assert_eq!(&block[208..], &[0x00, 0x3c]);
        assert_eq!(block[0], 7);
        let mut floats = 1.5f32.to_be_bytes().to_vec();
        to_little_endian(GgmlType::F32, &mut floats).unwrap();
        assert_eq!(floats, 1.5f32.to_le_bytes());
    }

    #[test]
    fn undefined_layouts_are_refused() {
        let err = to_little_endian(GgmlType::IQ2_XXS, &mut [0; 66]).unwrap_err();
        assert_eq!(err, DequantError::BigEndianUnsupported(GgmlType::IQ2_XXS));
    }
}
