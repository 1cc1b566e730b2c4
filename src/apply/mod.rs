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
//! [`spool`] (streamed transactions), [`stats`] (counters). This file dispatches.
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
pub mod conflicts;
pub mod durable;
pub mod executor;
pub mod rows;
pub mod spool;
pub mod sql;
pub mod stats;
pub mod table;
pub mod target;
pub mod txn;

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
use durable::Durability;
pub use durable::Subscription;
use executor::{Check, Executor, Failed, Kind, Outcome, Params, Probe};
use rows::UpdateImage;
use spool::Spool;
pub use stats::ApplyStats;
use table::Equality;
use target::{ResolveOptions, Target};
pub use txn::GroupLimits;
use txn::{Begun, Transactions};

/// Bytes before the pgoutput message in an XLogData payload: tag, `wal_start`, `wal_end`,
/// send time.
const XLOG_DATA_HEADER: usize = 1 + 8 + 8 + 8;

/// A prepared statement's shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum StmtKey {
    /// Update by the key at these positions, setting those.
    Update(u32, Vec<usize>, Vec<usize>),
    /// Delete by the key at these positions.
    Delete(u32, Vec<usize>),
    /// Update of one row equal to the old one (these columns NULL), setting those.
    UpdateFull(u32, Vec<bool>, Vec<usize>),
    /// Delete of one row equal to the old one (these columns NULL).
    DeleteFull(u32, Vec<bool>),
}

impl StmtKey {
    fn relid(&self) -> u32 {
        match self {
            StmtKey::Update(id, ..)
            | StmtKey::Delete(id, ..)
            | StmtKey::UpdateFull(id, ..)
            | StmtKey::DeleteFull(id, ..) => *id,
        }
    }
}

/// Options of the sink.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Add columns the source adds mid-stream (`--schema create`).
    pub add_columns: bool,
    /// What to do about conflicts.
    pub on_conflict: OnConflict,
    /// Columns generated on the source, by relation (PostgreSQL 18 publishes them).
    pub source_generated: OidMap<Vec<String>>,
    /// Where streamed transactions are kept (default: a directory of its own under the
    /// system's temporary directory).
    pub spool_dir: Option<std::path::PathBuf>,
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
        table_snapshots: OidMap<Lsn>,
        limits: GroupLimits,
        opts: ApplyOptions,
    ) -> Self {
        let exec = Executor::start(dest.client.clone());
        let spool = Spool::new(opts.spool_dir.clone().unwrap_or_else(default_spool_dir));
        ApplySink {
            dest,
            exec,
            txns: Transactions::new(applied, table_snapshots, limits),
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
        }
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

    /// Waits for the queued statements and books what they did: counts, and conflicts.
    async fn settle(&mut self) -> Result<()> {
        let outcomes = match self.exec.barrier().await? {
            Ok(o) => o,
            Err(f) => return Err(self.failed(f).await),
        };
        for o in outcomes {
            let missing = o.missing_count;
            let kind = match o.kind {
                Kind::Insert => {
                    self.stats.inserted += o.affected;
                    None
                }
                Kind::Update => {
                    self.stats.updated += o.affected;
                    self.stats.update_missing += missing;
                    Some(ConflictKind::UpdateMissing)
                }
                Kind::Delete => {
                    self.stats.deleted += o.affected;
                    self.stats.delete_missing += missing;
                    Some(ConflictKind::DeleteMissing)
                }
                Kind::Other => None,
            };
            if let Some(kind) = kind.filter(|_| missing > 0) {
                self.conflicts
                    .record(kind, &o.table, missing, &o.missing, !o.exact);
                if self.opts.on_conflict == OnConflict::Error {
                    let msg = format!(
                        "{} on {}: {missing} change(s) found no row on the destination ({}); --on-conflict error stops here, and nothing of this transaction is applied: make the destination's rows match the source, or run without --on-conflict error to skip them as the built-in worker does",
                        kind.name(),
                        o.table,
                        o.missing.first().map_or("key not known", String::as_str)
                    );
                    return Err(self.stop(Error::Conflict(msg)).await);
                }
            }
        }
        Ok(())
    }

    /// A queued statement failed: the destination transaction is lost. Conflicts are
    /// recorded on their own, and the error says what it was about.
    async fn failed(&mut self, f: Failed) -> Error {
        let code = f.error.code().map(str::to_owned);
        let target = self.targets.get(&f.relid).cloned();
        let table = target.as_ref().map_or("?".to_owned(), |t| t.name.clone());
        match code.as_deref() {
            Some(sqlstate::UNIQUE_VIOLATION | sqlstate::EXCLUSION_VIOLATION) => {
                let kind = if f.kind == Kind::Insert {
                    ConflictKind::InsertExists
                } else {
                    ConflictKind::UpdateExists
                };
                let detail = f.error.source.as_db_error().and_then(|d| d.detail());
                let key = conflicts::key_of_violation(detail);
                self.conflicts
                    .record(kind, &table, 1, key.as_slice(), false);
                let msg = format!(
                    "{} on {table}: {} already exists on the destination ({}); the built-in worker stops here too. Nothing of this transaction is applied or acknowledged: remove or change the destination's conflicting row, then run pgsub again",
                    kind.name(),
                    key.as_deref().unwrap_or("a key"),
                    crate::pg::describe(&f.error.source)
                );
                self.stop(Error::Conflict(msg)).await
            }
            Some(c) if sqlstate::is_value_too_wide(c) => {
                let narrower = target.map_or_else(String::new, |t| t.narrower_columns());
                let msg = format!(
                    "a value of {table} does not fit its destination column ({}): {narrower}. pgsub never cuts a value; widen the destination column (ALTER TABLE … ALTER COLUMN … TYPE …) and run pgsub again",
                    crate::pg::describe(&f.error.source)
                );
                self.stop(Error::Config(msg)).await
            }
            _ => Error::from(f.error),
        }
    }

    /// Rolls the open destination transaction back and writes the conflict counts on
    /// their own, before stopping with `e`.
    async fn stop(&mut self, e: Error) -> Error {
        self.run = None;
        self.txns.abandon();
        let _ = self.exec.barrier().await;
        let _ = self.dest.client.batch_execute("ROLLBACK").await;
        let unsaved = self.conflicts.take_unsaved();
        let name = self.durability.subscription().name.clone();
        if let Err(w) = crate::state::conflicts::add(&self.dest.client, &name, &unsaved).await {
            tracing::warn!("could not record the conflict in pgsub.conflicts: {w}");
        }
        e
    }

    async fn statement(&mut self, key: StmtKey, sql: impl FnOnce() -> String) -> Result<Statement> {
        if let Some(s) = self.stmts.get(&key) {
            return Ok(s.clone());
        }
        let text = sql();
        let stmt = match self.dest.client.prepare(&text).await {
            Ok(s) => s,
            Err(e) => {
                // A queued statement that failed aborted the transaction: its error is
                // the one to report, not this statement's.
                if e.code().map(|c| c.code()) == Some(sqlstate::IN_FAILED_TRANSACTION) {
                    self.settle().await?;
                }
                return Err(sql_err(format!(
                    "preparing `{}`",
                    text.chars().take(120).collect::<String>()
                ))(e));
            }
        };
        self.stmts.insert(key, stmt.clone());
        Ok(stmt)
    }

    /// Queues the pending run, if any, on the executor.
    async fn flush_run(&mut self) -> Result<()> {
        let Some(run) = self.run.take() else {
            return Ok(());
        };
        let target = self.targets[&run.relid].clone();
        let rows = run.rows as u64;
        self.stats.statements += 1;
        match &run.kind {
            RunKind::Insert => {
                let cols = target.cols_at(&target.written());
                let copy = sql::copy_in(&target.table, &cols);
                let o = Outcome::new(Kind::Insert, run.relid, &target.name, rows);
                self.exec.copy(copy, Bytes::from(run.copy), o).await?;
            }
            RunKind::Update(key, set) => {
                let (key, set) = (key.clone(), set.clone());
                let stmt = self
                    .statement(StmtKey::Update(run.relid, key.clone(), set.clone()), || {
                        sql::update_by_key(
                            &target.table,
                            target.only,
                            &target.cols_at(&key),
                            &target.cols_at(&set),
                        )
                    })
                    .await?;
                // The probe finds the new key of each row among the parameters.
                let new_key: Vec<usize> = key
                    .iter()
                    .enumerate()
                    .map(|(j, k)| {
                        set.iter()
                            .position(|s| s == k)
                            .map_or(j + 1, |p| key.len() + p + 1)
                    })
                    .collect();
                let check = Check::Run {
                    key_names: target
                        .cols_at(&key)
                        .iter()
                        .map(|c| c.name.clone())
                        .collect(),
                    key_params: (0..key.len()).collect(),
                    probe: Probe::Missing(sql::probe(
                        &target.table,
                        target.only,
                        &target.cols_at(&key),
                        key.len() + set.len(),
                        &[(1..=key.len()).collect(), new_key],
                        false,
                    )),
                };
                let o = Outcome::new(Kind::Update, run.relid, &target.name, rows);
                self.exec
                    .execute(stmt, Params::Arrays(run.params), o, check)
                    .await?;
            }
            RunKind::Delete(key) => {
                let key = key.clone();
                let stmt = self
                    .statement(StmtKey::Delete(run.relid, key.clone()), || {
                        sql::delete_by_key(&target.table, target.only, &target.cols_at(&key))
                    })
                    .await?;
                let at = [(1..=key.len()).collect::<Vec<usize>>()];
                let check = Check::Run {
                    key_names: target
                        .cols_at(&key)
                        .iter()
                        .map(|c| c.name.clone())
                        .collect(),
                    key_params: (0..key.len()).collect(),
                    probe: Probe::Kept(sql::probe(
                        &target.table,
                        target.only,
                        &target.cols_at(&key),
                        key.len(),
                        &at,
                        true,
                    )),
                };
                let o = Outcome::new(Kind::Delete, run.relid, &target.name, rows);
                self.exec
                    .execute(stmt, Params::Arrays(run.params), o, check)
                    .await?;
            }
        }
        Ok(())
    }

    /// Adds a row to the run, flushing the current run first if the row cannot join it.
    async fn push(
        &mut self,
        target: &Target,
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
            let one_at_a_time = match kind {
                RunKind::Insert => target.row_triggers,
                _ => target.order_sensitive,
            };
            let max = if one_at_a_time { 1 } else { MAX_RUN_ROWS };
            self.run = Some(Run::new(relid, kind, nparams, max));
        }
        Ok(self.run.as_mut().expect("a run was just made"))
    }

    fn count(&mut self, tuple: &TupleData) {
        if self.txns.count(tuple.raw().len() as u64) == 100 {
            crate::failpoint::hit(crate::failpoint::MID_TRANSACTION);
        }
    }

    async fn insert(&mut self, rels: &RelationCache, relid: u32, new: &TupleData) -> Result<()> {
        let target = self.target(rels, relid).await?;
        let cols: Vec<ColumnRef<'_>> = new.iter().collect();
        let values = rows::values(&cols, &target.written(), &target.name)?;
        let run = self.push(&target, relid, RunKind::Insert, 0, &[]).await?;
        run.push_copy_row(values.into_iter());
        self.count(new);
        Ok(())
    }

    /// An update or delete of a row found by every column (REPLICA IDENTITY FULL without
    /// a usable destination key): one statement for the one row.
    async fn by_whole_row(
        &mut self,
        target: &Target,
        relid: u32,
        old: &[ColumnRef<'_>],
        new: Option<(&[ColumnRef<'_>], &[usize])>,
    ) -> Result<()> {
        if !target.no_equality.is_empty() {
            return Err(Error::Config(format!(
                "{} has REPLICA IDENTITY FULL on the source and no primary key or replica-identity index on the destination, so a row is found by comparing every column; but column(s) {} have a type without an equality operator (the built-in worker refuses this too): give the destination table a primary key or a replica-identity index",
                target.name,
                target.no_equality.join(", ")
            )));
        }
        let written = target.written();
        let old_values = rows::values(old, &written, &target.name)?;
        let nulls: Vec<bool> = old_values.iter().map(Option::is_none).collect();
        let mut params: Vec<Option<String>> = old_values
            .iter()
            .flatten()
            .map(|v| Some(String::from_utf8_lossy(v).into_owned()))
            .collect();
        let names: Vec<&str> = written
            .iter()
            .map(|&i| target.cols[i].name.as_str())
            .collect();
        let desc = conflicts::describe_key(&names, &old_values);
        self.flush_run().await?;
        self.stats.statements += 1;
        let all = target.cols_at(&written);
        let (stmt, kind) = match new {
            Some((new_cols, set)) => {
                for &i in set {
                    params.push(
                        rows::text(new_cols[i], &target.name)?
                            .map(|v| String::from_utf8_lossy(v).into_owned()),
                    );
                }
                let set = set.to_vec();
                let s = self
                    .statement(
                        StmtKey::UpdateFull(relid, nulls.clone(), set.clone()),
                        || {
                            sql::update_full(
                                &target.table,
                                target.only,
                                &all,
                                &nulls,
                                &target.cols_at(&set),
                            )
                        },
                    )
                    .await?;
                (s, Kind::Update)
            }
            None => {
                let s = self
                    .statement(StmtKey::DeleteFull(relid, nulls.clone()), || {
                        sql::delete_full(&target.table, target.only, &all, &nulls)
                    })
                    .await?;
                (s, Kind::Delete)
            }
        };
        let o = Outcome::new(kind, relid, &target.name, 1);
        self.exec
            .execute(stmt, Params::Row(params), o, Check::Row(desc))
            .await
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
        let image = UpdateImage::new(old, new, &target.updatable());
        check_identity_unchanged(&target, &image)?;
        let Some(key) = target.match_key(image.full).map(<[usize]>::to_vec) else {
            self.by_whole_row(&target, relid, &image.old, Some((&image.new, &image.set)))
                .await?;
            self.count(new);
            return Ok(());
        };
        if key.is_empty() {
            return Err(Error::Config(format!(
                "an update of {what} arrived without a replica identity to find the row by; give the table a primary key or REPLICA IDENTITY on the source"
            )));
        }
        let old_key = rows::values(&image.old, &key, what)?;
        let mut new_key = Vec::with_capacity(key.len());
        for &i in &key {
            new_key.push(image.new_key_value(i, what)?);
        }
        let mut values = Vec::with_capacity(image.set.len());
        for &i in &image.set {
            values.push(rows::text(image.new[i], what)?);
        }
        let nparams = old_key.len() + values.len();
        let keys = [fingerprint(&old_key), fingerprint(&new_key)];
        let keys = if keys[0] == keys[1] {
            &keys[..1]
        } else {
            &keys[..]
        };
        let run = self
            .push(
                &target,
                relid,
                RunKind::Update(key, image.set.clone()),
                nparams,
                keys,
            )
            .await?;
        run.push_params(old_key.iter().chain(&values).copied(), keys);
        self.count(new);
        Ok(())
    }

    async fn delete(&mut self, rels: &RelationCache, relid: u32, old: &OldTuple) -> Result<()> {
        let target = self.target(rels, relid).await?;
        let what = target.name.as_str();
        let cols: Vec<ColumnRef<'_>> = old.tuple().iter().collect();
        let full = matches!(old, OldTuple::Old(_));
        let Some(key) = target.match_key(full).map(<[usize]>::to_vec) else {
            self.by_whole_row(&target, relid, &cols, None).await?;
            self.count(old.tuple());
            return Ok(());
        };
        let values = rows::values(&cols, &key, what)?;
        let fp = [fingerprint(&values)];
        let nparams = key.len();
        let run = self
            .push(&target, relid, RunKind::Delete(key), nparams, &fp)
            .await?;
        run.push_params(values.iter().copied(), &fp);
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
            if self.txns.skipping(relid) {
                continue;
            }
            let t = self.target(rels, relid).await?;
            tables.push((t.table.clone(), t.only));
        }
        if tables.is_empty() {
            return Ok(());
        }
        self.flush_run().await?;
        self.exec.simple(sql::truncate(&tables, restart)).await?;
        self.stats.truncates += 1;
        Ok(())
    }

    /// Commits the open group, when it holds complete source transactions and none is
    /// half received.
    async fn commit_group(&mut self) -> Result<()> {
        self.flush_run().await?;
        self.settle().await?;
        let Some((end, commit_ts)) = self.txns.close_group() else {
            return Ok(());
        };
        self.durability
            .commit(&self.dest.client, end, &commit_ts, &mut self.conflicts)
            .await?;
        self.stats.groups += 1;
        Ok(())
    }

    async fn on_message(&mut self, rels: &RelationCache, msg: &PgOutput) -> Result<()> {
        match msg {
            PgOutput::Begin(b) => {
                if self.txns.begin(b.final_lsn) == Begun::Open {
                    self.exec.simple("BEGIN").await?;
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
                // Columns may have changed: look the destination up again next time.
                self.flush_run().await?;
                self.targets.remove(&r.relid);
                self.stmts.retain(|k, _| k.relid() != r.relid);
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
            return Err(Error::Definite(format!(
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
        let skip = self.txns.skipping_transaction();
        tracing::debug!(
            xid = c.xid,
            messages = reader.records,
            bytes = reader.bytes,
            skip,
            "applying a streamed transaction from its spool file"
        );
        let mut decoder = Decoder::within_stream_block();
        while let Some(bytes) = reader.next_message()? {
            let msg = decoder.decode(bytes).map_err(|e| {
                Error::Definite(format!(
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
        if !self.txns.in_transaction() {
            self.commit_group().await?;
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
        if !self.txns.in_transaction() && self.txns.group_committable() {
            self.commit_group().await?;
        }
        self.durability.check(&self.dest.client).await?;
        Ok(self.durability.durable())
    }

    async fn make_durable(&mut self, _processed: Lsn) -> Result<Lsn> {
        self.flush_everything().await?;
        if self.txns.in_transaction() {
            // Stopped inside a source transaction: roll back its uncommitted part; it is
            // sent again next time.
            self.run = None;
            if self.txns.abandon() {
                let _ = self.exec.barrier().await;
                let _ = self.dest.client.batch_execute("ROLLBACK").await;
            }
        }
        Ok(self.durability.durable())
    }

    fn publish_metrics(&self) {
        stats::publish(
            &self.stats,
            &self.conflicts,
            self.targets.values().map(|t| t.name.as_str()),
        );
    }
}

/// An UPDATE cannot set a `GENERATED ALWAYS AS IDENTITY` column: where the old value is
/// known (a key column, or every column under REPLICA IDENTITY FULL) and changed, stop
/// with what to do, rather than leave the old value silently.
fn check_identity_unchanged(target: &Target, image: &UpdateImage<'_>) -> Result<()> {
    for (i, c) in target.cols.iter().enumerate() {
        if !c.identity_always || !(image.full || target.key.contains(&i)) {
            continue;
        }
        let old = rows::text(image.old[i], &target.name)?;
        let new = image.new_key_value(i, &target.name)?;
        if old != new {
            return Err(Error::Config(format!(
                "the source changed column \"{}\" of {}, which is GENERATED ALWAYS AS IDENTITY on the destination and so cannot be set by an UPDATE: make it GENERATED BY DEFAULT on the destination (ALTER TABLE {} ALTER COLUMN {} SET GENERATED BY DEFAULT)",
                c.name,
                target.name,
                target.table,
                c.ident()
            )));
        }
    }
    Ok(())
}

/// A spool directory of this process under the system's temporary directory.
fn default_spool_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("pgsub-spool-{}", std::process::id()))
}
