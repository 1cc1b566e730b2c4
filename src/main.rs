//! The `pgsub` binary: parses the command line, sets up logging on stderr, runs the
//! command and turns its error into a message and an exit code (`docs/design.md` § Command line).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use pgsub::cli::Cli;
use pgsub::cli::args::Format;

fn init_logging(cli: &Cli) {
    let level = match (cli.verbose, cli.quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v >= 2 => "trace",
        (_, 1) => "warn",
        _ => "error",
    };
    let filter = EnvFilter::try_from_env("PGSUB_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("pgsub={level},warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    match cli.log_format {
        Format::Json => builder.json().init(),
        Format::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let cli_log_json = cli.log_format == Format::Json;
    // One thread: the work is one stream, and a second worker only adds cross-thread
    // wake-ups, which on a small machine take CPU from the source's walsender.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgsub: error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(pgsub::cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if cli_log_json {
                tracing::error!(exit_code = e.exit_code(), "{e}");
            } else {
                eprintln!("pgsub: error: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
