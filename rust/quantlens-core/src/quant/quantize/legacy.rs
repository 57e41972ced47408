//! ggml's reference quantizers of the 32-weight types `Q4_0`, `Q4_1`, `Q5_0`, `Q5_1` and
//! `Q8_0` (`quantize_row_*_ref`, which `ggml_quantize_chunk` runs when no importance matrix
//! is given).
//!
//! Each block is scaled by its extreme value and every weight rounded on its own, with
//! ggml's f32 operations in ggml's order: the scale is divided (not multiplied by a
//! reciprocal), its inverse is `1.0 / d` (0 for a zero scale), and quants are truncated
//! after adding `0.5` (plus the zero point). NaN weights never become the extreme value;
//! their quants, like those of weights scaled to infinity, take C's x86 conversion result
//! ([`trunc_low_byte`]).
//!
//! Each quantizer is one portable loop, also compiled for AVX2 (where it vectorises over
//! 256-bit registers) and chosen at run time by [`crate::quant::dispatch::isa`]; both builds
//! do the same f32 operations, so their bytes are the same.

#![allow(
    clippy::inline_always,
    reason = "the kernels here are inlined into each instruction-set build of their callers, \
              so that they are compiled for it"
)]

use super::rounding::{fp16_bytes, round_i32, trunc_low_byte};

/// Defines `pub fn $name(src, dst)` running `$blocks` on the best instruction set, and
/// `$scalar`, the portable build, for comparison in tests.
macro_rules! dispatched {
    ($(#[$doc:meta])* $name:ident, $scalar:ident, $avx2:ident, $blocks:ident) => {
        $(#[$doc])*
        pub fn $name(src: &[f32], dst: &mut [u8]) {
            #[cfg(target_arch = "x86_64")]
            if x86::has_avx2() {
                // SAFETY: `has_avx2` confirmed AVX2 and F16C on this CPU.
                unsafe { $avx2(src, dst) };
                return;
            }
            $scalar(src, dst);
        }

        /// The portable build of the same quantizer.
        #[allow(dead_code, reason = "only called directly by the parity tests on x86-64")]
        fn $scalar(src: &[f32], dst: &mut [u8]) {
            $blocks(src, dst, fp16_bytes);
        }

        /// The AVX2 build of the same quantizer.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,f16c")]
        fn $avx2(src: &[f32], dst: &mut [u8]) {
            $blocks(src, dst, |x| x86::fp16_bytes_f16c(x));
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        _mm_cvtps_ph, _mm_extract_epi16, _mm_set_ss, _MM_FROUND_TO_NEAREST_INT,
    };

    use crate::quant::dispatch::{isa, Isa};

    /// Whether the AVX2 builds run: the chosen instruction set includes AVX2 and F16C.
    #[inline]
    pub(super) fn has_avx2() -> bool {
        matches!(isa(), Isa::Avx2 | Isa::Avx512)
    }

    /// [`super::fp16_bytes`] by the F16C instruction (the same rounding to nearest even);
    /// NaN keeps the portable canonical form.
    #[inline]
    #[target_feature(enable = "f16c")]
    pub(super) fn fp16_bytes_f16c(x: f32) -> [u8; 2] {
        if x.is_nan() {
            return super::fp16_bytes(x);
        }
        let h = _mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(x));
        (_mm_extract_epi16::<0>(h) as u16).to_le_bytes()
    }
}

/// Weights per block of every type here.
const QK: usize = 32;

/// Lanes of independent running extremes: a block's scan is then a few short dependency
/// chains instead of one long one.
const LANES: usize = 8;

/// ggml's running `if (amax < fabsf(v)) { amax = fabsf(v); max = v; }` from 0: the first
/// weight of largest magnitude, or 0 when every weight is zero or NaN. NaN never raises the
/// running maximum, so the largest magnitude does not depend on the order; the weight is
/// then the first of that magnitude, found from a bit mask rather than by branching.
#[allow(
    clippy::float_cmp,
    reason = "the magnitude sought is an exact copy of one of the weights'"
)]
#[inline(always)]
fn signed_absmax(x: &[f32; QK]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    for chunk in x.as_chunks::<LANES>().0 {
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            *m = if *m < v.abs() { v.abs() } else { *m };
        }
    }
    let amax = lanes.iter().fold(0.0f32, |m, &v| if m < v { v } else { m });
    let mut at = 0u32;
    for (i, &v) in x.iter().enumerate() {
        at |= u32::from(v.abs() == amax) << i;
    }
    let first = x.get(at.trailing_zeros() as usize).copied().unwrap_or(0.0);
    if amax > 0.0 {
        first
    } else {
        0.0
    }
}

/// ggml's running `if (v < min) min = v; if (v > max) max = v;` from `(f32::MAX, -f32::MAX)`.
/// NaN never wins, so the extremes do not depend on the order, except for which zero a zero
/// extreme is: then the block is scanned in order, as ggml does.
#[inline(always)]
fn min_max(x: &[f32; QK]) -> (f32, f32) {
    let (mut lo, mut hi) = ([f32::MAX; LANES], [-f32::MAX; LANES]);
    for chunk in x.as_chunks::<LANES>().0 {
        for ((l, h), &v) in lo.iter_mut().zip(&mut hi).zip(chunk) {
            *l = if v < *l { v } else { *l };
            *h = if v > *h { v } else { *h };
        }
    }
    let min = lo.iter().fold(f32::MAX, |m, &v| if v < m { v } else { m });
    let max = hi.iter().fold(-f32::MAX, |m, &v| if v > m { v } else { m });
    if min != 0.0 && max != 0.0 {
        return (min, max);
    }
    x.iter().fold((f32::MAX, -f32::MAX), |(min, max), &v| {
        (if v < min { v } else { min }, if v > max { v } else { max })
    })
}

/// Blocks whose scales are computed together: each block's scale is a short chain of
/// reductions and two divisions, which several blocks then run side by side.
const GROUP: usize = 8;

/// Each block's `(d, 1/d)` for the symmetric types: `d = max / divisor`, `max` the
/// weight of largest magnitude.
#[inline(always)]
fn symmetric_scales(xs: &[[f32; QK]], divisor: f32) -> ([f32; GROUP], [f32; GROUP]) {
    let mut ds = [0.0f32; GROUP];
    for (d, x) in ds.iter_mut().zip(xs) {
        *d = signed_absmax(x) / divisor;
    }
    let mut ids = [0.0f32; GROUP];
    for k in 0..GROUP {
        ids[k] = inverse(ds[k]);
    }
    (ds, ids)
}

/// Each block's `(min, d, 1/d)` for the offset types: `d = (max - min) / levels`.
#[inline(always)]
fn affine_scales(xs: &[[f32; QK]], levels: f32) -> ([f32; GROUP], [f32; GROUP], [f32; GROUP]) {
    let (mut mins, mut maxs) = ([0.0f32; GROUP], [0.0f32; GROUP]);
    for ((min, max), x) in mins.iter_mut().zip(&mut maxs).zip(xs) {
        (*min, *max) = min_max(x);
    }
    let mut ds = [0.0f32; GROUP];
    for k in 0..GROUP {
        ds[k] = (maxs[k] - mins[k]) / levels;
    }
    let mut ids = [0.0f32; GROUP];
    for k in 0..GROUP {
        ids[k] = inverse(ds[k]);
    }
    (mins, ds, ids)
}

/// `1.0 / d`, or 0 for a zero scale (a NaN scale counts as non-zero, as in C).
#[inline]
fn inverse(d: f32) -> f32 {
    if d == 0.0 {
        0.0
    } else {
        1.0 / d
    }
}

/// `MIN(max, (int8_t)v)`, kept as the byte C stores.
#[inline]
fn clamp_i8(v: f32, max: i8) -> u8 {
    (trunc_low_byte(v) as i8).min(max) as u8
}

dispatched!(
    /// `Q4_0`: `d = max / -8`, quants `x / d + 8` in 0..=15, two per byte.
    quantize_row_q4_0_ref, q4_0_scalar, q4_0_avx2, q4_0_blocks
);

#[inline(always)]
fn q4_0_blocks(src: &[f32], dst: &mut [u8], fp16_bytes: impl Fn(f32) -> [u8; 2]) {
    let groups = src.as_chunks::<QK>().0.chunks(GROUP);
    for (xs, blocks) in groups.zip(dst.as_chunks_mut::<18>().0.chunks_mut(GROUP)) {
        let (ds, ids) = symmetric_scales(xs, -8.0);
        for (k, (x, block)) in xs.iter().zip(blocks).enumerate() {
            let (d, id) = (ds[k], ids[k]);
            let (scale, qs) = block.split_at_mut(2);
            scale.copy_from_slice(&fp16_bytes(d));
            let (lo, hi) = x.split_at(QK / 2);
            for ((q, &a), &b) in qs.iter_mut().zip(lo).zip(hi) {
                let q0 = clamp_i8(a * id + 8.5, 15);
                let q1 = clamp_i8(b * id + 8.5, 15);
                *q = q0 | (q1 << 4);
            }
        }
    }
}

dispatched!(
    /// `Q4_1`: `d = (max - min) / 15` and `m = min`, quants `(x - min) / d` in 0..=15.
    quantize_row_q4_1_ref, q4_1_scalar, q4_1_avx2, q4_1_blocks
);

#[inline(always)]
fn q4_1_blocks(src: &[f32], dst: &mut [u8], fp16_bytes: impl Fn(f32) -> [u8; 2]) {
    let groups = src.as_chunks::<QK>().0.chunks(GROUP);
    for (xs, blocks) in groups.zip(dst.as_chunks_mut::<20>().0.chunks_mut(GROUP)) {
        let (mins, ds, ids) = affine_scales(xs, 15.0);
        for (k, (x, block)) in xs.iter().zip(blocks).enumerate() {
            let (min, d, id) = (mins[k], ds[k], ids[k]);
            let (head, qs) = block.split_at_mut(4);
            head[..2].copy_from_slice(&fp16_bytes(d));
            head[2..].copy_from_slice(&fp16_bytes(min));
            let (lo, hi) = x.split_at(QK / 2);
            for ((q, &a), &b) in qs.iter_mut().zip(lo).zip(hi) {
                let q0 = clamp_i8((a - min) * id + 0.5, 15);
                let q1 = clamp_i8((b - min) * id + 0.5, 15);
                *q = q0 | (q1 << 4);
            }
        }
    }
}

/// Packs 32 five-bit quants: low nibbles two per byte into `qs`, fifth bits into `qh`.
#[inline(always)]
fn pack_q5(quant: impl Fn(f32) -> u8, x: &[f32], qh_out: &mut [u8], qs: &mut [u8]) {
    let (lo, hi) = x.split_at(QK / 2);
    let mut qh = 0u32;
    for (j, ((q, &a), &b)) in qs.iter_mut().zip(lo).zip(hi).enumerate() {
        let q0 = quant(a);
        let q1 = quant(b);
        *q = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
        qh |= u32::from((q0 & 0x10) >> 4) << j;
        qh |= u32::from((q1 & 0x10) >> 4) << (j + QK / 2);
    }
    qh_out.copy_from_slice(&qh.to_le_bytes());
}

dispatched!(
    /// `Q5_0`: `d = max / -16`, quants `x / d + 16` in 0..=31.
    quantize_row_q5_0_ref, q5_0_scalar, q5_0_avx2, q5_0_blocks
);

#[inline(always)]
fn q5_0_blocks(src: &[f32], dst: &mut [u8], fp16_bytes: impl Fn(f32) -> [u8; 2]) {
    let groups = src.as_chunks::<QK>().0.chunks(GROUP);
    for (xs, blocks) in groups.zip(dst.as_chunks_mut::<22>().0.chunks_mut(GROUP)) {
        let (ds, ids) = symmetric_scales(xs, -16.0);
        for (k, (x, block)) in xs.iter().zip(blocks).enumerate() {
            let (d, id) = (ds[k], ids[k]);
            let (d_bytes, rest) = block.split_at_mut(2);
            d_bytes.copy_from_slice(&fp16_bytes(d));
            let (qh, qs) = rest.split_at_mut(4);
            pack_q5(|v| clamp_i8(v * id + 16.5, 31), x, qh, qs);
        }
    }
}

dispatched!(
    /// `Q5_1`: `d = (max - min) / 31` and `m = min`, quants `(x - min) / d` in 0..=31.
    quantize_row_q5_1_ref, q5_1_scalar, q5_1_avx2, q5_1_blocks
);

#[inline(always)]
fn q5_1_blocks(src: &[f32], dst: &mut [u8], fp16_bytes: impl Fn(f32) -> [u8; 2]) {
    let groups = src.as_chunks::<QK>().0.chunks(GROUP);
    for (xs, blocks) in groups.zip(dst.as_chunks_mut::<24>().0.chunks_mut(GROUP)) {
        let (mins, ds, ids) = affine_scales(xs, 31.0);
        for (k, (x, block)) in xs.iter().zip(blocks).enumerate() {
            let (min, d, id) = (mins[k], ds[k], ids[k]);
            let (head, rest) = block.split_at_mut(4);
            head[..2].copy_from_slice(&fp16_bytes(d));
            head[2..].copy_from_slice(&fp16_bytes(min));
            let (qh, qs) = rest.split_at_mut(4);
            // `(uint8_t)(x + 0.5f)`: no clamp in ggml; the low five bits are all that is
            // kept.
            pack_q5(|v| trunc_low_byte((v - min) * id + 0.5), x, qh, qs);
        }
    }
}

dispatched!(
    /// `Q8_0`: `d = amax / 127`, quants `round(x / d)` in -127..=127.
    quantize_row_q8_0_ref, q8_0_scalar, q8_0_avx2, q8_0_blocks
);

#[inline(always)]
fn q8_0_blocks(src: &[f32], dst: &mut [u8], fp16_bytes: impl Fn(f32) -> [u8; 2]) {
    let groups = src.as_chunks::<QK>().0.chunks(GROUP);
    for (xs, blocks) in groups.zip(dst.as_chunks_mut::<34>().0.chunks_mut(GROUP)) {
        let amax = running_abs_max(xs);
        for (k, (x, block)) in xs.iter().zip(blocks).enumerate() {
            let d = amax[k] / 127.0;
            let id = inverse(d);
            block[..2].copy_from_slice(&fp16_bytes(d));
            for (q, &v) in block[2..].iter_mut().zip(x) {
                *q = round_i32(v * id) as u8;
            }
        }
    }
}

/// ggml's `Q8_0` scan, `amax = MAX(amax, fabsf(v))` in order from 0, of each block: a NaN
/// weight becomes the running maximum until a later weight replaces it. A whole group's
/// scans run interleaved, as independent chains.
#[inline(always)]
fn running_abs_max(xs: &[[f32; QK]]) -> [f32; GROUP] {
    let step = |amax: f32, v: f32| if amax > v.abs() { amax } else { v.abs() };
    let mut amax = [0.0f32; GROUP];
    if let Ok(group) = <&[[f32; QK]; GROUP]>::try_from(xs) {
        for i in 0..QK {
            for (m, x) in amax.iter_mut().zip(group) {
                *m = step(*m, x[i]);
            }
        }
    } else {
        for (m, x) in amax.iter_mut().zip(xs) {
            *m = x.iter().fold(0.0, |m, &v| step(m, v));
        }
    }
    amax
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::dequantize_f32;
    use crate::GgmlType;
    #[cfg(target_arch = "x86_64")]
    use proptest::prelude::*;

    /// Weights of every kind: ordinary, huge or tiny magnitudes, zeros of both signs, NaN
    /// and infinities.
    #[cfg(target_arch = "x86_64")]
    fn any_weight() -> impl Strategy<Value = f32> {
        prop_oneof![
            4 => -100.0f32..100.0,
            1 => any::<u32>().prop_map(f32::from_bits),
            1 => Just(0.0f32),
            1 => Just(-0.0f32),
        ]
    }

    #[cfg(target_arch = "x86_64")]
    proptest! {
        #[test]
        fn avx2_builds_equal_the_portable_ones(
            x in proptest::collection::vec(any_weight(), 96),
        ) {
            type Pair = (fn(&[f32], &mut [u8]), unsafe fn(&[f32], &mut [u8]), usize);
            if !x86::has_avx2() {
                return Ok(());
            }
            let pairs: [Pair; 5] = [
                (q4_0_scalar, q4_0_avx2, 18),
                (q4_1_scalar, q4_1_avx2, 20),
                (q5_0_scalar, q5_0_avx2, 22),
                (q5_1_scalar, q5_1_avx2, 24),
                (q8_0_scalar, q8_0_avx2, 34),
            ];
            for (scalar, avx2, size) in pairs {
                let (mut a, mut b) = (vec![0u8; 3 * size], vec![1u8; 3 * size]);
                scalar(&x, &mut a);
                // SAFETY: `has_avx2` confirmed AVX2 and F16C on this CPU.
                unsafe { avx2(&x, &mut b) };
                prop_assert_eq!(a, b);
            }
        }

        #[test]
        fn f16c_scales_equal_the_portable_ones(bits in any::<u32>()) {
            if !x86::has_avx2() {
                return Ok(());
            }
            let x = f32::from_bits(bits);
            // SAFETY: `has_avx2` confirmed F16C on this CPU.
            prop_assert_eq!(unsafe { x86::fp16_bytes_f16c(x) }, fp16_bytes(x));
        }
    }

    type Case = (GgmlType, fn(&[f32], &mut [u8]), usize, f32);

    fn ramp() -> Vec<f32> {
        (0..64).map(|i| (i as f32 - 20.5) * 0.37).collect()
    }

    #[test]
    fn round_trips_stay_within_half_a_step() {
        let x = ramp();
        let cases: [Case; 5] = [
            (GgmlType::Q4_0, quantize_row_q4_0_ref, 18, 8.0),
            (GgmlType::Q4_1, quantize_row_q4_1_ref, 20, 15.0),
            (GgmlType::Q5_0, quantize_row_q5_0_ref, 22, 16.0),
            (GgmlType::Q5_1, quantize_row_q5_1_ref, 24, 31.0),
            (GgmlType::Q8_0, quantize_row_q8_0_ref, 34, 127.0),
        ];
        for (ty, quantize, size, levels) in cases {
            let mut bytes = vec![0u8; 2 * size];
            quantize(&x, &mut bytes);
            let mut back = vec![0f32; 64];
            dequantize_f32(ty, &bytes, &mut back).unwrap();
            for (block, (xs, ys)) in x.chunks(32).zip(back.chunks(32)).enumerate() {
                let range = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
                // Half a step of the (f16-rounded) scale, with room for the rounding of d.
                let tol = range / levels * 0.51 * if levels > 31.0 { 1.0 } else { 2.0 };
                for (a, b) in xs.iter().zip(ys) {
                    assert!((a - b).abs() <= tol, "{ty} block {block}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn extremes_equal_ggml_running_scans() {
        let running = |x: &[f32]| {
            let (mut amax, mut max) = (0.0f32, 0.0f32);
            let (mut lo, mut hi) = (f32::MAX, -f32::MAX);
            for &v in x {
                if amax < v.abs() {
                    amax = v.abs();
                    max = v;
                }
                if v < lo {
                    lo = v;
                }
                if v > hi {
                    hi = v;
                }
            }
            (max.to_bits(), lo.to_bits(), hi.to_bits())
        };
        let mut x = ramp()[..32].to_vec();
        let mut cases = vec![x.clone()];
        x[9] = 7.77;
        x[30] = -7.77;
        cases.push(x.clone());
        x[4] = f32::NAN;
        cases.push(x.clone());
        cases.push(vec![0.0; 32]);
        let mut zeros: Vec<f32> = (0..32)
            .map(|i| if i % 3 == 0 { -0.0 } else { 0.0 })
            .collect();
        cases.push(zeros.clone());
        zeros[17] = 2.5;
        cases.push(zeros.clone());
        zeros[17] = -2.5;
        cases.push(zeros);
        cases.push(vec![f32::NAN; 32]);
        for x in cases {
            let x: &[f32; QK] = x.as_slice().try_into().unwrap();
            let (lo, hi) = min_max(x);
            assert_eq!(
                (signed_absmax(x).to_bits(), lo.to_bits(), hi.to_bits()),
                running(x),
                "{x:?}"
            );
        }
    }

    #[test]
    fn zero_blocks_have_zero_scales_and_mid_quants() {
        let x = [0.0f32; 32];
        let mut b = [0u8; 18];
        quantize_row_q4_0_ref(&x, &mut b);
        // d = 0 / -8 = -0.0: ggml stores the f16 negative zero.
        assert_eq!(&b[..2], &[0x00, 0x80]);
        assert!(b[2..].iter().all(|&q| q == 0x88));
        let mut b = [0u8; 34];
        quantize_row_q8_0_ref(&x, &mut b);
        assert!(b.iter().all(|&q| q == 0));
    }

    #[test]
    fn non_finite_weights_give_defined_bytes() {
        let mut x = ramp();
        x[3] = f32::NAN;
        x[40] = f32::INFINITY;
        let mut out = vec![0u8; 68];
        quantize_row_q8_0_ref(&x, &mut out);
        // The NaN quantizes to C's conversion of NaN (low byte of INT32_MIN).
        assert_eq!(out[2 + 3], 0);
        // An infinite weight makes d infinite and every quant of its block 0 or NaN → 0.
        assert_eq!(&out[34..36], &0x7c00u16.to_le_bytes());
        assert!(out[36..].iter().all(|&q| q == 0));
    }
}
