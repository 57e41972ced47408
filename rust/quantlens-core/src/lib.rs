//! quantlens-core: memory-mapped, untrusting readers for model weight files and the
//! kernels that decode their GGML blocks.
//!
//! Parsers take byte slices and never touch the file system; [`MappedFile`] is the only
//! place a file is mapped. Every length, count and offset read from a file is checked
//! against caps and against the real size before use.

#![deny(missing_docs)]

pub mod dtype;
pub mod encoding;
pub mod error;
pub mod format;
pub mod gguf;
pub mod limits;
pub mod mmap;
pub mod pytorch;
pub mod quant;
pub mod safetensors;
pub mod tensor;
pub mod weights;

pub use dtype::{file_type_label, GgmlType, TypeInfo, KNOWN_TYPES};
pub use error::{Error, Result};
pub use limits::{Access, Limits, OpenOptions};
pub use mmap::MappedFile;
pub use tensor::{DType, TensorRef};
