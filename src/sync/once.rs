//! One run of `sync`: from connecting to the end of streaming.
//!
//! ```text
//!  destination: pgsub schema, stored progress ─┐
//!  source: version, wal_level, publications,   ├─► preflight ─► table definitions
//!          system id, published tables         ┘        (verify | create | skip)
//!      ─► tables to copy recorded (before the slot exists; later runs add the tables
//!         that joined the publications and forget those that left) ─► slot (created with an
//!         exported snapshot when a copy is due) ─► copy (that snapshot, or a fresh one
//!         from a temporary slot for tables whose copy was interrupted)
//!      ─► START_REPLICATION from the stored progress ─► apply until --until / signal,
//!         or until a table joins the publications (then the next run copies it)
//! ```

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::copy::{self, CopyPlan};
use super::schema::{self, SchemaMode};
use super::{SyncOptions, preflight};
use crate::apply::{ApplyOptions, ApplySink, GroupLimits, Subscription};
use crate::conn::replication::{SlotFeatures, SnapshotAction};
use crate::dest;
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::output::Output;
use crate::pgoutput::options::RequestedOptions;
use crate::replicate::run::RunEnd;
use crate::replicate::start;
use crate::source::tables::{self, PublishedTable};
use crate::source::{self, SlotRequest, slots};
use crate::state::progress;
use crate::stream::Session;
use crate::stream::relations::OidMap;

fn requested(opts: &SyncOptions) -> RequestedOptions {
    RequestedOptions {
        publication_names: opts.publications.clone(),
        binary: None,
        // As the built-in subscription asks: sync applies no logical decoding messages.
        messages: Some(false),
        streaming: Some(opts.streaming),
        two_phase: opts.two_phase.then_some(true),
        origin: opts.origin,
        proto_version: None,
    }
}

/// Which tables are copied and which only streamed, recorded in `pgsub.tables` before the
/// slot exists, so that a run killed at any point after this still copies them next time.
/// The first run copies every table (or, with `--no-copy-data` or a slot that already
/// exists, records them as streamed); a later run copies the tables that joined the
/// publications since, and forgets those that left them — what `ALTER SUBSCRIPTION …
/// REFRESH PUBLICATION` does, without anyone having to ask.
async fn plan_tables(
    opts: &SyncOptions,
    client: &tokio_postgres::Client,
    name: &str,
    tables: &[PublishedTable],
    new_slot: bool,
) -> Result<std::collections::HashMap<String, crate::state::tables::CopyState>> {
    use crate::state::tables as state;
    let states = state::states(client, name).await?;
    let relations: Vec<String> = tables.iter().map(PublishedTable::qualified_name).collect();
    if states.is_empty() {
        if opts.copy_data.unwrap_or(new_slot) {
            state::plan(client, name, &relations).await?;
        } else {
            state::mark_streamed(client, name, &relations).await?;
        }
        return state::states(client, name).await;
    }
    let left: Vec<String> = states
        .keys()
        .filter(|r| !relations.contains(r))
        .cloned()
        .collect();
    for relation in &left {
        tracing::warn!(table = %relation, "the table left the publications: its changes are no longer applied, and its rows on the destination are kept (should it join again, it is copied again, into an empty table or with --truncate-before-copy)");
    }
    if !left.is_empty() {
        state::forget(client, name, &left).await?;
    }
    let joined: Vec<String> = relations
        .iter()
        .filter(|r| !states.contains_key(*r))
        .cloned()
        .collect();
    if !joined.is_empty() {
        if opts.copy_data == Some(false) {
            for relation in &joined {
                tracing::warn!(table = %relation, "the table joined the publications and is not copied (--no-copy-data): only its changes from now on are applied");
            }
            state::mark_streamed(client, name, &joined).await?;
        } else {
            for relation in &joined {
                tracing::info!(table = %relation, "the table joined the publications: copying it, then streaming it");
            }
            state::plan(client, name, &joined).await?;
        }
    }
    if left.is_empty() && joined.is_empty() {
        Ok(states)
    } else {
        state::states(client, name).await
    }
}

/// What the retry loop carries from one run to the next.
#[derive(Debug, Default)]
pub struct Carry {
    /// Tables a run stopped for because they joined the publications while it streamed.
    pub refreshed: HashSet<String>,
    /// The bounds of a destination group: smaller after a run lost the destination
    /// connection, so that a network that keeps cutting connections still lets groups
    /// commit.
    pub limits: GroupLimits,
    /// Set once the run's stream has started (a shutdown before that stops the run at
    /// once, since all it did until then can be done again).
    pub streaming: Arc<std::sync::atomic::AtomicBool>,
    /// A run met a column that cannot be applied in binary (`--binary auto`): the
    /// stream carries text from then on.
    pub text_only: bool,
}

/// Connects, checks, copies what is due and streams until the end of the run. The
/// relations of `carry.refreshed` are those a previous run stopped for (they joined
/// mid-stream): they are not stopped for again.
pub async fn run(
    opts: &SyncOptions,
    out: &Output,
    shutdown: tokio::sync::watch::Receiver<bool>,
    carry: &mut Carry,
) -> Result<RunEnd> {
    carry
        .streaming
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let refreshed = &carry.refreshed;
    let name = opts.name.clone();
    // The destination's start-up and the source's go on at the same time: either may be
    // far away, and neither needs the other until the stored progress is checked against
    // the source. The first failure ends both.
    let dest_side = async {
        let dest = dest::connect(&opts.dest).await?;
        crate::state::setup(&dest.client).await?;
        let setup = dest::prepare_apply(&dest, &name).await?;
        let stored = progress::read(&dest.client, &name).await?;
        Ok::<_, Error>((dest, setup, stored))
    };
    let requested = requested(opts);
    let source_side = start::connect(&opts.source, &opts.slot, &requested);
    let ((dest, setup, stored), prepared) = tokio::try_join!(dest_side, source_side)?;
    let dest::ApplySetup {
        round_trip: dest_round_trip,
        own_origin,
    } = setup;
    let (mut conn, mut options, identify) = (prepared.conn, prepared.options, prepared.identify);
    preflight::check_stored(&stored, &identify.systemid, &opts.slot, &name)?;
    let tables = tables::published_tables(&mut conn, &opts.publications).await?;
    preflight::lossiness_report(
        &tables,
        tables::publishes_changes(&mut conn, &opts.publications).await?,
    );
    let dests = schema::prepare(&dest.client, &tables, opts.schema).await?;
    // The stream's format: binary where every column the destination is written takes it,
    // decided (and `--binary on` refused) before the slot or any copy is made. A column
    // that changes later is met by the apply's own check of every Relation message.
    let format = super::binary::choose(
        opts.binary,
        carry.text_only,
        conn.server_version_num(),
        &tables,
        &dests,
    )?;
    if format == crate::apply::values::ValueFormat::Binary {
        options.binary = Some(true);
    }
    tracing::debug!(
        format = format.name(),
        "column values stream in this format"
    );

    let mut existing = slots::find(&mut conn, &opts.slot).await?;
    if existing.as_ref().is_some_and(|s| s.active) {
        // Held by the walsender of a pgsub that just died; gone when that pgsub died
        // while creating it.
        existing = source::wait_for_release(&mut conn, &opts.slot, opts.slot_wait).await?;
    }
    preflight::check_two_phase(&dest.client, existing.as_ref(), opts.two_phase).await?;
    let mut states = plan_tables(opts, &dest.client, &name, &tables, existing.is_none()).await?;
    // The plan must outlive a destination crash once the slot exists (found by the soak),
    // and the stored progress, acknowledged to the source once streaming starts, too: one
    // flush makes both durable.
    crate::state::make_durable(&dest.client).await?;
    let to_copy: Vec<PublishedTable> = tables
        .iter()
        .filter(|t| states.get(&t.qualified_name()).is_some_and(|s| !s.ready))
        .cloned()
        .collect();
    source::check_failover(&conn, opts.failover)?;
    if opts.failover
        && let Some(slot) = existing.as_ref().filter(|s| s.failover == Some(false))
    {
        // An existing slot made a failover slot, as ALTER SUBSCRIPTION … SET (failover)
        // does for the built-in subscription.
        conn.simple_query(&format!(
            "ALTER_REPLICATION_SLOT {} ( FAILOVER true )",
            crate::protocol::quote::ident(&slot.slot_name)
        ))
        .await?;
        tracing::info!(slot = %slot.slot_name, "the slot is a failover slot now");
    }
    preflight::check_privileges(&mut conn, &dest.client, &tables, &to_copy).await?;
    if existing.is_none() && opts.create_slot {
        preflight::check_free_slot(&mut conn).await?;
    }

    // The slot: created here (exporting a snapshot when a copy is due) or checked.
    let mut export = None;
    let slot_start = match existing {
        None if opts.create_slot => {
            let action = if to_copy.is_empty() {
                SnapshotAction::Nothing
            } else {
                SnapshotAction::Export
            };
            let created = conn
                .create_replication_slot(
                    &opts.slot,
                    false,
                    action,
                    SlotFeatures {
                        two_phase: opts.two_phase,
                        failover: opts.failover,
                    },
                )
                .await?;
            tracing::info!(slot = %opts.slot, consistent_point = %created.consistent_point, "created replication slot");
            if let Some(snap) = created.snapshot_name {
                export = Some((snap, created.consistent_point));
            }
            created.consistent_point
        }
        _ => {
            let info = source::prepare_slot(
                &mut conn,
                &SlotRequest {
                    name: opts.slot.clone(),
                    create: false,
                    features: SlotFeatures::default(),
                    wait: opts.slot_wait,
                },
            )
            .await?;
            info.confirmed_flush_lsn.unwrap_or_default()
        }
    };

    // Creating the slot waits for the transactions running on the source to end: the
    // tables may have changed meanwhile (a column added). Read them again now that the
    // copy's snapshot is fixed, so that the copy takes every column it holds.
    let (tables, to_copy) = if to_copy.is_empty() {
        (tables, to_copy)
    } else {
        // On a connection of its own (a command on the one that created the slot would
        // end the snapshot it exported), and a plain one: the copy's own connections
        // must not find the source's WAL senders all taken.
        let mut again = source::connect(&opts.source, false).await?;
        let tables = tables::published_tables(&mut again, &opts.publications).await?;
        again.close().await;
        schema::prepare(&dest.client, &tables, opts.schema).await?;
        let to_copy = tables
            .iter()
            .filter(|t| states.get(&t.qualified_name()).is_some_and(|s| !s.ready))
            .cloned()
            .collect::<Vec<PublishedTable>>();
        (tables, to_copy)
    };

    if !to_copy.is_empty() {
        // A snapshot of its own for a copy resumed after the slot's snapshot is gone.
        let mut temp = None;
        let (snapshot, snapshot_lsn) = match export.take() {
            Some(e) => e,
            None => {
                let mut c2 = source::connect(&opts.source, true).await?;
                let tmp = format!("pgsub_copy_{}", std::process::id());
                let created = c2
                    .create_replication_slot(
                        &tmp,
                        true,
                        SnapshotAction::Export,
                        SlotFeatures::default(),
                    )
                    .await?;
                temp = Some(c2);
                (
                    created.snapshot_name.unwrap_or_default(),
                    created.consistent_point,
                )
            }
        };
        tracing::info!(tables = to_copy.len(), snapshot_lsn = %snapshot_lsn, jobs = opts.copy_jobs, "initial copy");
        copy::copy_tables(
            &opts.source,
            &opts.dest,
            to_copy,
            &CopyPlan {
                name: name.clone(),
                snapshot,
                snapshot_lsn,
                jobs: opts.copy_jobs,
                truncate_first: opts.truncate_before_copy,
                bars: opts.progress_bars,
                text: opts.binary == super::binary::BinaryMode::Off,
                chunk_bytes: opts.copy_chunk_mb << 20,
                partial: states
                    .iter()
                    .filter(|(_, s)| s.partial)
                    .map(|(r, _)| r.clone())
                    .collect(),
            },
        )
        .await?;
        if let Some(c2) = temp {
            c2.close().await; // the temporary slot goes with its connection
        }
        states = crate::state::tables::states(&dest.client, &name).await?;
    }

    // Indexes after the data, before any change is applied.
    if opts.schema == SchemaMode::Create {
        let mut src = source::connect(&opts.source, false).await?;
        let wanted = schema::indexes::read(&mut src, &tables).await?;
        src.close().await;
        let missing = schema::indexes::missing(&dest.client, wanted).await?;
        schema::indexes::build(&opts.dest, missing, opts.copy_jobs).await?;
    }

    // Streaming, from the stored progress (the server starts at the later of that and the
    // slot's confirmed position).
    let mut snapshots = OidMap::default();
    for t in &tables {
        if let Some(crate::state::tables::CopyState {
            ready: true,
            snapshot_lsn: Some(lsn),
            snapshot,
            ..
        }) = states.get(&t.qualified_name())
        {
            snapshots.insert(
                t.relid,
                crate::apply::txn::CopySnapshot {
                    lsn: *lsn,
                    xids: snapshot.clone(),
                },
            );
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
            &opts.slot,
            &opts.publications,
            start,
        )
        .await?;
    }
    let known: HashSet<String> = tables
        .iter()
        .map(PublishedTable::qualified_name)
        .chain(refreshed.iter().cloned())
        .collect();
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
            slot: opts.slot.clone(),
            publications: opts.publications.clone(),
        },
        applied,
        snapshots,
        carry.limits,
        ApplyOptions {
            published: Some(known.clone()),
            add_columns: opts.schema == SchemaMode::Create,
            on_conflict: opts.on_conflict,
            own_origin,
            dest_round_trip,
            source_generated,
            spool_dir: opts.spool_dir.clone(),
            format,
        },
    );
    let mut started = start::Prepared {
        conn,
        options,
        identify,
    }
    .start(&start::StartAt {
        slot: opts.slot.clone(),
        requested: applied,
        floor: start,
        until: opts.until,
        acknowledge: true,
        status_interval: opts.status_interval,
        stats_interval: opts.stats_interval,
    })
    .await?;
    started.run.progress_gap =
        crate::apply::txn::progress_gap(dest_round_trip, started.run.progress_gap);
    carry
        .streaming
        .store(true, std::sync::atomic::Ordering::Relaxed);
    // The run stops for a table that joins the publications while it streams: at its
    // first change (the sink sees a relation it does not know), or when the check every
    // --refresh-interval finds it. The next run copies it.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let joined = Arc::new(Mutex::new(None::<String>));
    let watcher = tokio::spawn(watch_publications(
        opts.clone(),
        known.clone(),
        shutdown.clone(),
        stop_tx,
        joined.clone(),
    ));
    let end = started.stream_into(&mut sink, stop_rx).await;
    watcher.abort();
    let end = end?;
    report(out, &end, &started.session, &sink)?;
    let found = joined.lock().map(|j| j.clone()).unwrap_or_default();
    match found {
        Some(relation) if end == RunEnd::Signal && !*shutdown.borrow() => {
            Err(Error::PublicationChanged(relation))
        }
        _ => Ok(end),
    }
}

/// Passes the user's shutdown on to the run, and every `--refresh-interval` looks for a
/// published table the run does not know; finding one, it records it in `joined` and
/// stops the run.
async fn watch_publications(
    opts: SyncOptions,
    known: HashSet<String>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    stop: tokio::sync::watch::Sender<bool>,
    joined: Arc<Mutex<Option<String>>>,
) {
    let every = opts.refresh_interval;
    let mut tick = tokio::time::interval(if every.is_zero() {
        Duration::from_secs(3600 * 24 * 365)
    } else {
        every
    });
    tick.tick().await; // the first tick is at once: the run just read the tables
    loop {
        if *shutdown.borrow() {
            let _ = stop.send(true);
            return;
        }
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tick.tick(), if !every.is_zero() => {
                match new_table(&opts, &known).await {
                    Ok(Some(relation)) => {
                        tracing::info!(table = %relation, "a table joined the publications: stopping the stream to copy it");
                        if let Ok(mut j) = joined.lock() {
                            *j = Some(relation);
                        }
                        let _ = stop.send(true);
                        return;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!("looking for tables that joined the publications: {e}"),
                }
            }
        }
    }
}

/// A published table not in `known`, read on a plain connection of its own.
async fn new_table(opts: &SyncOptions, known: &HashSet<String>) -> Result<Option<String>> {
    let mut c = source::connect(&opts.source, false).await?;
    let tables = tables::published_tables(&mut c, &opts.publications).await;
    c.close().await;
    Ok(tables?
        .iter()
        .map(PublishedTable::qualified_name)
        .find(|r| !known.contains(r)))
}

/// The run's summary: what the sink applied, then the session's.
pub(super) fn report(
    out: &Output,
    end: &dyn std::fmt::Display,
    session: &Session,
    sink: &ApplySink,
) -> Result<()> {
    let s = sink.stats();
    if !out.quiet {
        out.say(
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
    crate::output::summary::print("sync", out, Some(end), session)
}
