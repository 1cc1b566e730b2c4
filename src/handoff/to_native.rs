//! `--to-native`: from pgsub to a native subscription on pgsub's slot, starting where
//! pgsub stopped — by advancing the subscription's origin to pgsub's applied position,
//! or, where the subscription is made through `aiven_extras` (which creates it enabled,
//! from the slot's confirmed position), once the slot confirms everything pgsub applied.

use super::control::{self, AIVEN_EXTRAS, Control};
use super::{Steps, find, find_opt};
use crate::conninfo::redact;
use crate::dest::subscriptions::NativeSubscription;
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::pg::ident::{ident as escape_identifier, literal as escape_literal};
use crate::state::progress;

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

impl PgsubPosition {
    /// The slot confirms everything pgsub applied: a subscription may start from it.
    fn slot_is_exact(&self) -> bool {
        self.confirmed.is_some_and(|c| c >= self.applied)
    }

    fn confirmed_text(&self) -> String {
        self.confirmed
            .map_or_else(|| "nothing".into(), |l| l.to_string())
    }
}

fn needs_origin(sub: &NativeSubscription) -> Result<u32> {
    sub.oid.ok_or_else(|| {
        Error::Config(format!(
            "the destination role may not read pg_subscription, so the origin of \"{}\" cannot be found: a hand-off needs a role that may (a superuser, or the subscription's owner with SELECT on pg_replication_origin_status)",
            sub.name
        ))
    })
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
    let oid = match find_opt(client, sub_name).await? {
        Some(sub) => {
            if Control::of(client, &sub).await? == Control::Extension {
                return Err(Error::Config(format!(
                    "subscription \"{sub_name}\" exists and belongs to {}: {AIVEN_EXTRAS} cannot point it at another slot; nothing was changed: drop it keeping its slot (SELECT {AIVEN_EXTRAS}.pg_drop_subscription({}, false)) and run this hand-off again, which creates it on pgsub's slot",
                    sub.owner.as_deref().unwrap_or("another role"),
                    escape_literal(sub_name)
                )));
            }
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
            if !control::may_create_subscription(client).await?
                && control::may_create_through_extension(client).await?
            {
                return create_through_extension(steps, sub_name, from, conninfo, pubs).await;
            }
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
        if from.slot_is_exact() {
            steps.note(format!(
                "the origin could not be advanced ({e}); the slot's confirmed position {} covers everything pgsub applied, so the subscription starts there",
                from.confirmed_text()
            ));
        } else {
            return Err(Error::Config(format!(
                "{e}\nthe origin must be advanced to {} because the slot only confirms up to {}: run `pgsub sync --until caught-up` once more (it confirms what it applied), or hand off as a role that may call pg_replication_origin_advance",
                from.applied,
                from.confirmed_text()
            )));
        }
    }
    remove_progress(steps, from).await?;
    let enable = format!("ALTER SUBSCRIPTION {ident} ENABLE");
    steps.run(&enable).await?;
    Ok(())
}

/// Removes pgsub's progress rows for `from`.
async fn remove_progress(steps: &mut Steps<'_>, from: &PgsubPosition) -> Result<()> {
    if !steps.dry_run {
        // The statements below name every table of the current schema version.
        crate::state::setup(steps.client).await?;
    }
    steps
        .run(&crate::state::remove_statements(&from.name))
        .await
}

/// Through `aiven_extras.pg_create_subscription`, which makes the subscription enabled at
/// once, streaming from the slot's confirmed position: exact only when that covers
/// everything pgsub applied, which is checked first.
async fn create_through_extension(
    steps: &mut Steps<'_>,
    sub_name: &str,
    from: &PgsubPosition,
    conninfo: &str,
    publications: &[String],
) -> Result<()> {
    let [publication] = publications else {
        return Err(Error::Config(format!(
            "{AIVEN_EXTRAS}.pg_create_subscription takes one publication and pgsub's slot carries {} ({}); nothing was changed: hand off as a role that may CREATE SUBSCRIPTION, or pass the one --publication the subscription should have",
            publications.len(),
            publications.join(", ")
        )));
    };
    if !from.slot_is_exact() {
        return Err(Error::Config(format!(
            "the role may create a subscription only through {AIVEN_EXTRAS}.pg_create_subscription, which starts it from the slot's confirmed position, and slot {} confirms only {} of the {} pgsub applied; nothing was changed: run `pgsub sync --until caught-up` once more (it confirms what it applied at the end), then hand off again",
            from.slot,
            from.confirmed_text(),
            from.applied
        )));
    }
    remove_progress(steps, from).await?;
    let (run, shown) =
        control::create_through_extension(sub_name, conninfo, publication, &from.slot);
    steps.run_shown(&run, &shown).await?;
    steps.note(format!(
        "created through {AIVEN_EXTRAS}, enabled: it streams slot {} from its confirmed position {}, which covers everything pgsub applied ({})",
        from.slot,
        from.confirmed_text(),
        from.applied
    ));
    Ok(())
}

/// Reads pgsub's progress `name` for `--to-native`.
pub async fn pgsub_position(
    client: &tokio_postgres::Client,
    name: &str,
) -> Result<(Lsn, String, Vec<String>)> {
    match progress::read(client, name).await {
        Ok(Some(p)) => Ok((p.applied_lsn, p.slot, p.publications)),
        Ok(None) | Err(Error::Sql(_)) => Err(Error::Config(format!(
            "no pgsub progress named \"{name}\" on the destination: pass the --name (or --slot) of the pgsub sync to hand over"
        ))),
        Err(e) => Err(e),
    }
}
