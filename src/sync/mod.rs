//! `sync`: the stand-in subscription, as a domain module with plain options. One run
//! ([`once`]) connects, checks ([`preflight`], [`schema`]), copies ([`copy`]) and streams
//! into [`crate::apply`]; [`run`] repeats it after transient failures.
//!
//! Transient failures (a connection lost, a server restarting, the slot still held by the
//! walsender of a pgsub that just died, a deadlock on the destination) restart the run
//! after a capped exponential backoff; everything in it is idempotent, and streaming
//! resumes from the progress the destination recorded.

pub mod binary;
pub mod copy;
pub mod once;
pub mod preflight;
pub mod replay;
pub mod schema;

use std::path::PathBuf;
use std::time::Duration;

use crate::apply::conflicts::OnConflict;
use crate::conninfo::Conninfo;
use crate::error::{Error, Result};
use crate::output::Output;
use crate::pgoutput::options::Streaming;
use crate::replicate::run::{RunEnd, Until};
use schema::SchemaMode;

const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Connection failures retried before any run got past connecting (a server that
/// cannot be reached at all is more likely a wrong address than a passing fault).
const FIRST_CONNECT_RETRIES: u32 = 3;

/// The first wait before a retry, and the wait again once a run has streamed.
const MIN_BACKOFF: Duration = Duration::from_millis(250);

/// Walsender failures in a row that are retried before pgsub gives up.
const MAX_STREAM_FAILURES: u32 = 5;

/// Everything a `sync` needs to know.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// The source.
    pub source: Conninfo,
    /// The destination.
    pub dest: Conninfo,
    /// Publications.
    pub publications: Vec<String>,
    /// The slot.
    pub slot: String,
    /// The subscription's name (the key of its progress).
    pub name: String,
    /// Create the slot when it does not exist.
    pub create_slot: bool,
    /// How long to wait for a slot another process holds.
    pub slot_wait: Duration,
    /// What to do about table definitions.
    pub schema: SchemaMode,
    /// `--copy-data` / `--no-copy-data` (default: copy when the slot is created).
    pub copy_data: Option<bool>,
    /// Tables copied at once.
    pub copy_jobs: usize,
    /// Empty destination tables before copying into them.
    pub truncate_before_copy: bool,
    /// Stop there.
    pub until: Option<Until>,
    /// Statistics lines, if any.
    pub stats_interval: Option<Duration>,
    /// Longest time between standby status updates.
    pub status_interval: Duration,
    /// Serve metrics there.
    pub metrics_addr: Option<String>,
    /// Large in-progress transactions.
    pub streaming: Streaming,
    /// Where streamed transactions are kept.
    pub spool_dir: Option<PathBuf>,
    /// What to do about conflicts.
    pub on_conflict: OnConflict,
    /// Copy progress bars (a terminal).
    pub progress_bars: bool,
    /// How often to look for tables that joined the publications (zero: only at start
    /// and at their first change).
    pub refresh_interval: Duration,
    /// The slot is (made) a failover slot (PostgreSQL 17+).
    pub failover: bool,
    /// Two-phase transactions are prepared on the destination (PostgreSQL 15+).
    pub two_phase: bool,
    /// Tables larger than this many MiB are copied in chunks (`--copy-chunk-mb`; 0: never).
    pub copy_chunk_mb: u64,
    /// Column values in binary format (`--binary`).
    pub binary: binary::BinaryMode,
    /// Which changes the source sends by their origin (`none`: only those that did not
    /// come through replication; PostgreSQL 16+).
    pub origin: Option<crate::pgoutput::options::OriginFilter>,
}

/// Runs `sync` until `--until`, a shutdown, or a failure that is not worth retrying.
pub async fn run(
    opts: &SyncOptions,
    out: &Output,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    crate::source::validate_slot_name(&opts.slot)?;
    if opts.publications.is_empty() {
        return Err(Error::Usage(
            "no publication given: pass --publication NAME (several as a comma-separated list)"
                .into(),
        ));
    }
    if let Some(addr) = &opts.metrics_addr {
        crate::output::metrics::serve(addr).await?;
        if let Some(r) = crate::output::metrics::registry() {
            r.add(&crate::output::metrics::RECONNECTS_TOTAL, &[], 0.0);
        }
    }
    // A pgsub killed while it held streamed transactions left their files behind.
    let spool_parent = opts.spool_dir.clone().unwrap_or_else(std::env::temp_dir);
    crate::apply::spool::remove_leftovers(&spool_parent);
    let mut shutdown = shutdown;
    let mut backoff = MIN_BACKOFF;
    // A run got past connecting: the servers were reachable, and will probably be again.
    let mut reached = false;
    // Connection failures before that: a connection cut during the very first handshake
    // is retried a few times, an address that never answers is reported.
    let mut first_failures = 0u32;
    // The walsender failing while streaming is retried (a fresh one may decode what it
    // could not), but not forever when it keeps failing the same way.
    let mut stream_failures = 0u32;
    let mut carry = once::Carry::default();
    loop {
        let started = std::time::Instant::now();
        let streaming = carry.streaming.clone();
        let result = tokio::select! {
            r = once::run(opts, out, shutdown.clone(), &mut carry) => r,
            () = stopped_before_streaming(shutdown.clone(), streaming) => {
                // Connecting, checking, waiting for the slot or copying: all of it is done
                // again by the next start (a copy is committed with its table's mark or
                // not at all), so stopping here loses nothing.
                tracing::info!("stopped by a signal before streaming began");
                return Ok(());
            }
        };
        if let Err(Error::BinaryRefused { column, why }) = &result
            && opts.binary == binary::BinaryMode::Auto
            && !carry.text_only
        {
            // Not a failure either: nothing of the transaction that met it was committed,
            // and the next run streams text from the stored progress.
            tracing::info!(%column, "column {column} cannot be applied in binary ({why}): starting again with values in text");
            carry.text_only = true;
            continue;
        }
        if let Err(Error::PublicationChanged(relation)) = &result {
            // Not a failure: the next run copies the table, then streams on.
            tracing::info!(table = %relation, "a table joined the publications: starting again to copy it");
            carry.refreshed.insert(relation.clone());
            continue;
        }
        if carry.streaming.load(std::sync::atomic::Ordering::Relaxed) {
            // Streaming had resumed: this failure is news, not a repeat.
            backoff = MIN_BACKOFF;
        }
        if started.elapsed() > MAX_BACKOFF {
            stream_failures = 0;
        }
        if matches!(&result, Err(e) if e.is_destination_lost()) {
            carry.limits = carry.limits.shrunk();
            tracing::debug!(limits = ?carry.limits, "the destination connection was lost with a group open: smaller groups for now");
        } else {
            carry.limits = carry.limits.grown();
        }
        if let Err(Error::Conn(c)) = &result
            && matches!(**c, crate::conn::ConnError::StreamFailed { .. })
        {
            stream_failures += 1;
            if stream_failures > MAX_STREAM_FAILURES {
                return result.map(|_| ());
            }
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
            // Connecting failing before any run got past it is a setup problem to report,
            // unless the server answered that it is starting, stopping or full, or the
            // connection was cut (retried a few times).
            Err(e)
                if reached
                    || !e.is_connecting()
                    || e.is_server_busy()
                    || (first_failures < FIRST_CONNECT_RETRIES
                        && e.is_retryable_once_started()) =>
            {
                if e.is_connecting() && !reached {
                    first_failures += 1;
                } else {
                    reached = true;
                }
                if !e.is_retryable_once_started() {
                    return Err(e);
                }
                if *shutdown.borrow() {
                    // Told to stop, and the run met a transient failure on the way out (a
                    // connection lost while it finished what it was applying): what was
                    // committed is on the destination with its progress, what was not is
                    // sent again, so the stop asked for is what happened.
                    tracing::warn!(
                        "stopping as asked: {e}\n(met while stopping; progress is kept on the destination, so the next start resumes and nothing is lost or applied twice)"
                    );
                    return Ok(());
                }
                tracing::warn!(
                    "{e}\n(transient: retrying in {:.2} s; progress is kept on the destination, so nothing is lost or applied twice)",
                    backoff.as_secs_f64()
                );
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                if let Some(r) = crate::output::metrics::registry() {
                    r.add(&crate::output::metrics::RECONNECTS_TOTAL, &[], 1.0);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Returns once a shutdown is asked for while the run has not begun streaming (once it
/// streams, the run stops itself cleanly: it commits or rolls back what is in flight and
/// tells the source).
async fn stopped_before_streaming(
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    streaming: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    loop {
        if *shutdown.borrow_and_update() && !streaming.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        if shutdown.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
