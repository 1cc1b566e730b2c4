//! TupleData: the column values of a row image in Insert, Update and Delete.
//!
//! ```text
//! Int16 ncols, then per published column one of
//!   'n'                      NULL (or, in a 'K' key tuple, a placeholder for a non-key column)
//!   'u'                      unchanged TOASTed value: no data, keep what the destination has
//!   't' Int32 len, bytes     text output of the type
//!   'b' Int32 len, bytes     binary (typsend) output of the type
//! ```
//!
//! A [`TupleData`] is validated once when decoded and then keeps only the column count and
//! a slice of the message: iterating its [`Column`]s allocates nothing, and every value is
//! a [`Bytes`] slice of the frame that carried it.

use bytes::Bytes;

use crate::protocol::reader::{DecodeError, DecodeErrorKind, Reader};

/// One column value of a row image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    /// `'n'`: NULL; in a key tuple (`'K'`), also the placeholder for non-key columns.
    Null,
    /// `'u'`: an unchanged TOASTed value that was not sent.
    UnchangedToast,
    /// `'t'`: the value in text format.
    Text(Bytes),
    /// `'b'`: the value in binary format.
    Binary(Bytes),
}

/// The values of one row image, validated, stored as a slice of the message.
#[derive(Clone, PartialEq, Eq)]
pub struct TupleData {
    ncols: u16,
    data: Bytes,
}

/// Walks the TupleData at the start of `buf` (its column count included) and returns
/// the column count and the tuple's length in bytes. `base` is the offset of `buf` in the
/// message, for errors. Works on a borrowed slice: validating costs no reference counting.
fn measure(buf: &[u8], base: usize) -> Result<(u16, usize), DecodeError> {
    let err = |at: usize, kind: DecodeErrorKind| DecodeError {
        offset: base + at,
        kind,
    };
    let truncated = |at: usize, what: &'static str, needed: usize| {
        err(
            at,
            DecodeErrorKind::Truncated {
                what,
                needed,
                remaining: buf.len() - at,
            },
        )
    };
    let Some(count) = buf.get(..2) else {
        return Err(truncated(0, "tuple column count", 2));
    };
    let ncols = i16::from_be_bytes([count[0], count[1]]);
    if ncols < 0 {
        return Err(err(
            0,
            DecodeErrorKind::Invalid {
                what: "tuple column count",
                detail: ncols.to_string(),
            },
        ));
    }
    let mut at = 2;
    for _ in 0..ncols {
        let Some(&kind) = buf.get(at) else {
            return Err(truncated(at, "tuple column kind", 1));
        };
        match kind {
            b'n' | b'u' => at += 1,
            b't' | b'b' => {
                let Some(len) = buf.get(at + 1..at + 5) else {
                    return Err(truncated(at + 1, "tuple column length", 4));
                };
                let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
                if len < 0 {
                    return Err(err(
                        at + 1,
                        DecodeErrorKind::Invalid {
                            what: "tuple column length",
                            detail: len.to_string(),
                        },
                    ));
                }
                at += 5;
                if buf.len() - at < len as usize {
                    return Err(truncated(at, "tuple column value", len as usize));
                }
                at += len as usize;
            }
            other => {
                return Err(err(
                    at,
                    DecodeErrorKind::Invalid {
                        what: "tuple column kind",
                        detail: format!("{:?} (expected 'n', 'u', 't' or 'b')", other as char),
                    },
                ));
            }
        }
    }
    Ok((ncols as u16, at))
}

impl TupleData {
    /// Decodes a TupleData at the reader's position and advances past it.
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let (ncols, len) = measure(r.remaining_slice(), r.offset())?;
        r.skip(2, "tuple column count")?;
        let data = r.bytes(len - 2, "tuple data")?;
        Ok(TupleData { ncols, data })
    }

    /// Decodes a TupleData that must end exactly where the message ends, taking the rest
    /// of the reader's buffer over instead of slicing it (no reference counting).
    pub(crate) fn decode_last(r: &mut Reader) -> Result<Self, DecodeError> {
        let (ncols, len) = measure(r.remaining_slice(), r.offset())?;
        if len < r.remaining() {
            return Err(DecodeError {
                offset: r.offset() + len,
                kind: DecodeErrorKind::TrailingBytes(r.remaining() - len),
            });
        }
        r.skip(2, "tuple column count")?;
        Ok(TupleData {
            ncols,
            data: r.take_rest(),
        })
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        usize::from(self.ncols)
    }

    /// True when the tuple has no columns.
    pub fn is_empty(&self) -> bool {
        self.ncols == 0
    }

    /// The encoded column section (after the count), as received.
    pub fn raw(&self) -> &Bytes {
        &self.data
    }

    /// The column values in order.
    pub fn columns(&self) -> Columns {
        Columns {
            r: Reader::new(self.data.clone()),
            left: self.ncols,
        }
    }

    /// The column values in order, borrowed from the tuple: no reference counting, the
    /// fastest way to read values.
    pub fn iter(&self) -> ColumnRefs<'_> {
        ColumnRefs {
            buf: &self.data,
            left: self.ncols,
        }
    }

    /// Builds a tuple from values (tests, benchmarks and the encoder).
    pub fn from_columns(cols: &[Column]) -> Self {
        let mut data = bytes::BytesMut::new();
        for c in cols {
            super::encode::put_column(c, &mut data);
        }
        TupleData {
            ncols: u16::try_from(cols.len())
                .ok()
                .filter(|n| *n <= i16::MAX as u16)
                .expect("at most 32767 columns"),
            data: data.freeze(),
        }
    }
}

impl std::fmt::Debug for TupleData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.columns()).finish()
    }
}

/// Iterator over the columns of a [`TupleData`]; allocation-free.
#[derive(Debug, Clone)]
pub struct Columns {
    r: Reader,
    left: u16,
}

impl Iterator for Columns {
    type Item = Column;

    fn next(&mut self) -> Option<Column> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The bytes were validated by `TupleData::decode`; a failure here cannot happen,
        // and would end the iteration rather than panic.
        let col = match self.r.u8("kind").ok()? {
            b'n' => Column::Null,
            b'u' => Column::UnchangedToast,
            kind => {
                let len = self.r.i32("len").ok()?;
                let v = self.r.bytes(usize::try_from(len).ok()?, "value").ok()?;
                if kind == b't' {
                    Column::Text(v)
                } else {
                    Column::Binary(v)
                }
            }
        };
        Some(col)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::from(self.left), Some(usize::from(self.left)))
    }
}

impl ExactSizeIterator for Columns {}

/// One column value borrowed from a [`TupleData`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnRef<'a> {
    /// `'n'`
    Null,
    /// `'u'`
    UnchangedToast,
    /// `'t'`
    Text(&'a [u8]),
    /// `'b'`
    Binary(&'a [u8]),
}

/// Borrowing iterator over the columns of a [`TupleData`].
#[derive(Debug, Clone)]
pub struct ColumnRefs<'a> {
    buf: &'a [u8],
    left: u16,
}

impl<'a> Iterator for ColumnRefs<'a> {
    type Item = ColumnRef<'a>;

    fn next(&mut self) -> Option<ColumnRef<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Validated by `measure`; a short buffer ends the iteration instead of panicking.
        let (&kind, rest) = self.buf.split_first()?;
        match kind {
            b'n' | b'u' => {
                self.buf = rest;
                Some(if kind == b'n' {
                    ColumnRef::Null
                } else {
                    ColumnRef::UnchangedToast
                })
            }
            _ => {
                let (len, rest) = rest.split_first_chunk::<4>()?;
                let len = usize::try_from(i32::from_be_bytes(*len)).ok()?;
                let value = rest.get(..len)?;
                self.buf = &rest[len..];
                Some(if kind == b't' {
                    ColumnRef::Text(value)
                } else {
                    ColumnRef::Binary(value)
                })
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::from(self.left), Some(usize::from(self.left)))
    }
}

impl ExactSizeIterator for ColumnRefs<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(b: &'static [u8]) -> Result<TupleData, DecodeError> {
        TupleData::decode(&mut Reader::new(Bytes::from_static(b)))
    }

    #[test]
    fn every_column_kind_decodes() {
        let t = decode(b"\0\x04nut\0\0\0\x02hib\0\0\0\x01\xff").unwrap();
        let cols: Vec<_> = t.columns().collect();
        assert_eq!(
            cols,
            vec![
                Column::Null,
                Column::UnchangedToast,
                Column::Text(Bytes::from_static(b"hi")),
                Column::Binary(Bytes::from_static(b"\xff")),
            ]
        );
    }

    #[test]
    fn unknown_column_kind_is_invalid_at_its_offset() {
        let err = decode(b"\0\x02nx").unwrap_err();
        assert_eq!(err.offset, 3);
    }

    #[test]
    fn value_length_past_the_end_is_truncated_not_allocated() {
        let err = decode(b"\0\x01t\x7f\xff\xff\xff").unwrap_err();
        assert!(matches!(
            err.kind,
            crate::protocol::reader::DecodeErrorKind::Truncated { .. }
        ));
    }

    #[test]
    fn negative_value_length_is_invalid() {
        assert!(decode(b"\0\x01t\xff\xff\xff\xff").is_err());
    }

    #[test]
    fn negative_column_count_is_invalid() {
        assert!(decode(b"\xff\xff").is_err());
    }

    #[test]
    fn more_columns_announced_than_present_is_truncated() {
        assert!(decode(b"\0\x03nn").is_err());
    }

    #[test]
    fn borrowed_and_owned_iteration_agree() {
        let t = decode(b"\0\x04nut\0\0\0\x02hib\0\0\0\x01\xff").unwrap();
        let borrowed: Vec<_> = t.iter().collect();
        assert_eq!(
            borrowed,
            vec![
                ColumnRef::Null,
                ColumnRef::UnchangedToast,
                ColumnRef::Text(b"hi"),
                ColumnRef::Binary(b"\xff"),
            ]
        );
        assert_eq!(t.iter().len(), t.columns().len());
    }

    #[test]
    fn decode_last_refuses_bytes_after_the_tuple() {
        let mut r = Reader::new(Bytes::from_static(b"\0\x01nX"));
        let err = TupleData::decode_last(&mut r).unwrap_err();
        assert_eq!(
            (err.offset, err.kind),
            (3, DecodeErrorKind::TrailingBytes(1))
        );
    }

    #[test]
    fn from_columns_round_trips() {
        let cols = vec![Column::Text(Bytes::from_static(b"x")), Column::Null];
        let t = TupleData::from_columns(&cols);
        assert_eq!(t.columns().collect::<Vec<_>>(), cols);
    }
}
