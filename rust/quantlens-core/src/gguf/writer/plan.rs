//! Which shard each tensor goes to when output is split, following llama.cpp's
//! `gguf-split`: shards fill in tensor order; a new shard starts when the next tensor
//! would take the current one's data past the size cap (or its tensor count past the
//! count cap). A shard always takes at least one tensor, so a tensor bigger than the cap
//! gets a shard of its own.

use std::path::{Path, PathBuf};

/// Limits on each shard; `None` means unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SplitLimits {
    /// Most bytes of tensor data (each tensor counted with its alignment padding).
    pub max_bytes: Option<u64>,
    /// Most tensors.
    pub max_tensors: Option<u64>,
}

impl SplitLimits {
    /// Whether any limit is set.
    pub fn is_set(&self) -> bool {
        self.max_bytes.is_some() || self.max_tensors.is_some()
    }
}

/// The first tensor of each shard, given every tensor's padded data size.
pub(crate) fn shard_starts(padded_sizes: &[u64], limits: SplitLimits) -> Vec<usize> {
    let mut starts = vec![0];
    let (mut bytes, mut count) = (0u64, 0u64);
    for (i, &size) in padded_sizes.iter().enumerate() {
        let over_bytes = limits
            .max_bytes
            .is_some_and(|max| bytes.saturating_add(size) > max);
        let over_count = limits.max_tensors.is_some_and(|max| count >= max);
        if count > 0 && (over_bytes || over_count) {
            starts.push(i);
            bytes = 0;
            count = 0;
        }
        bytes = bytes.saturating_add(size);
        count += 1;
    }
    starts
}

/// Paths of the `count` shards for destination `dest`: `dest` itself for one shard,
/// else `STEM-00001-of-0000N.gguf` beside it (`STEM` is `dest`'s name without `.gguf`).
pub(crate) fn shard_paths(dest: &Path, count: usize) -> Vec<PathBuf> {
    if count <= 1 {
        return vec![dest.to_path_buf()];
    }
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".gguf").unwrap_or(&name);
    (1..=count)
        .map(|i| dest.with_file_name(format!("{stem}-{i:05}-of-{count:05}.gguf")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_fill_in_order() {
        let limits = SplitLimits {
            max_bytes: Some(100),
            max_tensors: None,
        };
        assert_eq!(
            shard_starts(&[40, 40, 40, 200, 10], limits),
            vec![0, 2, 3, 4]
        );
        assert_eq!(shard_starts(&[], limits), vec![0]);
        assert_eq!(shard_starts(&[500], limits), vec![0]);
        let by_count = SplitLimits {
            max_bytes: None,
            max_tensors: Some(2),
        };
        assert_eq!(shard_starts(&[1, 1, 1, 1, 1], by_count), vec![0, 2, 4]);
    }

    #[test]
    fn shard_names_follow_gguf_split() {
        let dest = Path::new("/out/model-q4.gguf");
        assert_eq!(
            shard_paths(dest, 1),
            vec![PathBuf::from("/out/model-q4.gguf")]
        );
        assert_eq!(
            shard_paths(dest, 2),
            vec![
                PathBuf::from("/out/model-q4-00001-of-00002.gguf"),
                PathBuf::from("/out/model-q4-00002-of-00002.gguf"),
            ]
        );
    }
}
