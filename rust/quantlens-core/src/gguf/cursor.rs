//! A bounds-checked reader over GGUF header bytes in either byte order.

use crate::error::{Error, FileRef, Result};

pub(crate) const FORMAT: &str = "GGUF";

/// Byte order of a GGUF file, detected from its version field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endian {
    /// Little-endian: what every current writer produces.
    Little,
    /// Big-endian: written for s390x and similar hosts.
    Big,
}

impl Endian {
    /// `"little"` or `"big"`.
    pub fn name(self) -> &'static str {
        match self {
            Endian::Little => "little",
            Endian::Big => "big",
        }
    }
}

/// A position in a byte slice; every read checks the remaining length first.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    endian: Endian,
}

macro_rules! read_int {
    ($name:ident, $ty:ty) => {
        pub(crate) fn $name(&mut self, what: &str) -> Result<$ty> {
            let raw = self.take_array::<{ std::mem::size_of::<$ty>() }>(what)?;
            Ok(match self.endian {
                Endian::Little => <$ty>::from_le_bytes(raw),
                Endian::Big => <$ty>::from_be_bytes(raw),
            })
        }
    };
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8], pos: usize, endian: Endian) -> Self {
        Cursor { bytes, pos, endian }
    }

    pub(crate) fn pos(&self) -> u64 {
        self.pos as u64
    }

    pub(crate) fn endian(&self) -> Endian {
        self.endian
    }

    /// The bytes from the cursor to the end.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..).unwrap_or(&[])
    }

    pub(crate) fn remaining(&self) -> u64 {
        self.bytes.len().saturating_sub(self.pos) as u64
    }

    pub(crate) fn truncated(&self, what: &str, needed: u64) -> Error {
        Error::Truncated {
            file: FileRef::default(),
            format: FORMAT,
            what: what.to_owned(),
            offset: self.pos(),
            needed,
            available: self.remaining(),
        }
    }

    /// Skip `len` bytes, failing if the file ends first.
    pub(crate) fn skip(&mut self, len: u64, what: &str) -> Result<()> {
        if len > self.remaining() {
            return Err(self.truncated(what, len));
        }
        self.pos += len as usize;
        Ok(())
    }

    /// The next `len` bytes, failing if the file ends first.
    pub(crate) fn take(&mut self, len: u64, what: &str) -> Result<&'a [u8]> {
        let start = self.pos;
        self.skip(len, what)?;
        Ok(&self.bytes[start..self.pos])
    }

    /// The bytes of a span already checked to lie inside the buffer.
    pub(crate) fn take_span(&self, span: super::value::ByteSpan) -> &'a [u8] {
        span.slice(self.bytes)
    }

    fn take_array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let bytes = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    read_int!(u8, u8);
    read_int!(i8, i8);
    read_int!(u16, u16);
    read_int!(i16, i16);
    read_int!(u32, u32);
    read_int!(i32, i32);
    read_int!(u64, u64);
    read_int!(i64, i64);

    pub(crate) fn f32(&mut self, what: &str) -> Result<f32> {
        self.u32(what).map(f32::from_bits)
    }

    pub(crate) fn f64(&mut self, what: &str) -> Result<f64> {
        self.u64(what).map(f64::from_bits)
    }
}
