//! pgsub's own state on the destination: the `pgsub` schema with `pgsub.progress` (how far
//! each subscription has applied, written in the same transaction as the data it covers)
//! and `pgsub.tables` (the initial copy's state per table).
//!
//! ```text
//! pgsub.progress  name (PK) · source_system_id · slot · publications[] · applied_lsn
//!                 · commit_ts · updated_at
//! pgsub.tables    name · relation · state (copying | ready) · snapshot_lsn · rows · bytes
//!                 · started_at · finished_at            PK (name, relation)
//! ```
//!
//! `applied_lsn` is the Commit `end_lsn` of the last source transaction applied: on start
//! pgsub streams from it and skips every transaction whose `end_lsn` is at or below it,
//! which is what makes a crash at any instant safe. No connection string, and so no
//! password, is ever stored here.

use tokio_postgres::Client;

use super::super::dest::SqlError;
use crate::error::{Error, Result};
use crate::lsn::Lsn;

/// Creates the schema and tables if missing.
pub const SETUP_SQL: &str = "
CREATE SCHEMA IF NOT EXISTS pgsub;
CREATE TABLE IF NOT EXISTS pgsub.progress (
    name text PRIMARY KEY,
    source_system_id text NOT NULL,
    slot text NOT NULL,
    publications text[] NOT NULL,
    applied_lsn pg_lsn NOT NULL,
    commit_ts timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS pgsub.tables (
    name text NOT NULL,
    relation text NOT NULL,
    state text NOT NULL CHECK (state IN ('copying', 'ready')),
    snapshot_lsn pg_lsn,
    rows bigint,
    bytes bigint,
    started_at timestamptz,
    finished_at timestamptz,
    PRIMARY KEY (name, relation)
);
";

/// The stored progress of one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Source system identifier it was made against.
    pub source_system_id: String,
    /// Slot.
    pub slot: String,
    /// Publications.
    pub publications: Vec<String>,
    /// End of the last applied source transaction.
    pub applied_lsn: Lsn,
}

/// The statement that records progress; run inside the transaction that applies the
/// data. Parameters: name, system id, slot, publications, applied_lsn (text), commit
/// time (text, may be NULL).
pub const UPSERT_SQL: &str = "INSERT INTO pgsub.progress AS p \
    (name, source_system_id, slot, publications, applied_lsn, commit_ts, updated_at) \
    VALUES ($1, $2, $3, $4, $5::text::pg_lsn, $6::text::timestamptz, now()) \
    ON CONFLICT (name) DO UPDATE SET applied_lsn = excluded.applied_lsn, \
    commit_ts = excluded.commit_ts, updated_at = now(), slot = excluded.slot, \
    publications = excluded.publications \
    WHERE p.applied_lsn <= excluded.applied_lsn";

/// Creates `pgsub.progress` and `pgsub.tables` if missing.
pub async fn setup(client: &Client) -> Result<()> {
    client.batch_execute(SETUP_SQL).await.map_err(|e| {
        let hint = if e.as_db_error().map(|d| d.code().code()) == Some("42501") {
            " (the destination role needs CREATE on the database to make the pgsub schema, or an existing pgsub schema it may write to)"
        } else {
            ""
        };
        Error::from(SqlError::new(
            format!("creating pgsub's progress tables on the destination{hint}"),
            e,
        ))
    })
}

/// Records `applied` as the progress of `name` outside any apply transaction (the start
/// of a subscription: nothing was applied before it).
pub async fn record(
    client: &Client,
    name: &str,
    system_id: &str,
    slot: &str,
    publications: &[String],
    applied: Lsn,
) -> Result<()> {
    let applied = applied.to_string();
    client
        .execute(
            UPSERT_SQL,
            &[
                &name,
                &system_id,
                &slot,
                &publications,
                &applied,
                &None::<String>,
            ],
        )
        .await
        .map_err(|e| {
            SqlError::new(
                "recording the start of the subscription in pgsub.progress",
                e,
            )
        })?;
    Ok(())
}

/// Reads the progress of subscription `name`.
pub async fn read(client: &Client, name: &str) -> Result<Option<Progress>> {
    let row = client
        .query_opt(
            "SELECT source_system_id, slot, publications, applied_lsn::text \
             FROM pgsub.progress WHERE name = $1",
            &[&name],
        )
        .await
        .map_err(|e| SqlError::new("reading pgsub.progress", e))?;
    Ok(row.map(|r| Progress {
        source_system_id: r.get(0),
        slot: r.get(1),
        publications: r.get(2),
        applied_lsn: r.get::<_, String>(3).parse().unwrap_or_default(),
    }))
}
