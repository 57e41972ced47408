//! [`MappedFile`]: the only place quantlens maps a file into memory, or reads it whole
//! instead when asked to ([`Access::Read`]).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{Error, FileRef, Result};
use crate::limits::Access;

/// A file's bytes, mapped read-only or read into memory, with the path it came from.
///
/// Another process truncating a mapped file makes later reads of the lost pages fault
/// (`SIGBUS`). [`MappedFile::check_extent`] compares an extent with the file's current
/// size first, which leaves only a truncation racing the read itself; [`Access::Read`]
/// rules out even that. quantlens never writes to a file it may have mapped.
#[derive(Debug)]
pub struct MappedFile {
    path: PathBuf,
    source: Source,
}

#[derive(Debug)]
enum Source {
    /// The map and the open file it came from, kept to ask for the current size. `None`
    /// for an empty file: mapping zero bytes is an error on most systems.
    Mapped(Option<Mmap>, File),
    /// The whole file, read when opened.
    Read(Vec<u8>),
}

impl MappedFile {
    /// Map `path` read-only.
    pub fn open(path: &Path) -> Result<Self> {
        MappedFile::open_with(path, Access::Map)
    }

    /// Map `path` read-only, or read it whole into memory.
    pub fn open_with(path: &Path, access: Access) -> Result<Self> {
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            // Mapping a directory fails with a misleading "no such device".
            return Err(Error::io(path, std::io::ErrorKind::IsADirectory.into()));
        }
        let len = meta.len();
        let source = match access {
            Access::Read => {
                let mut bytes = Vec::new();
                bytes
                    .try_reserve_exact(usize::try_from(len).unwrap_or(usize::MAX))
                    .map_err(|e| Error::io(path, std::io::Error::other(e)))?;
                file.read_to_end(&mut bytes)
                    .map_err(|e| Error::io(path, e))?;
                Source::Read(bytes)
            }
            Access::Map if len == 0 => Source::Mapped(None, file),
            Access::Map => {
                // SAFETY: the map is read-only and private to this process; an external
                // truncation is checked for before tensor data is used (`check_extent`),
                // and the race left is documented on the type.
                let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
                Source::Mapped(Some(map), file)
            }
        };
        Ok(MappedFile {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        match &self.source {
            Source::Mapped(map, _) => map.as_deref().unwrap_or(&[]),
            Source::Read(bytes) => bytes,
        }
    }

    /// How the bytes were obtained.
    pub fn access(&self) -> Access {
        match self.source {
            Source::Mapped(..) => Access::Map,
            Source::Read(_) => Access::Read,
        }
    }

    /// Fail with [`Error::Truncated`] if `len` bytes from `offset` (`what`, in `format`)
    /// are no longer all in the file: a mapped file may have been cut since it was opened,
    /// and touching a page past its new end would fault. Bytes already read cannot change.
    pub fn check_extent(
        &self,
        format: &'static str,
        what: impl FnOnce() -> String,
        offset: u64,
        len: u64,
    ) -> Result<()> {
        let Source::Mapped(_, file) = &self.source else {
            return Ok(());
        };
        let now = file.metadata().map_err(|e| Error::io(&self.path, e))?.len();
        let end = offset.saturating_add(len);
        if end <= now.min(self.len()) {
            return Ok(());
        }
        Err(Error::Truncated {
            file: FileRef(Some(self.path.clone())),
            format,
            what: format!(
                "{} (the file shrank to {now} bytes since it was opened)",
                what()
            ),
            offset,
            needed: len,
            available: now.saturating_sub(offset),
        })
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's size in bytes when it was opened.
    pub fn len(&self) -> u64 {
        self.bytes().len() as u64
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }
}

/// Ask the kernel to back `buffer` with transparent huge pages where it may.
///
/// Faulting in fresh memory 4 KiB at a time costs more than decoding into it; 2 MiB pages
/// cut the faults 512-fold. Only whole huge pages inside the buffer are advised, the advice
/// is a hint (ignored where THP is off), and failure changes nothing, so it is not
/// reported. A no-op off Linux.
pub fn advise_huge_pages<T>(buffer: &mut [T]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = buffer.as_mut_ptr() as usize;
        let end = start + std::mem::size_of_val(buffer);
        let first = start.next_multiple_of(HUGE);
        let last = end / HUGE * HUGE;
        if last > first {
            // SAFETY: [first, last) lies inside `buffer`, which this function borrows
            // mutably; MADV_HUGEPAGE only changes how the kernel backs those pages, never
            // their contents.
            unsafe {
                libc::madvise(
                    first as *mut libc::c_void,
                    last - first,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buffer;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_are_checked_against_the_current_size() {
        let path = std::env::temp_dir().join(format!("quantlens-mmap-{}", std::process::id()));
        std::fs::write(&path, vec![7u8; 10_000]).unwrap();
        let mapped = MappedFile::open(&path).unwrap();
        let read = MappedFile::open_with(&path, Access::Read).unwrap();
        assert_eq!(
            (mapped.access(), read.access()),
            (Access::Map, Access::Read)
        );
        assert!(mapped.check_extent("test", String::new, 0, 10_000).is_ok());
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(100)
            .unwrap();
        let err = mapped
            .check_extent("test", || "data".into(), 50, 100)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Truncated {
                    offset: 50,
                    needed: 100,
                    available: 50,
                    ..
                }
            ),
            "{err}"
        );
        assert!(mapped.check_extent("test", String::new, 0, 100).is_ok());
        // A file read whole keeps its bytes whatever happens to it.
        assert!(read.check_extent("test", String::new, 0, 10_000).is_ok());
        assert!(read.bytes().iter().all(|&b| b == 7) && read.len() == 10_000);
        std::fs::remove_file(&path).unwrap();
    }
}
