//! Dequantizes every supported tensor of the shared corpus's GGUF files and checks the f32
//! output's sha256 against the value ggml's own `to_float` gave (`MANIFEST.json`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use quantlens_core::quant::{can_dequantize, dequantize_f32};
use quantlens_core::GgmlType;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Types the corpus is known to hold; each must be checked at least once.
const REQUIRED: [&str; 17] = [
    "F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
    "Q6_K", "IQ4_NL", "IQ4_XS", "TQ2_0", "MXFP4",
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus")
}

fn sha256_f32_le(values: &[f32]) -> String {
    let mut hasher = Sha256::new();
    for v in values {
        hasher.update(v.to_le_bytes());
    }
    hasher.finalize().iter().fold(String::new(), |mut hex, b| {
        write!(hex, "{b:02x}").expect("writing to a String cannot fail");
        hex
    })
}

fn as_usize(v: &Value, what: &str) -> usize {
    let n = v
        .as_u64()
        .unwrap_or_else(|| panic!("{what} is not an unsigned integer"));
    usize::try_from(n).expect("fits usize")
}

/// Checks one tensor; returns its type name when it was checked, `None` when unsupported.
fn check_tensor(file: &str, bytes: &[u8], tensor: &Value) -> Option<String> {
    let name = tensor["name"].as_str().expect("tensor name");
    let type_name = tensor["ggml_type"].as_str().expect("ggml_type");
    let ty = GgmlType::from_name(type_name).filter(|&ty| can_dequantize(ty))?;
    let offset = as_usize(&tensor["offset"], "offset");
    let nbytes = as_usize(&tensor["nbytes"], "nbytes");
    let n = as_usize(&tensor["expected"]["n"], "expected.n");
    let src = &bytes[offset..offset + nbytes];
    let mut dst = vec![0.0f32; n];
    dequantize_f32(ty, src, &mut dst).unwrap_or_else(|e| panic!("{file} {name}: {e}"));
    let expected = tensor["expected"]["f32_sha256"]
        .as_str()
        .expect("f32_sha256");
    let first8 = &dst[..n.min(8)];
    assert_eq!(
        sha256_f32_le(&dst),
        expected,
        "{file} {name} ({type_name}): f32 sha256 differs from ggml; first values {first8:?}, \
         expected {}",
        tensor["expected"]["first8"]
    );
    Some(type_name.to_owned())
}

#[test]
fn corpus_tensors_match_ggml_to_float() {
    let dir = corpus_dir();
    let manifest_path = dir.join("MANIFEST.json");
    let Ok(text) = std::fs::read_to_string(&manifest_path) else {
        eprintln!(
            "skipping: no corpus manifest at {}",
            manifest_path.display()
        );
        return;
    };
    let manifest: Value = serde_json::from_str(&text).expect("MANIFEST.json is JSON");
    let mut checked: BTreeMap<String, usize> = BTreeMap::new();
    for file in manifest["files"].as_array().expect("files[]") {
        if file["format"] != "gguf" {
            continue;
        }
        let path = file["path"].as_str().expect("path");
        let tensors = file["tensors"].as_array().map_or(&[][..], Vec::as_slice);
        if tensors.is_empty() {
            continue;
        }
        if path.ends_with(".be.gguf") || file["gguf"]["endianness"] == "big" {
            eprintln!(
                "skipping {path}: big-endian tensor data is not decoded by these kernels yet"
            );
            continue;
        }
        let bytes = std::fs::read(dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        for tensor in tensors {
            match check_tensor(path, &bytes, tensor) {
                Some(ty) => *checked.entry(ty).or_default() += 1,
                None => eprintln!("{path}: no kernel for {}", tensor["ggml_type"]),
            }
        }
    }
    eprintln!("tensors checked per type: {checked:?}");
    for ty in REQUIRED {
        assert!(
            checked.contains_key(ty),
            "no {ty} tensor was checked against the corpus"
        );
    }
}
