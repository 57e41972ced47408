//! The `quantlens._core` extension module: a thin layer that converts arguments, calls
//! `quantlens-core` with the GIL released, and converts results and errors.

mod dequant;
mod encoding;
mod errors;
mod gguf;
mod metadata;
mod options;
mod quantize;
mod weights;
mod writer;

use pyo3::prelude::*;

/// Names and block geometry of every ggml type: `(id, name, block_size, type_size)`.
#[pyfunction]
fn ggml_types() -> Vec<(u32, &'static str, u32, u32)> {
    quantlens_core::KNOWN_TYPES
        .iter()
        .map(|t| (t.id, t.name, t.block_size, t.type_size))
        .collect()
}

/// The label of a `general.file_type` value (e.g. 15 → `"Q4_K_M"`), or `None`.
#[pyfunction]
fn file_type_label(file_type: u32) -> Option<&'static str> {
    quantlens_core::file_type_label(file_type)
}

/// What kind of file `path` is, from its first bytes: `(name, description)`.
#[pyfunction]
fn sniff_file(py: Python<'_>, path: std::path::PathBuf) -> PyResult<(&'static str, &'static str)> {
    let kind = quantlens_core::format::sniff_path(&path).map_err(|e| errors::to_py(py, &e))?;
    Ok((kind.name(), kind.description()))
}

#[pymodule(gil_used = false)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(ggml_types, m)?)?;
    m.add_function(wrap_pyfunction!(file_type_label, m)?)?;
    m.add_function(wrap_pyfunction!(sniff_file, m)?)?;
    m.add_function(wrap_pyfunction!(options::default_limits, m)?)?;
    m.add_function(wrap_pyfunction!(dequant::dequantize, m)?)?;
    m.add_function(wrap_pyfunction!(dequant::kernel_isa, m)?)?;
    m.add_function(wrap_pyfunction!(dequant::can_dequantize, m)?)?;
    m.add_function(wrap_pyfunction!(dequant::default_threads, m)?)?;
    m.add_function(wrap_pyfunction!(dequant::scale_fields, m)?)?;
    m.add_function(wrap_pyfunction!(encoding::rank_encodings, m)?)?;
    m.add_function(wrap_pyfunction!(encoding::encoding_order, m)?)?;
    m.add_function(wrap_pyfunction!(encoding::file_type_encoding, m)?)?;
    m.add_function(wrap_pyfunction!(quantize::quantize, m)?)?;
    m.add_function(wrap_pyfunction!(quantize::can_quantize, m)?)?;
    m.add_function(wrap_pyfunction!(quantize::accepts_imatrix, m)?)?;
    m.add_class::<gguf::GgufModel>()?;
    m.add_class::<gguf::TensorInfo>()?;
    m.add_class::<metadata::MetadataArray>()?;
    m.add_class::<gguf::MappedBytes>()?;
    m.add_class::<weights::WeightModel>()?;
    m.add_class::<weights::WeightTensorInfo>()?;
    m.add_class::<writer::GgufWriter>()?;
    Ok(())
}
