//! GGUF: header parsing, metadata values, models split across several files, and writing.

mod cursor;
mod header;
pub mod limits;
mod model;
mod value;
pub mod writer;

pub use cursor::Endian;
pub use header::{Header, KeyValue, TensorInfo, DEFAULT_ALIGNMENT, MAGIC};
pub use model::{GgufModel, GgufShard, SplitInfo};
pub use value::{Array, ArrayIndex, ByteSpan, Value, ValueType, STRING_CHECKPOINT};
