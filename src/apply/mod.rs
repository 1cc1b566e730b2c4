//! Applying the stream to the destination, exactly once, as the built-in worker applies
//! it.
//!
//! ```text
//!  Begin ──► txn: skip if already applied ──► BEGIN on the destination (a group)
//!  Insert/Update/Delete ──► target (table, key, order) ──► rows ──► runs (batch)
//!                       ──► executor: COPY / unnest statements, one row at a time where
//!                           order is observable
//!  Truncate ──► TRUNCATE ONLY a, p, … [RESTART IDENTITY]
//!  Commit ──► group: several small source transactions share one destination
//!             transaction, bounded by changes, bytes and time
//!  group commit ──► durable: progress row + conflict counts, COMMIT; acknowledged once
//!                   the destination's WAL is flushed past it
//! ```
//!
//! Each concern has its module: [`txn`] (which transactions and changes apply, grouping),
//! [`target`] and [`table`] (where rows go, how they are found, whether order matters),
//! [`rows`] (values), [`batch`] and [`sql`] (statements), [`executor`] (running them off
//! the receive path), [`durable`] (commit and flush), [`conflicts`] (rows that did not fit),
//! [`spool`] (streamed transactions), [`stats`] (counters). The sink's own work is spread
//! by job: `changes` (each change into runs), `statements` (prepared shapes, queueing a
//! run), `outcomes` (booking what was done, failures), `streamed` (replays from the
//! spool), `two_phase` (prepared transactions under `--two-phase`). This file holds the
//! sink and dispatches.
//!
//! # Why exactly once
//!
//! The progress row is written in the same destination transaction as the changes it
//! covers, so after any crash the destination holds exactly the transactions up to its
//! `applied_lsn`. On start, streaming resumes from that position and every transaction
//! whose commit starts before it (equivalently: whose `end_lsn` is at or below it) is
//! skipped. The source is told a position only once the destination's WAL is flushed
//! past the commit that holds it, so the source never discards what the destination could
//! still lose in a crash.
//!
//! # Semantics
//!
//! As the built-in worker: rows are found by the replica identity (the `K` key, or under
//! REPLICA IDENTITY FULL the destination's key, else every column by its type's equality,
//! changing exactly one matching row); `K` placeholders are never written; an unchanged
//! TOASTed value (`u`) is never overwritten (under FULL it is taken from the old row);
//! changes to a plain table never reach its inheritance children; truncates never
//! cascade; values are assigned to columns, never cast to their modifier (too long is an
//! error, not a cut); an update or delete that finds no row is a conflict, counted and
//! logged, and skipped unless `--on-conflict error`.

pub mod batch;
mod changes;
pub mod conflicts;
pub mod durable;
pub mod executor;
mod outcomes;
pub mod rows;
pub mod spool;
pub mod sql;
mod statements;
pub mod stats;
mod streamed;
pub mod table;
pub mod target;
mod two_phase;
pub mod txn;
pub mod values;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_postgres::Statement;

use crate::dest::Dest;
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::pg::SqlError;
use crate::pg::sqlstate;
use crate::pgoutput::{
    Begin, ColumnRef, Commit, Decoder, OldTuple, PgOutput, StreamCommit, TupleData,
};
use crate::replicate::run::Sink;
use crate::stream::relations::{OidMap, RelationCache};
use crate::stream::{Event, Session};
use batch::{MAX_RUN_ROWS, Run, RunKind, fingerprint};
use conflicts::{ConflictKind, Conflicts, OnConflict};
pub use durable::Subscription;
use durable::{Durability, GroupCommit};
use executor::{Check, Executor, Failed, Kind, Outcome, Params, Probe, UpdateLayout};
use rows::UpdateImage;
use spool::Spool;
use statements::StmtKey;
pub use stats::ApplyStats;
use table::Equality;
use target::{ResolveOptions, Target};
pub use txn::GroupLimits;
use txn::{Begun, Transactions};
use values::{Param, ValueArray, ValueFormat};

/// Bytes before the pgoutput message in an XLogData payload: tag, `wal_start`, `wal_end`,
/// send time.
const XLOG_DATA_HEADER: usize = 1 + 8 + 8 + 8;

/// Options of the sink.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// The relations (`schema.table`) this run copied or streams: a Relation message for
    /// another one means a table joined the publications, and the run stops so that the
    /// next one copies it first (`None`: no such check).
    pub published: Option<std::collections::HashSet<String>>,
    /// Add columns the source adds mid-stream (`--schema create`).
    pub add_columns: bool,
    /// What to do about conflicts.
    pub on_conflict: OnConflict,
    /// Where the destination tells who last wrote a row (`track_commit_timestamp`): the
    /// origin id pgsub's own writes carry, so that updating or deleting a row another
    /// origin wrote last counts as `*_origin_differs` (`None`: not told).
    pub own_origin: Option<u32>,
    /// The destination's round trip, which spaces the group's savepoints.
    pub dest_round_trip: Duration,
    /// Columns generated on the source, by relation (PostgreSQL 18 publishes them).
    pub source_generated: OidMap<Vec<String>>,
    /// Where the run keeps streamed transactions: a directory of this process under this
    /// one (default: the system's temporary directory), removed with the spool.
    pub spool_dir: Option<std::path::PathBuf>,
    /// The format of the stream's values (`sync --binary`).
    pub format: ValueFormat,
}

/// The sink that applies events to the destination.
pub struct ApplySink {
    dest: Dest,
    exec: Executor,
    txns: Transactions,
    durability: Durability,
    opts: ApplyOptions,
    targets: OidMap<Arc<Target>>,
    equality: Equality,
    stmts: HashMap<StmtKey, Statement>,
    run: Option<Run>,
    stats: ApplyStats,
    conflicts: Conflicts,
    spool: Spool,
    /// The streamed transaction whose block is open.
    stream_xid: Option<u32>,
    /// The counters as they stood at the group's savepoint, once the destination took it.
    mark: Option<(ApplyStats, Conflicts)>,
    /// The prepared transaction beginning comes whole at its COMMIT PREPARED, behind the
    /// stream (see [`txn::Transactions::begin_prepared`]).
    sent_whole: bool,
}

impl std::fmt::Debug for ApplySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplySink")
            .field("sub", self.durability.subscription())
            .field("durable", &self.durability.durable())
            .field("stats", &self.stats)
            .finish()
    }
}

fn sql_err(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Error {
    let context = context.into();
    move |e| Error::from(SqlError::new(context, e))
}

impl ApplySink {
    /// A sink applying to `dest`, skipping transactions whose commit starts before
    /// `applied` (the stored progress), and, per relation, changes of transactions
    /// committed before that table's copy snapshot.
    pub fn new(
        dest: Dest,
        sub: Subscription,
        applied: Lsn,
        table_snapshots: OidMap<txn::CopySnapshot>,
        limits: GroupLimits,
        opts: ApplyOptions,
    ) -> Self {
        let exec = Executor::start(dest.client.clone());
        let spool = Spool::new(
            opts.spool_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir)
                .join(spool::dir_name(std::process::id())),
        );
        let mut txns = Transactions::new(applied, table_snapshots, limits);
        txns.space_for(opts.dest_round_trip);
        ApplySink {
            dest,
            exec,
            txns,
            durability: Durability::new(sub, applied),
            opts,
            targets: OidMap::default(),
            equality: Equality::default(),
            stmts: HashMap::new(),
            run: None,
            stats: ApplyStats::default(),
            conflicts: Conflicts::default(),
            spool,
            stream_xid: None,
            mark: None,
            sent_whole: false,
        }
    }

    /// Changes of `relid` committed before `snapshot` (its copy's) are skipped from now
    /// on: the per-table rule, for a relid learnt from the stream (`sync --input`).
    pub fn table_snapshot(&mut self, relid: u32, snapshot: txn::CopySnapshot) {
        self.txns.table_snapshot(relid, snapshot);
    }

    /// What was applied so far.
    pub fn stats(&self) -> &ApplyStats {
        &self.stats
    }

    /// The conflicts met so far.
    pub fn conflicts(&self) -> &Conflicts {
        &self.conflicts
    }

    /// The target of `relid` (shared: cloning it is a reference count, not a copy).
    async fn target(&mut self, rels: &RelationCache, relid: u32) -> Result<Arc<Target>> {
        if !self.targets.contains_key(&relid) {
            let rel = rels.get(relid).ok_or_else(|| {
                Error::Definite(format!(
                    "a change for relation OID {relid} arrived before its description"
                ))
            })?;
            // The catalog read (and a column added under --schema create) must come
            // after everything queued before it.
            self.settle().await?;
            let generated = self
                .opts
                .source_generated
                .get(&relid)
                .cloned()
                .unwrap_or_default();
            let t = target::resolve(
                &self.dest.client,
                rel,
                rels,
                &generated,
                ResolveOptions {
                    add_columns: self.opts.add_columns,
                    replica_role: self.dest.replica_role,
                    format: self.opts.format,
                },
                &mut self.equality,
            )
            .await?;
            if t.order_sensitive {
                tracing::debug!(table = %t.name, "changes applied one row at a time: a row trigger fires, or a unique index other than the key's checks rows one by one");
            }
            self.targets.insert(relid, Arc::new(t));
        }
        Ok(self.targets[&relid].clone())
    }

    /// Commits the open group, when it holds complete source transactions and none is
    /// half received.
    async fn commit_group(&mut self) -> Result<()> {
        self.commit_group_as(GroupCommit::Asynchronous)
            .await
            .map(|_| ())
    }

    /// [`ApplySink::commit_group`], synchronously or not; returns whether a group was
    /// committed.
    async fn commit_group_as(&mut self, how: GroupCommit) -> Result<bool> {
        self.flush_run().await?;
        self.settle().await?;
        let Some((end, commit_ts)) = self.txns.close_group() else {
            return Ok(false);
        };
        self.mark = None;
        self.durability
            .commit(&self.dest.client, end, &commit_ts, &mut self.conflicts, how)
            .await?;
        self.stats.groups += 1;
        Ok(true)
    }

    /// The source transaction being received will not be completed (the source failed,
    /// or pgsub stops): the destination goes back to the group's savepoint, so that the
    /// complete source transactions before it can still be committed; without one, the
    /// whole group is rolled back. Either way what is given up is sent again next time.
    async fn give_up_transaction(&mut self) -> Result<()> {
        if !self.txns.in_transaction() || self.txns.skipping_transaction() {
            return Ok(());
        }
        self.run = None;
        let outcomes = self.exec.barrier().await?;
        if let Ok(outcomes) = outcomes {
            self.book(outcomes).await?;
            if let Some((stats, conflicts)) = self.mark.take()
                && self.txns.rewind()
            {
                self.dest
                    .client
                    .batch_execute("ROLLBACK TO SAVEPOINT pgsub_group")
                    .await
                    .map_err(sql_err("rolling back to the group's savepoint"))?;
                self.stats = stats;
                self.conflicts = conflicts;
                tracing::debug!(
                    "the source transaction in progress is given up; the complete ones before it are kept"
                );
                return Ok(());
            }
        }
        if self.txns.abandon() {
            let _ = self.dest.client.batch_execute("ROLLBACK").await;
        }
        Ok(())
    }

    async fn on_message(&mut self, rels: &RelationCache, msg: &PgOutput) -> Result<()> {
        match msg {
            PgOutput::Begin(b) => {
                let begun = self.txns.begin(b.final_lsn);
                if begun == Begun::Open {
                    self.exec.simple("BEGIN").await?;
                } else if let Some(replaces) = self.txns.savepoint_due() {
                    // Runs do not cross the savepoint: what is before it stays before it.
                    self.flush_run().await?;
                    self.mark = None;
                    self.exec.savepoint(replaces).await?;
                }
            }
            PgOutput::Commit(c) => {
                if self.txns.commit(c.end_lsn, c.commit_ts.to_string()) {
                    self.stats.skipped_transactions += 1;
                    if !self.txns.group_open() {
                        self.durability.skipped(c.end_lsn);
                    }
                    return Ok(());
                }
                // The run stays open: the next source transaction's changes may join it,
                // since they go into the same destination transaction.
                self.stats.transactions += 1;
                if self.txns.group_full() {
                    self.commit_group().await?;
                }
            }
            PgOutput::Relation(r) => {
                if let Some(known) = &self.opts.published {
                    let relation = r.qualified_name();
                    if !known.contains(&relation) {
                        return Err(Error::PublicationChanged(relation));
                    }
                }
                // Columns may have changed: look the destination up again next time.
                self.flush_run().await?;
                self.targets.remove(&r.relid);
                self.stmts.retain(|k, _| k.relid() != r.relid);
            }
            PgOutput::Insert(_) | PgOutput::Update(_) | PgOutput::Delete(_)
                if msg.relid().is_some_and(|r| self.txns.unplaceable(r)) =>
            {
                return Err(Error::Definite(format!(
                    "a prepared transaction changes {}, whose copy snapshot came after its PREPARE and was made by a pgsub that did not record the snapshot's transactions, so whether the copy holds the transaction cannot be told: copy the table again (pgsub sync --truncate-before-copy after removing its row from pgsub.tables), or finish the prepared transaction on the source and run again",
                    rels.get(msg.relid().unwrap_or_default())
                        .map_or_else(|| "a table".to_owned(), |r| r.qualified_name())
                )));
            }
            PgOutput::Insert(m) if !self.txns.skipping(m.relid) => {
                self.insert(rels, m.relid, &m.new).await?;
            }
            PgOutput::Update(m) if !self.txns.skipping(m.relid) => {
                self.update(rels, m.relid, m.old.as_ref(), &m.new).await?;
            }
            PgOutput::Delete(m) if !self.txns.skipping(m.relid) => {
                self.delete(rels, m.relid, &m.old).await?;
            }
            PgOutput::Truncate(t) => {
                self.truncate(rels, &t.relids, t.restart_identity()).await?;
            }
            PgOutput::Message(m) if m.transactional() => {
                tracing::info!(prefix = %m.prefix, bytes = m.content.len(), "logical decoding message in the stream");
            }
            PgOutput::BeginPrepare(b) => self.begin_prepare(b).await?,
            PgOutput::Prepare(p) => self.prepare(p).await?,
            PgOutput::CommitPrepared(c) => self.commit_prepared(c).await?,
            PgOutput::RollbackPrepared(r) => self.rollback_prepared(r).await?,
            _ => {}
        }
        Ok(())
    }

    /// Commits what is open and waits until the destination has flushed it. The last
    /// commit is synchronous (it flushes everything before it too), rather than waiting
    /// for the destination's WAL writer: a run that ends is durable at once.
    async fn flush_everything(&mut self) -> Result<()> {
        let committed =
            !self.txns.in_transaction() && self.commit_group_as(GroupCommit::Synchronous).await?;
        if !committed && !self.txns.group_open() && self.durability.waiting() {
            crate::state::make_durable(&self.dest.client).await?;
        }
        while self.durability.waiting() {
            self.durability.check(&self.dest.client).await?;
            if self.durability.waiting() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }
}

impl Sink for ApplySink {
    async fn on_event(&mut self, session: &Session, event: &Event, payload: &Bytes) -> Result<()> {
        let Event::Message { msg, .. } = event else {
            return Ok(());
        };
        // A prepared transaction whose end is behind what the stream completed comes whole
        // at its COMMIT PREPARED (the session lets it through: see
        // stream::Session::on_copy_data). Read only for those two messages, off the
        // per-change path.
        let end = match msg {
            PgOutput::BeginPrepare(b) => Some(b.end_lsn),
            PgOutput::StreamPrepare(p) => Some(p.end_lsn),
            _ => None,
        };
        if let Some(end) = end {
            self.sent_whole = end < session.positions().completed();
        }
        match msg {
            PgOutput::StreamStart(s) => {
                self.spool.start(s.xid, s.first_segment != 0)?;
                self.stream_xid = Some(s.xid);
            }
            PgOutput::StreamStop => {
                self.spool.stop()?;
                self.stream_xid = None;
            }
            PgOutput::StreamAbort(a) => self.spool.abort(a.xid, a.subxid)?,
            PgOutput::StreamCommit(c) => self.apply_streamed(c).await?,
            PgOutput::StreamPrepare(p) => self.apply_stream_prepared(p).await?,
            _ if self.stream_xid.is_some() => {
                // The pgoutput message follows the XLogData header.
                let message = payload.get(XLOG_DATA_HEADER..).unwrap_or_default();
                let subxid = msg.xid().or(self.stream_xid).unwrap_or_default();
                self.spool.append(subxid, message)?;
            }
            _ => self.on_message(session.relations(), msg).await?,
        }
        Ok(())
    }

    async fn durable(&mut self, _processed: Lsn) -> Result<Lsn> {
        if !self.txns.in_transaction() && self.txns.group_committable() {
            self.commit_group().await?;
        }
        if let Err(e) = self.durability.check(&self.dest.client).await {
            // The check runs in the open group's transaction: if a queued statement failed,
            // it meets the aborted transaction (25P02), and the failure to report is that
            // statement's (a deadlock, a timeout: transient), which settling returns.
            if matches!(&e, Error::Sql(s) if s.code() == Some(sqlstate::IN_FAILED_TRANSACTION)) {
                self.settle().await?;
            }
            return Err(e);
        }
        Ok(self.durability.durable())
    }

    async fn make_durable(&mut self, _processed: Lsn) -> Result<Lsn> {
        // Stopped inside a source transaction: its part is given up (it is sent again
        // next time), what completed before it is kept.
        self.give_up_transaction().await?;
        self.flush_everything().await?;
        Ok(self.durability.durable())
    }

    async fn salvage(&mut self) -> Result<()> {
        self.give_up_transaction().await?;
        if !self.txns.in_transaction() {
            self.commit_group().await?;
        }
        Ok(())
    }

    fn publish_metrics(&self) {
        stats::publish(
            &self.stats,
            &self.conflicts,
            self.targets.values().map(|t| t.name.as_str()),
        );
    }
}
