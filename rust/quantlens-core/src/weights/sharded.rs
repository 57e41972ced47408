//! Models in several files: a `*.index.json` whose `weight_map` says which shard holds
//! each tensor (as written by `save_pretrained`), or a folder of `*.safetensors` files.
//!
//! Every shard is opened once and parsed whole; the index is then checked against what
//! the shards really hold, so a stale or hand-edited index fails loudly instead of
//! silently losing or mislocating tensors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::{parse_file, Format, WeightIndex};
use crate::error::{Error, FileRef, Result};
use crate::format::FileKind;
use crate::limits::{self, Limits, OpenOptions};
use crate::mmap::MappedFile;
use crate::tensor::TensorRef;

/// The index a folder opens through when it has one.
const DEFAULT_INDEX: &str = "model.safetensors.index.json";

/// The index and the single file of a PyTorch model saved by `save_pretrained`.
const PYTORCH_INDEX: &str = "pytorch_model.bin.index.json";
const PYTORCH_FILE: &str = "pytorch_model.bin";

/// What an index file says: tensor name → shard file name, and its `metadata`.
#[derive(Debug)]
struct IndexJson {
    weight_map: BTreeMap<String, String>,
    metadata: Vec<(String, String)>,
}

/// Open the model in folder `dir`: through its safetensors index if it has one, else every
/// `*.safetensors` file in it (in name order), else a PyTorch model's
/// `pytorch_model.bin.index.json` or `pytorch_model.bin`, the names `save_pretrained` uses.
pub(super) fn open_dir(dir: &Path, options: &OpenOptions) -> Result<WeightIndex> {
    let mut indexes = Vec::new();
    let mut shards = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".safetensors.index.json") {
            indexes.push(path);
        } else if name.ends_with(".safetensors") && path.is_file() {
            shards.push(path);
        }
    }
    indexes.sort();
    shards.sort();
    let default = indexes
        .iter()
        .position(|p| p.file_name().is_some_and(|n| n == DEFAULT_INDEX));
    match (default, indexes.len()) {
        (Some(i), _) => open_index_at(&indexes[i], options),
        (None, 1) => open_index_at(&indexes[0], options),
        (None, 0) if !shards.is_empty() => open_shards(shards, None, Vec::new(), options),
        (None, 0) => open_pytorch_dir(dir, options),
        (None, _) => Err(split_error(
            dir,
            format!(
                "the folder holds several indexes ({}); open one of them",
                names(&indexes)
            ),
        )),
    }
}

/// A folder without safetensors: a PyTorch model as `save_pretrained` writes it.
fn open_pytorch_dir(dir: &Path, options: &OpenOptions) -> Result<WeightIndex> {
    let index = dir.join(PYTORCH_INDEX);
    if index.is_file() {
        return open_index_at(&index, options);
    }
    let single = dir.join(PYTORCH_FILE);
    if single.is_file() {
        return WeightIndex::open_with(&single, options);
    }
    // Nothing to open: "not found", like a missing file, rather than a format error.
    Err(Error::io(
        dir,
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "the folder holds no *.safetensors file, no *.safetensors.index.json, \
                 no {PYTORCH_INDEX} and no {PYTORCH_FILE}"
            ),
        ),
    ))
}

fn open_index_at(path: &Path, options: &OpenOptions) -> Result<WeightIndex> {
    open_index(
        &Arc::new(MappedFile::open_with(path, options.access)?),
        options,
    )
}

/// Open the model an index file (already mapped) describes.
pub(super) fn open_index(index: &Arc<MappedFile>, options: &OpenOptions) -> Result<WeightIndex> {
    let path = index.path();
    let parsed = parse_index(index.bytes(), &options.limits).map_err(|e| e.in_file(path))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let shard_names: BTreeSet<&str> = parsed.weight_map.values().map(String::as_str).collect();
    let mut shard_paths = Vec::with_capacity(shard_names.len());
    for name in shard_names {
        if !is_plain_relative(name) {
            return Err(malformed_index(
                path,
                format!("shard '{name}' is not a file name inside the index's folder"),
            ));
        }
        shard_paths.push(dir.join(name));
    }
    open_shards(
        shard_paths,
        Some((path, &parsed.weight_map)),
        parsed.metadata,
        options,
    )
}

/// Map and parse every shard, index their tensors together, and check them against the
/// index's `weight_map` if there is one.
fn open_shards(
    paths: Vec<PathBuf>,
    index: Option<(&Path, &BTreeMap<String, String>)>,
    mut metadata: Vec<(String, String)>,
    options: &OpenOptions,
) -> Result<WeightIndex> {
    let mut files = Vec::with_capacity(paths.len());
    let mut tensors = Vec::new();
    let mut format = None;
    for (i, path) in paths.iter().enumerate() {
        let file = Arc::new(open_shard(path, index.is_some(), options)?);
        let (shard_format, parsed) = parse_file(&file, &options.limits)?;
        if let Some((first, first_path)) =
            format.filter(|(f, _): &(Format, &Path)| *f != shard_format)
        {
            return Err(split_error(
                path,
                format!(
                    "this shard is {} but {} is {}",
                    shard_format.name(),
                    first_path.display(),
                    first.name()
                ),
            ));
        }
        format.get_or_insert((shard_format, path.as_path()));
        tensors.extend(
            parsed
                .tensors
                .into_iter()
                .map(|t| TensorRef { file: i, ..t }),
        );
        for (key, value) in parsed.metadata {
            if !metadata.iter().any(|(k, _)| *k == key) {
                metadata.push((key, value));
            }
        }
        files.push(file);
    }
    let format = format.map_or(Format::Safetensors, |(f, _)| f);
    let model = WeightIndex::new(format, files, tensors, metadata)?;
    if let Some((index_path, weight_map)) = index {
        check_against_index(&model, index_path, weight_map)?;
    }
    Ok(model)
}

/// Map one shard; a shard the index names but the folder lacks is a split error.
fn open_shard(path: &Path, listed: bool, options: &OpenOptions) -> Result<MappedFile> {
    match MappedFile::open_with(path, options.access) {
        Err(Error::Io { source, .. })
            if listed && source.kind() == std::io::ErrorKind::NotFound =>
        {
            Err(split_error(
                path,
                "shard listed in the index is missing".into(),
            ))
        }
        other => other,
    }
}

/// Every tensor must sit in the shard the index names for it, and every name the index
/// lists must be in some shard.
fn check_against_index(
    model: &WeightIndex,
    index_path: &Path,
    weight_map: &BTreeMap<String, String>,
) -> Result<()> {
    for t in &model.tensors {
        let shard = model.files[t.file].path();
        let shard_name = shard.file_name().and_then(|n| n.to_str()).unwrap_or("");
        match weight_map.get(&t.name) {
            Some(listed) if Path::new(listed).file_name() == Path::new(shard_name).file_name() => {}
            Some(listed) => {
                return Err(split_error(
                    shard,
                    format!(
                        "tensor '{}' is in this shard but the index puts it in {listed}",
                        t.name
                    ),
                ))
            }
            None => {
                return Err(split_error(
                    shard,
                    format!("tensor '{}' is in this shard but not in the index", t.name),
                ))
            }
        }
    }
    if let Some((name, shard)) = weight_map
        .iter()
        .find(|(name, _)| model.position(name).is_err())
    {
        return Err(split_error(
            index_path,
            format!("the index puts tensor '{name}' in {shard}, which does not hold it"),
        ));
    }
    Ok(())
}

/// Read `weight_map` (and `metadata`, values as text) from an index file's bytes.
fn parse_index(bytes: &[u8], limits: &Limits) -> Result<IndexJson> {
    limits::check(
        "index JSON",
        "file size",
        "max_header_bytes",
        0,
        bytes.len() as u64,
        limits.max_header_bytes,
    )?;
    let malformed = |offset: u64, message: String| Error::Malformed {
        file: FileRef::default(),
        format: "index JSON",
        offset,
        message,
    };
    let root: Value = serde_json::from_slice(bytes)
        .map_err(|e| malformed(byte_offset(bytes, e.line(), e.column()), e.to_string()))?;
    let Some(map) = root.get("weight_map").and_then(Value::as_object) else {
        return Err(Error::UnsupportedFormat {
            file: FileRef::default(),
            kind: FileKind::Json.name(),
            message: format!(
                "not a safetensors file or PyTorch checkpoint: this is {} (it has no \
                 \"weight_map\", so it is no sharded-model index either)",
                FileKind::Json.description()
            ),
        });
    };
    let mut weight_map = BTreeMap::new();
    for (tensor, shard) in map {
        let Some(shard) = shard.as_str() else {
            return Err(malformed(
                0,
                format!("the shard of tensor '{tensor}' is not a string"),
            ));
        };
        weight_map.insert(tensor.clone(), shard.to_owned());
    }
    let metadata = root
        .get("metadata")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), text(v))).collect())
        .unwrap_or_default();
    Ok(IndexJson {
        weight_map,
        metadata,
    })
}

/// A JSON value as metadata text: strings as they are, anything else as JSON.
fn text(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

/// The byte offset of `serde_json`'s 1-based line and column.
fn byte_offset(bytes: &[u8], line: usize, column: usize) -> u64 {
    let line_start: usize = bytes
        .split(|&b| b == b'\n')
        .take(line.saturating_sub(1))
        .map(|l| l.len() + 1)
        .sum();
    (line_start + column.saturating_sub(1)).min(bytes.len()) as u64
}

/// Only plain names below the index's folder: an index must not send us to other files.
fn is_plain_relative(name: &str) -> bool {
    !name.is_empty()
        && Path::new(name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

fn names(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths
        .iter()
        .map(|p| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.join(", ")
}

fn split_error(path: &Path, message: String) -> Error {
    Error::Split {
        file: FileRef(Some(path.to_path_buf())),
        message,
    }
}

fn malformed_index(path: &Path, message: String) -> Error {
    Error::Malformed {
        file: FileRef(Some(path.to_path_buf())),
        format: "index JSON",
        offset: 0,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_json_is_read_and_checked() {
        let json = br#"{"metadata": {"total_size": 12, "note": "x"},
                        "weight_map": {"a": "m-1.safetensors", "b": "m-2.safetensors"}}"#;
        let index = parse_index(json, &Limits::DEFAULT).unwrap();
        assert_eq!(index.weight_map["b"], "m-2.safetensors");
        assert_eq!(
            index.metadata,
            [
                ("note".into(), "x".into()),
                ("total_size".into(), "12".into())
            ]
        );
        assert!(parse_index(br#"{"weight_map": {"a": 1}}"#, &Limits::DEFAULT).is_err());
        assert!(parse_index(br#"{"architectures": []}"#, &Limits::DEFAULT).is_err());
        let err = parse_index(b"{\n  \"weight_map\": {,}", &Limits::DEFAULT).unwrap_err();
        assert_eq!(err.offset(), Some(19), "{err}");
    }

    #[test]
    fn shard_names_stay_in_the_folder() {
        assert!(is_plain_relative("model-00001-of-00002.safetensors"));
        assert!(is_plain_relative("sub/model.safetensors"));
        for bad in ["", "../x.safetensors", "/etc/passwd", "a/../../b"] {
            assert!(!is_plain_relative(bad), "{bad}");
        }
    }
}
