//! A file written under a temporary name in its destination folder and renamed into place
//! only when complete, so a reader never sees half a file, an existing file (perhaps still
//! mapped by someone) is replaced whole rather than truncated, and a failed write leaves
//! nothing behind.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Buffer for the small writes of a header; tensor data bigger than this goes straight
/// through.
const BUFFER: usize = 1 << 20;

/// An open temporary file bound for `dest`; dropped without [`PendingFile::commit`], it is
/// removed.
#[derive(Debug)]
pub(crate) struct PendingFile {
    dest: PathBuf,
    temp: PathBuf,
    out: Option<BufWriter<File>>,
    written: u64,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl PendingFile {
    /// Create a new temporary file beside `dest`.
    pub(crate) fn create(dest: &Path) -> Result<PendingFile> {
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| {
                Error::io(
                    dest,
                    io::Error::new(ErrorKind::InvalidInput, "destination has no file name"),
                )
            })?;
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let temp = dir.join(format!(".{name}.{}-{n}.partial", std::process::id()));
            match OpenOptions::new().write(true).create_new(true).open(&temp) {
                Ok(file) => {
                    return Ok(PendingFile {
                        dest: dest.to_path_buf(),
                        temp,
                        out: Some(BufWriter::with_capacity(BUFFER, file)),
                        written: 0,
                    })
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(&temp, e)),
            }
        }
    }

    /// The temporary path being written.
    pub(crate) fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Bytes written so far.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// Append `bytes`.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let out = self.out.as_mut().expect("written after commit");
        out.write_all(bytes).map_err(|e| Error::io(&self.temp, e))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Append `n` zero bytes.
    pub(crate) fn write_zeros(&mut self, n: u64) -> Result<()> {
        const ZEROS: [u8; 256] = [0; 256];
        let mut left = n;
        while left > 0 {
            let step = left.min(ZEROS.len() as u64) as usize;
            self.write(&ZEROS[..step])?;
            left -= step as u64;
        }
        Ok(())
    }

    /// Flush and close the temporary file, leaving it to be renamed.
    pub(crate) fn finish(&mut self) -> Result<()> {
        if let Some(out) = self.out.take() {
            let file = out
                .into_inner()
                .map_err(|e| Error::io(&self.temp, e.into_error()))?;
            drop(file);
        }
        Ok(())
    }

    /// Rename the finished file into place.
    pub(crate) fn commit(mut self) -> Result<PathBuf> {
        self.finish()?;
        fs::rename(&self.temp, &self.dest).map_err(|e| Error::io(&self.dest, e))?;
        // Renamed: nothing left to clean up.
        self.temp = PathBuf::new();
        Ok(std::mem::take(&mut self.dest))
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        drop(self.out.take());
        if !self.temp.as_os_str().is_empty() {
            // Best effort: the error that got us here matters more than this one.
            let _ = fs::remove_file(&self.temp);
        }
    }
}
