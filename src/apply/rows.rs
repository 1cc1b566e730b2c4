//! Row images as parameter values: the text of each column, borrowed from the received
//! message (no copy on the per-row path); NULL as `None`. `sync` streams in text format,
//! so a binary value is refused, and an unchanged TOASTed value (`u`) is never a value:
//! it is left out of what an update sets, or, under REPLICA IDENTITY FULL, taken from
//! the old row.

use crate::error::{Error, Result};
use crate::pgoutput::{ColumnRef, OldTuple, TupleData};

/// The text of a column value of `table`; `None` for NULL.
pub fn text<'a>(c: ColumnRef<'a>, table: &str) -> Result<Option<&'a [u8]>> {
    match c {
        ColumnRef::Null => Ok(None),
        ColumnRef::Text(b) => Ok(Some(b)),
        ColumnRef::Binary(_) => Err(Error::Config(format!(
            "a column of {table} arrived in binary format, which sync does not apply; run it without --binary on"
        ))),
        ColumnRef::UnchangedToast => Err(Error::Config(format!(
            "a column of {table}: an unchanged TOAST value where a full value was needed"
        ))),
    }
}

/// The values at `positions` of `cols`.
pub fn values<'a>(
    cols: &[ColumnRef<'a>],
    positions: &[usize],
    table: &str,
) -> Result<Vec<Option<&'a [u8]>>> {
    positions.iter().map(|&i| text(cols[i], table)).collect()
}

/// An update's columns: the old image (a key, the whole old row, or the new row when
/// the key did not change) and the new one, with the positions it sets (every column but
/// unchanged TOAST, whose old value stays).
#[derive(Debug)]
pub struct UpdateImage<'a> {
    /// The columns of the row as it was: the old row under FULL, the key image, or the
    /// new row.
    pub old: Vec<ColumnRef<'a>>,
    /// The old image is the whole old row (REPLICA IDENTITY FULL).
    pub full: bool,
    /// The new row; under FULL, unchanged TOAST values filled from the old row.
    pub new: Vec<ColumnRef<'a>>,
    /// Positions the update sets.
    pub set: Vec<usize>,
}

impl<'a> UpdateImage<'a> {
    /// The image of an update with old image `old` and new row `new`, setting only the
    /// `writable` positions.
    pub fn new(old: Option<&'a OldTuple>, new: &'a TupleData, writable: &[usize]) -> Self {
        let mut new_cols: Vec<ColumnRef<'a>> = new.iter().collect();
        let (old_cols, full) = match old {
            Some(OldTuple::Old(o)) => (o.iter().collect::<Vec<_>>(), true),
            Some(OldTuple::Key(k)) => (k.iter().collect(), false),
            None => (new_cols.clone(), false),
        };
        if full {
            for (i, c) in new_cols.iter_mut().enumerate() {
                if matches!(c, ColumnRef::UnchangedToast)
                    && let Some(o) = old_cols.get(i)
                {
                    *c = *o;
                }
            }
        }
        let set = writable
            .iter()
            .copied()
            .filter(|&i| !matches!(new_cols[i], ColumnRef::UnchangedToast))
            .collect();
        UpdateImage {
            old: old_cols,
            full,
            new: new_cols,
            set,
        }
    }

    /// The new value at key position `i`: the old one where unchanged TOAST.
    pub fn new_key_value(&self, i: usize, table: &str) -> Result<Option<&'a [u8]>> {
        match self.new[i] {
            ColumnRef::UnchangedToast => text(self.old[i], table),
            c => text(c, table),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgoutput::Column;
    use bytes::Bytes;

    fn tuple(cols: &[Column]) -> TupleData {
        TupleData::from_columns(cols)
    }

    #[test]
    fn unchanged_toast_is_not_set_and_under_full_comes_from_the_old_row() {
        let t = |s: &str| Column::Text(Bytes::copy_from_slice(s.as_bytes()));
        let new = tuple(&[t("1"), Column::UnchangedToast, t("x")]);
        let key_only = UpdateImage::new(None, &new, &[0, 1, 2]);
        assert_eq!(key_only.set, vec![0, 2]);
        assert!(!key_only.full);
        let old = OldTuple::Old(tuple(&[t("1"), t("big"), t("w")]));
        let full = UpdateImage::new(Some(&old), &new, &[0, 1, 2]);
        assert_eq!(full.set, vec![0, 1, 2]);
        assert_eq!(text(full.new[1], "t").unwrap(), Some(&b"big"[..]));
        assert_eq!(full.new_key_value(0, "t").unwrap(), Some(&b"1"[..]));
        // A column the destination generates is not set.
        assert_eq!(UpdateImage::new(None, &new, &[0]).set, vec![0]);
    }

    #[test]
    fn binary_values_and_unchanged_toast_are_refused_as_values() {
        assert!(text(ColumnRef::Binary(b"\x01"), "s.t").is_err());
        let e = text(ColumnRef::UnchangedToast, "s.t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("s.t"), "{e}");
        assert_eq!(text(ColumnRef::Null, "s.t").unwrap(), None);
    }
}
