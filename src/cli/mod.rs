//! The `pgsub` commands, built on the library layers. Data (decoded lines, reports) goes
//! to stdout; logs and errors go to stderr.

pub mod args;
mod bench;
mod decode;
mod demo;
mod drop;
mod generate;
mod handoff;
mod record;
mod sequences;
mod slot;
mod status;
mod sync;
mod sync_args;
mod verify;

use tokio::sync::watch;

pub use args::Cli;
use args::{BenchCommand, Command, SlotCommand};

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
        Command::Bench(BenchCommand::Decode(a)) => bench::decode(&cli, a).await,
        Command::Bench(BenchCommand::Apply(a)) => bench::apply(&cli, a).await,
        Command::Completions(a) => generate::completions(a),
        Command::Man(a) => generate::man(a),
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

/// `START_REPLICATION` for `decode` and `record`: the one start-up path, with the slot
/// checked (or created with `--create-slot`) and streaming from its confirmed position.
pub(crate) async fn start_stream(
    args: &args::StreamArgs,
) -> Result<crate::replicate::start::Started> {
    use std::time::Duration;
    let info = resolve_source(args.source.conninfo.as_deref())?;
    let requested = crate::pgoutput::options::RequestedOptions {
        publication_names: args.publications.clone(),
        binary: match args.binary {
            args::Toggle::Auto => None,
            args::Toggle::On => Some(true),
            args::Toggle::Off => Some(false),
        },
        messages: if args.no_messages { Some(false) } else { None },
        streaming: Some(args.streaming.into()),
        two_phase: args.two_phase.then_some(true),
        origin: args.origin.map(Into::into),
        proto_version: args.proto_version,
    };
    let mut prepared = crate::replicate::start::connect(&info, &args.slot, &requested).await?;
    let slot = crate::source::prepare_slot(
        &mut prepared.conn,
        &crate::source::SlotRequest {
            name: args.slot.clone(),
            create: args.create_slot,
            features: crate::conn::replication::SlotFeatures {
                two_phase: args.two_phase,
                failover: false,
            },
            wait: Duration::from_secs(args.slot_wait),
        },
    )
    .await?;
    let confirmed = slot.confirmed_flush_lsn.unwrap_or_default();
    // 0/0 asks the server to start at the slot's confirmed position; the session's floor
    // is that same position, so nothing below it is ever reported.
    prepared
        .start(&crate::replicate::start::StartAt {
            slot: args.slot.clone(),
            requested: crate::lsn::Lsn::ZERO,
            floor: confirmed,
            until: args.until,
            acknowledge: !args.no_ack,
            status_interval: Duration::from_secs(args.status_interval),
            stats_interval: None,
        })
        .await
}

/// How `cli` asks reports to be written.
pub(crate) fn output(cli: &Cli) -> crate::output::Output {
    crate::output::Output {
        format: match cli.format {
            args::Format::Text => crate::output::Format::Text,
            args::Format::Json => crate::output::Format::Json,
        },
        log_json: cli.log_format == args::Format::Json,
        quiet: cli.quiet > 0,
    }
}

/// Progress bars: when stderr is a terminal, and neither `-q` nor JSON logs say otherwise.
pub(crate) fn progress_bars(out: &crate::output::Output) -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && !out.quiet && !out.log_json
}

/// A channel that turns true on SIGINT or SIGTERM.
///
/// The handlers are installed before this returns (not in the task that waits on them), so
/// a signal that arrives once the command has begun is never the default action's
/// immediate exit.
pub(crate) fn shutdown_signal() -> watch::Receiver<bool> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = watch::channel(false);
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!(
            "could not install the SIGINT/SIGTERM handlers: a signal stops pgsub at once"
        );
        // The sender lives on, so that the receiver never reads as closed.
        tokio::spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        return rx;
    };
    tokio::spawn(async move {
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
