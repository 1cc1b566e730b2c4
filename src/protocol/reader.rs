//! A checked reader over one message body, and [`DecodeError`], the one error type of the
//! sans-I/O core.
//!
//! Every read is bounds-checked and reports the byte offset at which it failed, counted
//! from the start of the body the reader was made for (the byte after the message tag
//! for pgoutput, the first payload byte for CopyData). Nothing is allocated from a length
//! or count read from the wire: lengths are compared with what remains first, and values
//! come out as [`Bytes`] slices of the input, never copies.

use bytes::{Buf, Bytes};

use crate::lsn::Lsn;

/// What was wrong with the bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The body ended before a field was complete.
    #[error("body ends early: {needed} more byte(s) needed for {what}, {remaining} remain")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Bytes that field needs.
        needed: usize,
        /// Bytes left in the body.
        remaining: usize,
    },
    /// Bytes are left over after the last field of a message.
    #[error("{0} unexpected byte(s) after the end of the message")]
    TrailingBytes(usize),
    /// The message type byte is not one this decoder knows.
    #[error("unknown message type {0}")]
    UnknownTag(TagByte),
    /// A field holds a value the protocol does not allow.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// What was found.
        detail: String,
    },
    /// A NUL-terminated string has no terminator.
    #[error("{0} has no NUL terminator")]
    UnterminatedString(&'static str),
    /// A string is not UTF-8 (pgsub asks the server for `client_encoding=UTF8`).
    #[error("{0} is not valid UTF-8")]
    InvalidUtf8(&'static str),
    /// A frame announces more bytes than pgsub accepts.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Announced length.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The message is empty.
    #[error("empty message")]
    Empty,
}

/// A message type byte, printed as a character when it is printable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagByte(pub u8);

impl std::fmt::Display for TagByte {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_ascii_graphic() {
            write!(f, "'{}' (0x{:02x})", self.0 as char, self.0)
        } else {
            write!(f, "0x{:02x}", self.0)
        }
    }
}

/// Bytes that do not form a valid message, with the offset where that became clear.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} (at byte {offset})")]
pub struct DecodeError {
    /// Offset into the body where decoding failed.
    pub offset: usize,
    /// What was wrong.
    pub kind: DecodeErrorKind,
}

impl DecodeError {
    /// Shifts the offset by `base`, for errors of a body nested inside a larger one.
    pub fn shifted(mut self, base: usize) -> Self {
        self.offset += base;
        self
    }
}

/// A cursor over a message body. All reads are checked; none panics.
#[derive(Debug, Clone)]
pub struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    /// A reader positioned at the first byte of `buf`.
    pub fn new(buf: Bytes) -> Self {
        Reader { buf, pos: 0 }
    }

    /// The offset of the next byte to read.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// An error of `kind` at the current offset.
    pub fn error(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            offset: self.pos,
            kind,
        }
    }

    /// An [`DecodeErrorKind::Invalid`] error at the current offset.
    pub fn invalid(&self, what: &'static str, detail: impl Into<String>) -> DecodeError {
        self.error(DecodeErrorKind::Invalid {
            what,
            detail: detail.into(),
        })
    }

    fn need(&self, n: usize, what: &'static str) -> Result<(), DecodeError> {
        if self.remaining() < n {
            return Err(self.error(DecodeErrorKind::Truncated {
                what,
                needed: n,
                remaining: self.remaining(),
            }));
        }
        Ok(())
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        self.need(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[self.pos..self.pos + N]);
        self.pos += N;
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    /// A big-endian `Int16`.
    pub fn i16(&mut self, what: &'static str) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array(what)?))
    }

    /// A big-endian `Int32`, read as unsigned (OIDs, xids).
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    /// A big-endian `Int32`.
    pub fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }

    /// A big-endian `Int64`.
    pub fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }

    /// An `Int64` WAL position.
    pub fn lsn(&mut self, what: &'static str) -> Result<Lsn, DecodeError> {
        Ok(Lsn(u64::from_be_bytes(self.array(what)?)))
    }

    /// `n` bytes as a zero-copy slice.
    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        self.need(n, what)?;
        let out = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(out)
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize, what: &'static str) -> Result<(), DecodeError> {
        self.need(n, what)?;
        self.pos += n;
        Ok(())
    }

    /// Everything that is left, as a zero-copy slice.
    pub fn rest(&mut self) -> Bytes {
        let out = self.buf.slice(self.pos..);
        self.pos = self.buf.len();
        out
    }

    /// Everything that is left, taking the buffer over: no reference count is touched,
    /// which matters on the per-message hot path. The reader is left empty.
    pub fn take_rest(&mut self) -> Bytes {
        let mut buf = std::mem::take(&mut self.buf);
        buf.advance(self.pos);
        self.pos = 0;
        buf
    }

    /// The unread bytes, borrowed.
    pub fn remaining_slice(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// A NUL-terminated string without its terminator, as a zero-copy slice.
    pub fn cstr_bytes(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let rest = &self.buf[self.pos..];
        let Some(nul) = rest.iter().position(|&b| b == 0) else {
            return Err(self.error(DecodeErrorKind::UnterminatedString(what)));
        };
        let out = self.buf.slice(self.pos..self.pos + nul);
        self.pos += nul + 1;
        Ok(out)
    }

    /// A NUL-terminated UTF-8 string.
    pub fn cstr(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let start = self.pos;
        let raw = self.cstr_bytes(what)?;
        match std::str::from_utf8(&raw) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(DecodeError {
                offset: start,
                kind: DecodeErrorKind::InvalidUtf8(what),
            }),
        }
    }

    /// Fails unless every byte has been read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(self.error(DecodeErrorKind::TrailingBytes(n))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_read_reports_field_offset_and_sizes() {
        let mut r = Reader::new(Bytes::from_static(b"\x00\x01\x02"));
        assert_eq!(r.u8("flags").unwrap(), 0);
        let err = r.i32("relid").unwrap_err();
        assert_eq!(err.offset, 1);
        assert_eq!(
            err.kind,
            DecodeErrorKind::Truncated {
                what: "relid",
                needed: 4,
                remaining: 2
            }
        );
    }

    #[test]
    fn failed_read_consumes_nothing() {
        let mut r = Reader::new(Bytes::from_static(b"\x00\x01"));
        assert!(r.i64("lsn").is_err());
        assert_eq!(r.offset(), 0);
        assert_eq!(r.i16("n").unwrap(), 1);
    }

    #[test]
    fn cstr_without_terminator_is_an_error() {
        let mut r = Reader::new(Bytes::from_static(b"abc"));
        assert_eq!(
            r.cstr("name").unwrap_err().kind,
            DecodeErrorKind::UnterminatedString("name")
        );
    }

    #[test]
    fn cstr_with_invalid_utf8_names_its_offset() {
        let mut r = Reader::new(Bytes::from_static(b"ok\0\xff\xfe\0"));
        assert_eq!(r.cstr("first").unwrap(), "ok");
        let err = r.cstr("second").unwrap_err();
        assert_eq!(
            (err.offset, err.kind),
            (3, DecodeErrorKind::InvalidUtf8("second"))
        );
    }

    #[test]
    fn huge_length_is_refused_without_allocating() {
        let mut r = Reader::new(Bytes::from_static(b"xy"));
        let err = r.bytes(usize::MAX, "value").unwrap_err();
        assert!(matches!(err.kind, DecodeErrorKind::Truncated { .. }));
    }

    #[test]
    fn take_rest_keeps_the_offset_and_empties_the_reader() {
        let input = Bytes::from(vec![1u8, 2, 3, 4]);
        let mut r = Reader::new(input.clone());
        r.u8("a").unwrap();
        let rest = r.take_rest();
        assert_eq!(&rest[..], &[2, 3, 4]);
        assert_eq!(rest.as_ptr(), input[1..].as_ptr());
        assert_eq!(r.remaining(), 0);
        r.finish().unwrap();
    }

    #[test]
    fn finish_reports_trailing_bytes() {
        let mut r = Reader::new(Bytes::from_static(b"\x01\x02\x03"));
        r.u8("a").unwrap();
        assert_eq!(
            r.finish().unwrap_err().kind,
            DecodeErrorKind::TrailingBytes(2)
        );
    }

    #[test]
    fn slices_share_the_input_buffer() {
        let input = Bytes::from(vec![1u8, 2, 3, 4]);
        let mut r = Reader::new(input.clone());
        let s = r.bytes(2, "v").unwrap();
        assert_eq!(s.as_ptr(), input.as_ptr());
    }
}
