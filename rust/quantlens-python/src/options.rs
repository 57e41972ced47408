//! `limits=` and `mmap=` of the open functions, as core [`OpenOptions`].

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use quantlens_core::{Access, Limits, OpenOptions};

/// The default caps by name, for `quantlens.Limits`.
#[pyfunction]
pub fn default_limits() -> Vec<(&'static str, u64)> {
    Limits::DEFAULT.named().to_vec()
}

/// Options from `limits` (any object with the `quantlens.Limits` fields; `None` for the
/// defaults) and `mmap` (`False`: read files instead of mapping them).
pub fn open_options(limits: Option<&Bound<'_, PyAny>>, mmap: bool) -> PyResult<OpenOptions> {
    let mut caps = Limits::DEFAULT;
    if let Some(given) = limits {
        let slots: [(&str, &mut u64); 5] = [
            ("max_header_bytes", &mut caps.max_header_bytes),
            ("max_tensors", &mut caps.max_tensors),
            ("max_string_len", &mut caps.max_string_len),
            ("max_array_len", &mut caps.max_array_len),
            ("max_depth", &mut caps.max_depth),
        ];
        for (name, slot) in slots {
            *slot = given.getattr(name)?.extract().map_err(|_| {
                PyValueError::new_err(format!(
                    "limits.{name} must be an integer from 0 to 2**64-1"
                ))
            })?;
        }
    }
    Ok(OpenOptions {
        limits: caps,
        access: if mmap { Access::Map } else { Access::Read },
    })
}
