//! `pgsub bench decode|apply`: parses the options and calls [`crate::bench`].

use super::args::{BenchApplyArgs, BenchDecodeArgs, Cli};
use crate::bench::{apply, decode};
use crate::error::Result;
use crate::replicate::run::Until;

fn bars(cli: &Cli) -> bool {
    super::progress_bars(&super::output(cli))
}

pub(crate) async fn decode(cli: &Cli, args: &BenchDecodeArgs) -> Result<()> {
    let report = match &args.input {
        Some(path) => decode::offline(path, bars(cli))?,
        None => {
            let mut stream = args.stream.clone();
            // A bench measures a backlog and leaves the slot where it was.
            stream.until = stream.until.or(Some(Until::CaughtUp));
            stream.no_ack = true;
            let started = super::start_stream(&stream).await?;
            decode::live(started, bars(cli), super::shutdown_signal()).await?
        }
    };
    report.print(&super::output(cli))
}

pub(crate) async fn apply(cli: &Cli, args: &BenchApplyArgs) -> Result<()> {
    let opts = apply::ApplyBench {
        input: args.input.clone(),
        dest: super::resolve_dest(args.dest.conninfo.as_deref())?,
        keep: args.keep,
    };
    apply::run(&opts, super::shutdown_signal())
        .await?
        .print(&super::output(cli))
}
