//! The streaming loop: reads CopyData from the source, runs it through the
//! [`Session`], hands each event to a [`Sink`], and sends status updates by the
//! [`FeedbackPolicy`] — on request, at least every interval, and soon after progress.
//!
//! ```text
//!   ┌──────────── select ────────────┐
//!   │ shutdown signal ─► stop        │
//!   │ CopyData ─► Session ─► Sink    │──► status update due? ─► Sink::durable
//!   │ timer (status interval, ping) │        ─► Session::on_applied ─► send 'r'
//!   └────────────────────────────────┘
//! ```
//!
//! A position is acknowledged only after the sink has made everything before it
//! durable. The loop stops when the acknowledgeable position reaches the `until`
//! target, on a shutdown signal, or when the server ends the stream; in every case it
//! makes the sink durable and sends a last status update before ending CopyBoth.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use crate::conn::Connection;
use crate::conn::replication::{CopyBothEvent, StreamEnd};
use crate::error::Result;
use crate::lsn::Lsn;
use crate::protocol::replication::StandbyStatusUpdate;
use crate::stream::feedback::FeedbackPolicy;
use crate::stream::{Event, Session};

/// Where a run stops by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// The source's WAL position when streaming began.
    CaughtUp,
    /// A given position.
    Lsn(Lsn),
}

impl std::str::FromStr for Until {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "caught-up" {
            return Ok(Until::CaughtUp);
        }
        s.parse::<Lsn>().map(Until::Lsn).map_err(|_| {
            format!("expected caught-up or a WAL position such as 0/16B3748, got {s:?}")
        })
    }
}

/// What the loop does with each event.
pub trait Sink {
    /// One event; `payload` is the raw CopyData payload it came from.
    fn on_event(
        &mut self,
        session: &Session,
        event: &Event,
        payload: &Bytes,
    ) -> impl std::future::Future<Output = Result<()>>;

    /// The end of the last unit that is durable now, at most `processed` (the end of the
    /// last unit handed over). A sink may make things durable here (flush, fsync,
    /// commit) or report what has become durable on its own, but should not wait long.
    fn durable(&mut self, processed: Lsn) -> impl std::future::Future<Output = Result<Lsn>>;

    /// Makes everything handed over durable, waiting as long as that takes, and returns
    /// the position that is durable.
    fn make_durable(&mut self, processed: Lsn) -> impl std::future::Future<Output = Result<Lsn>>;

    /// The source connection failed: keep what can be kept (commit the complete units
    /// handed over, without waiting for them to be durable; nothing can be acknowledged
    /// any more). The next run starts from what the sink recorded.
    fn salvage(&mut self) -> impl std::future::Future<Output = Result<()>> {
        async { Ok(()) }
    }

    /// Publishes the sink's own counters to the metrics registry (called about once a
    /// second when metrics are on).
    fn publish_metrics(&self) {}
}

/// How often metrics are published from the stream loop.
const METRICS_EVERY: Duration = Duration::from_secs(1);

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Stop once everything up to here is processed (and acknowledged, if acknowledging).
    pub target: Option<Lsn>,
    /// Send flush positions; `false` sends 0/0 (`decode --no-ack`).
    pub acknowledge: bool,
    /// Maximum time between status updates.
    pub status_interval: Duration,
    /// Shortest time between status updates sent for progress (each makes the sink
    /// durable first).
    pub progress_gap: Duration,
    /// Time between log lines of statistics, if any.
    pub stats_interval: Option<Duration>,
    /// The slot, for messages.
    pub slot: String,
}

/// Why a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// The target position was reached.
    Target,
    /// A shutdown signal arrived.
    Signal,
    /// The server ended the stream (shutdown of the source).
    ServerEnded(StreamEnd),
}

impl std::fmt::Display for RunEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunEnd::Target => f.write_str("reached the --until position"),
            RunEnd::Signal => f.write_str("stopped by a signal"),
            RunEnd::ServerEnded(e) => write!(f, "the server ended the stream ({e:?})"),
        }
    }
}

/// Streams until a target, a signal or the server's end.
pub async fn run<S: Sink>(
    conn: &mut Connection,
    session: &mut Session,
    sink: &mut S,
    opts: &RunOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<RunEnd> {
    let target = conn.target().to_owned();
    let context = || {
        format!(
            "streaming from slot \"{}\" on the source ({target})",
            opts.slot
        )
    };
    let mut policy = FeedbackPolicy::with_progress_gap(
        opts.status_interval,
        opts.progress_gap,
        opts.acknowledge,
    );
    let mut processed = session.positions().applied();
    let mut last_data = Instant::now();
    // Waiting for a target with nothing arriving, ask for a keepalive soon: its wal_end
    // is what says the target is reached.
    let ping_after = Duration::from_millis(50);
    let mut last_ping = Instant::now();
    let mut stats = Stats::new(session);
    let mut metrics_at = Instant::now();
    let end = loop {
        let prospective = prospective_ack(session, processed);
        if opts.target.is_some_and(|t| prospective >= t) {
            break RunEnd::Target;
        }
        let now = Instant::now();
        let mut wake = policy.next_due(prospective).unwrap_or(now);
        if opts.target.is_some() {
            // While waiting for a target, ask the server for a keepalive now and then,
            // so an idle source still reports its position promptly.
            wake = wake.min(last_data.max(last_ping) + ping_after);
        }
        if let Some(every) = opts.stats_interval {
            wake = wake.min(stats.at + every);
        }
        if crate::output::metrics::registry().is_some() {
            wake = wake.min(metrics_at + METRICS_EVERY);
        }
        tokio::select! {
            biased;
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break RunEnd::Signal;
                }
            }
            ev = conn.next_copy_data() => match ev {
                Err(e) => {
                    // The source is gone: what was applied whole is kept for the next run.
                    if let Err(s) = sink.salvage().await {
                        tracing::warn!("after the source connection failed, the complete transactions applied could not be committed: {s}");
                    }
                    return Err(e.with_context(context()).into());
                }
                Ok(CopyBothEvent::Data { payload, wire_len }) => {
                    last_data = Instant::now();
                    let event = session.on_copy_data(payload.clone(), wire_len)?;
                    if let Event::Keepalive(k) = &event && k.reply_requested {
                        policy.reply_requested();
                    }
                    handle(conn, session, sink, &mut policy, opts, &event, &payload)
                        .await
                        .map_err(|e| with_conn_context(e, &context()))?;
                    if let Event::Message { unit_end: Some(end), .. } = &event {
                        processed = *end;
                    }
                }
                Ok(CopyBothEvent::End(e)) => break RunEnd::ServerEnded(e),
            },
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        let now = Instant::now();
        if let Some(every) = opts.stats_interval
            && now >= stats.at + every
        {
            stats.log(session, now);
        }
        if crate::output::metrics::registry().is_some() && now >= metrics_at + METRICS_EVERY {
            crate::output::metrics::publish_session(session);
            sink.publish_metrics();
            metrics_at = now;
        }
        let ping = opts.target.is_some() && now >= last_data.max(last_ping) + ping_after;
        if ping || policy.due(now, prospective_ack(session, processed)) {
            if ping {
                last_ping = now;
            }
            send_status(
                conn,
                session,
                sink,
                &mut policy,
                opts,
                processed,
                ping,
                false,
            )
            .await
            .map_err(|e| with_conn_context(e, &context()))?;
        }
    };
    // Make what was processed durable and say so, whatever the reason for stopping. After
    // the server's CommandComplete it is out of COPY mode and takes no status update; it
    // sends that only once everything it sent was confirmed.
    let server_end = match &end {
        RunEnd::ServerEnded(e) => Some(e),
        _ => None,
    };
    let closed: Result<()> = async {
        if matches!(server_end, Some(StreamEnd::CommandComplete(_))) {
            // The server is out of COPY mode: no status updates any more.
            let durable = sink.make_durable(processed).await?;
            session.on_applied(durable)?;
        } else {
            send_status(
                conn,
                session,
                sink,
                &mut policy,
                opts,
                processed,
                false,
                true,
            )
            .await?;
        }
        conn.finish_copy_both(server_end).await?;
        Ok(())
    }
    .await;
    match closed {
        // Told to stop, and the source went away meanwhile: what was applied is durable
        // on the destination, and the next start resumes from there.
        Err(crate::error::Error::Conn(c)) if end == RunEnd::Signal => {
            tracing::warn!(
                "stopping: the last status update could not be sent ({c}); the next start resumes from the progress kept on the destination"
            );
        }
        other => other?,
    }
    crate::output::metrics::publish_session(session);
    sink.publish_metrics();
    session.accounting().check()?;
    Ok(end)
}

/// Hands one event to the sink, keeping the source informed if that takes long.
async fn handle<S: Sink>(
    conn: &mut Connection,
    session: &Session,
    sink: &mut S,
    policy: &mut FeedbackPolicy,
    opts: &RunOptions,
    event: &Event,
    payload: &Bytes,
) -> Result<()> {
    let received = session.positions().received();
    with_heartbeat(
        conn,
        policy,
        opts,
        received,
        sink.on_event(session, event, payload),
    )
    .await
}

/// Awaits `work` (the sink applying something, or making it durable). Should that take
/// long — a large statement on the destination — status updates with the position already
/// acknowledged keep going out, so the source's `wal_sender_timeout` never fires.
async fn with_heartbeat<T>(
    conn: &mut Connection,
    policy: &mut FeedbackPolicy,
    opts: &RunOptions,
    received: Lsn,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::pin!(work);
    let beat = (opts.status_interval / 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + beat, beat);
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = heartbeat.tick() => {
                let update = policy.build(Instant::now(), received, policy.last_flush(), false);
                send_update(conn, &update).await?;
            }
        }
    }
}

async fn send_update(conn: &mut Connection, update: &StandbyStatusUpdate) -> Result<()> {
    let mut buf =
        bytes::BytesMut::with_capacity(crate::protocol::replication::STANDBY_STATUS_UPDATE_LEN);
    update.write_payload(&mut buf);
    conn.send_feedback(&buf).await?;
    tracing::debug!(write = %update.write, flush = %update.flush, "sent standby status update");
    Ok(())
}

/// The periodic statistics line.
struct Stats {
    at: Instant,
    rows: u64,
}

fn rows_seen(session: &Session) -> u64 {
    use crate::pgoutput::MessageKind;
    let acc = session.accounting();
    [
        MessageKind::Insert,
        MessageKind::Update,
        MessageKind::Delete,
    ]
    .iter()
    .map(|k| acc.kind(*k).count)
    .sum()
}

impl Stats {
    fn new(session: &Session) -> Self {
        Stats {
            at: Instant::now(),
            rows: rows_seen(session),
        }
    }

    fn log(&mut self, session: &Session, now: Instant) {
        let pos = session.positions();
        let rows = rows_seen(session);
        let secs = now.duration_since(self.at).as_secs_f64().max(0.001);
        tracing::info!(
            received = %pos.received(),
            applied = %pos.applied(),
            acknowledged = %pos.acknowledged(),
            lag_bytes = pos.last_keepalive().max(pos.received()).bytes_since(pos.acknowledged()),
            rows_per_second = ((rows - self.rows) as f64 / secs) as u64,
            "stats"
        );
        self.at = now;
        self.rows = rows;
    }
}

fn with_conn_context(e: crate::error::Error, context: &str) -> crate::error::Error {
    match e {
        crate::error::Error::Conn(c) => crate::error::Error::from(c.with_context(context)),
        other => other,
    }
}

/// The position that could be acknowledged once everything processed is durable.
fn prospective_ack(session: &Session, processed: Lsn) -> Lsn {
    let mut p = session.positions().clone();
    let _ = p.on_applied(processed);
    p.acknowledgeable()
}

#[allow(clippy::too_many_arguments)]
async fn send_status<S: Sink>(
    conn: &mut Connection,
    session: &mut Session,
    sink: &mut S,
    policy: &mut FeedbackPolicy,
    opts: &RunOptions,
    processed: Lsn,
    reply_requested: bool,
    wait: bool,
) -> Result<()> {
    let received = session.positions().received();
    let durable = if wait {
        with_heartbeat(conn, policy, opts, received, sink.make_durable(processed)).await?
    } else {
        with_heartbeat(conn, policy, opts, received, sink.durable(processed)).await?
    };
    session.on_applied(durable)?;
    let pos = session.positions();
    let update = policy.build(
        Instant::now(),
        pos.received(),
        pos.acknowledgeable(),
        reply_requested,
    );
    session.positions_mut().on_acknowledged(update.flush)?;
    send_update(conn, &update).await
}
