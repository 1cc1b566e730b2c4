//! The initial copy: every published table copied under one snapshot of the source, in
//! parallel, each table's data and its `ready` mark committed in one destination
//! transaction.
//!
//! ```text
//!  source (REPEATABLE READ, SET TRANSACTION SNAPSHOT)     destination (one transaction)
//!  COPY (SELECT published columns FROM t WHERE filter) ─► COPY t (columns) FROM STDIN
//!     TO STDOUT                                           UPDATE pgsub.tables SET state = 'ready'
//!                                                         COMMIT
//! ```
//!
//! The snapshot is either the one exported when the slot was created (its consistent
//! point is where streaming starts) or, for a table whose copy was interrupted earlier,
//! a fresh one exported by a temporary slot; its position is recorded per table in
//! `pgsub.tables.snapshot_lsn`, and the stream skips that table's changes from
//! transactions committed before it. A copy interrupted half way leaves nothing behind:
//! its transaction never committed.
//!
//! Binary COPY is used when every column is of the same built-in type on both sides;
//! otherwise text, read by the destination type's input function.

use std::sync::Arc;
use std::time::Instant;

use crate::pg::ident::{ident as escape_identifier, literal as escape_literal};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::task::JoinSet;

use crate::conninfo::Conninfo;
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::output::progress::CopyProgress;
use crate::pg::SqlError;
use crate::pg::ident::qualified;
use crate::source::tables::PublishedTable;

/// Bytes of COPY data sent to the destination at a time.
const COPY_BATCH: usize = 1 << 20;

/// OIDs below this are built-in types, the same on every server.
const FIRST_NORMAL_OBJECT_ID: u32 = 16384;

/// How to copy.
#[derive(Debug, Clone)]
pub struct CopyPlan {
    /// Subscription name (key of `pgsub.tables`).
    pub name: String,
    /// Exported snapshot to read under.
    pub snapshot: String,
    /// Its position.
    pub snapshot_lsn: Lsn,
    /// Tables copied at once.
    pub jobs: usize,
    /// Empty non-empty destination tables first instead of refusing.
    pub truncate_first: bool,
    /// Progress bars (stderr is a terminal) instead of log lines.
    pub bars: bool,
    /// Text COPY for every table (`--binary off`).
    pub text: bool,
}

/// What one table's copy moved.
#[derive(Debug, Clone)]
pub struct Copied {
    /// `schema.table`.
    pub table: String,
    /// Rows.
    pub rows: u64,
    /// Bytes of COPY data.
    pub bytes: u64,
}

fn err(context: String) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |e| Error::from(SqlError::new(context, e))
}

/// Copies `tables` from the source to the destination under `plan.snapshot`.
pub async fn copy_tables(
    source: &Conninfo,
    dest_info: &Conninfo,
    tables: Vec<PublishedTable>,
    plan: &CopyPlan,
) -> Result<Vec<Copied>> {
    let source = Arc::new(source.clone());
    let dest_info = Arc::new(dest_info.clone());
    let plan = Arc::new(plan.clone());
    let mut remaining = tables.len();
    let metrics = crate::output::metrics::registry();
    if let Some(r) = metrics {
        r.set(
            &crate::output::metrics::COPY_TABLES_REMAINING,
            &[],
            remaining as f64,
        );
    }
    let progress = CopyProgress::new(plan.bars);
    let mut queue = tables.into_iter();
    let mut running = JoinSet::new();
    let mut done = Vec::new();
    let started = Instant::now();
    loop {
        while running.len() < plan.jobs.max(1) {
            let Some(t) = queue.next() else { break };
            let (s, d, p, show) = (
                source.clone(),
                dest_info.clone(),
                plan.clone(),
                progress.clone(),
            );
            running.spawn(async move { copy_one(&s, &d, &t, &p, &show).await });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let copied = joined.map_err(|e| Error::Definite(format!("a copy job failed: {e}")))??;
        remaining -= 1;
        if let Some(r) = metrics {
            r.set(
                &crate::output::metrics::COPY_TABLES_REMAINING,
                &[],
                remaining as f64,
            );
            r.set(
                &crate::output::metrics::COPY_ROWS,
                &[("table", &copied.table)],
                copied.rows as f64,
            );
        }
        done.push(copied);
    }
    let rows: u64 = done.iter().map(|c| c.rows).sum();
    let bytes: u64 = done.iter().map(|c| c.bytes).sum();
    tracing::info!(
        tables = done.len(),
        rows,
        bytes,
        seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
        "initial copy finished"
    );
    Ok(done)
}

async fn copy_one(
    source: &Conninfo,
    dest_info: &Conninfo,
    t: &PublishedTable,
    plan: &CopyPlan,
    show: &CopyProgress,
) -> Result<Copied> {
    let name = t.qualified_name();
    let src = crate::pg::client::connect_client(source, "source").await?;
    let dst = crate::pg::client::connect_client(dest_info, "destination").await?;
    // A partitioned destination holds its rows in its partitions: no ONLY for it.
    let dest_table = match crate::apply::table::read(&dst, &t.schema, &t.name, false).await? {
        Some(d) => d,
        None => {
            return Err(Error::Config(format!(
                "table {name} is published on the source but does not exist on the destination: create it (pg_dump --schema-only, or run sync with --schema create)"
            )));
        }
    };
    // The published columns, but for those the destination generates itself.
    let copied: Vec<_> = t
        .columns
        .iter()
        .filter(|c| dest_table.column(&c.name).is_none_or(|d| !d.generated))
        .collect();
    // Binary COPY where each column is of the same built-in type on both sides (a value
    // of another type must go through the destination's input function, as text).
    let binary = !plan.text
        && copied.iter().all(|c| {
            c.type_oid < FIRST_NORMAL_OBJECT_ID
                && dest_table
                    .column(&c.name)
                    .is_some_and(|d| d.type_oid == c.type_oid && d.type_sql == c.type_sql)
        });
    let format = if binary { " (FORMAT binary)" } else { "" };
    let cols = copied
        .iter()
        .map(|c| escape_identifier(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let table = qualified(&t.schema, &t.name);
    let only = if t.partitioned { "" } else { "ONLY " };
    let filter = t
        .row_filter
        .as_ref()
        .map(|f| format!(" WHERE {f}"))
        .unwrap_or_default();
    src.batch_execute(&format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
        escape_literal(&plan.snapshot)
    ))
    .await
    .map_err(err(format!(
        "importing the copy snapshot for {name} on the source"
    )))?;
    // The snapshot's transactions, kept with the copy's state (see state::tables).
    let xids: Option<String> = src
        .query_one("SELECT pg_catalog.txid_current_snapshot()::text", &[])
        .await
        .map_err(err(format!("reading the copy snapshot of {name}")))?
        .get(0);
    // Asked before the COPY starts: the connection carries nothing else until it ends.
    let estimate = src
        .query_opt(
            "SELECT greatest(reltuples, 0)::int8 FROM pg_catalog.pg_class WHERE oid = $1",
            &[&t.relid],
        )
        .await
        .ok()
        .flatten()
        .map_or(0, |r| r.get::<_, i64>(0).max(0) as u64);
    let mut shown = show.table(&name, estimate);
    // As the built-in table sync: no foreign key checks (the tables arrive in any
    // order), only replica and always triggers.
    crate::dest::set_replica_role(&dst).await?;
    dst.batch_execute("BEGIN; SET LOCAL synchronous_commit = on")
        .await
        .map_err(err(format!(
            "starting the copy of {name} on the destination"
        )))?;
    let dest_only = dest_table.only();
    // A value that does not fit its destination column names the column and both types.
    let write_err = || {
        let name = name.clone();
        let dest_table = dest_table.clone();
        move |e: tokio_postgres::Error| {
            let too_wide = e
                .as_db_error()
                .is_some_and(|d| crate::pg::sqlstate::is_value_too_wide(d.code().code()));
            if !too_wide {
                return Error::from(SqlError::new(
                    format!("writing {name} on the destination"),
                    e,
                ));
            }
            let narrower: Vec<String> = t
                .columns
                .iter()
                .filter_map(|c| {
                    let d = dest_table.column(&c.name)?;
                    (d.type_sql != c.type_sql).then(|| {
                        format!(
                            "\"{}\" is {} on the source and {} on the destination",
                            c.name, c.type_sql, d.type_sql
                        )
                    })
                })
                .collect();
            Error::Config(format!(
                "a value of {name} does not fit its destination column ({}): {}. pgsub never cuts a value; widen the destination column (ALTER TABLE … ALTER COLUMN … TYPE …) and run pgsub again",
                crate::pg::describe(&e),
                narrower.join("; ")
            ))
        }
    };
    if plan.truncate_first {
        dst.batch_execute(&format!("TRUNCATE {dest_only}{table}"))
            .await
            .map_err(err(format!("emptying {name} on the destination")))?;
    } else {
        let has_rows = dst
            .query_opt(&format!("SELECT 1 FROM {dest_only}{table} LIMIT 1"), &[])
            .await
            .map_err(err(format!(
                "checking that {name} is empty on the destination"
            )))?
            .is_some();
        if has_rows {
            return Err(Error::Config(format!(
                "destination table {name} is not empty; the initial copy needs empty tables: empty it, or pass --truncate-before-copy to have pgsub empty it in the same transaction as the copy"
            )));
        }
    }
    let out = src
        .copy_out(&format!(
            "COPY (SELECT {cols} FROM {only}{table}{filter}) TO STDOUT{format}"
        ))
        .await
        .map_err(err(format!("reading {name} on the source")))?;
    let sink = dst
        .copy_in::<_, Bytes>(&format!("COPY {table} ({cols}) FROM STDIN{format}"))
        .await
        .map_err(write_err())?;
    let mut out = std::pin::pin!(out);
    let mut sink = std::pin::pin!(sink);
    let mut bytes = 0u64;
    let mut rows_seen = 0u64;
    // The source sends one CopyData per row; batch them, so the destination socket is
    // written (and flushed) once per megabyte, not once per row.
    let mut batch = bytes::BytesMut::with_capacity(COPY_BATCH);
    while let Some(chunk) = out.next().await {
        let chunk = chunk.map_err(err(format!("reading {name} on the source")))?;
        bytes += chunk.len() as u64;
        rows_seen += 1;
        batch.extend_from_slice(&chunk);
        if batch.len() >= COPY_BATCH {
            crate::failpoint::hit(crate::failpoint::MID_TABLE_COPY);
            shown.update(rows_seen, bytes);
            if let Some(r) = crate::output::metrics::registry() {
                // The source sends one CopyData per row: a row count while copying.
                r.set(
                    &crate::output::metrics::COPY_ROWS,
                    &[("table", &name)],
                    rows_seen as f64,
                );
                r.set(
                    &crate::output::metrics::COPY_BYTES,
                    &[("table", &name)],
                    bytes as f64,
                );
            }
            sink.send(batch.split().freeze())
                .await
                .map_err(write_err())?;
        }
    }
    if !batch.is_empty() {
        sink.send(batch.freeze()).await.map_err(write_err())?;
    }
    let rows = sink.finish().await.map_err(write_err())?;
    if let Some(r) = crate::output::metrics::registry() {
        r.set(
            &crate::output::metrics::COPY_BYTES,
            &[("table", &name)],
            bytes as f64,
        );
    }
    crate::state::tables::mark_ready(
        &dst,
        &plan.name,
        &name,
        (plan.snapshot_lsn, xids.as_deref()),
        rows,
        bytes,
    )
    .await?;
    dst.batch_execute("COMMIT")
        .await
        .map_err(err(format!("committing the copy of {name}")))?;
    let _ = src.batch_execute("COMMIT").await;
    shown.finish(rows, bytes, binary);
    Ok(Copied {
        table: name,
        rows,
        bytes,
    })
}
