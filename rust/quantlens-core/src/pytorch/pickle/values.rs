//! What the pickle reader builds: plain values on its stack and, in an arena, the
//! containers, storages and tensors they refer to. Nothing here can run code: every kind
//! of object the reader can make is listed in [`Node`].

use std::collections::HashMap;

use super::globals::{Global, StorageKind, TorchDType};

/// Index of a [`Node`] in the [`Arena`].
pub type NodeId = u32;

/// One value on the stack or in a container. Cheap to copy: strings and bytes borrow the
/// pickle's own bytes, and everything bigger lives in the arena.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An int that fits in 64 bits.
    Int(i64),
    /// A wider int: its two's complement little-endian bytes as stored.
    BigInt(&'a [u8]),
    /// A float.
    Float(f64),
    /// A str (UTF-8 checked when read).
    Str(&'a str),
    /// A bytes object read straight from the pickle.
    Bytes(&'a [u8]),
    /// One of the allow-listed globals.
    Global(Global),
    /// A container, storage or tensor in the arena.
    Node(NodeId),
}

impl Value<'_> {
    /// A short word for error messages.
    pub fn kind(self, arena: &Arena<'_>) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Global(_) => "global",
            Value::Node(id) => arena.get(id).map_or("object", Node::kind),
        }
    }
}

/// A storage named by a persistent id: which record holds it and what it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Storage<'a> {
    /// The record key (`data/<key>` in a zip, the legacy storage key otherwise).
    pub key: &'a str,
    /// Element type of the storage class.
    pub kind: StorageKind,
    /// Elements (bytes for an untyped storage) the persistent id claims.
    pub numel: u64,
}

/// A tensor rebuilt by `_rebuild_tensor*`: a view into a storage.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    /// The storage node.
    pub storage: NodeId,
    /// First element, in elements of the tensor's type.
    pub storage_offset: u64,
    /// Shape.
    pub shape: Vec<u64>,
    /// Strides in elements.
    pub strides: Vec<u64>,
    /// The element type given to `_rebuild_tensor_v3` (untyped storages), if any.
    pub dtype: Option<TorchDType>,
}

/// Everything the reader can build besides plain values.
#[derive(Clone, Debug, PartialEq)]
pub enum Node<'a> {
    /// A list.
    List(Vec<Value<'a>>),
    /// A tuple (also `torch.Size`).
    Tuple(Vec<Value<'a>>),
    /// A set or frozenset, kept in insertion order.
    Set(Vec<Value<'a>>),
    /// A dict or `OrderedDict` (boxed to keep every node small).
    Dict(Box<Dict<'a>>),
    /// Bytes made by `_codecs.encode(str, "latin1")` (how protocol 2 pickles `bytes`).
    OwnedBytes(Vec<u8>),
    /// Text made by the reader (a `torch.device`).
    Text(String),
    /// A storage from a persistent id.
    Storage(Storage<'a>),
    /// A tensor or parameter.
    Tensor(Box<TensorSpec>),
}

impl Node<'_> {
    /// A short word for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::List(_) => "list",
            Node::Tuple(_) => "tuple",
            Node::Set(_) => "set",
            Node::Dict(d) if d.ordered => "OrderedDict",
            Node::Dict(_) => "dict",
            Node::OwnedBytes(_) => "bytes",
            Node::Text(_) => "str",
            Node::Storage(_) => "storage",
            Node::Tensor(_) => "tensor",
        }
    }
}

/// What a dict key is compared by: the value for scalars and strings (as Python does),
/// identity for everything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key<'a> {
    None,
    Int(i64),
    BigInt(&'a [u8]),
    Float(u64),
    Str(&'a str),
    Bytes(&'a [u8]),
    Global(Global),
    Node(NodeId),
}

impl<'a> Key<'a> {
    fn of(value: Value<'a>) -> Self {
        match value {
            Value::None => Key::None,
            Value::Bool(b) => Key::Int(i64::from(b)),
            Value::Int(i) => Key::Int(i),
            Value::BigInt(b) => Key::BigInt(b),
            // 1.0 and 1 are the same key in Python.
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Key::Int(f as i64),
            Value::Float(f) => Key::Float(f.to_bits()),
            Value::Str(s) => Key::Str(s),
            Value::Bytes(b) => Key::Bytes(b),
            Value::Global(g) => Key::Global(g),
            Value::Node(id) => Key::Node(id),
        }
    }
}

/// Dicts up to this size find keys by scanning; bigger ones get a hash index.
const SCAN_LEN: usize = 16;

/// An insertion-ordered dict; setting an existing key replaces its value in place.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dict<'a> {
    /// Made by `collections.OrderedDict` (the only dicts `BUILD` may target).
    pub ordered: bool,
    entries: Vec<(Value<'a>, Value<'a>)>,
    /// Built once the dict outgrows a scan (most dicts torch writes are empty or tiny).
    index: Option<HashMap<Key<'a>, usize>>,
}

impl<'a> Dict<'a> {
    /// An empty dict.
    pub fn new(ordered: bool) -> Self {
        Dict {
            ordered,
            ..Dict::default()
        }
    }

    fn position(&self, key: Key<'a>) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(&key).copied(),
            None => self.entries.iter().position(|(k, _)| Key::of(*k) == key),
        }
    }

    /// `d[key] = value`; returns whether the dict grew.
    pub fn set(&mut self, key: Value<'a>, value: Value<'a>) -> bool {
        let k = Key::of(key);
        if let Some(i) = self.position(k) {
            self.entries[i].1 = value;
            return false;
        }
        self.entries.push((key, value));
        match &mut self.index {
            Some(index) => {
                index.insert(k, self.entries.len() - 1);
            }
            None if self.entries.len() > SCAN_LEN => {
                let index = self.entries.iter().enumerate();
                self.index = Some(index.map(|(i, (k, _))| (Key::of(*k), i)).collect());
            }
            None => {}
        }
        true
    }

    /// The entries in insertion order.
    pub fn entries(&self) -> &[(Value<'a>, Value<'a>)] {
        &self.entries
    }
}

/// Where every [`Node`] lives, each with the file offset of the opcode that made it.
#[derive(Debug, Default)]
pub struct Arena<'a> {
    nodes: Vec<(u64, Node<'a>)>,
}

impl<'a> Arena<'a> {
    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node was built.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Add a node made by the opcode at file offset `pos`.
    pub fn push(&mut self, pos: u64, node: Node<'a>) -> NodeId {
        self.nodes.push((pos, node));
        (self.nodes.len() - 1) as NodeId
    }

    /// The node `id`.
    pub fn get(&self, id: NodeId) -> Option<&Node<'a>> {
        self.nodes.get(id as usize).map(|(_, n)| n)
    }

    /// The node `id`, to change it.
    pub fn get_mut(&mut self, id: NodeId) -> Option<&mut Node<'a>> {
        self.nodes.get_mut(id as usize).map(|(_, n)| n)
    }

    /// Every node with the file offset of the opcode that made it, in creation order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Node<'a>)> {
        self.nodes.iter().map(|(p, n)| (*p, n))
    }

    /// File offset of the opcode that made node `id`.
    pub fn pos(&self, id: NodeId) -> u64 {
        self.nodes.get(id as usize).map_or(0, |(p, _)| *p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dict_keeps_order_and_replaces_like_python() {
        let mut d = Dict::new(false);
        for i in 0..40 {
            assert!(d.set(Value::Int(i), Value::Int(i)));
        }
        // 1, 1.0 and True are one key; replacing keeps the first position.
        assert!(!d.set(Value::Float(1.0), Value::Str("x")));
        assert!(!d.set(Value::Bool(true), Value::Str("y")));
        assert!(!d.set(Value::Int(39), Value::None));
        assert!(d.set(Value::Str("1"), Value::None));
        assert_eq!(d.entries().len(), 41);
        assert_eq!(d.entries()[1], (Value::Int(1), Value::Str("y")));
        assert_eq!(d.entries()[39].1, Value::None);
        let mut small = Dict::new(true);
        small.set(Value::Str("a"), Value::Int(1));
        small.set(Value::Str("a"), Value::Int(2));
        assert_eq!(small.entries(), &[(Value::Str("a"), Value::Int(2))]);
    }
}
