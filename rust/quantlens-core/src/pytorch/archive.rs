//! Zip checkpoints (torch ≥ 1.6): the `zip` crate reads the central directory; each
//! storage is the stored (uncompressed) record `<prefix>/data/<key>`, whose data offset is
//! where the tensor's bytes are, so nothing is copied or inflated.

use std::collections::HashMap;
use std::io::Cursor;

use zip::{CompressionMethod, ZipArchive};

use super::pickle::{Storage, Vm};
use super::tensors::{collect, Record};
use super::{limit_setting, malformed, truncated, unsupported};
use crate::error::Result;
use crate::limits::Limits;
use crate::weights::Parsed;

/// One zip entry: where its data is and whether it can be mapped as it is.
#[derive(Clone, Debug)]
struct Entry {
    record: Record,
    /// The compression method, when not stored.
    compressed: Option<String>,
    /// Offset of the entry's local header (for messages).
    header: u64,
}

/// Read a zip checkpoint.
pub fn parse(bytes: &[u8]) -> Result<Parsed> {
    parse_with(bytes, &Limits::DEFAULT)
}

/// Read a zip checkpoint under `limits`.
pub fn parse_with(bytes: &[u8], limits: &Limits) -> Result<Parsed> {
    let (prefix, entries) = index(bytes)?;
    let get = |name: &str| entries.get(&format!("{prefix}/{name}"));
    let Some(pkl) = get("data.pkl") else {
        return Err(malformed(
            0,
            format!(
                "zip archive without '{prefix}/data.pkl': not a checkpoint written by torch.save"
            ),
        ));
    };
    let pkl = stored(pkl, || format!("{prefix}/data.pkl"))?;
    limit_setting(
        "pickle size",
        "max_header_bytes",
        pkl.offset,
        pkl.len,
        limits.max_header_bytes,
    )?;
    if let Some(order) = get("byteorder") {
        let order = stored(order, || format!("{prefix}/byteorder"))?;
        match slice(bytes, order) {
            b"little" => {}
            b"big" => {
                return Err(unsupported(
                    order.offset,
                    "the checkpoint was saved on a big-endian machine; its storages cannot be \
                     mapped as they are. Load and re-save it on a little-endian machine",
                ))
            }
            other => {
                return Err(malformed(
                    order.offset,
                    format!("byteorder record is {:?}", String::from_utf8_lossy(other)),
                ))
            }
        }
    }
    let mut vm = Vm::new(slice(bytes, pkl), pkl.offset);
    let (root, _) = vm.load(0)?;
    // Storage records by key, so each tensor finds its record without building a name.
    let data_dir = format!("{prefix}/data/");
    let storages: HashMap<&str, &Entry> = entries
        .iter()
        .filter_map(|(name, e)| Some((name.strip_prefix(&data_dir)?, e)))
        .collect();
    let locate = |storage: &Storage<'_>, pos: u64| -> Result<Record> {
        let entry = storages.get(storage.key).ok_or_else(|| {
            let name = format!("{data_dir}{}", storage.key);
            malformed(
                pos,
                format!(
                    "the pickle names storage '{}' but the archive has no record '{name}'",
                    storage.key
                ),
            )
        })?;
        stored(entry, || format!("{data_dir}{}", storage.key))
    };
    collect(&vm, root, &locate, limits)
}

/// The record of an entry that can be read in place, or why it cannot.
fn stored(entry: &Entry, name: impl FnOnce() -> String) -> Result<Record> {
    match &entry.compressed {
        None => Ok(entry.record),
        Some(method) => Err(unsupported(
            entry.header,
            format!(
                "record '{}' is compressed ({method}); torch.save never compresses records, \
                 so another tool re-packed this archive. quantlens maps records in place and \
                 reads only stored ones: re-save the checkpoint with torch.save",
                name()
            ),
        )),
    }
}

fn slice(bytes: &[u8], record: Record) -> &[u8] {
    // `index` checked every record against the file.
    &bytes[record.offset as usize..(record.offset + record.len) as usize]
}

/// The archive prefix (the first entry's top folder) and every entry by name.
fn index(bytes: &[u8]) -> Result<(String, HashMap<String, Entry>)> {
    let zip_error = |e: zip::result::ZipError| malformed(0, format!("unreadable zip archive: {e}"));
    let mut zip = ZipArchive::new(Cursor::new(bytes)).map_err(zip_error)?;
    // Two entries of one name could make two readers see two different checkpoints.
    if zip.has_duplicate_names() {
        return Err(malformed(0, "zip archive names an entry twice"));
    }
    let mut entries = HashMap::with_capacity(zip.len());
    let mut prefix = None;
    for i in 0..zip.len() {
        let file = zip.by_index_raw(i).map_err(zip_error)?;
        let name = file.name().map_err(zip_error)?.into_owned();
        let header = file.header_start();
        let start = file
            .data_start()
            .ok_or_else(|| malformed(header, format!("zip entry '{name}' has no data offset")))?;
        let len = file.compressed_size();
        let end = start.saturating_add(len);
        if end > bytes.len() as u64 {
            return Err(truncated(
                &format!("zip record '{name}'"),
                start,
                len,
                (bytes.len() as u64).saturating_sub(start),
            ));
        }
        let compressed = match file.compression() {
            CompressionMethod::Stored if file.encrypted() => Some("encrypted".to_owned()),
            CompressionMethod::Stored if file.size() != len => {
                return Err(malformed(
                    header,
                    format!("stored zip record '{name}' has two different sizes"),
                ))
            }
            CompressionMethod::Stored => None,
            other => Some(method_name(other)),
        };
        if prefix.is_none() {
            let Some((top, _)) = name.split_once('/') else {
                return Err(malformed(
                    header,
                    format!(
                        "first zip entry '{name}' is not in a folder: not a torch.save checkpoint"
                    ),
                ));
            };
            prefix = Some(top.to_owned());
        }
        let entry = Entry {
            record: Record { offset: start, len },
            compressed,
            header,
        };
        entries.insert(name, entry);
    }
    let prefix = prefix.ok_or_else(|| malformed(0, "empty zip archive"))?;
    Ok((prefix, entries))
}

/// The compression method in words (the crate is built without codecs, so it only has a number).
fn method_name(method: CompressionMethod) -> String {
    const NAMES: [(CompressionMethod, &str); 6] = [
        (CompressionMethod::DEFLATE, "deflate"),
        (CompressionMethod::DEFLATE64, "deflate64"),
        (CompressionMethod::BZIP2, "bzip2"),
        (CompressionMethod::LZMA, "lzma"),
        (CompressionMethod::ZSTD, "zstd"),
        (CompressionMethod::XZ, "xz"),
    ];
    NAMES
        .iter()
        .find(|(m, _)| *m == method)
        .map_or_else(|| format!("{method:?}"), |(_, name)| (*name).to_owned())
}
