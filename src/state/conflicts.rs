//! `pgsub.conflicts`: how many conflicts of each kind each subscription met on each
//! table, with the key of the last one. Added to in the transaction that applied the
//! changes, so the counts are exactly those of what the destination holds; a conflict that
//! stops pgsub is written in a transaction of its own after the rollback. The kinds are
//! defined here, with what is stored of them; `crate::apply::conflicts` says what is done
//! about each.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use crate::error::Result;
use crate::pg::SqlError;

/// What kind of conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictKind {
    /// An insert hit an existing unique key.
    InsertExists,
    /// An update found a row another origin wrote last (seen where the destination has
    /// `track_commit_timestamp` on).
    UpdateOriginDiffers,
    /// An update hit an existing unique key.
    UpdateExists,
    /// An update found no row.
    UpdateMissing,
    /// A delete found a row another origin wrote last.
    DeleteOriginDiffers,
    /// A delete found no row.
    DeleteMissing,
    /// An insert or update hit existing rows on more than one unique index.
    MultipleUniqueConflicts,
}

impl ConflictKind {
    /// The name PostgreSQL 18 gives it.
    pub fn name(self) -> &'static str {
        match self {
            ConflictKind::InsertExists => "insert_exists",
            ConflictKind::UpdateOriginDiffers => "update_origin_differs",
            ConflictKind::UpdateExists => "update_exists",
            ConflictKind::UpdateMissing => "update_missing",
            ConflictKind::DeleteOriginDiffers => "delete_origin_differs",
            ConflictKind::DeleteMissing => "delete_missing",
            ConflictKind::MultipleUniqueConflicts => "multiple_unique_conflicts",
        }
    }

    /// Every kind, in the order of PostgreSQL 18's `pg_stat_subscription_stats`.
    pub const ALL: [ConflictKind; 7] = [
        ConflictKind::InsertExists,
        ConflictKind::UpdateOriginDiffers,
        ConflictKind::UpdateExists,
        ConflictKind::UpdateMissing,
        ConflictKind::DeleteOriginDiffers,
        ConflictKind::DeleteMissing,
        ConflictKind::MultipleUniqueConflicts,
    ];
}

/// Conflicts of one kind on one table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    /// How many.
    pub count: u64,
    /// The key of the last one, as `(col, …)=(value, …)`, when known.
    pub last_key: Option<String>,
}

/// Adds `tallies` to the counts of subscription `name`.
pub async fn add(
    client: &Client,
    name: &str,
    tallies: &BTreeMap<(String, ConflictKind), Tally>,
) -> Result<()> {
    if tallies.is_empty() {
        return Ok(());
    }
    let mut relations = Vec::new();
    let mut kinds = Vec::new();
    let mut counts = Vec::new();
    let mut keys = Vec::new();
    for ((relation, kind), t) in tallies {
        relations.push(relation.clone());
        kinds.push(kind.name().to_owned());
        counts.push(t.count as i64);
        keys.push(t.last_key.clone());
    }
    client
        .execute(
            "INSERT INTO pgsub.conflicts AS c (name, relation, kind, count, last_key, last_at) \
             SELECT $1, r, k, n, l, now() FROM unnest($2::text[], $3::text[], $4::int8[], $5::text[]) AS u(r, k, n, l) \
             ON CONFLICT (name, relation, kind) DO UPDATE SET count = c.count + excluded.count, \
             last_key = coalesce(excluded.last_key, c.last_key), last_at = excluded.last_at",
            &[&name, &relations, &kinds, &counts, &keys],
        )
        .await
        .map_err(|e| SqlError::new("recording conflicts in pgsub.conflicts", e))?;
    Ok(())
}

/// One row of `pgsub.conflicts`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConflictRow {
    /// Subscription name.
    pub name: String,
    /// `schema.table`.
    pub relation: String,
    /// Kind (`update_missing` …).
    pub kind: String,
    /// How many.
    pub count: u64,
    /// The key of the last one.
    pub last_key: Option<String>,
    /// When the last one was recorded.
    pub last_at: String,
}

/// Every conflict count, for `status`; none before version 2 or when the role may not
/// read them.
pub async fn read(client: &Client) -> Result<Vec<ConflictRow>> {
    let readable: bool = client
        .query_one(
            "SELECT pg_catalog.to_regclass('pgsub.conflicts') IS NOT NULL \
             AND pg_catalog.has_table_privilege('pgsub.conflicts', 'SELECT')",
            &[],
        )
        .await
        .map_err(|e| SqlError::new("looking for pgsub.conflicts", e))?
        .get(0);
    if !readable {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT name, relation, kind, count, last_key, last_at::text FROM pgsub.conflicts \
             ORDER BY name, relation, kind",
            &[],
        )
        .await
        .map_err(|e| SqlError::new("reading pgsub.conflicts", e))?;
    Ok(rows
        .iter()
        .map(|r| ConflictRow {
            name: r.get(0),
            relation: r.get(1),
            kind: r.get(2),
            count: r.get::<_, i64>(3) as u64,
            last_key: r.get(4),
            last_at: r.get(5),
        })
        .collect())
}
