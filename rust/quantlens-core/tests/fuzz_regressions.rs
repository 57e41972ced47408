//! Every input a fuzz target ever failed on, replayed through the very checks the targets
//! run (`fuzz/src/lib.rs`), so that a fixed crash stays fixed without a fuzzer.
//!
//! Inputs live in `tests/data/fuzz-regressions/<target>/`, one file each, named for what
//! went wrong.

use std::path::Path;
use std::time::{Duration, Instant};

#[path = "../fuzz/src/lib.rs"]
mod harness;

/// Debug builds are slow; this only catches a regression from bounded to unbounded work.
const PER_INPUT: Duration = Duration::from_secs(60);

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fuzz-regressions")
        .join(target);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file() && !hidden(p))
        .collect();
    paths.sort();
    for path in &paths {
        let data = std::fs::read(path).expect("regression input");
        let started = Instant::now();
        check(&data);
        let took = started.elapsed();
        assert!(took < PER_INPUT, "{}: {took:?}", path.display());
    }
    paths.len()
}

fn hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.as_encoded_bytes().starts_with(b"."))
}

#[test]
fn gguf_header_regressions() {
    replay("gguf_header", harness::gguf_header);
}

#[test]
fn gguf_split_regressions() {
    replay("gguf_split", harness::gguf_split);
}

#[test]
fn safetensors_regressions() {
    replay("safetensors", harness::safetensors);
}

#[test]
fn pytorch_zip_regressions() {
    assert!(replay("pytorch_zip", harness::pytorch_zip) > 0);
}

#[test]
fn pickle_regressions() {
    replay("pickle", harness::pickle);
}

#[test]
fn dequant_regressions() {
    replay("dequant", harness::dequant);
}

/// The targets' own checks hold on small valid inputs (so a harness that rejects
/// everything, or asserts something false, is caught here rather than by a fuzzer).
#[test]
fn harness_accepts_valid_inputs() {
    for (i, t) in quantlens_core::KNOWN_TYPES.iter().enumerate() {
        let mut input = vec![i as u8, (i % 12) as u8];
        input.extend((0..t.type_size * 3).map(|b| (b * 37 + 11) as u8));
        harness::dequant(&input);
    }
    let mut unknown = vec![200u8, 0];
    unknown.extend([0u8; 64]);
    harness::dequant(&unknown);
}
