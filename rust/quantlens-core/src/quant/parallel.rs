//! Multithreaded dequantization: whole blocks split across a rayon pool.
//!
//! Small tensors stay on the calling thread (a task per thread costs more than decoding a
//! few hundred KiB). Output memory is written, and so first faulted in, by the thread that
//! decodes into it: on these machines faulting fresh pages costs more than the decoding.
//!
//! `QUANTLENS_NUM_THREADS` sets the default thread count. Pools are rebuilt after a
//! `fork()`: a child process inherits no threads, and waiting on the parent's pool would
//! hang.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use rayon::prelude::*;

use super::dispatch::Isa;
use super::output::{f32_to_bf16_slice, f32_to_f16_slice, Output};
use super::{check_lengths, decode_blocks, DequantError};
use crate::dtype::GgmlType;
use crate::mmap::advise_huge_pages;

/// Fewest weights worth a task of their own (8 MiB of f32 output): waking a pool thread
/// costs about as much as decoding a cache-sized tensor on this one.
pub const MIN_CHUNK_WEIGHTS: usize = 1 << 21;
/// Smallest output advised onto huge pages. Below this, allocators serve memory from
/// their heaps, often already faulted in and reused, where the advice only adds work.
const HUGE_PAGE_MIN_BYTES: usize = 32 << 20;
/// f32 weights staged per step for a 16-bit output: 16 KiB, comfortably in L1, and a
/// multiple of every block size.
const STAGE_WEIGHTS: usize = 4096;

/// The default thread count: `QUANTLENS_NUM_THREADS`, else the CPUs this process may use.
pub fn default_threads() -> usize {
    static DEFAULT: OnceLock<usize> = OnceLock::new();
    *DEFAULT.get_or_init(|| {
        std::env::var("QUANTLENS_NUM_THREADS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .filter(|&n: &usize| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
    })
}

/// Pools by thread count, tagged with the process that built them.
pub(crate) fn pool(threads: usize) -> Option<Arc<rayon::ThreadPool>> {
    type Pools = (u32, HashMap<usize, Arc<rayon::ThreadPool>>);
    static POOLS: Mutex<Option<Pools>> = Mutex::new(None);
    let pid = std::process::id();
    let mut guard = POOLS.lock().unwrap_or_else(PoisonError::into_inner);
    let pools = guard.get_or_insert_with(|| (pid, HashMap::new()));
    if pools.0 != pid {
        // Forked: the inherited pools have no threads behind them. Forget them (dropping
        // would wait on threads that do not exist in this process).
        std::mem::forget(std::mem::take(&mut pools.1));
        pools.0 = pid;
    }
    if let Some(pool) = pools.1.get(&threads) {
        return Some(Arc::clone(pool));
    }
    let built = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("quantlens-{i}"))
        .build()
        .ok()?;
    let built = Arc::new(built);
    pools.1.insert(threads, Arc::clone(&built));
    Some(built)
}

/// Decode `src` (whole blocks of `ty`) into `out` with the kernels of `isa`, on up to
/// `threads` threads (`None`: [`default_threads`]). Lengths are checked first; on error
/// nothing is written.
pub fn dequantize(
    isa: Isa,
    ty: GgmlType,
    src: &[u8],
    mut out: Output<'_>,
    threads: Option<usize>,
) -> Result<(), DequantError> {
    check_lengths(ty, src.len(), out.len())?;
    if out.len() * out.element_size() >= HUGE_PAGE_MIN_BYTES {
        match &mut out {
            Output::F32(d) => advise_huge_pages(d),
            Output::F16(d) | Output::BF16(d) => advise_huge_pages(d),
        }
    }
    let Some(info) = ty.info() else {
        return Err(DequantError::UnsupportedType(ty));
    };
    let (block_size, type_size) = (info.block_size as usize, info.type_size as usize);
    let weights = out.len();
    let threads = threads.unwrap_or_else(default_threads).max(1);
    let tasks = (weights / MIN_CHUNK_WEIGHTS).clamp(1, threads * 4);
    // Whole blocks per task, and a whole number of staging steps for 16-bit outputs.
    let unit = block_size.max(STAGE_WEIGHTS);
    let chunk = weights.div_ceil(tasks).div_ceil(unit) * unit;
    let run = |s: &[u8], o: Output<'_>| decode_to(isa, ty, s, o);
    if tasks == 1 || threads == 1 {
        run(src, out);
        return Ok(());
    }
    let Some(pool) = pool(threads) else {
        run(src, out);
        return Ok(());
    };
    let src_chunk = chunk / block_size * type_size;
    let src_chunks = src.par_chunks(src_chunk);
    pool.install(|| match &mut out {
        Output::F32(d) => src_chunks
            .zip(d.par_chunks_mut(chunk))
            .for_each(|(s, d)| run(s, Output::F32(d))),
        Output::F16(d) => src_chunks
            .zip(d.par_chunks_mut(chunk))
            .for_each(|(s, d)| run(s, Output::F16(d))),
        Output::BF16(d) => src_chunks
            .zip(d.par_chunks_mut(chunk))
            .for_each(|(s, d)| run(s, Output::BF16(d))),
    });
    Ok(())
}

/// Decode one chunk on this thread; 16-bit outputs go through an L1-sized staging buffer.
fn decode_to(isa: Isa, ty: GgmlType, src: &[u8], out: Output<'_>) {
    let convert: fn(&[f32], &mut [u16]) = match out {
        Output::F32(dst) => return decode_blocks(isa, ty, src, dst),
        Output::F16(_) => f32_to_f16_slice,
        Output::BF16(_) => f32_to_bf16_slice,
    };
    let (Output::F16(dst) | Output::BF16(dst)) = out else {
        unreachable!("f32 returned above")
    };
    let Some(info) = ty.info() else { return };
    let stage_src = STAGE_WEIGHTS / info.block_size as usize * info.type_size as usize;
    let mut stage = [0f32; STAGE_WEIGHTS];
    for (s, d) in src.chunks(stage_src).zip(dst.chunks_mut(STAGE_WEIGHTS)) {
        let staged = &mut stage[..d.len()];
        decode_blocks(isa, ty, s, staged);
        convert(staged, d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::output::f32_to_bf16;

    fn random_blocks(ty: GgmlType, blocks: usize) -> Vec<u8> {
        let size = ty.info().unwrap().type_size as usize;
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut bytes: Vec<u8> = (0..blocks * size)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        // A moderate f16 scale at the start of every block keeps values finite.
        for block in bytes.chunks_exact_mut(size) {
            block[..2].copy_from_slice(&0x2e66u16.to_le_bytes());
        }
        bytes
    }

    #[test]
    fn threads_and_output_types_agree_with_one_thread_f32() {
        // Enough weights for several tasks, and a length that is not a multiple of a task.
        for ty in [GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::IQ2_XS] {
            let block = ty.info().unwrap().block_size as usize;
            let blocks = (3 * MIN_CHUNK_WEIGHTS + 5 * 256) / block;
            let src = random_blocks(ty, blocks);
            let n = blocks * block;
            let mut reference = vec![0f32; n];
            dequantize(Isa::Scalar, ty, &src, Output::F32(&mut reference), Some(1)).unwrap();
            let mut f32s = vec![0f32; n];
            dequantize(
                super::super::isa(),
                ty,
                &src,
                Output::F32(&mut f32s),
                Some(3),
            )
            .unwrap();
            assert!(f32s
                .iter()
                .zip(&reference)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
            let mut bf16s = vec![0u16; n];
            dequantize(Isa::Scalar, ty, &src, Output::BF16(&mut bf16s), Some(2)).unwrap();
            assert!(bf16s
                .iter()
                .zip(&reference)
                .all(|(&h, &f)| h == f32_to_bf16(f)));
            let mut f16s = vec![0u16; n];
            dequantize(super::super::isa(), ty, &src, Output::F16(&mut f16s), None).unwrap();
            assert!(f16s
                .iter()
                .zip(&reference)
                .all(|(&h, &f)| h == half::f16::from_f32(f).to_bits()));
        }
    }

    #[test]
    fn wrong_lengths_write_nothing() {
        let src = random_blocks(GgmlType::Q8_0, 4);
        let mut out = vec![7u16; 127];
        let err = dequantize(
            Isa::Scalar,
            GgmlType::Q8_0,
            &src,
            Output::F16(&mut out),
            None,
        );
        assert!(err.is_err());
        assert!(out.iter().all(|&v| v == 7));
    }
}
