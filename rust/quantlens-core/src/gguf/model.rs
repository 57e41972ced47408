//! A GGUF model: one file, or every shard of a split model (`NAME-00001-of-00003.gguf`)
//! seen as one set of tensors.

use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hashbrown::{DefaultHashBuilder, HashTable};

use super::cursor::{Endian, FORMAT};
use super::header::{Header, TensorInfo};
use super::value::Value;
use crate::error::{Error, FileRef, Result};
use crate::limits::OpenOptions;
use crate::mmap::MappedFile;
use crate::quant::{self, endian, Output};

/// One mapped GGUF file and its parsed header.
#[derive(Debug)]
pub struct GgufShard {
    /// The mapped file.
    pub file: Arc<MappedFile>,
    /// Its header.
    pub header: Header,
}

impl GgufShard {
    /// Map and parse one file.
    pub fn open(path: &Path) -> Result<GgufShard> {
        GgufShard::open_with(path, &OpenOptions::default())
    }

    /// Map (or read) and parse one file as `options` say.
    pub fn open_with(path: &Path, options: &OpenOptions) -> Result<GgufShard> {
        let file = Arc::new(MappedFile::open_with(path, options.access)?);
        let header =
            Header::parse_with(file.bytes(), &options.limits).map_err(|e| e.in_file(path))?;
        Ok(GgufShard { file, header })
    }

    fn split_key(&self, key: &str) -> Option<u64> {
        self.header.get(key).and_then(Value::as_u64)
    }
}

/// How a split model is laid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitInfo {
    /// Number of shards (`split.count`).
    pub count: u64,
    /// Tensors in all shards (`split.tensors.count`), if stated.
    pub tensors_count: Option<u64>,
}

/// A GGUF model: the metadata of its first file and the tensors of all its files.
#[derive(Debug)]
pub struct GgufModel {
    /// The files, in shard order; one for an unsplit model.
    pub shards: Vec<GgufShard>,
    /// Split layout, for a model in several files.
    pub split: Option<SplitInfo>,
    order: Vec<(u32, u32)>,
    // Positions in `order`, found by name hash; names stay in the headers, not copied.
    by_name: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

const SPLIT_COUNT: &str = "split.count";
const SPLIT_NO: &str = "split.no";
const SPLIT_TENSORS: &str = "split.tensors.count";

impl GgufModel {
    /// Open `path`; if it is one shard of a split model, open every shard.
    pub fn open(path: &Path) -> Result<GgufModel> {
        GgufModel::open_with(path, &OpenOptions::default())
    }

    /// [`GgufModel::open`] with the limits and access of `options`, for every shard.
    pub fn open_with(path: &Path, options: &OpenOptions) -> Result<GgufModel> {
        let first = GgufShard::open_with(path, options)?;
        let count = first.split_key(SPLIT_COUNT).unwrap_or(1);
        if count <= 1 {
            return GgufModel::assemble(vec![first], None);
        }
        let shards = open_siblings(path, first, count, options)?;
        let split = SplitInfo {
            count,
            tensors_count: shards[0].split_key(SPLIT_TENSORS),
        };
        GgufModel::assemble(shards, Some(split))
    }

    fn assemble(shards: Vec<GgufShard>, split: Option<SplitInfo>) -> Result<GgufModel> {
        let total: usize = shards.iter().map(|s| s.header.tensors.len()).sum();
        let mut model = GgufModel {
            shards,
            split,
            order: Vec::with_capacity(total),
            by_name: HashTable::with_capacity(total),
            hasher: DefaultHashBuilder::default(),
        };
        for s in 0..model.shards.len() {
            for t in 0..model.shards[s].header.tensors.len() {
                model.insert(s, t)?;
            }
        }
        if let Some(expected) = model.split.as_ref().and_then(|s| s.tensors_count) {
            if expected != total as u64 {
                return Err(split_error(
                    model.shards[0].file.path(),
                    format!(
                        "split.tensors.count says {expected} tensors but the shards hold {total}"
                    ),
                ));
            }
        }
        Ok(model)
    }

    fn name_at(&self, i: u32) -> &str {
        let (s, t) = self.order[i as usize];
        &self.shards[s as usize].header.tensors[t as usize].name
    }

    /// Index tensor `t` of shard `s`, refusing a name already taken.
    fn insert(&mut self, s: usize, t: usize) -> Result<()> {
        let name = &self.shards[s].header.tensors[t].name;
        let hash = self.hasher.hash_one(&**name);
        let found = self.by_name.find(hash, |&i| self.name_at(i) == &**name);
        if let Some(&prev) = found {
            let (ps, _) = self.order[prev as usize];
            return Err(duplicate_tensor(
                &self.shards,
                ps as usize,
                s,
                &self.shards[s].header.tensors[t],
            ));
        }
        let position = self.order.len() as u32;
        self.order.push((s as u32, t as u32));
        let (order, shards, hasher) = (&self.order, &self.shards, &self.hasher);
        self.by_name.insert_unique(hash, position, |&i| {
            let (s, t) = order[i as usize];
            hasher.hash_one(&*shards[s as usize].header.tensors[t as usize].name)
        });
        Ok(())
    }

    /// The header of the first file, which holds the model's metadata.
    pub fn header(&self) -> &Header {
        &self.shards[0].header
    }

    /// Number of tensors across all shards.
    pub fn tensor_count(&self) -> usize {
        self.order.len()
    }

    /// Tensor `i` in file order (shard by shard), with the shard holding it.
    pub fn tensor_at(&self, i: usize) -> Option<(&GgufShard, &TensorInfo)> {
        let &(s, t) = self.order.get(i)?;
        let shard = &self.shards[s as usize];
        Some((shard, &shard.header.tensors[t as usize]))
    }

    /// Which shard holds tensor `i` (0 for an unsplit model).
    pub fn shard_of(&self, i: usize) -> Option<usize> {
        self.order.get(i).map(|&(s, _)| s as usize)
    }

    /// Every tensor in file order, with the shard holding it.
    pub fn tensors(&self) -> impl ExactSizeIterator<Item = (&GgufShard, &TensorInfo)> {
        self.order.iter().map(|&(s, t)| {
            let shard = &self.shards[s as usize];
            (shard, &shard.header.tensors[t as usize])
        })
    }

    /// Index of the tensor named `name`.
    pub fn position(&self, name: &str) -> Result<usize> {
        let hash = self.hasher.hash_one(name);
        let found = self.by_name.find(hash, |&i| self.name_at(i) == name);
        found
            .map(|&i| i as usize)
            .ok_or_else(|| Error::TensorNotFound {
                file: FileRef(Some(self.shards[0].file.path().to_path_buf())),
                name: name.to_owned(),
            })
    }

    /// The tensor named `name` and its shard.
    pub fn tensor(&self, name: &str) -> Result<(&GgufShard, &TensorInfo)> {
        let i = self.position(name)?;
        Ok(self.tensor_at(i).expect("index built from order"))
    }

    /// The raw bytes of a tensor's data. Fails for a type whose size is unknown.
    pub fn tensor_data(&self, name: &str) -> Result<&[u8]> {
        let (shard, info) = self.tensor(name)?;
        let Some(nbytes) = info.nbytes else {
            return Err(Error::UnsupportedType {
                file: FileRef(Some(shard.file.path().to_path_buf())),
                tensor: info.name.to_string(),
                ty: info.ty,
            });
        };
        // Extents were checked against the file size when the header was parsed; a mapped
        // file may have shrunk since.
        let what = || format!("data of tensor '{}'", info.name);
        shard.file.check_extent(FORMAT, what, info.offset, nbytes)?;
        let start = info.offset as usize;
        Ok(&shard.file.bytes()[start..start + nbytes as usize])
    }
}

impl GgufModel {
    /// Decode tensor `name` into `out` (one element per weight) with the fastest kernels
    /// on up to `threads` threads. Big-endian data is converted on a copy first.
    pub fn dequantize_tensor(
        &self,
        name: &str,
        out: Output<'_>,
        threads: Option<usize>,
    ) -> Result<()> {
        let (shard, info) = self.tensor(name)?;
        let path = shard.file.path();
        let fail = |e| Error::from_dequant(e, Some(name)).in_file(path);
        if !quant::can_dequantize(info.ty) {
            return Err(fail(quant::DequantError::UnsupportedType(info.ty)));
        }
        let data = self.tensor_data(name)?;
        if shard.header.endian == Endian::Big {
            let mut owned = data.to_vec();
            endian::to_little_endian(info.ty, &mut owned).map_err(fail)?;
            return quant::dequantize(quant::isa(), info.ty, &owned, out, threads).map_err(fail);
        }
        quant::dequantize(quant::isa(), info.ty, data, out, threads).map_err(fail)
    }
}

fn split_error(path: &Path, message: String) -> Error {
    Error::Split {
        file: FileRef(Some(path.to_path_buf())),
        message,
    }
}

fn duplicate_tensor(shards: &[GgufShard], first: usize, second: usize, info: &TensorInfo) -> Error {
    let path = shards[second].file.path();
    if first == second {
        Error::Malformed {
            file: FileRef(Some(path.to_path_buf())),
            format: FORMAT,
            offset: info.info_offset,
            message: format!("duplicate tensor name '{}'", info.name),
        }
    } else {
        split_error(
            path,
            format!(
                "tensor '{}' is in both {} and {}",
                info.name,
                shards[first].file.path().display(),
                path.display()
            ),
        )
    }
}

/// `(prefix, index, count)` from `PREFIX-00002-of-00003.gguf` (index from 1).
fn parse_split_name(path: &Path) -> Option<(String, u64, u64)> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".gguf")?;
    let (rest, count) = stem.rsplit_once("-of-")?;
    let (prefix, index) = rest.rsplit_once('-')?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(index) || !digits(count) {
        return None;
    }
    Some((prefix.to_owned(), index.parse().ok()?, count.parse().ok()?))
}

/// The path of shard `index` (from 1) of `count`, beside `path`.
pub(crate) fn shard_path(path: &Path, prefix: &str, index: u64, count: u64) -> PathBuf {
    path.with_file_name(format!("{prefix}-{index:05}-of-{count:05}.gguf"))
}

fn open_siblings(
    path: &Path,
    opened: GgufShard,
    count: u64,
    options: &OpenOptions,
) -> Result<Vec<GgufShard>> {
    let Some((prefix, index, name_count)) = parse_split_name(path) else {
        return Err(split_error(
            path,
            format!(
                "this is one shard of a model split in {count} files, but its name does not \
                 follow the NAME-00001-of-{count:05}.gguf pattern, so the others cannot be found"
            ),
        ));
    };
    if name_count != count {
        return Err(split_error(
            path,
            format!("the file name says {name_count} shards but split.count says {count}"),
        ));
    }
    let mut opened = Some((index, opened));
    let mut shards = Vec::with_capacity(count as usize);
    for i in 1..=count {
        let shard = match opened.take_if(|(at, _)| *at == i) {
            Some((_, shard)) => shard,
            None => open_shard(&shard_path(path, &prefix, i, count), options)?,
        };
        check_shard(&shard, i, count)?;
        shards.push(shard);
    }
    Ok(shards)
}

fn open_shard(path: &Path, options: &OpenOptions) -> Result<GgufShard> {
    match GgufShard::open_with(path, options) {
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Err(
            split_error(path, "shard of a split model is missing".to_owned()),
        ),
        other => other,
    }
}

fn check_shard(shard: &GgufShard, index: u64, count: u64) -> Result<()> {
    let path = shard.file.path();
    let its_count = shard.split_key(SPLIT_COUNT);
    let its_no = shard.split_key(SPLIT_NO);
    if its_count != Some(count) || its_no != Some(index - 1) {
        return Err(split_error(
            path,
            format!(
                "shard does not belong: expected split.no={} and split.count={count}, found \
                 split.no={} and split.count={}",
                index - 1,
                its_no.map_or("none".into(), |v| v.to_string()),
                its_count.map_or("none".into(), |v| v.to_string()),
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_names_parse() {
        let p = Path::new("/m/llama-7b-00002-of-00003.gguf");
        assert_eq!(parse_split_name(p), Some(("llama-7b".into(), 2, 3)));
        assert_eq!(parse_split_name(Path::new("model.gguf")), None);
        assert_eq!(parse_split_name(Path::new("a-2-of-3.gguf")), None);
        assert_eq!(
            shard_path(p, "llama-7b", 1, 3),
            PathBuf::from("/m/llama-7b-00001-of-00003.gguf")
        );
    }
}
