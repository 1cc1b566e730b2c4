//! `verify`: is the destination the source? Every table is read on both sides in key
//! order and compared row by row by a 64-bit hash of the row ([`query`], [`merge`]).
//!
//! ```text
//!  source: BEGIN REPEATABLE READ; pg_export_snapshot(), WAL position ─┐ one snapshot for
//!  dest:   BEGIN REPEATABLE READ; pg_export_snapshot(), pgsub.progress ┘ every table, each side
//!     table jobs (--jobs at once): SET TRANSACTION SNAPSHOT on both sides,
//!       scan both in key order ─► merge ─► differing keys
//!       ─► re-check them until they agree or --settle runs out (live replication:
//!          a row only in flight settles) ─► exact values of what still differs
//! ```
//!
//! The report says which position each side was read at: the source's WAL position at
//! its snapshot, and on the destination pgsub's applied position (read in the
//! destination's snapshot, so exact) and each native subscription's origin position
//! (read just before it). Memory is bounded: rows stream through, and only up to
//! [`KEEP`] differing keys per table are held for the re-check.

pub mod merge;
pub mod query;
mod report;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::pg::ident::literal as escape_literal;
use futures_util::StreamExt;
use tokio::task::JoinSet;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::conninfo::Conninfo;
use crate::dest::subscriptions;
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::pg::SqlError;
use crate::pg::client::{first_value, text_rows};
use crate::source::tables::PublishedTable;
use merge::{Diff, DiffKind, Entry, MergeError};
use query::{HashFn, SESSION_SETTINGS, TableQuery};
pub use report::{Position, Report, Sample, TableReport};

/// Differing keys held per table for the re-check; more are counted only.
pub const KEEP: usize = 100_000;

/// Keys per re-check statement.
const RECHECK_BATCH: usize = 500;

/// How to verify.
#[derive(Debug, Clone)]
pub struct Options {
    /// Tables compared at once.
    pub jobs: usize,
    /// Differing keys shown per table and kind.
    pub show: usize,
    /// How long differing keys are re-checked before they are reported.
    pub settle: Duration,
}

/// One side's snapshot, exported by a transaction kept open until every table is read.
struct Snapshot {
    _holder: Client,
    id: String,
}

async fn session(info: &Conninfo, what: &str) -> Result<Client> {
    let client = crate::pg::client::connect_client(info, what).await?;
    client
        .batch_execute(SESSION_SETTINGS)
        .await
        .map_err(|e| SqlError::new(format!("preparing the {what} session"), e))?;
    Ok(client)
}

async fn version(client: &Client, what: &str) -> Result<u32> {
    Ok(first_value(client, "SHOW server_version_num", what)
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

async fn export(client: Client, what: &str) -> Result<Snapshot> {
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(|e| SqlError::new(format!("starting the {what} snapshot"), e))?;
    let id = first_value(&client, "SELECT pg_catalog.pg_export_snapshot()", what)
        .await?
        .unwrap_or_default();
    Ok(Snapshot {
        _holder: client,
        id,
    })
}

async fn import(info: &Conninfo, what: &str, snapshot: &str) -> Result<Client> {
    let client = session(info, what).await?;
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
            escape_literal(snapshot)
        ))
        .await
        .map_err(|e| SqlError::new(format!("joining the {what} snapshot"), e))?;
    Ok(client)
}

/// Compares `tables` between source and destination.
pub async fn verify(
    src: &Conninfo,
    dst: &Conninfo,
    source_system_id: Option<&str>,
    tables: Vec<PublishedTable>,
    opts: &Options,
) -> Result<Report> {
    let src_client = session(src, "source").await?;
    let dst_client = session(dst, "destination").await?;
    let hash = HashFn::for_versions(
        version(&src_client, "source").await?,
        version(&dst_client, "destination").await?,
    );

    // Native subscriptions' origins, read just before the destination's snapshot, and
    // the slots that feed the destination.
    let mut positions = Vec::new();
    let mut feeds = Vec::new();
    for s in subscriptions::native_subscriptions(&dst_client).await? {
        if let Some(slot) = &s.slot
            && s.enabled
        {
            feeds.push(slot.clone());
        }
        positions.push(Position {
            side: "destination",
            what: "native subscription".into(),
            name: s.name,
            lsn: s.remote_lsn,
        });
    }
    let src_snap = export(src_client, "source").await?;
    let source_lsn = first_value(
        &src_snap._holder,
        "SELECT CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() \
         ELSE pg_catalog.pg_current_wal_lsn() END::text",
        "source",
    )
    .await?
    .and_then(|v| v.parse::<Lsn>().ok());
    let dst_snap = export(dst_client, "destination").await?;
    for p in crate::state::progress::rows(&dst_snap._holder).await? {
        if source_system_id.is_none_or(|id| id == p.source_system_id) {
            feeds.push(p.slot.clone());
            positions.push(Position {
                side: "destination",
                what: "pgsub progress".into(),
                name: p.name,
                lsn: Some(p.applied_lsn),
            });
        }
    }
    let feeds = Arc::new(Feeds { slots: feeds });

    let src = Arc::new(src.clone());
    let dst = Arc::new(dst.clone());
    let snaps = Arc::new((src_snap.id.clone(), dst_snap.id.clone()));
    let mut queue = tables.into_iter().enumerate();
    let mut running = JoinSet::new();
    let mut reports = Vec::new();
    loop {
        while running.len() < opts.jobs.max(1) {
            let Some((i, t)) = queue.next() else { break };
            let q = TableQuery::new(&t, hash);
            let (src, dst, snaps, opts, feeds) = (
                src.clone(),
                dst.clone(),
                snaps.clone(),
                opts.clone(),
                feeds.clone(),
            );
            running.spawn(
                async move { (i, verify_table(&src, &dst, &snaps, q, &opts, &feeds).await) },
            );
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        let (i, r) = done.map_err(|e| Error::Definite(format!("a verify task failed: {e}")))?;
        reports.push((i, r?));
    }
    reports.sort_by_key(|(i, _)| *i);
    drop((src_snap, dst_snap));
    Ok(Report {
        source_lsn,
        positions,
        tables: reports.into_iter().map(|(_, r)| r).collect(),
    })
}

fn is_missing_object(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.as_db_error().map(|d| d.code().code()),
        Some("42P01" | "42703" | "42883")
    )
}

async fn verify_table(
    src: &Conninfo,
    dst: &Conninfo,
    snaps: &(String, String),
    mut q: TableQuery,
    opts: &Options,
    feeds: &Feeds,
) -> Result<TableReport> {
    let mut report = TableReport::new(&q);
    let s = import(src, "source", &snaps.0).await?;
    let d = import(dst, "destination", &snaps.1).await?;
    // A partitioned destination table holds its rows in its partitions; a plain one is
    // read without its inheritance children, as changes are applied to it.
    q.dest_partitioned = first_value(
        &d,
        &format!(
            "SELECT c.relkind::text FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass({})",
            escape_literal(&q.relation_text())
        ),
        "destination",
    )
    .await?
    .as_deref()
        == Some("p");
    let ctx = |side: &str| format!("reading {} on the {side}", q.name);
    let src_rows = s
        .simple_query_raw(&q.scan(true))
        .await
        .map_err(|e| SqlError::new(ctx("source"), e))?;
    let dst_rows = match d.simple_query_raw(&q.scan(false)).await {
        Ok(rows) => rows,
        Err(e) if is_missing_object(&e) => {
            report.error = Some(format!("cannot be compared: {}", crate::pg::describe(&e)));
            return Ok(report);
        }
        Err(e) => return Err(SqlError::new(ctx("destination"), e).into()),
    };
    let n = q.key_len();
    let entries = |side: &'static str| {
        move |m: std::result::Result<SimpleQueryMessage, tokio_postgres::Error>| {
            let out = match m {
                Ok(SimpleQueryMessage::Row(r)) => Some(Ok(Entry {
                    key: (0..n)
                        .map(|i| r.get(i).unwrap_or_default().to_owned())
                        .collect(),
                    hash: r.get(n).and_then(|h| h.parse().ok()).unwrap_or_default(),
                })),
                Ok(_) => None,
                Err(e) => Some(Err((side, e))),
            };
            std::future::ready(out)
        }
    };
    let src_entries = Box::pin(src_rows.filter_map(entries("source")));
    let dst_entries = Box::pin(dst_rows.filter_map(entries("destination")));
    let tally = match merge::merge(&q.order, src_entries, dst_entries, KEEP).await {
        Ok(t) => t,
        Err(MergeError::Read((side, e))) if side == "destination" && is_missing_object(&e) => {
            report.error = Some(format!("cannot be compared: {}", crate::pg::describe(&e)));
            return Ok(report);
        }
        Err(MergeError::Read((side, e))) => return Err(SqlError::new(ctx(side), e).into()),
        Err(MergeError::OutOfOrder {
            side,
            earlier,
            later,
        }) => {
            return Err(Error::Config(format!(
                "verifying {}: the {side} returned key {later:?} after {earlier:?}, out of the expected order; do the two servers use different encodings?",
                q.name
            )));
        }
    };
    drop((s, d));
    report.source_rows = tally.source_rows;
    report.dest_rows = tally.dest_rows;
    report.untracked = tally.untracked;
    if tally.diffs.is_empty() {
        return Ok(report);
    }
    // One pair of sessions, outside the snapshots, for the re-checks and the samples.
    let s = session(src, "source").await?;
    let d = session(dst, "destination").await?;
    let first = tally.diffs.len();
    let (diffs, confirmed) = settle(&s, &d, &q, tally.diffs, opts.settle, feeds).await?;
    report.settled = first.saturating_sub(diffs.len()) as u64;
    report.confirmed = confirmed as u64;
    for kind in [DiffKind::Missing, DiffKind::Extra, DiffKind::Different] {
        let of_kind: Vec<&Diff> = diffs.iter().filter(|d| d.kind == kind).collect();
        report.count(kind, of_kind.len() as u64);
        let shown: Vec<Vec<String>> = of_kind
            .iter()
            .take(opts.show)
            .map(|d| d.key.clone())
            .collect();
        report
            .samples
            .extend(samples(&s, &d, &q, kind, &shown).await?);
    }
    Ok(report)
}

/// Reads the current rows of each key on one side: the hash of every row with that key
/// (a key held twice on a side without the constraint counts twice); for a multiset, the
/// key is the row hash and it repeats once per row.
async fn current(
    client: &Client,
    q: &TableQuery,
    source: bool,
    keys: &[Vec<String>],
) -> Result<HashMap<Vec<String>, Vec<i64>>> {
    let what = format!(
        "re-checking {} on the {}",
        q.name,
        if source { "source" } else { "destination" }
    );
    let mut out: HashMap<Vec<String>, Vec<i64>> = HashMap::new();
    for chunk in keys.chunks(RECHECK_BATCH) {
        let n = q.key_len();
        for r in text_rows(client, &q.recheck(source, chunk), &what).await? {
            let key: Vec<String> = r[..n]
                .iter()
                .map(|v| v.clone().unwrap_or_default())
                .collect();
            let v: i64 = r[n]
                .as_deref()
                .and_then(|h| h.parse().ok())
                .unwrap_or_default();
            let rows = out.entry(key.clone()).or_default();
            if q.is_multiset() {
                // (hash, count): the hash is the key, once per row.
                let hash: i64 = key[0].parse().unwrap_or_default();
                rows.extend(std::iter::repeat_n(hash, v.max(0) as usize));
            } else {
                rows.push(v);
            }
        }
    }
    for rows in out.values_mut() {
        rows.sort_unstable();
    }
    Ok(out)
}

/// The slots that feed the destination from this source (pgsub's and enabled native
/// subscriptions'), read on the source to tell whether a difference can still settle.
#[derive(Debug, Default)]
struct Feeds {
    slots: Vec<String>,
}

impl Feeds {
    /// Whether the destination holds everything the source had committed at `at`: each
    /// feeding slot has confirmed `at`, or nothing streams from it (so nothing more will
    /// arrive). With no feeding slot known, nothing replicates into the destination.
    async fn caught_up(&self, s: &Client, at: Lsn) -> Result<bool> {
        if self.slots.is_empty() {
            return Ok(true);
        }
        let names: Vec<String> = self.slots.iter().map(|n| escape_literal(n)).collect();
        let rows = text_rows(
            s,
            &format!(
                "SELECT active::text, confirmed_flush_lsn::text FROM pg_catalog.pg_replication_slots \
                 WHERE slot_name IN ({})",
                names.join(", ")
            ),
            "reading the source's slots",
        )
        .await?;
        Ok(rows.iter().all(|r| {
            let active = r[0].as_deref() == Some("true");
            let confirmed = r[1].as_deref().and_then(|l| l.parse::<Lsn>().ok());
            !active || confirmed.is_some_and(|c| c >= at)
        }))
    }
}

/// How the rows of one key compare now.
fn compare_rows(src: Option<&Vec<i64>>, dst: Option<&Vec<i64>>) -> Option<(DiffKind, usize)> {
    let empty = Vec::new();
    let (a, b) = (src.unwrap_or(&empty), dst.unwrap_or(&empty));
    if a == b {
        return None;
    }
    Some(match a.len().cmp(&b.len()) {
        std::cmp::Ordering::Greater => (DiffKind::Missing, a.len() - b.len()),
        std::cmp::Ordering::Less => (DiffKind::Extra, b.len() - a.len()),
        std::cmp::Ordering::Equal => (DiffKind::Different, 1),
    })
}

/// Re-reads the differing keys until they agree, or are confirmed, or `patience` runs
/// out, and returns what still differs and how much of it was confirmed.
///
/// A difference is confirmed as soon as one round shows it while the destination holds
/// everything the source had (every feeding slot confirmed the source position read
/// just after the source's rows, or streams no more) and the source's rows of the key
/// did not change during the round (read before and after the destination's). Only
/// differences that cannot be confirmed — replication still running behind — wait for
/// `patience`.
async fn settle(
    s: &Client,
    d: &Client,
    q: &TableQuery,
    mut diffs: Vec<Diff>,
    patience: Duration,
    feeds: &Feeds,
) -> Result<(Vec<Diff>, usize)> {
    if diffs.is_empty() {
        return Ok((diffs, 0));
    }
    let deadline = Instant::now() + patience;
    let mut pause = Duration::from_millis(200);
    let mut confirmed: Vec<Diff> = Vec::new();
    loop {
        let mut keys: Vec<Vec<String>> = diffs.iter().map(|d| d.key.clone()).collect();
        keys.sort();
        keys.dedup();
        // The source first: the destination read after it has had the time to catch up.
        let before = current(s, q, true, &keys).await?;
        let at: Option<Lsn> = first_value(
            s,
            "SELECT CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() \
             ELSE pg_catalog.pg_current_wal_lsn() END::text",
            "source",
        )
        .await?
        .and_then(|v| v.parse().ok());
        let caught_up = match at {
            Some(at) => feeds.caught_up(s, at).await?,
            None => false,
        };
        let now_dst = current(d, q, false, &keys).await?;
        let after = current(s, q, true, &keys).await?;
        let mut still = Vec::new();
        for k in keys {
            let Some((kind, n)) = compare_rows(after.get(&k), now_dst.get(&k)) else {
                continue;
            };
            let found: Vec<Diff> = (0..n)
                .map(|_| Diff {
                    kind,
                    key: k.clone(),
                })
                .collect();
            if caught_up && before.get(&k) == after.get(&k) {
                confirmed.extend(found);
            } else {
                still.extend(found);
            }
        }
        diffs = still;
        if diffs.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
    let n = confirmed.len();
    confirmed.extend(diffs);
    Ok((confirmed, n))
}

/// What the report shows of up to `--show` differing keys: for a changed row, the
/// columns whose values differ; for a row of a multiset, the row itself.
async fn samples(
    s: &Client,
    d: &Client,
    q: &TableQuery,
    kind: DiffKind,
    keys: &[Vec<String>],
) -> Result<Vec<Sample>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let n = q.key_len();
    let values = |rows: Vec<crate::pg::Row>| -> HashMap<Vec<String>, Vec<Option<String>>> {
        rows.into_iter()
            .map(|r| {
                let mut r = r.into_values();
                let rest = r.split_off(n);
                (r.into_iter().map(Option::unwrap_or_default).collect(), rest)
            })
            .collect()
    };
    let mut out = Vec::new();
    let need_values = kind == DiffKind::Different || q.is_multiset();
    let (mut sv, mut dv) = (HashMap::new(), HashMap::new());
    if need_values {
        for k in keys {
            let one = std::slice::from_ref(k);
            if kind != DiffKind::Extra {
                sv.extend(values(
                    text_rows(
                        s,
                        &q.values(true, one),
                        "reading differing rows on the source",
                    )
                    .await?,
                ));
            }
            if kind != DiffKind::Missing {
                dv.extend(values(
                    text_rows(
                        d,
                        &q.values(false, one),
                        "reading differing rows on the destination",
                    )
                    .await?,
                ));
            }
        }
    }
    for k in keys {
        let (a, b) = (sv.get(k), dv.get(k));
        let columns = match (a, b) {
            (Some(a), Some(b)) => q
                .column_names
                .iter()
                .zip(a.iter().zip(b))
                .filter(|(_, (x, y))| x != y)
                .map(|(c, _)| c.clone())
                .collect(),
            _ => Vec::new(),
        };
        let row = if q.is_multiset() {
            a.or(b).cloned()
        } else {
            None
        };
        out.push(Sample {
            kind,
            key: if q.is_multiset() {
                None
            } else {
                Some(k.clone())
            },
            columns,
            row,
        });
    }
    Ok(out)
}
