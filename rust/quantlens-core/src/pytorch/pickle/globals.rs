//! The allow-list: the only globals a checkpoint's pickle may name. Each is a tag the
//! reader interprets itself; no name is ever looked up in, imported from or called in any
//! runtime. Everything not listed here is refused with [`crate::Error::UnsafePickle`].

use crate::tensor::DType;

/// A `torch._utils` function that rebuilds a tensor or parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rebuild {
    /// `_rebuild_tensor(storage, offset, size, stride)`.
    Tensor,
    /// `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`.
    TensorV2,
    /// `_rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype[, metadata])`.
    TensorV3,
    /// `_rebuild_parameter(data, requires_grad, hooks)`.
    Parameter,
    /// `_rebuild_parameter_with_state(data, requires_grad, hooks, state)`.
    ParameterWithState,
}

/// The element type of a storage class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StorageKind {
    /// `torch.FloatStorage` and friends: elements of one type.
    Typed(DType),
    /// `torch.storage.UntypedStorage`: bytes; the tensor's dtype comes from `_rebuild_tensor_v3`.
    Untyped,
    /// A storage class torch has but quantlens does not represent (quantized types).
    Unsupported(&'static str),
}

/// A `torch.<dtype>` global, with the plain type it is when quantlens has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TorchDType {
    /// The torch name (`float16`, `float8_e4m3fnuz`, …).
    pub name: &'static str,
    /// The matching element type, if quantlens represents it.
    pub dtype: Option<DType>,
}

/// One allow-listed global.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Global {
    /// `collections.OrderedDict`.
    OrderedDict,
    /// A tensor or parameter rebuild function.
    Rebuild(Rebuild),
    /// `torch._tensor._rebuild_from_type_v2(func, type, args, state)` (tensors with attributes).
    RebuildFromType,
    /// `torch.Tensor`, only as the type argument of `_rebuild_from_type_v2`.
    TensorClass,
    /// `torch.nn.parameter.Parameter`, likewise.
    ParameterClass,
    /// `torch.Size`: a tuple.
    Size,
    /// `_codecs.encode(str, "latin1")`: protocol 2's spelling of `bytes`.
    CodecsEncode,
    /// `builtins.bytes()`: protocol 2's spelling of `b""`.
    Bytes,
    /// `torch.device(type[, index])`.
    Device,
    /// `builtins.set`.
    Set,
    /// `builtins.frozenset`.
    FrozenSet,
    /// A storage class, named in persistent ids.
    Storage(StorageKind),
    /// A dtype value.
    DType(TorchDType),
}

/// Typed storage classes (`torch.<Name>Storage`, also under `torch.cuda`).
const STORAGES: [(&str, Option<DType>); 17] = [
    ("DoubleStorage", Some(DType::F64)),
    ("FloatStorage", Some(DType::F32)),
    ("HalfStorage", Some(DType::F16)),
    ("BFloat16Storage", Some(DType::BF16)),
    ("LongStorage", Some(DType::I64)),
    ("IntStorage", Some(DType::I32)),
    ("ShortStorage", Some(DType::I16)),
    ("CharStorage", Some(DType::I8)),
    ("ByteStorage", Some(DType::U8)),
    ("BoolStorage", Some(DType::Bool)),
    ("ComplexFloatStorage", Some(DType::C64)),
    ("ComplexDoubleStorage", Some(DType::C128)),
    ("QInt8Storage", None),
    ("QInt32Storage", None),
    ("QUInt8Storage", None),
    ("QUInt4x2Storage", None),
    ("QUInt2x4Storage", None),
];

/// `torch.<dtype>` names (canonical ones and aliases).
const DTYPES: [(&str, Option<DType>); 47] = [
    ("float64", Some(DType::F64)),
    ("double", Some(DType::F64)),
    ("float32", Some(DType::F32)),
    ("float", Some(DType::F32)),
    ("float16", Some(DType::F16)),
    ("half", Some(DType::F16)),
    ("bfloat16", Some(DType::BF16)),
    ("int64", Some(DType::I64)),
    ("long", Some(DType::I64)),
    ("int32", Some(DType::I32)),
    ("int", Some(DType::I32)),
    ("int16", Some(DType::I16)),
    ("short", Some(DType::I16)),
    ("int8", Some(DType::I8)),
    ("uint8", Some(DType::U8)),
    ("uint16", Some(DType::U16)),
    ("uint32", Some(DType::U32)),
    ("uint64", Some(DType::U64)),
    ("bool", Some(DType::Bool)),
    ("float8_e4m3fn", Some(DType::F8E4M3)),
    ("float8_e5m2", Some(DType::F8E5M2)),
    ("complex64", Some(DType::C64)),
    ("cfloat", Some(DType::C64)),
    ("complex128", Some(DType::C128)),
    ("cdouble", Some(DType::C128)),
    ("complex32", None),
    ("chalf", None),
    ("bcomplex32", None),
    ("float8_e4m3fnuz", None),
    ("float8_e5m2fnuz", None),
    ("float8_e8m0fnu", None),
    ("float4_e2m1fn_x2", None),
    ("qint8", None),
    ("qint32", None),
    ("quint8", None),
    ("quint4x2", None),
    ("quint2x4", None),
    ("bits1x8", None),
    ("bits2x4", None),
    ("bits4x2", None),
    ("bits8", None),
    ("bits16", None),
    ("uint1", None),
    ("uint2", None),
    ("uint4", None),
    ("int4", None),
    ("int2", None),
];

/// The allow-listed global `module.name`, or `None` when it must be refused.
pub fn resolve(module: &str, name: &str) -> Option<Global> {
    // Python 2 pickles spell builtins `__builtin__`.
    let module = if module == "__builtin__" {
        "builtins"
    } else {
        module
    };
    let global = match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch._utils", "_rebuild_tensor") => Global::Rebuild(Rebuild::Tensor),
        ("torch._utils", "_rebuild_tensor_v2") => Global::Rebuild(Rebuild::TensorV2),
        ("torch._utils", "_rebuild_tensor_v3") => Global::Rebuild(Rebuild::TensorV3),
        ("torch._utils", "_rebuild_parameter") => Global::Rebuild(Rebuild::Parameter),
        ("torch._utils", "_rebuild_parameter_with_state") => {
            Global::Rebuild(Rebuild::ParameterWithState)
        }
        ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromType,
        ("torch", "Tensor") => Global::TensorClass,
        ("torch.nn.parameter" | "torch.nn", "Parameter") => Global::ParameterClass,
        ("torch", "Size") => Global::Size,
        ("_codecs", "encode") => Global::CodecsEncode,
        ("torch", "device") => Global::Device,
        ("builtins", "bytes") => Global::Bytes,
        ("builtins", "set") => Global::Set,
        ("builtins", "frozenset") => Global::FrozenSet,
        ("torch.storage" | "torch", "UntypedStorage") => Global::Storage(StorageKind::Untyped),
        ("torch" | "torch.cuda", _) => return storage_or_dtype(module, name),
        _ => return None,
    };
    Some(global)
}

fn storage_or_dtype(module: &str, name: &str) -> Option<Global> {
    if let Some(&(storage, dtype)) = STORAGES.iter().find(|(n, _)| *n == name) {
        return Some(Global::Storage(
            dtype.map_or(StorageKind::Unsupported(storage), StorageKind::Typed),
        ));
    }
    if module != "torch" {
        return None;
    }
    DTYPES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(name, dtype)| Global::DType(TorchDType { name, dtype }))
}

impl Global {
    /// The dotted name, for messages and metadata.
    pub fn name(self) -> String {
        match self {
            Global::OrderedDict => "collections.OrderedDict".into(),
            Global::Rebuild(r) => format!(
                "torch._utils.{}",
                match r {
                    Rebuild::Tensor => "_rebuild_tensor",
                    Rebuild::TensorV2 => "_rebuild_tensor_v2",
                    Rebuild::TensorV3 => "_rebuild_tensor_v3",
                    Rebuild::Parameter => "_rebuild_parameter",
                    Rebuild::ParameterWithState => "_rebuild_parameter_with_state",
                }
            ),
            Global::RebuildFromType => "torch._tensor._rebuild_from_type_v2".into(),
            Global::TensorClass => "torch.Tensor".into(),
            Global::ParameterClass => "torch.nn.parameter.Parameter".into(),
            Global::Size => "torch.Size".into(),
            Global::CodecsEncode => "_codecs.encode".into(),
            Global::Device => "torch.device".into(),
            Global::Bytes => "builtins.bytes".into(),
            Global::Set => "builtins.set".into(),
            Global::FrozenSet => "builtins.frozenset".into(),
            Global::Storage(StorageKind::Untyped) => "torch.storage.UntypedStorage".into(),
            Global::Storage(StorageKind::Unsupported(name)) => format!("torch.{name}"),
            Global::Storage(StorageKind::Typed(dtype)) => format!(
                "torch.{}",
                STORAGES
                    .iter()
                    .find(|(_, d)| *d == Some(dtype))
                    .map_or("?Storage", |(n, _)| n)
            ),
            Global::DType(d) => format!("torch.{}", d.name),
        }
    }
}

/// `module.name` for an error message, shortened and escaped: it comes from the file.
pub fn display_name(module: &str, name: &str) -> String {
    const MAX: usize = 200;
    let full = format!("{module}.{name}");
    let mut shown: String = full
        .chars()
        .take(MAX)
        .flat_map(char::escape_debug)
        .collect();
    if full.chars().count() > MAX {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_is_exact() {
        assert_eq!(
            resolve("torch", "FloatStorage"),
            Some(Global::Storage(StorageKind::Typed(DType::F32)))
        );
        assert_eq!(
            resolve("torch.cuda", "HalfStorage"),
            Some(Global::Storage(StorageKind::Typed(DType::F16)))
        );
        assert!(matches!(
            resolve("torch", "float16"),
            Some(Global::DType(_))
        ));
        assert_eq!(resolve("torch.cuda", "float16"), None);
        for (m, n) in [
            ("os", "system"),
            ("posix", "system"),
            ("builtins", "eval"),
            ("builtins", "exec"),
            ("builtins", "getattr"),
            ("__builtin__", "eval"),
            ("subprocess", "Popen"),
            ("torch", "load"),
            ("torch", "save"),
            ("torch._utils", "_rebuild_qtensor"),
            ("__main__", "Net"),
            ("collections", "OrderedDictX"),
        ] {
            assert_eq!(resolve(m, n), None, "{m}.{n}");
        }
        for g in [
            Global::OrderedDict,
            Global::Rebuild(Rebuild::TensorV3),
            Global::Storage(StorageKind::Typed(DType::BF16)),
            Global::Storage(StorageKind::Untyped),
        ] {
            let name = g.name();
            let (m, n) = name.rsplit_once('.').unwrap();
            assert_eq!(resolve(m, n), Some(g));
        }
        assert_eq!(display_name("a\n", "b"), "a\\n.b");
    }
}
