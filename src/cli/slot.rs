//! `pgsub slot create|drop|list`.

use std::io::Write;

use serde_json::json;

use super::args::{Cli, Format, SlotCreateArgs, SlotDropArgs, SlotListArgs};
use crate::conn::replication::{SlotFeatures, SnapshotAction};
use crate::error::{Error, Result};
use crate::source::{self, slots};

fn print_json(v: serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{v}").map_err(|e| Error::io("writing to stdout", e))
}

pub(crate) async fn create(cli: &Cli, args: &SlotCreateArgs) -> Result<()> {
    source::validate_slot_name(&args.slot)?;
    let info = super::resolve_source(args.source.conninfo.as_deref())?;
    let mut conn = source::connect(&info, true).await?;
    source::check_server(&mut conn).await?;
    if let Some(existing) = slots::find(&mut conn, &args.slot).await? {
        return Err(Error::Config(format!(
            "replication slot \"{}\" already exists on the source ({} slot, plugin {}, confirmed up to {}); use it, or drop it first with `pgsub slot drop --slot {}`",
            args.slot,
            existing.slot_type,
            existing.plugin.as_deref().unwrap_or("none"),
            existing
                .confirmed_flush_lsn
                .map_or_else(|| "nothing".to_owned(), |l| l.to_string()),
            args.slot
        )));
    }
    if args.two_phase && conn.server_version_num() < 150000 {
        return Err(Error::Config(
            "--two-phase needs PostgreSQL 15 or newer on the source".into(),
        ));
    }
    crate::source::check_failover(&conn, args.failover)?;
    let created = conn
        .create_replication_slot(
            &args.slot,
            false,
            SnapshotAction::Nothing,
            SlotFeatures {
                two_phase: args.two_phase,
                failover: args.failover,
            },
        )
        .await?;
    conn.close().await;
    match cli.format {
        Format::Json => print_json(json!({
            "slot_name": created.slot_name,
            "consistent_point": created.consistent_point,
            "output_plugin": created.output_plugin,
            "two_phase": args.two_phase,
            "failover": args.failover,
        })),
        Format::Text => {
            println!(
                "created logical replication slot \"{}\" (pgoutput) at consistent point {}",
                created.slot_name, created.consistent_point
            );
            println!(
                "note: the slot retains WAL on the source until a client confirms it; drop it with `pgsub slot drop --slot {}` when no longer needed",
                created.slot_name
            );
            Ok(())
        }
    }
}

pub(crate) async fn drop(cli: &Cli, args: &SlotDropArgs) -> Result<()> {
    source::validate_slot_name(&args.slot)?;
    let info = super::resolve_source(args.source.conninfo.as_deref())?;
    let mut conn = source::connect(&info, true).await?;
    let Some(slot) = slots::find(&mut conn, &args.slot).await? else {
        return Err(Error::Config(format!(
            "replication slot \"{}\" does not exist on the source ({}); `pgsub slot list` shows the slots there",
            args.slot,
            conn.target()
        )));
    };
    if slot.active && !args.wait {
        return Err(Error::Config(format!(
            "replication slot \"{}\" is in use by the process with PID {}; stop that client first, or pass --wait to drop it once it is released",
            args.slot,
            slot.active_pid
                .map_or_else(|| "?".into(), |p| p.to_string())
        )));
    }
    conn.drop_replication_slot(&args.slot, args.wait).await?;
    conn.close().await;
    match cli.format {
        Format::Json => print_json(json!({
            "dropped": args.slot,
            "retained_bytes_released": slot.retained_bytes,
        })),
        Format::Text => {
            println!(
                "dropped replication slot \"{}\"{}",
                args.slot,
                slot.retained_bytes
                    .map(|b| format!(" (it retained {b} bytes of WAL)"))
                    .unwrap_or_default()
            );
            Ok(())
        }
    }
}

pub(crate) async fn list(cli: &Cli, args: &SlotListArgs) -> Result<()> {
    let info = super::resolve_source(args.source.conninfo.as_deref())?;
    let mut conn = source::connect(&info, true).await?;
    let all = slots::list(&mut conn).await?;
    conn.close().await;
    match cli.format {
        Format::Json => {
            for s in &all {
                let mut v =
                    serde_json::to_value(s).map_err(|e| Error::io("encoding JSON", e.into()))?;
                v["warning"] = json!(crate::status::slot_warning(s));
                print_json(v)?;
            }
            Ok(())
        }
        Format::Text => {
            if all.is_empty() {
                println!("no replication slots on {}", conn_target(&info));
                return Ok(());
            }
            println!(
                "{:<24} {:<9} {:<10} {:<12} {:<8} {:<14} {:<14} {:<10} {:<8} {:>14}",
                "slot",
                "type",
                "plugin",
                "database",
                "active",
                "restart_lsn",
                "confirmed",
                "wal_status",
                "failover",
                "retained"
            );
            for s in &all {
                println!(
                    "{:<24} {:<9} {:<10} {:<12} {:<8} {:<14} {:<14} {:<10} {:<8} {:>14}",
                    s.slot_name,
                    s.slot_type,
                    s.plugin.as_deref().unwrap_or("-"),
                    s.database.as_deref().unwrap_or("-"),
                    match (s.active, s.active_pid) {
                        (true, Some(p)) => p.to_string(),
                        (true, None) => "yes".into(),
                        _ => "no".into(),
                    },
                    s.restart_lsn.map_or_else(|| "-".into(), |l| l.to_string()),
                    s.confirmed_flush_lsn
                        .map_or_else(|| "-".into(), |l| l.to_string()),
                    s.wal_status.as_deref().unwrap_or("-"),
                    crate::status::yes_no(s.failover),
                    s.retained_bytes
                        .map_or_else(|| "-".into(), |b| b.to_string()),
                );
            }
            for s in &all {
                if let Some(w) = crate::status::slot_warning(s) {
                    println!("warning: {w}");
                }
            }
            Ok(())
        }
    }
}

fn conn_target(info: &crate::conninfo::Conninfo) -> String {
    info.host_display()
}
