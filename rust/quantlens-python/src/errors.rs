//! Core errors become the matching `quantlens.exceptions` class, carrying the file,
//! byte offset and tensor; I/O errors become the built-in `OSError` subclasses.

use std::io::ErrorKind;

use pyo3::exceptions::{PyFileNotFoundError, PyIsADirectoryError, PyOSError, PyPermissionError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use quantlens_core::Error;

/// Convert a core error into the Python exception a user can catch by kind.
pub fn to_py(py: Python<'_>, err: &Error) -> PyErr {
    if let Error::Io { file, source } = err {
        let text = source.to_string();
        // Python adds the errno and file name itself; keep only the reason.
        let reason = text.split(" (os error").next().unwrap_or(&text).to_owned();
        let path = file.0.as_ref().map(|p| p.as_os_str().to_owned());
        let args = (source.raw_os_error().unwrap_or(0), reason, path);
        return match source.kind() {
            ErrorKind::NotFound => PyFileNotFoundError::new_err(args),
            ErrorKind::PermissionDenied => PyPermissionError::new_err(args),
            ErrorKind::IsADirectory => PyIsADirectoryError::new_err(args),
            _ => PyOSError::new_err(args),
        };
    }
    if let Error::InvalidOutput { .. } = err {
        return pyo3::exceptions::PyValueError::new_err(err.to_string());
    }
    let class = match err {
        Error::Malformed { .. } => "MalformedFileError",
        Error::Truncated { .. } => "TruncatedFileError",
        Error::LimitExceeded { .. } => "LimitExceededError",
        Error::UnsupportedVersion { .. } => "UnsupportedVersionError",
        Error::UnsupportedType { .. }
        | Error::UnsupportedByteOrder { .. }
        | Error::UnsupportedDType { .. } => "UnsupportedTypeError",
        Error::UnsupportedFormat { .. } => "UnsupportedFormatError",
        Error::TensorNotFound { .. } => "TensorNotFoundError",
        Error::Split { .. } => "SplitFileError",
        Error::UnsafePickle { .. } => "UnsafePickleError",
        Error::Io { .. } | Error::InvalidOutput { .. } => unreachable!("handled above"),
    };
    build(py, class, err).unwrap_or_else(|e| e)
}

fn build(py: Python<'_>, class: &str, err: &Error) -> PyResult<PyErr> {
    let cls = py.import("quantlens.exceptions")?.getattr(class)?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("path", err.path())?;
    kwargs.set_item("offset", err.offset())?;
    kwargs.set_item("tensor", err.tensor())?;
    if let Some(setting) = err.limit_setting() {
        kwargs.set_item("setting", setting)?;
    }
    let value = cls.call((err.to_string(),), Some(&kwargs))?;
    Ok(PyErr::from_value(value))
}

/// `Result` conversion for binding functions.
pub trait IntoPyResult<T> {
    /// Convert the error, if any.
    fn into_py_result(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for Result<T, Error> {
    fn into_py_result(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, &e))
    }
}
