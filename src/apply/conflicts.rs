//! Conflicts: a change that does not fit the destination's rows. Never hidden: each is
//! counted per kind and table, logged with the table and key, shown in the summary, the
//! metrics and `status` (through `pgsub.conflicts`, written in the apply transaction), and
//! under `--on-conflict error` any of them stops pgsub.
//!
//! The kinds and what is done about them by default, as the built-in worker does
//! (PostgreSQL 18 counts the same kinds in `pg_stat_subscription_stats`):
//!
//! | kind                        | change                                 | default       |
//! |-----------------------------|----------------------------------------|---------------|
//! | `insert_exists`             | an insert hits an existing unique key  | stop (error)  |
//! | `update_origin_differs`     | an update finds a row another origin   | apply, logged |
//! |                             | wrote last                             |               |
//! | `update_exists`             | an update hits an existing unique key  | stop (error)  |
//! | `update_missing`            | an update finds no row                 | skip, logged  |
//! | `delete_origin_differs`     | a delete finds a row another origin    | apply, logged |
//! |                             | wrote last                             |               |
//! | `delete_missing`            | a delete finds no row                  | skip, logged  |
//! | `multiple_unique_conflicts` | an insert or update hits existing rows | stop (error)  |
//! |                             | on more than one unique index          |               |
//!
//! The destination names only the first unique index a change violates: after the
//! rollback pgsub asks it how many of the table's unique indexes (immediate, on plain
//! columns) the row hits — for an insert the row the failed COPY stopped at, for an
//! update the first row of the failed statement whose new values meet another row — as
//! PostgreSQL 18's worker checks each one. (An update found by the whole row, under
//! REPLICA IDENTITY FULL without a destination key, is reported as `update_exists`.)
//!
//! Who wrote a row last is known where the destination has `track_commit_timestamp` on
//! (and is PostgreSQL 14 or later, for `pg_xact_commit_timestamp_origin`): before an
//! update or delete by key, pgsub asks which of its rows carry an origin other than its
//! own session's (see `crate::dest::origin`; none when the session is not tagged), as the
//! built-in worker compares the row's origin with its own. A row written earlier in the
//! same destination transaction has no commit timestamp yet and does not count; rows
//! found by the whole row are not asked about.

use std::collections::BTreeMap;

pub use crate::state::conflicts::{ConflictKind, Tally};

/// What to do about a conflict (`--on-conflict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnConflict {
    /// As the built-in worker: a row that is missing is logged and skipped; an existing
    /// key stops pgsub.
    #[default]
    Log,
    /// Any conflict stops pgsub (nothing of its transaction is applied).
    Error,
}

/// Lines logged per table and kind before further conflicts are only counted.
const LOGGED: u64 = 10;

/// The conflicts of a run of pgsub.
#[derive(Debug, Default, Clone)]
pub struct Conflicts {
    total: BTreeMap<(String, ConflictKind), Tally>,
    /// Not yet written to `pgsub.conflicts`.
    unsaved: BTreeMap<(String, ConflictKind), Tally>,
}

impl Conflicts {
    /// Records `n` conflicts of `kind` on `table`; `keys` names the rows where known
    /// (`approximate`: the keys are those of the statement, of which `n` conflicted).
    pub fn record(
        &mut self,
        kind: ConflictKind,
        table: &str,
        n: u64,
        keys: &[String],
        approximate: bool,
    ) {
        if n == 0 {
            return;
        }
        let t = self.total.entry((table.to_owned(), kind)).or_default();
        let before = t.count;
        t.count += n;
        t.last_key = keys.last().cloned().or(t.last_key.take());
        let u = self.unsaved.entry((table.to_owned(), kind)).or_default();
        u.count += n;
        u.last_key = t.last_key.clone();
        let what = match kind {
            ConflictKind::InsertExists | ConflictKind::UpdateExists => {
                "hit an existing unique key on the destination"
            }
            ConflictKind::UpdateOriginDiffers => {
                "updated a row that something other than this replication wrote last on the destination"
            }
            ConflictKind::DeleteOriginDiffers => {
                "deleted a row that something other than this replication wrote last on the destination"
            }
            ConflictKind::MultipleUniqueConflicts => {
                "hit existing rows on more than one unique index of the destination"
            }
            ConflictKind::UpdateMissing => "found no row to update on the destination",
            ConflictKind::DeleteMissing => "found no row to delete on the destination",
        };
        if before < LOGGED {
            let shown: Vec<&str> = keys.iter().take(20).map(String::as_str).collect();
            let keys_text = match (shown.is_empty(), approximate) {
                (true, _) => "key not known".to_owned(),
                (false, false) => shown.join(", "),
                (false, true) => format!("among {}", shown.join(", ")),
            };
            tracing::warn!(
                conflict = kind.name(),
                table,
                rows = n,
                key = %keys_text,
                "{n} change(s) {what}: {}{}",
                match kind {
                    ConflictKind::UpdateOriginDiffers | ConflictKind::DeleteOriginDiffers => {
                        "applied as the built-in worker does, over the other writer's change"
                    }
                    _ => "the destination differs from the source",
                },
                if before + n >= LOGGED {
                    " (further conflicts of this kind on this table are counted, not logged)"
                } else {
                    ""
                }
            );
        } else {
            tracing::debug!(conflict = kind.name(), table, rows = n, "conflict");
        }
    }

    /// Every conflict so far, by table and kind.
    pub fn totals(&self) -> &BTreeMap<(String, ConflictKind), Tally> {
        &self.total
    }

    /// How many conflicts of `kind` in all.
    pub fn count(&self, kind: ConflictKind) -> u64 {
        self.total
            .iter()
            .filter(|((_, k), _)| *k == kind)
            .map(|(_, t)| t.count)
            .sum()
    }

    /// The conflicts not yet written to the destination; they count as written from now
    /// on (put them back with [`Conflicts::unsave`] if the write is rolled back).
    pub fn take_unsaved(&mut self) -> BTreeMap<(String, ConflictKind), Tally> {
        std::mem::take(&mut self.unsaved)
    }

    /// Conflicts whose write was rolled back, to be written again.
    pub fn unsave(&mut self, back: BTreeMap<(String, ConflictKind), Tally>) {
        for (k, t) in back {
            let u = self.unsaved.entry(k).or_default();
            u.count += t.count;
            if u.last_key.is_none() {
                u.last_key = t.last_key;
            }
        }
    }

    /// A one-line summary: `3 update_missing, 1 delete_missing` (empty when none).
    pub fn summary(&self) -> String {
        ConflictKind::ALL
            .iter()
            .filter_map(|&k| {
                let n = self.count(k);
                (n > 0).then(|| format!("{n} {}", k.name()))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `(a, b)=(1, x)`: a key as PostgreSQL's messages show one, its values as
/// [`super::values::show`] shows them.
pub fn describe_key(names: &[&str], values: &[String]) -> String {
    format!("({})=({})", names.join(", "), values.join(", "))
}

/// The key of a unique violation, from the server's detail line
/// (`Key (k)=(1) already exists.`).
pub fn key_of_violation(detail: Option<&str>) -> Option<String> {
    let d = detail?;
    let rest = d.strip_prefix("Key ")?;
    let end = rest.rfind(" already exists")?;
    Some(rest[..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_are_counted_per_table_and_kind_and_saved_once() {
        let mut c = Conflicts::default();
        c.record(
            ConflictKind::UpdateMissing,
            "s.t",
            2,
            &["(id)=(1)".into()],
            false,
        );
        c.record(ConflictKind::UpdateMissing, "s.t", 1, &[], false);
        c.record(
            ConflictKind::DeleteMissing,
            "s.u",
            1,
            &["(id)=(9)".into()],
            true,
        );
        assert_eq!(c.count(ConflictKind::UpdateMissing), 3);
        assert_eq!(c.summary(), "3 update_missing, 1 delete_missing");
        let saved = c.take_unsaved();
        let t = &saved[&("s.t".to_owned(), ConflictKind::UpdateMissing)];
        assert_eq!((t.count, t.last_key.as_deref()), (3, Some("(id)=(1)")));
        assert!(c.take_unsaved().is_empty());
        c.unsave(saved);
        assert_eq!(c.take_unsaved().len(), 2);
    }

    #[test]
    fn keys_read_like_the_servers_messages() {
        assert_eq!(
            describe_key(&["a", "b"], &["1".into(), "null".into()]),
            "(a, b)=(1, null)"
        );
        assert_eq!(
            key_of_violation(Some("Key (k)=(1) already exists.")).as_deref(),
            Some("(k)=(1)")
        );
        assert_eq!(key_of_violation(Some("something else")), None);
    }
}
