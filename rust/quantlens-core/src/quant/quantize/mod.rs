//! Quantization of f32 rows to ggml block types, byte-identical with ggml.

pub mod kquants;
pub mod legacy_imatrix;
pub mod search;
