//! safetensors files: an adapter from the `safetensors` crate's header parser to
//! [`Parsed`] tensor references.
//!
//! The format (an 8-byte little-endian header length, a JSON header, then the data) is read
//! by [`SafeTensors::read_metadata`], which checks every offset, shape and size and that
//! the data covers the rest of the file exactly; this module only converts its answer and
//! its errors. Format: <https://github.com/huggingface/safetensors#format>.

#![forbid(unsafe_code)]

use ::safetensors::tensor::{Dtype, Metadata, SafeTensorError, TensorInfo};
use ::safetensors::SafeTensors;

use crate::error::{Error, FileRef, Result};
use crate::limits::{self, Limits};
use crate::tensor::{DType, TensorRef};
use crate::weights::Parsed;

/// The format name used in errors.
pub const FORMAT: &str = "safetensors";

/// Bytes of the header-length prefix; the JSON header starts here.
const PREFIX: u64 = 8;

/// The largest header the crate accepts (its `MAX_HEADER_SIZE`, not exported).
const MAX_HEADER: u64 = 100_000_000;

/// Read the header of a whole safetensors file held in `bytes`.
///
/// Tensors come in data order with absolute offsets, `file` 0 and contiguous strides;
/// `__metadata__` comes sorted by key (JSON objects have no order the crate keeps).
pub fn parse(bytes: &[u8]) -> Result<Parsed> {
    parse_with(bytes, &Limits::DEFAULT)
}

/// [`parse`] under `limits`: the header length and the tensor count are checked before
/// the JSON is read or the tensors listed.
pub fn parse_with(bytes: &[u8], limits: &Limits) -> Result<Parsed> {
    if let Some(prefix) = bytes.get(..8) {
        let declared = u64::from_le_bytes(prefix.try_into().expect("8 bytes"));
        limits::check(
            FORMAT,
            "header length",
            "max_header_bytes",
            0,
            declared,
            limits.max_header_bytes,
        )?;
    }
    let (header_len, metadata) =
        SafeTensors::read_metadata(bytes).map_err(|e| convert(e, bytes))?;
    let data_start = PREFIX + header_len as u64;
    let names = metadata.offset_keys();
    limits::check(
        FORMAT,
        "tensor count",
        "max_tensors",
        PREFIX,
        names.len() as u64,
        limits.max_tensors,
    )?;
    let tensors = names
        .into_iter()
        .map(|name| {
            let info = metadata
                .info(&name)
                .expect("offset_keys lists indexed names");
            tensor_ref(name, info, data_start)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut pairs: Vec<(String, String)> = metadata
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    pairs.sort();
    Ok(Parsed {
        tensors,
        metadata: pairs,
    })
}

/// The [`TensorRef`] of one header entry; the crate has checked its extent already.
fn tensor_ref(name: String, info: &TensorInfo, data_start: u64) -> Result<TensorRef> {
    let dtype = dtype(info.dtype).ok_or_else(|| Error::UnsupportedDType {
        file: FileRef::default(),
        tensor: name.clone(),
        dtype: info.dtype.to_string(),
    })?;
    let shape: Vec<u64> = info.shape.iter().map(|&d| d as u64).collect();
    // numpy and torch index with signed 64-bit sizes: a larger dimension (legal only in an
    // empty tensor) could not be represented by any reader of the result.
    if let Some(&dim) = shape.iter().find(|&&d| d > i64::MAX as u64) {
        return Err(Error::Malformed {
            file: FileRef::default(),
            format: FORMAT,
            offset: PREFIX,
            message: format!("tensor '{name}' has dimension {dim}, over 2^63-1"),
        });
    }
    let strides = TensorRef::contiguous_strides(&shape).ok_or_else(|| Error::Malformed {
        file: FileRef::default(),
        format: FORMAT,
        offset: PREFIX,
        message: format!("the shape of tensor '{name}' overflows"),
    })?;
    let (start, end) = info.data_offsets;
    Ok(TensorRef {
        name,
        dtype,
        shape,
        strides,
        file: 0,
        offset: data_start + start as u64,
        nbytes: (end - start) as u64,
    })
}

/// The element type of a crate dtype; `None` for sub-byte types (`F4`, `F6_*`), whose
/// elements have no byte address, and for any type a newer crate adds.
pub fn dtype(dtype: Dtype) -> Option<DType> {
    Some(match dtype {
        Dtype::BOOL => DType::Bool,
        Dtype::U8 => DType::U8,
        Dtype::I8 => DType::I8,
        Dtype::U16 => DType::U16,
        Dtype::I16 => DType::I16,
        Dtype::U32 => DType::U32,
        Dtype::I32 => DType::I32,
        Dtype::U64 => DType::U64,
        Dtype::I64 => DType::I64,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::F32 => DType::F32,
        Dtype::F64 => DType::F64,
        Dtype::C64 => DType::C64,
        Dtype::F8_E4M3 => DType::F8E4M3,
        Dtype::F8_E5M2 => DType::F8E5M2,
        Dtype::F8_E8M0 => DType::F8E8M0,
        Dtype::F8_E4M3FNUZ => DType::F8E4M3Fnuz,
        Dtype::F8_E5M2FNUZ => DType::F8E5M2Fnuz,
        // F4, F6_E2M3, F6_E3M2 and whatever the (non-exhaustive) enum gains later.
        _ => return None,
    })
}

/// The crate's error as ours, with the byte offset it is about.
fn convert(err: SafeTensorError, bytes: &[u8]) -> Error {
    let len = bytes.len() as u64;
    let declared = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    let malformed = |offset: u64, message: String| Error::Malformed {
        file: FileRef::default(),
        format: FORMAT,
        offset,
        message,
    };
    match err {
        SafeTensorError::HeaderTooSmall => truncated("header length".into(), 0, PREFIX, len),
        SafeTensorError::HeaderTooLarge => Error::LimitExceeded {
            file: FileRef::default(),
            format: FORMAT,
            what: "header length",
            offset: 0,
            value: declared.unwrap_or(0),
            limit: MAX_HEADER,
            setting: None,
        },
        SafeTensorError::InvalidHeaderLength => truncated(
            "JSON header".into(),
            PREFIX,
            declared.unwrap_or(0),
            len.saturating_sub(PREFIX),
        ),
        SafeTensorError::InvalidHeader(utf8) => malformed(
            PREFIX + utf8.valid_up_to() as u64,
            format!("the header is not UTF-8: {utf8}"),
        ),
        SafeTensorError::MetadataIncompleteBuffer => incomplete(bytes, declared.unwrap_or(0)),
        other => malformed(PREFIX, other.to_string()),
    }
}

fn truncated(what: String, offset: u64, needed: u64, available: u64) -> Error {
    Error::Truncated {
        file: FileRef::default(),
        format: FORMAT,
        what,
        offset,
        needed,
        available,
    }
}

/// The data section is not exactly as long as the header says: a download cut short
/// (truncated) or bytes after the last tensor (malformed). The crate does not say which
/// or by how much, so the (already accepted) header is read again for its data length.
fn incomplete(bytes: &[u8], header_len: u64) -> Error {
    let data_start = PREFIX + header_len;
    let header = &bytes[PREFIX as usize..data_start as usize];
    let Ok(metadata) = serde_json::from_slice::<Metadata>(header) else {
        return Error::Malformed {
            file: FileRef::default(),
            format: FORMAT,
            offset: PREFIX,
            message: "the data does not cover the rest of the file".into(),
        };
    };
    let needed = metadata.data_len() as u64;
    let available = bytes.len() as u64 - data_start;
    if available < needed {
        return truncated("tensor data".into(), data_start, needed, available);
    }
    Error::Malformed {
        file: FileRef::default(),
        format: FORMAT,
        offset: data_start + needed,
        message: format!(
            "{} bytes follow the end of the last tensor's data",
            available - needed
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with `header` as its JSON header and `data` after it.
    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn tensors_come_in_data_order_with_absolute_offsets() {
        let header = r#"{"b":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[8,10]},
            "a":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]},
            "__metadata__":{"z":"1","format":"pt"}}"#;
        let parsed = parse(&file(header, &[0; 10])).unwrap();
        let start = 8 + header.len() as u64;
        let a = &parsed.tensors[0];
        assert_eq!(
            (a.name.as_str(), a.dtype, a.offset, a.nbytes),
            ("a", DType::BF16, start, 8)
        );
        assert_eq!(
            (a.shape.clone(), a.strides.clone()),
            (vec![2, 2], vec![2, 1])
        );
        assert_eq!(parsed.tensors[1].dtype, DType::F8E4M3);
        assert_eq!(parsed.tensors[1].offset, start + 8);
        let keys: Vec<&str> = parsed.metadata.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["format", "z"]);
    }

    #[test]
    fn zero_dim_and_empty_tensors() {
        let header = r#"{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},
            "e":{"dtype":"I64","shape":[0,3],"data_offsets":[4,4]}}"#;
        let parsed = parse(&file(header, &[0; 4])).unwrap();
        assert_eq!(parsed.tensors.len(), 2);
        let e = parsed.tensors.iter().find(|t| t.name == "e").unwrap();
        assert_eq!((e.nbytes, e.n_elements()), (0, Some(0)));
    }

    #[test]
    fn sub_byte_types_are_named_in_the_error() {
        let header = r#"{"q":{"dtype":"F4","shape":[4],"data_offsets":[0,2]}}"#;
        let err = parse(&file(header, &[0; 2])).unwrap_err();
        assert!(
            matches!(&err, Error::UnsupportedDType { dtype, .. } if dtype == "F4"),
            "{err}"
        );
    }

    #[test]
    fn errors_say_what_and_where() {
        let ok = file(
            r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
            &[0; 16],
        );
        let cut = convert_of(&ok[..ok.len() - 3]);
        assert!(
            matches!(
                cut,
                Error::Truncated {
                    needed: 16,
                    available: 13,
                    ..
                }
            ),
            "{cut}"
        );
        let mut long = ok.clone();
        long.push(0);
        assert!(matches!(convert_of(&long), Error::Malformed { .. }));
        assert!(matches!(
            convert_of(&ok[..5]),
            Error::Truncated { offset: 0, .. }
        ));
        assert!(matches!(
            convert_of(&ok[..20]),
            Error::Truncated { offset: 8, .. }
        ));
        let bad_json = file("{\"a\":", &[]);
        let err = convert_of(&bad_json);
        assert!(matches!(err, Error::Malformed { offset: 8, .. }), "{err}");
        let huge = [&u64::MAX.to_le_bytes()[..], b"{}"].concat();
        assert!(matches!(convert_of(&huge), Error::LimitExceeded { .. }));
        let unknown = file(
            r#"{"a":{"dtype":"F3","shape":[1],"data_offsets":[0,1]}}"#,
            &[0],
        );
        assert!(convert_of(&unknown).to_string().contains("F3"));
    }

    #[test]
    fn dimensions_past_i64_are_refused_even_when_empty() {
        let header =
            r#"{"e":{"dtype":"F32","shape":[9223372036854775808,0],"data_offsets":[0,0]}}"#;
        let err = parse(&file(header, &[])).unwrap_err();
        assert!(err.to_string().contains("9223372036854775808"), "{err}");
        let header =
            r#"{"e":{"dtype":"F32","shape":[9223372036854775807,0],"data_offsets":[0,0]}}"#;
        assert!(parse(&file(header, &[])).is_ok());
    }

    #[test]
    fn limits_name_their_setting() {
        let ok = file(
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            &[0; 8],
        );
        let tight = |f: fn(&mut Limits)| {
            let mut limits = Limits::DEFAULT;
            f(&mut limits);
            parse_with(&ok, &limits)
                .unwrap_err()
                .limit_setting()
                .unwrap_or("none")
        };
        assert_eq!(tight(|l| l.max_tensors = 1), "max_tensors");
        assert_eq!(tight(|l| l.max_header_bytes = 8), "max_header_bytes");
        assert_eq!(parse_with(&ok, &Limits::DEFAULT).unwrap().tensors.len(), 2);
    }

    fn convert_of(bytes: &[u8]) -> Error {
        parse(bytes).unwrap_err()
    }
}
