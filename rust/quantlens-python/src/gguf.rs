//! `GgufModel`: an open GGUF model (one file or all shards of a split one).

use std::path::PathBuf;
use std::sync::Arc;

use numpy::ndarray::ArrayView1;
use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use quantlens_core::gguf::{GgufModel as CoreModel, TensorInfo as CoreTensorInfo};
use quantlens_core::MappedFile;

use crate::dequant::{Kind, OutArray};
use crate::errors::IntoPyResult;
use crate::metadata::{metadata_entry, ValueOwner};
use crate::options::open_options;

/// An open GGUF model. Parsing happens once, with the GIL released.
#[pyclass(module = "quantlens._core", frozen)]
pub struct GgufModel {
    inner: Arc<CoreModel>,
}

#[pymethods]
impl GgufModel {
    /// Map and parse the GGUF file at `path` (and its sibling shards if it is split)
    /// under `limits`; `mmap=False` reads the files instead of mapping them.
    #[new]
    #[pyo3(signature = (path, *, limits=None, mmap=true))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        limits: Option<&Bound<'_, PyAny>>,
        mmap: bool,
    ) -> PyResult<Self> {
        let options = open_options(limits, mmap)?;
        let model = py
            .detach(|| CoreModel::open_with(&path, &options))
            .into_py_result(py)?;
        Ok(GgufModel {
            inner: Arc::new(model),
        })
    }

    /// GGUF version of the first file.
    #[getter]
    fn version(&self) -> u32 {
        self.inner.header().version
    }

    /// `"little"` or `"big"`.
    #[getter]
    fn endianness(&self) -> &'static str {
        self.inner.header().endian.name()
    }

    /// Alignment of tensor data in bytes.
    #[getter]
    fn alignment(&self) -> u64 {
        self.inner.header().alignment
    }

    /// Absolute offset of the first file's data section.
    #[getter]
    fn data_offset(&self) -> u64 {
        self.inner.header().data_offset
    }

    /// Paths of the files, in shard order.
    #[getter]
    fn paths(&self) -> Vec<PathBuf> {
        let shards = &self.inner.shards;
        shards.iter().map(|s| s.file.path().to_path_buf()).collect()
    }

    /// Sizes of the files in bytes, in shard order.
    #[getter]
    fn file_sizes(&self) -> Vec<u64> {
        self.inner.shards.iter().map(|s| s.file.len()).collect()
    }

    /// `(split.count, split.tensors.count)` for a split model, else `None`.
    #[getter]
    fn split(&self) -> Option<(u64, Option<u64>)> {
        let split = self.inner.split.as_ref()?;
        Some((split.count, split.tensors_count))
    }

    /// Metadata of the first file: `(key, type name, value, offset)` in file order.
    fn metadata_entries<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let owner = ValueOwner::new(&self.inner);
        owner.check_present(py)?;
        let entries = (0..self.inner.header().metadata.len())
            .map(|i| metadata_entry(py, &owner, i))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, entries)
    }

    /// Every tensor, in file order (shard by shard).
    fn tensor_infos<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let infos = (0..self.inner.tensor_count())
            .map(|index| {
                let model = Arc::clone(&self.inner);
                Bound::new(py, TensorInfo { model, index })
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, infos)
    }

    /// Number of tensors across all shards.
    fn __len__(&self) -> usize {
        self.inner.tensor_count()
    }

    /// Decode tensor `name` into `out` (C-contiguous, one element per weight) as `dtype`.
    #[pyo3(signature = (name, out, dtype, threads=None))]
    fn dequantize_tensor(
        &self,
        py: Python<'_>,
        name: &str,
        out: &Bound<'_, PyAny>,
        dtype: &str,
        threads: Option<usize>,
    ) -> PyResult<()> {
        let mut out = OutArray::borrow(out, Kind::parse(dtype)?)?;
        let output = out.output()?;
        let model = &self.inner;
        py.detach(|| model.dequantize_tensor(name, output, threads))
            .into_py_result(py)
    }

    /// A read-only, zero-copy `uint8` view of a tensor's bytes; it keeps the file mapped.
    fn tensor_bytes<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyArray1<u8>>> {
        let bytes = self.inner.tensor_data(name).into_py_result(py)?;
        let (shard, _) = self.inner.tensor(name).into_py_result(py)?;
        let owner = Bound::new(
            py,
            MappedBytes {
                _file: Arc::clone(&shard.file),
            },
        )?;
        let view = ArrayView1::from(bytes);
        // SAFETY: `bytes` lies in the file's buffer (a read-only map, or a copy read on
        // open) owned by `owner`'s `Arc<MappedFile>`; the array holds `owner` as its base,
        // so the buffer outlives the array, and it is never moved, remapped or written.
        let array = unsafe { PyArray1::borrow_from_array(&view, owner.into_any()) };
        array.getattr("flags")?.setattr("writeable", false)?;
        Ok(array)
    }
}

/// Keeps a mapped file alive for as long as numpy arrays view it.
#[pyclass(module = "quantlens._core", frozen)]
pub struct MappedBytes {
    _file: Arc<MappedFile>,
}

impl MappedBytes {
    /// An owner for views of `file`.
    pub fn new(file: Arc<MappedFile>) -> Self {
        MappedBytes { _file: file }
    }
}

/// One tensor's description; fields are read from the parsed header when asked for.
#[pyclass(module = "quantlens._core", frozen)]
pub struct TensorInfo {
    model: Arc<CoreModel>,
    index: usize,
}

impl TensorInfo {
    fn info(&self) -> &CoreTensorInfo {
        self.model
            .tensor_at(self.index)
            .expect("index below tensor_count")
            .1
    }
}

#[pymethods]
impl TensorInfo {
    /// Position in file order.
    #[getter]
    fn index(&self) -> usize {
        self.index
    }

    /// Tensor name.
    #[getter]
    fn name(&self) -> &str {
        &self.info().name
    }

    /// ggml type id.
    #[getter]
    fn type_id(&self) -> u32 {
        self.info().ty.0
    }

    /// ggml type name (`Q4_K`), or `UNKNOWN_<id>` for an id this version does not know.
    #[getter]
    fn type_name(&self) -> String {
        let ty = self.info().ty;
        ty.info()
            .map_or_else(|| format!("UNKNOWN_{}", ty.0), |i| i.name.to_owned())
    }

    /// The type name again, under the name every format's tensor description shares.
    #[getter]
    fn dtype(&self) -> String {
        self.type_name()
    }

    /// Dimensions in ggml order (`ne[0]` contiguous).
    #[getter]
    fn ne(&self) -> Vec<u64> {
        self.info().ne().to_vec()
    }

    /// Dimensions in row-major (numpy/torch) order.
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.info().ne().iter().rev())
    }

    /// Number of weights.
    #[getter]
    fn n_elements(&self) -> u64 {
        self.info().n_elements
    }

    /// Bytes of data, `None` for an unknown type.
    #[getter]
    fn nbytes(&self) -> Option<u64> {
        self.info().nbytes
    }

    /// Absolute offset of the data in its file.
    #[getter]
    fn offset(&self) -> u64 {
        self.info().offset
    }

    /// Offset of the data from the start of its file's data section.
    #[getter]
    fn relative_offset(&self) -> u64 {
        self.info().relative_offset
    }

    /// Which file of a split model holds it (0 for unsplit models).
    #[getter]
    fn shard(&self) -> usize {
        self.model.shard_of(self.index).unwrap_or(0)
    }

    fn __repr__(&self) -> String {
        let shape: Vec<String> = self
            .info()
            .ne()
            .iter()
            .rev()
            .map(ToString::to_string)
            .collect();
        format!(
            "TensorInfo(name={:?}, type={}, shape=({}))",
            self.name(),
            self.type_name(),
            shape.join(", ")
        )
    }
}
