//! `status`: what a replication looks like from both ends, in bytes of WAL.
//!
//! ```text
//!  source       current WAL position ─┬─ slots: confirmed_flush_lsn, restart_lsn,
//!                                     │         retained WAL, wal_status, active since
//!                                     └─ logical WAL senders: sent / write / flush /
//!                                        replay positions and their lag
//!  destination  native subscriptions (origin remote_lsn) ┐ each with its lag behind the
//!               pgsub progress rows (applied_lsn)        ┘ source's current position
//! ```
//!
//! A subscription's lag is the source's current position minus the furthest of what it
//! has applied and what its slot has confirmed: a slot confirms past the last applied
//! transaction when the source only wrote what the publications do not carry (other
//! databases, unpublished tables), and none of that is owed.

use serde::Serialize;

use crate::conn::Connection;
use crate::conninfo::Conninfo;
use crate::dest::subscriptions::{self, NativeSubscription};
use crate::error::Result;
use crate::lsn::Lsn;
use crate::source::slots::{self, SlotInfo};
use crate::state::progress::ProgressRow;

/// A logical WAL sender (`pg_stat_replication` joined to its slot).
#[derive(Debug, Clone, Serialize)]
pub struct Sender {
    /// Its slot.
    pub slot: String,
    /// Process ID.
    pub pid: i32,
    /// `application_name` of the client.
    pub application_name: Option<String>,
    /// `state` (streaming, catchup …).
    pub state: Option<String>,
    /// When the connection started.
    pub backend_start: Option<String>,
    /// Last position sent.
    pub sent_lsn: Option<Lsn>,
    /// Last position the client wrote.
    pub write_lsn: Option<Lsn>,
    /// Last position the client flushed (confirmed).
    pub flush_lsn: Option<Lsn>,
    /// Last position the client applied.
    pub replay_lsn: Option<Lsn>,
    /// Source's current position minus `flush_lsn`.
    pub flush_lag_bytes: Option<u64>,
}

/// A slot with what `status` adds to it.
#[derive(Debug, Clone, Serialize)]
pub struct Slot {
    /// What `pg_replication_slots` says.
    #[serde(flatten)]
    pub info: SlotInfo,
    /// Since when it is active (its sender's start) — or, from 17, inactive.
    pub since: Option<String>,
    /// Source's current position minus `confirmed_flush_lsn`.
    pub lag_bytes: Option<u64>,
}

/// One subscription as seen on the destination.
#[derive(Debug, Clone, Serialize)]
pub struct Subscription {
    /// `native` or `pgsub`.
    pub kind: &'static str,
    /// Name.
    pub name: String,
    /// Its slot on the source.
    pub slot: Option<String>,
    /// Publications.
    pub publications: Vec<String>,
    /// Running (native: a worker; pgsub: its slot is active).
    pub running: bool,
    /// Enabled (native subscriptions).
    pub enabled: Option<bool>,
    /// End of the last source transaction applied.
    pub applied_lsn: Option<Lsn>,
    /// Bytes of WAL it is behind the source.
    pub lag_bytes: Option<u64>,
    /// Connection string (redacted), where the role may read it.
    pub conninfo: Option<String>,
    /// Its progress names another source.
    pub other_source: bool,
    /// Where a native subscription was read from: `pg_subscription` or `aiven_extras`.
    pub via: Option<&'static str>,
}

/// The whole picture.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The source, redacted.
    pub source: String,
    /// The source's `server_version`.
    pub source_version: String,
    /// The source's current WAL position.
    pub source_lsn: Option<Lsn>,
    /// Its system identifier (when the role may read it).
    pub source_system_id: Option<String>,
    /// Replication slots.
    pub slots: Vec<Slot>,
    /// Logical WAL senders.
    pub senders: Vec<Sender>,
    /// The destination, redacted (`None` without `--dest`).
    pub destination: Option<String>,
    /// Subscriptions into the destination.
    pub subscriptions: Vec<Subscription>,
    /// Conflicts pgsub met, per subscription, table and kind (`pgsub.conflicts`).
    pub conflicts: Vec<crate::state::conflicts::ConflictRow>,
    /// Things to act on.
    pub warnings: Vec<String>,
}

fn diff(a: Option<Lsn>, b: Option<Lsn>) -> Option<u64> {
    Some(a?.bytes_since(b?))
}

async fn senders(conn: &mut Connection, current: Option<Lsn>) -> Result<Vec<Sender>> {
    let rows = conn
        .simple_query(
            "SELECT s.slot_name, r.pid, r.application_name, r.state, r.backend_start::text, \
                    r.sent_lsn, r.write_lsn, r.flush_lsn, r.replay_lsn \
             FROM pg_catalog.pg_stat_replication r \
             JOIN pg_catalog.pg_replication_slots s ON s.active_pid = r.pid \
             WHERE s.slot_type = 'logical' ORDER BY s.slot_name",
        )
        .await?;
    let lsn = |r: &crate::conn::Row, c: &str| r.get(c).and_then(|v| v.parse().ok());
    Ok(rows
        .iter()
        .map(|r| {
            let flush = lsn(r, "flush_lsn");
            Sender {
                slot: r.get("slot_name").unwrap_or_default().to_owned(),
                pid: r.get("pid").and_then(|v| v.parse().ok()).unwrap_or(0),
                application_name: r.get("application_name").map(str::to_owned),
                state: r.get("state").map(str::to_owned),
                backend_start: r.get("backend_start").map(str::to_owned),
                sent_lsn: lsn(r, "sent_lsn"),
                write_lsn: lsn(r, "write_lsn"),
                flush_lsn: flush,
                replay_lsn: lsn(r, "replay_lsn"),
                flush_lag_bytes: diff(current, flush),
            }
        })
        .collect())
}

/// The warning a slot deserves: invalidated, or inactive and retaining WAL (the
/// disk-full risk).
pub fn slot_warning(s: &SlotInfo) -> Option<String> {
    if s.is_invalidated() {
        return Some(format!(
            "slot \"{}\" is invalidated and can no longer stream; drop it",
            s.slot_name
        ));
    }
    match s.retained_bytes {
        Some(b) if !s.active && b > 0 => Some(format!(
            "slot \"{}\" is inactive and retains {b} bytes of WAL on the source; it grows until a client streams from it or it is dropped (`pgsub drop --slot {}`, or `pgsub slot drop`)",
            s.slot_name, s.slot_name
        )),
        _ => None,
    }
}

/// Reads the source and, if given, the destination.
pub async fn gather(src: &Conninfo, dst: Option<&Conninfo>) -> Result<Status> {
    let mut conn = crate::source::connect(src, false).await?;
    let current = conn
        .simple_query(
            "SELECT CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_receive_lsn() \
             ELSE pg_catalog.pg_current_wal_lsn() END",
        )
        .await?
        .first()
        .and_then(|r| r.get_idx(0))
        .and_then(|v| v.parse().ok());
    let system_id = crate::source::system_identifier(&mut conn).await;
    let senders = senders(&mut conn, current).await?;
    let slots: Vec<Slot> = slots::list(&mut conn)
        .await?
        .into_iter()
        .filter(|s| s.slot_type == "logical")
        .map(|info| Slot {
            since: if info.active {
                senders
                    .iter()
                    .find(|x| x.slot == info.slot_name)
                    .and_then(|x| x.backend_start.clone())
            } else {
                info.inactive_since.clone()
            },
            lag_bytes: diff(current, info.confirmed_flush_lsn),
            info,
        })
        .collect();
    let version = conn.parameter("server_version").unwrap_or("?").to_owned();
    conn.close().await;
    let mut warnings: Vec<String> = slots.iter().filter_map(|s| slot_warning(&s.info)).collect();

    let mut subs = Vec::new();
    let mut conflicts = Vec::new();
    if let Some(dst) = dst {
        let client = crate::pg::client::connect_client(dst, "destination").await?;
        let natives = subscriptions::native_subscriptions(&client).await?;
        if natives
            .iter()
            .any(|n| n.remote_lsn.is_none() && n.oid.is_some())
        {
            warnings.push(
                "the destination role may not read pg_replication_origin_status: native subscriptions' applied positions are unknown (GRANT SELECT ON pg_replication_origin_status, or run as a superuser)".into(),
            );
        }
        for n in natives {
            subs.push(native(n, &slots, current));
        }
        for p in crate::state::progress::rows(&client).await? {
            subs.push(pgsub(p, &slots, current, system_id.as_deref()));
        }
        conflicts = crate::state::conflicts::read(&client).await?;
        let total: u64 = conflicts.iter().map(|c| c.count).sum();
        if total > 0 {
            warnings.push(format!(
                "pgsub met {total} conflict(s) applying changes (listed above): the destination's rows differed from the source's; run `pgsub verify` to see what differs now"
            ));
        }
    }
    Ok(Status {
        source: src.redacted(),
        source_version: version,
        source_lsn: current,
        source_system_id: system_id,
        slots,
        senders,
        destination: dst.map(Conninfo::redacted),
        subscriptions: subs,
        conflicts,
        warnings,
    })
}

fn confirmed<'a>(slots: &'a [Slot], name: Option<&str>) -> Option<&'a Slot> {
    slots
        .iter()
        .find(|s| Some(s.info.slot_name.as_str()) == name)
}

/// Lag behind `current` from the furthest of `applied` and the slot's confirmed position.
fn lag(current: Option<Lsn>, applied: Option<Lsn>, slot: Option<&Slot>) -> Option<u64> {
    let confirmed = slot.and_then(|s| s.info.confirmed_flush_lsn);
    let furthest = match (applied, confirmed) {
        (Some(a), Some(c)) => Some(a.max(c)),
        (a, c) => a.or(c),
    };
    diff(current, furthest)
}

fn native(n: NativeSubscription, slots: &[Slot], current: Option<Lsn>) -> Subscription {
    let slot = confirmed(slots, n.slot.as_deref());
    Subscription {
        kind: "native",
        lag_bytes: lag(current, n.remote_lsn, slot),
        running: n.worker_pid.is_some(),
        enabled: Some(n.enabled),
        applied_lsn: n.remote_lsn,
        conninfo: n.conninfo,
        other_source: false,
        via: Some(n.via),
        name: n.name,
        slot: n.slot,
        publications: n.publications,
    }
}

fn pgsub(
    p: ProgressRow,
    slots: &[Slot],
    current: Option<Lsn>,
    system_id: Option<&str>,
) -> Subscription {
    let other_source = system_id.is_some_and(|id| id != p.source_system_id);
    let slot = if other_source {
        None
    } else {
        confirmed(slots, Some(&p.slot))
    };
    Subscription {
        kind: "pgsub",
        lag_bytes: if other_source {
            None
        } else {
            lag(current, Some(p.applied_lsn), slot)
        },
        running: slot.is_some_and(|s| s.info.active),
        enabled: None,
        applied_lsn: Some(p.applied_lsn),
        conninfo: None,
        other_source,
        via: None,
        name: p.name,
        slot: Some(p.slot),
        publications: p.publications,
    }
}

/// `yes`, `no`, or `-` where the server does not say (a column of an older version).
pub fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    }
}
