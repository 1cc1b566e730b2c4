//! Runs of changes applied as one statement: consecutive inserts into one table become one
//! COPY; consecutive updates (or deletes) of one table, found by key, that set the same
//! columns become one `unnest` statement.
//!
//! A run ends — is flushed — before a change of another kind or table, of another shape
//! (other columns left unchanged), when a key repeats (the second change must see the
//! first: one set-based statement would apply both to the old row), and at size bounds.
//! Order is therefore exactly the source's order within a transaction, across runs.
//!
//! Within one set-based statement rows are changed in join order, not in source order.
//! That is unobservable only when nothing checks rows one at a time: a table with a row
//! trigger, or a unique index or exclusion constraint other than the key's own, gets
//! runs of one row ([`Run::new`]'s `max_rows`), applied one statement each in order.

use std::collections::HashSet;
use std::hash::BuildHasherDefault;

use super::sql::copy_text_value;
use super::values::{self, ValueArray, ValueFormat};
use crate::stream::relations::OidHasher;

/// Most rows in one run.
pub const MAX_RUN_ROWS: usize = 10_000;
/// Most bytes of values in one run.
pub const MAX_RUN_BYTES: usize = 8 << 20;

/// A key: the text of its values (`None` for NULL).
pub type Key<'a> = [Option<&'a [u8]>];

/// A 64-bit fingerprint of a key. Two different keys with the same fingerprint only end a
/// run early (one more statement), never change what is applied.
pub fn fingerprint(key: &Key<'_>) -> u64 {
    // FNV-1a over the values, each preceded by a marker of NULL or its length.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    for v in key {
        match v {
            None => eat(0xff),
            Some(v) => {
                for b in (v.len() as u32).to_le_bytes() {
                    eat(b);
                }
                for &b in *v {
                    eat(b);
                }
            }
        }
    }
    h
}

/// What a run holds.
#[derive(Debug, PartialEq, Eq, Clone)]
pub enum RunKind {
    /// Inserts, as COPY (text or binary, as the values came).
    Insert,
    /// Updates found by the key at the first positions, setting the columns at the
    /// second.
    Update(Vec<usize>, Vec<usize>),
    /// Deletes found by the key at these positions.
    Delete(Vec<usize>),
}

/// The pending run.
#[derive(Debug)]
pub struct Run {
    /// Source relation.
    pub relid: u32,
    /// Kind and shape.
    pub kind: RunKind,
    /// COPY rows (inserts): text lines, or binary tuples after the binary header.
    pub copy: Vec<u8>,
    /// One array per parameter (updates and deletes): key columns first.
    pub params: Vec<ValueArray>,
    /// The values' format.
    pub format: ValueFormat,
    /// Rows in the run.
    pub rows: usize,
    /// Bytes of values in the run.
    pub bytes: usize,
    max_rows: usize,
    keys: HashSet<u64, BuildHasherDefault<OidHasher>>,
}

impl Run {
    /// An empty run of `kind` for `relid` with values of `format`, one parameter array
    /// per type of `param_types` (the columns' type OIDs, for messages), holding at most
    /// `max_rows` rows (1 where order is observable).
    pub fn new(
        relid: u32,
        kind: RunKind,
        format: ValueFormat,
        param_types: &[u32],
        max_rows: usize,
    ) -> Self {
        let copy = if kind == RunKind::Insert && format == ValueFormat::Binary {
            values::COPY_BINARY_HEADER.to_vec()
        } else {
            Vec::new()
        };
        Run {
            relid,
            kind,
            copy,
            params: param_types
                .iter()
                .map(|&t| ValueArray::new(format, t))
                .collect(),
            format,
            rows: 0,
            bytes: 0,
            max_rows: max_rows.clamp(1, MAX_RUN_ROWS),
            keys: HashSet::default(),
        }
    }

    /// Whether a change of `kind` on `relid` touching the keys with these fingerprints
    /// may join this run.
    pub fn accepts(&self, relid: u32, kind: &RunKind, keys: &[u64]) -> bool {
        self.relid == relid
            && &self.kind == kind
            && self.rows < self.max_rows
            && self.bytes < MAX_RUN_BYTES
            && keys.iter().all(|k| !self.keys.contains(k))
    }

    /// Appends one COPY row.
    pub fn push_copy_row<'a>(
        &mut self,
        values: impl ExactSizeIterator<Item = Option<&'a [u8]>> + Clone,
    ) {
        if self.format == ValueFormat::Binary {
            self.bytes += values
                .clone()
                .map(|v| v.map_or(0, <[u8]>::len))
                .sum::<usize>();
            values::copy_binary_row(values, &mut self.copy);
            self.rows += 1;
            return;
        }
        for (i, v) in values.enumerate() {
            if i > 0 {
                self.copy.push(b'\t');
            }
            self.bytes += v.map_or(0, <[u8]>::len);
            copy_text_value(v, &mut self.copy);
        }
        self.copy.push(b'\n');
        self.rows += 1;
    }

    /// The COPY data of the run, ended as its format wants.
    pub fn copy_data(mut self) -> Vec<u8> {
        if self.format == ValueFormat::Binary {
            self.copy.extend_from_slice(values::COPY_BINARY_TRAILER);
        }
        self.copy
    }

    /// Appends one row of parameters, remembering the keys (fingerprints) it touches.
    pub fn push_params<'a>(
        &mut self,
        values: impl Iterator<Item = Option<&'a [u8]>>,
        keys: &[u64],
    ) {
        for (p, v) in self.params.iter_mut().zip(values) {
            self.bytes += v.map_or(0, <[u8]>::len);
            p.push(v);
        }
        self.keys.extend(keys);
        self.rows += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(v: &str) -> u64 {
        fingerprint(&[Some(v.as_bytes())])
    }

    #[test]
    fn repeated_key_ends_the_run() {
        let mut r = Run::new(
            1,
            RunKind::Delete(vec![0]),
            ValueFormat::Text,
            &[25],
            MAX_RUN_ROWS,
        );
        r.push_params([Some(&b"1"[..])].into_iter(), &[key("1")]);
        assert!(r.accepts(1, &RunKind::Delete(vec![0]), &[key("2")]));
        assert!(!r.accepts(1, &RunKind::Delete(vec![0]), &[key("1")]));
    }

    #[test]
    fn fingerprints_tell_null_empty_and_split_values_apart() {
        let f = |k: &[Option<&[u8]>]| fingerprint(k);
        assert_ne!(f(&[None]), f(&[Some(b"")]));
        assert_ne!(f(&[Some(b"ab"), Some(b"c")]), f(&[Some(b"a"), Some(b"bc")]));
        assert_eq!(f(&[Some(b"x"), None]), f(&[Some(b"x"), None]));
    }

    #[test]
    fn an_order_sensitive_table_gets_runs_of_one_row() {
        let mut r = Run::new(1, RunKind::Delete(vec![0]), ValueFormat::Text, &[25], 1);
        assert!(r.accepts(1, &RunKind::Delete(vec![0]), &[key("1")]));
        r.push_params([Some(&b"1"[..])].into_iter(), &[key("1")]);
        assert!(!r.accepts(1, &RunKind::Delete(vec![0]), &[key("2")]));
    }

    #[test]
    fn other_table_kind_or_shape_ends_the_run() {
        let r = Run::new(
            1,
            RunKind::Update(vec![0], vec![0, 1]),
            ValueFormat::Text,
            &[25, 25, 25],
            MAX_RUN_ROWS,
        );
        assert!(r.accepts(1, &RunKind::Update(vec![0], vec![0, 1]), &[]));
        assert!(!r.accepts(2, &RunKind::Update(vec![0], vec![0, 1]), &[]));
        assert!(!r.accepts(1, &RunKind::Update(vec![0], vec![0]), &[]));
        assert!(!r.accepts(1, &RunKind::Delete(vec![0]), &[]));
    }

    #[test]
    fn copy_rows_are_tab_separated_lines() {
        let mut r = Run::new(1, RunKind::Insert, ValueFormat::Text, &[], MAX_RUN_ROWS);
        r.push_copy_row([Some(&b"1"[..]), None, Some(b"a\tb")].into_iter());
        assert_eq!(r.copy, b"1\t\\N\ta\\tb\n");
        assert_eq!((r.rows, r.bytes), (1, 4));
    }

    #[test]
    fn binary_copy_rows_are_framed_tuples_between_header_and_trailer() {
        let mut r = Run::new(1, RunKind::Insert, ValueFormat::Binary, &[], MAX_RUN_ROWS);
        r.push_copy_row([Some(&b"\x00\x01"[..]), None].into_iter());
        assert_eq!((r.rows, r.bytes), (1, 2));
        let data = r.copy_data();
        let want: Vec<u8> = [
            values::COPY_BINARY_HEADER,
            &2i16.to_be_bytes(),
            &2i32.to_be_bytes(),
            b"\x00\x01",
            &(-1i32).to_be_bytes(),
            values::COPY_BINARY_TRAILER,
        ]
        .concat();
        assert_eq!(data, want);
    }

    #[test]
    fn size_bound_ends_the_run() {
        let mut r = Run::new(1, RunKind::Insert, ValueFormat::Text, &[], MAX_RUN_ROWS);
        r.rows = MAX_RUN_ROWS;
        assert!(!r.accepts(1, &RunKind::Insert, &[]));
    }
}
