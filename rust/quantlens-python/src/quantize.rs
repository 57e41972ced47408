//! Quantization entry points: float rows in, a new numpy `uint8` array of blocks out, with
//! the GIL released while the core works (and fills the new array on its own threads).

use std::mem::MaybeUninit;

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArrayDyn};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use quantlens_core::quant::quantize::{self as core, Input, QuantizeError};
use quantlens_core::GgmlType;

/// The input's weights, borrowed for the call: f32 values, or f16/bf16 bits.
enum Weights<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    U16(PyReadonlyArrayDyn<'py, u16>, bool),
}

impl<'py> Weights<'py> {
    fn borrow(data: &Bound<'py, PyAny>, dtype: &str) -> PyResult<Self> {
        Ok(match dtype {
            "float32" => Weights::F32(data.cast::<numpy::PyArrayDyn<f32>>()?.try_readonly()?),
            "float16" | "bfloat16" => Weights::U16(
                data.cast::<numpy::PyArrayDyn<u16>>()?.try_readonly()?,
                dtype == "bfloat16",
            ),
            other => {
                return Err(PyValueError::new_err(format!(
                    "data must be float32, float16 or bfloat16, not {other}"
                )))
            }
        })
    }

    fn input(&self) -> PyResult<Input<'_>> {
        let contiguous = |_| PyValueError::new_err("data must be C-contiguous");
        Ok(match self {
            Weights::F32(a) => Input::F32(a.as_slice().map_err(contiguous)?),
            Weights::U16(a, false) => Input::F16(a.as_slice().map_err(contiguous)?),
            Weights::U16(a, true) => Input::BF16(a.as_slice().map_err(contiguous)?),
        })
    }
}

/// `UnsupportedTypeError` for a type quantlens cannot produce, `ValueError` otherwise.
fn to_py(py: Python<'_>, err: &QuantizeError) -> PyErr {
    if let QuantizeError::UnsupportedType(_) = err {
        let raised = py
            .import("quantlens.exceptions")
            .and_then(|m| m.getattr("UnsupportedTypeError"))
            .and_then(|cls| cls.call1((err.to_string(),)));
        return match raised {
            Ok(value) => PyErr::from_value(value),
            Err(e) => e,
        };
    }
    PyValueError::new_err(err.to_string())
}

/// Quantize `data` (rows of `n_per_row` weights, element type `dtype`: `float32`, or
/// `float16`/`bfloat16` given as `uint16` bits) to ggml type `type_id`, into a new flat
/// `uint8` array. `imatrix`, if given, has one float32 importance weight per column.
#[pyfunction]
#[pyo3(signature = (data, dtype, type_id, n_per_row, imatrix=None, threads=None))]
pub fn quantize<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    dtype: &str,
    type_id: u32,
    n_per_row: usize,
    imatrix: Option<PyReadonlyArrayDyn<'py, f32>>,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray1<u8>>> {
    let ty = GgmlType(type_id);
    let weights = Weights::borrow(data, dtype)?;
    let src = weights.input()?;
    let imatrix = imatrix
        .as_ref()
        .map(|w| {
            w.as_slice()
                .map_err(|_| PyValueError::new_err("imatrix must be C-contiguous"))
        })
        .transpose()?;
    let row_bytes = core::row_size(ty, n_per_row).map_err(|e| to_py(py, &e))?;
    if !src.len().is_multiple_of(n_per_row) {
        let err = QuantizeError::PartialRow {
            ty,
            weights: src.len(),
            n_per_row,
        };
        return Err(to_py(py, &err));
    }
    let bytes = (src.len() / n_per_row)
        .checked_mul(row_bytes)
        .ok_or_else(|| PyValueError::new_err("quantized size overflows"))?;
    // Uninitialized rather than zeroed: a zeroed array would be filled on this thread
    // before the quantizer's threads start; the core zeroes and fills it in parallel.
    // SAFETY: no Python code sees the array's bytes before the core has written them all
    // (or, on error, ever), as `quantize_uninit` promises.
    let out = unsafe { PyArray1::<u8>::new(py, bytes, false) };
    let dst: &mut [MaybeUninit<u8>] = if bytes == 0 {
        &mut []
    } else {
        // SAFETY: the new array owns `bytes` contiguous bytes at `data()`, and nothing else
        // refers to them while this slice lives.
        unsafe { std::slice::from_raw_parts_mut(out.data().cast(), bytes) }
    };
    py.detach(|| core::quantize_uninit(ty, src, n_per_row, dst, imatrix, threads))
        .map_err(|e| to_py(py, &e))?;
    Ok(out)
}

/// Whether quantlens can quantize to ggml type `type_id`.
#[pyfunction]
pub fn can_quantize(type_id: u32) -> bool {
    core::can_quantize(GgmlType(type_id))
}

/// Whether an importance matrix changes how ggml type `type_id` is quantized.
#[pyfunction]
pub fn accepts_imatrix(type_id: u32) -> bool {
    core::accepts_imatrix(GgmlType(type_id))
}
