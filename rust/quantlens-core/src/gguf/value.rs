//! GGUF metadata values: scalars are read on open, arrays are indexed and read on demand.

use super::cursor::{Cursor, Endian, FORMAT};
use super::limits;
use crate::error::{Error, FileRef, Result};
use crate::limits::Limits;

/// The type tag of a GGUF metadata value (`gguf_type` in ggml).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// `u8`
    U8,
    /// `i8`
    I8,
    /// `u16`
    U16,
    /// `i16`
    I16,
    /// `u32`
    U32,
    /// `i32`
    I32,
    /// `f32`
    F32,
    /// one byte, non-zero is true
    Bool,
    /// length-prefixed bytes, UTF-8 by convention
    String,
    /// typed array
    Array,
    /// `u64`
    U64,
    /// `i64`
    I64,
    /// `f64`
    F64,
}

impl ValueType {
    /// The type with this tag, or `None`.
    pub fn from_tag(tag: u32) -> Option<Self> {
        use ValueType::{Array, Bool, String, F32, F64, I16, I32, I64, I8, U16, U32, U64, U8};
        Some(match tag {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// gguf-py's name for the type (`UINT32`, `STRING`, …).
    pub fn name(self) -> &'static str {
        match self {
            ValueType::U8 => "UINT8",
            ValueType::I8 => "INT8",
            ValueType::U16 => "UINT16",
            ValueType::I16 => "INT16",
            ValueType::U32 => "UINT32",
            ValueType::I32 => "INT32",
            ValueType::F32 => "FLOAT32",
            ValueType::Bool => "BOOL",
            ValueType::String => "STRING",
            ValueType::Array => "ARRAY",
            ValueType::U64 => "UINT64",
            ValueType::I64 => "INT64",
            ValueType::F64 => "FLOAT64",
        }
    }

    /// Bytes per value for fixed-size types; `None` for strings and arrays.
    pub fn fixed_size(self) -> Option<u64> {
        match self {
            ValueType::U8 | ValueType::I8 | ValueType::Bool => Some(1),
            ValueType::U16 | ValueType::I16 => Some(2),
            ValueType::U32 | ValueType::I32 | ValueType::F32 => Some(4),
            ValueType::U64 | ValueType::I64 | ValueType::F64 => Some(8),
            ValueType::String | ValueType::Array => None,
        }
    }

    /// The fewest bytes one value of this type can take in a file.
    fn min_size(self) -> u64 {
        match self {
            // A length prefix; an array also has its element type.
            ValueType::String => 8,
            ValueType::Array => 12,
            fixed => fixed.fixed_size().unwrap_or(1),
        }
    }
}

/// A run of bytes in the file: where a string's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSpan {
    /// Absolute offset of the first byte.
    pub offset: u64,
    /// Number of bytes.
    pub len: u64,
}

impl ByteSpan {
    /// The bytes of this span within `file`. Spans are checked when parsed, so this only
    /// fails (returning an empty slice) if given a different buffer.
    pub fn slice<'a>(&self, file: &'a [u8]) -> &'a [u8] {
        let start = self.offset as usize;
        file.get(start..start + self.len as usize).unwrap_or(&[])
    }
}

/// A metadata value. Strings and arrays refer to the file's bytes.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
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
    /// Bytes of a string, not yet decoded.
    String(ByteSpan),
    /// An indexed array.
    Array(Array),
    /// `u64`
    U64(u64),
    /// `i64`
    I64(i64),
    /// `f64`
    F64(f64),
}

impl Value {
    /// The type tag of this value.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// The value as an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
}

/// Where an array's elements are. Fixed-size elements need no index; strings and nested
/// arrays are indexed on open so that any element can be read without a scan.
#[derive(Clone, Debug, PartialEq)]
pub enum ArrayIndex {
    /// Elements of a fixed size, packed from `Array::offset`.
    Fixed,
    /// Absolute offset of the length prefix of every [`STRING_CHECKPOINT`]-th string:
    /// a sparse index, since a dense one for a big vocabulary costs more in fresh memory
    /// than the scan that builds it.
    Strings(Vec<u64>),
    /// Each nested array.
    Arrays(Vec<Array>),
}

/// A metadata array: its element type, length and an index of its elements.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// Element type.
    pub elem: ValueType,
    /// Number of elements.
    pub len: u64,
    /// Absolute offset of the first element.
    pub offset: u64,
    /// Bytes taken by all elements.
    pub byte_len: u64,
    /// How to find each element.
    pub index: ArrayIndex,
    /// Byte order of the file.
    pub endian: Endian,
}

impl Array {
    /// Element `i`, read from `file` (the buffer the array was parsed from).
    pub fn get(&self, file: &[u8], i: u64) -> Option<Value> {
        if i >= self.len {
            return None;
        }
        match &self.index {
            ArrayIndex::Fixed => {
                let size = self.elem.fixed_size()?;
                let mut cursor = Cursor::new(file, (self.offset + i * size) as usize, self.endian);
                read_scalar(&mut cursor, self.elem).ok()
            }
            ArrayIndex::Strings(checkpoints) => {
                let start = *checkpoints.get((i / STRING_CHECKPOINT) as usize)?;
                let mut cursor = Cursor::new(file, start as usize, self.endian);
                for _ in 0..i % STRING_CHECKPOINT {
                    reread_string(&mut cursor).ok()?;
                }
                reread_string(&mut cursor).ok().map(Value::String)
            }
            ArrayIndex::Arrays(items) => items.get(i as usize).cloned().map(Value::Array),
        }
    }

    /// The raw bytes of a fixed-size array, in the file's byte order.
    pub fn fixed_bytes<'a>(&self, file: &'a [u8]) -> Option<&'a [u8]> {
        match self.index {
            ArrayIndex::Fixed => Some(
                ByteSpan {
                    offset: self.offset,
                    len: self.byte_len,
                }
                .slice(file),
            ),
            _ => None,
        }
    }
}

/// Strings between two entries of a string array's sparse index.
pub const STRING_CHECKPOINT: u64 = 32;

/// Check every string of an array and record every [`STRING_CHECKPOINT`]-th start.
///
/// Vocabularies hold hundreds of thousands of strings, so this is the hot loop of opening
/// a file: it reads length prefixes straight from the slice and falls back to
/// [`read_string`] only to report an error.
fn index_strings(cursor: &mut Cursor<'_>, len: u64, limits: &Limits) -> Result<Vec<u64>> {
    let mut checkpoints = Vec::with_capacity(len.div_ceil(STRING_CHECKPOINT) as usize);
    let base = cursor.pos();
    let rest = cursor.rest();
    let big = cursor.endian() == Endian::Big;
    let mut pos = 0usize;
    for i in 0..len {
        if i % STRING_CHECKPOINT == 0 {
            checkpoints.push(base + pos as u64);
        }
        let next = rest.get(pos..pos + 8).and_then(|prefix| {
            let prefix: [u8; 8] = prefix.try_into().ok()?;
            let n = if big {
                u64::from_be_bytes(prefix)
            } else {
                u64::from_le_bytes(prefix)
            };
            let end = (pos + 8).checked_add(usize::try_from(n).ok()?)?;
            (n <= limits.max_string_len && end <= rest.len()).then_some(end)
        });
        let Some(end) = next else {
            cursor.skip(pos as u64, "string array")?;
            // Read the failing string again the careful way, to report it.
            let err = read_string(cursor, limits).err();
            return Err(err.unwrap_or_else(|| cursor.truncated("string array", 8)));
        };
        pos = end;
    }
    cursor.skip(pos as u64, "string array")?;
    Ok(checkpoints)
}

/// Read a value of type `ty` at the cursor; `depth` counts enclosing arrays.
pub(crate) fn read_value(
    cursor: &mut Cursor<'_>,
    ty: ValueType,
    depth: u32,
    limits: &Limits,
) -> Result<Value> {
    match ty {
        ValueType::String => read_string(cursor, limits).map(Value::String),
        ValueType::Array => read_array(cursor, depth + 1, limits).map(Value::Array),
        scalar => read_scalar(cursor, scalar),
    }
}

fn read_scalar(cursor: &mut Cursor<'_>, ty: ValueType) -> Result<Value> {
    let what = ty.name();
    Ok(match ty {
        ValueType::U8 => Value::U8(cursor.u8(what)?),
        ValueType::I8 => Value::I8(cursor.i8(what)?),
        ValueType::U16 => Value::U16(cursor.u16(what)?),
        ValueType::I16 => Value::I16(cursor.i16(what)?),
        ValueType::U32 => Value::U32(cursor.u32(what)?),
        ValueType::I32 => Value::I32(cursor.i32(what)?),
        ValueType::F32 => Value::F32(cursor.f32(what)?),
        ValueType::Bool => Value::Bool(cursor.u8(what)? != 0),
        ValueType::U64 => Value::U64(cursor.u64(what)?),
        ValueType::I64 => Value::I64(cursor.i64(what)?),
        ValueType::F64 => Value::F64(cursor.f64(what)?),
        ValueType::String | ValueType::Array => unreachable!("read_value handles {what}"),
    })
}

/// A length-prefixed string; its bytes must lie inside the file.
pub(crate) fn read_string(cursor: &mut Cursor<'_>, limits: &Limits) -> Result<ByteSpan> {
    let at = cursor.pos();
    let len = cursor.u64("string length")?;
    limits::check_setting(
        "string length",
        "max_string_len",
        at,
        len,
        limits.max_string_len,
    )?;
    let offset = cursor.pos();
    cursor.skip(len, "string bytes")?;
    Ok(ByteSpan { offset, len })
}

/// A string of an array already checked on open: no cap but the bytes present.
fn reread_string(cursor: &mut Cursor<'_>) -> Result<ByteSpan> {
    read_string_capped(cursor, u64::MAX, "string length")
}

pub(crate) fn read_string_capped(
    cursor: &mut Cursor<'_>,
    cap: u64,
    what: &'static str,
) -> Result<ByteSpan> {
    let at = cursor.pos();
    let len = cursor.u64(what)?;
    limits::check(what, at, len, cap)?;
    let offset = cursor.pos();
    cursor.skip(len, "string bytes")?;
    Ok(ByteSpan { offset, len })
}

pub(crate) fn read_type_tag(cursor: &mut Cursor<'_>) -> Result<ValueType> {
    let at = cursor.pos();
    let tag = cursor.u32("value type")?;
    ValueType::from_tag(tag).ok_or_else(|| Error::Malformed {
        file: FileRef::default(),
        format: FORMAT,
        offset: at,
        message: format!("unknown metadata value type {tag}"),
    })
}

fn read_array(cursor: &mut Cursor<'_>, depth: u32, limits: &Limits) -> Result<Array> {
    let at = cursor.pos();
    limits::check_setting(
        "array nesting depth",
        "max_depth",
        at,
        depth.into(),
        limits.max_depth,
    )?;
    let elem = read_type_tag(cursor)?;
    let len_at = cursor.pos();
    let len = cursor.u64("array length")?;
    limits::check_setting(
        "array length",
        "max_array_len",
        len_at,
        len,
        limits.max_array_len,
    )?;
    // Every element takes at least `min_size` bytes: a count the file cannot hold is
    // refused before anything is sized by it.
    let needed = len.saturating_mul(elem.min_size());
    if needed > cursor.remaining() {
        return Err(cursor.truncated("array elements", needed));
    }
    let offset = cursor.pos();
    let index = match elem {
        ValueType::String => ArrayIndex::Strings(index_strings(cursor, len, limits)?),
        ValueType::Array => {
            let mut items = Vec::with_capacity(len as usize);
            for _ in 0..len {
                items.push(read_array(cursor, depth + 1, limits)?);
            }
            ArrayIndex::Arrays(items)
        }
        fixed => {
            cursor.skip(len * fixed.min_size(), "array elements")?;
            ArrayIndex::Fixed
        }
    };
    Ok(Array {
        elem,
        len,
        offset,
        byte_len: cursor.pos() - offset,
        index,
        endian: cursor.endian(),
    })
}
