//! The NEON kernels against the scalar reference, bit for bit, beyond what the crate-wide
//! parity proptest reaches: every f16/bf16 bit pattern, every pair of special scales
//! (including NaNs with different payloads, whose propagation depends on operand order),
//! every MXFP4 exponent, and a guard page right after the source to catch over-reads.

use super::neon;
use crate::dtype::GgmlType;
use crate::quant::blocks::{q2_k, q3_k, q4_1, q4_k, q5_1, q5_k, q6_k};
use crate::quant::{dequantize_f32_with, Isa};

/// Every type with a NEON kernel.
const TYPES: [GgmlType; 15] = [
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
    GgmlType::Q5_K,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
    GgmlType::MXFP4,
];

/// f16 scales worth checking: zeros, subnormals, the normal extremes, infinities, and quiet
/// and signalling NaNs of both signs with different payloads.
const SPECIAL_F16: [u16; 16] = [
    0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x3c00, 0xbc00, 0x2e66, 0x7bff, 0xfbff, 0x7c00, 0xfc00,
    0x7e00, 0xfe01, 0x7c01, 0x7d55,
];

/// A small xorshift generator, so failures reproduce.
struct Bytes(u64);

impl Bytes {
    fn next(&mut self) -> u8 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 24) as u8
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next();
        }
    }
}

fn geometry(ty: GgmlType) -> (usize, usize) {
    let info = ty.info().unwrap();
    (info.type_size as usize, info.block_size as usize)
}

/// Decodes `src` with the NEON kernel of `ty` and with the scalar reference and panics, at
/// the first weight whose bits differ, if they do.
fn assert_same(ty: GgmlType, src: &[u8]) {
    let (type_size, block_size) = geometry(ty);
    let n = src.len() / type_size * block_size;
    let mut fast = vec![f32::from_bits(0x7fc0_dead); n];
    let mut reference = vec![0.0f32; n];
    let kernel = neon(ty).unwrap_or_else(|| panic!("{ty}: no NEON kernel"));
    assert!(std::arch::is_aarch64_feature_detected!("neon"));
    // SAFETY: NEON is available (checked above) and the lengths match, as the dispatcher
    // guarantees for every kernel.
    unsafe { kernel(&src[..n / block_size * type_size], &mut fast) };
    dequantize_f32_with(
        Isa::Scalar,
        ty,
        &src[..n / block_size * type_size],
        &mut reference,
    )
    .unwrap();
    if let Some(i) = (0..n).find(|&i| fast[i].to_bits() != reference[i].to_bits()) {
        let block = i / block_size;
        panic!(
            "{ty}: weight {i} is {:#010x}, reference {:#010x}; block bytes {:02x?}",
            fast[i].to_bits(),
            reference[i].to_bits(),
            &src[block * type_size..(block + 1) * type_size]
        );
    }
}

#[test]
fn dispatches_exactly_the_listed_types() {
    for ty in TYPES {
        assert!(neon(ty).is_some(), "{ty}");
    }
    for ty in [
        GgmlType::F32,
        GgmlType::Q8_K,
        GgmlType::IQ2_XXS,
        GgmlType(4),
    ] {
        assert!(neon(ty).is_none(), "{ty}");
    }
}

#[test]
fn f16_and_bf16_every_bit_pattern() {
    let all: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_le_bytes).collect();
    for ty in [GgmlType::F16, GgmlType::BF16] {
        assert_same(ty, &all);
        // Every tail length after whole vector steps, at every byte alignment.
        for len in 0..40 {
            for skip in 0..4 {
                assert_same(ty, &all[2 * 0x7bf0 + skip..][..2 * len]);
            }
        }
    }
}

#[test]
fn random_blocks() {
    let mut rng = Bytes(0x9e37_79b9_7f4a_7c15);
    for ty in TYPES {
        let (type_size, _) = geometry(ty);
        for round in 0..64 {
            let blocks = 1 + round % 7;
            let skip = round % 5;
            let mut buf = vec![0u8; skip + blocks * type_size];
            rng.fill(&mut buf);
            assert_same(ty, &buf[skip..]);
        }
    }
}

/// Offsets of the f16 scales of each block type whose kernel forms products from them.
fn scale_fields(ty: GgmlType) -> Vec<usize> {
    match ty {
        GgmlType::Q4_1 => vec![q4_1::D, q4_1::M],
        GgmlType::Q5_1 => vec![q5_1::D, q5_1::M],
        GgmlType::Q4_K => vec![q4_k::D, q4_k::DMIN],
        GgmlType::Q5_K => vec![q5_k::D, q5_k::DMIN],
        GgmlType::Q2_K => vec![q2_k::D, q2_k::DMIN],
        GgmlType::Q3_K => vec![q3_k::D],
        GgmlType::Q6_K => vec![q6_k::D],
        // Q4_0, Q5_0, Q8_0, IQ4_NL and IQ4_XS keep their one scale first.
        GgmlType::F16 | GgmlType::BF16 | GgmlType::MXFP4 => vec![],
        _ => vec![0],
    }
}

#[test]
fn special_scales_and_pairs_of_them() {
    let mut rng = Bytes(0x2545_f491_4f6c_dd1d);
    for ty in TYPES {
        let (type_size, _) = geometry(ty);
        let fields = scale_fields(ty);
        let combos: Vec<Vec<u16>> = match fields.len() {
            0 => continue,
            1 => SPECIAL_F16.iter().map(|&s| vec![s]).collect(),
            _ => SPECIAL_F16
                .iter()
                .flat_map(|&a| SPECIAL_F16.iter().map(move |&b| vec![a, b]))
                .collect(),
        };
        for combo in combos {
            let mut buf = vec![0u8; 3 * type_size];
            rng.fill(&mut buf);
            for block in buf.chunks_exact_mut(type_size) {
                for (&at, &bits) in fields.iter().zip(&combo) {
                    block[at..at + 2].copy_from_slice(&bits.to_le_bytes());
                }
            }
            assert_same(ty, &buf);
        }
    }
}

#[test]
fn mxfp4_every_exponent() {
    let mut rng = Bytes(0x0123_4567_89ab_cdef);
    let mut buf = vec![0u8; 256 * 17];
    rng.fill(&mut buf);
    for (e, block) in buf.chunks_exact_mut(17).enumerate() {
        block[0] = e as u8;
    }
    assert_same(GgmlType::MXFP4, &buf);
}

/// Source placed so that its last byte is the last readable one before a `PROT_NONE`
/// page: a kernel reading even one byte past its input crashes the test.
#[cfg(target_os = "linux")]
#[test]
fn no_read_past_the_source() {
    use std::ffi::{c_int, c_void};

    extern "C" {
        fn mmap(
            addr: *mut c_void,
            len: usize,
            prot: c_int,
            flags: c_int,
            fd: c_int,
            off: i64,
        ) -> *mut c_void;
        fn mprotect(addr: *mut c_void, len: usize, prot: c_int) -> c_int;
        fn munmap(addr: *mut c_void, len: usize) -> c_int;
    }
    const PROT_NONE: c_int = 0;
    const PROT_READ_WRITE: c_int = 1 | 2;
    const MAP_PRIVATE_ANONYMOUS: c_int = 0x02 | 0x20;
    // A multiple of every aarch64 page size (4, 16 or 64 KiB).
    const HALF: usize = 64 * 1024;

    // SAFETY: a fresh private anonymous mapping; the second half is made inaccessible and
    // only the first half is ever viewed as a slice, and the mapping outlives that slice.
    unsafe {
        let base = mmap(
            std::ptr::null_mut(),
            2 * HALF,
            PROT_READ_WRITE,
            MAP_PRIVATE_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(base as isize, -1, "mmap failed");
        assert_eq!(
            mprotect(base.cast::<u8>().add(HALF).cast(), HALF, PROT_NONE),
            0
        );
        let readable = std::slice::from_raw_parts_mut(base.cast::<u8>(), HALF);
        Bytes(0xdead_beef_cafe_f00d).fill(readable);
        for ty in TYPES {
            let (type_size, _) = geometry(ty);
            for blocks in [1, 2, 3, 9] {
                assert_same(ty, &readable[HALF - blocks * type_size..]);
            }
        }
        assert_eq!(munmap(base, 2 * HALF), 0);
    }
}
