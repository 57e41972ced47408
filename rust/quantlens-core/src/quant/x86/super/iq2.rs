//! `IQ2_XXS`, `IQ2_XS` and `IQ2_S`: groups of 8 weights from grids of 256, 512 and 1024
//! rows of magnitudes, with per-weight signs: `db * grid * ±1`.
//!
//! The scalar index arithmetic of the reference picks the rows and sign bytes; two rows
//! (16 weights) at once are widened, scaled and signed by `grid::*::put16_signed`.

use super::grid::rows;
use super::lanes::f16_at;
use crate::quant::blocks::{iq2_s, iq2_xs, iq2_xxs, u16_at, u32_at, QK_K};
use crate::quant::scalar::iq_grids::{IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, KSIGNS_IQ2XS};

/// `d * (0.5 + s) * 0.25`: the group scale of the IQ2 types, in the reference's order.
#[inline]
fn group_scale(d: f32, s: u8) -> f32 {
    d * (0.5 + f32::from(s)) * 0.25
}

/// The sign bytes of 7-bit sign indices `a` and `b`, as the 16 sign bits of two rows.
#[inline]
fn signs(a: u32, b: u32) -> u16 {
    let sign = |i: u32| u16::from(KSIGNS_IQ2XS[(i & 127) as usize]);
    sign(a) | (sign(b) << 8)
}

/// Defines the IQ2 kernels for one instruction set: `$features` to enable and `$put` the
/// matching `grid::*::put16_signed`.
macro_rules! iq2_kernels {
    ($features:literal, $put:path, $iq2_xxs:ident, $iq2_xs:ident, $iq2_s:ident) => {
        /// `IQ2_XXS`: per 32 weights, four 8-bit grid indices and a `u32` of four 7-bit sign
        /// indices and a 4-bit scale.
        ///
        /// # Safety
        /// The CPU must have the enabled target features.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn $iq2_xxs(src: &[u8], dst: &mut [f32]) {
            for (block, out) in src
                .chunks_exact(iq2_xxs::SIZE)
                .zip(dst.chunks_exact_mut(QK_K))
            {
                let d = f16_at(block, iq2_xxs::D);
                for ib in 0..8 {
                    let at = iq2_xxs::QS + 8 * ib;
                    let aux = u32_at(block, at + 4);
                    let db = group_scale(d, (aux >> 28) as u8);
                    let r: [u64; 4] =
                        std::array::from_fn(|l| IQ2XXS_GRID[usize::from(block[at + l])]);
                    $put(out, 32 * ib, rows(r[0], r[1]), db, signs(aux, aux >> 7));
                    let s = signs(aux >> 14, aux >> 21);
                    $put(out, 32 * ib + 16, rows(r[2], r[3]), db, s);
                }
            }
        }

        /// `IQ2_XS`: `u16` codes of a 9-bit grid index and a 7-bit sign index; a 4-bit scale
        /// per 16 weights.
        ///
        /// # Safety
        /// The CPU must have the enabled target features.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn $iq2_xs(src: &[u8], dst: &mut [f32]) {
            for (block, out) in src
                .chunks_exact(iq2_xs::SIZE)
                .zip(dst.chunks_exact_mut(QK_K))
            {
                let d = f16_at(block, iq2_xs::D);
                for ib in 0..8 {
                    let sc = block[iq2_xs::SCALES + ib];
                    let code: [u16; 4] =
                        std::array::from_fn(|l| u16_at(block, iq2_xs::QS + 8 * ib + 2 * l));
                    let r: [u64; 4] =
                        std::array::from_fn(|l| IQ2XS_GRID[usize::from(code[l] & 511)]);
                    let s: [u32; 4] = std::array::from_fn(|l| u32::from(code[l] >> 9));
                    let (db0, db1) = (group_scale(d, sc & 0x0F), group_scale(d, sc >> 4));
                    $put(out, 32 * ib, rows(r[0], r[1]), db0, signs(s[0], s[1]));
                    $put(out, 32 * ib + 16, rows(r[2], r[3]), db1, signs(s[2], s[3]));
                }
            }
        }

        /// `IQ2_S`: 10-bit grid indices (8 bits in `qs`, 2 in `qh`), explicit sign bytes, a
        /// 4-bit scale per 16 weights.
        ///
        /// # Safety
        /// The CPU must have the enabled target features.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn $iq2_s(src: &[u8], dst: &mut [f32]) {
            for (block, out) in src
                .chunks_exact(iq2_s::SIZE)
                .zip(dst.chunks_exact_mut(QK_K))
            {
                let d = f16_at(block, iq2_s::D);
                for ib in 0..8 {
                    let sc = block[iq2_s::SCALES + ib];
                    let h = usize::from(block[iq2_s::QH + ib]);
                    let r: [u64; 4] = std::array::from_fn(|l| {
                        let low = usize::from(block[iq2_s::QS + 4 * ib + l]);
                        IQ2S_GRID[low | ((h << (8 - 2 * l)) & 0x300)]
                    });
                    // The sign bytes follow the 32 index bytes, one per row.
                    let s0 = u16_at(block, iq2_s::QS + 32 + 4 * ib);
                    let s1 = u16_at(block, iq2_s::QS + 32 + 4 * ib + 2);
                    let (db0, db1) = (group_scale(d, sc & 0x0F), group_scale(d, sc >> 4));
                    $put(out, 32 * ib, rows(r[0], r[1]), db0, s0);
                    $put(out, 32 * ib + 16, rows(r[2], r[3]), db1, s1);
                }
            }
        }
    };
}

iq2_kernels!(
    "avx2,fma,f16c",
    super::grid::avx2::put16_signed,
    iq2_xxs_avx2,
    iq2_xs_avx2,
    iq2_s_avx2
);
iq2_kernels!(
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl",
    super::grid::avx512::put16_signed,
    iq2_xxs_avx512,
    iq2_xs_avx512,
    iq2_s_avx512
);
