//! Durability: a group's commit carries the progress row (and the conflict counts) of
//! the source transactions it holds, and a source position becomes acknowledgeable only
//! once the destination's WAL is flushed past that commit.
//!
//! ```text
//!  commit   + pgsub.conflicts (when there are new counts) ;
//!           UPSERT pgsub.progress(applied_lsn = end) ; COMMIT ; pg_current_wal_insert_lsn()
//!           in one simple query (synchronous_commit = off) ─► that position is the
//!           commit's destination position
//!  check    pg_current_wal_flush_lsn() ≥ that position ⇒ end is durable
//! ```
//!
//! The destination commits asynchronously, as the built-in worker does, so pgsub need not
//! wait for each flush; what it tells the source never runs ahead of what the destination
//! could lose in a crash.

use std::collections::VecDeque;

use tokio_postgres::{Client, SimpleQueryMessage};

use super::conflicts::Conflicts;
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::pg::SqlError;
use crate::state;

/// Identity of the subscription whose progress is recorded.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// `--name`.
    pub name: String,
    /// Source system identifier.
    pub system_id: String,
    /// Slot.
    pub slot: String,
    /// Publications.
    pub publications: Vec<String>,
}

fn sql_err(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |e| Error::from(SqlError::new(context, e))
}

/// How a group commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupCommit {
    /// As the built-in worker does: the destination's WAL writer flushes it soon after.
    Asynchronous,
    /// Flushed before the commit returns (the last one of a run).
    Synchronous,
}

/// Committed groups waiting for the destination's flush, and what is durable.
#[derive(Debug)]
pub struct Durability {
    sub: Subscription,
    /// (source end, destination commit position) of each committed group.
    pending: VecDeque<(Lsn, Lsn)>,
    durable: Lsn,
}

impl Durability {
    /// Starting from the stored progress `applied`, durable by definition.
    pub fn new(sub: Subscription, applied: Lsn) -> Self {
        Durability {
            sub,
            pending: VecDeque::new(),
            durable: applied,
        }
    }

    /// The subscription.
    pub fn subscription(&self) -> &Subscription {
        &self.sub
    }

    /// What is durable on the destination.
    pub fn durable(&self) -> Lsn {
        self.durable
    }

    /// Whether committed groups wait for the destination's flush.
    pub fn waiting(&self) -> bool {
        !self.pending.is_empty()
    }

    /// A skipped source transaction ended at `end`: durable already, once nothing
    /// before it waits.
    pub fn skipped(&mut self, end: Lsn) {
        if self.pending.is_empty() {
            self.durable = self.durable.max(end);
        }
    }

    /// A transaction ending at `end` was prepared on the destination: PREPARE TRANSACTION
    /// flushes the destination's WAL through its record, so it and every group committed
    /// before it are durable.
    pub fn prepared(&mut self, end: Lsn) {
        self.flushed(Lsn(u64::MAX));
        self.durable = self.durable.max(end);
    }

    /// Writes the progress row and the unsaved conflict counts, and commits the open
    /// destination transaction; notes the destination's WAL position of the commit.
    pub async fn commit(
        &mut self,
        client: &Client,
        end: Lsn,
        commit_ts: &str,
        conflicts: &mut Conflicts,
        how: GroupCommit,
    ) -> Result<()> {
        let unsaved = conflicts.take_unsaved();
        if let Err(e) = state::conflicts::add(client, &self.sub.name, &unsaved).await {
            conflicts.unsave(unsaved);
            return Err(e);
        }
        // The progress row, the COMMIT and the reading of its position in one simple
        // query: one round trip (a far destination pays it per group).
        let upsert = state::progress::upsert_literal(
            &self.sub.name,
            &self.sub.system_id,
            &self.sub.slot,
            &self.sub.publications,
            end,
            commit_ts,
        );
        let synchronous = match how {
            GroupCommit::Asynchronous => "",
            GroupCommit::Synchronous => "SET LOCAL synchronous_commit = on; ",
        };
        let commit = format!(
            "{upsert}; {synchronous}COMMIT; SELECT pg_catalog.pg_current_wal_insert_lsn()::text"
        );
        let rows = match client.simple_query(&commit).await {
            Ok(rows) => rows,
            Err(e) => {
                conflicts.unsave(unsaved);
                return Err(sql_err(
                    "recording progress in pgsub.progress and committing on the destination",
                )(e));
            }
        };
        let dest_lsn = rows
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.parse().ok()),
                _ => None,
            })
            .unwrap_or(Lsn(u64::MAX));
        crate::failpoint::hit(crate::failpoint::AFTER_DEST_COMMIT);
        self.pending.push_back((end, dest_lsn));
        Ok(())
    }

    /// Moves the durable position past every committed group the destination has
    /// flushed.
    pub async fn check(&mut self, client: &Client) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let flushed: Lsn = client
            .query_one("SELECT pg_catalog.pg_current_wal_flush_lsn()::text", &[])
            .await
            .map_err(sql_err("reading the destination's WAL flush position"))?
            .get::<_, String>(0)
            .parse()
            .unwrap_or_default();
        self.flushed(flushed);
        Ok(())
    }

    /// The destination's WAL is flushed up to `flushed`.
    fn flushed(&mut self, flushed: Lsn) {
        while let Some(&(end, dest_lsn)) = self.pending.front() {
            if dest_lsn > flushed {
                break;
            }
            self.durable = self.durable.max(end);
            self.pending.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub() -> Subscription {
        Subscription {
            name: "n".into(),
            system_id: "1".into(),
            slot: "s".into(),
            publications: vec![],
        }
    }

    #[test]
    fn a_group_is_durable_once_the_destination_flushed_its_commit() {
        let mut d = Durability::new(sub(), Lsn(10));
        d.pending.push_back((Lsn(100), Lsn(5000)));
        d.pending.push_back((Lsn(200), Lsn(6000)));
        d.flushed(Lsn(4999));
        assert_eq!(d.durable(), Lsn(10));
        d.flushed(Lsn(5500));
        assert_eq!(d.durable(), Lsn(100));
        // A skipped transaction behind a waiting group is not durable before it.
        d.skipped(Lsn(300));
        assert_eq!(d.durable(), Lsn(100));
        d.flushed(Lsn(6000));
        assert_eq!(d.durable(), Lsn(200));
        assert!(!d.waiting());
        d.skipped(Lsn(300));
        assert_eq!(d.durable(), Lsn(300));
    }
}
