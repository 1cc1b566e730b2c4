//! pgsub's own state on the destination, owned here and nowhere else: the `pgsub` schema,
//! its version, the upgrades from every earlier version, and every row pgsub writes to it.
//!
//! ```text
//! pgsub.meta       schema_version                                       (one row; v2+)
//! pgsub.progress   name (PK) · source_system_id · slot · publications[] · applied_lsn
//!                  · commit_ts · updated_at
//! pgsub.tables     name · relation · state (copying | partial (v4+) | ready) · snapshot_lsn
//!                  · snapshot (v3+)
//!                  · rows · bytes · started_at · finished_at   PK (name, relation)
//! pgsub.conflicts  name · relation · kind · count · last_key · last_at   (v2+)
//!                                                        PK (name, relation, kind)
//! pgsub.prepared   name · gid · prepare_lsn · prepared_at (v3+)        PK (name, gid)
//! ```
//!
//! Versions: 1 is `progress` and `tables` as the first pgsub made them (no `meta`); 2 adds
//! `meta` and `conflicts`; 3 adds `tables.snapshot` (the copy snapshot's transactions,
//! `pg_current_snapshot()`) and `prepared` (the mark a two-phase transaction leaves,
//! written inside it: see [`prepared`]); 4 adds the `partial` state of `tables` (a table
//! copied in chunks, some of which committed: its rows on the destination are pgsub's own
//! and are emptied before it is copied again). [`setup`] brings any earlier version to [`VERSION`] under an
//! advisory lock and refuses a newer one, so an old destination is upgraded and a newer
//! one is never misread. No connection string, and so no password, is ever stored here.

pub mod conflicts;
pub mod prepared;
pub mod progress;
pub mod tables;

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::pg::SqlError;

/// The schema version this pgsub writes.
pub const VERSION: i32 = 4;

/// Version 1: what the first pgsub made.
const V1: &str = "
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

/// Version 1 → 2: the version row and the conflict counts.
const V2: &str = "
CREATE TABLE IF NOT EXISTS pgsub.meta (schema_version integer NOT NULL);
CREATE TABLE IF NOT EXISTS pgsub.conflicts (
    name text NOT NULL,
    relation text NOT NULL,
    kind text NOT NULL,
    count bigint NOT NULL,
    last_key text,
    last_at timestamptz NOT NULL,
    PRIMARY KEY (name, relation, kind)
);
";

/// Version 2 → 3: the copy snapshot's transactions, and the marks of prepared
/// transactions.
const V3: &str = "
ALTER TABLE pgsub.tables ADD COLUMN IF NOT EXISTS snapshot text;
CREATE TABLE IF NOT EXISTS pgsub.prepared (
    name text NOT NULL,
    gid text NOT NULL,
    prepare_lsn pg_lsn NOT NULL,
    prepared_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, gid)
);
";

/// Version 3 → 4: the `partial` state of a table copied in chunks.
const V4: &str = "
ALTER TABLE pgsub.tables DROP CONSTRAINT IF EXISTS tables_state_check;
ALTER TABLE pgsub.tables ADD CONSTRAINT tables_state_check
    CHECK (state IN ('copying', 'partial', 'ready'));
";

fn err(what: &str) -> impl FnOnce(tokio_postgres::Error) -> Error + '_ {
    move |e| {
        let hint = if e.as_db_error().map(|d| d.code().code()) == Some("42501") {
            " (the destination role needs CREATE on the database to make the pgsub schema, or an existing pgsub schema it may write to)"
        } else {
            ""
        };
        Error::from(SqlError::new(format!("{what}{hint}"), e))
    }
}

/// The version of the `pgsub` schema on the destination: 0 when there is none.
pub async fn version(client: &Client) -> Result<i32> {
    let (meta, progress): (bool, bool) = client
        .query_typed(
            "SELECT pg_catalog.to_regclass('pgsub.meta') IS NOT NULL, \
                    pg_catalog.to_regclass('pgsub.progress') IS NOT NULL",
            &[],
        )
        .await
        .map_err(err("looking for pgsub's tables on the destination"))?
        .first()
        .map_or((false, false), |r| (r.get(0), r.get(1)));
    let recorded: Option<i32> = if meta {
        client
            .query_typed("SELECT max(schema_version) FROM pgsub.meta", &[])
            .await
            .map_err(err("reading pgsub.meta"))?
            .first()
            .and_then(|r| r.get(0))
    } else {
        None
    };
    Ok(found_version(meta, progress, recorded))
}

/// The version of what was found: no tables is 0, `progress` without a recorded version
/// is 1 (the first pgsub's, or an upgrade to 2 interrupted before it recorded itself: its
/// steps run again, and they are idempotent).
pub fn found_version(meta: bool, progress: bool, recorded: Option<i32>) -> i32 {
    match (meta, recorded) {
        (true, Some(v)) => v,
        (_, None) | (false, _) => i32::from(progress),
    }
}

/// The steps that bring version `found` to [`VERSION`], in order; none when it is
/// current; an error for a newer version (never misread) or one below 0.
pub fn upgrade_steps(found: i32) -> Result<Vec<&'static str>> {
    if found > VERSION {
        return Err(Error::Config(format!(
            "the destination's pgsub schema is version {found}, newer than this pgsub understands (version {VERSION}): run a pgsub at least as new as the one that wrote it"
        )));
    }
    if found < 0 {
        return Err(Error::Definite(format!(
            "pgsub.meta records schema version {found}, which no pgsub writes: the row was changed by hand; set it to the version of the tables found"
        )));
    }
    let mut steps = Vec::new();
    if found < 1 {
        steps.push(V1);
    }
    if found < 2 {
        steps.push(V2);
    }
    if found < 3 {
        steps.push(V3);
    }
    if found < 4 {
        steps.push(V4);
    }
    Ok(steps)
}

/// Creates pgsub's schema, or upgrades it to [`VERSION`]; refuses a newer one.
pub async fn setup(client: &Client) -> Result<()> {
    let found = version(client).await?;
    if upgrade_steps(found)?.is_empty() {
        return Ok(());
    }
    // One session upgrades at a time; the others find the work done.
    client
        .batch_execute("BEGIN; SELECT pg_catalog.pg_advisory_xact_lock(7170530211)")
        .await
        .map_err(err("locking pgsub's schema for its upgrade"))?;
    let result = upgrade(client).await;
    if result.is_err() {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    result?;
    if found > 0 {
        tracing::info!(
            from = found,
            to = VERSION,
            "upgraded pgsub's schema on the destination"
        );
    }
    Ok(())
}

/// Upgrades the schema found (under the lock) to [`VERSION`] and commits. Every step,
/// the version's record and the COMMIT go as one batch: one round trip.
async fn upgrade(client: &Client) -> Result<()> {
    let found = version(client).await?;
    let mut batch = upgrade_steps(found)?.join(";\n");
    batch.push_str(&format!(
        ";\nDELETE FROM pgsub.meta; INSERT INTO pgsub.meta (schema_version) VALUES ({VERSION});\nCOMMIT"
    ));
    client.batch_execute(&batch).await.map_err(err(
        "creating or upgrading pgsub's tables on the destination, and recording their version",
    ))?;
    Ok(())
}

/// Whether the role may read pgsub's tables (`status` on a destination it does not own).
pub async fn readable(client: &Client) -> Result<bool> {
    client
        .query_one(
            "SELECT pg_catalog.to_regclass('pgsub.progress') IS NOT NULL \
             AND pg_catalog.has_table_privilege('pgsub.progress', 'SELECT')",
            &[],
        )
        .await
        .map(|r| r.get(0))
        .map_err(err("looking for pgsub.progress"))
}

/// The statements that remove every row of subscription `name` (for a caller that shows
/// what it runs, as `handoff --dry-run` does). Needs the current version of the schema.
pub fn remove_statements(name: &str) -> String {
    let n = crate::pg::ident::literal(name);
    format!(
        "DELETE FROM pgsub.progress WHERE name = {n}; DELETE FROM pgsub.tables WHERE name = {n}; \
         DELETE FROM pgsub.conflicts WHERE name = {n}; DELETE FROM pgsub.prepared WHERE name = {n}"
    )
}

/// What [`remove`] took away.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    /// The applied position of the progress row removed, if there was one.
    pub applied_lsn: Option<String>,
    /// Rows of `pgsub.tables` removed.
    pub tables: u64,
    /// Rows of `pgsub.conflicts` removed.
    pub conflicts: u64,
}

/// Removes every row of subscription `name`; nothing when pgsub's schema does not exist
/// (`None`).
pub async fn remove(client: &Client, name: &str) -> Result<Option<Removed>> {
    let v = version(client).await?;
    if v == 0 {
        return Ok(None);
    }
    let applied = client
        .query_opt(
            "DELETE FROM pgsub.progress WHERE name = $1 RETURNING applied_lsn::text",
            &[&name],
        )
        .await
        .map_err(err("removing the progress row"))?
        .map(|r| r.get(0));
    let tables = client
        .execute("DELETE FROM pgsub.tables WHERE name = $1", &[&name])
        .await
        .map_err(err("removing the table-copy rows"))?;
    let conflicts = if v >= 2 {
        client
            .execute("DELETE FROM pgsub.conflicts WHERE name = $1", &[&name])
            .await
            .map_err(err("removing the conflict counts"))?
    } else {
        0
    };
    if v >= 3 {
        client
            .execute("DELETE FROM pgsub.prepared WHERE name = $1", &[&name])
            .await
            .map_err(err("removing the marks of prepared transactions"))?;
    }
    Ok(Some(Removed {
        applied_lsn: applied,
        tables,
        conflicts,
    }))
}

/// Makes the destination's WAL durable up to now. pgsub's session commits asynchronously
/// (as the built-in worker's does), so what it just wrote may not survive a destination
/// crash for a moment. Two things must: the plan of which tables to copy, before the slot
/// is created (a plan lost after that would have the next run take the tables for
/// streamed-only, and never copy them), and the progress read at start, before it is
/// acknowledged to the source (it may have been committed by a pgsub killed just after,
/// or handed over from a native subscription's origin). One query when the WAL is flushed
/// already; otherwise one synchronous commit of a transaction that writes (one that only
/// took an XID would commit asynchronously all the same), which flushes everything
/// written before it.
pub async fn make_durable(client: &Client) -> Result<()> {
    let behind: bool = client
        .query_typed(
            "SELECT pg_catalog.pg_current_wal_insert_lsn() > pg_catalog.pg_current_wal_flush_lsn()",
            &[],
        )
        .await
        .map_err(err("reading the destination's WAL positions"))?
        .first()
        .is_none_or(|r| r.get(0));
    if behind {
        client
            .batch_execute(
                "BEGIN; SET LOCAL synchronous_commit = on; \
                 UPDATE pgsub.meta SET schema_version = schema_version; COMMIT",
            )
            .await
            .map_err(err("flushing the destination's WAL past pgsub's state"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_earlier_version_is_upgraded_step_by_step_and_a_newer_one_refused() {
        assert_eq!(found_version(false, false, None), 0);
        assert_eq!(found_version(false, true, None), 1);
        assert_eq!(found_version(true, true, None), 1);
        assert_eq!(found_version(true, false, None), 0);
        assert_eq!(found_version(true, true, Some(2)), 2);
        assert_eq!(upgrade_steps(0).unwrap(), vec![V1, V2, V3, V4]);
        assert_eq!(upgrade_steps(1).unwrap(), vec![V2, V3, V4]);
        assert_eq!(upgrade_steps(2).unwrap(), vec![V3, V4]);
        assert_eq!(upgrade_steps(3).unwrap(), vec![V4]);
        assert!(upgrade_steps(VERSION).unwrap().is_empty());
        let newer = upgrade_steps(VERSION + 1).unwrap_err();
        assert_eq!(newer.kind(), crate::error::ErrorKind::Config);
        assert!(newer.to_string().contains("newer than this pgsub"));
        assert_eq!(
            upgrade_steps(-1).unwrap_err().kind(),
            crate::error::ErrorKind::Definite
        );
    }

    #[test]
    fn stored_positions_that_are_not_positions_are_refused_never_read_as_zero() {
        assert_eq!(
            progress::stored_lsn("s", "16/B374D848").unwrap(),
            "16/B374D848".parse().unwrap()
        );
        let e = progress::stored_lsn("s", "garbage").unwrap_err();
        assert!(e.to_string().contains("\"garbage\""), "{e}");
        let ready = tables::CopyState::decode("ready", None).unwrap();
        assert!(ready.ready && ready.snapshot_lsn.is_none());
        let copying = tables::CopyState::decode("copying", Some("0/10")).unwrap();
        assert!(!copying.ready && copying.snapshot_lsn == Some("0/10".parse().unwrap()));
        assert!(tables::CopyState::decode("done", None).is_err());
        assert!(tables::CopyState::decode("ready", Some("x/y")).is_err());
    }
}
