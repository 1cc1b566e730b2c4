//! `--to-pgsub`: from a native subscription to pgsub, at the position where the
//! subscription stopped — its origin's `remote_lsn`, or after a write pause the slot's
//! confirmed position (see the [module notes](super)).

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::control::{AIVEN_EXTRAS, Control, current_role};
use super::{Steps, find, wait_for_worker_exit};
use crate::conn::Connection;
use crate::dest::subscriptions::{NativeSubscription, origin_status_readable};
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::pg::client::first_value;
use crate::pg::ident::{ident, literal};
use crate::source::slots;
use crate::state::progress;

/// How long the slot gets to confirm what was written before a `--writes-paused`
/// hand-off (a subscription's worker confirms within a second or two when idle).
const CONFIRM_WAIT: Duration = Duration::from_secs(60);

/// What `--to-pgsub` is asked to do.
#[derive(Debug, Clone)]
pub struct ToPgsubOptions<'a> {
    /// The native subscription.
    pub subscription: &'a str,
    /// pgsub's name for the progress (default: the slot's name).
    pub name: Option<&'a str>,
    /// The source's system identifier, recorded with the progress.
    pub source_system_id: &'a str,
    /// Writes to the published tables are paused: the slot's confirmed position may be
    /// taken, once checked, where the origin cannot be read.
    pub writes_paused: bool,
}

/// What `--to-pgsub` hands over.
#[derive(Debug, Clone)]
pub struct ToPgsub {
    /// pgsub's subscription name (its progress row).
    pub name: String,
    /// The slot pgsub streams from.
    pub slot: String,
    /// Publications.
    pub publications: Vec<String>,
    /// Where pgsub continues (`None` in a dry run).
    pub applied: Option<Lsn>,
    /// Where that position was read: `origin` or `slot`.
    pub from: &'static str,
}

/// Where the position the subscription stopped at is read.
#[derive(Debug, Clone, Copy)]
enum Stopped {
    /// Its replication origin `pg_<oid>`.
    Origin(u32),
    /// The slot's confirmed position, after checking that nothing published follows it.
    SlotConfirmed,
}

/// From native subscription `opts.subscription` to pgsub; `source` is a connection to
/// the source as a role with REPLICATION.
pub async fn to_pgsub(
    steps: &mut Steps<'_>,
    source: &mut Connection,
    opts: &ToPgsubOptions<'_>,
) -> Result<ToPgsub> {
    let client = steps.client;
    let sub_name = opts.subscription;
    // Everything that can be checked before a change is checked first.
    let sub = find(client, sub_name).await?;
    let control = Control::of(client, &sub).await?;
    let Some(slot) = sub.slot.clone() else {
        return Err(Error::Config(format!(
            "subscription \"{sub_name}\" has no slot (slot_name = NONE): there is nothing to hand over; if pgsub already has it, run `pgsub sync`"
        )));
    };
    let name = opts.name.unwrap_or(&slot).to_owned();
    let stopped = how_to_find_stop(client, &sub, control, opts.writes_paused).await?;
    check_tables_ready(client, &sub).await?;
    check_progress_free(client, &name, opts.source_system_id, &slot).await?;

    let applied = match stopped {
        Stopped::Origin(oid) => stop_at_origin(steps, &sub, control, oid).await?,
        Stopped::SlotConfirmed => stop_at_confirmed(steps, source, &sub, control, &slot).await?,
    };
    steps.run(&control.detach(sub_name)).await?;
    if control == Control::Extension {
        steps.note(format!(
            "{AIVEN_EXTRAS} offers no other way to detach a subscription from its slot: \"{sub_name}\" is dropped, slot {slot} stays for pgsub"
        ));
    }
    match applied {
        Some(lsn) => {
            crate::state::setup(client).await?;
            if let Some(p) = progress::read(client, &name).await?
                && p.applied_lsn > lsn
            {
                return Err(Error::Config(format!(
                    "pgsub already has progress named \"{name}\" (slot {}, applied up to {}) ahead of where this subscription stopped ({lsn}); nothing was recorded: pass another --name",
                    p.slot, p.applied_lsn
                )));
            }
            progress::record(
                client,
                &name,
                opts.source_system_id,
                &slot,
                &sub.publications,
                lsn,
            )
            .await?;
            steps.note(format!(
                "recorded in pgsub.progress: \"{name}\" on slot {slot}, applied up to {lsn}"
            ));
        }
        None => steps.note(format!(
            "then record that position as pgsub's progress \"{name}\" (slot {slot}, publications {})",
            sub.publications.join(",")
        )),
    }
    Ok(ToPgsub {
        name,
        slot,
        publications: sub.publications,
        applied,
        from: match stopped {
            Stopped::Origin(_) => "origin",
            Stopped::SlotConfirmed => "slot",
        },
    })
}

/// The origin when the role may read it; the slot's confirmed position when writes are
/// paused; otherwise an error that names what is missing and the ways on.
async fn how_to_find_stop(
    client: &Client,
    sub: &NativeSubscription,
    control: Control,
    writes_paused: bool,
) -> Result<Stopped> {
    let readable = origin_status_readable(client).await?;
    if let (Some(oid), true) = (sub.oid, readable) {
        return Ok(Stopped::Origin(oid));
    }
    if writes_paused {
        return Ok(Stopped::SlotConfirmed);
    }
    let why = match (sub.oid, readable) {
        (None, true) => "may not read pg_subscription, whose oid names the origin (pg_<oid>)",
        (Some(_), false) => "may not read pg_replication_origin_status",
        _ => {
            "may read neither pg_subscription (whose oid names the origin) nor pg_replication_origin_status"
        }
    };
    let drop = match control {
        Control::Owner => format!("DROP SUBSCRIPTION {}", ident(&sub.name)),
        Control::Extension => format!(
            "SELECT {AIVEN_EXTRAS}.pg_drop_subscription({}, true)",
            literal(&sub.name)
        ),
    };
    Err(Error::Config(format!(
        "an exact hand-off needs the position where subscription \"{}\" stopped, which its replication origin keeps, and role {} {why}; nothing was changed. Either:\n\
         - pause the writes to the published tables on the source and run this again with --writes-paused: pgsub waits until the slot confirms everything written, disables the subscription, checks that no published change follows the slot's confirmed position, and hands over from there;\n\
         - or drop the subscription with its slot ({drop}) and start `pgsub sync` on a new slot with a fresh copy (--truncate-before-copy empties the destination's tables first);\n\
         - or hand off as a role that may read both (a superuser, or one granted SELECT on pg_subscription and pg_replication_origin_status, and EXECUTE on pg_show_replication_origin_status())",
        sub.name,
        current_role(client).await?
    )))
}

/// No table of the subscription is still in its initial copy: from `pg_subscription_rel`
/// when readable, else from its running table-sync workers.
async fn check_tables_ready(client: &Client, sub: &NativeSubscription) -> Result<()> {
    let readable = first_value(
        client,
        "SELECT pg_catalog.has_table_privilege('pg_catalog.pg_subscription_rel', 'SELECT')",
        "reading pg_subscription_rel",
    )
    .await?
    .as_deref()
        == Some("t");
    let sql = match sub.oid {
        Some(oid) if readable => format!(
            "SELECT count(*) FROM pg_catalog.pg_subscription_rel WHERE srsubid = {oid} AND srsubstate <> 'r'"
        ),
        _ => format!(
            "SELECT count(*) FROM pg_catalog.pg_stat_subscription WHERE subname = {} AND relid IS NOT NULL",
            literal(&sub.name)
        ),
    };
    let syncing: u64 = first_value(client, &sql, "reading the subscription's table states")
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if syncing > 0 {
        return Err(Error::Config(format!(
            "{syncing} table(s) of subscription \"{}\" are still in their initial copy; nothing was changed: hand off once they are all ready (`pgsub status --dest …`)",
            sub.name
        )));
    }
    Ok(())
}

/// pgsub has no progress under `name` that belongs to another source or slot.
async fn check_progress_free(
    client: &Client,
    name: &str,
    system_id: &str,
    slot: &str,
) -> Result<()> {
    match progress::read(client, name).await {
        Ok(Some(p)) if p.source_system_id != system_id || p.slot != slot => {
            Err(Error::Config(format!(
                "pgsub already has progress named \"{name}\" for {} (source system {}); nothing was changed: pass another --name",
                if p.slot == slot {
                    "this slot of another source".to_owned()
                } else {
                    format!("slot {}", p.slot)
                },
                p.source_system_id
            )))
        }
        // No progress yet, or pgsub's tables are not there yet.
        Ok(_) | Err(Error::Sql(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn origin_lsn(client: &Client, oid: u32) -> Result<Option<Lsn>> {
    Ok(first_value(
        client,
        &format!(
            "SELECT remote_lsn::text FROM pg_catalog.pg_replication_origin_status WHERE external_id = 'pg_{oid}'"
        ),
        "reading the subscription's origin (the role needs SELECT on pg_replication_origin_status)",
    )
    .await?
    .and_then(|v| v.parse().ok()))
}

/// Disables the subscription and reads its origin.
async fn stop_at_origin(
    steps: &mut Steps<'_>,
    sub: &NativeSubscription,
    control: Control,
    oid: u32,
) -> Result<Option<Lsn>> {
    let client = steps.client;
    if sub.enabled {
        steps.run(&control.disable(&sub.name)).await?;
    }
    if steps.dry_run {
        steps.note(format!(
            "then wait for its worker to exit and read its origin pg_{oid} (now at {})",
            origin_lsn(client, oid)
                .await?
                .map_or_else(|| "nothing".into(), |l| l.to_string())
        ));
        return Ok(None);
    }
    wait_for_worker_exit(client, &sub.name).await?;
    let Some(lsn) = origin_lsn(client, oid).await? else {
        restore(steps, sub, control).await;
        return Err(Error::Config(format!(
            "subscription \"{}\" has no applied position in its origin pg_{oid}: it never applied anything; it is as it was; start pgsub with a copy instead",
            sub.name
        )));
    };
    steps.note(format!(
        "its worker has exited; origin pg_{oid} applied up to {lsn}"
    ));
    Ok(Some(lsn))
}

/// Waits for the slot to confirm what was written before now, disables the subscription
/// and checks that no published change follows the slot's confirmed position.
async fn stop_at_confirmed(
    steps: &mut Steps<'_>,
    source: &mut Connection,
    sub: &NativeSubscription,
    control: Control,
    slot: &str,
) -> Result<Option<Lsn>> {
    let written = slots::current_wal_lsn(source).await?;
    if steps.dry_run {
        steps.note(format!(
            "first wait until slot {slot} confirms {written}, everything written before the hand-off"
        ));
        if sub.enabled {
            steps.run(&control.disable(&sub.name)).await?;
        }
        steps.note(
            "then wait for its worker to exit and check, by decoding the slot without consuming it, that no published change follows the slot's confirmed position: pgsub continues from there".into(),
        );
        return Ok(None);
    }
    if sub.enabled {
        wait_for_confirmed(source, slot, written).await?;
        steps.run(&control.disable(&sub.name)).await?;
        wait_for_worker_exit(steps.client, &sub.name).await?;
    }
    match confirmed_with_nothing_after(source, sub, slot).await {
        Ok(confirmed) => {
            steps.note(format!(
                "its worker has exited; slot {slot} confirms {confirmed} and no published change follows it"
            ));
            Ok(Some(confirmed))
        }
        Err(e) => {
            restore(steps, sub, control).await;
            Err(e)
        }
    }
}

/// Polls the slot until it confirms `target`.
async fn wait_for_confirmed(source: &mut Connection, slot: &str, target: Lsn) -> Result<()> {
    let deadline = Instant::now() + CONFIRM_WAIT;
    loop {
        let confirmed = slots::find(source, slot)
            .await?
            .and_then(|s| s.confirmed_flush_lsn);
        if confirmed.is_some_and(|c| c >= target) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Config(format!(
                "slot {slot} confirms only {} after {} s, short of {target}, which was written before the hand-off started; nothing was changed: check that the subscription's worker runs and keeps up (`pgsub status`), then run the hand-off again",
                confirmed.map_or_else(|| "nothing".into(), |l| l.to_string()),
                CONFIRM_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The slot's confirmed position, when no published change follows it.
async fn confirmed_with_nothing_after(
    source: &mut Connection,
    sub: &NativeSubscription,
    slot: &str,
) -> Result<Lsn> {
    let info = slots::find(source, slot).await?.ok_or_else(|| {
        Error::Config(format!(
            "the subscription's slot {slot} does not exist on the source: there is no stream to hand over"
        ))
    })?;
    if info.active {
        return Err(Error::Config(format!(
            "slot {slot} is in use by the process with PID {} although subscription \"{}\" is disabled: stop whatever streams from it, then run the hand-off again",
            info.active_pid.unwrap_or(0),
            sub.name
        )));
    }
    let confirmed = info
        .confirmed_flush_lsn
        .ok_or_else(|| Error::Config(format!("slot {slot} has no confirmed position")))?;
    let pending = slots::published_changes_pending(source, slot, &sub.publications).await?;
    if pending > 0 {
        return Err(Error::Config(format!(
            "{pending} published change(s) follow slot {slot}'s confirmed position {confirmed}, and subscription \"{}\" may have applied some of them before it stopped without confirming them, so the slot's position is not exact (the writes were not paused long enough for it to confirm what it applied). The subscription is as it was and nothing else was changed: pause every session writing to the published tables, then run the hand-off again",
            sub.name
        )));
    }
    Ok(confirmed)
}

/// Enables the subscription again after a failed check, when the hand-off disabled it.
async fn restore(steps: &mut Steps<'_>, sub: &NativeSubscription, control: Control) {
    if sub.enabled
        && let Err(e) = steps.run(&control.enable(&sub.name)).await
    {
        tracing::error!(subscription = %sub.name, error = %e, "could not enable the subscription again: enable it by hand");
    }
}
