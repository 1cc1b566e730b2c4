//! Where a source relation's rows go: the destination table of the same schema and name,
//! its columns matched to the source's by name (never by position or OID), and the
//! columns that identify a row.
//!
//! A Relation message describes the published columns in order; row messages carry
//! values in that order. A [`Target`] maps each of those positions to a destination column
//! (with its type, for the casts in [`super::sql`]), and is rebuilt whenever a new
//! Relation message arrives for the relation, since columns may have been added or
//! dropped on the source.

use tokio_postgres::Client;

use super::sql::{Col, qualified};
use crate::dest::SqlError;
use crate::error::{Error, Result};
use crate::pgoutput::{Relation, RelationColumn, ReplicaIdentity};
use crate::stream::relations::RelationCache;

/// The destination of one source relation.
#[derive(Debug, Clone)]
pub struct Target {
    /// `"schema"."table"` on the destination.
    pub table: String,
    /// `schema.table`, for messages.
    pub name: String,
    /// Destination column for each published source column, in the source's order.
    pub cols: Vec<Col>,
    /// Positions (in the source's order) of the replica-identity columns.
    pub key: Vec<usize>,
    /// The source's replica identity.
    pub replica_identity: ReplicaIdentity,
}

impl Target {
    /// The columns at `positions`.
    pub fn cols_at(&self, positions: &[usize]) -> Vec<&Col> {
        positions.iter().map(|&i| &self.cols[i]).collect()
    }

    /// Every column.
    pub fn all_cols(&self) -> Vec<&Col> {
        self.cols.iter().collect()
    }
}

/// A destination column as the catalog describes it.
#[derive(Debug, Clone)]
struct DestColumn {
    name: String,
    type_sql: String,
    generated: bool,
}

async fn dest_columns(
    client: &Client,
    schema: &str,
    table: &str,
) -> Result<Option<Vec<DestColumn>>> {
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| SqlError::new("reading the destination's version", e))?
        .get(0);
    let generated = if version >= 120000 {
        "a.attgenerated <> ''"
    } else {
        "false"
    };
    let rows = client
        .query(
            &format!(
                "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), {generated} \
                 FROM pg_catalog.pg_attribute a \
                 JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') \
                 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
            ),
            &[&schema, &table],
        )
        .await
        .map_err(|e| SqlError::new(format!("reading the columns of {schema}.{table} on the destination"), e))?;
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        rows.iter()
            .map(|r| DestColumn {
                name: r.get(0),
                type_sql: r.get(1),
                generated: r.get(2),
            })
            .collect(),
    ))
}

/// The destination's spelling of a source column's type: built-in types (OIDs below
/// 10000 are the same on every server) through `format_type`, user types by the name
/// their Type message gave.
async fn type_sql(client: &Client, c: &RelationColumn, types: &RelationCache) -> Result<String> {
    if let Some(t) = types.get_type(c.type_oid) {
        return Ok(qualified(
            if t.namespace.is_empty() {
                "pg_catalog"
            } else {
                &t.namespace
            },
            &t.name,
        ));
    }
    let oid = c.type_oid;
    client
        .query_one(
            "SELECT pg_catalog.format_type($1::int8::oid, $2)",
            &[&i64::from(oid), &c.type_modifier],
        )
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::from(SqlError::new(format!("naming the type with OID {oid}"), e)))
}

/// Builds the target of `rel` from the destination's catalog. With `add_columns`, a
/// published column the destination lacks is added (`--schema create`); otherwise it is
/// an error naming it.
pub async fn resolve(
    client: &Client,
    rel: &Relation,
    types: &RelationCache,
    add_columns: bool,
) -> Result<Target> {
    let schema = rel.schema();
    let name = format!("{schema}.{}", rel.name);
    let Some(mut dest) = dest_columns(client, schema, &rel.name).await? else {
        return Err(Error::Config(format!(
            "table {name} is published on the source but does not exist on the destination: create it (pg_dump --schema-only, or run sync with --schema create)"
        )));
    };
    for c in &rel.columns {
        if add_columns && !dest.iter().any(|d| d.name == c.name) {
            let ty = type_sql(client, c, types).await?;
            let sql = format!(
                "ALTER TABLE {} ADD COLUMN {} {ty}",
                qualified(schema, &rel.name),
                postgres_protocol::escape::escape_identifier(&c.name)
            );
            client
                .batch_execute(&sql)
                .await
                .map_err(|e| SqlError::new(format!("adding column \"{}\" to {name}", c.name), e))?;
            tracing::info!(table = %name, column = %c.name, r#type = %ty, "added a column the source added");
            dest.push(DestColumn {
                name: c.name.clone(),
                type_sql: ty,
                generated: false,
            });
        }
    }
    let mut cols = Vec::with_capacity(rel.columns.len());
    for c in &rel.columns {
        let Some(d) = dest.iter().find(|d| d.name == c.name) else {
            return Err(Error::Config(format!(
                "column \"{}\" of table {name} is published on the source but does not exist on the destination: add it there (ALTER TABLE {} ADD COLUMN …), or run sync with --schema create",
                c.name,
                qualified(schema, &rel.name)
            )));
        };
        if d.generated {
            return Err(Error::Config(format!(
                "column \"{}\" of table {name} is a generated column on the destination, but the source publishes values for it: make it an ordinary column on the destination, or stop publishing it",
                c.name
            )));
        }
        cols.push(Col {
            name: d.name.clone(),
            type_sql: d.type_sql.clone(),
        });
    }
    let key = rel
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.is_key())
        .map(|(i, _)| i)
        .collect();
    Ok(Target {
        table: qualified(schema, &rel.name),
        name,
        cols,
        key,
        replica_identity: rel.replica_identity,
    })
}
