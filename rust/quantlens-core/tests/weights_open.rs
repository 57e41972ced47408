//! `WeightIndex::open` on the shared corpus's safetensors files (against `MANIFEST.json`:
//! dtype, shape, absolute offset, size and raw bytes of every tensor, one file or sharded)
//! and on files that are not what their names say.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use quantlens_core::weights::{Format, WeightIndex};
use quantlens_core::Error;
use serde_json::Value;
use sha2::{Digest, Sha256};

const SHARDED: &str = "safetensors/generated/hf-gpt2-tiny-bf16";

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus")
}

fn manifest() -> Option<Vec<Value>> {
    let text = std::fs::read_to_string(corpus_dir().join("MANIFEST.json")).ok()?;
    let root: Value = serde_json::from_str(&text).expect("manifest is JSON");
    Some(root["files"].as_array().expect("files").clone())
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .fold(String::new(), |mut hex, b| {
            write!(hex, "{b:02x}").expect("writing to a String cannot fail");
            hex
        })
}

/// Every tensor the manifest lists for `entry` is in `index`, in file `file`, as listed.
fn check_entry(index: &WeightIndex, entry: &Value, file: usize) {
    let path = entry["path"].as_str().expect("path");
    for t in entry["tensors"].as_array().expect("tensors") {
        let name = t["name"].as_str().expect("name");
        let got = index.tensor(name).unwrap_or_else(|e| panic!("{path}: {e}"));
        let shape: Vec<u64> = serde_json::from_value(t["shape"].clone()).expect("shape");
        assert_eq!(
            got.dtype.name(),
            t["dtype"].as_str().expect("dtype"),
            "{path} {name}"
        );
        assert_eq!(got.shape, shape, "{path} {name}");
        assert_eq!(Some(got.offset), t["offset"].as_u64(), "{path} {name}");
        assert_eq!(Some(got.nbytes), t["nbytes"].as_u64(), "{path} {name}");
        assert_eq!(got.file, file, "{path} {name}");
        assert!(got.is_contiguous(), "{path} {name}");
        let data = index.tensor_data(name).expect("data");
        assert_eq!(
            sha256(data),
            t["raw_sha256"].as_str().expect("sha"),
            "{path} {name}"
        );
    }
}

#[test]
fn corpus_safetensors_files_match_the_manifest() {
    let Some(files) = manifest() else {
        eprintln!("no corpus at {}: skipped", corpus_dir().display());
        return;
    };
    let mut checked = 0;
    for entry in files.iter().filter(|e| e["format"] == "safetensors") {
        let path = corpus_dir().join(entry["path"].as_str().expect("path"));
        let index = WeightIndex::open(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(index.format, Format::Safetensors);
        assert_eq!(
            Some(index.tensors.len() as u64),
            entry["tensors_total"].as_u64()
        );
        check_entry(&index, entry, 0);
        checked += 1;
    }
    assert!(
        checked >= 10,
        "only {checked} safetensors files in the manifest"
    );
}

#[test]
fn corpus_sharded_model_opens_from_folder_and_index() {
    let Some(files) = manifest() else {
        return;
    };
    let folder = corpus_dir().join(SHARDED);
    for target in [folder.clone(), folder.join("model.safetensors.index.json")] {
        let index = WeightIndex::open(&target).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((index.files.len(), index.tensors.len()), (3, 28));
        for (i, file) in index.files.iter().enumerate() {
            let rel = format!(
                "{SHARDED}/{}",
                file.path().file_name().unwrap().to_string_lossy()
            );
            let entry = files
                .iter()
                .find(|e| e["path"] == rel.as_str())
                .expect("shard entry");
            check_entry(&index, entry, i);
        }
        assert!(index
            .metadata
            .contains(&("total_size".into(), "273920".into())));
    }
}

#[test]
fn files_that_are_not_weights_say_what_they_are() {
    let dir = std::env::temp_dir().join(format!("quantlens-weights-open-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cases: [(&[u8], &str); 4] = [
        (
            b"version https://git-lfs.github.com/spec/v1\noid sha256:00\n",
            "git-lfs-pointer",
        ),
        (b"<html><body>404</body></html>", "html"),
        (b"{\"vocab_size\": 5}", "json"),
        (b"", "empty"),
    ];
    for (content, kind) in cases {
        let path = dir.join(format!("{kind}.safetensors"));
        std::fs::write(&path, content).expect("write");
        match WeightIndex::open(&path) {
            Err(Error::UnsupportedFormat { kind: k, file, .. }) => {
                assert_eq!(k, kind);
                assert_eq!(file.0.as_deref(), Some(path.as_path()));
            }
            other => panic!("{kind}: {other:?}"),
        }
    }
    std::fs::remove_dir_all(&dir).expect("clean up");
}
