//! Opcode bytes and a bounds-checked reader over a pickle's bytes. Every length is checked
//! against the bytes present before anything is sliced, so a claimed size can never cause
//! an allocation or a read past the end.

use crate::error::Result;
use crate::pytorch::{malformed, truncated};

/// The opcodes the reader understands (names as in the `pickletools` module of `CPython`).
pub mod op {
    pub const PROTO: u8 = 0x80;
    pub const FRAME: u8 = 0x95;
    pub const STOP: u8 = b'.';
    pub const MARK: u8 = b'(';
    pub const POP: u8 = b'0';
    pub const POP_MARK: u8 = b'1';
    pub const DUP: u8 = b'2';
    pub const NONE: u8 = b'N';
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const LONG1: u8 = 0x8a;
    pub const LONG4: u8 = 0x8b;
    pub const BINFLOAT: u8 = b'G';
    pub const BINUNICODE: u8 = b'X';
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE8: u8 = 0x8d;
    pub const BINSTRING: u8 = b'T';
    pub const SHORT_BINSTRING: u8 = b'U';
    pub const BINBYTES: u8 = b'B';
    pub const SHORT_BINBYTES: u8 = b'C';
    pub const BINBYTES8: u8 = 0x8e;
    pub const BYTEARRAY8: u8 = 0x96;
    pub const EMPTY_DICT: u8 = b'}';
    pub const EMPTY_LIST: u8 = b']';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const EMPTY_SET: u8 = 0x8f;
    pub const DICT: u8 = b'd';
    pub const LIST: u8 = b'l';
    pub const TUPLE: u8 = b't';
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const FROZENSET: u8 = 0x91;
    pub const APPEND: u8 = b'a';
    pub const APPENDS: u8 = b'e';
    pub const SETITEM: u8 = b's';
    pub const SETITEMS: u8 = b'u';
    pub const ADDITEMS: u8 = 0x90;
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const MEMOIZE: u8 = 0x94;
    pub const BINGET: u8 = b'h';
    pub const LONG_BINGET: u8 = b'j';
    pub const GLOBAL: u8 = b'c';
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const INST: u8 = b'i';
    pub const OBJ: u8 = b'o';
    pub const REDUCE: u8 = b'R';
    pub const BUILD: u8 = b'b';
    pub const NEWOBJ: u8 = 0x81;
    pub const NEWOBJ_EX: u8 = 0x92;
    pub const BINPERSID: u8 = b'Q';
}

/// Longest `GLOBAL` module or name line.
const MAX_LINE: usize = 1024;

/// A position in a pickle; `base` is the file offset of `bytes[0]`.
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    base: u64,
}

impl<'a> Reader<'a> {
    /// A reader at `pos` in `bytes`, which start at file offset `base`.
    pub fn new(bytes: &'a [u8], pos: usize, base: u64) -> Self {
        Reader { bytes, pos, base }
    }

    /// Position in `bytes`.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// File offset of the current position.
    pub fn file_pos(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    /// The next `n` bytes, after checking they are there.
    pub fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        let available = self.remaining() as u64;
        if n > available {
            return Err(truncated(what, self.file_pos(), n, available));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let b = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// A little-endian `i32`.
    pub fn i32(&mut self, what: &str) -> Result<i32> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A big-endian `f64` (`BINFLOAT`).
    pub fn f64_be(&mut self, what: &str) -> Result<f64> {
        Ok(f64::from_be_bytes(self.array(what)?))
    }

    /// A newline-terminated ASCII line (`GLOBAL` operands), without the newline.
    pub fn line(&mut self, what: &str) -> Result<&'a str> {
        let start = self.file_pos();
        let rest = &self.bytes[self.pos.min(self.bytes.len())..];
        let window = &rest[..rest.len().min(MAX_LINE + 1)];
        let Some(len) = window.iter().position(|&b| b == b'\n') else {
            return Err(malformed(
                start,
                format!("{what} is not a line of at most {MAX_LINE} bytes"),
            ));
        };
        let line = self.take(len as u64 + 1, what)?;
        std::str::from_utf8(&line[..len])
            .map_err(|_| malformed(start, format!("{what} is not UTF-8")))
    }

    /// `n` bytes that must be UTF-8 text.
    pub fn text(&mut self, n: u64, what: &str) -> Result<&'a str> {
        let start = self.file_pos();
        let raw = self.take(n, what)?;
        std::str::from_utf8(raw).map_err(|e| {
            malformed(
                start + e.valid_up_to() as u64,
                format!("{what} is not valid UTF-8"),
            )
        })
    }
}

/// The value of a `LONG1`/`LONG4` two's complement little-endian integer, if it fits `i64`.
pub fn long_to_i64(bytes: &[u8]) -> Option<i64> {
    let Some(&last) = bytes.last() else {
        return Some(0);
    };
    let fill = if last & 0x80 == 0 { 0x00 } else { 0xff };
    if bytes.len() > 8 {
        // Fits only when the extra bytes are sign extension of byte 7.
        let (low, high) = bytes.split_at(8);
        if high.iter().any(|&b| b != fill) || (low[7] ^ fill) & 0x80 != 0 {
            return None;
        }
    }
    let mut buf = [fill; 8];
    let n = bytes.len().min(8);
    buf[..n].copy_from_slice(&bytes[..n]);
    Some(i64::from_le_bytes(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longs() {
        assert_eq!(long_to_i64(&[]), Some(0));
        assert_eq!(long_to_i64(&[0xff]), Some(-1));
        assert_eq!(long_to_i64(&[0x80, 0x00]), Some(128));
        assert_eq!(long_to_i64(&[0xff; 12]), Some(-1));
        assert_eq!(long_to_i64(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0]), None);
        assert_eq!(
            long_to_i64(&[0, 0, 0, 0, 0, 0, 0, 0x80]),
            Some(i64::MIN),
            "8 bytes are taken as they are"
        );
        assert_eq!(long_to_i64(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0]), Some(1));
    }

    #[test]
    fn reads_are_bounded() {
        let mut r = Reader::new(b"ab\ncd", 0, 100);
        assert_eq!(r.line("module").unwrap(), "ab");
        assert!(r.line("name").is_err());
        assert!(r.take(u64::MAX, "x").is_err());
        assert_eq!(r.take(2, "x").unwrap(), b"cd");
        assert_eq!(r.file_pos(), 105);
    }
}
