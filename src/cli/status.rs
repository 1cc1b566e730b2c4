//! `pgsub status`: slots, senders and subscriptions with their lag, once or every
//! `--watch` seconds.

use std::fmt::Write as _;
use std::io::Write;
use std::time::Duration;

use super::args::{Cli, Format, StatusArgs};
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::status::{self, Status};

fn lsn(l: Option<Lsn>) -> String {
    l.map_or_else(|| "-".into(), |l| l.to_string())
}

fn bytes(b: Option<u64>) -> String {
    b.map_or_else(|| "-".into(), |b| b.to_string())
}

/// The readable report.
fn text(s: &Status) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "source: {} (PostgreSQL {}), WAL at {}",
        s.source,
        s.source_version,
        lsn(s.source_lsn)
    );
    if s.slots.is_empty() {
        let _ = writeln!(o, "  no logical replication slots");
    } else {
        let _ = writeln!(
            o,
            "  {:<24} {:<10} {:<8} {:<14} {:<14} {:>14} {:>14} {:<10} {:<8} since",
            "slot",
            "plugin",
            "active",
            "confirmed",
            "restart_lsn",
            "lag bytes",
            "retained",
            "wal_status",
            "failover"
        );
        for slot in &s.slots {
            let i = &slot.info;
            let _ = writeln!(
                o,
                "  {:<24} {:<10} {:<8} {:<14} {:<14} {:>14} {:>14} {:<10} {:<8} {}",
                i.slot_name,
                i.plugin.as_deref().unwrap_or("-"),
                match (i.active, i.active_pid) {
                    (true, Some(p)) => p.to_string(),
                    (true, None) => "yes".into(),
                    _ => "no".into(),
                },
                lsn(i.confirmed_flush_lsn),
                lsn(i.restart_lsn),
                bytes(slot.lag_bytes),
                bytes(i.retained_bytes),
                i.wal_status.as_deref().unwrap_or("-"),
                crate::status::yes_no(i.failover),
                slot.since.as_deref().unwrap_or("-"),
            );
        }
    }
    if !s.senders.is_empty() {
        let _ = writeln!(o, "  logical WAL senders:");
        let _ = writeln!(
            o,
            "  {:<24} {:<8} {:<20} {:<10} {:<14} {:<14} {:<14} {:<14} {:>14}",
            "slot",
            "pid",
            "application",
            "state",
            "sent",
            "write",
            "flush",
            "replay",
            "flush lag bytes"
        );
        for x in &s.senders {
            let _ = writeln!(
                o,
                "  {:<24} {:<8} {:<20} {:<10} {:<14} {:<14} {:<14} {:<14} {:>14}",
                x.slot,
                x.pid,
                x.application_name.as_deref().unwrap_or("-"),
                x.state.as_deref().unwrap_or("-"),
                lsn(x.sent_lsn),
                lsn(x.write_lsn),
                lsn(x.flush_lsn),
                lsn(x.replay_lsn),
                bytes(x.flush_lag_bytes),
            );
        }
    }
    if let Some(d) = &s.destination {
        let _ = writeln!(o, "destination: {d}");
        if s.subscriptions.is_empty() {
            let _ = writeln!(o, "  no native subscriptions and no pgsub progress");
        } else {
            let _ = writeln!(
                o,
                "  {:<6} {:<24} {:<24} {:<8} {:<14} {:>14}  connection",
                "kind", "name", "slot", "running", "applied", "lag bytes"
            );
            for x in &s.subscriptions {
                let running = match (x.running, x.enabled) {
                    (true, _) => "yes",
                    (false, Some(false)) => "disabled",
                    _ => "no",
                };
                let lag = if x.other_source {
                    "other source".to_owned()
                } else {
                    bytes(x.lag_bytes)
                };
                let _ = writeln!(
                    o,
                    "  {:<6} {:<24} {:<24} {:<8} {:<14} {:>14}  {}",
                    x.kind,
                    x.name,
                    x.slot.as_deref().unwrap_or("NONE"),
                    running,
                    lsn(x.applied_lsn),
                    lag,
                    x.conninfo.as_deref().unwrap_or("-"),
                );
            }
        }
    }
    if !s.conflicts.is_empty() {
        let _ = writeln!(o, "  conflicts pgsub met:");
        let _ = writeln!(
            o,
            "  {:<24} {:<32} {:<16} {:>8}  last key, last seen",
            "name", "table", "kind", "count"
        );
        for c in &s.conflicts {
            let _ = writeln!(
                o,
                "  {:<24} {:<32} {:<16} {:>8}  {}, {}",
                c.name,
                c.relation,
                c.kind,
                c.count,
                c.last_key.as_deref().unwrap_or("-"),
                c.last_at
            );
        }
    }
    for w in &s.warnings {
        let _ = writeln!(o, "warning: {w}");
    }
    o
}

pub(crate) async fn run(cli: &Cli, args: &StatusArgs) -> Result<()> {
    let src = super::resolve_source(args.source.conninfo.as_deref())?;
    let dst = match args.dest.conninfo.as_deref() {
        Some(d) => Some(super::resolve_dest(Some(d))?),
        None => None,
    };
    let shutdown = super::shutdown_signal();
    loop {
        let s = status::gather(&src, dst.as_ref()).await?;
        let out = match cli.format {
            Format::Json => {
                let mut v = serde_json::to_value(&s).unwrap_or_default();
                v["kind"] = "status".into();
                format!("{v}\n")
            }
            Format::Text => text(&s),
        };
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(out.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|e| Error::io("writing the status to stdout", e))?;
        let Some(every) = args.watch else {
            return Ok(());
        };
        let mut stop = shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(every.max(1))) => {}
            _ = stop.changed() => return Ok(()),
        }
        if cli.format == Format::Text {
            let _ = writeln!(std::io::stdout());
        }
    }
}
