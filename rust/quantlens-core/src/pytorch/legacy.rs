//! Legacy checkpoints (torch < 1.6): one stream of five pickles — the magic number, the
//! format version, system info, the object itself (persistent ids name storages by key),
//! the list of storage keys — then each storage in that order as an 8-byte little-endian
//! element count followed by its raw bytes. Read with the same allow-listed pickle reader.

use std::collections::HashMap;

use super::pickle::globals::StorageKind;
use super::pickle::{Node, Storage, Value, Vm};
use super::tensors::{collect, Record};
use super::{limit_setting, malformed, truncated, unsupported};
use crate::error::{Error, FileRef, Result};
use crate::limits::Limits;
use crate::weights::Parsed;

/// `0x1950a86a20f9469cfc6c` as pickled by `LONG1`: two's complement, little-endian.
const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// The only legacy format version torch wrote.
const PROTOCOL_VERSION: i64 = 1001;

/// Read a legacy checkpoint.
pub fn parse(bytes: &[u8]) -> Result<Parsed> {
    parse_with(bytes, &Limits::DEFAULT)
}

/// Read a legacy checkpoint under `limits`.
pub fn parse_with(bytes: &[u8], limits: &Limits) -> Result<Parsed> {
    let mut vm = Vm::new(bytes, 0);
    let (magic, pos) = vm.load(0)?;
    if magic != Value::BigInt(&MAGIC) {
        return Err(malformed(
            0,
            "a pickle, but not a PyTorch checkpoint (its first value is not torch's magic number)",
        ));
    }
    let (version, next) = vm.load(pos)?;
    if version != Value::Int(PROTOCOL_VERSION) {
        return Err(Error::UnsupportedVersion {
            file: FileRef::default(),
            version: match version {
                Value::Int(v) => u32::try_from(v).unwrap_or(0),
                _ => 0,
            },
            message: format!(
                "legacy PyTorch checkpoint whose format version is {}, not {PROTOCOL_VERSION}: \
                 re-save it with torch.save(torch.load(path, weights_only=True), new_path) \
                 using a torch that reads it",
                match version {
                    Value::Int(v) => v.to_string(),
                    _ => "not an int".to_owned(),
                }
            ),
        });
    }
    let sys_pos = next as u64;
    let (sys_info, next) = vm.load(next)?;
    if !little_endian(&vm, sys_info) {
        return Err(unsupported(
            sys_pos,
            "the checkpoint was saved on a big-endian machine; its storages cannot be mapped as \
             they are. Load and re-save it on a little-endian machine",
        ));
    }
    let (root, next) = vm.load(next)?;
    let keys_pos = next as u64;
    let (keys, next) = vm.load(next)?;
    limit_setting(
        "pickles size",
        "max_header_bytes",
        0,
        next as u64,
        limits.max_header_bytes,
    )?;
    let records = storages(bytes, &vm, keys, keys_pos, next, limits)?;
    let locate = |storage: &Storage<'_>, pos: u64| -> Result<Record> {
        records.get(storage.key).copied().ok_or_else(|| {
            malformed(
                pos,
                format!(
                    "storage '{}' is not in the file's storage list",
                    storage.key
                ),
            )
        })
    };
    collect(&vm, root, &locate, limits)
}

/// Whether the system-info dict says little-endian (older files may not say; they are).
fn little_endian(vm: &Vm<'_>, sys_info: Value<'_>) -> bool {
    let Value::Node(id) = sys_info else {
        return true;
    };
    let Some(Node::Dict(dict)) = vm.arena().get(id) else {
        return true;
    };
    !dict
        .entries()
        .iter()
        .any(|&(k, v)| k == Value::Str("little_endian") && v == Value::Bool(false))
}

/// Locate each storage listed in `keys`, laid out one after another from `start`.
fn storages<'a>(
    bytes: &[u8],
    vm: &Vm<'a>,
    keys: Value<'a>,
    keys_pos: u64,
    start: usize,
    limits: &Limits,
) -> Result<HashMap<&'a str, Record>> {
    // What the object pickle said about each key: element size and count.
    let mut claimed: HashMap<&str, (u64, u64, u64)> = HashMap::new();
    for (pos, node) in vm.arena().iter() {
        let Node::Storage(s) = node else { continue };
        let elem = match s.kind {
            StorageKind::Typed(d) => d.size().unwrap_or(1) as u64,
            StorageKind::Untyped => 1,
            StorageKind::Unsupported(class) => {
                return Err(unsupported(pos, format!("storages of class torch.{class}")))
            }
        };
        let first = *claimed.entry(s.key).or_insert((elem, s.numel, pos));
        if (first.0, first.1) != (elem, s.numel) {
            return Err(malformed(
                pos,
                format!(
                    "storage '{}' is named with two different types or sizes",
                    s.key
                ),
            ));
        }
    }
    let list = match keys {
        Value::Node(id) => match vm.arena().get(id) {
            Some(Node::List(items) | Node::Tuple(items)) => items.as_slice(),
            _ => &[],
        },
        _ => &[],
    };
    limit_setting(
        "storages",
        "max_tensors",
        keys_pos,
        list.len() as u64,
        limits.max_tensors,
    )?;
    let mut records = HashMap::with_capacity(list.len());
    let mut pos = start as u64;
    for key in list {
        let Value::Str(key) = *key else {
            return Err(malformed(keys_pos, "storage key list holds a non-string"));
        };
        let Some(&(elem, numel, named_at)) = claimed.get(key) else {
            return Err(malformed(
                keys_pos,
                format!("storage '{key}' is listed but no tensor uses it"),
            ));
        };
        let count = read_u64(bytes, pos, key)?;
        if count != numel {
            return Err(malformed(
                pos,
                format!(
                    "storage '{key}' holds {count} elements but the pickle (byte {named_at}) says {numel}"
                ),
            ));
        }
        let data = pos + 8;
        let len = count
            .checked_mul(elem)
            .ok_or_else(|| malformed(pos, format!("storage '{key}' size overflows")))?;
        let available = (bytes.len() as u64).saturating_sub(data);
        if len > available {
            return Err(truncated(&format!("storage '{key}'"), data, len, available));
        }
        if records.insert(key, Record { offset: data, len }).is_some() {
            return Err(malformed(
                keys_pos,
                format!("storage '{key}' is listed twice"),
            ));
        }
        pos = data + len;
    }
    Ok(records)
}

fn read_u64(bytes: &[u8], pos: u64, key: &str) -> Result<u64> {
    let available = (bytes.len() as u64).saturating_sub(pos);
    if available < 8 {
        return Err(truncated(
            &format!("element count of storage '{key}'"),
            pos,
            8,
            available,
        ));
    }
    let p = pos as usize;
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[p..p + 8]);
    Ok(u64::from_le_bytes(raw))
}
