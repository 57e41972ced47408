//! A pickle reader that builds values and never runs anything.
//!
//! It understands the opcodes `torch.save` emits (protocols 2–5) and only the globals of
//! [`globals`]' allow-list; a pickle naming any other global stops at that opcode with
//! [`crate::Error::UnsafePickle`]. `REDUCE`, `BUILD` and persistent ids are interpreted
//! by [`calls`] for those globals alone, so the result is a tree of plain values,
//! storages and tensor views. Stack, marks, memo, nodes and container sizes are capped.

mod calls;
pub mod globals;
mod reader;
mod stack;
pub mod values;

use self::reader::{long_to_i64, op, Reader};
use self::stack::State;
pub use self::values::{Arena, Dict, Node, NodeId, Storage, TensorSpec, Value};
use crate::error::{Error, FileRef, Result};
use crate::pytorch::{limit, malformed, truncated};

/// Most values on the stack at once (`torch.save` batches containers by 1000).
pub const MAX_STACK: u64 = 1 << 20;
/// Deepest nesting of `MARK`s.
pub const MAX_MARKS: u64 = 1 << 12;
/// Most containers, storages and tensors one pickle may build (about ten per tensor).
pub const MAX_NODES: u64 = 1 << 21;
/// Most elements in all containers together.
pub const MAX_ELEMENTS: u64 = 1 << 22;
/// Most memo entries.
pub const MAX_MEMO: u64 = 1 << 21;

/// Reads pickles out of one byte region; the nodes of every pickle read stay in its arena.
pub struct Vm<'a> {
    bytes: &'a [u8],
    base: u64,
    arena: Arena<'a>,
    elements: u64,
}

impl<'a> Vm<'a> {
    /// A reader over `bytes`, which start at file offset `base`.
    pub fn new(bytes: &'a [u8], base: u64) -> Self {
        Vm {
            bytes,
            base,
            arena: Arena::default(),
            elements: 0,
        }
    }

    /// The nodes built so far.
    pub fn arena(&self) -> &Arena<'a> {
        &self.arena
    }

    /// Elements put into containers so far.
    pub fn elements(&self) -> u64 {
        self.elements
    }

    pub(crate) fn node(&mut self, pos: u64, node: Node<'a>) -> Result<Value<'a>> {
        limit(
            "pickle objects",
            pos,
            self.arena.len() as u64 + 1,
            MAX_NODES,
        )?;
        Ok(Value::Node(self.arena.push(pos, node)))
    }

    pub(crate) fn count_elements(&mut self, pos: u64, n: usize) -> Result<()> {
        self.elements = self.elements.saturating_add(n as u64);
        limit(
            "pickle container elements",
            pos,
            self.elements,
            MAX_ELEMENTS,
        )
    }

    /// Read one pickle starting at `start`; returns its value and where it ended (after `STOP`).
    pub fn load(&mut self, start: usize) -> Result<(Value<'a>, usize)> {
        let mut r = Reader::new(self.bytes, start, self.base);
        let mut st = State::default();
        loop {
            let pos = r.file_pos();
            if r.remaining() == 0 {
                return Err(truncated("pickle (no STOP opcode)", pos, 1, 0));
            }
            let code = r.u8("opcode")?;
            if code == op::STOP {
                return Ok((st.pop(pos)?, r.pos()));
            }
            self.step(&mut r, &mut st, pos, code)?;
        }
    }

    fn step(&mut self, r: &mut Reader<'a>, st: &mut State<'a>, pos: u64, code: u8) -> Result<()> {
        let value = match code {
            op::PROTO => {
                let version = r.u8("protocol version")?;
                if version > 5 {
                    return Err(malformed(pos, format!("pickle protocol {version}")));
                }
                return Ok(());
            }
            op::FRAME => {
                let len = r.u64("frame length")?;
                let available = r.remaining() as u64;
                if len > available {
                    return Err(truncated("pickle frame", r.file_pos(), len, available));
                }
                return Ok(());
            }
            op::MARK => {
                limit(
                    "pickle MARK nesting",
                    pos,
                    st.marks.len() as u64 + 1,
                    MAX_MARKS,
                )?;
                st.marks.push(st.stack.len());
                return Ok(());
            }
            op::POP => {
                if st.stack.len() > st.floor() {
                    st.stack.pop();
                } else {
                    st.pop_mark(pos)?;
                }
                return Ok(());
            }
            op::POP_MARK => {
                st.pop_mark(pos)?;
                return Ok(());
            }
            op::DUP => st.top(pos)?,
            op::NONE => Value::None,
            op::NEWTRUE => Value::Bool(true),
            op::NEWFALSE => Value::Bool(false),
            op::BININT => Value::Int(i64::from(r.i32("BININT")?)),
            op::BININT1 => Value::Int(i64::from(r.u8("BININT1")?)),
            op::BININT2 => Value::Int(i64::from(r.u16("BININT2")?)),
            op::LONG1 => {
                let n = r.u8("LONG1 length")?;
                long(r.take(u64::from(n), "LONG1")?)
            }
            op::LONG4 => {
                let n = r.i32("LONG4 length")?;
                let n = u64::try_from(n).map_err(|_| malformed(pos, "negative LONG4 length"))?;
                long(r.take(n, "LONG4")?)
            }
            op::BINFLOAT => Value::Float(r.f64_be("BINFLOAT")?),
            op::SHORT_BINUNICODE => {
                let n = r.u8("string length")?;
                Value::Str(r.text(u64::from(n), "string")?)
            }
            op::BINUNICODE => {
                let n = r.u32("string length")?;
                Value::Str(r.text(u64::from(n), "string")?)
            }
            op::BINUNICODE8 => {
                let n = r.u64("string length")?;
                Value::Str(r.text(n, "string")?)
            }
            op::SHORT_BINSTRING => {
                let n = r.u8("string length")?;
                py2_string(r.take(u64::from(n), "string")?)
            }
            op::BINSTRING => {
                let n = r.i32("string length")?;
                let n = u64::try_from(n).map_err(|_| malformed(pos, "negative string length"))?;
                py2_string(r.take(n, "string")?)
            }
            op::SHORT_BINBYTES => {
                let n = r.u8("bytes length")?;
                Value::Bytes(r.take(u64::from(n), "bytes")?)
            }
            op::BINBYTES => {
                let n = r.u32("bytes length")?;
                Value::Bytes(r.take(u64::from(n), "bytes")?)
            }
            op::BINBYTES8 | op::BYTEARRAY8 => {
                let n = r.u64("bytes length")?;
                Value::Bytes(r.take(n, "bytes")?)
            }
            op::EMPTY_DICT => self.node(pos, Node::Dict(Box::new(Dict::new(false))))?,
            op::EMPTY_LIST => self.node(pos, Node::List(Vec::new()))?,
            op::EMPTY_TUPLE => self.node(pos, Node::Tuple(Vec::new()))?,
            op::EMPTY_SET => self.node(pos, Node::Set(Vec::new()))?,
            op::TUPLE | op::LIST | op::FROZENSET | op::DICT => {
                let items = st.pop_mark(pos)?;
                self.count_elements(pos, items.len())?;
                let node = match code {
                    op::TUPLE => Node::Tuple(items),
                    op::LIST => Node::List(items),
                    op::FROZENSET => Node::Set(items),
                    _ => Node::Dict(Box::new(Self::dict_from(pos, &items)?)),
                };
                self.node(pos, node)?
            }
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let n = usize::from(code - op::TUPLE1) + 1;
                let mut items = vec![Value::None; n];
                for slot in items.iter_mut().rev() {
                    *slot = st.pop(pos)?;
                }
                self.count_elements(pos, n)?;
                self.node(pos, Node::Tuple(items))?
            }
            op::APPEND | op::APPENDS | op::ADDITEMS | op::SETITEM | op::SETITEMS => {
                // The items are the top of the stack (from the last MARK for the batch
                // opcodes); the container sits just below them.
                let from =
                    match code {
                        op::APPEND => st.stack.len().checked_sub(1),
                        op::SETITEM => st.stack.len().checked_sub(2),
                        _ => Some(st.marks.pop().ok_or_else(|| {
                            malformed(pos, "opcode needs a MARK but none is open")
                        })?),
                    };
                let Some(from) = from.filter(|&f| f > st.floor()) else {
                    return Err(malformed(pos, "pickle stack underflow"));
                };
                let target = st.stack[from - 1];
                return self.extend(pos, code, target, st.stack.drain(from..));
            }
            op::BINPUT => return st.memo_put(pos, u32::from(r.u8("memo index")?)),
            op::LONG_BINPUT => return st.memo_put(pos, r.u32("memo index")?),
            op::MEMOIZE => {
                let index = u32::try_from(st.memo_len())
                    .map_err(|_| malformed(pos, "memo index overflow"))?;
                return st.memo_put(pos, index);
            }
            op::BINGET => st.memo_get(pos, u32::from(r.u8("memo index")?))?,
            op::LONG_BINGET => st.memo_get(pos, r.u32("memo index")?)?,
            op::GLOBAL | op::INST => {
                let module = r.line("global module")?;
                let name = r.line("global name")?;
                let global = allowed(pos, module, name)?;
                if code == op::INST {
                    return Err(malformed(
                        pos,
                        format!("INST {} is not written by torch.save", global.name()),
                    ));
                }
                Value::Global(global)
            }
            op::STACK_GLOBAL => {
                let name = st.pop(pos)?;
                let module = st.pop(pos)?;
                let (Value::Str(module), Value::Str(name)) = (module, name) else {
                    return Err(malformed(pos, "STACK_GLOBAL needs two strings"));
                };
                Value::Global(allowed(pos, module, name)?)
            }
            op::REDUCE => {
                let args = st.pop(pos)?;
                let callable = st.pop(pos)?;
                self.reduce(pos, callable, args)?
            }
            op::NEWOBJ | op::NEWOBJ_EX => {
                if code == op::NEWOBJ_EX {
                    st.pop(pos)?;
                }
                let _args = st.pop(pos)?;
                let class = st.pop(pos)?;
                self.new_object(pos, class)?
            }
            op::OBJ => {
                let items = st.pop_mark(pos)?;
                let class = items.first().copied().unwrap_or(Value::None);
                self.new_object(pos, class)?
            }
            op::BUILD => {
                let state = st.pop(pos)?;
                let target = st.top(pos)?;
                return self.build(pos, target, state);
            }
            op::BINPERSID => {
                let pid = st.pop(pos)?;
                self.persistent_load(pos, pid)?
            }
            other => {
                return Err(malformed(
                    pos,
                    format!("pickle opcode 0x{other:02x} is not one torch.save writes"),
                ))
            }
        };
        st.push(pos, value)
    }

    fn dict_from(pos: u64, items: &[Value<'a>]) -> Result<Dict<'a>> {
        if !items.len().is_multiple_of(2) {
            return Err(malformed(pos, "odd number of items for a dict"));
        }
        let mut dict = Dict::new(false);
        for pair in items.chunks_exact(2) {
            dict.set(pair[0], pair[1]);
        }
        Ok(dict)
    }

    /// `APPEND(S)`, `SETITEM(S)`, `ADDITEMS` into the container `target`.
    fn extend(
        &mut self,
        pos: u64,
        code: u8,
        target: Value<'a>,
        items: impl ExactSizeIterator<Item = Value<'a>>,
    ) -> Result<()> {
        let n = items.len();
        self.count_elements(pos, n)?;
        let node = match target {
            Value::Node(id) => self.arena.get_mut(id),
            _ => None,
        };
        match (code, node) {
            (op::APPEND | op::APPENDS, Some(Node::List(list))) => list.extend(items),
            (op::ADDITEMS, Some(Node::Set(set))) => set.extend(items),
            (op::SETITEM | op::SETITEMS, Some(Node::Dict(dict))) if n.is_multiple_of(2) => {
                let mut items = items;
                while let (Some(k), Some(v)) = (items.next(), items.next()) {
                    dict.set(k, v);
                }
            }
            _ => {
                return Err(malformed(
                    pos,
                    format!(
                        "opcode 0x{code:02x} cannot add {n} items to a {}",
                        target.kind(&self.arena)
                    ),
                ))
            }
        }
        Ok(())
    }
}

fn long(bytes: &[u8]) -> Value<'_> {
    long_to_i64(bytes).map_or(Value::BigInt(bytes), Value::Int)
}

/// A Python 2 `str`: text when it is UTF-8, bytes otherwise.
fn py2_string(bytes: &[u8]) -> Value<'_> {
    std::str::from_utf8(bytes).map_or(Value::Bytes(bytes), Value::Str)
}

/// The allow-listed global `module.name`, or the refusal naming it.
fn allowed(pos: u64, module: &str, name: &str) -> Result<globals::Global> {
    globals::resolve(module, name).ok_or_else(|| Error::UnsafePickle {
        file: FileRef::default(),
        offset: pos,
        global: globals::display_name(module, name),
    })
}
