//! Every PyTorch checkpoint of the shared corpus (zip and legacy) read by `pytorch::parse`
//! matches `MANIFEST.json`: names, dtypes, shapes, strides, byte offsets and the sha256 of
//! the values (gathered through the strides, converted to f32) that `torch.load` gave.

#[path = "pytorch_common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use quantlens_core::pytorch;
use serde_json::Value;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus")
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("unsigned"))
        .collect()
}

fn check_file(dir: &Path, file: &Value) -> usize {
    let path = file["path"].as_str().expect("path");
    let bytes = std::fs::read(dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let parsed = pytorch::parse(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
    let expected = file["tensors"].as_array().expect("tensors[]");
    assert_eq!(
        parsed.tensors.len() as u64,
        file["tensors_total"].as_u64().expect("tensors_total"),
        "{path}: tensor count"
    );
    for want in expected {
        let name = want["name"].as_str().expect("name");
        let got = parsed
            .tensors
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("{path}: no tensor {name}"));
        let what = format!("{path} {name}");
        assert_eq!(
            got.dtype.numpy_name(),
            want["dtype"].as_str(),
            "{what}: dtype"
        );
        assert_eq!(got.shape, u64s(&want["shape"]), "{what}: shape");
        if !want["stride"].is_null() {
            assert_eq!(got.strides, u64s(&want["stride"]), "{what}: stride");
        }
        if !want["offset"].is_null() {
            assert_eq!(Some(got.offset), want["offset"].as_u64(), "{what}: offset");
            let elem = got.dtype.size().unwrap() as u64;
            // The manifest's nbytes counts elements; TensorRef's spans the strided view.
            let n = got.n_elements().unwrap();
            assert_eq!(Some(n * elem), want["nbytes"].as_u64(), "{what}: nbytes");
            let span = common::element_offsets(got)
                .iter()
                .max()
                .map_or(0, |m| m + elem);
            assert_eq!(got.nbytes, span, "{what}: bytes spanned");
            let storage_start = want["storage_file_offset"].as_u64().unwrap();
            let storage_offset = want["storage_offset_elements"].as_u64().unwrap();
            assert_eq!(got.offset, storage_start + storage_offset * elem, "{what}");
        }
        if let Some(c) = want["contiguous"].as_bool() {
            assert_eq!(got.is_contiguous(), c, "{what}: contiguous");
        }
        let values = common::gather_f32(&bytes, got);
        assert_eq!(values.len() as u64, want["expected"]["n"].as_u64().unwrap());
        assert_eq!(
            common::sha256_f32_le(&values),
            want["expected"]["f32_sha256"].as_str().unwrap(),
            "{what}: values differ from torch.load; first {:?}, expected {}",
            &values[..values.len().min(8)],
            want["expected"]["first8"]
        );
    }
    expected.len()
}

#[test]
fn corpus_checkpoints_match_torch_load() {
    let dir = corpus_dir();
    let Ok(text) = std::fs::read_to_string(dir.join("MANIFEST.json")) else {
        eprintln!("skipping: no corpus manifest under {}", dir.display());
        return;
    };
    let manifest: Value = serde_json::from_str(&text).expect("MANIFEST.json is JSON");
    let mut files = 0;
    let mut tensors = 0;
    let mut legacy = 0;
    for file in manifest["files"].as_array().expect("files[]") {
        let format = file["format"].as_str().unwrap_or("");
        if !format.starts_with("pytorch") {
            continue;
        }
        tensors += check_file(&dir, file);
        files += 1;
        legacy += usize::from(format == "pytorch-legacy-pickle");
    }
    eprintln!("checked {tensors} tensors in {files} PyTorch files ({legacy} legacy)");
    assert!(
        files >= 6 && legacy >= 1,
        "the corpus lost its PyTorch files"
    );
}
