//! `GgufWriter`: the core's GGUF writer, with the GIL released while bytes go to disk.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use numpy::PyReadonlyArray1;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
use quantlens_core::gguf::writer::{
    GgufWriter as CoreWriter, MetaArray, MetaValue, SplitLimits, WriteOptions,
};
use quantlens_core::gguf::ValueType;
use quantlens_core::GgmlType;

use crate::errors::IntoPyResult;

/// A GGUF file (or split set of files) being written.
#[pyclass(module = "quantlens._core", frozen)]
pub struct GgufWriter {
    // `None` once finished or aborted.
    inner: Mutex<Option<CoreWriter>>,
}

impl GgufWriter {
    fn lock(&self) -> PyResult<MutexGuard<'_, Option<CoreWriter>>> {
        self.inner
            .lock()
            .map_err(|_| PyRuntimeError::new_err("a write panicked; the writer is unusable"))
    }

    fn with<T>(&self, f: impl FnOnce(&mut CoreWriter) -> PyResult<T>) -> PyResult<T> {
        let mut guard = self.lock()?;
        let writer = guard
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("the writer is closed"))?;
        f(writer)
    }
}

#[pymethods]
impl GgufWriter {
    /// A writer for `path`; `split_max_bytes`/`split_max_tensors` split the output into
    /// `STEM-0000i-of-0000N.gguf` files.
    #[new]
    #[pyo3(signature = (path, alignment=32, split_max_bytes=None, split_max_tensors=None))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        alignment: u64,
        split_max_bytes: Option<u64>,
        split_max_tensors: Option<u64>,
    ) -> PyResult<Self> {
        let options = WriteOptions {
            alignment,
            split: SplitLimits {
                max_bytes: split_max_bytes,
                max_tensors: split_max_tensors,
            },
        };
        let writer = CoreWriter::new(path, options).into_py_result(py)?;
        Ok(GgufWriter {
            inner: Mutex::new(Some(writer)),
        })
    }

    /// Add a metadata pair; `value` is `(type_id, payload)` (see `_core.pyi`).
    fn add_metadata(&self, py: Python<'_>, key: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let value = meta_value(value)?;
        self.with(|w| w.add_metadata(key, value).into_py_result(py))
    }

    /// Declare the next tensor: name, row-major shape and ggml type id.
    fn add_tensor_info(
        &self,
        py: Python<'_>,
        name: &str,
        shape: Vec<u64>,
        type_id: u32,
    ) -> PyResult<()> {
        self.with(|w| {
            w.add_tensor_info(name, &shape, GgmlType(type_id))
                .into_py_result(py)
        })
    }

    /// Create the files and write the headers (done by the first data write otherwise).
    fn begin(&self, py: Python<'_>) -> PyResult<()> {
        self.with(|w| py.detach(|| w.begin()).into_py_result(py))
    }

    /// Append bytes to tensor `name`'s data (tensors in declaration order).
    fn write_tensor_data(
        &self,
        py: Python<'_>,
        name: &str,
        data: PyReadonlyArray1<'_, u8>,
    ) -> PyResult<()> {
        let bytes = data
            .as_slice()
            .map_err(|_| PyValueError::new_err("data must be contiguous"))?;
        self.with(|w| {
            py.detach(|| w.write_tensor_data(name, bytes))
                .into_py_result(py)
        })
    }

    /// Check that every tensor is complete, close the files and rename them into place.
    fn finish(&self, py: Python<'_>) -> PyResult<Vec<PathBuf>> {
        let writer = self
            .lock()?
            .take()
            .ok_or_else(|| PyValueError::new_err("the writer is closed"))?;
        py.detach(|| writer.finish()).into_py_result(py)
    }

    /// Stop writing and remove the temporary files.
    fn abort(&self) -> PyResult<()> {
        let writer = self.lock()?.take();
        drop(writer);
        Ok(())
    }

    /// Whether the writer has finished or been aborted.
    #[getter]
    fn closed(&self) -> PyResult<bool> {
        Ok(self.lock()?.is_none())
    }

    /// Alignment of tensor data.
    #[getter]
    fn alignment(&self) -> PyResult<u64> {
        self.with(|w| Ok(w.alignment()))
    }

    /// The files the output will be, as declared so far.
    #[getter]
    fn output_paths(&self) -> PyResult<Vec<PathBuf>> {
        self.with(|w| Ok(w.output_paths()))
    }

    /// The size of each output file, as declared so far.
    #[getter]
    fn output_sizes(&self) -> PyResult<Vec<u64>> {
        self.with(|w| Ok(w.output_sizes()))
    }

    /// The temporary files being written now.
    #[getter]
    fn temp_paths(&self) -> PyResult<Vec<PathBuf>> {
        Ok(self
            .lock()?
            .as_ref()
            .map(CoreWriter::temp_paths)
            .unwrap_or_default())
    }

    /// Bytes written to every file so far.
    #[getter]
    fn bytes_written(&self) -> PyResult<u64> {
        Ok(self.lock()?.as_ref().map_or(0, CoreWriter::bytes_written))
    }
}

fn value_type(id: u32) -> PyResult<ValueType> {
    ValueType::from_tag(id)
        .ok_or_else(|| PyValueError::new_err(format!("unknown GGUF value type {id}")))
}

fn string_bytes(value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(s.to_str()?.as_bytes().to_vec());
    }
    if let Ok(b) = value.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    Err(PyTypeError::new_err(format!(
        "a GGUF string must be str or bytes, not {}",
        value.get_type().name()?
    )))
}

/// `(type_id, payload)` → a value: scalars as Python numbers, strings as `str`/`bytes`,
/// arrays as `(element_type_id, items)`.
fn meta_value(value: &Bound<'_, PyAny>) -> PyResult<MetaValue> {
    let (id, payload): (u32, Bound<'_, PyAny>) = value.extract()?;
    Ok(match value_type(id)? {
        ValueType::U8 => MetaValue::U8(payload.extract()?),
        ValueType::I8 => MetaValue::I8(payload.extract()?),
        ValueType::U16 => MetaValue::U16(payload.extract()?),
        ValueType::I16 => MetaValue::I16(payload.extract()?),
        ValueType::U32 => MetaValue::U32(payload.extract()?),
        ValueType::I32 => MetaValue::I32(payload.extract()?),
        ValueType::U64 => MetaValue::U64(payload.extract()?),
        ValueType::I64 => MetaValue::I64(payload.extract()?),
        ValueType::F32 => MetaValue::F32(payload.extract()?),
        ValueType::F64 => MetaValue::F64(payload.extract()?),
        ValueType::Bool => MetaValue::Bool(payload.extract()?),
        ValueType::String => MetaValue::String(string_bytes(&payload)?),
        ValueType::Array => MetaValue::Array(meta_array(&payload, 0)?),
    })
}

/// `(element_type_id, items)`: items are packed little-endian `bytes` for fixed-size
/// elements, a list of `str`/`bytes` for strings, a list of arrays for arrays.
fn meta_array(value: &Bound<'_, PyAny>, depth: u32) -> PyResult<MetaArray> {
    // Deeper than any reader accepts; the core reports the exact limit before this.
    if depth > 64 {
        return Err(PyValueError::new_err("metadata arrays nested too deeply"));
    }
    let tuple = value.cast::<PyTuple>()?;
    let (id, items): (u32, Bound<'_, PyAny>) = tuple.extract()?;
    let elem = value_type(id)?;
    Ok(match elem {
        ValueType::String => {
            let list = items.cast::<PyList>()?;
            MetaArray::Strings(
                list.iter()
                    .map(|s| string_bytes(&s))
                    .collect::<PyResult<_>>()?,
            )
        }
        ValueType::Array => {
            let list = items.cast::<PyList>()?;
            MetaArray::Arrays(
                list.iter()
                    .map(|a| meta_array(&a, depth + 1))
                    .collect::<PyResult<_>>()?,
            )
        }
        fixed => MetaArray::Fixed {
            elem: fixed,
            bytes: items.cast::<PyBytes>()?.as_bytes().to_vec(),
        },
    })
}
