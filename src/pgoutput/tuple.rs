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

use crate::protocol::reader::{DecodeError, Reader};

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

impl TupleData {
    /// Decodes a TupleData at the reader's position and advances past it.
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let ncols = r.i16("tuple column count")?;
        if ncols < 0 {
            return Err(r.invalid("tuple column count", ncols.to_string()));
        }
        let mut probe = r.clone();
        let start = probe.offset();
        for _ in 0..ncols {
            match probe.u8("tuple column kind")? {
                b'n' | b'u' => {}
                b't' | b'b' => {
                    let len = probe.i32("tuple column length")?;
                    if len < 0 {
                        return Err(probe.invalid("tuple column length", len.to_string()));
                    }
                    probe.skip(len as usize, "tuple column value")?;
                }
                other => {
                    return Err(DecodeError {
                        offset: probe.offset() - 1,
                        kind: crate::protocol::reader::DecodeErrorKind::Invalid {
                            what: "tuple column kind",
                            detail: format!("{:?} (expected 'n', 'u', 't' or 'b')", other as char),
                        },
                    });
                }
            }
        }
        let data = r.bytes(probe.offset() - start, "tuple data")?;
        Ok(TupleData {
            ncols: ncols as u16,
            data,
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

    /// Builds a tuple from values (tests, benchmarks and the encoder).
    pub fn from_columns(cols: &[Column]) -> Self {
        let mut data = bytes::BytesMut::new();
        for c in cols {
            super::encode::put_column(c, &mut data);
        }
        TupleData {
            ncols: cols.len() as u16,
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
    fn from_columns_round_trips() {
        let cols = vec![Column::Text(Bytes::from_static(b"x")), Column::Null];
        let t = TupleData::from_columns(&cols);
        assert_eq!(t.columns().collect::<Vec<_>>(), cols);
    }
}
