//! [`MappedFile`]: the only place quantlens maps a file into memory.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{Error, Result};

/// A read-only memory map of a whole file, with the path it came from.
///
/// Another process truncating the file while it is mapped makes later reads of the lost
/// pages fault (`SIGBUS`); that is the one hazard no reader of mapped files can rule out.
/// quantlens never writes to a file it may have mapped.
#[derive(Debug)]
pub struct MappedFile {
    path: PathBuf,
    // `None` for an empty file: mapping zero bytes is an error on most systems.
    map: Option<Mmap>,
}

impl MappedFile {
    /// Map `path` read-only.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            // Mapping a directory fails with a misleading "no such device".
            return Err(Error::io(path, std::io::ErrorKind::IsADirectory.into()));
        }
        let len = meta.len();
        let map = if len == 0 {
            None
        } else {
            // SAFETY: the map is read-only and private to this process; the hazard of an
            // external truncation is documented on the type.
            Some(unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?)
        };
        Ok(MappedFile {
            path: path.to_path_buf(),
            map,
        })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's size in bytes.
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
