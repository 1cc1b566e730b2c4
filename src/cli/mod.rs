//! The `pgsub` commands, built on the library layers. Data (decoded lines, reports) goes
//! to stdout; logs and errors go to stderr.

pub mod args;
mod decode;
mod demo;
mod drop;
mod handoff;
mod record;
mod sequences;
mod slot;
mod status;
mod stream_setup;
mod summary;
mod sync;
mod verify;

use tokio::sync::watch;

pub use args::Cli;
use args::{Command, SlotCommand};

use crate::conninfo::Conninfo;
use crate::error::{Error, Result};

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Decode(a) => decode::run(&cli, a).await,
        Command::Record(a) => record::run(&cli, a).await,
        Command::Sync(a) => sync::run(&cli, a).await,
        Command::Demo(a) => demo::run(&cli, a).await,
        Command::Verify(a) => verify::run(&cli, a).await,
        Command::Drop(a) => drop::run(&cli, a).await,
        Command::Status(a) => status::run(&cli, a).await,
        Command::Sequences(a) => sequences::run(&cli, a).await,
        Command::Handoff(a) => handoff::run(&cli, a).await,
        Command::Slot(SlotCommand::Create(a)) => slot::create(&cli, a).await,
        Command::Slot(SlotCommand::Drop(a)) => slot::drop(&cli, a).await,
        Command::Slot(SlotCommand::List(a)) => slot::list(&cli, a).await,
    }
}

/// Resolves `--source`: the connection string, the PG* variables, ~/.pgpass.
pub(crate) fn resolve_source(source: Option<&str>) -> Result<Conninfo> {
    let raw = source.ok_or_else(|| {
        Error::Usage(
            "no source given: pass --source CONNINFO (or set PGSUB_SOURCE), e.g. --source 'host=db1 dbname=app user=repl'".into(),
        )
    })?;
    Conninfo::resolve(raw).map_err(|e| Error::Usage(format!("--source: {e}")))
}

/// Resolves `--dest`.
pub(crate) fn resolve_dest(dest: Option<&str>) -> Result<Conninfo> {
    let raw = dest.ok_or_else(|| {
        Error::Usage(
            "no destination given: pass --dest CONNINFO (or set PGSUB_DEST), e.g. --dest 'postgres://avnadmin@dest:5432/defaultdb?sslmode=require'".into(),
        )
    })?;
    Conninfo::resolve(raw).map_err(|e| Error::Usage(format!("--dest: {e}")))
}

/// Writes a report meant for people to stderr; under `--log-format json` it becomes one
/// JSON log line, so that stderr stays machine-readable.
pub(crate) fn say(cli: &Cli, text: &str) {
    if cli.log_format == args::Format::Json {
        tracing::info!(report = text.trim_end(), "report");
    } else {
        eprint!(
            "{}",
            if text.ends_with('\n') {
                text.to_owned()
            } else {
                format!("{text}\n")
            }
        );
    }
}

/// A channel that turns true on SIGINT or SIGTERM.
pub(crate) fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        tracing::info!("signal received: finishing and sending a last status update");
        let _ = tx.send(true);
        // Keep the sender alive so the receiver does not see a closed channel.
        std::future::pending::<()>().await;
    });
    rx
}
