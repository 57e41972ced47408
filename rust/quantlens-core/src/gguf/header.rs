//! Parsing a GGUF header: magic, version, byte order, metadata and tensor infos.
//!
//! Layout: <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>. Only the header is
//! read; tensor data is located and bounds-checked but not touched.

use std::collections::HashMap;

use super::cursor::{Cursor, Endian, FORMAT};
use super::limits;
use super::value::{read_string_capped, read_type_tag, read_value, Value};
use crate::dtype::GgmlType;
use crate::error::{Error, FileRef, Result};
use crate::limits::Limits;

/// The four bytes every GGUF file starts with.
pub const MAGIC: &[u8; 4] = b"GGUF";
/// `general.alignment` when the key is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// One metadata key/value pair.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyValue {
    /// The key, e.g. `general.architecture`.
    pub key: Box<str>,
    /// The value.
    pub value: Value,
    /// Absolute offset of the pair in the file.
    pub offset: u64,
}

/// One tensor's description, with its data located in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name.
    pub name: Box<str>,
    /// Dimensions in ggml order (`ne[0]` is contiguous); unused trailing slots are 1.
    pub ne: [u64; 4],
    /// How many of `ne` are stored.
    pub n_dims: u8,
    /// The ggml type; may be one this version does not know.
    pub ty: GgmlType,
    /// Offset of the data from the start of the data section, as stored.
    pub relative_offset: u64,
    /// Absolute offset of the data in the file.
    pub offset: u64,
    /// Number of weights.
    pub n_elements: u64,
    /// Bytes of data; `None` when the type is unknown.
    pub nbytes: Option<u64>,
    /// Absolute offset of this tensor's info record, for error messages.
    pub info_offset: u64,
}

impl TensorInfo {
    /// Dimensions in ggml order, only those stored.
    pub fn ne(&self) -> &[u64] {
        &self.ne[..usize::from(self.n_dims)]
    }

    /// Dimensions in row-major (numpy/torch) order.
    pub fn shape(&self) -> Vec<u64> {
        self.ne().iter().rev().copied().collect()
    }
}

/// A parsed GGUF header.
#[derive(Clone, Debug)]
pub struct Header {
    /// Format version (2 or 3).
    pub version: u32,
    /// Byte order of the file.
    pub endian: Endian,
    /// Alignment of tensor data.
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
    /// Metadata in file order.
    pub metadata: Vec<KeyValue>,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    keys: HashMap<Box<str>, usize>,
}

impl Header {
    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.keys.get(key).map(|&i| &self.metadata[i].value)
    }

    /// Parse the header of a GGUF file held in `bytes` (the whole file) under the default
    /// [`Limits`].
    pub fn parse(bytes: &[u8]) -> Result<Header> {
        Header::parse_with(bytes, &Limits::DEFAULT)
    }

    /// Parse the header of a GGUF file held in `bytes` (the whole file) under `limits`.
    pub fn parse_with(bytes: &[u8], limits: &Limits) -> Result<Header> {
        if bytes.len() < 8 {
            let cursor = Cursor::new(bytes, 0, Endian::Little);
            return Err(cursor.truncated("magic and version", 8));
        }
        if &bytes[..4] != MAGIC {
            return Err(malformed(
                0,
                "not a GGUF file (the first 4 bytes are not 'GGUF')",
            ));
        }
        let (version, endian) = detect_version(bytes)?;
        let mut cursor = Cursor::new(bytes, 8, endian);
        let at = cursor.pos();
        let tensor_count = cursor.u64("tensor count")?;
        limits::check_setting(
            "tensor count",
            "max_tensors",
            at,
            tensor_count,
            limits.max_tensors,
        )?;
        check_room(&cursor, "tensor count", tensor_count, 24)?;
        let kv_count = read_count(&mut cursor, "metadata count", limits::MAX_KV_COUNT, 13)?;

        let (metadata, keys) = read_metadata(&mut cursor, kv_count, limits)?;
        let alignment = alignment(&metadata, &keys)?;
        let mut infos = Vec::with_capacity(tensor_count as usize);
        for _ in 0..tensor_count {
            infos.push(read_tensor_info(&mut cursor)?);
            check_header_size(&cursor, limits)?;
        }
        let data_offset = cursor
            .pos()
            .checked_next_multiple_of(alignment)
            .ok_or_else(|| malformed(cursor.pos(), "data section offset overflows"))?;
        let mut header = Header {
            version,
            endian,
            alignment,
            data_offset,
            metadata,
            tensors: infos,
            keys,
        };
        header.locate_tensor_data(bytes.len() as u64)?;
        Ok(header)
    }

    /// Resolve each tensor's absolute offset and size, and check that the data is aligned,
    /// inside the file, and not shared between tensors.
    fn locate_tensor_data(&mut self, file_len: u64) -> Result<()> {
        for t in &mut self.tensors {
            let at = t.info_offset;
            if t.relative_offset % self.alignment != 0 {
                return Err(malformed(
                    at,
                    format!(
                        "tensor '{}' data offset {} is not a multiple of the alignment {}",
                        t.name, t.relative_offset, self.alignment
                    ),
                ));
            }
            t.offset = self
                .data_offset
                .checked_add(t.relative_offset)
                .ok_or_else(|| malformed(at, format!("tensor '{}' offset overflows", t.name)))?;
            t.nbytes = data_size(t)?;
            let needed = t.nbytes.unwrap_or(0);
            let available = file_len.saturating_sub(t.offset);
            if needed > available || t.offset > file_len {
                return Err(Error::Truncated {
                    file: FileRef::default(),
                    format: FORMAT,
                    what: format!("data of tensor '{}'", t.name),
                    offset: t.offset,
                    needed,
                    available,
                });
            }
        }
        check_no_overlap(&self.tensors)
    }
}

fn malformed(offset: u64, message: impl Into<String>) -> Error {
    Error::Malformed {
        file: FileRef::default(),
        format: FORMAT,
        offset,
        message: message.into(),
    }
}

/// The version field also tells the byte order: a little-endian reader sees a big-endian
/// `3` as `0x0300_0000`, whose low half is zero.
fn detect_version(bytes: &[u8]) -> Result<(u32, Endian)> {
    let raw = [bytes[4], bytes[5], bytes[6], bytes[7]];
    let le = u32::from_le_bytes(raw);
    let (version, endian) = if le != 0 && le.trailing_zeros() >= 16 {
        (u32::from_be_bytes(raw), Endian::Big)
    } else {
        (le, Endian::Little)
    };
    match version {
        2 | 3 => Ok((version, endian)),
        1 => Err(Error::UnsupportedVersion {
            file: FileRef::default(),
            version,
            message: "GGUF version 1 (files from before August 2023, with 32-bit lengths) is \
                      not supported; convert the original model again with a current \
                      llama.cpp to get GGUF version 3"
                .to_owned(),
        }),
        _ => Err(Error::UnsupportedVersion {
            file: FileRef::default(),
            version,
            message: format!(
                "GGUF version {version} is not supported (quantlens reads versions 2 and 3)"
            ),
        }),
    }
}

/// A count that must be under `cap` and leave room for `min_record` bytes per item.
fn read_count(
    cursor: &mut Cursor<'_>,
    what: &'static str,
    cap: u64,
    min_record: u64,
) -> Result<u64> {
    let at = cursor.pos();
    let count = cursor.u64(what)?;
    limits::check(what, at, count, cap)?;
    check_room(cursor, what, count, min_record)?;
    Ok(count)
}

/// `count` records of at least `min_record` bytes must fit in what is left of the file.
fn check_room(cursor: &Cursor<'_>, what: &'static str, count: u64, min_record: u64) -> Result<()> {
    let needed = count.saturating_mul(min_record);
    if needed > cursor.remaining() {
        return Err(cursor.truncated(what, needed));
    }
    Ok(())
}

/// The header read so far must fit `limits.max_header_bytes`.
fn check_header_size(cursor: &Cursor<'_>, limits: &Limits) -> Result<()> {
    limits::check_setting(
        "header size",
        "max_header_bytes",
        0,
        cursor.pos(),
        limits.max_header_bytes,
    )
}

fn read_name(cursor: &mut Cursor<'_>, what: &'static str) -> Result<Box<str>> {
    let span = read_string_capped(cursor, limits::MAX_NAME_LEN, what)?;
    let bytes = cursor.take_span(span);
    std::str::from_utf8(bytes)
        .map(Box::from)
        .map_err(|e| malformed(span.offset, format!("{what} is not valid UTF-8: {e}")))
}

type Metadata = (Vec<KeyValue>, HashMap<Box<str>, usize>);

fn read_metadata(cursor: &mut Cursor<'_>, count: u64, limits: &Limits) -> Result<Metadata> {
    let mut metadata = Vec::with_capacity(count as usize);
    let mut keys = HashMap::with_capacity(count as usize);
    for i in 0..count as usize {
        let offset = cursor.pos();
        let key = read_name(cursor, "key")?;
        let ty = read_type_tag(cursor)?;
        let value = read_value(cursor, ty, 0, limits)?;
        check_header_size(cursor, limits)?;
        if keys.insert(key.clone(), i).is_some() {
            return Err(malformed(offset, format!("duplicate metadata key '{key}'")));
        }
        metadata.push(KeyValue { key, value, offset });
    }
    Ok((metadata, keys))
}

fn alignment(metadata: &[KeyValue], keys: &HashMap<Box<str>, usize>) -> Result<u64> {
    let Some(&i) = keys.get("general.alignment") else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let kv = &metadata[i];
    match kv.value {
        Value::U32(a) if a != 0 && a % 8 == 0 && u64::from(a) <= limits::MAX_ALIGNMENT => {
            Ok(a.into())
        }
        ref other => Err(malformed(
            kv.offset,
            format!(
                "general.alignment must be a UINT32 multiple of 8, found {} {}",
                other.value_type().name(),
                other
                    .as_u64()
                    .map_or_else(|| "value".to_owned(), |v| v.to_string())
            ),
        )),
    }
}

fn read_tensor_info(cursor: &mut Cursor<'_>) -> Result<TensorInfo> {
    let info_offset = cursor.pos();
    let name = read_name(cursor, "tensor name")?;
    let dims_at = cursor.pos();
    let n_dims = cursor.u32("dimension count")?;
    limits::check("dimension count", dims_at, n_dims.into(), limits::MAX_DIMS)?;
    let mut ne = [1u64; 4];
    let mut n_elements: u64 = 1;
    for slot in ne.iter_mut().take(n_dims as usize) {
        let at = cursor.pos();
        let dim = cursor.u64("dimension")?;
        // ggml stores dimensions as int64.
        limits::check("dimension", at, dim, i64::MAX as u64)?;
        n_elements = n_elements
            .checked_mul(dim)
            .filter(|&n| i64::try_from(n).is_ok())
            .ok_or_else(|| malformed(at, format!("tensor '{name}' element count overflows")))?;
        *slot = dim;
    }
    let ty = GgmlType(cursor.u32("tensor type")?);
    let relative_offset = cursor.u64("tensor data offset")?;
    Ok(TensorInfo {
        name,
        ne,
        n_dims: n_dims as u8,
        ty,
        relative_offset,
        offset: 0,
        n_elements,
        nbytes: None,
        info_offset,
    })
}

/// Bytes of a tensor's data; rows must be whole blocks. `None` for unknown types.
fn data_size(t: &TensorInfo) -> Result<Option<u64>> {
    let Some(info) = t.ty.info() else {
        return Ok(None);
    };
    if !t.ne[0].is_multiple_of(u64::from(info.block_size)) {
        return Err(malformed(
            t.info_offset,
            format!(
                "tensor '{}' has rows of {} weights, not a multiple of the {} block size {}",
                t.name, t.ne[0], info.name, info.block_size
            ),
        ));
    }
    t.ty.byte_size(t.n_elements)
        .map(Some)
        .ok_or_else(|| malformed(t.info_offset, format!("tensor '{}' size overflows", t.name)))
}

fn check_no_overlap(tensors: &[TensorInfo]) -> Result<()> {
    let mut spans: Vec<(u64, u64, usize)> = tensors
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            t.nbytes
                .filter(|&n| n > 0)
                .map(|n| (t.offset, t.offset + n, i))
        })
        .collect();
    spans.sort_unstable();
    for pair in spans.windows(2) {
        let (_, end, a) = pair[0];
        let (start, _, b) = pair[1];
        if start < end {
            return Err(malformed(
                tensors[b].info_offset,
                format!(
                    "data of tensor '{}' overlaps tensor '{}'",
                    tensors[b].name, tensors[a].name
                ),
            ));
        }
    }
    Ok(())
}
