//! `IQ3_XXS` and `IQ3_S`: groups of 4 weights from grids of 256 and 512 rows of magnitudes,
//! two rows per 8 weights, with per-weight signs: `db * grid * ±1`.
//!
//! The scalar index arithmetic of the reference picks the rows and sign bytes; four rows
//! (16 weights) at once are widened, scaled and signed by `grid::*::put16_signed`.

use super::grid::rows;
use super::lanes::f16_at;
use crate::quant::blocks::{iq3_s, iq3_xxs, u16_at, u32_at, QK_K};
use crate::quant::scalar::iq_grids::{IQ3S_GRID, IQ3XXS_GRID, KSIGNS_IQ2XS};

/// Two 4-value grid rows as one 8-value row.
#[inline]
fn join(first: u32, second: u32) -> u64 {
    u64::from(first) | (u64::from(second) << 32)
}

/// Defines the IQ3 kernels for one instruction set: `$features` to enable and `$put` the
/// matching `grid::*::put16_signed`.
macro_rules! iq3_kernels {
    ($features:literal, $put:path, $iq3_xxs:ident, $iq3_s:ident) => {
        /// `IQ3_XXS`: 64 grid indices, then per 32 weights a `u32` of four 7-bit sign indices
        /// and a 4-bit scale.
        ///
        /// # Safety
        /// The CPU must have the enabled target features.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn $iq3_xxs(src: &[u8], dst: &mut [f32]) {
            for (block, out) in src
                .chunks_exact(iq3_xxs::SIZE)
                .zip(dst.chunks_exact_mut(QK_K))
            {
                let d = f16_at(block, iq3_xxs::D);
                for ib in 0..8 {
                    let aux = u32_at(block, iq3_xxs::QS + 64 + 4 * ib);
                    let db = d * (0.5 + f32::from((aux >> 28) as u8)) * 0.5;
                    let grid = |k: usize| IQ3XXS_GRID[usize::from(block[iq3_xxs::QS + 8 * ib + k])];
                    let r: [u64; 4] = std::array::from_fn(|l| join(grid(2 * l), grid(2 * l + 1)));
                    let sign = |l: u32| u16::from(KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize]);
                    $put(out, 32 * ib, rows(r[0], r[1]), db, sign(0) | (sign(1) << 8));
                    $put(
                        out,
                        32 * ib + 16,
                        rows(r[2], r[3]),
                        db,
                        sign(2) | (sign(3) << 8),
                    );
                }
            }
        }

        /// `IQ3_S`: 9-bit grid indices (8 bits in `qs`, 1 in `qh`), explicit sign bytes, an
        /// odd 4-bit scale per 32 weights.
        ///
        /// # Safety
        /// The CPU must have the enabled target features.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn $iq3_s(src: &[u8], dst: &mut [f32]) {
            for (block, out) in src
                .chunks_exact(iq3_s::SIZE)
                .zip(dst.chunks_exact_mut(QK_K))
            {
                let d = f16_at(block, iq3_s::D);
                for ib in 0..8 {
                    let sc = (block[iq3_s::SCALES + ib / 2] >> (4 * (ib % 2))) & 0x0F;
                    let db = d * f32::from(1 + 2 * sc);
                    // Bit k of `h` is the ninth index bit of `qs[8 * ib + k]`.
                    let h = usize::from(block[iq3_s::QH + ib]);
                    let grid = |k: usize| {
                        let low = usize::from(block[iq3_s::QS + 8 * ib + k]);
                        IQ3S_GRID[low | ((h << (8 - k)) & 256)]
                    };
                    let r: [u64; 4] = std::array::from_fn(|l| join(grid(2 * l), grid(2 * l + 1)));
                    let s0 = u16_at(block, iq3_s::SIGNS + 4 * ib);
                    let s1 = u16_at(block, iq3_s::SIGNS + 4 * ib + 2);
                    $put(out, 32 * ib, rows(r[0], r[1]), db, s0);
                    $put(out, 32 * ib + 16, rows(r[2], r[3]), db, s1);
                }
            }
        }
    };
}

iq3_kernels!(
    "avx2,fma,f16c",
    super::grid::avx2::put16_signed,
    iq3_xxs_avx2,
    iq3_s_avx2
);
iq3_kernels!(
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl",
    super::grid::avx512::put16_signed,
    iq3_xxs_avx512,
    iq3_s_avx512
);
