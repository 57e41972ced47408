//! Reference (scalar) dequantizers, one file per family of ggml types.
//!
//! Every kernel has the shape `fn(src: &[u8], dst: &mut [f32])` and decodes whole blocks:
//! it walks `src` in blocks and `dst` in runs of the block's weight count, stopping at the
//! shorter of the two, so it can neither panic nor allocate. [`crate::quant::dequantize_f32`]
//! checks the lengths first. The float arithmetic follows ggml's `dequantize_row_*` operation
//! by operation, in f32, so results equal ggml's bit for bit; these kernels are the oracle
//! that faster ones are tested against.

pub mod float;
pub mod fp4;
pub mod iq_grids;
pub mod iquants;
pub mod kquants;
pub mod legacy;
pub mod q1_0;
pub mod ternary;
