//! `pgsub sync`: the stand-in subscription.
//!
//! ```text
//!  destination: pgsub schema, stored progress ─┐
//!  source: version, wal_level, publications,   ├─► preflight report ─► table definitions
//!          system id, published tables         ┘        (verify | create | skip)
//!      ─► tables to copy recorded (before the slot exists) ─► slot (created with an
//!         exported snapshot when a copy is due) ─► copy (that snapshot, or a fresh one
//!         from a temporary slot for tables whose copy was interrupted)
//!      ─► START_REPLICATION from the stored progress ─► apply until --until / signal
//! ```
//!
//! Transient failures (a connection lost, a server restarting, the slot still held by the
//! walsender of a pgsub that just died) restart this sequence after a capped exponential
//! backoff; everything in it is idempotent, and streaming resumes from the progress the
//! destination recorded.

use std::time::Duration;

use super::args::{Cli, SyncArgs};
use super::summary;
use crate::apply::{ApplyOptions, ApplySink, GroupLimits, Subscription};
use crate::conn::replication::SnapshotAction;
use crate::conninfo::Conninfo;
use crate::copy::{self, CopyPlan};
use crate::dest;
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::pgoutput::options::{RequestedOptions, StreamOptions};
use crate::schema::{self, SchemaMode};
use crate::source::run::{self, RunEnd, RunOptions, Until};
use crate::source::tables::{self, PublishedTable};
use crate::source::{self, SlotRequest, slots};
use crate::state::progress::{self, Progress};
use crate::stream::Session;
use crate::stream::relations::OidMap;

const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub(crate) async fn run(cli: &Cli, args: &SyncArgs) -> Result<()> {
    source::validate_slot_name(&args.slot)?;
    if args.publications.is_empty() {
        return Err(Error::Usage(
            "no publication given: pass --publication NAME (several as a comma-separated list)"
                .into(),
        ));
    }
    let src = super::resolve_source(args.source.conninfo.as_deref())?;
    let dst = super::resolve_dest(args.dest.conninfo.as_deref())?;
    if let Some(addr) = &args.metrics_addr {
        crate::metrics::serve(addr).await?;
        if let Some(r) = crate::metrics::registry() {
            r.add(&crate::metrics::RECONNECTS_TOTAL, &[], 0.0);
        }
    }
    let mut shutdown = super::shutdown_signal();
    let mut backoff = Duration::from_secs(1);
    let mut attempt = 0u32;
    loop {
        let started = std::time::Instant::now();
        let result = sync_once(cli, args, &src, &dst, shutdown.clone()).await;
        if started.elapsed() > MAX_BACKOFF {
            // It ran a good while: this failure is news, not a repeat.
            backoff = Duration::from_secs(1);
        }
        // The source ending the stream (it is shutting down) is a pause, not the end: a
        // subscription keeps going until it reaches --until or is told to stop.
        let result = match result {
            Ok(RunEnd::ServerEnded(how)) if !*shutdown.borrow() => {
                Err(Error::Conn(Box::new(crate::conn::ConnError::Closed {
                    context: format!(
                        "streaming (the source ended the stream: {how:?}; it is probably restarting)"
                    ),
                })))
            }
            other => other.map(|_| ()),
        };
        match result {
            Ok(()) => return Ok(()),
            // The very first connection failing is a setup problem to report; after a
            // start, a server that was reachable will probably be again.
            Err(e) if attempt > 0 || !e.is_connecting() => {
                if !e.is_retryable_once_started() || *shutdown.borrow() {
                    return Err(e);
                }
                tracing::warn!(
                    "{e}\n(transient: retrying in {} s; progress is kept on the destination, so nothing is lost or applied twice)",
                    backoff.as_secs()
                );
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                attempt += 1;
                if let Some(r) = crate::metrics::registry() {
                    r.add(&crate::metrics::RECONNECTS_TOTAL, &[], 1.0);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

fn requested(args: &SyncArgs) -> RequestedOptions {
    RequestedOptions {
        publication_names: args.publications.clone(),
        binary: None,
        messages: None,
        streaming: Some(args.streaming),
        two_phase: None,
        origin: None,
        proto_version: None,
    }
}

/// Warnings about what the stream cannot carry faithfully, printed before anything starts.
/// `changes_published`: the publications publish UPDATE or DELETE.
fn lossiness_report(tables: &[PublishedTable], changes_published: bool) {
    for t in tables {
        let name = t.qualified_name();
        match t.replica_identity.as_str() {
            _ if !changes_published => {}
            "n" => tracing::warn!(
                table = %name,
                "REPLICA IDENTITY NOTHING: UPDATE and DELETE on this table will fail on the source while it is published; set a primary key or REPLICA IDENTITY FULL"
            ),
            "d" if t.key_columns.is_empty() => tracing::warn!(
                table = %name,
                "no primary key and REPLICA IDENTITY DEFAULT: UPDATE and DELETE on this table will fail on the source while it is published; add a primary key or set REPLICA IDENTITY FULL"
            ),
            "f" if t.key_columns.is_empty() => tracing::warn!(
                table = %name,
                "REPLICA IDENTITY FULL without a key: each update or delete scans the destination table for one equal row"
            ),
            _ => {}
        }
        if t.partitioned {
            tracing::warn!(table = %name, "partitioned table published through its root (publish_via_partition_root)");
        }
        let unsent: Vec<&str> = t
            .generated_columns
            .iter()
            .filter(|g| !t.columns.iter().any(|c| &c.name == *g))
            .map(String::as_str)
            .collect();
        if !unsent.is_empty() {
            tracing::warn!(
                table = %name,
                "generated column(s) {} are not carried by the stream (PostgreSQL 18 publishes stored ones with publish_generated_columns = stored): the destination computes its own from its own generation expression, or leaves them NULL",
                unsent.join(", ")
            );
        }
    }
}

async fn sync_once(
    cli: &Cli,
    args: &SyncArgs,
    src: &Conninfo,
    dst: &Conninfo,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<RunEnd> {
    let name = args.name.clone().unwrap_or_else(|| args.slot.clone());
    let dest = dest::connect(dst).await?;
    crate::state::setup(&dest.client).await?;
    let stored = progress::read(&dest.client, &name).await?;

    let mut conn = source::connect(src, true).await?;
    source::check_server(&mut conn).await?;
    let options = StreamOptions::negotiate(conn.server_version_num(), &requested(args))
        .map_err(|e| Error::Config(e.to_string()))?;
    source::check_publications(&mut conn, &args.publications).await?;
    let identify = conn.identify_system().await?;
    check_stored(&stored, &identify.systemid, &args.slot, &name)?;
    let tables = tables::published_tables(&mut conn, &args.publications).await?;
    lossiness_report(
        &tables,
        tables::publishes_changes(&mut conn, &args.publications).await?,
    );
    schema::prepare(&dest.client, &tables, args.schema).await?;

    // What to copy: recorded before the slot exists, so that a run killed at any point
    // after this still copies them next time.
    let existing = slots::find(&mut conn, &args.slot).await?;
    let mut states = crate::state::tables::states(&dest.client, &name).await?;
    if args.copy_data().unwrap_or(existing.is_none()) && states.is_empty() {
        let relations: Vec<String> = tables.iter().map(PublishedTable::qualified_name).collect();
        crate::state::tables::plan(&dest.client, &name, &relations).await?;
        states = crate::state::tables::states(&dest.client, &name).await?;
    }
    let to_copy: Vec<PublishedTable> = tables
        .iter()
        .filter(|t| states.get(&t.qualified_name()).is_some_and(|s| !s.ready))
        .cloned()
        .collect();
    check_privileges(&mut conn, &dest.client, &tables, &to_copy).await?;
    if existing.is_none() && args.create_slot {
        check_free_slot(&mut conn).await?;
    }

    // The slot: created here (exporting a snapshot when a copy is due) or checked.
    let mut export = None;
    let slot_start = match existing {
        None if args.create_slot => {
            let action = if to_copy.is_empty() {
                SnapshotAction::Nothing
            } else {
                SnapshotAction::Export
            };
            let created = conn
                .create_replication_slot(&args.slot, false, action, false)
                .await?;
            tracing::info!(slot = %args.slot, consistent_point = %created.consistent_point, "created replication slot");
            if let Some(snap) = created.snapshot_name {
                export = Some((snap, created.consistent_point));
            }
            created.consistent_point
        }
        _ => {
            let info = source::prepare_slot(
                &mut conn,
                &SlotRequest {
                    name: args.slot.clone(),
                    create: false,
                    two_phase: false,
                    wait: Duration::from_secs(args.slot_wait),
                },
            )
            .await?;
            info.confirmed_flush_lsn.unwrap_or_default()
        }
    };

    if !to_copy.is_empty() {
        // A snapshot of its own for a copy resumed after the slot's snapshot is gone.
        let mut temp = None;
        let (snapshot, snapshot_lsn) = match export.take() {
            Some(e) => e,
            None => {
                let mut c2 = source::connect(src, true).await?;
                let tmp = format!("pgsub_copy_{}", std::process::id());
                let created = c2
                    .create_replication_slot(&tmp, true, SnapshotAction::Export, false)
                    .await?;
                temp = Some(c2);
                (
                    created.snapshot_name.unwrap_or_default(),
                    created.consistent_point,
                )
            }
        };
        tracing::info!(tables = to_copy.len(), snapshot_lsn = %snapshot_lsn, jobs = args.copy_jobs, "initial copy");
        copy::copy_tables(
            src,
            dst,
            to_copy,
            &CopyPlan {
                name: name.clone(),
                snapshot,
                snapshot_lsn,
                jobs: args.copy_jobs,
                truncate_first: args.truncate_before_copy,
                bars: {
                    use std::io::IsTerminal;
                    std::io::stderr().is_terminal()
                        && cli.quiet == 0
                        && cli.log_format == super::args::Format::Text
                },
            },
        )
        .await?;
        if let Some(c2) = temp {
            c2.close().await; // the temporary slot goes with its connection
        }
        states = crate::state::tables::states(&dest.client, &name).await?;
    }

    // Streaming, from the stored progress (the server starts at the later of that and the
    // slot's confirmed position).
    let mut snapshots = OidMap::default();
    for t in &tables {
        if let Some(crate::state::tables::CopyState {
            ready: true,
            snapshot_lsn: Some(lsn),
        }) = states.get(&t.qualified_name())
        {
            snapshots.insert(t.relid, *lsn);
        }
    }
    let applied = stored.as_ref().map_or(Lsn::ZERO, |p| p.applied_lsn);
    let start = applied.max(slot_start);
    if stored.is_none() {
        // From the first run on, the destination knows which source and slot it follows.
        progress::record(
            &dest.client,
            &name,
            &identify.systemid,
            &args.slot,
            &args.publications,
            start,
        )
        .await?;
    }
    let caught_up = conn.identify_system().await?.xlogpos;
    let target = match args.until {
        Some(Until::CaughtUp) => Some(caught_up),
        Some(Until::Lsn(l)) => Some(l),
        None => None,
    };
    conn.start_replication(&args.slot, applied, &options)
        .await?;
    tracing::info!(slot = %args.slot, name = %name, start = %start, target = %target.map_or_else(|| "none".into(), |t| t.to_string()), options = %options.to_sql(), "streaming");
    let mut session = Session::new(start);
    let source_generated = tables
        .iter()
        .filter(|t| !t.generated_columns.is_empty())
        .map(|t| (t.relid, t.generated_columns.clone()))
        .collect();
    let mut sink = ApplySink::new(
        dest,
        Subscription {
            name: name.clone(),
            system_id: identify.systemid.clone(),
            slot: args.slot.clone(),
            publications: args.publications.clone(),
        },
        applied,
        snapshots,
        GroupLimits::default(),
        ApplyOptions {
            add_columns: args.schema == SchemaMode::Create,
            on_conflict: args.on_conflict,
            source_generated,
            // One directory per run: the spool is removed with it.
            spool_dir: args
                .spool_dir
                .as_ref()
                .map(|dir| dir.join(format!("pgsub-spool-{}", std::process::id()))),
        },
    );
    let end = run::run(
        &mut conn,
        &mut session,
        &mut sink,
        &RunOptions {
            target,
            acknowledge: true,
            status_interval: Duration::from_secs(args.status_interval.max(1)),
            progress_gap: crate::stream::feedback::DEFAULT_PROGRESS_GAP,
            stats_interval: (args.stats_interval > 0)
                .then(|| Duration::from_secs(args.stats_interval)),
            slot: args.slot.clone(),
        },
        shutdown,
    )
    .await?;
    conn.close().await;
    report(cli, &end, &session, &sink)?;
    Ok(end)
}

/// The source role must read the tables it copies; the destination role must write the
/// tables it applies to.
async fn check_privileges(
    conn: &mut crate::conn::Connection,
    dest: &tokio_postgres::Client,
    tables: &[PublishedTable],
    to_copy: &[PublishedTable],
) -> Result<()> {
    let mut unreadable = Vec::new();
    for t in to_copy {
        let rows = conn
            .simple_query(&format!(
                "SELECT pg_catalog.has_table_privilege({}, 'SELECT')::text",
                t.relid
            ))
            .await?;
        if rows.first().and_then(|r| r.get_idx(0)) != Some("true") {
            unreadable.push(t.qualified_name());
        }
    }
    if !unreadable.is_empty() {
        return Err(Error::Config(format!(
            "the source role may not read {list}, which the initial copy needs: GRANT SELECT ON {list} TO <role> on the source",
            list = unreadable.join(", ")
        )));
    }
    let mut unwritable = Vec::new();
    for t in tables {
        let qualified = crate::pg::ident::qualified(&t.schema, &t.name);
        let allowed: Option<bool> = dest
            .query_one(
                "SELECT CASE WHEN pg_catalog.to_regclass($1) IS NOT NULL THEN \
                 NOT EXISTS (SELECT FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) p \
                             WHERE NOT pg_catalog.has_table_privilege($1, p)) END",
                &[&qualified],
            )
            .await
            .map_err(|e| dest::SqlError::new("checking the destination role's privileges", e))?
            .get(0);
        // A table that does not exist yet (--schema skip) has nothing to check.
        if allowed == Some(false) {
            unwritable.push(t.qualified_name());
        }
    }
    if !unwritable.is_empty() {
        return Err(Error::Config(format!(
            "the destination role may not write {list}: GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON {list} TO <role> on the destination",
            list = unwritable.join(", ")
        )));
    }
    Ok(())
}

/// A new slot needs a free one of `max_replication_slots`.
async fn check_free_slot(conn: &mut crate::conn::Connection) -> Result<()> {
    let rows = conn
        .simple_query(
            "SELECT current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_catalog.pg_replication_slots), \
                    current_setting('max_replication_slots')",
        )
        .await?;
    let free: i64 = rows
        .first()
        .and_then(|r| r.get_idx(0))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let senders = conn
        .simple_query(
            "SELECT current_setting('max_wal_senders')::int - (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type = 'walsender'), \
                    current_setting('max_wal_senders')",
        )
        .await?;
    let free_senders: i64 = senders
        .first()
        .and_then(|r| r.get_idx(0))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    if free_senders <= 0 {
        tracing::warn!(
            "this pgsub holds the last free WAL sender of the source (max_wal_senders = {}): after a crash its restart waits until the old WAL sender exits, and an interrupted table copy cannot take the temporary slot it needs; raise max_wal_senders",
            senders.first().and_then(|r| r.get_idx(1)).unwrap_or("?")
        );
    }
    if free <= 0 {
        let max = rows
            .first()
            .and_then(|r| r.get_idx(1))
            .unwrap_or("?")
            .to_owned();
        return Err(Error::Config(format!(
            "the source has no free replication slot (max_replication_slots = {max}, all in use): drop one nobody streams from (`pgsub slot list` shows them), or raise max_replication_slots and restart the source"
        )));
    }
    Ok(())
}

fn check_stored(stored: &Option<Progress>, system_id: &str, slot: &str, name: &str) -> Result<()> {
    let Some(p) = stored else { return Ok(()) };
    if p.source_system_id != system_id {
        return Err(Error::Config(format!(
            "the destination's progress for \"{name}\" was recorded against another source (system id {}), but this source is {system_id}: pass another --name, or remove the old progress with `pgsub drop`",
            p.source_system_id
        )));
    }
    if p.slot != slot {
        return Err(Error::Config(format!(
            "the destination's progress for \"{name}\" belongs to slot \"{}\", not \"{slot}\": pass --slot {} or another --name",
            p.slot, p.slot
        )));
    }
    Ok(())
}

fn report(cli: &Cli, end: &RunEnd, session: &Session, sink: &ApplySink) -> Result<()> {
    let s = sink.stats();
    if cli.quiet == 0 {
        super::say(
            cli,
            &format!(
                "pgsub sync: applied {} transactions in {} destination transactions ({} skipped as already applied): {} rows inserted, {} updated, {} deleted in {} statements, {} truncates{}",
                s.transactions,
                s.groups,
                s.skipped_transactions,
                s.inserted,
                s.updated,
                s.deleted,
                s.statements,
                s.truncates,
                match sink.conflicts().summary() {
                    c if c.is_empty() => String::new(),
                    c =>
                        format!("; conflicts: {c} (the destination differed; see pgsub.conflicts)"),
                }
            ),
        );
    }
    summary::print("sync", cli, Some(end), session)
}
