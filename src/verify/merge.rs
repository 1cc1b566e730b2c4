//! The row-by-row comparison: two streams of `(key, row hash)` sorted by key, merged.
//!
//! ```text
//!  source  ─ k1 h1 ─ k2 h2 ─ k4 h4 ─►   k1 = k1, h1 = h1   equal
//!                                      k2 = k2, h2 ≠ h2'  different
//!  dest    ─ k1 h1 ─ k2 h2'─ k3 h3 ─►   k3 only in dest    extra
//!                                      k4 only in source  missing
//! ```
//!
//! Only counts and at most `keep` differing keys are held, so memory stays bounded
//! whatever the table's size. Keys that repeat (a multiset, keyed by row hash) pair up
//! one to one. A stream out of order is an error, not a wrong report.

use std::cmp::Ordering;

use futures_util::{Stream, StreamExt};
use serde::Serialize;

use super::query::KeyOrder;

/// One row as read: its key values as text and the hash of the whole row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Key values (for a multiset, the row hash).
    pub key: Vec<String>,
    /// Row hash.
    pub hash: i64,
}

/// How a key differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    /// On the source, not on the destination.
    Missing,
    /// On the destination, not on the source.
    Extra,
    /// On both, with different values.
    Different,
}

/// A differing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    /// How.
    pub kind: DiffKind,
    /// The key (for a multiset, the row hash).
    pub key: Vec<String>,
}

/// What a merge found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Rows read on the source.
    pub source_rows: u64,
    /// Rows read on the destination.
    pub dest_rows: u64,
    /// Differing keys kept (at most `keep`).
    pub diffs: Vec<Diff>,
    /// Differing keys beyond `keep`, counted only.
    pub untracked: u64,
}

/// The merge failed: a side's read failed, or a side was not sorted as expected.
#[derive(Debug, thiserror::Error)]
pub enum MergeError<E> {
    /// Reading a side failed.
    #[error(transparent)]
    Read(E),
    /// Rows came out of order.
    #[error("the {side} returned key {later:?} after {earlier:?}, out of the expected order")]
    OutOfOrder {
        /// `source` or `destination`.
        side: &'static str,
        /// The key read first.
        earlier: Vec<String>,
        /// The key read next, which sorts before it.
        later: Vec<String>,
    },
}

struct Side<S> {
    name: &'static str,
    rows: S,
    head: Option<Entry>,
    count: u64,
}

impl<S, E> Side<S>
where
    S: Stream<Item = Result<Entry, E>> + Unpin,
{
    async fn advance(&mut self, order: &KeyOrder) -> Result<(), MergeError<E>> {
        let next = self
            .rows
            .next()
            .await
            .transpose()
            .map_err(MergeError::Read)?;
        if let (Some(prev), Some(next)) = (&self.head, &next)
            && order.compare(&prev.key, &next.key) == Ordering::Greater
        {
            return Err(MergeError::OutOfOrder {
                side: self.name,
                earlier: prev.key.clone(),
                later: next.key.clone(),
            });
        }
        if next.is_some() {
            self.count += 1;
        }
        self.head = next;
        Ok(())
    }
}

impl Tally {
    fn record(&mut self, kind: DiffKind, key: Vec<String>, keep: usize) {
        if self.diffs.len() < keep {
            self.diffs.push(Diff { kind, key });
        } else {
            self.untracked += 1;
        }
    }
}

/// Merges the two sorted streams, keeping at most `keep` differing keys.
pub async fn merge<S, D, E>(
    order: &KeyOrder,
    source: S,
    dest: D,
    keep: usize,
) -> Result<Tally, MergeError<E>>
where
    S: Stream<Item = Result<Entry, E>> + Unpin,
    D: Stream<Item = Result<Entry, E>> + Unpin,
{
    let mut src = Side {
        name: "source",
        rows: source,
        head: None,
        count: 0,
    };
    let mut dst = Side {
        name: "destination",
        rows: dest,
        head: None,
        count: 0,
    };
    src.advance(order).await?;
    dst.advance(order).await?;
    let mut tally = Tally::default();
    loop {
        let step = match (&src.head, &dst.head) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(s), Some(d)) => order.compare(&s.key, &d.key),
        };
        match step {
            Ordering::Less => {
                let key = src.head.as_ref().map(|e| e.key.clone()).unwrap_or_default();
                tally.record(DiffKind::Missing, key, keep);
                src.advance(order).await?;
            }
            Ordering::Greater => {
                let key = dst.head.as_ref().map(|e| e.key.clone()).unwrap_or_default();
                tally.record(DiffKind::Extra, key, keep);
                dst.advance(order).await?;
            }
            Ordering::Equal => {
                if let (Some(s), Some(d)) = (&src.head, &dst.head)
                    && s.hash != d.hash
                {
                    tally.record(DiffKind::Different, s.key.clone(), keep);
                }
                src.advance(order).await?;
                dst.advance(order).await?;
            }
        }
    }
    tally.source_rows = src.count;
    tally.dest_rows = dst.count;
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use futures_util::stream;
    use proptest::prelude::*;

    use super::super::query::KeyKind;
    use super::*;

    fn rows(v: &[(i64, i64)]) -> impl Stream<Item = Result<Entry, ()>> + Unpin {
        stream::iter(
            v.iter()
                .map(|&(k, h)| {
                    Ok(Entry {
                        key: vec![k.to_string()],
                        hash: h,
                    })
                })
                .collect::<Vec<_>>(),
        )
    }

    fn run(s: &[(i64, i64)], d: &[(i64, i64)], keep: usize) -> Tally {
        let order = KeyOrder(vec![KeyKind::Integer]);
        futures_executor(merge(&order, rows(s), rows(d), keep)).unwrap()
    }

    fn futures_executor<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn keys(t: &Tally, kind: DiffKind) -> Vec<String> {
        t.diffs
            .iter()
            .filter(|d| d.kind == kind)
            .map(|d| d.key[0].clone())
            .collect()
    }

    #[test]
    fn equal_tables_have_no_differences() {
        let t = run(&[(1, 10), (2, 20)], &[(1, 10), (2, 20)], 10);
        assert_eq!((t.source_rows, t.dest_rows, t.diffs.len()), (2, 2, 0));
    }

    #[test]
    fn missing_extra_and_different_rows_are_found_in_one_pass() {
        let t = run(
            &[(1, 10), (2, 20), (4, 40)],
            &[(1, 10), (2, 21), (3, 30)],
            10,
        );
        assert_eq!(keys(&t, DiffKind::Missing), ["4"]);
        assert_eq!(keys(&t, DiffKind::Extra), ["3"]);
        assert_eq!(keys(&t, DiffKind::Different), ["2"]);
        assert_eq!((t.source_rows, t.dest_rows), (3, 3));
    }

    #[test]
    fn one_side_empty_makes_every_row_missing_or_extra() {
        let t = run(&[(1, 1), (2, 2)], &[], 10);
        assert_eq!(keys(&t, DiffKind::Missing), ["1", "2"]);
        let t = run(&[], &[(1, 1)], 10);
        assert_eq!(keys(&t, DiffKind::Extra), ["1"]);
    }

    #[test]
    fn duplicate_keys_of_a_multiset_pair_one_to_one() {
        // Row hash 7 three times on the source, twice on the destination.
        let t = run(
            &[(7, 7), (7, 7), (7, 7), (9, 9)],
            &[(7, 7), (7, 7), (9, 9), (9, 9)],
            10,
        );
        assert_eq!(keys(&t, DiffKind::Missing), ["7"]);
        assert_eq!(keys(&t, DiffKind::Extra), ["9"]);
    }

    #[test]
    fn differences_beyond_the_limit_are_counted_not_kept() {
        let t = run(&[(1, 1), (2, 2), (3, 3)], &[], 2);
        assert_eq!((t.diffs.len(), t.untracked), (2, 1));
    }

    #[test]
    fn a_side_out_of_order_is_an_error() {
        let order = KeyOrder(vec![KeyKind::Integer]);
        let r = futures_executor(merge(&order, rows(&[(2, 2), (1, 1)]), rows(&[]), 10));
        assert!(matches!(
            r,
            Err(MergeError::OutOfOrder { side: "source", .. })
        ));
    }

    proptest! {
        /// Against a model: the keys only on one side, and those on both with other hashes.
        #[test]
        fn merge_agrees_with_a_set_model(
            s in proptest::collection::btree_map(-50i64..50, 0i64..3, 0..40),
            d in proptest::collection::btree_map(-50i64..50, 0i64..3, 0..40),
        ) {
            let sv: Vec<_> = s.iter().map(|(k, v)| (*k, *v)).collect();
            let dv: Vec<_> = d.iter().map(|(k, v)| (*k, *v)).collect();
            let t = run(&sv, &dv, usize::MAX);
            let missing: Vec<_> = s.keys().filter(|k| !d.contains_key(k)).map(|k| k.to_string()).collect();
            let extra: Vec<_> = d.keys().filter(|k| !s.contains_key(k)).map(|k| k.to_string()).collect();
            let different: Vec<_> = s.iter().filter(|(k, v)| d.get(k).is_some_and(|w| w != *v)).map(|(k, _)| k.to_string()).collect();
            prop_assert_eq!(keys(&t, DiffKind::Missing), missing);
            prop_assert_eq!(keys(&t, DiffKind::Extra), extra);
            prop_assert_eq!(keys(&t, DiffKind::Different), different);
            prop_assert_eq!(t.source_rows as usize, s.len());
            prop_assert_eq!(t.dest_rows as usize, d.len());
        }
    }
}
