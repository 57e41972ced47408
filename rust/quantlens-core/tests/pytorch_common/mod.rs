//! Helpers shared by the PyTorch tests: reading a tensor's values through its strides, and
//! the fixture folder.

#![allow(dead_code)]

use std::fmt::Write;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use quantlens_core::{DType, TensorRef};
use sha2::{Digest, Sha256};

/// The generated fixtures (`scripts/make_pytorch_fixtures.py`).
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pytorch")
}

/// sha256 of the values as little-endian f32, in hex.
pub fn sha256_f32_le(values: &[f32]) -> String {
    let mut hasher = Sha256::new();
    for v in values {
        hasher.update(v.to_le_bytes());
    }
    hasher.finalize().iter().fold(String::new(), |mut hex, b| {
        write!(hex, "{b:02x}").expect("writing to a String cannot fail");
        hex
    })
}

/// Byte offsets (from `t.offset`) of every element in row-major order.
pub fn element_offsets(t: &TensorRef) -> Vec<u64> {
    let elem = t.dtype.size().expect("plain dtype") as u64;
    let n = t.n_elements().expect("element count");
    let mut out = Vec::with_capacity(n as usize);
    let mut index = vec![0u64; t.shape.len()];
    for _ in 0..n {
        let e: u64 = index.iter().zip(&t.strides).map(|(i, s)| i * s).sum();
        out.push(e * elem);
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < t.shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    out
}

/// Each element's raw bytes, gathered through the strides (row-major order).
pub fn gather_raw(bytes: &[u8], t: &TensorRef) -> Vec<Vec<u8>> {
    let elem = t.dtype.size().expect("plain dtype");
    element_offsets(t)
        .into_iter()
        .map(|o| {
            assert!(
                o + elem as u64 <= t.nbytes,
                "{}: element outside nbytes",
                t.name
            );
            let start = (t.offset + o) as usize;
            bytes[start..start + elem].to_vec()
        })
        .collect()
}

/// The values as f32 (what numpy's `astype(float32)` gives), row-major.
pub fn gather_f32(bytes: &[u8], t: &TensorRef) -> Vec<f32> {
    gather_raw(bytes, t)
        .iter()
        .map(|b| match t.dtype {
            DType::F32 => f32::from_le_bytes(b[..4].try_into().unwrap()),
            DType::F64 => f64::from_le_bytes(b[..8].try_into().unwrap()) as f32,
            DType::F16 => f16::from_le_bytes([b[0], b[1]]).to_f32(),
            DType::BF16 => bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            DType::I64 => i64::from_le_bytes(b[..8].try_into().unwrap()) as f32,
            DType::U64 => u64::from_le_bytes(b[..8].try_into().unwrap()) as f32,
            DType::I32 => i32::from_le_bytes(b[..4].try_into().unwrap()) as f32,
            DType::U32 => u32::from_le_bytes(b[..4].try_into().unwrap()) as f32,
            DType::I16 => f32::from(i16::from_le_bytes([b[0], b[1]])),
            DType::U16 => f32::from(u16::from_le_bytes([b[0], b[1]])),
            DType::I8 => f32::from(b[0] as i8),
            DType::U8 | DType::Bool => f32::from(b[0]),
            other => panic!("{}: no f32 conversion for {other:?}", t.name),
        })
        .collect()
}
