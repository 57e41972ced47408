//! Metadata values to write, and their GGUF encoding (little-endian, version 3).

use crate::error::{Error, FileRef, Result};
use crate::gguf::ValueType;
use crate::Limits;

/// A metadata value to write. Strings are bytes (UTF-8 by convention, not enforced, so
/// that a value read from a file can be written back unchanged).
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    /// `u8`
    U8(u8),
    /// `i8`
    I8(i8),
    /// `u16`
    U16(u16),
    /// `i16`
    I16(i16),
    /// `u32`
    U32(u32),
    /// `i32`
    I32(i32),
    /// `f32`
    F32(f32),
    /// `bool`
    Bool(bool),
    /// A string's bytes.
    String(Vec<u8>),
    /// An array.
    Array(MetaArray),
    /// `u64`
    U64(u64),
    /// `i64`
    I64(i64),
    /// `f64`
    F64(f64),
}

/// A metadata array to write: fixed-size elements as packed little-endian bytes, strings,
/// or nested arrays (whose element types may differ from one another).
#[derive(Clone, Debug, PartialEq)]
pub enum MetaArray {
    /// Elements of a fixed-size type, `bytes.len()` a multiple of its size.
    Fixed {
        /// The element type (a scalar type).
        elem: ValueType,
        /// The elements, little-endian, packed.
        bytes: Vec<u8>,
    },
    /// Strings.
    Strings(Vec<Vec<u8>>),
    /// Arrays.
    Arrays(Vec<MetaArray>),
}

macro_rules! fixed_from {
    ($( $fn:ident, $t:ty, $elem:ident; )*) => {
        impl MetaArray {
            $(
                #[doc = concat!("An array of `", stringify!($t), "`.")]
                pub fn $fn(items: &[$t]) -> MetaArray {
                    MetaArray::Fixed {
                        elem: ValueType::$elem,
                        bytes: items.iter().flat_map(|v| v.to_le_bytes()).collect(),
                    }
                }
            )*
        }
    };
}

fixed_from! {
    from_u8, u8, U8;
    from_i8, i8, I8;
    from_u16, u16, U16;
    from_i16, i16, I16;
    from_u32, u32, U32;
    from_i32, i32, I32;
    from_f32, f32, F32;
    from_u64, u64, U64;
    from_i64, i64, I64;
    from_f64, f64, F64;
}

impl MetaArray {
    /// An array of booleans (one byte each).
    pub fn from_bools(items: &[bool]) -> MetaArray {
        MetaArray::Fixed {
            elem: ValueType::Bool,
            bytes: items.iter().map(|&b| u8::from(b)).collect(),
        }
    }

    /// An array of strings.
    pub fn from_strs<S: AsRef<str>>(items: &[S]) -> MetaArray {
        MetaArray::Strings(
            items
                .iter()
                .map(|s| s.as_ref().as_bytes().to_vec())
                .collect(),
        )
    }

    /// The element type tag.
    pub fn elem(&self) -> ValueType {
        match self {
            MetaArray::Fixed { elem, .. } => *elem,
            MetaArray::Strings(_) => ValueType::String,
            MetaArray::Arrays(_) => ValueType::Array,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> u64 {
        match self {
            MetaArray::Fixed { elem, bytes } => {
                bytes.len() as u64 / elem.fixed_size().unwrap_or(1).max(1)
            }
            MetaArray::Strings(items) => items.len() as u64,
            MetaArray::Arrays(items) => items.len() as u64,
        }
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl MetaValue {
    /// A string value.
    pub fn string(s: impl Into<String>) -> MetaValue {
        MetaValue::String(s.into().into_bytes())
    }

    /// The type tag of this value.
    pub fn value_type(&self) -> ValueType {
        match self {
            MetaValue::U8(_) => ValueType::U8,
            MetaValue::I8(_) => ValueType::I8,
            MetaValue::U16(_) => ValueType::U16,
            MetaValue::I16(_) => ValueType::I16,
            MetaValue::U32(_) => ValueType::U32,
            MetaValue::I32(_) => ValueType::I32,
            MetaValue::F32(_) => ValueType::F32,
            MetaValue::Bool(_) => ValueType::Bool,
            MetaValue::String(_) => ValueType::String,
            MetaValue::Array(_) => ValueType::Array,
            MetaValue::U64(_) => ValueType::U64,
            MetaValue::I64(_) => ValueType::I64,
            MetaValue::F64(_) => ValueType::F64,
        }
    }
}

/// The numeric tag GGUF stores for a value type.
pub(crate) fn type_tag(ty: ValueType) -> u32 {
    match ty {
        ValueType::U8 => 0,
        ValueType::I8 => 1,
        ValueType::U16 => 2,
        ValueType::I16 => 3,
        ValueType::U32 => 4,
        ValueType::I32 => 5,
        ValueType::F32 => 6,
        ValueType::Bool => 7,
        ValueType::String => 8,
        ValueType::Array => 9,
        ValueType::U64 => 10,
        ValueType::I64 => 11,
        ValueType::F64 => 12,
    }
}

fn invalid(key: &str, message: impl std::fmt::Display) -> Error {
    Error::InvalidOutput {
        file: FileRef::default(),
        tensor: None,
        message: format!("metadata key '{key}': {message}"),
    }
}

/// Check what a reader would refuse: lengths over its caps, nesting too deep, a fixed
/// array whose bytes are not whole elements, and array elements that are not arrays.
pub(crate) fn validate(key: &str, value: &MetaValue) -> Result<()> {
    match value {
        MetaValue::String(bytes) => check_string(key, bytes),
        MetaValue::Array(array) => validate_array(key, array, 1),
        _ => Ok(()),
    }
}

fn check_string(key: &str, bytes: &[u8]) -> Result<()> {
    if bytes.len() as u64 > Limits::DEFAULT.max_string_len {
        return Err(invalid(
            key,
            format!(
                "a string of {} bytes is over the {} byte limit",
                bytes.len(),
                Limits::DEFAULT.max_string_len
            ),
        ));
    }
    Ok(())
}

fn validate_array(key: &str, array: &MetaArray, depth: u64) -> Result<()> {
    if depth > Limits::DEFAULT.max_depth {
        return Err(invalid(
            key,
            format!("arrays nested deeper than {}", Limits::DEFAULT.max_depth),
        ));
    }
    if array.len() > Limits::DEFAULT.max_array_len {
        return Err(invalid(
            key,
            format!(
                "{} elements is over the limit of {}",
                array.len(),
                Limits::DEFAULT.max_array_len
            ),
        ));
    }
    match array {
        MetaArray::Fixed { elem, bytes } => {
            let Some(size) = elem.fixed_size() else {
                return Err(invalid(
                    key,
                    format!("{} is not a fixed-size type", elem.name()),
                ));
            };
            if !(bytes.len() as u64).is_multiple_of(size) {
                return Err(invalid(
                    key,
                    format!(
                        "{} bytes is not a whole number of {}",
                        bytes.len(),
                        elem.name()
                    ),
                ));
            }
            Ok(())
        }
        MetaArray::Strings(items) => items.iter().try_for_each(|s| check_string(key, s)),
        MetaArray::Arrays(items) => items
            .iter()
            .try_for_each(|a| validate_array(key, a, depth + 1)),
    }
}

/// Append the encoding of a string (u64 length, bytes).
pub(crate) fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Append a value's encoding, without its type tag.
pub(crate) fn put_value(out: &mut Vec<u8>, value: &MetaValue) {
    match value {
        MetaValue::U8(v) => out.push(*v),
        MetaValue::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::Bool(v) => out.push(u8::from(*v)),
        MetaValue::String(bytes) => put_string(out, bytes),
        MetaValue::Array(array) => put_array(out, array),
        MetaValue::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
    }
}

/// Append an array's encoding: element type tag, length, elements.
fn put_array(out: &mut Vec<u8>, array: &MetaArray) {
    out.extend_from_slice(&type_tag(array.elem()).to_le_bytes());
    out.extend_from_slice(&array.len().to_le_bytes());
    match array {
        MetaArray::Fixed { bytes, .. } => out.extend_from_slice(bytes),
        MetaArray::Strings(items) => items.iter().for_each(|s| put_string(out, s)),
        MetaArray::Arrays(items) => items.iter().for_each(|a| put_array(out, a)),
    }
}

/// Append a whole key/value pair: key, type tag, value.
pub(crate) fn put_pair(out: &mut Vec<u8>, key: &str, value: &MetaValue) {
    put_string(out, key.as_bytes());
    out.extend_from_slice(&type_tag(value.value_type()).to_le_bytes());
    put_value(out, value);
}
