//! From the unpickled object tree to [`Parsed`]: dotted names for tensors found in dicts,
//! lists and tuples (`state_dict.encoder.0.weight`), each located in its storage's bytes,
//! and every other leaf as metadata. The walk is bounded in depth, visits and output size,
//! so shared or cyclic containers cannot make it run away.

use std::fmt::Write;

use super::pickle::globals::StorageKind;
use super::pickle::{Arena, Node, NodeId, Storage, TensorSpec, Value, Vm};
use super::{limit, limit_setting, malformed, truncated};
use crate::error::{Error, FileRef, Result};
use crate::limits::Limits;
use crate::tensor::{DType, TensorRef};
use crate::weights::Parsed;

/// Visits allowed on top of two per object and element the pickle built: shared
/// containers are walked once per path, so a pickle that shares one list many times over
/// (a "billion laughs") runs out of visits instead of time.
pub const EXTRA_VISITS: u64 = 1 << 20;
/// Longest dotted name.
pub const MAX_NAME_LEN: u64 = 64 << 10;
/// Most bytes of names and metadata text together.
pub const MAX_OUTPUT: u64 = 256 << 20;

/// Where a storage's bytes are in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Absolute offset of the first byte.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// Walk the value `vm` read as `root` and locate each tensor's bytes through `locate`
/// (storage → its record).
pub fn collect<'a>(
    vm: &Vm<'a>,
    root: Value<'a>,
    locate: &dyn Fn(&Storage<'a>, u64) -> Result<Record>,
    limits: &Limits,
) -> Result<Parsed> {
    let built = vm.arena().len() as u64 + vm.elements();
    let mut walker = Walker {
        arena: vm.arena(),
        locate,
        out: Parsed::default(),
        visits: 0,
        max_visits: EXTRA_VISITS + 2 * built,
        output: 0,
        limits,
    };
    walker.walk(root, String::new(), 0, 0)?;
    Ok(walker.out)
}

struct Walker<'v, 'a> {
    arena: &'v Arena<'a>,
    locate: &'v dyn Fn(&Storage<'a>, u64) -> Result<Record>,
    out: Parsed,
    visits: u64,
    max_visits: u64,
    output: u64,
    limits: &'v Limits,
}

impl<'a> Walker<'_, 'a> {
    fn walk(&mut self, value: Value<'a>, name: String, depth: u64, pos: u64) -> Result<()> {
        self.visits += 1;
        limit(
            "checkpoint objects visited",
            pos,
            self.visits,
            self.max_visits,
        )?;
        limit_setting(
            "checkpoint nesting depth",
            "max_depth",
            pos,
            depth,
            self.limits.max_depth,
        )?;
        let Value::Node(id) = value else {
            return self.metadata(name, scalar_repr(value), pos);
        };
        let pos = self.arena.pos(id);
        let Some(node) = self.arena.get(id) else {
            return Err(malformed(pos, "dangling object reference"));
        };
        match node {
            Node::Dict(dict) => {
                for &(key, child) in dict.entries() {
                    let key = match key {
                        Value::Node(id) => {
                            format!("<{}>", self.arena.get(id).map_or("?", Node::kind))
                        }
                        other => scalar_repr(other),
                    };
                    self.walk(child, join(&name, &key, pos)?, depth + 1, pos)?;
                }
                Ok(())
            }
            Node::List(items) | Node::Tuple(items) | Node::Set(items) => {
                for (i, &child) in items.iter().enumerate() {
                    self.walk(child, join(&name, &i.to_string(), pos)?, depth + 1, pos)?;
                }
                Ok(())
            }
            Node::OwnedBytes(bytes) => self.metadata(name, bytes_repr(bytes), pos),
            Node::Text(text) => self.metadata(name, text.clone(), pos),
            Node::Storage(s) => self.metadata(name, format!("<storage {}>", s.key), pos),
            Node::Tensor(spec) => {
                let tensor = self.tensor(id, spec, name)?;
                self.output += tensor.name.len() as u64;
                limit(
                    "checkpoint names and metadata bytes",
                    pos,
                    self.output,
                    MAX_OUTPUT,
                )?;
                limit_setting(
                    "tensor count",
                    "max_tensors",
                    pos,
                    self.out.tensors.len() as u64 + 1,
                    self.limits.max_tensors,
                )?;
                self.out.tensors.push(tensor);
                Ok(())
            }
        }
    }

    fn metadata(&mut self, name: String, value: String, pos: u64) -> Result<()> {
        self.output += (name.len() + value.len()) as u64;
        limit(
            "checkpoint names and metadata bytes",
            pos,
            self.output,
            MAX_OUTPUT,
        )?;
        self.out.metadata.push((name, value));
        Ok(())
    }

    fn tensor(&self, id: NodeId, spec: &TensorSpec, name: String) -> Result<TensorRef> {
        let pos = self.arena.pos(id);
        let Some(Node::Storage(storage)) = self.arena.get(spec.storage) else {
            return Err(malformed(pos, "tensor without a storage"));
        };
        let unsupported = |dtype: String| Error::UnsupportedDType {
            file: FileRef::default(),
            tensor: name.clone(),
            dtype,
        };
        let storage_elem = match storage.kind {
            StorageKind::Typed(d) => d.size().unwrap_or(1),
            StorageKind::Untyped => 1,
            StorageKind::Unsupported(class) => return Err(unsupported(format!("torch.{class}"))),
        };
        let dtype = match (spec.dtype, storage.kind) {
            (Some(d), _) => d
                .dtype
                .ok_or_else(|| unsupported(format!("torch.{}", d.name)))?,
            (None, StorageKind::Typed(d)) => d,
            // An untyped storage without a dtype rebuilds as bytes, as torch does.
            (None, _) => DType::U8,
        };
        let elem = dtype.size().unwrap_or(1) as u64;
        let storage_bytes = storage
            .numel
            .checked_mul(storage_elem as u64)
            .ok_or_else(|| malformed(pos, "storage size overflows"))?;
        let record = (self.locate)(storage, pos)?;
        if record.len < storage_bytes {
            return Err(truncated(
                &format!("storage '{}' of tensor '{name}'", storage.key),
                record.offset,
                storage_bytes,
                record.len,
            ));
        }
        let overflow = || malformed(pos, format!("tensor '{name}' extent overflows"));
        let n_elements = spec
            .shape
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .ok_or_else(overflow)?;
        let span = if n_elements == 0 {
            0
        } else {
            spec.shape
                .iter()
                .zip(&spec.strides)
                .try_fold(1u64, |acc, (&d, &s)| {
                    acc.checked_add((d - 1).checked_mul(s)?)
                })
                .and_then(|n| n.checked_mul(elem))
                .ok_or_else(overflow)?
        };
        let start = spec.storage_offset.checked_mul(elem).ok_or_else(overflow)?;
        let end = start.checked_add(span).ok_or_else(overflow)?;
        if span > 0 && end > storage_bytes {
            return Err(malformed(
                pos,
                format!(
                    "tensor '{name}' spans bytes {start}..{end} of storage '{}', which has {storage_bytes}",
                    storage.key
                ),
            ));
        }
        Ok(TensorRef {
            name,
            dtype,
            shape: spec.shape.clone(),
            strides: spec.strides.clone(),
            file: 0,
            // An empty tensor may name any offset; keep it inside the record.
            offset: record.offset + start.min(storage_bytes),
            nbytes: span,
        })
    }
}

fn join(prefix: &str, key: &str, pos: u64) -> Result<String> {
    let len = prefix.len() + key.len() + 1;
    limit("tensor name length", pos, len as u64, MAX_NAME_LEN)?;
    Ok(if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    })
}

/// Text for a non-container value, close to Python's `repr` (strings as they are).
fn scalar_repr(value: Value<'_>) -> String {
    match value {
        Value::None => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Int(i) => i.to_string(),
        Value::BigInt(b) => bigint_repr(b),
        Value::Float(f) if f.is_nan() => "nan".into(),
        Value::Float(f) if f.is_infinite() => if f > 0.0 { "inf" } else { "-inf" }.into(),
        Value::Float(f) => format!("{f:?}"),
        Value::Str(s) => s.to_owned(),
        Value::Bytes(b) => bytes_repr(b),
        Value::Global(g) => g.name(),
        Value::Node(_) => "<object>".into(),
    }
}

fn bytes_repr(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() + 3);
    s.push_str("b'");
    for &b in bytes {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'\'' => s.push_str("\\'"),
            0x20..=0x7e => s.push(char::from(b)),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s.push('\'');
    s
}

/// Decimal text of a two's complement little-endian integer (hex past 64 bytes).
fn bigint_repr(bytes: &[u8]) -> String {
    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
    // Magnitude, little-endian bytes.
    let mut mag: Vec<u8> = if negative {
        let mut carry = true;
        bytes
            .iter()
            .map(|&b| {
                let (v, c) = (!b).overflowing_add(u8::from(carry));
                carry = c;
                v
            })
            .collect()
    } else {
        bytes.to_vec()
    };
    let sign = if negative { "-" } else { "" };
    if mag.len() > 64 {
        let mut hex = format!("{sign}0x");
        for b in mag.iter().rev() {
            let _ = write!(hex, "{b:02x}");
        }
        return hex;
    }
    let mut digits = Vec::new();
    while mag.iter().any(|&b| b != 0) {
        let mut rem = 0u32;
        for b in mag.iter_mut().rev() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 10) as u8;
            rem = cur % 10;
        }
        digits.push(b'0' + rem as u8);
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    digits.reverse();
    format!("{sign}{}", String::from_utf8_lossy(&digits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reprs() {
        assert_eq!(
            bigint_repr(&[0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]),
            "119547037146038801333356"
        );
        assert_eq!(bigint_repr(&[0xff; 9]), "-1");
        assert_eq!(
            bigint_repr(&[0, 0, 0, 0, 0, 0, 0, 0, 1]),
            "18446744073709551616"
        );
        assert_eq!(bytes_repr(b"a'\x00"), "b'a\\'\\x00'");
        assert_eq!(scalar_repr(Value::Float(2.5)), "2.5");
        assert_eq!(scalar_repr(Value::Bool(true)), "True");
    }
}
