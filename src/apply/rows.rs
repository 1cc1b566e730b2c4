//! Row images as parameter values: the bytes of each column, borrowed from the received
//! message (no copy on the per-row path); NULL as `None`. Every value of a stream is in
//! the stream's format (text, or binary under `sync --binary`): one in the other is
//! refused, and an unchanged TOASTed value (`u`) is never a value: it is left out of what
//! an update sets, or, under REPLICA IDENTITY FULL, taken from the old row.

use super::target::Target;
use super::values::ValueFormat;
use crate::error::{Error, Result};
use crate::pgoutput::{ColumnRef, OldTuple, TupleData};

/// The bytes of a column value for `target`; `None` for NULL.
pub fn value<'a>(c: ColumnRef<'a>, target: &Target) -> Result<Option<&'a [u8]>> {
    match (c, target.format) {
        (ColumnRef::Null, _) => Ok(None),
        (ColumnRef::Text(b), ValueFormat::Text) | (ColumnRef::Binary(b), ValueFormat::Binary) => {
            Ok(Some(b))
        }
        (ColumnRef::Text(_) | ColumnRef::Binary(_), f) => Err(Error::Definite(format!(
            "a column of {} arrived in {} format in a stream of {} values",
            target.name,
            if f == ValueFormat::Text {
                "binary"
            } else {
                "text"
            },
            f.name()
        ))),
        (ColumnRef::UnchangedToast, _) => Err(Error::Config(format!(
            "a column of {}: an unchanged TOAST value where a full value was needed",
            target.name
        ))),
    }
}

/// The values at `positions` of `cols`.
pub fn values<'a>(
    cols: &[ColumnRef<'a>],
    positions: &[usize],
    target: &Target,
) -> Result<Vec<Option<&'a [u8]>>> {
    positions.iter().map(|&i| value(cols[i], target)).collect()
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
    pub fn new_key_value(&self, i: usize, target: &Target) -> Result<Option<&'a [u8]>> {
        match self.new[i] {
            ColumnRef::UnchangedToast => value(self.old[i], target),
            c => value(c, target),
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

    fn target(format: ValueFormat) -> Target {
        Target {
            table: "\"s\".\"t\"".into(),
            name: "s.t".into(),
            only: "ONLY ",
            cols: vec![],
            key: vec![0],
            full_key: None,
            order_sensitive: false,
            row_triggers: false,
            no_equality: vec![],
            format,
        }
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
        let text = target(ValueFormat::Text);
        assert_eq!(value(full.new[1], &text).unwrap(), Some(&b"big"[..]));
        assert_eq!(full.new_key_value(0, &text).unwrap(), Some(&b"1"[..]));
        // A column the destination generates is not set.
        assert_eq!(UpdateImage::new(None, &new, &[0]).set, vec![0]);
    }

    #[test]
    fn a_value_in_the_other_format_and_unchanged_toast_are_refused_as_values() {
        let (text, binary) = (target(ValueFormat::Text), target(ValueFormat::Binary));
        assert!(value(ColumnRef::Binary(b"\x01"), &text).is_err());
        assert!(value(ColumnRef::Text(b"1"), &binary).is_err());
        assert_eq!(
            value(ColumnRef::Binary(b"\x01"), &binary).unwrap(),
            Some(&b"\x01"[..])
        );
        let e = value(ColumnRef::UnchangedToast, &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("s.t"), "{e}");
        assert_eq!(value(ColumnRef::Null, &binary).unwrap(), None);
    }
}
