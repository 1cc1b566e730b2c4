//! Applying the stream to the destination, exactly once.
//!
//! ```text
//!  Begin ──► (skip if commit_lsn < stored progress) ──► BEGIN on the destination
//!  Insert/Update/Delete ──► runs (batch) ──► COPY / unnest statements
//!  Truncate ──► TRUNCATE ONLY … [RESTART IDENTITY]
//!  Commit ──► group: several small source transactions share one destination
//!             transaction, bounded by changes, bytes and time
//!  group commit ──► UPSERT pgsub.progress(applied_lsn = last end_lsn); COMMIT
//!                   (synchronous_commit = off) ──► note the destination's WAL position
//!  durable() ──► pg_current_wal_flush_lsn() ≥ that position ⇒ end_lsn is durable
//! ```
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
//! Semantics follow the built-in apply worker: rows are found by the replica identity
//! (`K` key tuple, or the whole `O` old row under REPLICA IDENTITY FULL, changing exactly
//! one matching row); `K` placeholders are never written; an unchanged TOASTed value
//! (`u`) is never overwritten (under FULL it is filled from the old row); truncates never
//! cascade; an update or delete that finds no row is counted and logged, as the built-in
//! worker does, not an error.

pub mod batch;
pub mod executor;
pub mod progress;
pub mod spool;
pub mod sql;
pub mod target;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_postgres::Statement;

use crate::dest::{Dest, SqlError};
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::pgoutput::Decoder;
use crate::pgoutput::{Begin, Commit, StreamCommit};
use crate::pgoutput::{Column, ColumnRef, OldTuple, PgOutput, ReplicaIdentity, TupleData};
use crate::source::run::Sink;
use crate::stream::relations::{OidMap, RelationCache};
use crate::stream::{Event, Session};
use batch::{Run, RunKind, fingerprint};
use executor::{Executor, Kind, Outcome, Params};
use spool::Spool;
use target::Target;

/// Bytes before the pgoutput message in an XLogData payload: tag, `wal_start`, `wal_end`,
/// send time.
const XLOG_DATA_HEADER: usize = 1 + 8 + 8 + 8;

/// Bounds of one destination transaction holding several source transactions.
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    /// Most source changes.
    pub changes: u64,
    /// Most bytes of values.
    pub bytes: u64,
    /// Longest time a group stays open.
    pub age: Duration,
}

impl Default for GroupLimits {
    fn default() -> Self {
        GroupLimits {
            changes: 20_000,
            bytes: 32 << 20,
            age: Duration::from_millis(200),
        }
    }
}

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
    /// Streamed transactions applied from the spool (counted in `transactions` too).
    pub streamed_transactions: u64,
}

#[derive(Debug)]
struct SourceTxn {
    final_lsn: Lsn,
    skip: bool,
}

#[derive(Debug)]
struct Group {
    opened: Instant,
    changes: u64,
    bytes: u64,
    /// End of the last source transaction completed in the group, and its commit time.
    last_end: Option<(Lsn, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum StmtKey {
    Update(u32, Vec<usize>),
    Delete(u32),
    UpdateFull(u32, Vec<usize>),
    DeleteFull(u32),
}

/// The sink that applies events to the destination.
pub struct ApplySink {
    dest: Dest,
    exec: Executor,
    sub: Subscription,
    limits: GroupLimits,
    skip_before: Lsn,
    table_snapshots: OidMap<Lsn>,
    targets: OidMap<Arc<Target>>,
    stmts: HashMap<StmtKey, Statement>,
    txn: Option<SourceTxn>,
    group: Option<Group>,
    run: Option<Run>,
    pending_flush: VecDeque<(Lsn, Lsn)>,
    durable: Lsn,
    stats: ApplyStats,
    warned_missing: std::collections::HashSet<String>,
    add_columns: bool,
    spool: Spool,
    /// The streamed transaction whose block is open.
    stream_xid: Option<u32>,
}

impl std::fmt::Debug for ApplySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplySink")
            .field("sub", &self.sub)
            .field("durable", &self.durable)
            .field("stats", &self.stats)
            .finish()
    }
}

/// The text of a column value of `table`; `None` for NULL. Binary values are refused:
/// `sync` streams in text format. Messages are built only when something is wrong.
fn value(c: &Column, table: &str) -> Result<Option<String>> {
    match c {
        Column::Null => Ok(None),
        Column::Text(b) => String::from_utf8(b.to_vec()).map(Some).map_err(|_| {
            Error::Config(format!(
                "a value of a column of {table} is not valid UTF-8; pgsub asks the source for client_encoding UTF8, so this should not happen"
            ))
        }),
        Column::Binary(_) => Err(Error::Config(format!(
            "a column of {table} arrived in binary format, which sync does not apply; run it without --binary on"
        ))),
        Column::UnchangedToast => Err(Error::Config(format!(
            "a column of {table}: an unchanged TOAST value where a full value was needed"
        ))),
    }
}

/// The text of a column value of `table`, borrowed from the received message; `None` for
/// NULL. Binary and unchanged-TOAST values are refused as [`value`] refuses them.
fn text<'a>(c: ColumnRef<'a>, table: &str) -> Result<Option<&'a [u8]>> {
    match c {
        ColumnRef::Null => Ok(None),
        ColumnRef::Text(b) => Ok(Some(b)),
        ColumnRef::Binary(b) => {
            value(&Column::Binary(Bytes::copy_from_slice(b)), table).map(|_| None)
        }
        ColumnRef::UnchangedToast => value(&Column::UnchangedToast, table).map(|_| None),
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
        table_snapshots: OidMap<Lsn>,
        limits: GroupLimits,
    ) -> Self {
        let exec = Executor::start(dest.client.clone());
        ApplySink {
            dest,
            exec,
            sub,
            limits,
            skip_before: applied,
            table_snapshots,
            targets: OidMap::default(),
            stmts: HashMap::new(),
            txn: None,
            group: None,
            run: None,
            pending_flush: VecDeque::new(),
            durable: applied,
            stats: ApplyStats::default(),
            warned_missing: Default::default(),
            add_columns: false,
            spool: Spool::new(default_spool_dir()),
            stream_xid: None,
        }
    }

    /// Keeps streamed transactions in `dir` (default: a directory of its own under the
    /// system's temporary directory).
    pub fn spool_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.spool = Spool::new(dir);
        self
    }

    /// Adds columns the source adds mid-stream (`--schema create`).
    pub fn add_columns(mut self, yes: bool) -> Self {
        self.add_columns = yes;
        self
    }

    /// What was applied so far.
    pub fn stats(&self) -> &ApplyStats {
        &self.stats
    }

    /// The destination session.
    pub fn dest(&self) -> &Dest {
        &self.dest
    }

    /// The target of `relid` (shared: cloning it is a reference count, not a copy).
    async fn target(&mut self, rels: &RelationCache, relid: u32) -> Result<Arc<Target>> {
        if !self.targets.contains_key(&relid) {
            let rel = rels.get(relid).ok_or_else(|| {
                Error::Config(format!(
                    "a change for relation OID {relid} arrived before its description"
                ))
            })?;
            // The catalog read (and a column added under --schema create) must come
            // after everything queued before it.
            self.settle().await?;
            let t = target::resolve(&self.dest.client, rel, rels, self.add_columns).await?;
            self.targets.insert(relid, Arc::new(t));
        }
        Ok(self.targets[&relid].clone())
    }

    async fn begin_group(&mut self) -> Result<()> {
        if self.group.is_none() {
            self.exec.simple("BEGIN").await?;
            self.group = Some(Group {
                opened: Instant::now(),
                changes: 0,
                bytes: 0,
                last_end: None,
            });
        }
        Ok(())
    }

    /// Waits for the queued statements and books what they did.
    async fn settle(&mut self) -> Result<()> {
        for o in self.exec.barrier().await? {
            let missing = o.expected.saturating_sub(o.affected);
            match o.kind {
                Kind::Insert => self.stats.inserted += o.affected,
                Kind::Update => {
                    self.stats.updated += o.affected;
                    self.missing(missing, "update", &o.table);
                }
                Kind::Delete => {
                    self.stats.deleted += o.affected;
                    self.missing(missing, "delete", &o.table);
                }
                Kind::Other => {}
            }
        }
        Ok(())
    }

    /// True when the current source transaction's changes to `relid` are to be skipped.
    fn skipping(&self, relid: u32) -> bool {
        match &self.txn {
            None => true,
            Some(t) if t.skip => true,
            Some(t) => self
                .table_snapshots
                .get(&relid)
                .is_some_and(|snap| t.final_lsn < *snap),
        }
    }

    async fn statement(&mut self, key: StmtKey, sql: impl FnOnce() -> String) -> Result<Statement> {
        if let Some(s) = self.stmts.get(&key) {
            return Ok(s.clone());
        }
        let text = sql();
        let stmt = self
            .dest
            .client
            .prepare(&text)
            .await
            .map_err(sql_err(format!(
                "preparing `{}`",
                text.chars().take(120).collect::<String>()
            )))?;
        self.stmts.insert(key, stmt.clone());
        Ok(stmt)
    }

    /// Queues the pending run, if any, on the executor.
    async fn flush_run(&mut self) -> Result<()> {
        let Some(run) = self.run.take() else {
            return Ok(());
        };
        let target = self.targets[&run.relid].clone();
        let outcome = |kind| Outcome {
            kind,
            table: target.name.clone(),
            expected: run.rows as u64,
            affected: 0,
        };
        match &run.kind {
            RunKind::Insert => {
                let copy = sql::copy_in(&target.table, &target.all_cols());
                let o = outcome(Kind::Insert);
                self.exec.copy(copy, Bytes::from(run.copy), o).await?;
            }
            RunKind::Update(set) => {
                let stmt = self
                    .statement(StmtKey::Update(run.relid, set.clone()), || {
                        sql::update_by_key(
                            &target.table,
                            &target.cols_at(&target.key),
                            &target.cols_at(set),
                        )
                    })
                    .await?;
                let o = outcome(Kind::Update);
                self.exec
                    .execute(stmt, Params::Arrays(run.params), o)
                    .await?;
            }
            RunKind::Delete => {
                let stmt = self
                    .statement(StmtKey::Delete(run.relid), || {
                        sql::delete_by_key(&target.table, &target.cols_at(&target.key))
                    })
                    .await?;
                let o = outcome(Kind::Delete);
                self.exec
                    .execute(stmt, Params::Arrays(run.params), o)
                    .await?;
            }
        }
        Ok(())
    }

    fn missing(&mut self, n: u64, op: &str, table: &str) {
        if n == 0 {
            return;
        }
        match op {
            "update" => self.stats.update_missing += n,
            _ => self.stats.delete_missing += n,
        }
        if self.warned_missing.insert(table.to_owned()) {
            tracing::warn!(
                table,
                "an {op} found no row to change on the destination: the destination differs from the source (the built-in worker skips these too; further ones on this table are counted in the summary, not logged)"
            );
        } else {
            tracing::debug!(table, rows = n, "{op} found no row");
        }
    }

    /// Adds a row to the run, flushing the current run first if the row cannot join it.
    async fn push(
        &mut self,
        relid: u32,
        kind: RunKind,
        nparams: usize,
        keys: &[u64],
    ) -> Result<&mut Run> {
        if !self
            .run
            .as_ref()
            .is_some_and(|r| r.accepts(relid, &kind, keys))
        {
            self.flush_run().await?;
            self.run = Some(Run::new(relid, kind, nparams));
        }
        Ok(self.run.as_mut().expect("a run was just made"))
    }

    fn count(&mut self, tuple: &TupleData) {
        if let Some(g) = self.group.as_mut() {
            if g.changes == 100 {
                crate::failpoint::hit(crate::failpoint::MID_TRANSACTION);
            }
            g.changes += 1;
            g.bytes += tuple.raw().len() as u64;
        }
    }

    async fn insert(&mut self, rels: &RelationCache, relid: u32, new: &TupleData) -> Result<()> {
        let target = self.target(rels, relid).await?;
        let mut values = Vec::with_capacity(new.len());
        for c in new.iter() {
            values.push(text(c, &target.name)?);
        }
        let run = self.push(relid, RunKind::Insert, 0, &[]).await?;
        run.push_copy_row(values.into_iter());
        self.count(new);
        Ok(())
    }

    async fn update(
        &mut self,
        rels: &RelationCache,
        relid: u32,
        old: Option<&OldTuple>,
        new: &TupleData,
    ) -> Result<()> {
        let target = self.target(rels, relid).await?;
        let what = target.name.as_str();
        if let Some(OldTuple::Old(old)) = old {
            let new_cols: Vec<Column> = new.columns().collect();
            // REPLICA IDENTITY FULL: the old row identifies the row; unchanged TOAST values
            // of the new row are the old row's.
            let old_cols: Vec<Column> = old.columns().collect();
            let mut old_vals = Vec::with_capacity(old_cols.len());
            for c in &old_cols {
                old_vals.push(value(c, what)?);
            }
            let set: Vec<usize> = (0..new_cols.len()).collect();
            let mut params = old_vals.clone();
            for (i, c) in new_cols.iter().enumerate() {
                params.push(match c {
                    Column::UnchangedToast => old_vals[i].clone(),
                    c => value(c, what)?,
                });
            }
            self.flush_run().await?;
            let stmt = self
                .statement(StmtKey::UpdateFull(relid, set.clone()), || {
                    sql::update_full(&target.table, &target.all_cols(), &target.cols_at(&set))
                })
                .await?;
            let o = Outcome {
                kind: Kind::Update,
                table: target.name.clone(),
                expected: 1,
                affected: 0,
            };
            self.exec.execute(stmt, Params::Row(params), o).await?;
            self.count(new);
            return Ok(());
        }
        if target.key.is_empty() {
            return Err(Error::Config(format!(
                "an update of {} arrived without a replica identity to find the row by; give the table a primary key or REPLICA IDENTITY on the source",
                target.name
            )));
        }
        let new_cols: Vec<ColumnRef<'_>> = new.iter().collect();
        let set: Vec<usize> = (0..new_cols.len())
            .filter(|&i| !matches!(new_cols[i], ColumnRef::UnchangedToast))
            .collect();
        let key_cols: Vec<ColumnRef<'_>>;
        let key_from: &[ColumnRef<'_>] = match old {
            Some(OldTuple::Key(k)) => {
                key_cols = k.iter().collect();
                &key_cols
            }
            _ => &new_cols,
        };
        let mut old_key = Vec::with_capacity(target.key.len());
        for &i in &target.key {
            old_key.push(text(key_from[i], what)?);
        }
        let mut new_key = Vec::with_capacity(target.key.len());
        for (j, &i) in target.key.iter().enumerate() {
            new_key.push(match new_cols[i] {
                ColumnRef::UnchangedToast => old_key[j],
                c => text(c, what)?,
            });
        }
        let mut values = Vec::with_capacity(set.len());
        for &i in &set {
            values.push(text(new_cols[i], what)?);
        }
        let nparams = old_key.len() + values.len();
        let keys = [fingerprint(&old_key), fingerprint(&new_key)];
        let keys = if keys[0] == keys[1] {
            &keys[..1]
        } else {
            &keys[..]
        };
        let run = self
            .push(relid, RunKind::Update(set), nparams, keys)
            .await?;
        run.push_params(old_key.iter().chain(&values).copied(), keys);
        self.count(new);
        Ok(())
    }

    async fn delete(&mut self, rels: &RelationCache, relid: u32, old: &OldTuple) -> Result<()> {
        let target = self.target(rels, relid).await?;
        let what = target.name.as_str();
        if let OldTuple::Old(_) = old {
            let cols: Vec<Column> = old.tuple().columns().collect();
            let mut params = Vec::with_capacity(cols.len());
            for c in &cols {
                params.push(value(c, what)?);
            }
            self.flush_run().await?;
            let stmt = self
                .statement(StmtKey::DeleteFull(relid), || {
                    sql::delete_full(&target.table, &target.all_cols())
                })
                .await?;
            let o = Outcome {
                kind: Kind::Delete,
                table: target.name.clone(),
                expected: 1,
                affected: 0,
            };
            self.exec.execute(stmt, Params::Row(params), o).await?;
            self.count(old.tuple());
            return Ok(());
        }
        let cols: Vec<ColumnRef<'_>> = old.tuple().iter().collect();
        let mut key = Vec::with_capacity(target.key.len());
        for &i in &target.key {
            key.push(text(cols[i], what)?);
        }
        let fp = [fingerprint(&key)];
        let run = self
            .push(relid, RunKind::Delete, target.key.len(), &fp)
            .await?;
        run.push_params(key.iter().copied(), &fp);
        self.count(old.tuple());
        Ok(())
    }

    async fn truncate(
        &mut self,
        rels: &RelationCache,
        relids: &[u32],
        restart: bool,
    ) -> Result<()> {
        let mut tables = Vec::new();
        for &relid in relids {
            if self.skipping(relid) {
                continue;
            }
            tables.push(self.target(rels, relid).await?.table.clone());
        }
        if tables.is_empty() {
            return Ok(());
        }
        self.flush_run().await?;
        self.exec.simple(sql::truncate(&tables, restart)).await?;
        self.stats.truncates += 1;
        Ok(())
    }

    /// Writes the progress row and commits the open group; notes the destination's WAL
    /// position of the commit.
    async fn commit_group(&mut self) -> Result<()> {
        self.flush_run().await?;
        self.settle().await?;
        let Some(group) = self.group.take() else {
            return Ok(());
        };
        let Some((end, commit_ts)) = group.last_end else {
            // Opened for a transaction that has not ended: keep it open.
            self.group = Some(group);
            return Ok(());
        };
        let client = &self.dest.client;
        let end_text = end.to_string();
        client
            .execute(
                progress::UPSERT_SQL,
                &[
                    &self.sub.name,
                    &self.sub.system_id,
                    &self.sub.slot,
                    &self.sub.publications,
                    &end_text,
                    &commit_ts,
                ],
            )
            .await
            .map_err(sql_err("recording progress in pgsub.progress"))?;
        let rows = client
            .simple_query("COMMIT; SELECT pg_catalog.pg_current_wal_insert_lsn()::text")
            .await
            .map_err(sql_err("committing on the destination"))?;
        let dest_lsn = rows
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.parse().ok()),
                _ => None,
            })
            .unwrap_or(Lsn(u64::MAX));
        crate::failpoint::hit(crate::failpoint::AFTER_DEST_COMMIT);
        self.pending_flush.push_back((end, dest_lsn));
        self.stats.groups += 1;
        Ok(())
    }

    /// Moves `durable` past every committed group the destination has flushed.
    async fn check_flushed(&mut self) -> Result<()> {
        if self.pending_flush.is_empty() {
            return Ok(());
        }
        let flushed: Lsn = self
            .dest
            .client
            .query_one("SELECT pg_catalog.pg_current_wal_flush_lsn()::text", &[])
            .await
            .map_err(sql_err("reading the destination's WAL flush position"))?
            .get::<_, String>(0)
            .parse()
            .unwrap_or_default();
        while let Some(&(end, dest_lsn)) = self.pending_flush.front() {
            if dest_lsn > flushed {
                break;
            }
            self.durable = self.durable.max(end);
            self.pending_flush.pop_front();
        }
        Ok(())
    }

    fn group_full(&self) -> bool {
        self.group.as_ref().is_some_and(|g| {
            g.changes >= self.limits.changes
                || g.bytes >= self.limits.bytes
                || g.opened.elapsed() >= self.limits.age
        })
    }

    async fn on_message(&mut self, rels: &RelationCache, msg: &PgOutput) -> Result<()> {
        match msg {
            PgOutput::Begin(b) => {
                let skip = b.final_lsn < self.skip_before;
                self.txn = Some(SourceTxn {
                    final_lsn: b.final_lsn,
                    skip,
                });
                if !skip {
                    self.begin_group().await?;
                }
            }
            PgOutput::Commit(c) => {
                let txn = self.txn.take();
                if txn.is_some_and(|t| t.skip) {
                    self.stats.skipped_transactions += 1;
                    if self.group.is_none() && self.pending_flush.is_empty() {
                        self.durable = self.durable.max(c.end_lsn);
                    }
                    return Ok(());
                }
                // The run stays open: the next source transaction's changes may join it,
                // since they go into the same destination transaction.
                if let Some(g) = self.group.as_mut() {
                    g.last_end = Some((c.end_lsn, c.commit_ts.to_string()));
                }
                self.stats.transactions += 1;
                if self.group_full() {
                    self.commit_group().await?;
                }
            }
            PgOutput::Relation(r) => {
                // Columns may have changed: look the destination up again next time.
                self.flush_run().await?;
                self.targets.remove(&r.relid);
                self.stmts.retain(|k, _| match k {
                    StmtKey::Update(id, _)
                    | StmtKey::Delete(id)
                    | StmtKey::UpdateFull(id, _)
                    | StmtKey::DeleteFull(id) => *id != r.relid,
                });
            }
            PgOutput::Insert(m) if !self.skipping(m.relid) => {
                self.insert(rels, m.relid, &m.new).await?;
            }
            PgOutput::Update(m) if !self.skipping(m.relid) => {
                self.update(rels, m.relid, m.old.as_ref(), &m.new).await?;
            }
            PgOutput::Delete(m) if !self.skipping(m.relid) => {
                self.delete(rels, m.relid, &m.old).await?;
            }
            PgOutput::Truncate(t) => {
                self.truncate(rels, &t.relids, t.restart_identity()).await?;
            }
            PgOutput::Message(m) if m.transactional() => {
                tracing::info!(prefix = %m.prefix, bytes = m.content.len(), "logical decoding message in the stream");
            }
            PgOutput::BeginPrepare(_)
            | PgOutput::StreamPrepare(_)
            | PgOutput::CommitPrepared(_) => {
                return Err(Error::Config(format!(
                    "sync received a {} message, which it does not apply yet; run it without --two-phase",
                    msg.kind()
                )));
            }
            _ => {}
        }
        Ok(())
    }

    /// Applies a streamed transaction at its Stream Commit, in commit order, as one source
    /// transaction: its spooled messages are read back and decoded one at a time, with
    /// the descriptions they carry (a streamed transaction repeats the Relation message
    /// of every table it changes before its first change).
    async fn apply_streamed(&mut self, c: &StreamCommit) -> Result<()> {
        let Some(mut reader) = self.spool.take(c.xid)? else {
            return Err(Error::Config(format!(
                "Stream Commit of transaction {} whose blocks pgsub did not receive; restart pgsub (the source sends it again)",
                c.xid
            )));
        };
        let mut rels = RelationCache::default();
        self.on_message(
            &rels,
            &PgOutput::Begin(Begin {
                final_lsn: c.commit_lsn,
                commit_ts: c.commit_ts,
                xid: c.xid,
            }),
        )
        .await?;
        let skip = self.txn.as_ref().is_some_and(|t| t.skip);
        let mut decoder = Decoder::within_stream_block();
        while let Some(bytes) = reader.next_message()? {
            let msg = decoder.decode(bytes).map_err(|e| {
                Error::Config(format!(
                    "a spooled message of streamed transaction {} does not decode: {e}",
                    c.xid
                ))
            })?;
            rels.on_message(&msg)?;
            if !skip {
                self.on_message(&rels, &msg).await?;
            }
        }
        if !skip {
            self.stats.streamed_transactions += 1;
        }
        self.on_message(
            &rels,
            &PgOutput::Commit(Commit {
                flags: 0,
                commit_lsn: c.commit_lsn,
                end_lsn: c.end_lsn,
                commit_ts: c.commit_ts,
            }),
        )
        .await?;
        // Targets resolved from the spooled descriptions may be older than the live
        // stream's: resolve them again next time.
        self.flush_run().await?;
        self.targets.clear();
        self.stmts.clear();
        Ok(())
    }

    /// Commits what is open and waits until the destination has flushed it.
    async fn flush_everything(&mut self) -> Result<()> {
        if self.txn.is_none() {
            self.commit_group().await?;
        }
        while !self.pending_flush.is_empty() {
            self.check_flushed().await?;
            if !self.pending_flush.is_empty() {
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
        if self.txn.is_none() && self.group.as_ref().is_some_and(|g| g.last_end.is_some()) {
            self.commit_group().await?;
        }
        self.check_flushed().await?;
        Ok(self.durable)
    }

    async fn make_durable(&mut self, _processed: Lsn) -> Result<Lsn> {
        self.flush_everything().await?;
        if self.txn.is_some() {
            // Stopped inside a source transaction: roll back its uncommitted part; it is
            // sent again next time.
            self.run = None;
            if self.group.take().is_some() {
                let _ = self.exec.barrier().await;
                let _ = self.dest.client.batch_execute("ROLLBACK").await;
            }
        }
        Ok(self.durable)
    }

    fn publish_metrics(&self) {
        use crate::metrics::*;
        let Some(r) = registry() else { return };
        let s = &self.stats;
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
    }
}

/// A spool directory of this process under the system's temporary directory.
fn default_spool_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("pgsub-spool-{}", std::process::id()))
}

/// REPLICA IDENTITY of a relation, for preflight messages.
pub fn identity_name(r: ReplicaIdentity) -> &'static str {
    match r {
        ReplicaIdentity::Default => "default (primary key)",
        ReplicaIdentity::Nothing => "nothing",
        ReplicaIdentity::Full => "full",
        ReplicaIdentity::Index => "index",
    }
}
