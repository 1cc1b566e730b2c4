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

use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::sql::copy_text_value;
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
    /// Inserts, as COPY text.
    Insert,
    /// Updates found by the key at the first positions, setting the columns at the
    /// second.
    Update(Vec<usize>, Vec<usize>),
    /// Deletes found by the key at these positions.
    Delete(Vec<usize>),
}

/// One `text[]` parameter of a run, kept in PostgreSQL's binary array format as values
/// arrive: one buffer per column, no allocation per value.
#[derive(Debug, Default)]
pub struct TextArray {
    elements: BytesMut,
    len: i32,
    has_null: bool,
}

impl TextArray {
    /// Appends a value (`None`: NULL).
    pub fn push(&mut self, v: Option<&[u8]>) {
        match v {
            None => {
                self.elements.put_i32(-1);
                self.has_null = true;
            }
            Some(v) => {
                self.elements.put_i32(v.len() as i32);
                self.elements.put_slice(v);
            }
        }
        self.len += 1;
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Bytes it holds, for bounding what is in flight.
    pub fn byte_len(&self) -> usize {
        self.elements.len()
    }

    /// The value at `index` (`Some(None)`: NULL), read back from the buffer: for
    /// messages about a run, off the per-row path.
    pub fn get(&self, index: usize) -> Option<Option<&[u8]>> {
        let mut at = 0usize;
        for i in 0..self.len() {
            let len_bytes: [u8; 4] = self.elements.get(at..at + 4)?.try_into().ok()?;
            let len = i32::from_be_bytes(len_bytes);
            at += 4;
            let value = if len < 0 {
                None
            } else {
                let v = self.elements.get(at..at + len as usize)?;
                at += len as usize;
                Some(v)
            };
            if i == index {
                return Some(value);
            }
        }
        None
    }
}

impl ToSql for TextArray {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        // ndim, has-null flag, element type, then the one dimension: length, lower bound.
        out.put_i32(1);
        out.put_i32(i32::from(self.has_null));
        out.put_u32(Type::TEXT.oid());
        out.put_i32(self.len);
        out.put_i32(1);
        out.put_slice(&self.elements);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TEXT_ARRAY
    }

    to_sql_checked!();
}

/// The pending run.
#[derive(Debug)]
pub struct Run {
    /// Source relation.
    pub relid: u32,
    /// Kind and shape.
    pub kind: RunKind,
    /// COPY text rows (inserts).
    pub copy: Vec<u8>,
    /// One text array per parameter (updates and deletes): key columns first.
    pub params: Vec<TextArray>,
    /// Rows in the run.
    pub rows: usize,
    /// Bytes of values in the run.
    pub bytes: usize,
    max_rows: usize,
    keys: HashSet<u64, BuildHasherDefault<OidHasher>>,
}

impl Run {
    /// An empty run of `kind` for `relid` with `nparams` parameter arrays, holding at
    /// most `max_rows` rows (1 where order is observable).
    pub fn new(relid: u32, kind: RunKind, nparams: usize, max_rows: usize) -> Self {
        Run {
            relid,
            kind,
            copy: Vec::new(),
            params: (0..nparams).map(|_| TextArray::default()).collect(),
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

    /// Appends one COPY text row.
    pub fn push_copy_row<'a>(&mut self, values: impl Iterator<Item = Option<&'a [u8]>>) {
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
        let mut r = Run::new(1, RunKind::Delete(vec![0]), 1, MAX_RUN_ROWS);
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
    fn text_array_is_postgres_binary_array_format() {
        let mut a = TextArray::default();
        a.push(Some(b"ab"));
        a.push(None);
        let mut out = BytesMut::new();
        a.to_sql(&Type::TEXT_ARRAY, &mut out).unwrap();
        let want: Vec<u8> = [
            &1i32.to_be_bytes()[..],
            &1i32.to_be_bytes(),
            &25u32.to_be_bytes(),
            &2i32.to_be_bytes(),
            &1i32.to_be_bytes(),
            &2i32.to_be_bytes(),
            b"ab",
            &(-1i32).to_be_bytes(),
        ]
        .concat();
        assert_eq!(&out[..], &want[..]);
        assert_eq!(a.len(), 2);
        assert_eq!(a.get(0), Some(Some(&b"ab"[..])));
        assert_eq!(a.get(1), Some(None));
        assert_eq!(a.get(2), None);
    }

    #[test]
    fn an_order_sensitive_table_gets_runs_of_one_row() {
        let mut r = Run::new(1, RunKind::Delete(vec![0]), 1, 1);
        assert!(r.accepts(1, &RunKind::Delete(vec![0]), &[key("1")]));
        r.push_params([Some(&b"1"[..])].into_iter(), &[key("1")]);
        assert!(!r.accepts(1, &RunKind::Delete(vec![0]), &[key("2")]));
    }

    #[test]
    fn other_table_kind_or_shape_ends_the_run() {
        let r = Run::new(1, RunKind::Update(vec![0], vec![0, 1]), 3, MAX_RUN_ROWS);
        assert!(r.accepts(1, &RunKind::Update(vec![0], vec![0, 1]), &[]));
        assert!(!r.accepts(2, &RunKind::Update(vec![0], vec![0, 1]), &[]));
        assert!(!r.accepts(1, &RunKind::Update(vec![0], vec![0]), &[]));
        assert!(!r.accepts(1, &RunKind::Delete(vec![0]), &[]));
    }

    #[test]
    fn copy_rows_are_tab_separated_lines() {
        let mut r = Run::new(1, RunKind::Insert, 0, MAX_RUN_ROWS);
        r.push_copy_row([Some(&b"1"[..]), None, Some(b"a\tb")].into_iter());
        assert_eq!(r.copy, b"1\t\\N\ta\\tb\n");
        assert_eq!((r.rows, r.bytes), (1, 4));
    }

    #[test]
    fn size_bound_ends_the_run() {
        let mut r = Run::new(1, RunKind::Insert, 0, MAX_RUN_ROWS);
        r.rows = MAX_RUN_ROWS;
        assert!(!r.accepts(1, &RunKind::Insert, &[]));
    }
}
