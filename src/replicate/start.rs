//! The start of every streaming command, written once: the slot name checked, the
//! replication connection made, the server and the publications checked, the pgoutput
//! options negotiated, the system identified, and — once the caller has what it needs
//! (a slot, an initial copy) — `START_REPLICATION` issued and the `--until` target fixed.

use std::time::Duration;

use super::run::{RunOptions, Until};
use crate::conn::Connection;
use crate::conn::replication::IdentifySystem;
use crate::conninfo::Conninfo;
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::pg::sqlstate;
use crate::pgoutput::options::{RequestedOptions, StreamOptions};
use crate::source;
use crate::stream::Session;

/// A replication connection checked and ready to stream: the server may replicate, the
/// publications exist, the options are negotiated for its version.
pub struct Prepared {
    /// The connection (not yet streaming: plain SQL and replication commands work).
    pub conn: Connection,
    /// The options `START_REPLICATION` will ask for.
    pub options: StreamOptions,
    /// `IDENTIFY_SYSTEM`'s answer.
    pub identify: IdentifySystem,
}

/// A connection in CopyBoth mode, streaming.
pub struct Started {
    /// The connection.
    pub conn: Connection,
    /// The session decoding the stream, its floor at the position streaming resumes from.
    pub session: Session,
    /// `IDENTIFY_SYSTEM`'s answer.
    pub identify: IdentifySystem,
    /// The options asked for.
    pub options: StreamOptions,
    /// The position the session's floor is at.
    pub start: Lsn,
    /// Where the run stops by itself, and how it acknowledges.
    pub run: RunOptions,
}

/// Connects to `info` for replication and checks everything a stream from `slot` of
/// `publications` needs.
pub async fn connect(
    info: &Conninfo,
    slot: &str,
    requested: &RequestedOptions,
) -> Result<Prepared> {
    source::validate_slot_name(slot)?;
    let mut conn = source::connect(info, true).await?;
    source::check_server(&mut conn).await?;
    let options = StreamOptions::negotiate(conn.server_version_num(), requested)
        .map_err(|e| Error::Config(e.to_string()))?;
    source::check_publications(&mut conn, &requested.publication_names).await?;
    let identify = conn.identify_system().await?;
    Ok(Prepared {
        conn,
        options,
        identify,
    })
}

/// How a stream starts.
#[derive(Debug, Clone)]
pub struct StartAt {
    /// The slot.
    pub slot: String,
    /// Asked of `START_REPLICATION`: the server starts at the later of this and the
    /// slot's confirmed position (0/0: the slot's).
    pub requested: Lsn,
    /// The session's floor: nothing below it is ever acknowledged.
    pub floor: Lsn,
    /// `--until`: `caught-up` is the source's WAL position now.
    pub until: Option<Until>,
    /// Acknowledge what the sink made durable (`decode --no-ack` does not).
    pub acknowledge: bool,
    /// Longest time between standby status updates.
    pub status_interval: Duration,
    /// Seconds between statistics lines, if any.
    pub stats_interval: Option<Duration>,
}

impl Prepared {
    /// Issues `START_REPLICATION`: the connection is streaming from here.
    pub async fn start(mut self, at: &StartAt) -> Result<Started> {
        let target = match at.until {
            Some(Until::CaughtUp) => Some(self.conn.identify_system().await?.xlogpos),
            Some(Until::Lsn(l)) => Some(l),
            None => None,
        };
        self.conn
            .start_replication(&at.slot, at.requested, &self.options)
            .await
            .map_err(|e| match e.code() {
                Some(sqlstate::OBJECT_IN_USE) => Error::Config(format!(
                    "replication slot \"{}\" became active in another process just as pgsub started: {}",
                    at.slot,
                    e.server_error().map(|s| s.message.clone()).unwrap_or_default()
                )),
                _ => Error::from(e),
            })?;
        tracing::info!(
            slot = %at.slot,
            start = %at.floor,
            target = %target.map_or_else(|| "none".to_owned(), |t| t.to_string()),
            options = %self.options.to_sql(),
            "streaming"
        );
        Ok(Started {
            conn: self.conn,
            session: Session::new(at.floor),
            identify: self.identify,
            options: self.options,
            start: at.floor,
            run: RunOptions {
                target,
                acknowledge: at.acknowledge,
                status_interval: at.status_interval.max(Duration::from_secs(1)),
                progress_gap: crate::stream::feedback::DEFAULT_PROGRESS_GAP,
                stats_interval: at.stats_interval,
                slot: at.slot.clone(),
            },
        })
    }
}

impl Started {
    /// Streams into `sink` until the target, a shutdown or the server's end, then closes
    /// the connection.
    pub async fn stream_into<S: super::run::Sink>(
        &mut self,
        sink: &mut S,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<super::run::RunEnd> {
        let end =
            super::run::run(&mut self.conn, &mut self.session, sink, &self.run, shutdown).await?;
        self.conn.close_in_place().await;
        Ok(end)
    }
}
