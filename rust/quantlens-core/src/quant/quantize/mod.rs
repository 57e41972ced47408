//! Quantization: rows of f32, f16 or bf16 weights into ggml blocks, byte-identical with
//! ggml's `ggml_quantize_chunk`.
//!
//! [`quantize`] checks every length first (nothing is written on error), then runs the
//! type's row quantizer on up to `threads` threads. 16-bit inputs are widened to f32 in
//! small staging buffers on the thread that quantizes them. Without an importance matrix
//! every type quantizes its blocks independently, so the tensor is split anywhere between
//! blocks; with one, whole rows are handed out, since ggml's weighting may look at a row.
//! [`quantize_uninit`] fills a new, uninitialized output, so that its pages are first
//! touched by the threads that quantize into them rather than zeroed up front.
//!
//! Quantizers never panic and never abort, whatever the floats hold. Where ggml's result
//! for NaN or infinite weights is defined (it always is for the types here), the bytes are
//! the ones ggml writes on x86-64; see [`rounding`] for the conversions involved.
//!
//! ```
//! use quantlens_core::quant::quantize::{quantize, Input};
//! use quantlens_core::GgmlType;
//!
//! let weights: Vec<f32> = (0..64).map(|i| i as f32 - 32.0).collect();
//! let mut out = vec![0u8; 2 * 34];
//! quantize(GgmlType::Q8_0, Input::F32(&weights), 64, &mut out, None, Some(1)).unwrap();
//! // Block 0: f16 d = 32/127, then round(x / d).
//! assert_eq!(out[2] as i8, -127);
//! ```

pub mod iq4;
pub mod kquants;
mod lanes;
pub mod legacy;
pub mod legacy_imatrix;
mod rounding;
pub mod search;

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::parallel::{default_threads, pool};
use crate::dtype::GgmlType;

/// Weights whose quantization is worth a task of its own: about a tenth of a millisecond
/// for the slowest types, an order above the cost of waking a pool thread.
const MIN_TASK_WEIGHTS: usize = 1 << 16;
/// f32 weights staged per step for a 16-bit input: 16 KiB, in L1, and a multiple of every
/// block size.
const STAGE_WEIGHTS: usize = 4096;

/// The weights to quantize, in row-major order.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    /// IEEE binary32.
    F32(&'a [f32]),
    /// IEEE binary16, as raw bits.
    F16(&'a [u16]),
    /// bfloat16, as raw bits.
    BF16(&'a [u16]),
}

impl Input<'_> {
    /// Number of weights.
    pub fn len(&self) -> usize {
        match self {
            Input::F32(s) => s.len(),
            Input::F16(s) | Input::BF16(s) => s.len(),
        }
    }

    /// Whether there are no weights.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Weights `range` of the input.
    fn slice(&self, range: std::ops::Range<usize>) -> Self {
        match *self {
            Input::F32(s) => Input::F32(&s[range]),
            Input::F16(s) => Input::F16(&s[range]),
            Input::BF16(s) => Input::BF16(&s[range]),
        }
    }

    /// Widen `self` (at most `stage.len()` weights) into `stage`, returning the f32 slice.
    fn widen<'s>(&'s self, stage: &'s mut [f32]) -> &'s [f32] {
        use half::slice::HalfFloatSliceExt;
        match *self {
            Input::F32(s) => s,
            Input::F16(s) => {
                let out = &mut stage[..s.len()];
                half::slice::HalfBitsSliceExt::reinterpret_cast::<half::f16>(s)
                    .convert_to_f32_slice(out);
                out
            }
            Input::BF16(s) => {
                let out = &mut stage[..s.len()];
                for (o, &b) in out.iter_mut().zip(s) {
                    *o = f32::from_bits(u32::from(b) << 16);
                }
                out
            }
        }
    }
}

/// Why a quantization request was refused; nothing is written to the output in that case.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantizeError {
    /// quantlens has no quantizer for this type.
    #[error("quantlens cannot quantize to {0}")]
    UnsupportedType(GgmlType),
    /// The row length is zero or not a whole number of blocks.
    #[error(
        "{ty}: a row of {n_per_row} weights is not a whole number of {block_size}-weight blocks"
    )]
    PartialBlock {
        /// The type requested.
        ty: GgmlType,
        /// Weights per row.
        n_per_row: usize,
        /// Weights per block of `ty`.
        block_size: usize,
    },
    /// The input does not hold a whole number of rows.
    #[error("{ty}: {weights} weights are not a whole number of rows of {n_per_row}")]
    PartialRow {
        /// The type requested.
        ty: GgmlType,
        /// Weights in the input.
        weights: usize,
        /// Weights per row.
        n_per_row: usize,
    },
    /// The output does not have exactly the quantized size of the input.
    #[error("{ty}: {rows} rows of {row_bytes} bytes do not fit an output of {dst_len} bytes")]
    OutputLength {
        /// The type requested.
        ty: GgmlType,
        /// Rows in the input.
        rows: usize,
        /// Bytes per quantized row.
        row_bytes: usize,
        /// Length of the output in bytes.
        dst_len: usize,
    },
    /// The importance matrix does not have one weight per column.
    #[error("{ty}: the importance matrix has {len} weights but rows have {n_per_row}")]
    ImatrixLength {
        /// The type requested.
        ty: GgmlType,
        /// Weights in the importance matrix.
        len: usize,
        /// Weights per row.
        n_per_row: usize,
    },
}

/// A row quantizer: `src` holds whole blocks (for most types, any whole blocks; with an
/// importance matrix, exactly one row), `dst` exactly their quantized bytes, and the
/// importance matrix, if any, one weight per element of `src`.
pub type RowQuantizer = fn(&[f32], &mut [u8], Option<&[f32]>);

/// `Q4_0`: ggml's reference path, or its importance-weighted one.
fn q4_0(src: &[f32], dst: &mut [u8], imatrix: Option<&[f32]>) {
    match imatrix {
        Some(w) => legacy_imatrix::quantize_row_q4_0_imatrix(src, dst, w),
        None => legacy::quantize_row_q4_0_ref(src, dst),
    }
}

/// `Q4_1`: ggml's reference path, or its importance-weighted one.
fn q4_1(src: &[f32], dst: &mut [u8], imatrix: Option<&[f32]>) {
    match imatrix {
        Some(w) => legacy_imatrix::quantize_row_q4_1_imatrix(src, dst, w),
        None => legacy::quantize_row_q4_1_ref(src, dst),
    }
}

/// `Q5_0`: ggml's reference path, or its importance-weighted one.
fn q5_0(src: &[f32], dst: &mut [u8], imatrix: Option<&[f32]>) {
    match imatrix {
        Some(w) => legacy_imatrix::quantize_row_q5_0_imatrix(src, dst, w),
        None => legacy::quantize_row_q5_0_ref(src, dst),
    }
}

/// `Q5_1`: ggml's reference path, or its importance-weighted one.
fn q5_1(src: &[f32], dst: &mut [u8], imatrix: Option<&[f32]>) {
    match imatrix {
        Some(w) => legacy_imatrix::quantize_row_q5_1_imatrix(src, dst, w),
        None => legacy::quantize_row_q5_1_ref(src, dst),
    }
}

/// `Q8_0`: ggml has a single path and ignores an importance matrix.
fn q8_0(src: &[f32], dst: &mut [u8], _imatrix: Option<&[f32]>) {
    legacy::quantize_row_q8_0_ref(src, dst);
}

/// The quantizer of `ty` and whether an importance matrix changes its result.
fn quantizer(ty: GgmlType) -> Option<(RowQuantizer, bool)> {
    Some(match ty {
        GgmlType::Q4_0 => (q4_0 as RowQuantizer, true),
        GgmlType::Q4_1 => (q4_1, true),
        GgmlType::Q5_0 => (q5_0, true),
        GgmlType::Q5_1 => (q5_1, true),
        GgmlType::Q8_0 => (q8_0, false),
        GgmlType::Q2_K => (kquants::quantize_row_q2_k, true),
        GgmlType::Q3_K => (kquants::quantize_row_q3_k, true),
        GgmlType::Q4_K => (kquants::quantize_row_q4_k, true),
        GgmlType::Q5_K => (kquants::quantize_row_q5_k, true),
        GgmlType::Q6_K => (kquants::quantize_row_q6_k, true),
        GgmlType::IQ4_NL => (iq4::quantize_row_iq4_nl, true),
        GgmlType::IQ4_XS => (iq4::quantize_row_iq4_xs, true),
        _ => return None,
    })
}

/// Whether [`quantize`] can produce `ty`.
pub fn can_quantize(ty: GgmlType) -> bool {
    quantizer(ty).is_some()
}

/// Whether an importance matrix changes how [`quantize`] quantizes `ty`. Every type takes
/// one; `Q8_0` ignores it, as ggml does.
pub fn accepts_imatrix(ty: GgmlType) -> bool {
    quantizer(ty).is_some_and(|(_, imatrix)| imatrix)
}

/// Bytes of one quantized row of `n_per_row` weights of `ty`.
pub fn row_size(ty: GgmlType, n_per_row: usize) -> Result<usize, QuantizeError> {
    let (Some(info), true) = (ty.info(), can_quantize(ty)) else {
        return Err(QuantizeError::UnsupportedType(ty));
    };
    let block_size = info.block_size as usize;
    if n_per_row == 0 || !n_per_row.is_multiple_of(block_size) {
        return Err(QuantizeError::PartialBlock {
            ty,
            n_per_row,
            block_size,
        });
    }
    Ok(n_per_row / block_size * info.type_size as usize)
}

/// Quantize `src`, rows of `n_per_row` weights, to `ty` into `dst`, which must hold exactly
/// the quantized rows, on up to `threads` threads (`None`: [`default_threads`]).
/// `imatrix`, if given, holds one importance weight per column (ignored by `Q8_0`).
pub fn quantize(
    ty: GgmlType,
    src: Input<'_>,
    n_per_row: usize,
    dst: &mut [u8],
    imatrix: Option<&[f32]>,
    threads: Option<usize>,
) -> Result<(), QuantizeError> {
    let plan = Plan::new(ty, src, n_per_row, dst.len(), imatrix, threads)?;
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and `run` writes only initialized
    // bytes through the view, so `dst` stays initialized.
    let dst = unsafe { &mut *(std::ptr::from_mut(dst) as *mut [MaybeUninit<u8>]) };
    plan.run(src, dst, false);
    Ok(())
}

/// [`quantize`] into memory that need not be initialized, such as a new array straight
/// from the allocator, and so initialize it: every thread zeroes each piece of `dst` it
/// quantizes (an L1-sized step) just before writing it. Fresh pages are then faulted in
/// by the threads that fill them, in parallel, rather than zeroed beforehand on the
/// calling thread. Returns `dst`, now every byte written; on error nothing is written.
pub fn quantize_uninit<'d>(
    ty: GgmlType,
    src: Input<'_>,
    n_per_row: usize,
    dst: &'d mut [MaybeUninit<u8>],
    imatrix: Option<&[f32]>,
    threads: Option<usize>,
) -> Result<&'d mut [u8], QuantizeError> {
    let plan = Plan::new(ty, src, n_per_row, dst.len(), imatrix, threads)?;
    plan.run(src, dst, true);
    // SAFETY: `run` wrote every byte of `dst` (the tasks cover it, each step zeroed before
    // the quantizer fills it), and `MaybeUninit<u8>` has the layout of `u8`.
    Ok(unsafe { &mut *(std::ptr::from_mut(dst) as *mut [u8]) })
}

/// A checked request: the quantizer, and how the weights are split into tasks.
struct Plan<'a> {
    run: RowQuantizer,
    geometry: Geometry,
    imatrix: Option<&'a [f32]>,
    weights: usize,
    threads: usize,
    tasks: usize,
    /// Weights per quantizer call for staged input: one row with an importance matrix.
    step: usize,
}

impl<'a> Plan<'a> {
    /// Check every length of a request for `dst_len` output bytes.
    fn new(
        ty: GgmlType,
        src: Input<'_>,
        n_per_row: usize,
        dst_len: usize,
        imatrix: Option<&'a [f32]>,
        threads: Option<usize>,
    ) -> Result<Self, QuantizeError> {
        let row_bytes = row_size(ty, n_per_row)?;
        let Some((run, _)) = quantizer(ty) else {
            return Err(QuantizeError::UnsupportedType(ty));
        };
        if let Some(w) = imatrix {
            if w.len() != n_per_row {
                return Err(QuantizeError::ImatrixLength {
                    ty,
                    len: w.len(),
                    n_per_row,
                });
            }
        }
        let weights = src.len();
        if !weights.is_multiple_of(n_per_row) {
            return Err(QuantizeError::PartialRow {
                ty,
                weights,
                n_per_row,
            });
        }
        let rows = weights / n_per_row;
        if rows.checked_mul(row_bytes) != Some(dst_len) {
            return Err(QuantizeError::OutputLength {
                ty,
                rows,
                row_bytes,
                dst_len,
            });
        }
        let threads = threads.unwrap_or_else(default_threads).max(1);
        Ok(Plan {
            run,
            geometry: Geometry::of(ty),
            imatrix,
            weights,
            threads,
            tasks: (weights / MIN_TASK_WEIGHTS).clamp(1, threads * 4),
            step: if imatrix.is_some() {
                n_per_row
            } else {
                STAGE_WEIGHTS
            },
        })
    }

    /// Quantize `src` into `dst` (its checked length), zeroing each step first if `fresh`.
    fn run(&self, src: Input<'_>, dst: &mut [MaybeUninit<u8>], fresh: bool) {
        if self.weights == 0 {
            return;
        }
        // Whole steps per task, so that tasks split rows only where blocks are independent.
        let task_weights = self.weights.div_ceil(self.tasks).div_ceil(self.step) * self.step;
        let task_bytes = self.geometry.bytes(task_weights);
        let task = |(i, out): (usize, &mut [MaybeUninit<u8>])| {
            let start = i * task_weights;
            let end = (start + task_weights).min(self.weights);
            let span = Span {
                run: self.run,
                geometry: self.geometry,
                step: self.step,
                imatrix: self.imatrix,
                fresh,
            };
            span.quantize(src.slice(start..end), out);
        };
        let tasks = dst.par_chunks_mut(task_bytes).enumerate();
        match (self.tasks > 1 && self.threads > 1)
            .then(|| pool(self.threads))
            .flatten()
        {
            Some(pool) => pool.install(|| tasks.for_each(task)),
            None => dst.chunks_mut(task_bytes).enumerate().for_each(task),
        }
    }
}

/// Weights and bytes per block of a type.
#[derive(Clone, Copy)]
struct Geometry {
    block_size: usize,
    type_size: usize,
}

impl Geometry {
    fn of(ty: GgmlType) -> Self {
        let (block_size, type_size) = ty
            .info()
            .map_or((1, 0), |i| (i.block_size as usize, i.type_size as usize));
        Geometry {
            block_size,
            type_size,
        }
    }

    /// Bytes of `weights` weights (whole blocks).
    fn bytes(self, weights: usize) -> usize {
        weights / self.block_size * self.type_size
    }
}

/// One task: its quantizer and how it walks its weights.
struct Span<'a> {
    run: RowQuantizer,
    geometry: Geometry,
    /// Weights per quantizer call for staged input: one row with an importance matrix.
    step: usize,
    imatrix: Option<&'a [f32]>,
    /// Whether the output may be uninitialized, and so is zeroed a step at a time.
    fresh: bool,
}

impl Span<'_> {
    /// Quantize `src` into `dst` on this thread.
    fn quantize(&self, src: Input<'_>, dst: &mut [MaybeUninit<u8>]) {
        if let (Input::F32(x), None, false) = (src, self.imatrix, self.fresh) {
            // f32 without an importance matrix: no staging, and blocks are independent.
            (self.run)(x, initialized(dst, false), None);
            return;
        }
        let mut small = [0.0f32; STAGE_WEIGHTS];
        let mut large = Vec::new();
        let stage: &mut [f32] = if matches!(src, Input::F32(_)) {
            &mut []
        } else if self.step <= STAGE_WEIGHTS {
            &mut small
        } else {
            large.resize(self.step, 0.0);
            &mut large
        };
        let steps = (0..src.len()).step_by(self.step);
        for (start, out) in steps.zip(dst.chunks_mut(self.geometry.bytes(self.step))) {
            let part = src.slice(start..(start + self.step).min(src.len()));
            (self.run)(
                part.widen(stage),
                initialized(out, self.fresh),
                self.imatrix,
            );
        }
    }
}

/// `out` as bytes, zeroed first if it may be uninitialized (`fresh`).
fn initialized(out: &mut [MaybeUninit<u8>], fresh: bool) -> &mut [u8] {
    if fresh {
        // SAFETY: writes `out.len()` bytes at the start of `out`, which it owns mutably.
        // (A memset: `fill` on `MaybeUninit` is compiled byte by byte.)
        unsafe { std::ptr::write_bytes(out.as_mut_ptr(), 0, out.len()) };
    }
    // SAFETY: every byte of `out` is initialized: just zeroed if `fresh`, otherwise by the
    // caller's guarantee ([`quantize`] takes `&mut [u8]`); `MaybeUninit<u8>` has the
    // layout of `u8`.
    unsafe { &mut *(std::ptr::from_mut(out) as *mut [u8]) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::KNOWN_TYPES;
    use proptest::prelude::*;

    fn supported() -> Vec<(GgmlType, usize, usize)> {
        KNOWN_TYPES
            .iter()
            .map(|t| (GgmlType(t.id), t.block_size as usize, t.type_size as usize))
            .filter(|&(ty, _, _)| can_quantize(ty))
            .collect()
    }

    /// Deterministic pseudo-random weights spanning many magnitudes.
    fn weights(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed | 1;
        (0..n)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let unit = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                unit * [1.0, 1e-3, 40.0, 1e-20][i / 512 % 4]
            })
            .collect()
    }

    fn run(
        ty: GgmlType,
        src: Input<'_>,
        n_per_row: usize,
        imatrix: Option<&[f32]>,
        threads: usize,
    ) -> Vec<u8> {
        let rows = src.len() / n_per_row;
        let mut out = vec![0xa5; rows * row_size(ty, n_per_row).unwrap()];
        quantize(ty, src, n_per_row, &mut out, imatrix, Some(threads)).unwrap();
        out
    }

    /// [`run`] through [`quantize_uninit`], into memory never written before.
    fn run_uninit(
        ty: GgmlType,
        src: Input<'_>,
        n_per_row: usize,
        imatrix: Option<&[f32]>,
        threads: usize,
    ) -> Vec<u8> {
        let len = src.len() / n_per_row * row_size(ty, n_per_row).unwrap();
        let mut buffer = Vec::<u8>::with_capacity(len);
        let dst = &mut buffer.spare_capacity_mut()[..len];
        quantize_uninit(ty, src, n_per_row, dst, imatrix, Some(threads))
            .unwrap()
            .to_vec()
    }

    #[test]
    fn every_type_of_issue_8_is_supported() {
        let names: Vec<_> = supported()
            .iter()
            .map(|&(ty, _, _)| ty.to_string())
            .collect();
        let issue_types = [
            "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
            "IQ4_NL", "IQ4_XS",
        ];
        for name in issue_types {
            assert!(names.iter().any(|n| n == name), "{name} missing");
        }
        assert!(!can_quantize(GgmlType::Q8_1));
        assert!(!can_quantize(GgmlType(9999)));
        assert!(accepts_imatrix(GgmlType::IQ4_XS));
    }

    #[test]
    fn bad_requests_are_refused_and_write_nothing() {
        let x = weights(512, 3);
        let mut out = vec![7u8; 2 * 136];
        let ty = GgmlType::IQ4_XS;
        let check = |src: Input<'_>, n: usize, imatrix: Option<&[f32]>, len: usize| {
            let mut dst = vec![7u8; len];
            let err = quantize(ty, src, n, &mut dst, imatrix, None).unwrap_err();
            assert!(dst.iter().all(|&b| b == 7), "{err}");
            err
        };
        assert!(matches!(
            check(Input::F32(&x), 255, None, 272),
            QuantizeError::PartialBlock { .. }
        ));
        assert!(matches!(
            check(Input::F32(&x), 0, None, 272),
            QuantizeError::PartialBlock { .. }
        ));
        assert!(matches!(
            check(Input::F32(&x[..500]), 256, None, 272),
            QuantizeError::PartialRow { .. }
        ));
        assert!(matches!(
            check(Input::F32(&x), 256, None, 271),
            QuantizeError::OutputLength { .. }
        ));
        assert!(matches!(
            check(Input::F32(&x), 256, Some(&x[..255]), 272),
            QuantizeError::ImatrixLength { .. }
        ));
        let err = quantize(GgmlType::IQ2_XXS, Input::F32(&x), 256, &mut out, None, None);
        assert_eq!(err, Err(QuantizeError::UnsupportedType(GgmlType::IQ2_XXS)));
        assert!(out.iter().all(|&b| b == 7));
    }

    #[test]
    fn q8_0_ignores_an_importance_matrix() {
        let x = weights(512, 4);
        let w = weights(256, 6);
        let plain = run(GgmlType::Q8_0, Input::F32(&x), 256, None, 1);
        let weighted = run(GgmlType::Q8_0, Input::F32(&x), 256, Some(&w), 2);
        assert_eq!(plain, weighted);
        assert!(!accepts_imatrix(GgmlType::Q8_0));
    }

    #[test]
    fn empty_input_is_fine() {
        for (ty, block, _) in supported() {
            assert_eq!(
                quantize(ty, Input::F32(&[]), block, &mut [], None, None),
                Ok(())
            );
        }
    }

    #[test]
    fn threads_and_input_types_agree_with_one_thread_f32() {
        // Enough weights for several tasks, a row length that is not a multiple of the
        // staging step, and an odd number of rows.
        let n_per_row = 2560;
        let rows = 3 * MIN_TASK_WEIGHTS / n_per_row + 1;
        let halves: Vec<u16> = weights(rows * n_per_row, 9)
            .iter()
            .map(|&v| half::f16::from_f32(v).to_bits())
            .collect();
        let widened: Vec<f32> = halves
            .iter()
            .map(|&h| half::f16::from_bits(h).to_f32())
            .collect();
        let brains: Vec<u16> = widened.iter().map(|v| (v.to_bits() >> 16) as u16).collect();
        let brain_f32: Vec<f32> = brains
            .iter()
            .map(|&b| f32::from_bits(u32::from(b) << 16))
            .collect();
        let imatrix = weights(n_per_row, 5)
            .iter()
            .map(|v| v.abs())
            .collect::<Vec<_>>();
        for (ty, _, _) in supported() {
            let w = accepts_imatrix(ty).then_some(imatrix.as_slice());
            for imatrix in [None, w] {
                let reference = run(ty, Input::F32(&widened), n_per_row, imatrix, 1);
                let threaded = run(ty, Input::F32(&widened), n_per_row, imatrix, 3);
                assert!(reference == threaded, "{ty}: threads differ");
                let from_f16 = run(ty, Input::F16(&halves), n_per_row, imatrix, 2);
                assert!(reference == from_f16, "{ty}: f16 input differs");
                let reference = run(ty, Input::F32(&brain_f32), n_per_row, imatrix, 1);
                let from_bf16 = run(ty, Input::BF16(&brains), n_per_row, imatrix, 2);
                assert!(reference == from_bf16, "{ty}: bf16 input differs");
            }
        }
    }

    #[test]
    fn uninitialized_outputs_get_the_same_bytes() {
        // Several tasks, rows that are not a whole number of staging steps, odd row count.
        let n_per_row = 2560;
        let rows = 2 * MIN_TASK_WEIGHTS / n_per_row + 3;
        let x = weights(rows * n_per_row, 12);
        let halves: Vec<u16> = x
            .iter()
            .map(|&v| half::f16::from_f32(v).to_bits())
            .collect();
        let imatrix: Vec<f32> = weights(n_per_row, 13).iter().map(|v| v.abs()).collect();
        for (ty, _, _) in supported() {
            for imatrix in [None, Some(imatrix.as_slice())] {
                let inputs = [
                    ("f32", Input::F32(&x)),
                    ("f16", Input::F16(&halves)),
                    ("bf16", Input::BF16(&halves)),
                ];
                for (name, src) in inputs {
                    let reference = run(ty, src, n_per_row, imatrix, 1);
                    for threads in [1, 2, 3] {
                        let fresh = run_uninit(ty, src, n_per_row, imatrix, threads);
                        assert!(fresh == reference, "{ty}, {name}, {threads} threads");
                    }
                }
            }
        }
    }

    #[test]
    fn refused_uninitialized_requests_write_nothing() {
        let x = weights(512, 3);
        let mut out = vec![MaybeUninit::new(7u8); 2 * 18 + 1];
        let err = quantize_uninit(GgmlType::Q4_0, Input::F32(&x), 256, &mut out, None, None);
        assert!(matches!(err, Err(QuantizeError::OutputLength { .. })));
        // SAFETY: every element was initialized to 7 above.
        assert!(out.iter().all(|b| unsafe { b.assume_init() } == 7));
        let empty = quantize_uninit(GgmlType::Q4_0, Input::F32(&[]), 32, &mut [], None, None);
        assert_eq!(empty, Ok(&mut [][..]));
    }

    #[test]
    fn rows_quantize_like_one_long_row_without_imatrix() {
        let x = weights(4 * 512, 2);
        for (ty, _, _) in supported() {
            assert_eq!(
                run(ty, Input::F32(&x), 512, None, 1),
                run(ty, Input::F32(&x), 2048, None, 1),
                "{ty}"
            );
        }
    }

    proptest! {
        #[test]
        fn any_floats_quantize_without_panicking(
            bits in proptest::collection::vec(any::<u32>(), 0..1024),
            w_bits in proptest::collection::vec(any::<u32>(), 256),
            pick in any::<prop::sample::Index>(),
            use_imatrix in any::<bool>(),
        ) {
            let types = supported();
            let (ty, block, size) = types[pick.index(types.len())];
            let n_per_row = block.max(256);
            let whole = bits.len() / n_per_row * n_per_row;
            let x: Vec<f32> = bits[..whole].iter().map(|&b| f32::from_bits(b)).collect();
            let w: Vec<f32> = w_bits.iter().map(|&b| f32::from_bits(b)).collect();
            let imatrix = use_imatrix.then_some(&w[..n_per_row]);
            let len = whole / block * size;
            let mut out = vec![0u8; len];
            prop_assert!(quantize(ty, Input::F32(&x), n_per_row, &mut out, imatrix, Some(2)).is_ok());
            prop_assert_eq!(&run_uninit(ty, Input::F32(&x), n_per_row, imatrix, 2), &out);
            let halves: Vec<u16> = bits[..whole].iter().map(|&b| b as u16).collect();
            prop_assert!(quantize(ty, Input::BF16(&halves), n_per_row, &mut out, imatrix, None).is_ok());
            prop_assert!(quantize(ty, Input::F16(&halves), n_per_row, &mut out, imatrix, None).is_ok());
            let mut longer = vec![0u8; len + 1];
            prop_assert!(quantize(ty, Input::F32(&x), n_per_row, &mut longer, imatrix, None).is_err());
        }
    }
}
