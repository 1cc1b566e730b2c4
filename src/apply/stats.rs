//! What was applied, counted: for the summary line and the metrics endpoint.

use super::conflicts::{ConflictKind, Conflicts};

/// Counters of what was applied.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ApplyStats {
    /// Source transactions applied.
    pub transactions: u64,
    /// Source transactions skipped as already applied.
    pub skipped_transactions: u64,
    /// Destination transactions committed.
    pub groups: u64,
    /// Rows inserted.
    pub inserted: u64,
    /// Rows updated.
    pub updated: u64,
    /// Rows deleted.
    pub deleted: u64,
    /// Updates that found no row to change.
    pub update_missing: u64,
    /// Deletes that found no row.
    pub delete_missing: u64,
    /// Truncate statements.
    pub truncates: u64,
    /// Statements sent to apply rows (a run of many rows is one statement; where order
    /// is observable, each row is one).
    pub statements: u64,
    /// Streamed transactions applied from the spool (counted in `transactions` too).
    pub streamed_transactions: u64,
}

/// Publishes the counters and the conflicts to the metrics registry, when metrics are on:
/// a conflict series of each kind for every table changes were applied to (zero until one
/// happens), and for every table a conflict happened on.
pub fn publish<'a>(s: &ApplyStats, conflicts: &Conflicts, tables: impl Iterator<Item = &'a str>) {
    use crate::output::metrics::*;
    let Some(r) = registry() else { return };
    r.set(&APPLIED_TRANSACTIONS_TOTAL, &[], s.transactions as f64);
    r.set(
        &SKIPPED_TRANSACTIONS_TOTAL,
        &[],
        s.skipped_transactions as f64,
    );
    r.set(&DEST_TRANSACTIONS_TOTAL, &[], s.groups as f64);
    for (op, n) in [
        ("insert", s.inserted),
        ("update", s.updated),
        ("delete", s.deleted),
        ("truncate", s.truncates),
    ] {
        r.set(&APPLIED_ROWS_TOTAL, &[("op", op)], n as f64);
    }
    for table in tables {
        for kind in ConflictKind::ALL {
            let n = conflicts
                .totals()
                .get(&(table.to_owned(), kind))
                .map_or(0, |t| t.count);
            r.set(
                &APPLY_CONFLICTS_TOTAL,
                &[("kind", kind.name()), ("table", table)],
                n as f64,
            );
        }
    }
    for ((table, kind), t) in conflicts.totals() {
        r.set(
            &APPLY_CONFLICTS_TOTAL,
            &[("kind", kind.name()), ("table", table)],
            t.count as f64,
        );
    }
}
