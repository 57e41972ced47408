//! `WeightModel`: an open safetensors model (one file or sharded) or PyTorch checkpoint.

use std::path::PathBuf;
use std::sync::Arc;

use numpy::ndarray::ArrayView1;
use numpy::{PyArray1, PyReadwriteArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use quantlens_core::weights::WeightIndex;
use quantlens_core::TensorRef;

use crate::errors::IntoPyResult;
use crate::gguf::MappedBytes;
use crate::options::open_options;

/// An open safetensors model or PyTorch checkpoint. Parsing happens once, with the GIL
/// released; tensors stay in the mapped files until asked for.
#[pyclass(module = "quantlens._core", frozen)]
pub struct WeightModel {
    inner: Arc<WeightIndex>,
}

#[pymethods]
impl WeightModel {
    /// Open `path`: a safetensors file, a PyTorch checkpoint, a `*.index.json` of a
    /// sharded model, or a folder holding one; the format is told from the bytes.
    /// Under `limits`; `mmap=False` reads the files instead of mapping them.
    #[new]
    #[pyo3(signature = (path, *, limits=None, mmap=true))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        limits: Option<&Bound<'_, PyAny>>,
        mmap: bool,
    ) -> PyResult<Self> {
        let options = open_options(limits, mmap)?;
        let index = py
            .detach(|| WeightIndex::open_with(&path, &options))
            .into_py_result(py)?;
        Ok(WeightModel {
            inner: Arc::new(index),
        })
    }

    /// `"safetensors"`, `"pytorch-zip"` or `"pytorch-legacy"`.
    #[getter]
    fn format(&self) -> &'static str {
        self.inner.format.name()
    }

    /// Paths of the files, in the order `WeightTensorInfo.file` counts them.
    #[getter]
    fn paths(&self) -> Vec<PathBuf> {
        let files = &self.inner.files;
        files.iter().map(|f| f.path().to_path_buf()).collect()
    }

    /// Sizes of the files in bytes.
    #[getter]
    fn file_sizes(&self) -> Vec<u64> {
        self.inner.files.iter().map(|f| f.len()).collect()
    }

    /// String metadata as `(key, value)` pairs (safetensors `__metadata__`, index
    /// `metadata`), first occurrence of each key.
    #[getter]
    fn metadata(&self) -> Vec<(String, String)> {
        self.inner.metadata.clone()
    }

    /// Every tensor, in file order.
    fn tensor_infos<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let infos = (0..self.inner.tensors.len())
            .map(|index| self.info_at(py, index))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, infos)
    }

    /// The description of tensor `name`.
    fn tensor_info<'py>(
        &self,
        py: Python<'py>,
        name: &str,
    ) -> PyResult<Bound<'py, WeightTensorInfo>> {
        let index = self.inner.position(name).into_py_result(py)?;
        self.info_at(py, index)
    }

    /// A read-only, zero-copy `uint8` view of the bytes a tensor spans; it keeps the file
    /// mapped after the model is dropped.
    fn tensor_bytes<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyArray1<u8>>> {
        let bytes = self.inner.tensor_data(name).into_py_result(py)?;
        let file = self
            .inner
            .file_of(self.inner.tensor(name).into_py_result(py)?);
        let owner = Bound::new(py, MappedBytes::new(Arc::clone(file)))?;
        let view = ArrayView1::from(bytes);
        // SAFETY: `bytes` lies in the file's buffer (a read-only map, or a copy read on
        // open) owned by `owner`'s `Arc<MappedFile>`; the array holds `owner` as its base,
        // so the buffer outlives the array, and it is never moved, remapped or written.
        let array = unsafe { PyArray1::borrow_from_array(&view, owner.into_any()) };
        array.getattr("flags")?.setattr("writeable", false)?;
        Ok(array)
    }

    /// Copy the bytes a tensor spans into `out` (a writable, contiguous `uint8` array of
    /// exactly that size) with the GIL released, on up to `threads` threads.
    #[pyo3(signature = (name, out, threads=None))]
    fn read_into(
        &self,
        py: Python<'_>,
        name: &str,
        mut out: PyReadwriteArray1<'_, u8>,
        threads: Option<usize>,
    ) -> PyResult<()> {
        let dst = out
            .as_slice_mut()
            .map_err(|_| PyValueError::new_err("out must be contiguous"))?;
        let model = &self.inner;
        py.detach(|| model.read_into(name, dst, threads))
            .into_py_result(py)
    }

    /// Number of tensors.
    fn __len__(&self) -> usize {
        self.inner.tensors.len()
    }

    /// Whether a tensor is named `name`.
    fn __contains__(&self, name: &str) -> bool {
        self.inner.position(name).is_ok()
    }
}

impl WeightModel {
    fn info_at<'py>(
        &self,
        py: Python<'py>,
        index: usize,
    ) -> PyResult<Bound<'py, WeightTensorInfo>> {
        let model = Arc::clone(&self.inner);
        Bound::new(py, WeightTensorInfo { model, index })
    }
}

/// One tensor's description; fields are read from the index when asked for.
#[pyclass(module = "quantlens._core", frozen)]
pub struct WeightTensorInfo {
    model: Arc<WeightIndex>,
    index: usize,
}

impl WeightTensorInfo {
    fn tensor(&self) -> &TensorRef {
        &self.model.tensors[self.index]
    }
}

#[pymethods]
impl WeightTensorInfo {
    /// Position in file order.
    #[getter]
    fn index(&self) -> usize {
        self.index
    }

    /// Tensor name (dotted for nested state dicts).
    #[getter]
    fn name(&self) -> &str {
        &self.tensor().name
    }

    /// Element type in safetensors spelling (`F32`, `BF16`, `F8_E4M3`, …).
    #[getter]
    fn dtype(&self) -> &'static str {
        self.tensor().dtype.name()
    }

    /// numpy name of the element type (`float32`, `bfloat16` from `ml_dtypes`, …).
    #[getter]
    fn numpy_dtype(&self) -> Option<&'static str> {
        self.tensor().dtype.numpy_name()
    }

    /// Bytes per element.
    #[getter]
    fn itemsize(&self) -> Option<usize> {
        self.tensor().dtype.size()
    }

    /// Row-major shape.
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.tensor().shape)
    }

    /// Strides in elements.
    #[getter]
    fn strides<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.tensor().strides)
    }

    /// Whether the elements are row-major without gaps.
    #[getter]
    fn contiguous(&self) -> bool {
        self.tensor().is_contiguous()
    }

    /// Number of elements.
    #[getter]
    fn n_elements(&self) -> u64 {
        self.tensor().n_elements().unwrap_or(u64::MAX)
    }

    /// Which file holds it (an index into `WeightModel.paths`).
    #[getter]
    fn file(&self) -> usize {
        self.tensor().file
    }

    /// Absolute offset of the first element in its file.
    #[getter]
    fn offset(&self) -> u64 {
        self.tensor().offset
    }

    /// Bytes from `offset` that the elements span.
    #[getter]
    fn nbytes(&self) -> u64 {
        self.tensor().nbytes
    }

    fn __repr__(&self) -> String {
        let t = self.tensor();
        let shape: Vec<String> = t.shape.iter().map(ToString::to_string).collect();
        format!(
            "WeightTensorInfo(name={:?}, dtype={}, shape=({}))",
            t.name,
            t.dtype.name(),
            shape.join(", ")
        )
    }
}
