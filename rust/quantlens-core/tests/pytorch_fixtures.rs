//! The generated checkpoints of `tests/data/pytorch` (`scripts/make_pytorch_fixtures.py`):
//! valid ones match what `torch.load` gave — names, dtypes, shapes, strides, storage
//! offsets, bytes and metadata — and every hostile or unsupported one is refused with the
//! expected error (the global it names, for unsafe pickles), never a panic.

#[path = "pytorch_common/mod.rs"]
mod common;

use std::fmt::Write;

use quantlens_core::pytorch;
use quantlens_core::Error;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn expected() -> Value {
    let text = std::fs::read_to_string(common::fixture_dir().join("expected.json"))
        .expect("expected.json (run scripts/make_pytorch_fixtures.py)");
    serde_json::from_str(&text).expect("expected.json is JSON")
}

fn sha256_hex(chunks: &[Vec<u8>]) -> String {
    let mut hasher = Sha256::new();
    for c in chunks {
        hasher.update(c);
    }
    hasher.finalize().iter().fold(String::new(), |mut s, b| {
        write!(s, "{b:02x}").unwrap();
        s
    })
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn variant(err: &Error) -> &'static str {
    match err {
        Error::Malformed { .. } => "Malformed",
        Error::Truncated { .. } => "Truncated",
        Error::LimitExceeded { .. } => "LimitExceeded",
        Error::UnsupportedVersion { .. } => "UnsupportedVersion",
        Error::UnsupportedDType { .. } => "UnsupportedDType",
        Error::UnsafePickle { .. } => "UnsafePickle",
        _ => "other",
    }
}

#[test]
fn valid_checkpoints_match_torch() {
    let all = expected();
    let valid = all["valid"].as_object().unwrap();
    assert!(valid.len() >= 8);
    for (file, want) in valid {
        let bytes = std::fs::read(common::fixture_dir().join(file)).unwrap();
        let parsed = pytorch::parse(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        let want_tensors = want["tensors"].as_array().unwrap();
        let names: Vec<&str> = parsed.tensors.iter().map(|t| t.name.as_str()).collect();
        let want_names: Vec<&str> = want_tensors
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, want_names, "{file}: tensor names in order");
        for (got, w) in parsed.tensors.iter().zip(want_tensors) {
            let what = format!("{file} {}", got.name);
            assert_eq!(got.dtype.name(), w["dtype"].as_str().unwrap(), "{what}");
            assert_eq!(got.shape, u64s(&w["shape"]), "{what}: shape");
            assert_eq!(got.strides, u64s(&w["stride"]), "{what}: stride");
            let elem = got.dtype.size().unwrap() as u64;
            if let Some(start) = w["storage_file_offset"].as_u64() {
                let offset = w["storage_offset"].as_u64().unwrap();
                if got.n_elements() != Some(0) {
                    assert_eq!(got.offset, start + offset * elem, "{what}: offset");
                }
            }
            let span = common::element_offsets(got)
                .iter()
                .max()
                .map_or(0, |m| m + elem);
            assert_eq!(got.nbytes, span, "{what}: nbytes");
            assert!(got.offset + got.nbytes <= bytes.len() as u64, "{what}");
            let raw = common::gather_raw(&bytes, got);
            assert_eq!(
                sha256_hex(&raw),
                w["raw_sha256"].as_str().unwrap(),
                "{what}: bytes"
            );
        }
        let want_meta: Vec<(String, String)> = want["metadata"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap().to_owned(),
                    p[1].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(parsed.metadata, want_meta, "{file}: metadata");
    }
}

#[test]
fn shared_storages_point_at_the_same_bytes() {
    let bytes = std::fs::read(common::fixture_dir().join("lightning.ckpt")).unwrap();
    let parsed = pytorch::parse(&bytes).unwrap();
    let get = |n: &str| {
        parsed
            .tensors
            .iter()
            .find(|t| t.name == format!("state_dict.{n}"))
            .unwrap()
    };
    let base = get("layer.weight");
    assert_eq!(get("tied").offset, base.offset);
    assert_eq!(get("layer.weight_t").offset, base.offset);
    assert_eq!(get("layer.weight_t").strides, vec![1, 6]);
    assert_eq!(get("rows").offset, base.offset + 6 * 4);
    assert_eq!(get("element").offset, base.offset + 15 * 4);
    assert_eq!(get("element").shape, Vec::<u64>::new());
    assert_eq!(get("expanded").strides, vec![0, 1]);
    assert_eq!(get("expanded").nbytes, 12);
    assert_eq!(get("empty").nbytes, 0);
}

#[test]
fn refused_checkpoints_fail_cleanly() {
    let all = expected();
    let refused = all["refused"].as_object().unwrap();
    assert!(refused.len() >= 50);
    for (file, want) in refused {
        let bytes = std::fs::read(common::fixture_dir().join(file)).unwrap();
        let err = match pytorch::parse(&bytes) {
            Ok(p) => panic!(
                "{file}: read {} tensors, expected a refusal",
                p.tensors.len()
            ),
            Err(e) => e,
        };
        let message = err.to_string();
        assert_eq!(
            variant(&err),
            want["error"].as_str().unwrap(),
            "{file}: {message}"
        );
        if let Some(global) = want["global"].as_str() {
            let Error::UnsafePickle {
                global: got,
                offset,
                ..
            } = &err
            else {
                unreachable!()
            };
            assert_eq!(got, global, "{file}");
            assert!(*offset < bytes.len() as u64, "{file}: offset {offset}");
            assert!(message.contains(global), "{message}");
        }
        if let Some(offset) = err.offset() {
            assert!(
                offset <= bytes.len() as u64,
                "{file}: offset {offset}: {message}"
            );
        }
    }
}
