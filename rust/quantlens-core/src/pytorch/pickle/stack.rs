//! The stack, marks and memo of one pickle. Pops never reach below the last `MARK`, as in
//! `CPython`, and every push and memo entry is counted against the caps.

use std::collections::HashMap;

use super::values::Value;
use super::{MAX_MEMO, MAX_STACK};
use crate::error::Result;
use crate::pytorch::{limit, malformed};

/// The stack, marks and memo of one pickle.
#[derive(Default)]
pub(super) struct State<'a> {
    pub(super) stack: Vec<Value<'a>>,
    pub(super) marks: Vec<usize>,
    memo: Memo<'a>,
}

/// Memo entries by index: a vector for the dense indices pickles use (0, 1, 2, …), a map
/// for any others, so a hostile index never sizes an allocation.
#[derive(Default)]
struct Memo<'a> {
    dense: Vec<Option<Value<'a>>>,
    sparse: HashMap<u32, Value<'a>>,
    count: usize,
}

impl<'a> Memo<'a> {
    fn get(&self, index: u32) -> Option<Value<'a>> {
        match self.dense.get(index as usize) {
            Some(slot) => *slot,
            None => self.sparse.get(&index).copied(),
        }
    }

    /// Store `value`; returns whether the entry is new.
    fn put(&mut self, index: u32, value: Value<'a>) -> bool {
        let i = index as usize;
        let new = if i < self.dense.len() {
            self.dense[i].replace(value).is_none()
        } else if i == self.dense.len() && !self.sparse.contains_key(&index) {
            self.dense.push(Some(value));
            true
        } else {
            self.sparse.insert(index, value).is_none()
        };
        self.count += usize::from(new);
        new
    }
}

impl<'a> State<'a> {
    pub(super) fn push(&mut self, pos: u64, value: Value<'a>) -> Result<()> {
        limit(
            "pickle stack depth",
            pos,
            self.stack.len() as u64 + 1,
            MAX_STACK,
        )?;
        self.stack.push(value);
        Ok(())
    }

    pub(super) fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    pub(super) fn pop(&mut self, pos: u64) -> Result<Value<'a>> {
        if self.stack.len() <= self.floor() {
            return Err(malformed(pos, "pickle stack underflow"));
        }
        self.stack
            .pop()
            .ok_or_else(|| malformed(pos, "pickle stack underflow"))
    }

    pub(super) fn top(&self, pos: u64) -> Result<Value<'a>> {
        match self.stack.last() {
            Some(&v) if self.stack.len() > self.floor() => Ok(v),
            _ => Err(malformed(pos, "pickle stack underflow")),
        }
    }

    /// The values pushed since the last `MARK`, removing the mark.
    pub(super) fn pop_mark(&mut self, pos: u64) -> Result<Vec<Value<'a>>> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| malformed(pos, "opcode needs a MARK but none is open"))?;
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    pub(super) fn memo_get(&self, pos: u64, index: u32) -> Result<Value<'a>> {
        self.memo
            .get(index)
            .ok_or_else(|| malformed(pos, format!("memo entry {index} was never stored")))
    }

    /// Entries in the memo (`MEMOIZE` stores at this index).
    pub(super) fn memo_len(&self) -> usize {
        self.memo.count
    }

    pub(super) fn memo_put(&mut self, pos: u64, index: u32) -> Result<()> {
        let value = self.top(pos)?;
        if self.memo.put(index, value) {
            limit("pickle memo size", pos, self.memo.count as u64, MAX_MEMO)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memo_is_dense_or_sparse_and_counts_entries() {
        let mut st = State::default();
        st.push(0, Value::Int(7)).unwrap();
        st.memo_put(0, 0).unwrap();
        st.memo_put(0, 1).unwrap();
        st.memo_put(0, u32::MAX).unwrap();
        st.memo_put(0, 1).unwrap();
        assert_eq!(st.memo_len(), 3);
        assert_eq!(st.memo_get(0, u32::MAX).unwrap(), Value::Int(7));
        assert!(st.memo_get(0, 2).is_err());
        // A mark hides the values below it.
        st.marks.push(st.stack.len());
        assert!(st.memo_put(0, 5).is_err());
        assert!(st.pop(0).is_err());
        assert!(st.pop_mark(0).unwrap().is_empty());
        assert_eq!(st.pop(0).unwrap(), Value::Int(7));
    }
}
