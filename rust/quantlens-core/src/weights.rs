//! [`WeightIndex`]: the tensors of a safetensors or PyTorch model (one file or several),
//! located in their mapped files, and [`WeightIndex::open`], which tells a file's format
//! from its first bytes rather than its name.

mod sharded;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, FileRef, Result};
use crate::format::{self, FileKind, SNIFF_LEN};
use crate::limits::{Limits, OpenOptions};
use crate::mmap::{advise_huge_pages, MappedFile};
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

impl Format {
    /// `safetensors`, `pytorch-zip` or `pytorch-legacy`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Safetensors => "safetensors",
            Format::PyTorchZip => "pytorch-zip",
            Format::PyTorchLegacy => "pytorch-legacy",
        }
    }
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
    /// Open the model at `path`: a safetensors file, a PyTorch checkpoint, a
    /// `*.safetensors.index.json` with its shards, or a folder holding either.
    ///
    /// A file that is none of these (a Git LFS pointer, an HTML error page, an empty file,
    /// a GGUF model) gets [`Error::UnsupportedFormat`] saying what it is instead.
    pub fn open(path: &Path) -> Result<Self> {
        WeightIndex::open_with(path, &OpenOptions::default())
    }

    /// [`WeightIndex::open`] with the limits and access of `options`, for every file.
    pub fn open_with(path: &Path, options: &OpenOptions) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return sharded::open_dir(path, options);
        }
        let file = Arc::new(MappedFile::open_with(path, options.access)?);
        if kind_of(&file) == FileKind::Json {
            return sharded::open_index(&file, options);
        }
        let (format, parsed) = parse_file(&file, &options.limits)?;
        WeightIndex::new(format, vec![file], parsed.tensors, parsed.metadata)
    }

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

    /// Position of the tensor named `name` in [`WeightIndex::tensors`].
    pub fn position(&self, name: &str) -> Result<usize> {
        self.by_name
            .get(name)
            .copied()
            .ok_or_else(|| Error::TensorNotFound {
                file: FileRef(self.files.first().map(|f| f.path().to_path_buf())),
                name: name.to_owned(),
            })
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Result<&TensorRef> {
        self.position(name).map(|i| &self.tensors[i])
    }

    /// The mapped file that holds tensor `t`.
    pub fn file_of(&self, t: &TensorRef) -> &Arc<MappedFile> {
        &self.files[t.file]
    }

    /// The bytes a tensor's elements span (checked against the file here, as readers of
    /// other formats may leave that to this call).
    pub fn tensor_data(&self, name: &str) -> Result<&[u8]> {
        let t = self.tensor(name)?;
        let file = &self.files[t.file];
        let range = usize::try_from(t.offset)
            .ok()
            .zip(usize::try_from(t.nbytes).ok())
            .and_then(|(start, n)| Some(start..start.checked_add(n)?));
        let bytes = range
            .and_then(|r| file.bytes().get(r))
            .ok_or_else(|| Error::Truncated {
                file: FileRef(Some(file.path().to_path_buf())),
                format: "weights",
                what: format!("data of tensor '{}'", t.name),
                offset: t.offset,
                needed: t.nbytes,
                available: file.len().saturating_sub(t.offset),
            })?;
        // A mapped file may have shrunk since it was opened.
        let what = || format!("data of tensor '{}'", t.name);
        file.check_extent("weights", what, t.offset, t.nbytes)?;
        Ok(bytes)
    }

    /// Copy the bytes tensor `name` spans into `out`, which must be exactly as long, on up
    /// to `threads` threads (`None`: [`crate::quant::default_threads`]).
    pub fn read_into(&self, name: &str, out: &mut [u8], threads: Option<usize>) -> Result<()> {
        let src = self.tensor_data(name)?;
        if out.len() != src.len() {
            return Err(Error::InvalidOutput {
                file: FileRef(self.path().map(Path::to_path_buf)),
                tensor: Some(name.to_owned()),
                message: format!(
                    "out has {} bytes but tensor '{name}' spans {}",
                    out.len(),
                    src.len()
                ),
            });
        }
        copy_parallel(
            out,
            src,
            threads.unwrap_or_else(crate::quant::default_threads),
        );
        Ok(())
    }

    /// The path of the first file.
    pub fn path(&self) -> Option<&Path> {
        self.files.first().map(|f| f.path())
    }
}

/// Fewest bytes worth a thread of their own when copying.
const MIN_COPY_CHUNK: usize = 4 << 20;

/// `dst.copy_from_slice(src)`, split over up to `threads` scoped threads for big copies.
///
/// Copying into fresh memory is bound by faulting its pages in, not by bandwidth, and
/// faults on different pages proceed in parallel. Scoped threads rather than a pool: they
/// cost microseconds against milliseconds of copying, and leave nothing behind to break
/// after a `fork()`.
fn copy_parallel(dst: &mut [u8], src: &[u8], threads: usize) {
    advise_huge_pages(dst);
    let n = threads.min(dst.len() / MIN_COPY_CHUNK).max(1);
    if n == 1 {
        dst.copy_from_slice(src);
        return;
    }
    let chunk = dst.len().div_ceil(n).next_multiple_of(2 << 20);
    std::thread::scope(|scope| {
        let mut pairs = dst.chunks_mut(chunk).zip(src.chunks(chunk));
        let first = pairs.next();
        for (d, s) in pairs {
            scope.spawn(move || d.copy_from_slice(s));
        }
        if let Some((d, s)) = first {
            d.copy_from_slice(s);
        }
    });
}

/// What the first bytes of a mapped file say it is.
fn kind_of(file: &MappedFile) -> FileKind {
    let bytes = file.bytes();
    format::sniff(&bytes[..bytes.len().min(SNIFF_LEN)])
}

/// Parse one mapped safetensors file or PyTorch checkpoint; errors name the file.
fn parse_file(file: &MappedFile, limits: &Limits) -> Result<(Format, Parsed)> {
    let bytes = file.bytes();
    let parsed = match kind_of(file) {
        FileKind::Safetensors => {
            crate::safetensors::parse_with(bytes, limits).map(|p| (Format::Safetensors, p))
        }
        FileKind::Zip => crate::pytorch::parse_with(bytes, limits).map(|p| (Format::PyTorchZip, p)),
        FileKind::Pickle => {
            crate::pytorch::parse_with(bytes, limits).map(|p| (Format::PyTorchLegacy, p))
        }
        kind => Err(not_weights(kind)),
    };
    parsed.map_err(|e| e.in_file(file.path()))
}

/// The error for a file of `kind`, which holds no safetensors or PyTorch weights.
fn not_weights(kind: FileKind) -> Error {
    let hint = match kind {
        FileKind::Gguf => "; open it with quantlens.open_weights or GgufModel",
        FileKind::Empty => " (a download that never started?)",
        _ => "",
    };
    Error::UnsupportedFormat {
        file: FileRef::default(),
        kind: kind.name(),
        message: format!(
            "not a safetensors file or PyTorch checkpoint: this is {}{hint}",
            kind.description()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_copies_are_exact() {
        let src: Vec<u8> = (0..(MIN_COPY_CHUNK * 3 + 12_345))
            .map(|i| (i * 7) as u8)
            .collect();
        for threads in [1, 2, 3, 8] {
            let mut dst = vec![0u8; src.len()];
            copy_parallel(&mut dst, &src, threads);
            assert!(dst == src, "{threads} threads");
        }
    }
}
