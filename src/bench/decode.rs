//! `bench decode`: how fast pgsub decodes, from a recording (decode alone) or from a
//! slot's backlog on a live server (the server's sending, the network and the decode,
//! with the CPU time saying which of them bound it). A live bench never acknowledges: the
//! slot does not move, so the same backlog can be measured again.

use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use indicatif::ProgressBar;

use super::Report;
use crate::error::Result;
use crate::lsn::Lsn;
use crate::output::progress::bytes_bar as bar;
use crate::replicate::offline::Offline;
use crate::replicate::run::Sink;
use crate::replicate::start::Started;
use crate::stream::{Event, Session};

/// Frames between updates of the progress bar.
const BAR_EVERY: u64 = 4096;

/// Decodes every frame of the recording at `path`.
pub fn offline(path: &Path, bars: bool) -> Result<Report> {
    let name = path.display().to_string();
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut rec = Offline::open(path)?;
    let bar = bars.then(|| bar(len, "of recording"));
    let cpu = super::cpu_seconds();
    let began = Instant::now();
    while rec.next_event()?.is_some() {
        if let Some(b) = &bar
            && rec.reader.frames().is_multiple_of(BAR_EVERY)
        {
            // The file holds each payload after its length and CRC (8 bytes), where the
            // wire has 5 bytes of CopyData framing.
            let frames = &rec.session.accounting().frames;
            b.set_position(frames.bytes + 3 * frames.count);
        }
    }
    let session = rec.session;
    let seconds = began.elapsed().as_secs_f64();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    session.accounting().check()?;
    Ok(Report::of(
        "decode",
        format!("recording {name}"),
        &session,
        seconds,
        cpu,
    ))
}

/// Counts and shows progress; makes nothing durable (nothing is acknowledged).
struct Counting {
    bar: Option<ProgressBar>,
    from: Lsn,
    events: u64,
}

impl Sink for Counting {
    async fn on_event(
        &mut self,
        session: &Session,
        _event: &Event,
        _payload: &Bytes,
    ) -> Result<()> {
        self.events += 1;
        if let Some(b) = &self.bar
            && self.events.is_multiple_of(BAR_EVERY)
        {
            b.set_position(session.positions().received().0.saturating_sub(self.from.0));
        }
        Ok(())
    }

    async fn durable(&mut self, processed: Lsn) -> Result<Lsn> {
        Ok(processed)
    }

    async fn make_durable(&mut self, processed: Lsn) -> Result<Lsn> {
        Ok(processed)
    }
}

/// Streams the slot's backlog up to the run's target, decoding it, without acknowledging.
pub async fn live(
    mut started: Started,
    bars: bool,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<Report> {
    started.run.acknowledge = false;
    let from = started.start;
    let span = started.run.target.map_or(0, |t| t.0.saturating_sub(from.0));
    let mut sink = Counting {
        bar: bars.then(|| bar(span, "of WAL")),
        from,
        events: 0,
    };
    let input = format!(
        "slot \"{}\" on {} from {from}{}",
        started.run.slot,
        started.conn.target(),
        started
            .run
            .target
            .map(|t| format!(" to {t}"))
            .unwrap_or_default()
    );
    let cpu = super::cpu_seconds();
    let began = Instant::now();
    started.stream_into(&mut sink, shutdown).await?;
    let seconds = began.elapsed().as_secs_f64();
    if let Some(b) = sink.bar.take() {
        b.finish_and_clear();
    }
    Ok(Report::of("decode", input, &started.session, seconds, cpu))
}
