//! Writing GGUF files (version 3, little-endian): metadata of every value type, tensor
//! infos, and tensor data streamed in order, optionally split across several files the
//! way llama.cpp's `gguf-split` does.
//!
//! The caller declares everything first ([`GgufWriter::add_metadata`],
//! [`GgufWriter::add_tensor_info`]) so that every offset is known, then supplies each
//! tensor's bytes in declaration order, in one piece or several
//! ([`GgufWriter::write_tensor_data`]), and calls [`GgufWriter::finish`]. Files are
//! written under temporary names in the destination folder and renamed into place by
//! `finish`; a writer dropped before that (an error, a panic, an interrupted conversion)
//! removes them.
//!
//! A split model keeps all metadata in its first file, as `gguf-split` does; every file
//! holds `split.no` (u16, from 0), `split.count` (u16) and `split.tensors.count` (i32).

mod pending;
mod plan;
mod value;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

pub use plan::SplitLimits;
pub use value::{MetaArray, MetaValue};

use self::pending::PendingFile;
use self::value::{put_pair, put_string, validate};
use super::header::{DEFAULT_ALIGNMENT, MAGIC};
use super::limits;
use crate::dtype::GgmlType;
use crate::error::{Error, FileRef, Result};
use crate::Limits;

/// The GGUF version written.
pub const WRITE_VERSION: u32 = 3;
/// Key of the data alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// Key of a shard's index (from 0).
pub const SPLIT_NO_KEY: &str = "split.no";
/// Key of the number of shards.
pub const SPLIT_COUNT_KEY: &str = "split.count";
/// Key of the number of tensors in all shards.
pub const SPLIT_TENSORS_KEY: &str = "split.tensors.count";

/// How to lay out the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOptions {
    /// Alignment of tensor data: a power of two, at least 8. A value other than the
    /// default 32 is recorded as `general.alignment`.
    pub alignment: u64,
    /// When to start a new file.
    pub split: SplitLimits,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            alignment: DEFAULT_ALIGNMENT,
            split: SplitLimits::default(),
        }
    }
}

/// A tensor declared for writing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedTensor {
    /// Its name.
    pub name: String,
    /// Dimensions in row-major (numpy) order; the last is the row length.
    pub shape: Vec<u64>,
    /// Its ggml type.
    pub ty: GgmlType,
    /// Bytes of data.
    pub nbytes: u64,
}

/// Where writing stands once the first byte of data has gone out.
#[derive(Debug)]
struct Progress {
    /// First tensor of each shard, then the tensor count.
    bounds: Vec<usize>,
    paths: Vec<PathBuf>,
    /// Shards written completely, waiting to be renamed.
    done: Vec<PendingFile>,
    /// The shard being written and its index.
    current: Option<(usize, PendingFile)>,
    /// The tensor whose data comes next, and how much of it has been written.
    tensor: usize,
    tensor_written: u64,
}

#[derive(Debug)]
enum State {
    Declaring,
    Writing(Box<Progress>),
    /// An error happened while writing; nothing more can be written.
    Failed,
}

/// A GGUF file (or split set of files) being written. See the [module docs](self).
#[derive(Debug)]
pub struct GgufWriter {
    dest: PathBuf,
    options: WriteOptions,
    metadata: Vec<(String, MetaValue)>,
    keys: HashSet<String>,
    tensors: Vec<PlannedTensor>,
    names: HashMap<String, usize>,
    state: State,
}

impl GgufWriter {
    /// A writer whose output goes to `dest` (or, when split, to
    /// `STEM-0000i-of-0000N.gguf` beside it).
    pub fn new(dest: impl AsRef<Path>, options: WriteOptions) -> Result<GgufWriter> {
        let dest = dest.as_ref().to_path_buf();
        let writer = GgufWriter {
            dest,
            options,
            metadata: Vec::new(),
            keys: HashSet::new(),
            tensors: Vec::new(),
            names: HashMap::new(),
            state: State::Declaring,
        };
        writer.check_alignment(options.alignment)?;
        if options.split.max_bytes == Some(0) || options.split.max_tensors == Some(0) {
            return Err(writer.invalid(None, "split limits must be above zero".to_owned()));
        }
        Ok(writer)
    }

    /// The destination given to [`GgufWriter::new`].
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// The alignment of tensor data.
    pub fn alignment(&self) -> u64 {
        self.options.alignment
    }

    /// The tensors declared so far, in order.
    pub fn tensors(&self) -> &[PlannedTensor] {
        &self.tensors
    }

    fn invalid(&self, tensor: Option<&str>, message: String) -> Error {
        Error::InvalidOutput {
            file: FileRef(Some(self.dest.clone())),
            tensor: tensor.map(str::to_owned),
            message,
        }
    }

    fn check_alignment(&self, alignment: u64) -> Result<()> {
        if alignment < 8 || !alignment.is_power_of_two() || alignment > limits::MAX_ALIGNMENT {
            return Err(self.invalid(
                None,
                format!(
                    "alignment must be a power of two from 8 to {}, not {alignment}",
                    limits::MAX_ALIGNMENT
                ),
            ));
        }
        Ok(())
    }

    fn check_declaring(&self, what: &str) -> Result<()> {
        match self.state {
            State::Declaring => Ok(()),
            _ => Err(self.invalid(
                None,
                format!("cannot {what} once tensor data has started to be written"),
            )),
        }
    }

    /// Add a metadata pair. `general.alignment` (a u32) sets the alignment; the `split.*`
    /// keys are the writer's own.
    pub fn add_metadata(&mut self, key: &str, value: MetaValue) -> Result<()> {
        self.check_declaring("add metadata")?;
        if key.len() as u64 > limits::MAX_NAME_LEN {
            return Err(self.invalid(None, format!("a key of {} bytes is too long", key.len())));
        }
        if [SPLIT_NO_KEY, SPLIT_COUNT_KEY, SPLIT_TENSORS_KEY].contains(&key) {
            return Err(self.invalid(
                None,
                format!("'{key}' is written by the writer itself when it splits its output"),
            ));
        }
        if self.keys.contains(key) {
            return Err(self.invalid(None, format!("duplicate metadata key '{key}'")));
        }
        validate(key, &value).map_err(|e| e.in_file(&self.dest))?;
        if key == ALIGNMENT_KEY {
            let MetaValue::U32(a) = value else {
                return Err(self.invalid(
                    None,
                    format!(
                        "{ALIGNMENT_KEY} must be a UINT32, not {}",
                        value.value_type().name()
                    ),
                ));
            };
            self.check_alignment(a.into())?;
            self.options.alignment = a.into();
        }
        self.keys.insert(key.to_owned());
        self.metadata.push((key.to_owned(), value));
        Ok(())
    }

    /// Declare the next tensor: its name, row-major `shape` (1 to 4 dimensions, the last a
    /// whole number of `ty`'s blocks) and ggml type.
    pub fn add_tensor_info(&mut self, name: &str, shape: &[u64], ty: GgmlType) -> Result<()> {
        self.check_declaring("add a tensor")?;
        let fail = |message: String| self.invalid(Some(name), message);
        if name.len() as u64 > limits::MAX_NAME_LEN {
            return Err(fail(format!("a name of {} bytes is too long", name.len())));
        }
        if self.names.contains_key(name) {
            return Err(fail(format!("duplicate tensor name '{name}'")));
        }
        if self.tensors.len() as u64 >= Limits::DEFAULT.max_tensors {
            return Err(fail(format!(
                "more than {} tensors",
                Limits::DEFAULT.max_tensors
            )));
        }
        if shape.is_empty() || shape.len() as u64 > limits::MAX_DIMS {
            return Err(fail(format!(
                "tensors have 1 to {} dimensions, not {}",
                limits::MAX_DIMS,
                shape.len()
            )));
        }
        let Some(info) = ty.info() else {
            return Err(fail(format!("unknown ggml type id {}", ty.0)));
        };
        let row = *shape.last().expect("not empty");
        if !row.is_multiple_of(u64::from(info.block_size)) {
            return Err(fail(format!(
                "rows of {row} weights are not a whole number of {} blocks of {}",
                info.name, info.block_size
            )));
        }
        let n_elements = shape
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .filter(|&n| {
                i64::try_from(n).is_ok() && shape.iter().all(|&d| i64::try_from(d).is_ok())
            });
        let nbytes = n_elements
            .and_then(|n| ty.byte_size(n))
            .ok_or_else(|| fail(format!("shape {shape:?} is too large")))?;
        self.names.insert(name.to_owned(), self.tensors.len());
        self.tensors.push(PlannedTensor {
            name: name.to_owned(),
            shape: shape.to_vec(),
            ty,
            nbytes,
        });
        Ok(())
    }

    fn padded(&self, n: u64) -> u64 {
        n.next_multiple_of(self.options.alignment)
    }

    /// First tensor of each output file, then the tensor count.
    fn bounds(&self) -> Vec<usize> {
        let mut bounds = if self.options.split.is_set() {
            let sizes: Vec<u64> = self.tensors.iter().map(|t| self.padded(t.nbytes)).collect();
            plan::shard_starts(&sizes, self.options.split)
        } else {
            vec![0]
        };
        bounds.push(self.tensors.len());
        bounds
    }

    /// The files the output will be, as declared so far.
    pub fn output_paths(&self) -> Vec<PathBuf> {
        match &self.state {
            State::Writing(p) => p.paths.clone(),
            _ => plan::shard_paths(&self.dest, self.bounds().len() - 1),
        }
    }

    /// The size of each output file, as declared so far.
    pub fn output_sizes(&self) -> Vec<u64> {
        let bounds = self.bounds();
        let count = bounds.len() - 1;
        (0..count)
            .map(|s| {
                let header = self.header_bytes(s, &bounds).len() as u64;
                let data: u64 = self.tensors[bounds[s]..bounds[s + 1]]
                    .iter()
                    .map(|t| self.padded(t.nbytes))
                    .sum();
                self.padded(header) + data
            })
            .collect()
    }

    /// The metadata pairs of shard `shard`, besides the caller's (which only the first
    /// shard carries).
    fn own_pairs(&self, shard: usize, count: usize) -> Vec<(&'static str, MetaValue)> {
        let mut pairs = Vec::new();
        let alignment = self.options.alignment;
        let recorded = shard == 0 && self.keys.contains(ALIGNMENT_KEY);
        if alignment != DEFAULT_ALIGNMENT && !recorded {
            pairs.push((ALIGNMENT_KEY, MetaValue::U32(alignment as u32)));
        }
        if count > 1 {
            pairs.push((SPLIT_NO_KEY, MetaValue::U16(shard as u16)));
            pairs.push((SPLIT_COUNT_KEY, MetaValue::U16(count as u16)));
            pairs.push((SPLIT_TENSORS_KEY, MetaValue::I32(self.tensors.len() as i32)));
        }
        pairs
    }

    /// The header of shard `shard`, padded to the alignment.
    fn header_bytes(&self, shard: usize, bounds: &[usize]) -> Vec<u8> {
        let count = bounds.len() - 1;
        let tensors = &self.tensors[bounds[shard]..bounds[shard + 1]];
        let own = self.own_pairs(shard, count);
        let user: &[(String, MetaValue)] = if shard == 0 { &self.metadata } else { &[] };
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&WRITE_VERSION.to_le_bytes());
        out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&((user.len() + own.len()) as u64).to_le_bytes());
        for (key, value) in user {
            put_pair(&mut out, key, value);
        }
        for (key, value) in &own {
            put_pair(&mut out, key, value);
        }
        let mut offset = 0u64;
        for t in tensors {
            put_string(&mut out, t.name.as_bytes());
            out.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
            for &d in t.shape.iter().rev() {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ty.0.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset += self.padded(t.nbytes);
        }
        out.resize(self.padded(out.len() as u64) as usize, 0);
        out
    }

    fn check_shard_count(&self, count: usize) -> Result<()> {
        if count > 1 && (count > usize::from(u16::MAX) || self.tensors.len() > i32::MAX as usize) {
            return Err(self.invalid(
                None,
                format!("{count} files is more than a split model can have"),
            ));
        }
        Ok(())
    }

    /// Fix the layout and open the first file. Called by the first write; call it
    /// directly to create the files before any data is ready.
    pub fn begin(&mut self) -> Result<()> {
        if !matches!(self.state, State::Declaring) {
            return self.check_writing().map(|_| ());
        }
        let bounds = self.bounds();
        self.check_shard_count(bounds.len() - 1)?;
        let paths = plan::shard_paths(&self.dest, bounds.len() - 1);
        self.state = State::Writing(Box::new(Progress {
            bounds,
            paths,
            done: Vec::new(),
            current: None,
            tensor: 0,
            tensor_written: 0,
        }));
        self.guarded(GgufWriter::advance)
    }

    fn check_writing(&mut self) -> Result<&mut Progress> {
        match &mut self.state {
            State::Writing(p) => Ok(p),
            State::Failed => Err(Error::InvalidOutput {
                file: FileRef(Some(self.dest.clone())),
                tensor: None,
                message: "an earlier write failed; nothing more can be written".to_owned(),
            }),
            State::Declaring => unreachable!("begin() runs first"),
        }
    }

    /// Run `step`, and on failure drop every temporary file.
    fn guarded(&mut self, step: impl FnOnce(&mut GgufWriter) -> Result<()>) -> Result<()> {
        let result = step(self);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    /// Move past complete tensors (padding each), switching to the file that holds the
    /// next tensor and writing its header when it changes.
    fn advance(&mut self) -> Result<()> {
        loop {
            self.open_shard_of_next()?;
            let State::Writing(p) = &mut self.state else {
                unreachable!("writing")
            };
            let Some(t) = self.tensors.get(p.tensor) else {
                return Ok(());
            };
            if p.tensor_written < t.nbytes {
                return Ok(());
            }
            let pad = t.nbytes.next_multiple_of(self.options.alignment) - t.nbytes;
            let (_, file) = p.current.as_mut().expect("a shard is open");
            file.write_zeros(pad)?;
            p.tensor += 1;
            p.tensor_written = 0;
        }
    }

    /// Make the file holding the next tensor (the last file once all are written) the
    /// current one.
    fn open_shard_of_next(&mut self) -> Result<()> {
        let State::Writing(p) = &mut self.state else {
            unreachable!("writing")
        };
        let starts = &p.bounds[..p.bounds.len() - 1];
        let shard = starts.partition_point(|&s| s <= p.tensor) - 1;
        if p.current.as_ref().is_some_and(|(s, _)| *s == shard) {
            return Ok(());
        }
        if let Some((_, mut previous)) = p.current.take() {
            previous.finish()?;
            p.done.push(previous);
        }
        let path = p.paths[shard].clone();
        let bounds = p.bounds.clone();
        let header = self.header_bytes(shard, &bounds);
        let mut file = PendingFile::create(&path)?;
        file.write(&header)?;
        let State::Writing(p) = &mut self.state else {
            unreachable!("writing")
        };
        p.current = Some((shard, file));
        Ok(())
    }

    /// Append `bytes` to the data of tensor `name`, which must be the next tensor without
    /// all its data (tensors are written in the order they were declared).
    pub fn write_tensor_data(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        self.begin()?;
        let p = self.check_writing()?;
        let (index, written) = (p.tensor, p.tensor_written);
        let Some(expected) = self.tensors.get(index) else {
            return Err(self.invalid(
                Some(name),
                "every declared tensor already has all its data".to_owned(),
            ));
        };
        if expected.name != name {
            let message = match self.names.get(name) {
                None => format!("tensor '{name}' was not declared"),
                Some(&i) if i < index && self.tensors[i].nbytes == 0 && bytes.is_empty() => {
                    return Ok(());
                }
                Some(&i) if i < index => format!("tensor '{name}' already has all its data"),
                Some(_) => format!(
                    "tensor data must come in declaration order: '{}' comes next",
                    expected.name
                ),
            };
            return Err(self.invalid(Some(name), message));
        }
        let left = expected.nbytes - written;
        if bytes.len() as u64 > left {
            return Err(self.invalid(
                Some(name),
                format!(
                    "{} more bytes given but {} {:?} takes {} bytes and {written} are written",
                    bytes.len(),
                    expected.ty.info().map_or("?", |i| i.name),
                    expected.shape,
                    expected.nbytes
                ),
            ));
        }
        self.guarded(|w| {
            let State::Writing(p) = &mut w.state else {
                unreachable!("writing")
            };
            let (_, file) = p.current.as_mut().expect("a shard is open");
            file.write(bytes)?;
            p.tensor_written += bytes.len() as u64;
            w.advance()
        })
    }

    /// Check that every tensor has all its data, then close the files and rename them
    /// into place. Returns their paths.
    pub fn finish(mut self) -> Result<Vec<PathBuf>> {
        self.begin()?;
        let p = self.check_writing()?;
        let (index, written) = (p.tensor, p.tensor_written);
        if let Some(t) = self.tensors.get(index) {
            let message = format!(
                "tensor '{}' has {written} of its {} bytes; every declared tensor needs its data",
                t.name, t.nbytes
            );
            let name = t.name.clone();
            self.state = State::Failed;
            return Err(self.invalid(Some(&name), message));
        }
        let State::Writing(p) = std::mem::replace(&mut self.state, State::Failed) else {
            unreachable!("writing")
        };
        let mut files = p.done;
        if let Some((_, mut last)) = p.current {
            last.finish()?;
            files.push(last);
        }
        debug_assert_eq!(files.len(), p.paths.len());
        let mut paths = Vec::with_capacity(files.len());
        // Renaming consumes each file; any left in `files` on error are removed on drop.
        let mut files = files.into_iter();
        for file in files.by_ref() {
            paths.push(file.commit()?);
        }
        Ok(paths)
    }

    /// Temporary paths being written now (for diagnostics and tests).
    pub fn temp_paths(&self) -> Vec<PathBuf> {
        match &self.state {
            State::Writing(p) => p
                .done
                .iter()
                .chain(p.current.iter().map(|(_, f)| f))
                .map(|f| f.temp_path().to_path_buf())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Bytes written to every file so far.
    pub fn bytes_written(&self) -> u64 {
        match &self.state {
            State::Writing(p) => p
                .done
                .iter()
                .chain(p.current.iter().map(|(_, f)| f))
                .map(PendingFile::written)
                .sum(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests;
