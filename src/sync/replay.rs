//! `sync --input RECORDING`: store and forward. A recording made by `pgsub record` is
//! applied into the destination with the progress of a live sync, so a recording can be
//! carried where no machine reaches both servers, and an interrupted replay resumes.
//!
//! ```text
//!  destination: pgsub schema, stored progress ─┐
//!  recording: header (system id, slot, start,  ├─► checks ─► frames ─► Session ─► ApplySink
//!             options)                         ┘     (same system; text values)
//!      ─► every second: commit the open group, note what is durable
//!      ─► end of the recording (or --until, or a signal): make everything durable
//! ```
//!
//! Progress. The destination's `pgsub.progress` row for `--name` (default: the
//! recording's slot) decides what is applied, exactly as for a live sync: a transaction
//! whose commit ends at or below it is skipped, the others are applied and the row moves
//! in the same destination transaction. So a replay killed anywhere, run again, applies
//! each transaction once, and replaying a later recording of the same slot goes on where
//! the earlier one stopped. A recording starts where the slot's confirmed position stood
//! when `pgsub record` began; the changes before that position are the destination's
//! business, as they are for a live sync that starts from the slot.
//!
//! Without stored progress the destination's tables are taken to hold the source's
//! rows as of the recording's start (restored from a dump of the slot's snapshot, say):
//! the replay says so and records that start as its progress.
//!
//! Tables. Where an earlier live sync recorded its tables (`pgsub.tables`), the per-table
//! rule of the copy holds (a table's changes before its copy's snapshot are skipped), and
//! a table the destination does not follow stops the replay: its rows can only be copied
//! from the source, by a live `sync`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::apply::conflicts::OnConflict;
use crate::apply::txn::CopySnapshot;
use crate::apply::values::ValueFormat;
use crate::apply::{ApplyOptions, ApplySink, GroupLimits, Subscription};
use crate::conninfo::Conninfo;
use crate::dest;
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::output::Output;
use crate::pgoutput::PgOutput;
use crate::record::{self, Header};
use crate::replicate::run::{Sink, Until};
use crate::state::progress::{self, Progress};
use crate::state::tables::CopyState;
use crate::stream::relations::OidMap;
use crate::stream::{Event, Session};

/// How often the open destination group is committed and the durable position read.
const DURABLE_EVERY: Duration = Duration::from_secs(1);

/// Everything `sync --input` needs to know.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The recording.
    pub input: PathBuf,
    /// The destination.
    pub dest: Conninfo,
    /// The subscription's name (default: the recording's slot).
    pub name: Option<String>,
    /// Stop once everything up to here is applied (`caught-up`: the end of the recording).
    pub until: Option<Until>,
    /// Where streamed transactions are kept.
    pub spool_dir: Option<PathBuf>,
    /// What to do about conflicts.
    pub on_conflict: OnConflict,
    /// The destination is a scratch database made for this replay (`bench apply`):
    /// starting without progress is what is expected, not worth a warning.
    pub scratch: bool,
}

/// How a replay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayEnd {
    /// Every frame of the recording was read.
    EndOfRecording,
    /// The `--until` position was reached.
    Target,
    /// A shutdown signal arrived.
    Signal,
}

impl std::fmt::Display for ReplayEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReplayEnd::EndOfRecording => "reached the end of the recording",
            ReplayEnd::Target => "reached the --until position",
            ReplayEnd::Signal => "stopped by a signal",
        })
    }
}

/// Checks that `header` can be applied under `stored`, the destination's progress for
/// `name`: the same source system and slot.
pub fn check_recording(header: &Header, stored: Option<&Progress>, name: &str) -> Result<()> {
    if let Some(p) = stored {
        if p.source_system_id != header.system_id {
            return Err(Error::Config(format!(
                "the recording is of source system {}, but the destination's progress for \"{name}\" follows source system {}: this recording belongs to another source; pass the --name of its own subscription, or remove the old progress with `pgsub drop`",
                header.system_id, p.source_system_id
            )));
        }
        if p.slot != header.slot {
            return Err(Error::Config(format!(
                "the recording was made from slot \"{}\", but the destination's progress for \"{name}\" follows slot \"{}\": its positions say nothing about this recording; replay a recording of slot \"{}\", or pass another --name",
                header.slot, p.slot, p.slot
            )));
        }
    }
    Ok(())
}

/// The format of a recording's values: binary when it was recorded with `--binary on`.
/// Each column is then checked against the destination as its Relation message arrives
/// (a column that cannot be applied in binary stops the replay, exit 2, naming it).
pub fn recording_format(header: &Header) -> ValueFormat {
    if header.options.contains("binary 'true'") {
        ValueFormat::Binary
    } else {
        ValueFormat::Text
    }
}

/// A replay under a name with no stored progress starts a new subscription. Where the
/// destination follows others and the name was not given but taken from the
/// recording's slot, that is more likely a recording of another subscription than a
/// new one: refused, naming those followed.
pub fn check_new_subscription(name: &str, named: bool, others: &[String]) -> Result<()> {
    if named || others.is_empty() {
        return Ok(());
    }
    Err(Error::Config(format!(
        "the destination has no progress for \"{name}\" (the recording's slot) but follows {}: pass the --name of the subscription this recording continues, or --name {name} to start a new one from the recording's start",
        others
            .iter()
            .map(|o| format!("\"{o}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// What a replay did.
pub struct Replayed {
    /// Why it ended.
    pub end: ReplayEnd,
    /// The session that read the recording (positions, accounting).
    pub session: Session,
    /// The sink that applied it (statistics, conflicts).
    pub sink: ApplySink,
    /// Time from the first frame read to everything durable.
    pub elapsed: Duration,
}

/// Applies a recording into the destination, then prints the summary.
pub async fn run(
    opts: &ReplayOptions,
    out: &Output,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    // A replay killed while it held streamed transactions left their files behind.
    crate::apply::spool::remove_leftovers(
        &opts.spool_dir.clone().unwrap_or_else(std::env::temp_dir),
    );
    let r = replay(opts, shutdown).await?;
    super::once::report(out, &r.end, &r.session, &r.sink)
}

/// Applies a recording into the destination.
pub async fn replay(
    opts: &ReplayOptions,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<Replayed> {
    let path = opts.input.display().to_string();
    let mut reader = record::open(&opts.input)?;
    let header = reader.header().clone();
    let name = opts.name.clone().unwrap_or_else(|| header.slot.clone());

    let dest = dest::connect(&opts.dest).await?;
    crate::state::setup(&dest.client).await?;
    let stored = progress::read(&dest.client, &name).await?;
    check_recording(&header, stored.as_ref(), &name)?;
    if header.options.contains("two_phase 'true'") {
        super::preflight::check_destination_prepares(&dest.client).await?;
    }
    if stored.is_none() {
        let others: Vec<String> = progress::rows(&dest.client)
            .await?
            .into_iter()
            .map(|r| r.name)
            .collect();
        check_new_subscription(&name, opts.name.is_some(), &others)?;
    }
    let setup = dest::prepare_apply(&dest, &name).await?;
    let states = crate::state::tables::states(&dest.client, &name).await?;

    let publications = match &stored {
        Some(p) => p.publications.clone(),
        None => header.publications.clone(),
    };
    let applied = match &stored {
        Some(p) => p.applied_lsn,
        None => {
            if !opts.scratch {
                tracing::warn!(
                    name = %name,
                    start = %header.start(),
                    "the destination has no progress for this subscription: the recording is applied from its start, and the destination's tables are taken to hold the source's rows as of that position"
                );
            }
            progress::record(
                &dest.client,
                &name,
                &header.system_id,
                &header.slot,
                &publications,
                header.start(),
            )
            .await?;
            header.start()
        }
    };
    if header.start() > applied {
        tracing::info!(
            applied = %applied,
            start = %header.start(),
            "the recording starts after the destination's progress, where the slot stood when it was recorded (as a live sync starts from the slot)"
        );
    }
    tracing::info!(
        path = %path,
        system_id = %header.system_id,
        slot = %header.slot,
        start = %header.start(),
        applied = %applied,
        "replaying a recording into the destination"
    );

    let sub = Subscription {
        name: name.clone(),
        system_id: header.system_id.clone(),
        slot: header.slot.clone(),
        publications,
    };
    let followed = (!states.is_empty()).then(|| states.keys().cloned().collect::<HashSet<_>>());
    let mut sink = ApplySink::new(
        dest,
        sub,
        applied,
        OidMap::default(),
        GroupLimits::default(),
        ApplyOptions {
            published: followed,
            add_columns: false,
            on_conflict: opts.on_conflict,
            own_origin: setup.own_origin,
            dest_round_trip: setup.round_trip,
            source_generated: OidMap::default(),
            spool_dir: opts.spool_dir.clone(),
            format: recording_format(&header),
        },
    );
    let target = match opts.until {
        Some(Until::Lsn(l)) => Some(l),
        _ => None,
    };
    let mut session = Session::new(header.start());
    let began = Instant::now();
    let read = feed(
        &mut reader,
        &mut session,
        &mut sink,
        &states,
        target,
        &mut shutdown,
    )
    .await;
    // Whatever stopped the replay, what was applied whole is made durable (a transaction
    // cut off by the end of a damaged recording, or by a failure, is given up).
    let end = match read {
        Ok(end) => end,
        Err(e) => {
            if let Err(s) = sink.make_durable(session.positions().applied()).await {
                tracing::warn!(
                    "after the replay failed, the complete transactions applied could not be made durable: {s}"
                );
            }
            return Err(e);
        }
    };
    let durable = sink.make_durable(session.positions().applied()).await?;
    applied_up_to(&mut session, durable)?;
    if end == ReplayEnd::EndOfRecording {
        session.accounting().check()?;
    }
    let elapsed = began.elapsed();
    let s = sink.stats();
    let changes = s.inserted + s.updated + s.deleted;
    tracing::info!(
        durable = %durable,
        frames = reader.frames(),
        seconds = format!("{:.2}", elapsed.as_secs_f64()),
        rows_per_second = (changes as f64 / elapsed.as_secs_f64().max(0.001)) as u64,
        megabytes_per_second = format!("{:.1}", session.accounting().summary().frames.bytes as f64 / 1e6 / elapsed.as_secs_f64().max(0.001)),
        "replay complete"
    );
    Ok(Replayed {
        end,
        session,
        sink,
        elapsed,
    })
}

/// Tells the session what is durable: the stored progress of a resumed replay may be
/// ahead of the frames read so far (those transactions are skipped), and the session
/// knows nothing past what it read.
fn applied_up_to(session: &mut Session, durable: Lsn) -> Result<()> {
    let completed = session.positions().completed();
    Ok(session.on_applied(durable.min(completed))?)
}

/// Feeds the recording's frames to the sink until its end, `target` or a signal,
/// committing the open group about once a second.
async fn feed<R: std::io::BufRead>(
    reader: &mut record::Reader<R>,
    session: &mut Session,
    sink: &mut ApplySink,
    states: &HashMap<String, CopyState>,
    target: Option<Lsn>,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<ReplayEnd> {
    let mut processed = session.positions().applied();
    let mut last = Instant::now();
    loop {
        if *shutdown.borrow_and_update() {
            return Ok(ReplayEnd::Signal);
        }
        if target.is_some_and(|t| processed >= t) {
            return Ok(ReplayEnd::Target);
        }
        let Some(payload) = reader.next_frame()? else {
            return Ok(ReplayEnd::EndOfRecording);
        };
        let wire_len = payload.len() + 5;
        let event = session.on_copy_data(payload.clone(), wire_len)?;
        if let Event::Message {
            msg: PgOutput::Relation(r),
            ..
        } = &event
            && let Some(CopyState {
                ready: true,
                snapshot_lsn: Some(lsn),
                snapshot,
                ..
            }) = states.get(&r.qualified_name())
        {
            // The copy's per-table rule, by the relid this recording gives the table.
            sink.table_snapshot(
                r.relid,
                CopySnapshot {
                    lsn: *lsn,
                    xids: snapshot.clone(),
                },
            );
        }
        sink.on_event(session, &event, &payload).await?;
        if let Event::Message {
            unit_end: Some(end),
            ..
        } = &event
        {
            processed = *end;
        }
        if last.elapsed() >= DURABLE_EVERY {
            let durable = sink.durable(processed).await?;
            applied_up_to(session, durable)?;
            last = Instant::now();
            // Let a signal in between frames.
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(options: &str) -> Header {
        Header {
            pgsub_version: "0".into(),
            server_version: "15".into(),
            server_version_num: 150000,
            system_id: "7000".into(),
            timeline: 1,
            slot: "s".into(),
            start_lsn: "0/100".into(),
            options: options.into(),
            recorded_at: String::new(),
            publications: vec!["p".into()],
        }
    }

    fn progress(system_id: &str, slot: &str) -> Progress {
        Progress {
            source_system_id: system_id.into(),
            slot: slot.into(),
            publications: vec!["p".into()],
            applied_lsn: Lsn::ZERO,
        }
    }

    #[test]
    fn a_recording_of_another_source_system_is_refused_naming_both() {
        let e = check_recording(&header(""), Some(&progress("8000", "s")), "n").unwrap_err();
        assert!(matches!(e, Error::Config(_)));
        let text = e.to_string();
        assert!(text.contains("7000") && text.contains("8000"), "{text}");
    }

    #[test]
    fn a_recording_of_another_slot_is_refused() {
        let e = check_recording(&header(""), Some(&progress("7000", "t")), "n").unwrap_err();
        assert!(e.to_string().contains("slot \"s\""), "{e}");
    }

    #[test]
    fn a_recording_of_the_same_system_and_slot_or_of_a_fresh_destination_is_taken() {
        check_recording(
            &header("proto_version '1'"),
            Some(&progress("7000", "s")),
            "n",
        )
        .unwrap();
        check_recording(&header("proto_version '1'"), None, "n").unwrap();
    }

    #[test]
    fn a_new_name_taken_from_the_slot_is_refused_where_the_destination_follows_others() {
        let e = check_new_subscription("s", false, &["main".into()]).unwrap_err();
        assert!(
            e.to_string().contains("\"main\"") && e.to_string().contains("--name"),
            "{e}"
        );
        check_new_subscription("s", true, &["main".into()]).unwrap();
        check_new_subscription("s", false, &[]).unwrap();
    }

    #[test]
    fn binary_and_two_phase_recordings_are_taken_binary_ones_as_binary() {
        check_recording(&header("binary 'true'"), None, "n").unwrap();
        check_recording(&header("two_phase 'true'"), None, "n").unwrap();
        assert_eq!(
            recording_format(&header("binary 'true'")),
            ValueFormat::Binary
        );
        assert_eq!(
            recording_format(&header("binary 'false'")),
            ValueFormat::Text
        );
    }
}
