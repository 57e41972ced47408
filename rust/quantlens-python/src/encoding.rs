//! Encoding detection: which stored types a model's tensors use, heaviest first.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use quantlens_core::encoding::{self, TensorWeight, Weighting};
use quantlens_core::{DType, GgmlType};

/// A stored type named as safetensors (`F32`, `F8_E4M3`) or ggml (`Q4_K`) names it.
fn parse_dtype(name: &str) -> Option<DType> {
    DType::from_name(name).or_else(|| GgmlType::from_name(name).map(DType::Ggml))
}

/// Rank the encodings of `tensors` (`(type name, elements, bytes)` each), heaviest first
/// by `weighting` (`"bytes"` or `"elements"`), as `(encoding, tensors, weight)`.
///
/// A GGUF `file_type` goes first when the tensors hold it; ties keep the declaration
/// order of `SupportedEncoding`; types that are not encodings are left out.
#[pyfunction]
#[pyo3(signature = (tensors, weighting, file_type=None))]
pub fn rank_encodings(
    py: Python<'_>,
    tensors: Vec<(String, u64, u64)>,
    weighting: &str,
    file_type: Option<u32>,
) -> PyResult<Vec<(&'static str, u64, u64)>> {
    let weighting = match weighting {
        "bytes" => Weighting::Bytes,
        "elements" => Weighting::Elements,
        other => {
            return Err(PyValueError::new_err(format!(
                "weighting must be 'bytes' or 'elements', not {other:?}"
            )))
        }
    };
    let weights: Vec<TensorWeight> = tensors
        .iter()
        .filter_map(|(name, elements, bytes)| {
            parse_dtype(name).map(|dtype| TensorWeight {
                dtype,
                elements: *elements,
                bytes: *bytes,
            })
        })
        .collect();
    let stated = file_type.and_then(encoding::file_type_encoding);
    let shares = py.detach(|| encoding::rank(weights, weighting, stated));
    Ok(shares
        .into_iter()
        .map(|s| (s.encoding.name(), s.tensors, s.weight))
        .collect())
}

/// Every encoding in the order that breaks ties, by name.
#[pyfunction]
pub fn encoding_order() -> Vec<&'static str> {
    encoding::ENCODING_ORDER.iter().map(|d| d.name()).collect()
}

/// The encoding a GGUF `general.file_type` says most tensors hold (`15` → `Q4_K`), if any.
#[pyfunction]
pub fn file_type_encoding(file_type: u32) -> Option<&'static str> {
    encoding::file_type_encoding(file_type).map(DType::name)
}
