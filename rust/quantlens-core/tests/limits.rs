//! `Limits` on real files: the defaults open every file of the shared corpus, mapped and
//! read; each cap lowered below what a real file claims refuses it naming the cap.

use std::path::{Path, PathBuf};

use quantlens_core::gguf::GgufModel;
use quantlens_core::weights::WeightIndex;
use quantlens_core::{Access, Error, Limits, OpenOptions};

fn corpus_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    if dir.join("MANIFEST.json").is_file() {
        Some(dir)
    } else {
        println!("no corpus at {}: nothing to check", dir.display());
        None
    }
}

fn open(path: &Path, options: &OpenOptions) -> Result<usize, Error> {
    if path.extension().is_some_and(|e| e == "gguf") {
        GgufModel::open_with(path, options).map(|m| m.tensor_count())
    } else {
        WeightIndex::open_with(path, options).map(|m| m.tensors.len())
    }
}

fn weight_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("corpus folder") {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                stack.push(path);
            } else if [".gguf", ".safetensors", ".pt", ".pth", ".bin"]
                .iter()
                .any(|ext| name.ends_with(ext))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn defaults_open_every_corpus_file_mapped_and_read() {
    let Some(dir) = corpus_dir() else { return };
    let files = weight_files(&dir);
    assert!(files.len() >= 30, "{} files", files.len());
    for path in files {
        let mapped = open(&path, &OpenOptions::default());
        let read = OpenOptions {
            access: Access::Read,
            ..OpenOptions::default()
        };
        let n = mapped.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(open(&path, &read).ok(), Some(n), "{}", path.display());
    }
}

/// Lowers one cap.
type Lower = fn(&mut Limits);

#[test]
fn each_cap_lowered_refuses_a_real_file_by_name() {
    let Some(dir) = corpus_dir() else { return };
    let cases: [(&str, Lower, &str); 8] = [
        (
            "max_header_bytes",
            |l| l.max_header_bytes = 1000,
            "gguf/vocab/ggml-vocab-gpt-2.gguf",
        ),
        (
            "max_header_bytes",
            |l| l.max_header_bytes = 16,
            "pytorch/pypi/lpips-v0.1-alex.pth",
        ),
        (
            "max_tensors",
            |l| l.max_tensors = 1,
            "gguf/github/ollama-llama-2-tiny-random.gguf",
        ),
        (
            "max_tensors",
            |l| l.max_tensors = 1,
            "safetensors/generated/facenet-rnet.f32.safetensors",
        ),
        (
            "max_string_len",
            |l| l.max_string_len = 4,
            "gguf/vocab/ggml-vocab-llama-spm.gguf",
        ),
        (
            "max_array_len",
            |l| l.max_array_len = 10,
            "gguf/vocab/ggml-vocab-bert-bge.gguf",
        ),
        (
            "max_depth",
            |l| l.max_depth = 0,
            "gguf/vocab/ggml-vocab-phi-3.gguf",
        ),
        (
            "max_depth",
            |l| l.max_depth = 0,
            "pytorch/generated/facenet-onet.state_dict.pt",
        ),
    ];
    for (setting, lower, rel) in cases {
        let mut options = OpenOptions::default();
        lower(&mut options.limits);
        let err = open(&dir.join(rel), &options).unwrap_err();
        assert_eq!(err.limit_setting(), Some(setting), "{rel}: {err}");
        assert!(
            err.to_string().contains(&format!("Limits.{setting}")),
            "{err}"
        );
        assert!(err.path().is_some_and(|p| p.ends_with(rel)), "{err}");
    }
}
