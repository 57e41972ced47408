//! Chooses, once per process, the instruction set the kernels use on this CPU.
//!
//! `QUANTLENS_FORCE_SCALAR=1` forces the scalar reference kernels: a workaround for users if
//! a fast kernel were ever wrong on some CPU, and how CI runs the whole suite a second time.

use std::sync::OnceLock;

use crate::dtype::GgmlType;

/// An instruction set a family of kernels is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable Rust: the reference kernels.
    Scalar,
    /// x86-64 with AVX2, FMA and F16C.
    Avx2,
    /// x86-64 with AVX-512 F/BW/VL (and AVX2).
    Avx512,
    /// aarch64 with NEON (Advanced SIMD).
    Neon,
}

impl Isa {
    /// Whether this CPU can run kernels written for `self`.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                Isa::Avx2.is_available()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(
                unreachable_patterns,
                reason = "which arms exist depends on the target"
            )]
            _ => false,
        }
    }

    /// Lower-case name (`avx2`, …).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }

    /// Every instruction set, best first.
    pub const ALL: [Isa; 4] = [Isa::Avx512, Isa::Avx2, Isa::Neon, Isa::Scalar];
}

/// The instruction set used by default: the best available, unless
/// `QUANTLENS_FORCE_SCALAR` is set to anything but `0` or empty.
pub fn isa() -> Isa {
    static CHOSEN: OnceLock<Isa> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let forced =
            std::env::var_os("QUANTLENS_FORCE_SCALAR").is_some_and(|v| !v.is_empty() && v != "0");
        if forced {
            return Isa::Scalar;
        }
        Isa::ALL
            .into_iter()
            .find(|isa| isa.is_available())
            .unwrap_or(Isa::Scalar)
    })
}

/// A SIMD kernel: decodes whole blocks of `src` into `dst` (lengths checked by the caller,
/// and the kernel walks both by whole blocks). Unsafe to call unless its instruction set
/// is available.
pub(crate) type SimdKernel = unsafe fn(&[u8], &mut [f32]);

/// The SIMD kernel for `ty` written for `isa`, if there is one. AVX-512 falls back to
/// AVX2 kernels for types that gain nothing from wider vectors.
fn simd_kernel(ty: GgmlType, isa: Isa) -> Option<SimdKernel> {
    match isa {
        Isa::Scalar => None,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => super::x86::avx512(ty).or_else(|| super::x86::avx2(ty)),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => super::x86::avx2(ty),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => super::aarch64::neon(ty),
        #[allow(
            unreachable_patterns,
            reason = "which arms exist depends on the target"
        )]
        _ => None,
    }
}

/// Whether `isa` has its own kernel for `ty` (rather than using the scalar one).
pub fn has_simd_kernel(ty: GgmlType, isa: Isa) -> bool {
    isa.is_available() && simd_kernel(ty, isa).is_some()
}

/// Run the `isa` kernel for `ty`, returning `false` (and writing nothing) if there is none
/// or this CPU cannot run it. Lengths must already be checked.
pub(crate) fn run_simd(ty: GgmlType, isa: Isa, src: &[u8], dst: &mut [f32]) -> bool {
    if !isa.is_available() {
        return false;
    }
    let Some(kernel) = simd_kernel(ty, isa) else {
        return false;
    };
    // SAFETY: `kernel` was written for `isa`, and `isa.is_available()` just confirmed this
    // CPU supports it. Kernels walk `src` and `dst` by whole blocks, so their lengths (which
    // the caller checked match) bound every access.
    unsafe { kernel(src, dst) };
    true
}
