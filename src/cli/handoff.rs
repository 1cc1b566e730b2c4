//! `pgsub handoff`: from a native subscription to pgsub and back (see [`crate::handoff`]).

use std::io::Write;

use serde_json::json;

use super::args::{Cli, Format, HandoffArgs};
use crate::error::{Error, Result};
use crate::handoff::{self, PgsubPosition, Steps, ToPgsubOptions};
use crate::source::{self, slots};

pub(crate) async fn run(cli: &Cli, args: &HandoffArgs) -> Result<()> {
    let src = super::resolve_source(args.source.conninfo.as_deref())?;
    let dst = super::resolve_dest(args.dest.conninfo.as_deref())?;
    let client = crate::pg::client::connect_client(&dst, "destination").await?;
    let mut conn = source::connect(&src, true).await?;
    let mut steps = Steps::new(&client, args.dry_run);
    let mut report =
        json!({"kind": "handoff", "subscription": args.subscription, "dry_run": args.dry_run});
    let next;
    if args.to_pgsub {
        let system_id = conn.identify_system().await?.systemid;
        let done = handoff::to_pgsub(
            &mut steps,
            &mut conn,
            &ToPgsubOptions {
                subscription: &args.subscription,
                name: args.name.as_deref(),
                source_system_id: &system_id,
                writes_paused: args.writes_paused,
            },
        )
        .await;
        conn.close().await;
        let done = done?;
        let name = if done.name == done.slot {
            String::new()
        } else {
            format!(" --name {}", done.name)
        };
        next = format!(
            "next: pgsub sync --source … --dest … --publication {} --slot {}{name}",
            done.publications.join(","),
            done.slot
        );
        report["direction"] = json!("to_pgsub");
        report["slot"] = json!(done.slot);
        report["name"] = json!(done.name);
        report["applied_lsn"] = json!(done.applied);
        report["position_from"] = json!(done.from);
    } else {
        let name = args
            .name
            .clone()
            .or_else(|| args.slot.clone())
            .unwrap_or_else(|| "pgsub".to_owned());
        let (applied, slot, publications) = handoff::pgsub_position(&client, &name).await?;
        if args.slot.as_ref().is_some_and(|s| *s != slot) {
            return Err(Error::Config(format!(
                "pgsub's progress \"{name}\" is for slot \"{slot}\", not \"{}\"",
                args.slot.as_deref().unwrap_or_default()
            )));
        }
        let Some(info) = slots::find(&mut conn, &slot).await? else {
            return Err(Error::Config(format!(
                "pgsub's slot \"{slot}\" does not exist on the source: there is no stream to hand over"
            )));
        };
        if info.active {
            return Err(Error::Config(format!(
                "slot \"{slot}\" is in use by the process with PID {}: stop pgsub sync first (SIGTERM finishes cleanly), then hand off",
                info.active_pid.unwrap_or(0)
            )));
        }
        conn.close().await;
        let from = PgsubPosition {
            name,
            slot: slot.clone(),
            publications,
            applied,
            confirmed: info.confirmed_flush_lsn,
        };
        handoff::to_native(
            &mut steps,
            &args.subscription,
            &from,
            args.subscription_conninfo.as_deref(),
            &args.publications,
        )
        .await?;
        next = format!(
            "the subscription \"{}\" streams slot \"{slot}\" from {applied}; `pgsub status --dest …` shows its progress",
            args.subscription
        );
        report["direction"] = json!("to_native");
        report["slot"] = json!(slot);
        report["applied_lsn"] = json!(applied);
    }
    let mut out = std::io::stdout().lock();
    let written = match cli.format {
        Format::Json => {
            report["statements"] = json!(steps.said);
            writeln!(out, "{report}")
        }
        Format::Text => {
            let head = if args.dry_run {
                "-- dry run: nothing was changed; these are the statements a hand-off runs on the destination"
            } else {
                "-- done on the destination:"
            };
            writeln!(out, "{head}")
                .and_then(|()| steps.said.iter().try_for_each(|l| writeln!(out, "{l}")))
                .and_then(|()| {
                    if args.dry_run {
                        Ok(())
                    } else {
                        writeln!(out, "{next}")
                    }
                })
        }
    };
    written.map_err(|e| Error::io("writing to stdout", e))
}
