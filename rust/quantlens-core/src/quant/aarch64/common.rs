//! Building blocks shared by the NEON kernels: bounds-checked loads and stores, exact f16
//! widening, and "widen 16 quants to f32, scale, store" steps.
//!
//! Every helper either touches memory or runs inline assembly, so the `unsafe` blocks around
//! their bodies are needed on every supported Rust: since 1.87 the arithmetic intrinsics are
//! safe inside `#[target_feature(enable = "neon")]` functions, but on the MSRV (1.85) they are
//! not, and a block holding only arithmetic would be reported as unused on newer compilers.
//!
//! Loads and stores take a slice and an offset and re-slice before touching memory, so an
//! out-of-range offset is a bounds-check panic rather than a read past the slice; with the
//! constant offsets the kernels use inside `chunks_exact` blocks the checks fold away.
//!
//! The float helpers apply one IEEE operation per step, never a fused multiply-add, written
//! in the order the scalar reference uses: the product first, then `+ m` or `- m`. Which
//! operand of a product comes first does not change its bits here: a widened quant is never
//! NaN, and with at most one NaN operand the result is that NaN (quietened) either way.
//!
//! Operand order does matter for `x * d + m` when both the product and `m` are NaN: aarch64
//! returns the first operand's NaN. LLVM treats `fadd` as commutative and in optimised builds
//! puts the broadcast `m` first, in the reference's (auto-vectorised) loop and in these
//! kernels alike, so the two agree in debug and release builds; `tests.rs` pins this with
//! pairs of NaN scales carrying different payloads.

use std::arch::aarch64::{
    float32x4_t, float32x4x2_t, float32x4x4_t, int8x16_t, uint16x8_t, uint8x16_t, vaddq_f32,
    vcombine_u8, vcvtq_f32_s32, vcvtq_f32_u32, vdup_n_u16, vdup_n_u8, vget_low_s16, vget_low_s8,
    vget_low_u16, vget_low_u8, vgetq_lane_f32, vld1q_s8, vld1q_u8, vmovl_high_s16, vmovl_high_s8,
    vmovl_high_u16, vmovl_high_u8, vmovl_s16, vmovl_s8, vmovl_u16, vmovl_u8, vmulq_f32,
    vst1q_f32_x2, vst1q_f32_x4, vsubq_f32, vtstq_u8,
};
use std::arch::asm;

/// Lane `j` of this vector selects bit `j % 8`: used to spread a 16-bit mask over 16 lanes.
static BIT_OF_LANE: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];

/// The 16 bytes of `s` starting at `at`.
#[inline]
#[target_feature(enable = "neon")]
pub(super) unsafe fn load16(s: &[u8], at: usize) -> uint8x16_t {
    let s = &s[at..at + 16];
    // SAFETY: `s` is exactly 16 readable bytes and `vld1q_u8` needs no alignment.
    unsafe { vld1q_u8(s.as_ptr()) }
}

/// A 16-entry `i8` lookup table in one register, for `vqtbl1q_s8`.
#[inline]
#[target_feature(enable = "neon")]
pub(super) unsafe fn load_table(table: &[i8; 16]) -> int8x16_t {
    // SAFETY: the array is exactly 16 readable bytes and `vld1q_s8` needs no alignment.
    unsafe { vld1q_s8(table.as_ptr()) }
}

/// 0xFF in lane `j` where bit `j` of `bits` is set, 0 elsewhere.
#[inline]
#[target_feature(enable = "neon")]
pub(super) unsafe fn lanes_with_bit(bits: u16) -> uint8x16_t {
    let [lo, hi] = bits.to_le_bytes();
    // SAFETY: `BIT_OF_LANE` is exactly 16 readable bytes; the rest is register arithmetic.
    unsafe {
        let spread = vcombine_u8(vdup_n_u8(lo), vdup_n_u8(hi));
        vtstq_u8(spread, vld1q_u8(BIT_OF_LANE.as_ptr()))
    }
}

/// Eight f16 bit patterns widened to f32 with the hardware's `fcvtl`/`fcvtl2`.
///
/// The widening is exact, subnormals included, and a NaN keeps its sign and payload with the
/// quiet bit set, which is what `half`'s conversion (and ggml's `GGML_FP16_TO_FP32`) give.
/// `vcvt_f32_f16` would say the same but is only stable since Rust 1.94, above the MSRV.
#[inline]
#[target_feature(enable = "neon")]
pub(super) unsafe fn f16x8_to_f32(bits: uint16x8_t) -> float32x4x2_t {
    let lo: float32x4_t;
    let hi: float32x4_t;
    // SAFETY: the two instructions only read `bits` and write the two outputs; `out` (not
    // `lateout`) keeps `lo` from sharing a register with `bits`, which `fcvtl2` still reads.
    // No `preserves_flags`: a signalling NaN sets FPSR's invalid-operation flag.
    unsafe {
        asm!(
            "fcvtl {lo:v}.4s, {bits:v}.4h",
            "fcvtl2 {hi:v}.4s, {bits:v}.8h",
            bits = in(vreg) bits,
            lo = out(vreg) lo,
            hi = out(vreg) hi,
            options(pure, nomem, nostack),
        );
    }
    float32x4x2_t(lo, hi)
}

/// The f16 bit pattern `bits`, widened exactly as [`f16x8_to_f32`] does, in all four lanes.
#[inline]
#[target_feature(enable = "neon")]
pub(super) unsafe fn f16_splat(bits: u16) -> float32x4_t {
    let wide: float32x4_t;
    // SAFETY: `fcvtl` only reads the input register and writes the output.
    unsafe {
        asm!(
            "fcvtl {wide:v}.4s, {bits:v}.4h",
            bits = in(vreg) vdup_n_u16(bits),
            wide = lateout(vreg) wide,
            options(pure, nomem, nostack),
        );
    }
    wide
}

/// The f16 bit pattern `bits`, widened exactly as [`f16x8_to_f32`] does, as a scalar: the
/// same bits as the reference's `f16_at`, without a call into `half` per block.
#[inline]
#[target_feature(enable = "neon")]
pub(super) unsafe fn f16_to_f32(bits: u16) -> f32 {
    // SAFETY: `f16_splat` runs one `fcvtl`; the lane index is in range.
    unsafe { vgetq_lane_f32::<0>(f16_splat(bits)) }
}

/// Stores eight f32 at `out[at..at + 8]`.
#[inline]
#[target_feature(enable = "neon")]
pub(super) unsafe fn store8(out: &mut [f32], at: usize, v: float32x4x2_t) {
    let out = &mut out[at..at + 8];
    // SAFETY: `out` is exactly 8 writable, aligned f32.
    unsafe { vst1q_f32_x2(out.as_mut_ptr(), v) }
}

/// Stores sixteen f32 at `out[at..at + 16]`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn store16(out: &mut [f32], at: usize, v: float32x4x4_t) {
    let out = &mut out[at..at + 16];
    // SAFETY: `out` is exactly 16 writable, aligned f32.
    unsafe { vst1q_f32_x4(out.as_mut_ptr(), v) }
}

/// Widens 16 signed quants exactly to f32 (i8 -> i16 -> i32 -> f32), applies `op` to each
/// group of four and stores the results at `out[at..at + 16]`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn store_i8_map(
    out: &mut [f32],
    at: usize,
    q: int8x16_t,
    op: impl Fn(float32x4_t) -> float32x4_t,
) {
    // SAFETY: register arithmetic, then a bounds-checked store.
    unsafe {
        let lo = vmovl_s8(vget_low_s8(q));
        let hi = vmovl_high_s8(q);
        let x = [
            vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))),
            vcvtq_f32_s32(vmovl_high_s16(lo)),
            vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))),
            vcvtq_f32_s32(vmovl_high_s16(hi)),
        ];
        let [y0, y1, y2, y3] = x.map(op);
        store16(out, at, float32x4x4_t(y0, y1, y2, y3));
    }
}

/// Widens 16 unsigned quants exactly to f32 (u8 -> u16 -> u32 -> f32), applies `op` to each
/// group of four and stores the results at `out[at..at + 16]`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn store_u8_map(
    out: &mut [f32],
    at: usize,
    q: uint8x16_t,
    op: impl Fn(float32x4_t) -> float32x4_t,
) {
    // SAFETY: register arithmetic, then a bounds-checked store.
    unsafe {
        let lo = vmovl_u8(vget_low_u8(q));
        let hi = vmovl_high_u8(q);
        let x = [
            vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo))),
            vcvtq_f32_u32(vmovl_high_u16(lo)),
            vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi))),
            vcvtq_f32_u32(vmovl_high_u16(hi)),
        ];
        let [y0, y1, y2, y3] = x.map(op);
        store16(out, at, float32x4x4_t(y0, y1, y2, y3));
    }
}

/// `f32(q[j]) * d` for 16 signed quants, stored at `out[at..at + 16]`.
#[inline]
#[target_feature(enable = "neon")]
pub(super) unsafe fn store_i8_mul(out: &mut [f32], at: usize, q: int8x16_t, d: float32x4_t) {
    // SAFETY: forwards to a bounds-checked store; the closure is register arithmetic.
    unsafe { store_i8_map(out, at, q, |x| vmulq_f32(x, d)) }
}

/// `f32(q[j]) * d + m` for 16 unsigned quants (the legacy types' order), stored at
/// `out[at..at + 16]`.
#[inline]
#[target_feature(enable = "neon")]
pub(super) unsafe fn store_u8_mul_add(
    out: &mut [f32],
    at: usize,
    q: uint8x16_t,
    d: float32x4_t,
    m: float32x4_t,
) {
    // SAFETY: forwards to a bounds-checked store; the closure is register arithmetic.
    unsafe { store_u8_map(out, at, q, |x| vaddq_f32(vmulq_f32(x, d), m)) }
}

/// `d * f32(q[j]) - m` for 16 unsigned quants (the k-quants' order), stored at
/// `out[at..at + 16]`.
#[inline]
#[target_feature(enable = "neon")]
pub(super) unsafe fn store_u8_mul_sub(
    out: &mut [f32],
    at: usize,
    q: uint8x16_t,
    d: float32x4_t,
    m: float32x4_t,
) {
    // SAFETY: forwards to a bounds-checked store; the closure is register arithmetic.
    unsafe { store_u8_map(out, at, q, |x| vsubq_f32(vmulq_f32(d, x), m)) }
}
