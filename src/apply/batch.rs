//! Runs of changes applied as one statement: consecutive inserts into one table become one
//! COPY; consecutive updates (or deletes) of one table, found by key, that set the same
//! columns become one `unnest` statement.
//!
//! A run ends — is flushed — before a change of another kind or table, of another shape
//! (other columns left unchanged), when a key repeats (the second change must see the
//! first: one set-based statement would apply both to the old row), and at size bounds.
//! Order is therefore exactly the source's order within a transaction.

use std::collections::HashSet;

use super::sql::copy_text_value;

/// Most rows in one run.
pub const MAX_RUN_ROWS: usize = 10_000;
/// Most bytes of values in one run.
pub const MAX_RUN_BYTES: usize = 8 << 20;

/// A key value tuple, as text.
pub type KeyTuple = Vec<Option<String>>;

/// What a run holds.
#[derive(Debug, PartialEq, Eq, Clone)]
pub enum RunKind {
    /// Inserts, as COPY text.
    Insert,
    /// Updates by key setting the columns at these positions.
    Update(Vec<usize>),
    /// Deletes by key.
    Delete,
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
    pub params: Vec<Vec<Option<String>>>,
    /// Rows in the run.
    pub rows: usize,
    /// Bytes of values in the run.
    pub bytes: usize,
    keys: HashSet<KeyTuple>,
}

impl Run {
    /// An empty run of `kind` for `relid` with `nparams` parameter arrays.
    pub fn new(relid: u32, kind: RunKind, nparams: usize) -> Self {
        Run {
            relid,
            kind,
            copy: Vec::new(),
            params: vec![Vec::new(); nparams],
            rows: 0,
            bytes: 0,
            keys: HashSet::new(),
        }
    }

    /// Whether a change of `kind` on `relid` touching `keys` may join this run.
    pub fn accepts(&self, relid: u32, kind: &RunKind, keys: &[&KeyTuple]) -> bool {
        self.relid == relid
            && &self.kind == kind
            && self.rows < MAX_RUN_ROWS
            && self.bytes < MAX_RUN_BYTES
            && keys.iter().all(|k| !self.keys.contains(*k))
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

    /// Appends one row of parameters, remembering the keys it touches.
    pub fn push_params(&mut self, values: Vec<Option<String>>, keys: Vec<KeyTuple>) {
        for (p, v) in self.params.iter_mut().zip(values) {
            self.bytes += v.as_ref().map_or(0, String::len);
            p.push(v);
        }
        self.keys.extend(keys);
        self.rows += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(v: &str) -> KeyTuple {
        vec![Some(v.to_owned())]
    }

    #[test]
    fn repeated_key_ends_the_run() {
        let mut r = Run::new(1, RunKind::Delete, 1);
        r.push_params(vec![Some("1".into())], vec![key("1")]);
        assert!(r.accepts(1, &RunKind::Delete, &[&key("2")]));
        assert!(!r.accepts(1, &RunKind::Delete, &[&key("1")]));
    }

    #[test]
    fn other_table_kind_or_shape_ends_the_run() {
        let r = Run::new(1, RunKind::Update(vec![0, 1]), 3);
        assert!(r.accepts(1, &RunKind::Update(vec![0, 1]), &[]));
        assert!(!r.accepts(2, &RunKind::Update(vec![0, 1]), &[]));
        assert!(!r.accepts(1, &RunKind::Update(vec![0]), &[]));
        assert!(!r.accepts(1, &RunKind::Delete, &[]));
    }

    #[test]
    fn copy_rows_are_tab_separated_lines() {
        let mut r = Run::new(1, RunKind::Insert, 0);
        r.push_copy_row([Some(&b"1"[..]), None, Some(b"a\tb")].into_iter());
        assert_eq!(r.copy, b"1\t\\N\ta\\tb\n");
        assert_eq!((r.rows, r.bytes), (1, 4));
    }

    #[test]
    fn size_bound_ends_the_run() {
        let mut r = Run::new(1, RunKind::Insert, 0);
        r.rows = MAX_RUN_ROWS;
        assert!(!r.accepts(1, &RunKind::Insert, &[]));
    }
}
