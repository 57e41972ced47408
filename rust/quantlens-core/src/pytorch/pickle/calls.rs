//! What `REDUCE`, `NEWOBJ`, `BUILD` and `BINPERSID` mean for the allow-listed globals.
//! Each "call" is interpreted here by building a value; arguments are checked for the
//! exact shapes torch writes and anything else is a format error.

use super::globals::{Global, Rebuild};
use super::values::{Dict, Node, NodeId, Storage, TensorSpec, Value};
use super::Vm;
use crate::error::Result;
use crate::pytorch::{limit, malformed, unsupported};

/// Most dimensions of a tensor (torch allows 64).
pub const MAX_DIMS: u64 = 64;

impl<'a> Vm<'a> {
    /// The items of a tuple or list value.
    fn items(&self, value: Value<'a>) -> Option<&[Value<'a>]> {
        match value {
            Value::Node(id) => match self.arena().get(id)? {
                Node::Tuple(items) | Node::List(items) => Some(items),
                _ => None,
            },
            _ => None,
        }
    }

    fn args(&self, pos: u64, what: &str, args: Value<'a>) -> Result<Vec<Value<'a>>> {
        self.items(args).map(<[_]>::to_vec).ok_or_else(|| {
            malformed(
                pos,
                format!(
                    "arguments of {what} are a {}, not a tuple",
                    args.kind(self.arena())
                ),
            )
        })
    }

    /// `callable(*args)` for an allow-listed callable.
    pub(super) fn reduce(
        &mut self,
        pos: u64,
        callable: Value<'a>,
        args: Value<'a>,
    ) -> Result<Value<'a>> {
        let Value::Global(global) = callable else {
            return Err(malformed(
                pos,
                format!(
                    "REDUCE on a {}, which is not callable",
                    callable.kind(self.arena())
                ),
            ));
        };
        let name = global.name();
        let args = self.args(pos, &name, args)?;
        match (global, args.as_slice()) {
            (Global::OrderedDict, []) => self.node(pos, Node::Dict(Box::new(Dict::new(true)))),
            (Global::OrderedDict, [pairs]) => {
                let mut dict = Dict::new(true);
                let pairs = self.items(*pairs).map(<[_]>::to_vec).unwrap_or_default();
                for pair in pairs {
                    match self.items(pair) {
                        Some(&[k, v]) => {
                            dict.set(k, v);
                        }
                        _ => return Err(malformed(pos, "OrderedDict items are not pairs")),
                    }
                }
                self.node(pos, Node::Dict(Box::new(dict)))
            }
            (Global::Rebuild(kind), _) => self.rebuild(pos, kind, &args),
            (Global::RebuildFromType, [func, class, inner, _state]) => {
                let (Value::Global(Global::Rebuild(kind)), Value::Global(class)) = (*func, *class)
                else {
                    return Err(malformed(
                        pos,
                        "_rebuild_from_type_v2 needs a rebuild function and a type",
                    ));
                };
                if !matches!(class, Global::TensorClass | Global::ParameterClass) {
                    return Err(malformed(
                        pos,
                        format!("_rebuild_from_type_v2 to {}", class.name()),
                    ));
                }
                let inner = self.args(pos, "the rebuild function", *inner)?;
                self.rebuild(pos, kind, &inner)
            }
            (Global::Size, [dims]) if self.items(*dims).is_some() => Ok(*dims),
            (Global::CodecsEncode, [Value::Str(text), Value::Str(encoding)]) => {
                if !matches!(
                    encoding.to_ascii_lowercase().as_str(),
                    "latin1" | "latin-1" | "iso-8859-1"
                ) {
                    return Err(malformed(pos, format!("_codecs.encode to {encoding}")));
                }
                let bytes = text
                    .chars()
                    .map(|c| u8::try_from(u32::from(c)))
                    .collect::<Result<Vec<u8>, _>>()
                    .map_err(|_| malformed(pos, "latin1 text holds a character above U+00FF"))?;
                self.node(pos, Node::OwnedBytes(bytes))
            }
            (Global::Bytes, []) => Ok(Value::Bytes(&[])),
            (Global::Device, [Value::Str(kind)]) => self.node(pos, Node::Text((*kind).to_owned())),
            (Global::Device, [Value::Str(kind), Value::Int(index)]) => {
                self.node(pos, Node::Text(format!("{kind}:{index}")))
            }
            (Global::Set | Global::FrozenSet, []) => self.node(pos, Node::Set(Vec::new())),
            (Global::Set | Global::FrozenSet, [items]) => {
                let items = match *items {
                    Value::Node(id) => match self.arena().get(id) {
                        Some(Node::Tuple(v) | Node::List(v) | Node::Set(v)) => v.clone(),
                        _ => return Err(malformed(pos, "set() of something not a sequence")),
                    },
                    _ => return Err(malformed(pos, "set() of something not a sequence")),
                };
                self.count_elements(pos, items.len())?;
                self.node(pos, Node::Set(items))
            }
            _ => Err(malformed(
                pos,
                format!(
                    "calling {name} with {} arguments is not something torch.save writes",
                    args.len()
                ),
            )),
        }
    }

    /// `cls.__new__(cls, ...)` (`NEWOBJ`, `OBJ`): only an empty `OrderedDict` or set.
    pub(super) fn new_object(&mut self, pos: u64, class: Value<'a>) -> Result<Value<'a>> {
        match class {
            Value::Global(Global::OrderedDict) => {
                self.node(pos, Node::Dict(Box::new(Dict::new(true))))
            }
            Value::Global(Global::Set | Global::FrozenSet) => self.node(pos, Node::Set(Vec::new())),
            other => Err(malformed(
                pos,
                format!(
                    "creating an instance of a {} is not something torch.save writes",
                    match other {
                        Value::Global(g) => g.name(),
                        v => v.kind(self.arena()).to_owned(),
                    }
                ),
            )),
        }
    }

    /// `BUILD`: setting state is allowed, and ignored, only on `OrderedDict`s (the
    /// `_metadata` of state dicts) and tensors (parameter state).
    pub(super) fn build(&mut self, pos: u64, target: Value<'a>, _state: Value<'a>) -> Result<()> {
        let node = match target {
            Value::Node(id) => self.arena().get(id),
            _ => None,
        };
        match node {
            Some(Node::Dict(d)) if d.ordered => Ok(()),
            Some(Node::Tensor(_)) => Ok(()),
            _ => Err(malformed(
                pos,
                format!(
                    "BUILD on a {} is not something torch.save writes",
                    target.kind(self.arena())
                ),
            )),
        }
    }

    /// A persistent id `('storage', StorageClass, key, location, numel[, view])`.
    pub(super) fn persistent_load(&mut self, pos: u64, pid: Value<'a>) -> Result<Value<'a>> {
        let items = self.items(pid).map(<[_]>::to_vec).unwrap_or_default();
        let (Some(Value::Str("storage")), Some(&class), Some(&key), Some(&numel)) =
            (items.first(), items.get(1), items.get(2), items.get(4))
        else {
            return Err(malformed(
                pos,
                "persistent id is not a ('storage', ...) tuple",
            ));
        };
        let Value::Global(Global::Storage(kind)) = class else {
            return Err(malformed(
                pos,
                "persistent id does not name a storage class",
            ));
        };
        let Value::Str(key) = key else {
            return Err(malformed(pos, "storage key is not a string"));
        };
        let (Value::Int(numel), 5 | 6) = (numel, items.len()) else {
            return Err(malformed(pos, "storage size is not an int"));
        };
        let numel = u64::try_from(numel).map_err(|_| malformed(pos, "negative storage size"))?;
        if items.get(5).is_some_and(|v| *v != Value::None) {
            return Err(unsupported(
                pos,
                "storage views of the pre-0.4 format are not read; re-save the checkpoint with \
                 torch.save(torch.load(path, weights_only=True), new_path)",
            ));
        }
        self.node(pos, Node::Storage(Storage { key, kind, numel }))
    }

    fn rebuild(&mut self, pos: u64, kind: Rebuild, args: &[Value<'a>]) -> Result<Value<'a>> {
        let expected = match kind {
            Rebuild::Tensor | Rebuild::ParameterWithState => 4..=4,
            Rebuild::TensorV2 => 6..=7,
            Rebuild::TensorV3 => 7..=8,
            Rebuild::Parameter => 3..=3,
        };
        if !expected.contains(&args.len()) {
            return Err(malformed(
                pos,
                format!(
                    "{} with {} arguments",
                    Global::Rebuild(kind).name(),
                    args.len()
                ),
            ));
        }
        if matches!(kind, Rebuild::Parameter | Rebuild::ParameterWithState) {
            // A parameter is its data tensor (requires_grad and hooks do not matter here).
            return match args[0] {
                Value::Node(id) if matches!(self.arena().get(id), Some(Node::Tensor(_))) => {
                    Ok(args[0])
                }
                other => Err(malformed(
                    pos,
                    format!("parameter data is a {}", other.kind(self.arena())),
                )),
            };
        }
        let storage = self.storage_id(pos, args[0])?;
        let Value::Int(offset) = args[1] else {
            return Err(malformed(pos, "storage offset is not an int"));
        };
        let storage_offset =
            u64::try_from(offset).map_err(|_| malformed(pos, "negative storage offset"))?;
        let shape = self.dims(pos, "size", args[2])?;
        let strides = self.dims(pos, "stride", args[3])?;
        if shape.len() != strides.len() {
            return Err(malformed(pos, "size and stride have different lengths"));
        }
        let dtype = match (kind, args.get(6)) {
            (Rebuild::TensorV3, Some(Value::Global(Global::DType(d)))) => Some(*d),
            (Rebuild::TensorV3, _) => {
                return Err(malformed(pos, "_rebuild_tensor_v3 without a dtype"))
            }
            _ => None,
        };
        let spec = TensorSpec {
            storage,
            storage_offset,
            shape,
            strides,
            dtype,
        };
        self.node(pos, Node::Tensor(Box::new(spec)))
    }

    fn storage_id(&self, pos: u64, value: Value<'a>) -> Result<NodeId> {
        match value {
            Value::Node(id) if matches!(self.arena().get(id), Some(Node::Storage(_))) => Ok(id),
            other => Err(malformed(
                pos,
                format!("tensor storage is a {}", other.kind(self.arena())),
            )),
        }
    }

    fn dims(&self, pos: u64, what: &str, value: Value<'a>) -> Result<Vec<u64>> {
        let items = self
            .items(value)
            .ok_or_else(|| malformed(pos, format!("tensor {what} is not a tuple")))?;
        limit("tensor dimensions", pos, items.len() as u64, MAX_DIMS)?;
        items
            .iter()
            .map(|v| match *v {
                Value::Int(n) => u64::try_from(n)
                    .map_err(|_| malformed(pos, format!("negative tensor {what} {n}"))),
                _ => Err(malformed(pos, format!("tensor {what} holds a non-int"))),
            })
            .collect()
    }
}
