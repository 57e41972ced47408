//! Dequantization of ggml tensor data to f32.
//!
//! [`dequantize_f32`] takes the raw bytes of whole blocks of one [`GgmlType`] and writes their
//! weights, in storage order, into a caller-provided buffer. It checks the lengths, then runs
//! the type's reference kernel from [`scalar`]. The kernels never allocate and never panic,
//! whatever the bytes hold: indices into blocks and lookup tables are bounded by the block
//! layouts in [`blocks`], and special scales (subnormal, infinite, NaN) simply flow through
//! the arithmetic.
//!
//! Results equal ggml's `dequantize_row_*` (and gguf-py's `gguf.quants.dequantize`) bit for
//! bit: each kernel performs ggml's f32 operations in ggml's order.
//!
//! ```
//! use quantlens_core::quant::dequantize_f32;
//! use quantlens_core::GgmlType;
//!
//! // One Q8_0 block: f16 scale 0.5, then 32 signed quants.
//! let mut block = vec![0x00, 0x38];
//! block.extend((0..32).map(|q: i8| q as u8));
//! let mut out = [0.0f32; 32];
//! dequantize_f32(GgmlType::Q8_0, &block, &mut out).unwrap();
//! assert_eq!(out[3], 1.5);
//! ```

#[cfg(target_arch = "aarch64")]
mod aarch64;
pub mod blocks;
pub mod dispatch;
pub mod endian;
pub mod output;
pub mod parallel;
pub mod quantize;
pub mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use dispatch::{isa, Isa};
pub use output::Output;
pub use parallel::{default_threads, dequantize};

use crate::dtype::GgmlType;
use scalar::{float, fp4, iquants, kquants, legacy, q1_0, ternary};

/// Why a dequantization request was refused; nothing is written to `dst` in that case.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DequantError {
    /// The type is unknown or has no dequantizer (e.g. `Q8_1`).
    #[error("no dequantizer for {0}")]
    UnsupportedType(GgmlType),
    /// Big-endian data of this type has no defined little-endian equivalent.
    #[error("big-endian {0} data cannot be decoded: its byte order is not defined")]
    BigEndianUnsupported(GgmlType),
    /// `src` does not hold a whole number of blocks.
    #[error("{ty}: {src_len} bytes is not a whole number of {type_size}-byte blocks")]
    PartialBlock {
        /// The type requested.
        ty: GgmlType,
        /// Length of `src` in bytes.
        src_len: usize,
        /// Bytes per block of `ty`.
        type_size: usize,
    },
    /// `dst` does not have exactly one slot per weight of `src`.
    #[error("{ty}: {blocks} blocks of {block_size} weights do not fit a destination of {dst_len}")]
    LengthMismatch {
        /// The type requested.
        ty: GgmlType,
        /// Whole blocks in `src`.
        blocks: usize,
        /// Weights per block of `ty`.
        block_size: usize,
        /// Length of `dst` in f32 values.
        dst_len: usize,
    },
}

/// A reference kernel: decodes the whole blocks of `src` into `dst`.
type Kernel = fn(&[u8], &mut [f32]);

/// The scalar kernel of `ty`, if there is one.
fn kernel(ty: GgmlType) -> Option<Kernel> {
    Some(match ty {
        GgmlType::F32 => float::dequantize_f32,
        GgmlType::F16 => float::dequantize_f16,
        GgmlType::BF16 => float::dequantize_bf16,
        GgmlType::F64 => float::dequantize_f64,
        GgmlType::I8 => float::dequantize_i8,
        GgmlType::I16 => float::dequantize_i16,
        GgmlType::I32 => float::dequantize_i32,
        GgmlType::I64 => float::dequantize_i64,
        GgmlType::Q4_0 => legacy::dequantize_q4_0,
        GgmlType::Q4_1 => legacy::dequantize_q4_1,
        GgmlType::Q5_0 => legacy::dequantize_q5_0,
        GgmlType::Q5_1 => legacy::dequantize_q5_1,
        GgmlType::Q8_0 => legacy::dequantize_q8_0,
        GgmlType::Q2_K => kquants::dequantize_q2_k,
        GgmlType::Q3_K => kquants::dequantize_q3_k,
        GgmlType::Q4_K => kquants::dequantize_q4_k,
        GgmlType::Q5_K => kquants::dequantize_q5_k,
        GgmlType::Q6_K => kquants::dequantize_q6_k,
        GgmlType::Q8_K => kquants::dequantize_q8_k,
        GgmlType::IQ1_S => iquants::dequantize_iq1_s,
        GgmlType::IQ1_M => iquants::dequantize_iq1_m,
        GgmlType::IQ2_XXS => iquants::dequantize_iq2_xxs,
        GgmlType::IQ2_XS => iquants::dequantize_iq2_xs,
        GgmlType::IQ2_S => iquants::dequantize_iq2_s,
        GgmlType::IQ3_XXS => iquants::dequantize_iq3_xxs,
        GgmlType::IQ3_S => iquants::dequantize_iq3_s,
        GgmlType::IQ4_NL => iquants::dequantize_iq4_nl,
        GgmlType::IQ4_XS => iquants::dequantize_iq4_xs,
        GgmlType::TQ1_0 => ternary::dequantize_tq1_0,
        GgmlType::TQ2_0 => ternary::dequantize_tq2_0,
        GgmlType::MXFP4 => fp4::dequantize_mxfp4,
        GgmlType::NVFP4 => fp4::dequantize_nvfp4,
        GgmlType::Q1_0 => q1_0::dequantize_q1_0,
        _ => return None,
    })
}

/// Whether [`dequantize_f32`] can decode `ty`.
pub fn can_dequantize(ty: GgmlType) -> bool {
    kernel(ty).is_some()
}

/// Decodes `src`, whole blocks of `ty`, into `dst`, which must hold exactly one f32 per
/// weight, with the fastest kernel this CPU has ([`isa`]). On error nothing is written.
pub fn dequantize_f32(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), DequantError> {
    dequantize_f32_with(isa(), ty, src, dst)
}

/// [`dequantize_f32`] with the kernels of `isa`; the scalar reference where `isa` has no
/// kernel for `ty` or this CPU lacks it. Used to test every kernel against the reference.
pub fn dequantize_f32_with(
    isa: Isa,
    ty: GgmlType,
    src: &[u8],
    dst: &mut [f32],
) -> Result<(), DequantError> {
    check_lengths(ty, src.len(), dst.len())?;
    decode_blocks(isa, ty, src, dst);
    Ok(())
}

/// Decode with `isa`'s kernel, or the scalar one; lengths already checked.
fn decode_blocks(isa: Isa, ty: GgmlType, src: &[u8], dst: &mut [f32]) {
    if !dispatch::run_simd(ty, isa, src, dst) {
        if let Some(run) = kernel(ty) {
            run(src, dst);
        }
    }
}

/// The scalar kernel of `ty` once `src_len` bytes and `dst_len` weights are known to match.
fn check_lengths(ty: GgmlType, src_len: usize, dst_len: usize) -> Result<Kernel, DequantError> {
    let (Some(run), Some(info)) = (kernel(ty), ty.info()) else {
        return Err(DequantError::UnsupportedType(ty));
    };
    let type_size = info.type_size as usize;
    let block_size = info.block_size as usize;
    if !src_len.is_multiple_of(type_size) {
        return Err(DequantError::PartialBlock {
            ty,
            src_len,
            type_size,
        });
    }
    let blocks = src_len / type_size;
    // Compared by division so that no product can overflow.
    if !dst_len.is_multiple_of(block_size) || dst_len / block_size != blocks {
        return Err(DequantError::LengthMismatch {
            ty,
            blocks,
            block_size,
            dst_len,
        });
    }
    Ok(run)
}

#[cfg(test)]
#[allow(
    clippy::float_cmp,
    reason = "bit-exact equality is what these tests check"
)]
mod tests {
    use super::*;
    use crate::dtype::KNOWN_TYPES;
    use proptest::prelude::*;

    fn supported() -> impl Iterator<Item = (GgmlType, usize, usize)> {
        KNOWN_TYPES
            .iter()
            .map(|t| (GgmlType(t.id), t.type_size as usize, t.block_size as usize))
            .filter(|&(ty, _, _)| can_dequantize(ty))
    }

    #[test]
    fn every_known_type_but_q8_1_is_supported() {
        let missing: Vec<_> = KNOWN_TYPES
            .iter()
            .map(|t| GgmlType(t.id))
            .filter(|&ty| !can_dequantize(ty))
            .collect();
        assert_eq!(missing, [GgmlType::Q8_1]);
        assert!(!can_dequantize(GgmlType(4)));
        assert!(!can_dequantize(GgmlType(u32::MAX)));
    }

    #[test]
    fn unsupported_types_are_refused() {
        let mut dst = [0.0; 32];
        for ty in [GgmlType::Q8_1, GgmlType(4), GgmlType(1000)] {
            let err = dequantize_f32(ty, &[0; 36], &mut dst).unwrap_err();
            assert_eq!(err, DequantError::UnsupportedType(ty));
        }
    }

    #[test]
    fn partial_blocks_are_refused() {
        let mut dst = [0.0; 256];
        let err = dequantize_f32(GgmlType::Q4_K, &[0; 145], &mut dst).unwrap_err();
        assert_eq!(
            err,
            DequantError::PartialBlock {
                ty: GgmlType::Q4_K,
                src_len: 145,
                type_size: 144
            }
        );
        assert!(err.to_string().contains("Q4_K"));
        let err = dequantize_f32(GgmlType::F32, &[0; 3], &mut dst[..1]).unwrap_err();
        assert!(matches!(err, DequantError::PartialBlock { .. }));
    }

    #[test]
    fn wrong_destination_lengths_are_refused_and_untouched() {
        for (ty, type_size, block_size) in supported() {
            let src = vec![0x3c; 2 * type_size];
            for dst_len in [
                0,
                block_size,
                2 * block_size - 1,
                2 * block_size + 1,
                3 * block_size,
            ] {
                let mut dst = vec![7.0; dst_len];
                let err = dequantize_f32(ty, &src, &mut dst).unwrap_err();
                let expected = DequantError::LengthMismatch {
                    ty,
                    blocks: 2,
                    block_size,
                    dst_len,
                };
                assert_eq!(err, expected);
                assert!(dst.iter().all(|&v| v == 7.0), "{ty}: dst written on error");
            }
        }
    }

    #[test]
    fn empty_input_is_fine() {
        for (ty, _, _) in supported() {
            assert_eq!(dequantize_f32(ty, &[], &mut []), Ok(()));
        }
    }

    #[test]
    fn all_zero_blocks_decode_to_zero() {
        for (ty, type_size, block_size) in supported() {
            let mut dst = vec![1.0; 3 * block_size];
            dequantize_f32(ty, &vec![0; 3 * type_size], &mut dst).unwrap();
            assert!(dst.iter().all(|&v| v == 0.0), "{ty}");
        }
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panicking(
            bytes in proptest::collection::vec(any::<u8>(), 0..1200),
            pick in any::<prop::sample::Index>(),
        ) {
            let types: Vec<_> = supported().collect();
            let (ty, type_size, block_size) = types[pick.index(types.len())];
            let whole = bytes.len() / type_size * type_size;
            let mut dst = vec![f32::NAN; whole / type_size * block_size];
            prop_assert!(dequantize_f32(ty, &bytes[..whole], &mut dst).is_ok());
            if whole != bytes.len() {
                prop_assert!(dequantize_f32(ty, &bytes, &mut dst).is_err());
            }
        }
    }
}
