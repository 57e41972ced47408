//! GGUF metadata values as Python objects; arrays stay in the file until read.

use std::sync::Arc;

use numpy::{Element, PyArray1};
use pyo3::exceptions::{PyIndexError, PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PySlice, PyString};
use pyo3::IntoPyObjectExt;
use quantlens_core::gguf::{Array, ArrayIndex, Endian, GgufModel, Value, ValueType};

use crate::errors::IntoPyResult;

/// The model whose first file holds the metadata.
pub struct ValueOwner(Arc<GgufModel>);

impl ValueOwner {
    pub fn new(model: &Arc<GgufModel>) -> Self {
        ValueOwner(Arc::clone(model))
    }

    fn bytes(&self) -> &[u8] {
        self.0.shards[0].file.bytes()
    }

    /// Fail, rather than fault, if the mapped header was cut off the file since it was
    /// opened; values are read from the file only when asked for.
    pub fn check_present(&self, py: Python<'_>) -> PyResult<()> {
        let shard = &self.0.shards[0];
        let end = shard.header.data_offset.min(shard.file.len());
        shard
            .file
            .check_extent("GGUF", || "metadata".to_owned(), 0, end)
            .into_py_result(py)
    }
}

/// `(key, type name, value, offset)` for metadata pair `i`.
pub fn metadata_entry<'py>(
    py: Python<'py>,
    owner: &ValueOwner,
    i: usize,
) -> PyResult<(String, &'static str, Bound<'py, PyAny>, u64)> {
    let kv = &owner.0.header().metadata[i];
    let root = ArrayPath {
        kv: i,
        nested: Vec::new(),
    };
    let value = to_python(py, owner, &kv.value, || root.clone())?;
    Ok((
        kv.key.to_string(),
        kv.value.value_type().name(),
        value,
        kv.offset,
    ))
}

/// Decode GGUF string bytes as UTF-8; invalid bytes survive as lone surrogates
/// (`surrogateescape`), so `s.encode("utf-8", "surrogateescape")` gives them back.
fn decode_str<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(PyString::new(py, s).into_any()),
        Err(_) => PyBytes::new(py, bytes).call_method1("decode", ("utf-8", "surrogateescape")),
    }
}

fn to_python<'py>(
    py: Python<'py>,
    owner: &ValueOwner,
    value: &Value,
    path: impl FnOnce() -> ArrayPath,
) -> PyResult<Bound<'py, PyAny>> {
    match value {
        Value::U8(v) => v.into_bound_py_any(py),
        Value::I8(v) => v.into_bound_py_any(py),
        Value::U16(v) => v.into_bound_py_any(py),
        Value::I16(v) => v.into_bound_py_any(py),
        Value::U32(v) => v.into_bound_py_any(py),
        Value::I32(v) => v.into_bound_py_any(py),
        Value::U64(v) => v.into_bound_py_any(py),
        Value::I64(v) => v.into_bound_py_any(py),
        Value::F32(v) => f64::from(*v).into_bound_py_any(py),
        Value::F64(v) => v.into_bound_py_any(py),
        Value::Bool(v) => v.into_bound_py_any(py),
        Value::String(span) => decode_str(py, span.slice(owner.bytes())),
        Value::Array(_) => Bound::new(
            py,
            MetadataArray {
                model: Arc::clone(&owner.0),
                path: path(),
            },
        )
        .map(Bound::into_any),
    }
}

/// Where an array is: a metadata pair and the indices of arrays nested in it.
#[derive(Clone)]
struct ArrayPath {
    kv: usize,
    nested: Vec<usize>,
}

/// A GGUF metadata array, read from the mapped file element by element on demand.
#[pyclass(module = "quantlens._core", frozen, sequence)]
pub struct MetadataArray {
    model: Arc<GgufModel>,
    path: ArrayPath,
}

impl MetadataArray {
    fn array(&self) -> &Array {
        let Value::Array(root) = &self.model.header().metadata[self.path.kv].value else {
            unreachable!("paths are built from arrays")
        };
        let mut array = root;
        for &i in &self.path.nested {
            let ArrayIndex::Arrays(items) = &array.index else {
                unreachable!("nested paths are built from arrays of arrays")
            };
            array = &items[i];
        }
        array
    }

    fn item<'py>(&self, py: Python<'py>, i: u64) -> PyResult<Bound<'py, PyAny>> {
        let owner = ValueOwner::new(&self.model);
        let value = self
            .array()
            .get(owner.bytes(), i)
            .ok_or_else(|| PyIndexError::new_err("metadata array index out of range"))?;
        to_python(py, &owner, &value, || {
            let mut path = self.path.clone();
            path.nested.push(i as usize);
            path
        })
    }
}

#[pymethods]
impl MetadataArray {
    /// gguf-py's name of the element type (`STRING`, `INT32`, `ARRAY`, …).
    #[getter]
    fn element_type(&self) -> &'static str {
        self.array().elem.name()
    }

    fn __len__(&self) -> usize {
        self.array().len as usize
    }

    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        ValueOwner::new(&self.model).check_present(py)?;
        let len = self.array().len;
        if let Ok(slice) = key.cast::<PySlice>() {
            let ix = slice.indices(len as isize)?;
            let items = (0..ix.slicelength)
                .map(|k| self.item(py, (ix.start + k as isize * ix.step) as u64))
                .collect::<PyResult<Vec<_>>>()?;
            return PyList::new(py, items).map(Bound::into_any);
        }
        let i: i64 = key.extract().map_err(|e: PyErr| {
            // An integer too large for any index is out of range, as for a list.
            if e.is_instance_of::<PyOverflowError>(py) {
                PyIndexError::new_err("metadata array index out of range")
            } else {
                PyTypeError::new_err("metadata array indices must be integers or slices")
            }
        })?;
        let i = if i < 0 { i + len as i64 } else { i };
        if i < 0 {
            return Err(PyIndexError::new_err("metadata array index out of range"));
        }
        self.item(py, i as u64)
    }

    /// Every element as a Python list (nested arrays become nested lists).
    fn tolist<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        ValueOwner::new(&self.model).check_present(py)?;
        let items = (0..self.array().len)
            .map(|i| {
                let item = self.item(py, i)?;
                match item.cast::<MetadataArray>() {
                    Ok(nested) => nested.get().tolist(py).map(Bound::into_any),
                    Err(_) => Ok(item),
                }
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    /// A numpy copy of a numeric or boolean array in native byte order.
    fn to_numpy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ValueOwner::new(&self.model).check_present(py)?;
        let array = self.array();
        let bytes = array
            .fixed_bytes(self.model.shards[0].file.bytes())
            .ok_or_else(|| {
                PyTypeError::new_err(format!(
                    "an array of {} has no numpy form",
                    array.elem.name()
                ))
            })?;
        let big = array.endian == Endian::Big;
        Ok(match array.elem {
            ValueType::U8 => {
                numpy_from::<u8, 1>(py, bytes, big, u8::from_le_bytes, u8::from_be_bytes)
            }
            ValueType::I8 => {
                numpy_from::<i8, 1>(py, bytes, big, i8::from_le_bytes, i8::from_be_bytes)
            }
            ValueType::U16 => {
                numpy_from::<u16, 2>(py, bytes, big, u16::from_le_bytes, u16::from_be_bytes)
            }
            ValueType::I16 => {
                numpy_from::<i16, 2>(py, bytes, big, i16::from_le_bytes, i16::from_be_bytes)
            }
            ValueType::U32 => {
                numpy_from::<u32, 4>(py, bytes, big, u32::from_le_bytes, u32::from_be_bytes)
            }
            ValueType::I32 => {
                numpy_from::<i32, 4>(py, bytes, big, i32::from_le_bytes, i32::from_be_bytes)
            }
            ValueType::U64 => {
                numpy_from::<u64, 8>(py, bytes, big, u64::from_le_bytes, u64::from_be_bytes)
            }
            ValueType::I64 => {
                numpy_from::<i64, 8>(py, bytes, big, i64::from_le_bytes, i64::from_be_bytes)
            }
            ValueType::F32 => {
                numpy_from::<f32, 4>(py, bytes, big, f32::from_le_bytes, f32::from_be_bytes)
            }
            ValueType::F64 => {
                numpy_from::<f64, 8>(py, bytes, big, f64::from_le_bytes, f64::from_be_bytes)
            }
            ValueType::Bool => PyArray1::from_iter(py, bytes.iter().map(|&b| b != 0)).into_any(),
            ValueType::String | ValueType::Array => unreachable!("fixed_bytes is None for these"),
        })
    }

    fn __repr__(&self) -> String {
        let array = self.array();
        format!("MetadataArray({}, len={})", array.elem.name(), array.len)
    }
}

fn numpy_from<'py, T: Element, const N: usize>(
    py: Python<'py>,
    bytes: &[u8],
    big: bool,
    le: fn([u8; N]) -> T,
    be: fn([u8; N]) -> T,
) -> Bound<'py, PyAny> {
    let read = if big { be } else { le };
    let values = bytes
        .chunks_exact(N)
        .map(|c| read(c.try_into().expect("chunks_exact")));
    PyArray1::from_iter(py, values).into_any()
}
