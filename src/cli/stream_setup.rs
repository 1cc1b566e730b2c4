//! The start of every streaming command: resolve the source, connect for replication,
//! check server, publications and slot, identify the system, negotiate the pgoutput
//! options and issue `START_REPLICATION`.

use std::time::Duration;

use super::args::{StreamArgs, Toggle};
use crate::conn::Connection;
use crate::conn::replication::IdentifySystem;
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::pgoutput::options::{RequestedOptions, StreamOptions};
use crate::source::run::{self, RunEnd, RunOptions, Sink, Until};
use crate::source::slots::SlotInfo;
use crate::source::{self, SlotRequest};
use crate::stream::Session;

/// A source connection in CopyBoth mode, ready to stream.
pub(crate) struct Started {
    pub conn: Connection,
    pub session: Session,
    pub identify: IdentifySystem,
    pub slot: SlotInfo,
    pub options: StreamOptions,
    pub start: Lsn,
    pub run: RunOptions,
}

impl Started {
    /// Streams into `sink` until the `--until` target, a signal or the server's end, then
    /// closes the connection.
    pub(crate) async fn stream_into<S: Sink>(&mut self, sink: &mut S) -> Result<RunEnd> {
        let end = run::run(
            &mut self.conn,
            &mut self.session,
            sink,
            &self.run,
            super::shutdown_signal(),
        )
        .await?;
        self.conn.close_in_place().await;
        Ok(end)
    }
}

pub(crate) fn requested_options(args: &StreamArgs) -> RequestedOptions {
    RequestedOptions {
        publication_names: args.publications.clone(),
        binary: match args.binary {
            Toggle::Auto => None,
            Toggle::On => Some(true),
            Toggle::Off => Some(false),
        },
        messages: if args.no_messages { Some(false) } else { None },
        streaming: Some(args.streaming),
        two_phase: args.two_phase.then_some(true),
        origin: args.origin,
        proto_version: args.proto_version,
    }
}

pub(crate) async fn start(args: &StreamArgs) -> Result<Started> {
    source::validate_slot_name(&args.slot)?;
    let info = super::resolve_source(args.source.conninfo.as_deref())?;
    let mut conn = source::connect(&info, true).await?;
    source::check_server(&mut conn).await?;
    let options = StreamOptions::negotiate(conn.server_version_num(), &requested_options(args))
        .map_err(|e| Error::Config(e.to_string()))?;
    source::check_publications(&mut conn, &args.publications).await?;
    let slot = source::prepare_slot(
        &mut conn,
        &SlotRequest {
            name: args.slot.clone(),
            create: args.create_slot,
            two_phase: args.two_phase,
            wait: Duration::from_secs(args.slot_wait),
        },
    )
    .await?;
    let identify = conn.identify_system().await?;
    let start = slot.confirmed_flush_lsn.unwrap_or_default();
    let target = match args.until {
        Some(Until::CaughtUp) => Some(identify.xlogpos),
        Some(Until::Lsn(l)) => Some(l),
        None => None,
    };
    // 0/0 asks the server to start at the slot's confirmed position; the session's floor
    // is that same position, so nothing below it is ever reported.
    conn.start_replication(&args.slot, Lsn::ZERO, &options)
        .await
        .map_err(|e| match e.code() {
            Some(crate::conn::error::sqlstate::OBJECT_IN_USE) => Error::Config(format!(
                "replication slot \"{}\" became active in another process just as pgsub started: {}",
                args.slot,
                e.server_error().map(|s| s.message.clone()).unwrap_or_default()
            )),
            _ => Error::from(e),
        })?;
    tracing::info!(
        slot = %args.slot,
        start = %start,
        target = %target.map_or_else(|| "none".to_owned(), |t| t.to_string()),
        options = %options.to_sql(),
        "streaming"
    );
    Ok(Started {
        conn,
        session: Session::new(start),
        identify,
        slot,
        options,
        start,
        run: RunOptions {
            target,
            acknowledge: !args.no_ack,
            status_interval: Duration::from_secs(args.status_interval.max(1)),
            progress_gap: crate::stream::feedback::DEFAULT_PROGRESS_GAP,
            stats_interval: None,
            slot: args.slot.clone(),
        },
    })
}
