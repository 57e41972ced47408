//! Dequantization entry points: decode into a caller's numpy array with the GIL released.

use numpy::{PyArrayMethods, PyReadonlyArray1, PyReadwriteArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use quantlens_core::quant::{self, Output};
use quantlens_core::{Error, GgmlType};

use crate::errors::IntoPyResult;

/// The element type asked for: `float32` (an f32 array), or `float16`/`bfloat16`
/// (a `uint16` array receiving the bits).
#[derive(Clone, Copy)]
pub enum Kind {
    F32,
    F16,
    BF16,
}

impl Kind {
    pub fn parse(name: &str) -> PyResult<Kind> {
        match name {
            "float32" => Ok(Kind::F32),
            "float16" => Ok(Kind::F16),
            "bfloat16" => Ok(Kind::BF16),
            other => Err(PyValueError::new_err(format!(
                "dtype must be float32, float16 or bfloat16, not {other}"
            ))),
        }
    }
}

/// A writable, C-contiguous numpy array to decode into, borrowed for the call.
pub enum OutArray<'py> {
    F32(PyReadwriteArrayDyn<'py, f32>),
    U16(PyReadwriteArrayDyn<'py, u16>, Kind),
}

impl<'py> OutArray<'py> {
    pub fn borrow(out: &Bound<'py, PyAny>, kind: Kind) -> PyResult<Self> {
        let not_contiguous = || PyValueError::new_err("out must be C-contiguous");
        match kind {
            Kind::F32 => {
                let array = out.cast::<numpy::PyArrayDyn<f32>>()?;
                if !array.is_c_contiguous() {
                    return Err(not_contiguous());
                }
                Ok(OutArray::F32(array.try_readwrite()?))
            }
            Kind::F16 | Kind::BF16 => {
                let array = out.cast::<numpy::PyArrayDyn<u16>>()?;
                if !array.is_c_contiguous() {
                    return Err(not_contiguous());
                }
                Ok(OutArray::U16(array.try_readwrite()?, kind))
            }
        }
    }

    /// The core's view of the array.
    pub fn output(&mut self) -> PyResult<Output<'_>> {
        let contiguous = |_| PyValueError::new_err("out must be C-contiguous");
        Ok(match self {
            OutArray::F32(a) => Output::F32(a.as_slice_mut().map_err(contiguous)?),
            OutArray::U16(a, Kind::F16) => Output::F16(a.as_slice_mut().map_err(contiguous)?),
            OutArray::U16(a, _) => Output::BF16(a.as_slice_mut().map_err(contiguous)?),
        })
    }
}

/// Decode `data` (whole blocks of ggml type `type_id`) into `out`, whose element type is
/// `dtype`, on up to `threads` threads.
#[pyfunction]
#[pyo3(signature = (data, type_id, out, dtype, threads=None))]
pub fn dequantize(
    py: Python<'_>,
    data: PyReadonlyArray1<'_, u8>,
    type_id: u32,
    out: &Bound<'_, PyAny>,
    dtype: &str,
    threads: Option<usize>,
) -> PyResult<()> {
    let src = data
        .as_slice()
        .map_err(|_| PyValueError::new_err("data must be contiguous"))?;
    let mut out = OutArray::borrow(out, Kind::parse(dtype)?)?;
    let output = out.output()?;
    let ty = GgmlType(type_id);
    py.detach(|| quant::dequantize(quant::isa(), ty, src, output, threads))
        .map_err(|e| Error::from_dequant(e, None))
        .into_py_result(py)
}

/// The name of the kernels in use: `avx512`, `avx2`, `neon` or `scalar`.
#[pyfunction]
pub fn kernel_isa() -> &'static str {
    quant::isa().name()
}

/// Whether quantlens can decode ggml type `type_id`.
#[pyfunction]
pub fn can_dequantize(type_id: u32) -> bool {
    quant::can_dequantize(GgmlType(type_id))
}

/// The thread count used when none is given (`QUANTLENS_NUM_THREADS` or the CPU count).
#[pyfunction]
pub fn default_threads() -> usize {
    quant::default_threads()
}

/// Where a block of ggml type `type_id` keeps its scales: `(encoding, byte offset)` pairs,
/// encodings `f16`, `f32`, `e8m0`, `ue4m3x4` and `iq1m_f16`.
#[pyfunction]
pub fn scale_fields(type_id: u32) -> Vec<(&'static str, usize)> {
    use quantlens_core::quant::blocks::{scale_fields, ScaleField};
    scale_fields(GgmlType(type_id))
        .iter()
        .map(|field| match *field {
            ScaleField::F16(at) => ("f16", at),
            ScaleField::F32(at) => ("f32", at),
            ScaleField::E8M0(at) => ("e8m0", at),
            ScaleField::Ue4m3x4(at) => ("ue4m3x4", at),
            ScaleField::Iq1mF16(at) => ("iq1m_f16", at),
        })
        .collect()
}
