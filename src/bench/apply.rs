//! `bench apply`: a recording replayed into a scratch database, to measure the apply path
//! without a source in the way.
//!
//! ```text
//!  recording ─► its Relation messages ─► CREATE DATABASE pgsub_bench_<pid> ─► the tables
//!      (columns by their type OIDs, formatted by the destination; the replica identity's
//!       key as the primary key) ─► replay (sync --input's path, progress and all)
//!      ─► report ─► the scratch database and pgsub's origin dropped (unless --keep)
//! ```
//!
//! The tables start empty: a recording made while its tables already held rows finds
//! nothing for the updates and deletes of those rows; they are counted as conflicts and
//! shown, and cost about what a found row costs. Types are found by OID, so a column of a
//! user-defined type (whose OID is the source's own) is refused, named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tokio_postgres::Client;

use super::{Applied, Report};
use crate::conninfo::Conninfo;
use crate::error::{Error, Result};
use crate::pg::SqlError;
use crate::pgoutput::PgOutput;
use crate::pgoutput::{Relation, ReplicaIdentity};
use crate::protocol::quote::{ident, qualified};
use crate::replicate::offline::Offline;
use crate::stream::Event;
use crate::sync::replay::{self, ReplayOptions};

/// OIDs below this are the built-in objects' (PostgreSQL's `FirstNormalObjectId`): the
/// same on every server.
const FIRST_NORMAL_OBJECT_ID: u32 = 16384;

/// The subscription name the replay's progress is kept under in the scratch database.
const NAME: &str = "bench";

/// Options of `bench apply`.
#[derive(Debug, Clone)]
pub struct ApplyBench {
    /// The recording.
    pub input: PathBuf,
    /// A database of the destination server, to create the scratch database from.
    pub dest: Conninfo,
    /// Keep the scratch database (and print its name).
    pub keep: bool,
}

/// The tables of a recording: each relation's last definition, its columns those of
/// every definition (a column added mid-recording is there from the start).
pub fn tables_of(path: &Path) -> Result<BTreeMap<String, Relation>> {
    let mut rec = Offline::open(path)?;
    let mut tables: BTreeMap<String, Relation> = BTreeMap::new();
    while let Some(event) = rec.next_event()? {
        if let Event::Message {
            msg: PgOutput::Relation(r),
            ..
        } = &event
        {
            let mut r = r.clone();
            if let Some(before) = tables.remove(&r.qualified_name()) {
                for c in before.columns {
                    if !r.columns.iter().any(|n| n.name == c.name) {
                        r.columns.push(c);
                    }
                }
            }
            tables.insert(r.qualified_name(), r);
        }
    }
    Ok(tables)
}

/// `CREATE TABLE` for `r`, its column types as the destination names `types` (in column
/// order).
pub fn create_table(r: &Relation, types: &[String]) -> String {
    let mut cols: Vec<String> = r
        .columns
        .iter()
        .zip(types)
        .map(|(c, t)| format!("{} {t}", ident(&c.name)))
        .collect();
    let key: Vec<String> = r
        .columns
        .iter()
        .filter(|c| c.is_key())
        .map(|c| ident(&c.name))
        .collect();
    if matches!(
        r.replica_identity,
        ReplicaIdentity::Default | ReplicaIdentity::Index
    ) && !key.is_empty()
    {
        cols.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    let table = qualified(r.schema(), &r.name);
    let mut sql = format!(
        "CREATE SCHEMA IF NOT EXISTS {}; CREATE TABLE {table} ({})",
        ident(r.schema()),
        cols.join(", ")
    );
    if r.replica_identity == ReplicaIdentity::Full {
        sql.push_str(&format!("; ALTER TABLE {table} REPLICA IDENTITY FULL"));
    }
    sql
}

async fn create_tables(client: &Client, tables: &BTreeMap<String, Relation>) -> Result<()> {
    for r in tables.values() {
        let mut types = Vec::new();
        for c in &r.columns {
            let row = if c.type_oid < FIRST_NORMAL_OBJECT_ID {
                client
                    .query_opt(
                        "SELECT format_type(oid, $2) FROM pg_type WHERE oid = $1::text::oid",
                        &[&c.type_oid.to_string(), &c.type_modifier],
                    )
                    .await
                    .map_err(|e| SqlError::new("looking up a column's type", e))?
            } else {
                None
            };
            let Some(row) = row else {
                return Err(Error::Config(format!(
                    "column {}.{} has type OID {} on the source, a user-defined type the scratch database cannot have: bench apply replays tables of built-in types only",
                    r.qualified_name(),
                    c.name,
                    c.type_oid
                )));
            };
            types.push(row.get(0));
        }
        client
            .batch_execute(&create_table(r, &types))
            .await
            .map_err(|e| {
                SqlError::new(
                    format!("creating {} in the scratch database", r.qualified_name()),
                    e,
                )
            })?;
    }
    Ok(())
}

/// Replays the recording into a scratch database and reports.
pub async fn run(
    opts: &ApplyBench,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<Report> {
    let tables = tables_of(&opts.input)?;
    let admin = crate::pg::client::connect_client(&opts.dest, "destination")
        .await
        .map_err(Error::from)?;
    let scratch = format!("pgsub_bench_{}", std::process::id());
    admin
        .batch_execute(&format!("CREATE DATABASE {}", ident(&scratch)))
        .await
        .map_err(|e| {
            if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
                Error::Config(
                    "bench apply replays into a scratch database it creates and drops: the destination role needs CREATEDB (or point --dest at a server where it has it)".into(),
                )
            } else {
                SqlError::new("creating the scratch database", e).into()
            }
        })?;
    let mut at = opts.dest.clone();
    at.dbname = Some(scratch.clone());
    let result = replay_into(opts, &at, &tables, shutdown).await;
    if opts.keep {
        tracing::info!(database = %scratch, "the scratch database is kept (--keep)");
    } else {
        drop_scratch(&admin, &at, &scratch).await;
    }
    result
}

async fn replay_into(
    opts: &ApplyBench,
    at: &Conninfo,
    tables: &BTreeMap<String, Relation>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<Report> {
    {
        let client = crate::pg::client::connect_client(at, "scratch database")
            .await
            .map_err(Error::from)?;
        create_tables(&client, tables).await?;
    }
    let cpu = super::cpu_seconds();
    let r = replay::replay(
        &ReplayOptions {
            input: opts.input.clone(),
            dest: at.clone(),
            name: Some(NAME.into()),
            until: None,
            spool_dir: None,
            on_conflict: crate::apply::conflicts::OnConflict::Log,
            scratch: true,
        },
        shutdown,
    )
    .await?;
    let seconds = r.elapsed.as_secs_f64();
    let mut report = Report::of(
        "apply",
        format!("recording {} into a scratch database", opts.input.display()),
        &r.session,
        seconds,
        cpu,
    );
    let s = r.sink.stats();
    report.applied = Some(Applied {
        transactions: s.transactions,
        groups: s.groups,
        inserted: s.inserted,
        updated: s.updated,
        deleted: s.deleted,
        rows_per_second: (s.inserted + s.updated + s.deleted) as f64 / seconds.max(1e-6),
        conflicts: r.sink.conflicts().summary(),
    });
    Ok(report)
}

/// Drops pgsub's origin of the scratch database, then the database; says so when it
/// cannot.
async fn drop_scratch(admin: &Client, at: &Conninfo, scratch: &str) {
    if let Ok(c) = crate::pg::client::connect_client(at, "scratch database").await
        && let Err(e) = crate::dest::origin::drop(&c, NAME).await
    {
        tracing::warn!("dropping the scratch database's replication origin: {e}");
    }
    // The replay's sessions end as their clients drop: the server may still count them
    // for a moment.
    for attempt in 0..50 {
        match admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {}", ident(scratch)))
            .await
        {
            Ok(()) => return,
            Err(e)
                if attempt < 49
                    && e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => {
                tracing::warn!(database = %scratch, "the scratch database could not be dropped: {e}; drop it by hand");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgoutput::RelationColumn;

    fn column(name: &str, key: bool) -> RelationColumn {
        RelationColumn {
            flags: u8::from(key),
            name: name.into(),
            type_oid: 23,
            type_modifier: -1,
        }
    }

    fn relation(identity: ReplicaIdentity, cols: Vec<RelationColumn>) -> Relation {
        Relation {
            xid: None,
            relid: 1,
            namespace: "App".into(),
            name: "t\"x".into(),
            replica_identity: identity,
            columns: cols,
        }
    }

    #[test]
    fn the_replica_identity_key_becomes_the_primary_key_and_names_are_quoted() {
        let r = relation(
            ReplicaIdentity::Default,
            vec![column("id", true), column("v", false)],
        );
        let sql = create_table(&r, &["integer".into(), "text".into()]);
        assert_eq!(
            sql,
            r#"CREATE SCHEMA IF NOT EXISTS "App"; CREATE TABLE "App"."t""x" ("id" integer, "v" text, PRIMARY KEY ("id"))"#
        );
    }

    #[test]
    fn a_full_identity_table_has_no_key_and_replica_identity_full() {
        let r = relation(
            ReplicaIdentity::Full,
            vec![column("a", true), column("b", true)],
        );
        let sql = create_table(&r, &["integer".into(), "integer".into()]);
        assert!(!sql.contains("PRIMARY KEY"), "{sql}");
        assert!(sql.ends_with("REPLICA IDENTITY FULL"), "{sql}");
    }
}
