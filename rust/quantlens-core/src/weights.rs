//! [`WeightIndex`]: the tensors of a safetensors or PyTorch model (one file or several),
//! located in their mapped files.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, FileRef, Result};
use crate::mmap::MappedFile;
use crate::tensor::TensorRef;

/// What a format reader finds in one file's bytes.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Every tensor, `file` set to 0 and offsets absolute in the file.
    pub tensors: Vec<TensorRef>,
    /// String metadata (safetensors `__metadata__`; for checkpoints, non-tensor entries).
    pub metadata: Vec<(String, String)>,
}

/// The container format of a [`WeightIndex`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// safetensors, one file or sharded.
    Safetensors,
    /// A zip checkpoint written by `torch.save` (torch ≥ 1.6).
    PyTorchZip,
    /// A legacy pickle checkpoint written by `torch.save` (torch < 1.6).
    PyTorchLegacy,
}

/// Tensors of a model in one or more mapped files.
#[derive(Debug)]
pub struct WeightIndex {
    /// The container format.
    pub format: Format,
    /// The mapped files, in order; `TensorRef::file` indexes this.
    pub files: Vec<Arc<MappedFile>>,
    /// Every tensor, in file order.
    pub tensors: Vec<TensorRef>,
    /// String metadata, in file order.
    pub metadata: Vec<(String, String)>,
    by_name: HashMap<String, usize>,
}

impl WeightIndex {
    /// Index the tensors read from `files`; names must be unique across them.
    pub fn new(
        format: Format,
        files: Vec<Arc<MappedFile>>,
        tensors: Vec<TensorRef>,
        metadata: Vec<(String, String)>,
    ) -> Result<Self> {
        let mut by_name = HashMap::with_capacity(tensors.len());
        for (i, t) in tensors.iter().enumerate() {
            if let Some(prev) = by_name.insert(t.name.clone(), i) {
                let first = files[tensors[prev].file].path();
                let second = files[t.file].path();
                return Err(Error::Split {
                    file: FileRef(Some(second.to_path_buf())),
                    message: format!(
                        "tensor '{}' is in both {} and {}",
                        t.name,
                        first.display(),
                        second.display()
                    ),
                });
            }
        }
        Ok(WeightIndex {
            format,
            files,
            tensors,
            metadata,
            by_name,
        })
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Result<&TensorRef> {
        self.by_name
            .get(name)
            .map(|&i| &self.tensors[i])
            .ok_or_else(|| Error::TensorNotFound {
                file: FileRef(self.files.first().map(|f| f.path().to_path_buf())),
                name: name.to_owned(),
            })
    }

    /// The bytes a tensor's elements span (checked against the file when parsed).
    pub fn tensor_data(&self, name: &str) -> Result<&[u8]> {
        let t = self.tensor(name)?;
        let file = &self.files[t.file];
        let start = t.offset as usize;
        file.bytes()
            .get(start..start + t.nbytes as usize)
            .ok_or_else(|| Error::Truncated {
                file: FileRef(Some(file.path().to_path_buf())),
                format: "weights",
                what: format!("data of tensor '{}'", t.name),
                offset: t.offset,
                needed: t.nbytes,
                available: file.len().saturating_sub(t.offset),
            })
    }

    /// The path of the first file.
    pub fn path(&self) -> Option<&Path> {
        self.files.first().map(|f| f.path())
    }
}
