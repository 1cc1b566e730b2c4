//! `pgsub sync`: parses its options and calls [`crate::sync::run`], or, with `--input`,
//! [`crate::sync::replay::run`].

use std::time::Duration;

use super::args::{Cli, SyncArgs};
use crate::error::Result;
use crate::sync::SyncOptions;
use crate::sync::replay::ReplayOptions;

pub(crate) async fn run(cli: &Cli, args: &SyncArgs) -> Result<()> {
    let out = super::output(cli);
    if let Some(input) = &args.input {
        let opts = ReplayOptions {
            input: input.clone(),
            dest: super::resolve_dest(args.dest.conninfo.as_deref())?,
            name: args.name.clone(),
            until: args.until,
            spool_dir: args.spool_dir.clone(),
            on_conflict: args.on_conflict.into(),
            scratch: false,
        };
        return crate::sync::replay::run(&opts, &out, super::shutdown_signal()).await;
    }
    let opts = SyncOptions {
        source: super::resolve_source(args.source.conninfo.as_deref())?,
        dest: super::resolve_dest(args.dest.conninfo.as_deref())?,
        publications: args.publications.clone(),
        slot: args.slot.clone(),
        name: args.name.clone().unwrap_or_else(|| args.slot.clone()),
        create_slot: args.create_slot,
        slot_wait: Duration::from_secs(args.slot_wait),
        schema: args.schema.into(),
        copy_data: args.copy_data(),
        copy_jobs: args.copy_jobs,
        truncate_before_copy: args.truncate_before_copy,
        until: args.until,
        stats_interval: (args.stats_interval > 0).then(|| Duration::from_secs(args.stats_interval)),
        status_interval: Duration::from_secs(args.status_interval),
        metrics_addr: args.metrics_addr.clone(),
        streaming: args.streaming.into(),
        spool_dir: args.spool_dir.clone(),
        on_conflict: args.on_conflict.into(),
        refresh_interval: Duration::from_secs(args.refresh_interval),
        failover: args.failover,
        two_phase: args.two_phase,
        binary: args.binary.into(),
        copy_chunk_mb: args.copy_chunk_mb,
        origin: args.origin.map(Into::into),
        progress_bars: super::progress_bars(&out),
    };
    crate::sync::run(&opts, &out, super::shutdown_signal()).await
}
