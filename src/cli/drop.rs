//! `pgsub drop`: removes what pgsub made for one subscription — its slot on the source
//! (and with it the WAL the slot retains), and its progress, table-copy and conflict rows
//! and its replication origin on the destination. The replicated tables are left alone.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;

use super::args::{Cli, DropArgs, Format};
use crate::error::{Error, Result};
use crate::source::{self, slots};

/// How long a terminated walsender gets to release the slot.
const RELEASE_WAIT: Duration = Duration::from_secs(30);

pub(crate) async fn run(cli: &Cli, args: &DropArgs) -> Result<()> {
    source::validate_slot_name(&args.slot)?;
    let name = args.name.clone().unwrap_or_else(|| args.slot.clone());
    let src = super::resolve_source(args.source.conninfo.as_deref())?;
    let dst = match args.dest.conninfo.as_deref() {
        Some(d) => Some(super::resolve_dest(Some(d))?),
        None => None,
    };
    let mut said = Vec::new();
    let mut report = json!({"kind": "drop", "slot": args.slot, "name": name});

    let mut conn = source::connect(&src, true).await?;
    match slots::find(&mut conn, &args.slot).await? {
        None => said.push(format!(
            "no replication slot \"{}\" on the source: nothing to drop there",
            args.slot
        )),
        Some(slot) => {
            if slot.active {
                let pid = slot.active_pid.unwrap_or(0);
                if !args.force {
                    return Err(Error::Config(format!(
                        "replication slot \"{}\" is in use by the process with PID {pid} (a running pgsub sync or subscription?); stop it first, or pass --force to terminate it and drop the slot",
                        args.slot
                    )));
                }
                conn.simple_query(&format!("SELECT pg_catalog.pg_terminate_backend({pid})"))
                    .await
                    .map_err(|e| e.with_context(format!("terminating the process {pid} that holds the slot (the role needs to be a member of the role that runs it, or pg_signal_backend)")))?;
                said.push(format!(
                    "terminated the process {pid} streaming from the slot"
                ));
                let deadline = Instant::now() + RELEASE_WAIT;
                while slots::find(&mut conn, &args.slot)
                    .await?
                    .is_some_and(|s| s.active)
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            conn.drop_replication_slot(&args.slot, true).await?;
            said.push(format!(
                "dropped replication slot \"{}\" on the source{}",
                args.slot,
                slot.retained_bytes
                    .map(|b| format!(", releasing the {b} bytes of WAL it retained"))
                    .unwrap_or_default()
            ));
            report["slot_dropped"] = json!(true);
            report["retained_bytes_released"] = json!(slot.retained_bytes);
        }
    }
    conn.close().await;

    if let Some(dst) = dst {
        let client = crate::pg::client::connect_client(&dst, "destination").await?;
        match crate::state::remove(&client, &name).await? {
            Some(removed) => {
                match &removed.applied_lsn {
                    Some(lsn) => said.push(format!(
                        "removed the progress of \"{name}\" from pgsub.progress (it had applied up to {lsn})"
                    )),
                    None => said.push(format!("no progress of \"{name}\" in pgsub.progress")),
                }
                said.push(format!(
                    "removed {} row(s) of \"{name}\" from pgsub.tables and {} from pgsub.conflicts",
                    removed.tables, removed.conflicts
                ));
                report["progress_removed"] = json!(removed.applied_lsn.is_some());
                report["table_rows_removed"] = json!(removed.tables);
                report["conflict_rows_removed"] = json!(removed.conflicts);
            }
            None => said.push("no pgsub schema on the destination: no progress to remove".into()),
        }
        let origin = crate::dest::origin::drop(&client, &name).await?;
        said.push(match origin {
            crate::dest::origin::Dropped::Yes => format!(
                "dropped the replication origin of \"{name}\" on the destination (it held one of max_replication_slots' origin states)"
            ),
            crate::dest::origin::Dropped::NotThere => {
                format!("no replication origin of \"{name}\" on the destination")
            }
            crate::dest::origin::Dropped::NotPermitted => format!(
                "the replication origin of \"{name}\" was left on the destination: the role may not drop it (a superuser may, with pg_replication_origin_drop)"
            ),
            crate::dest::origin::Dropped::InUse => format!(
                "the replication origin of \"{name}\" was left on the destination: a running pgsub holds it; stop it and run drop again"
            ),
        });
        report["origin_dropped"] = json!(origin == crate::dest::origin::Dropped::Yes);
    } else {
        said.push("no --dest given: the destination's pgsub.progress and pgsub.tables rows were left alone".into());
    }

    let mut out = std::io::stdout().lock();
    let written = match cli.format {
        Format::Json => {
            report["said"] = json!(said);
            writeln!(out, "{report}")
        }
        Format::Text => said.iter().try_for_each(|l| writeln!(out, "{l}")),
    };
    written.map_err(|e| Error::io("writing to stdout", e))
}
