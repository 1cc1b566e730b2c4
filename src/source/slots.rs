//! Logical replication slots as `pg_replication_slots` shows them, read with a query
//! that asks each server version only for the columns it has.
//!
//! | column               | since |
//! |----------------------|-------|
//! | `wal_status`         | 13    |
//! | `two_phase`          | 14    |
//! | `conflicting`        | 16    |
//! | `invalidation_reason`, `inactive_since` | 17 |

use crate::pg::ident::literal as escape_literal;
use serde::Serialize;

use crate::conn::{Connection, Row};
use crate::error::{Error, Result};
use crate::lsn::Lsn;

/// One replication slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotInfo {
    /// Name.
    pub slot_name: String,
    /// Output plugin (`None` for physical slots).
    pub plugin: Option<String>,
    /// `logical` or `physical`.
    pub slot_type: String,
    /// Database of a logical slot.
    pub database: Option<String>,
    /// A process is streaming from it.
    pub active: bool,
    /// That process.
    pub active_pid: Option<u32>,
    /// Oldest WAL the slot needs.
    pub restart_lsn: Option<Lsn>,
    /// Position the client confirmed.
    pub confirmed_flush_lsn: Option<Lsn>,
    /// `reserved`, `extended`, `unreserved` or `lost` (13+).
    pub wal_status: Option<String>,
    /// Two-phase decoding enabled (14+).
    pub two_phase: Option<bool>,
    /// A failover slot, synchronized to standbys (17+).
    pub failover: Option<bool>,
    /// Why the slot was invalidated (17+), or `conflicting` (16).
    pub invalidation_reason: Option<String>,
    /// Since when the slot is inactive (17+).
    pub inactive_since: Option<String>,
    /// Bytes of WAL between `restart_lsn` and the server's current position.
    pub retained_bytes: Option<u64>,
}

impl SlotInfo {
    /// True when the slot can no longer stream.
    pub fn is_invalidated(&self) -> bool {
        self.wal_status.as_deref() == Some("lost") || self.invalidation_reason.is_some()
    }

    /// Checks that the slot is a pgoutput slot of `database` that can still stream.
    pub fn check_usable(&self, database: Option<&str>) -> Result<()> {
        let name = &self.slot_name;
        if self.slot_type != "logical" {
            return Err(Error::Config(format!(
                "replication slot \"{name}\" is a {} slot; pgsub needs a logical slot using pgoutput: create one with `pgsub slot create --slot NAME`",
                self.slot_type
            )));
        }
        if self.plugin.as_deref() != Some("pgoutput") {
            return Err(Error::Config(format!(
                "replication slot \"{name}\" uses the output plugin {:?}; pgsub decodes pgoutput only: create a pgoutput slot with `pgsub slot create --slot NAME`",
                self.plugin.as_deref().unwrap_or("?")
            )));
        }
        if let (Some(want), Some(have)) = (database, self.database.as_deref())
            && want != have
        {
            return Err(Error::Config(format!(
                "replication slot \"{name}\" belongs to database \"{have}\", but the connection is to \"{want}\": connect to dbname={have}, or use a slot of this database"
            )));
        }
        if self.is_invalidated() {
            let why = self
                .invalidation_reason
                .clone()
                .unwrap_or_else(|| "wal_status is lost: the WAL it needed was removed".into());
            return Err(Error::Config(format!(
                "replication slot \"{name}\" has been invalidated ({why}) and can no longer stream: changes since its last confirmed position are gone. Drop it (`pgsub slot drop --slot {name}`), create a new slot and copy the data again; pgsub never recreates a slot by itself"
            )));
        }
        Ok(())
    }
}

fn select_list(version: u32) -> String {
    let opt = |since: u32, expr: &str, name: &str| {
        if version >= since {
            format!("{expr} AS {name}")
        } else {
            format!("NULL AS {name}")
        }
    };
    let current = "CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_receive_lsn() ELSE pg_catalog.pg_current_wal_lsn() END";
    [
        "slot_name".to_owned(),
        "plugin".to_owned(),
        "slot_type".to_owned(),
        "database".to_owned(),
        "active::text".to_owned(),
        "active_pid".to_owned(),
        "restart_lsn".to_owned(),
        "confirmed_flush_lsn".to_owned(),
        opt(130000, "wal_status", "wal_status"),
        opt(140000, "two_phase::text", "two_phase"),
        opt(170000, "failover::text", "failover"),
        if version >= 170000 {
            "invalidation_reason".to_owned()
        } else {
            opt(
                160000,
                "CASE WHEN conflicting THEN 'conflicting' END",
                "invalidation_reason",
            )
        },
        opt(170000, "inactive_since::text", "inactive_since"),
        format!("pg_catalog.pg_wal_lsn_diff({current}, restart_lsn)::int8 AS retained_bytes"),
    ]
    .join(", ")
}

fn parse(row: &Row) -> SlotInfo {
    let lsn = |c: &str| row.get(c).and_then(|v| v.parse().ok());
    SlotInfo {
        slot_name: row.get("slot_name").unwrap_or_default().to_owned(),
        plugin: row.get("plugin").map(str::to_owned),
        slot_type: row.get("slot_type").unwrap_or_default().to_owned(),
        database: row.get("database").map(str::to_owned),
        active: row.get("active") == Some("true"),
        active_pid: row.get("active_pid").and_then(|v| v.parse().ok()),
        restart_lsn: lsn("restart_lsn"),
        confirmed_flush_lsn: lsn("confirmed_flush_lsn"),
        wal_status: row.get("wal_status").map(str::to_owned),
        two_phase: row.get("two_phase").map(|v| v == "true"),
        failover: row.get("failover").map(|v| v == "true"),
        invalidation_reason: row.get("invalidation_reason").map(str::to_owned),
        inactive_since: row.get("inactive_since").map(str::to_owned),
        retained_bytes: row.get("retained_bytes").and_then(|v| v.parse().ok()),
    }
}

/// All slots, ordered by name.
pub async fn list(conn: &mut Connection) -> Result<Vec<SlotInfo>> {
    let sql = format!(
        "SELECT {} FROM pg_catalog.pg_replication_slots ORDER BY slot_name",
        select_list(conn.server_version_num())
    );
    Ok(conn.simple_query(&sql).await?.iter().map(parse).collect())
}

/// One slot by name.
pub async fn find(conn: &mut Connection, name: &str) -> Result<Option<SlotInfo>> {
    let sql = format!(
        "SELECT {} FROM pg_catalog.pg_replication_slots WHERE slot_name = {}",
        select_list(conn.server_version_num()),
        escape_literal(name)
    );
    Ok(conn.simple_query(&sql).await?.first().map(parse))
}

/// Changes to published tables (Insert, Update, Delete, Truncate) that slot `name`
/// would send after its confirmed position, counted by decoding the slot without
/// consuming it (`pg_logical_slot_peek_binary_changes`: the slot must be idle, the role
/// needs REPLICATION). Zero means that whoever consumed the slot up to its confirmed
/// position has applied everything published so far.
pub async fn published_changes_pending(
    conn: &mut Connection,
    name: &str,
    publications: &[String],
) -> Result<u64> {
    // pgoutput reads publication_names as a list of identifiers.
    let names: Vec<String> = publications
        .iter()
        .map(|p| crate::protocol::quote::ident(p))
        .collect();
    let sql = format!(
        "SELECT count(*) FROM pg_catalog.pg_logical_slot_peek_binary_changes({}, NULL, NULL, \
         'proto_version', '1', 'publication_names', {}) \
         WHERE pg_catalog.get_byte(data, 0) IN ({}, {}, {}, {})",
        escape_literal(name),
        escape_literal(&names.join(",")),
        b'I',
        b'U',
        b'D',
        b'T'
    );
    let rows = conn.simple_query(&sql).await?;
    Ok(rows
        .first()
        .and_then(|r| r.get_idx(0))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// The source's current WAL write position (`pg_current_wal_lsn()`).
pub async fn current_wal_lsn(conn: &mut Connection) -> Result<Lsn> {
    let rows = conn
        .simple_query("SELECT pg_catalog.pg_current_wal_lsn()::text")
        .await?;
    rows.first()
        .and_then(|r| r.get_idx(0))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::Config("the source did not report its WAL position".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_servers_get_nulls_for_missing_columns() {
        let q = select_list(120000);
        assert!(q.contains("NULL AS wal_status"));
        assert!(q.contains("NULL AS two_phase"));
        let q = select_list(170000);
        assert!(q.contains("wal_status AS wal_status"));
        assert!(q.contains("invalidation_reason"));
        assert!(!q.contains("conflicting"));
        assert!(select_list(160000).contains("conflicting"));
    }

    fn slot() -> SlotInfo {
        SlotInfo {
            slot_name: "s".into(),
            plugin: Some("pgoutput".into()),
            slot_type: "logical".into(),
            database: Some("db".into()),
            active: false,
            active_pid: None,
            restart_lsn: None,
            confirmed_flush_lsn: None,
            wal_status: Some("reserved".into()),
            two_phase: None,
            failover: None,
            invalidation_reason: None,
            inactive_since: None,
            retained_bytes: None,
        }
    }

    #[test]
    fn lost_slot_is_unusable_with_instructions() {
        let mut s = slot();
        s.check_usable(Some("db")).unwrap();
        s.wal_status = Some("lost".into());
        let msg = s.check_usable(Some("db")).unwrap_err().to_string();
        assert!(
            msg.contains("invalidated") && msg.contains("pgsub slot drop"),
            "{msg}"
        );
    }

    #[test]
    fn wrong_plugin_or_database_is_refused() {
        let mut s = slot();
        s.plugin = Some("test_decoding".into());
        assert!(s.check_usable(Some("db")).is_err());
        let s = slot();
        assert!(
            s.check_usable(Some("other"))
                .unwrap_err()
                .to_string()
                .contains("dbname=db")
        );
    }
}
