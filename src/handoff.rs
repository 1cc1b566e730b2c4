//! Hand-off between a native subscription and pgsub, either way, on the same slot, with
//! nothing lost or applied twice.
//!
//! Both keep the same thing: the Commit `end_lsn` of the last source transaction applied —
//! a native subscription in its replication origin (`pg_<suboid>`, `remote_lsn`), pgsub in
//! `pgsub.progress.applied_lsn`. A hand-off stops one, moves that position to the other,
//! and the other starts streaming the slot from there, skipping what was applied.
//!
//! ```text
//!  --to-pgsub   ALTER SUBSCRIPTION s DISABLE ─► wait for its worker to exit
//!               ─► read origin remote_lsn ─► ALTER SUBSCRIPTION s SET (slot_name = NONE)
//!               ─► pgsub.progress(name, slot, publications, applied_lsn = remote_lsn)
//!               ─► then: pgsub sync --slot <slot>
//!  --to-native  (pgsub stopped, its slot idle) CREATE SUBSCRIPTION … WITH (create_slot =
//!               false, slot_name, copy_data = false, enabled = false) — or re-point the
//!               existing one ─► pg_replication_origin_advance(pg_<oid>, applied_lsn)
//!               ─► remove pgsub's progress rows ─► ALTER SUBSCRIPTION s ENABLE
//! ```
//!
//! Every statement is shown (a connection string only redacted); `--dry-run` shows them
//! and changes nothing.

use std::time::{Duration, Instant};

use crate::pg::ident::{ident as escape_identifier, literal as escape_literal};
use tokio_postgres::Client;

use crate::conninfo::redact;
use crate::dest::subscriptions::{self, NativeSubscription};
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::pg::client::{first_value, text_rows};
use crate::state::progress;

/// How long the subscription's worker gets to exit after DISABLE.
const WORKER_EXIT_WAIT: Duration = Duration::from_secs(60);

/// Runs statements on the destination, or only lists them.
pub struct Steps<'a> {
    client: &'a Client,
    dry_run: bool,
    /// What was (or would be) done, in order.
    pub said: Vec<String>,
}

impl<'a> Steps<'a> {
    /// Steps on `client`; with `dry_run` nothing is changed.
    pub fn new(client: &'a Client, dry_run: bool) -> Self {
        Steps {
            client,
            dry_run,
            said: Vec::new(),
        }
    }

    /// Runs `sql`, shown as it is.
    async fn run(&mut self, sql: &str) -> Result<()> {
        self.run_shown(sql, sql).await.map(|_| ())
    }

    /// Runs `sql`, shown as `shown` (which hides any secret in it).
    async fn run_shown(&mut self, sql: &str, shown: &str) -> Result<Vec<crate::pg::Row>> {
        self.said.push(format!("{shown};"));
        if self.dry_run {
            return Ok(Vec::new());
        }
        Ok(text_rows(
            self.client,
            sql,
            &format!("running `{shown}` on the destination"),
        )
        .await?)
    }

    fn note(&mut self, s: String) {
        self.said.push(format!("-- {s}"));
    }
}

/// Finds subscription `name` with what the role may read about it.
pub async fn find(client: &Client, name: &str) -> Result<NativeSubscription> {
    let all = subscriptions::native_subscriptions(client).await?;
    let names: Vec<String> = all.iter().map(|s| s.name.clone()).collect();
    all.into_iter().find(|s| s.name == name).ok_or_else(|| {
        Error::Config(format!(
            "no subscription \"{name}\" in the destination database (it has: {}); `pgsub status --dest …` lists them",
            if names.is_empty() { "none".to_owned() } else { names.join(", ") }
        ))
    })
}

fn needs_origin(sub: &NativeSubscription) -> Result<u32> {
    sub.oid.ok_or_else(|| {
        Error::Config(format!(
            "the destination role may not read pg_subscription, so the origin of \"{}\" cannot be found: a hand-off needs a role that may (a superuser, or the subscription's owner with SELECT on pg_replication_origin_status)",
            sub.name
        ))
    })
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

async fn tables_not_ready(client: &Client, oid: u32) -> Result<u64> {
    Ok(first_value(
        client,
        &format!(
            "SELECT count(*) FROM pg_catalog.pg_subscription_rel WHERE srsubid = {oid} AND srsubstate <> 'r'"
        ),
        "reading pg_subscription_rel",
    )
    .await?
    .and_then(|v| v.parse().ok())
    .unwrap_or(0))
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
}

/// From native subscription `sub_name` to pgsub.
pub async fn to_pgsub(
    steps: &mut Steps<'_>,
    sub_name: &str,
    name: Option<&str>,
    source_system_id: &str,
) -> Result<ToPgsub> {
    let client = steps.client;
    let sub = find(client, sub_name).await?;
    let oid = needs_origin(&sub)?;
    let Some(slot) = sub.slot.clone() else {
        return Err(Error::Config(format!(
            "subscription \"{sub_name}\" has no slot (slot_name = NONE): there is nothing to hand over; if pgsub already has it, run `pgsub sync`"
        )));
    };
    let name = name.unwrap_or(&slot).to_owned();
    let syncing = tables_not_ready(client, oid).await?;
    if syncing > 0 {
        return Err(Error::Config(format!(
            "{syncing} table(s) of subscription \"{sub_name}\" are still in their initial copy: hand off once pg_subscription_rel shows them all ready ('r')"
        )));
    }
    let ident = escape_identifier(sub_name);
    if sub.enabled {
        steps
            .run(&format!("ALTER SUBSCRIPTION {ident} DISABLE"))
            .await?;
    }
    let applied = if steps.dry_run {
        steps.note(format!(
            "then wait for its worker to exit and read its origin pg_{oid} (now at {})",
            origin_lsn(client, oid)
                .await?
                .map_or_else(|| "nothing".into(), |l| l.to_string())
        ));
        None
    } else {
        wait_for_worker_exit(client, sub_name).await?;
        let Some(lsn) = origin_lsn(client, oid).await? else {
            return Err(Error::Config(format!(
                "subscription \"{sub_name}\" has no applied position in its origin pg_{oid}: it never applied anything; re-enable it, or start pgsub with a copy instead"
            )));
        };
        steps.note(format!(
            "its worker has exited; origin pg_{oid} applied up to {lsn}"
        ));
        Some(lsn)
    };
    let detach = format!("ALTER SUBSCRIPTION {ident} SET (slot_name = NONE)");
    steps.run(&detach).await?;
    match applied {
        Some(lsn) => {
            crate::state::setup(client).await?;
            let stored = progress::read(client, &name).await?;
            if let Some(p) = &stored
                && (p.applied_lsn > lsn || p.source_system_id != source_system_id)
            {
                return Err(Error::Config(format!(
                    "pgsub already has progress named \"{name}\" (slot {}, applied up to {}) that does not continue this subscription (at {lsn}); pass another --name",
                    p.slot, p.applied_lsn
                )));
            }
            progress::record(client, &name, source_system_id, &slot, &sub.publications, lsn).await?;
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
    })
}

async fn wait_for_worker_exit(client: &Client, sub_name: &str) -> Result<()> {
    let deadline = Instant::now() + WORKER_EXIT_WAIT;
    loop {
        let sub = find(client, sub_name).await?;
        if sub.worker_pid.is_none() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Config(format!(
                "the worker of subscription \"{sub_name}\" (PID {}) did not exit within {} s of DISABLE; nothing else was changed: check the destination's log, then run the hand-off again",
                sub.worker_pid.unwrap_or(0),
                WORKER_EXIT_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What `--to-native` starts from.
#[derive(Debug, Clone)]
pub struct PgsubPosition {
    /// pgsub's subscription name.
    pub name: String,
    /// Its slot.
    pub slot: String,
    /// Its publications.
    pub publications: Vec<String>,
    /// End of the last transaction it applied.
    pub applied: Lsn,
    /// The slot's confirmed position on the source.
    pub confirmed: Option<Lsn>,
}

/// From pgsub to native subscription `sub_name`, created with `conninfo` when missing.
pub async fn to_native(
    steps: &mut Steps<'_>,
    sub_name: &str,
    from: &PgsubPosition,
    conninfo: Option<&str>,
    publications: &[String],
) -> Result<()> {
    let client = steps.client;
    let ident = escape_identifier(sub_name);
    let slot = escape_literal(&from.slot);
    let existing = subscriptions::native_subscriptions(client)
        .await?
        .into_iter()
        .find(|s| s.name == sub_name);
    let oid = match existing {
        Some(sub) => {
            let oid = needs_origin(&sub)?;
            if let Some(other) = sub.slot.as_deref().filter(|s| *s != from.slot) {
                return Err(Error::Config(format!(
                    "subscription \"{sub_name}\" uses slot \"{other}\", not pgsub's \"{}\": detach it first (ALTER SUBSCRIPTION … DISABLE; … SET (slot_name = NONE)) or name another subscription",
                    from.slot
                )));
            }
            if sub.enabled {
                let sql = format!("ALTER SUBSCRIPTION {ident} DISABLE");
                steps.run(&sql).await?;
            }
            let sql = format!("ALTER SUBSCRIPTION {ident} SET (slot_name = {slot})");
            steps.run(&sql).await?;
            Some(oid)
        }
        None => {
            let Some(conninfo) = conninfo else {
                return Err(Error::Usage(format!(
                    "there is no subscription \"{sub_name}\" on the destination: pass --subscription-conninfo with the connection string it should use to reach the source (it is stored in pg_subscription, as for every native subscription)"
                )));
            };
            let pubs = if publications.is_empty() {
                &from.publications
            } else {
                publications
            };
            let pubs: Vec<String> = pubs.iter().map(|p| escape_identifier(p)).collect();
            let tail = format!(
                "PUBLICATION {} WITH (create_slot = false, slot_name = {slot}, copy_data = false, enabled = false)",
                pubs.join(", ")
            );
            steps
                .run_shown(
                    &format!(
                        "CREATE SUBSCRIPTION {ident} CONNECTION {} {tail}",
                        escape_literal(conninfo)
                    ),
                    &format!(
                        "CREATE SUBSCRIPTION {ident} CONNECTION {} {tail}",
                        escape_literal(&redact(conninfo))
                    ),
                )
                .await?;
            if steps.dry_run {
                None
            } else {
                Some(needs_origin(&find(client, sub_name).await?)?)
            }
        }
    };
    let origin = oid.map_or_else(
        || "pg_<oid of the new subscription>".to_owned(),
        |o| format!("pg_{o}"),
    );
    let advance = format!(
        "SELECT pg_catalog.pg_replication_origin_advance({}, {})",
        escape_literal(&origin),
        escape_literal(&from.applied.to_string())
    );
    if let Err(e) = steps.run(&advance).await {
        // Without the right to advance the origin, starting from the slot's confirmed
        // position is still exact when pgsub confirmed everything it applied.
        if from.confirmed.is_some_and(|c| c >= from.applied) {
            steps.note(format!(
                "the origin could not be advanced ({e}); the slot's confirmed position {} covers everything pgsub applied, so the subscription starts there",
                from.confirmed.unwrap_or_default()
            ));
        } else {
            return Err(Error::Config(format!(
                "{e}\nthe origin must be advanced to {} because the slot only confirms up to {}: run `pgsub sync --until caught-up` once more (it confirms what it applied), or hand off as a role that may call pg_replication_origin_advance",
                from.applied,
                from.confirmed
                    .map_or_else(|| "nothing".into(), |l| l.to_string())
            )));
        }
    }
    if !steps.dry_run {
        // The statements below name every table of the current schema version.
        crate::state::setup(steps.client).await?;
    }
    steps
        .run(&crate::state::remove_statements(&from.name))
        .await?;
    let enable = format!("ALTER SUBSCRIPTION {ident} ENABLE");
    steps.run(&enable).await?;
    Ok(())
}

/// Reads pgsub's progress `name` for `--to-native`.
pub async fn pgsub_position(client: &Client, name: &str) -> Result<(Lsn, String, Vec<String>)> {
    match progress::read(client, name).await {
        Ok(Some(p)) => Ok((p.applied_lsn, p.slot, p.publications)),
        Ok(None) | Err(Error::Sql(_)) => Err(Error::Config(format!(
            "no pgsub progress named \"{name}\" on the destination: pass the --name (or --slot) of the pgsub sync to hand over"
        ))),
        Err(e) => Err(e),
    }
}
