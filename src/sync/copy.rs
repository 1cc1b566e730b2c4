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
//!
//! # Chunks
//!
//! From a PostgreSQL 14 source (TID range scans), a table larger than `--copy-chunk-mb` is
//! copied in chunks of about that size — ranges of its blocks, `ctid >= '(first,0)' AND
//! ctid < '(end,0)'`, the last one open-ended — several at once within `--copy-jobs`, every
//! chunk read under the same exported snapshot, so that together they are exactly the
//! table as of it. Each chunk commits on the destination on its own; the table is marked
//! `partial` before the first does, and `ready` (with the snapshot's position) once the
//! last has. A run killed between chunks leaves a `partial` table, which the next run
//! empties and copies again whole: its snapshot is another one, and the rows of a block
//! range under two snapshots are not the rows of one (an update moves a row to another
//! block), so committed chunks cannot be kept exactly. Partitioned roots published through
//! the root, and sources before 14 (whose ctid conditions scan the whole table for each
//! chunk), are copied whole.

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
    /// Tables larger than this many bytes are copied in chunks of about this size (0: none).
    pub chunk_bytes: u64,
    /// Tables a run killed between chunks left copied in part (`partial`): emptied first.
    pub partial: std::collections::HashSet<String>,
}

/// Most chunks one table is cut into, per copy job.
const CHUNKS_PER_JOB: u64 = 4;

/// One block range of a table copied in chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chunk {
    /// 0-based.
    index: usize,
    /// Chunks of the table.
    count: usize,
    /// First block.
    first: u64,
    /// Block after the last one; `None` for the last chunk, which takes every block from
    /// `first` on (the table may have grown since its size was read).
    end: Option<u64>,
}

impl Chunk {
    /// The condition on `ctid` that selects the chunk's rows.
    fn condition(&self) -> String {
        match self.end {
            Some(end) => format!(
                "ctid >= '({},0)'::tid AND ctid < '({end},0)'::tid",
                self.first
            ),
            None => format!("ctid >= '({},0)'::tid", self.first),
        }
    }
}

/// The chunks of a table of `blocks` blocks, chunks of about `chunk_blocks` blocks, at most
/// `max` of them; none (copied whole) when that makes fewer than two.
fn chunks(blocks: u64, chunk_blocks: u64, max: u64) -> Vec<Chunk> {
    if chunk_blocks == 0 {
        return Vec::new();
    }
    let count = blocks.div_ceil(chunk_blocks).min(max);
    if count < 2 {
        return Vec::new();
    }
    let per = blocks.div_ceil(count);
    (0..count)
        .map(|i| Chunk {
            index: i as usize,
            count: count as usize,
            first: i * per,
            end: (i + 1 < count).then_some((i + 1) * per),
        })
        .collect()
}

/// One copy job: a table whole, or one chunk of it.
#[derive(Debug)]
enum Job {
    Whole(PublishedTable),
    Chunk(Arc<PublishedTable>, Chunk),
}

/// A table copied in chunks, as its chunks finish.
#[derive(Debug, Default)]
struct Pieces {
    left: usize,
    rows: u64,
    bytes: u64,
    xids: Option<String>,
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
    /// The snapshot's transactions (`txid_current_snapshot()`), as read by the copy.
    xids: Option<String>,
    /// The chunk it was, for a table copied in chunks.
    chunk: Option<Chunk>,
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
    let sizes = block_counts(&source, &tables, plan.jobs).await?;
    let mut jobs = Vec::new();
    let mut pieces: std::collections::HashMap<String, Pieces> = Default::default();
    for t in tables {
        let parts = match sizes.get(&t.relid) {
            Some(&(blocks, block_size)) if !t.partitioned => chunks(
                blocks,
                plan.chunk_bytes / block_size.max(1),
                plan.jobs as u64 * CHUNKS_PER_JOB,
            ),
            _ => Vec::new(),
        };
        if parts.is_empty() {
            jobs.push(Job::Whole(t));
            continue;
        }
        tracing::info!(table = %t.qualified_name(), chunks = parts.len(), blocks = sizes[&t.relid].0, "copying in chunks");
        pieces.insert(
            t.qualified_name(),
            Pieces {
                left: parts.len(),
                ..Pieces::default()
            },
        );
        let t = Arc::new(t);
        jobs.extend(parts.into_iter().map(|c| Job::Chunk(t.clone(), c)));
    }
    if !pieces.is_empty() {
        let names: Vec<String> = pieces.keys().cloned().collect();
        begin_in_chunks(&dest_info, &plan, &names).await?;
    }
    let mut queue = jobs.into_iter();
    let mut running = JoinSet::new();
    let mut done = Vec::new();
    let started = Instant::now();
    loop {
        while running.len() < plan.jobs.max(1) {
            let Some(job) = queue.next() else { break };
            let (s, d, p, show) = (
                source.clone(),
                dest_info.clone(),
                plan.clone(),
                progress.clone(),
            );
            running.spawn(async move {
                match job {
                    Job::Whole(t) => copy_one(&s, &d, &t, &p, &show, None).await,
                    Job::Chunk(t, c) => copy_one(&s, &d, &t, &p, &show, Some(c)).await,
                }
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let copied = joined.map_err(|e| Error::Definite(format!("a copy job failed: {e}")))??;
        let copied = match copied.chunk {
            None => copied,
            Some(_) => {
                let p = pieces
                    .get_mut(&copied.table)
                    .expect("a chunk of a table copied in chunks");
                p.left -= 1;
                p.rows += copied.rows;
                p.bytes += copied.bytes;
                p.xids = p.xids.take().or(copied.xids);
                if p.left > 0 {
                    continue;
                }
                finish_in_chunks(&dest_info, &plan, &copied.table, p).await?;
                Copied {
                    table: copied.table,
                    rows: p.rows,
                    bytes: p.bytes,
                    xids: p.xids.clone(),
                    chunk: None,
                }
            }
        };
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

/// The size in blocks, and the block size, of each of `tables` that may be copied in
/// chunks: none before 14 or with one copy job.
async fn block_counts(
    source: &Conninfo,
    tables: &[PublishedTable],
    jobs: usize,
) -> Result<std::collections::HashMap<u32, (u64, u64)>> {
    if jobs < 2 || tables.is_empty() {
        return Ok(Default::default());
    }
    let src = crate::pg::client::connect_client(source, "source").await?;
    let relids: Vec<i64> = tables.iter().map(|t| i64::from(t.relid)).collect();
    let rows = src
        .query(
            "SELECT c.oid::int8, pg_catalog.pg_relation_size(c.oid) / current_setting('block_size')::int8, \
                    current_setting('block_size')::int8 \
             FROM pg_catalog.pg_class c \
             WHERE c.oid = ANY($1::int8[]::oid[]) AND current_setting('server_version_num')::int >= 140000",
            &[&relids],
        )
        .await
        .map_err(err("reading the sizes of the tables to copy".into()))?;
    Ok(rows
        .iter()
        .map(|r| {
            let (blocks, size): (i64, i64) = (r.get(1), r.get(2));
            (
                r.get::<_, i64>(0) as u32,
                (blocks.max(0) as u64, size.max(1) as u64),
            )
        })
        .collect())
}

/// Before the first chunk of `tables` commits: each is empty on the destination (emptied
/// under --truncate-before-copy, or when a run killed between chunks left it `partial`),
/// and marked `partial`, in one transaction.
async fn begin_in_chunks(dest_info: &Conninfo, plan: &CopyPlan, tables: &[String]) -> Result<()> {
    let dst = crate::pg::client::connect_client(dest_info, "destination").await?;
    dst.batch_execute("BEGIN")
        .await
        .map_err(err("starting a copy in chunks on the destination".into()))?;
    for name in tables {
        let (schema, table) = name.split_once('.').unwrap_or(("public", name));
        let Some(dest_table) = crate::apply::table::read(&dst, schema, table, false).await? else {
            return Err(missing_table(name));
        };
        let truncate = plan.truncate_first || plan.partial.contains(name);
        check_empty(&dst, &dest_table, name, truncate).await?;
        crate::state::tables::mark_partial(&dst, &plan.name, name).await?;
    }
    dst.batch_execute("COMMIT")
        .await
        .map_err(err("starting a copy in chunks on the destination".into()))?;
    Ok(())
}

/// Once the last chunk of `name` committed: the table is ready, in a transaction of its own.
async fn finish_in_chunks(
    dest_info: &Conninfo,
    plan: &CopyPlan,
    name: &str,
    p: &Pieces,
) -> Result<()> {
    let dst = crate::pg::client::connect_client(dest_info, "destination").await?;
    dst.batch_execute("BEGIN; SET LOCAL synchronous_commit = on")
        .await
        .map_err(err(format!("finishing the copy of {name}")))?;
    crate::state::tables::mark_ready(
        &dst,
        &plan.name,
        name,
        (plan.snapshot_lsn, p.xids.as_deref()),
        p.rows,
        p.bytes,
    )
    .await?;
    dst.batch_execute("COMMIT")
        .await
        .map_err(err(format!("finishing the copy of {name}")))?;
    Ok(())
}

fn missing_table(name: &str) -> Error {
    Error::Config(format!(
        "table {name} is published on the source but does not exist on the destination: create it (pg_dump --schema-only, or run sync with --schema create)"
    ))
}

/// Empties the destination's `dest` (`truncate`), or checks that it is empty.
async fn check_empty(
    dst: &tokio_postgres::Client,
    dest: &crate::apply::table::DestTable,
    name: &str,
    truncate: bool,
) -> Result<()> {
    let (only, table) = (dest.only(), dest.qualified());
    if truncate {
        dst.batch_execute(&format!("TRUNCATE {only}{table}"))
            .await
            .map_err(err(format!("emptying {name} on the destination")))?;
        return Ok(());
    }
    let has_rows = dst
        .query_opt(&format!("SELECT 1 FROM {only}{table} LIMIT 1"), &[])
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
    Ok(())
}

async fn copy_one(
    source: &Conninfo,
    dest_info: &Conninfo,
    t: &PublishedTable,
    plan: &CopyPlan,
    show: &CopyProgress,
    chunk: Option<Chunk>,
) -> Result<Copied> {
    let name = t.qualified_name();
    let src = crate::pg::client::connect_client(source, "source").await?;
    let dst = crate::pg::client::connect_client(dest_info, "destination").await?;
    // A partitioned destination holds its rows in its partitions: no ONLY for it.
    let dest_table = match crate::apply::table::read(&dst, &t.schema, &t.name, false).await? {
        Some(d) => d,
        None => return Err(missing_table(&name)),
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
    let filter = match (&t.row_filter, chunk) {
        (Some(f), Some(c)) => format!(" WHERE ({f}) AND {}", c.condition()),
        (Some(f), None) => format!(" WHERE {f}"),
        (None, Some(c)) => format!(" WHERE {}", c.condition()),
        (None, None) => String::new(),
    };
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
    let mut shown = match chunk {
        None => show.table(&name, estimate),
        Some(c) => show.table(
            &format!("{name} [{}/{}]", c.index + 1, c.count),
            estimate / c.count as u64,
        ),
    };
    // As the built-in table sync: no foreign key checks (the tables arrive in any
    // order), only replica and always triggers.
    crate::dest::set_replica_role(&dst).await?;
    dst.batch_execute("BEGIN; SET LOCAL synchronous_commit = on")
        .await
        .map_err(err(format!(
            "starting the copy of {name} on the destination"
        )))?;
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
    if chunk.is_none() {
        let truncate = plan.truncate_first || plan.partial.contains(&name);
        check_empty(&dst, &dest_table, &name, truncate).await?;
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
    if chunk.is_some() {
        dst.batch_execute("COMMIT")
            .await
            .map_err(err(format!("committing a chunk of the copy of {name}")))?;
        crate::failpoint::hit(crate::failpoint::AFTER_COPY_CHUNK);
        let _ = src.batch_execute("COMMIT").await;
        shown.finish(rows, bytes, binary);
        return Ok(Copied {
            table: name,
            rows,
            bytes,
            xids,
            chunk,
        });
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
        xids,
        chunk: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_table_is_cut_into_block_ranges_that_cover_it_and_what_it_grows_into() {
        let c = chunks(10_000, 4096, 16);
        assert_eq!(c.len(), 3);
        assert_eq!((c[0].first, c[0].end), (0, Some(3334)));
        assert_eq!((c[1].first, c[1].end), (3334, Some(6668)));
        assert_eq!((c[2].first, c[2].end), (6668, None));
        assert!(c.iter().all(|p| p.count == 3));
        assert_eq!(
            c[0].condition(),
            "ctid >= '(0,0)'::tid AND ctid < '(3334,0)'::tid"
        );
        assert_eq!(c[2].condition(), "ctid >= '(6668,0)'::tid");
        // At most `max` chunks; none for a table of one chunk, or with chunks off.
        assert_eq!(chunks(1_000_000, 10, 8).len(), 8);
        assert!(chunks(4096, 4096, 16).is_empty());
        assert!(chunks(1_000_000, 0, 16).is_empty());
    }
}
