//! [`TensorRef`]: what every format's reader reports about a tensor, and the element types
//! ([`DType`]) of unquantized tensors.

use crate::dtype::GgmlType;

/// The element type of a tensor as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// One byte, 0 or 1.
    Bool,
    /// `u8`
    U8,
    /// `i8`
    I8,
    /// `u16`
    U16,
    /// `i16`
    I16,
    /// `u32`
    U32,
    /// `i32`
    I32,
    /// `u64`
    U64,
    /// `i64`
    I64,
    /// IEEE binary16.
    F16,
    /// bfloat16.
    BF16,
    /// IEEE binary32.
    F32,
    /// IEEE binary64.
    F64,
    /// 8-bit float, 4 exponent bits, 3 mantissa bits, finite-only (`float8_e4m3fn`).
    F8E4M3,
    /// 8-bit float, 5 exponent bits, 2 mantissa bits (`float8_e5m2`).
    F8E5M2,
    /// 8-bit power-of-two scale, 8 exponent bits, no sign (`float8_e8m0fnu`, MX scales).
    F8E8M0,
    /// 8-bit float, 4 exponent bits, finite-only, one NaN, no negative zero (`float8_e4m3fnuz`).
    F8E4M3Fnuz,
    /// 8-bit float, 5 exponent bits, finite-only, one NaN, no negative zero (`float8_e5m2fnuz`).
    F8E5M2Fnuz,
    /// Complex of two f32.
    C64,
    /// Complex of two f64.
    C128,
    /// Blocks of a ggml type (GGUF tensors).
    Ggml(GgmlType),
}

impl DType {
    /// Every plain (non-ggml) type, for iteration in tests and tables.
    pub const PLAIN: [DType; 20] = [
        DType::Bool,
        DType::U8,
        DType::I8,
        DType::U16,
        DType::I16,
        DType::U32,
        DType::I32,
        DType::U64,
        DType::I64,
        DType::F16,
        DType::BF16,
        DType::F32,
        DType::F64,
        DType::F8E4M3,
        DType::F8E5M2,
        DType::F8E8M0,
        DType::F8E4M3Fnuz,
        DType::F8E5M2Fnuz,
        DType::C64,
        DType::C128,
    ];

    /// The safetensors spelling (`F32`, `BF16`, `F8_E4M3`, …); ggml types by their name.
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "BOOL",
            DType::U8 => "U8",
            DType::I8 => "I8",
            DType::U16 => "U16",
            DType::I16 => "I16",
            DType::U32 => "U32",
            DType::I32 => "I32",
            DType::U64 => "U64",
            DType::I64 => "I64",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::F32 => "F32",
            DType::F64 => "F64",
            DType::F8E4M3 => "F8_E4M3",
            DType::F8E5M2 => "F8_E5M2",
            DType::F8E8M0 => "F8_E8M0",
            DType::F8E4M3Fnuz => "F8_E4M3FNUZ",
            DType::F8E5M2Fnuz => "F8_E5M2FNUZ",
            DType::C64 => "C64",
            DType::C128 => "C128",
            DType::Ggml(ty) => ty.info().map_or("UNKNOWN", |i| i.name),
        }
    }

    /// The numpy dtype name (`float32`, `bfloat16` via `ml_dtypes`, …), for plain types.
    pub fn numpy_name(self) -> Option<&'static str> {
        Some(match self {
            DType::Bool => "bool",
            DType::U8 => "uint8",
            DType::I8 => "int8",
            DType::U16 => "uint16",
            DType::I16 => "int16",
            DType::U32 => "uint32",
            DType::I32 => "int32",
            DType::U64 => "uint64",
            DType::I64 => "int64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::F8E4M3 => "float8_e4m3fn",
            DType::F8E5M2 => "float8_e5m2",
            DType::F8E8M0 => "float8_e8m0fnu",
            DType::F8E4M3Fnuz => "float8_e4m3fnuz",
            DType::F8E5M2Fnuz => "float8_e5m2fnuz",
            DType::C64 => "complex64",
            DType::C128 => "complex128",
            DType::Ggml(_) => return None,
        })
    }

    /// Bytes per element of a plain type; `None` for ggml block types.
    pub fn size(self) -> Option<usize> {
        Some(match self {
            DType::Bool
            | DType::U8
            | DType::I8
            | DType::F8E4M3
            | DType::F8E5M2
            | DType::F8E8M0
            | DType::F8E4M3Fnuz
            | DType::F8E5M2Fnuz => 1,
            DType::U16 | DType::I16 | DType::F16 | DType::BF16 => 2,
            DType::U32 | DType::I32 | DType::F32 => 4,
            DType::U64 | DType::I64 | DType::F64 | DType::C64 => 8,
            DType::C128 => 16,
            DType::Ggml(_) => return None,
        })
    }

    /// The plain type with this safetensors name.
    pub fn from_name(name: &str) -> Option<DType> {
        DType::PLAIN.into_iter().find(|d| d.name() == name)
    }
}

/// Where one tensor's bytes are and how to read them, whatever the file format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorRef {
    /// Full name (nested state dicts give dotted names).
    pub name: String,
    /// Element type as stored.
    pub dtype: DType,
    /// Row-major shape.
    pub shape: Vec<u64>,
    /// Strides in elements, one per dimension (row-major contiguous for most formats).
    pub strides: Vec<u64>,
    /// Which file of the model holds the bytes (index into the model's file list).
    pub file: usize,
    /// Absolute offset of the first element in that file.
    pub offset: u64,
    /// Bytes from `offset` that the tensor's elements span.
    pub nbytes: u64,
}

impl TensorRef {
    /// Row-major contiguous strides for `shape`, or `None` if a stride overflows.
    pub fn contiguous_strides(shape: &[u64]) -> Option<Vec<u64>> {
        let mut strides = vec![0u64; shape.len()];
        let mut step: u64 = 1;
        for (stride, &dim) in strides.iter_mut().zip(shape).rev() {
            *stride = step;
            step = step.checked_mul(dim)?;
        }
        Some(strides)
    }

    /// Number of elements, or `None` on overflow.
    pub fn n_elements(&self) -> Option<u64> {
        self.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d))
    }

    /// Whether the elements are laid out row-major without gaps.
    pub fn is_contiguous(&self) -> bool {
        Self::contiguous_strides(&self.shape).is_some_and(|s| {
            s.iter()
                .zip(&self.strides)
                .zip(&self.shape)
                .all(|((a, b), &dim)| dim <= 1 || a == b)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sizes_are_known() {
        for d in DType::PLAIN {
            assert_eq!(DType::from_name(d.name()), Some(d));
            assert!(d.size().is_some() && d.numpy_name().is_some());
        }
        assert_eq!(DType::Ggml(GgmlType::Q4_K).name(), "Q4_K");
    }

    #[test]
    fn contiguity() {
        assert_eq!(
            TensorRef::contiguous_strides(&[2, 3, 4]),
            Some(vec![12, 4, 1])
        );
        let mut t = TensorRef {
            name: "t".into(),
            dtype: DType::F32,
            shape: vec![2, 3],
            strides: vec![3, 1],
            file: 0,
            offset: 0,
            nbytes: 24,
        };
        assert!(t.is_contiguous());
        t.strides = vec![1, 2];
        assert!(!t.is_contiguous());
        assert_eq!(TensorRef::contiguous_strides(&[u64::MAX, 2, 2]), None);
    }
}
