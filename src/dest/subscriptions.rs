//! What the destination knows about replication into it: native subscriptions (the
//! managed ones made by `aiven_extras` are native subscriptions underneath) with their
//! apply worker's positions and their origin's `remote_lsn`, and pgsub's own progress
//! rows.
//!
//! A managed destination gives an ordinary role, and several of these catalogs are
//! superuser-only there, so every source of information is asked for only when the role
//! may read it, and falls back:
//!
//! | what                                | read from                                  | fallback |
//! |-------------------------------------|--------------------------------------------|----------|
//! | name, enabled, slot, publications   | `pg_subscription`                          | `aiven_extras.pg_list_all_subscriptions()` |
//! | connection string (shown redacted)  | `pg_subscription.subconninfo` (column privilege) | the same aiven function |
//! | worker pid, received / reported LSN | `pg_stat_subscription`                     | – |
//! | applied position                    | `pg_replication_origin_status.remote_lsn` (origin `pg_<oid>`) | – |
//!
//! No connection string leaves this module unredacted.

use serde::Serialize;
use tokio_postgres::Client;

use crate::conninfo::redact;
use crate::error::Result;
use crate::lsn::Lsn;
use crate::pg::client::text_rows;

/// One native subscription of the destination's current database.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NativeSubscription {
    /// `subname`.
    pub name: String,
    /// `pg_subscription.oid` (the origin is named `pg_<oid>`), when known.
    pub oid: Option<u32>,
    /// `subenabled`.
    pub enabled: bool,
    /// The subscription's owner (`subowner`).
    pub owner: Option<String>,
    /// The role has the owner's privileges (is the owner, a member of it, or a
    /// superuser): it may ALTER and DROP the subscription itself.
    pub owned: bool,
    /// `subslotname` (`None` after `slot_name = NONE`).
    pub slot: Option<String>,
    /// `subpublications`.
    pub publications: Vec<String>,
    /// The connection string, redacted; `None` when the role may not read it.
    pub conninfo: Option<String>,
    /// Apply worker's PID (`None`: not running).
    pub worker_pid: Option<i32>,
    /// `pg_stat_subscription.received_lsn`.
    pub received_lsn: Option<Lsn>,
    /// `pg_stat_subscription.latest_end_lsn`: the last position reported to the source.
    pub latest_end_lsn: Option<Lsn>,
    /// The origin's `remote_lsn`: end of the last source transaction applied.
    pub remote_lsn: Option<Lsn>,
    /// Where the list came from: `pg_subscription` or `aiven_extras`.
    pub via: &'static str,
}

/// A single boolean answer (`t`).
async fn yes(client: &Client, sql: &str, what: &str) -> Result<bool> {
    let rows = text_rows(client, sql, what).await?;
    Ok(rows
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .as_deref()
        == Some("t"))
}

fn lsn(v: &Option<String>) -> Option<Lsn> {
    v.as_deref().and_then(|s| s.parse().ok())
}

fn text_array(v: &Option<String>) -> Vec<String> {
    let Some(s) = v.as_deref() else {
        return Vec::new();
    };
    s.trim_start_matches('{')
        .trim_end_matches('}')
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.trim_matches('"').to_owned())
        .collect()
}

/// Lists the native subscriptions of the current database with whatever the role may
/// read about them.
pub async fn native_subscriptions(client: &Client) -> Result<Vec<NativeSubscription>> {
    let mut subs = match list_from_catalog(client).await? {
        Some(s) => s,
        None => list_from_aiven(client).await?,
    };
    add_worker_positions(client, &mut subs).await?;
    add_origin_positions(client, &mut subs).await?;
    Ok(subs)
}

async fn list_from_catalog(client: &Client) -> Result<Option<Vec<NativeSubscription>>> {
    let what = "reading pg_subscription";
    let readable = yes(
        client,
        "SELECT pg_catalog.has_column_privilege('pg_catalog.pg_subscription', 'subname', 'SELECT')",
        what,
    )
    .await?;
    if !readable {
        return Ok(None);
    }
    let conninfo = yes(
        client,
        "SELECT pg_catalog.has_column_privilege('pg_catalog.pg_subscription', 'subconninfo', 'SELECT')",
        what,
    )
    .await?;
    // PostgreSQL 12 grants every column but oid (and subconninfo) to everyone.
    let oid = yes(
        client,
        "SELECT pg_catalog.has_column_privilege('pg_catalog.pg_subscription', 'oid', 'SELECT')",
        what,
    )
    .await?;
    let sql = format!(
        "SELECT s.subname, {}, s.subenabled, s.subslotname, s.subpublications::text, {}, \
                pg_catalog.pg_get_userbyid(s.subowner), pg_catalog.pg_has_role(s.subowner, 'USAGE') \
         FROM pg_catalog.pg_subscription s \
         WHERE s.subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) \
         ORDER BY s.subname",
        if oid { "s.oid" } else { "NULL" },
        if conninfo { "s.subconninfo" } else { "NULL" }
    );
    let rows = text_rows(client, &sql, what).await?;
    Ok(Some(
        rows.into_iter()
            .map(|r| NativeSubscription {
                name: r[0].clone().unwrap_or_default(),
                oid: r[1].as_deref().and_then(|v| v.parse().ok()),
                enabled: r[2].as_deref() == Some("t"),
                slot: r[3].clone(),
                publications: text_array(&r[4]),
                conninfo: r[5].as_deref().map(redact),
                owner: r[6].clone(),
                owned: r[7].as_deref() == Some("t"),
                via: "pg_subscription",
                ..Default::default()
            })
            .collect(),
    ))
}

async fn list_from_aiven(client: &Client) -> Result<Vec<NativeSubscription>> {
    let what = "reading aiven_extras.pg_list_all_subscriptions()";
    if !may_call(client, "aiven_extras", &["pg_list_all_subscriptions()"]).await? {
        return Ok(Vec::new());
    }
    let rows = text_rows(
        client,
        "SELECT s.subname, s.subenabled, s.subslotname, s.subpublications::text, s.subconninfo, \
                pg_catalog.pg_get_userbyid(s.subowner), pg_catalog.pg_has_role(s.subowner, 'USAGE') \
         FROM aiven_extras.pg_list_all_subscriptions() s \
         WHERE s.subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) \
         ORDER BY s.subname",
        what,
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| NativeSubscription {
            name: r[0].clone().unwrap_or_default(),
            enabled: r[1].as_deref() == Some("t"),
            slot: r[2].clone(),
            publications: text_array(&r[3]),
            conninfo: r[4].as_deref().map(redact),
            owner: r[5].clone(),
            owned: r[6].as_deref() == Some("t"),
            via: "aiven_extras",
            ..Default::default()
        })
        .collect())
}

async fn add_worker_positions(client: &Client, subs: &mut [NativeSubscription]) -> Result<()> {
    if subs.is_empty() {
        return Ok(());
    }
    // The apply worker is the row without a relid (table-sync workers have one).
    let rows = text_rows(
        client,
        "SELECT subname, pid, received_lsn::text, latest_end_lsn::text \
         FROM pg_catalog.pg_stat_subscription WHERE relid IS NULL",
        "reading pg_stat_subscription",
    )
    .await?;
    for r in rows {
        if let Some(s) = subs.iter_mut().find(|s| Some(&s.name) == r[0].as_ref()) {
            // A parallel apply worker (16+) has a row too; the leader's has the positions.
            if s.worker_pid.is_some() && r[2].is_none() {
                continue;
            }
            s.worker_pid = r[1].as_deref().and_then(|v| v.parse().ok());
            s.received_lsn = lsn(&r[2]);
            s.latest_end_lsn = lsn(&r[3]);
        }
    }
    Ok(())
}

/// The role may read `pg_replication_origin_status`, where a subscription's applied
/// position is kept: superuser-only unless both the view and the function under it
/// (called with the reader's rights) are granted.
pub async fn origin_status_readable(client: &Client) -> Result<bool> {
    yes(
        client,
        "SELECT pg_catalog.has_table_privilege('pg_catalog.pg_replication_origin_status', 'SELECT') \
         AND pg_catalog.has_function_privilege('pg_catalog.pg_show_replication_origin_status()', 'EXECUTE')",
        "reading pg_replication_origin_status",
    )
    .await
}

/// The role may call every one of `functions` (`name(argtypes)`) of `schema`; a function
/// that does not exist, or a schema the role may not use, counts as not callable.
pub async fn may_call(client: &Client, schema: &str, functions: &[&str]) -> Result<bool> {
    let lit = crate::pg::ident::literal;
    let list: Vec<String> = functions
        .iter()
        .map(|f| lit(&format!("{}.{f}", crate::pg::ident::ident(schema))))
        .collect();
    // Naming a function of a schema the role may not use is an error, not a NULL: the
    // CASE checks the schema first.
    yes(
        client,
        &format!(
            "SELECT CASE WHEN pg_catalog.to_regnamespace({s}) IS NULL THEN false \
                         WHEN NOT pg_catalog.has_schema_privilege(pg_catalog.to_regnamespace({s})::oid, 'USAGE') THEN false \
                         ELSE (SELECT bool_and(coalesce(pg_catalog.has_function_privilege(pg_catalog.to_regprocedure(f)::oid, 'EXECUTE'), false)) \
                               FROM unnest(ARRAY[{}]::text[]) f) END",
            list.join(", "),
            s = lit(&crate::pg::ident::ident(schema)),
        ),
        "checking which functions the destination role may call",
    )
    .await
}

async fn add_origin_positions(client: &Client, subs: &mut [NativeSubscription]) -> Result<()> {
    if subs.iter().all(|s| s.oid.is_none()) {
        return Ok(());
    }
    if !origin_status_readable(client).await? {
        return Ok(());
    }
    let rows = text_rows(
        client,
        "SELECT external_id, remote_lsn::text FROM pg_catalog.pg_replication_origin_status",
        "reading pg_replication_origin_status",
    )
    .await?;
    for s in subs.iter_mut() {
        let Some(oid) = s.oid else { continue };
        let origin = format!("pg_{oid}");
        s.remote_lsn = rows
            .iter()
            .find(|r| r[0].as_deref() == Some(origin.as_str()))
            .and_then(|r| lsn(&r[1]));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::text_array;

    #[test]
    fn text_array_reads_plain_and_quoted_elements() {
        assert_eq!(
            text_array(&Some("{pub1,\"Pub 2\"}".into())),
            vec!["pub1".to_owned(), "Pub 2".to_owned()]
        );
        assert!(text_array(&Some("{}".into())).is_empty());
        assert!(text_array(&None).is_empty());
    }
}
