//! Table definitions on the destination (`--schema verify|create|skip`).
//!
//! - `verify` (the default): every published table exists on the destination with every
//!   published column, of the same type; the first incompatibility stops pgsub with a
//!   message naming table, column and both types.
//! - `create`: missing schemas and tables are created from the source's catalogs (columns
//!   and types by name, NOT NULL, constant defaults, the primary key or a unique
//!   constraint on the replica-identity index); missing columns are added. User-defined
//!   types must already exist on the destination: pgsub names the missing ones.
//! - `skip`: nothing is checked; mismatches surface as errors when rows are applied.

use postgres_protocol::escape::escape_identifier;
use tokio_postgres::Client;

use crate::dest::SqlError;
use crate::error::{Error, Result};
use crate::pg::ident::qualified;
use crate::source::tables::{PublishedColumn, PublishedTable};

/// What to do about table definitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaMode {
    /// Check that the destination's tables match.
    Verify,
    /// Create what is missing.
    Create,
    /// Do nothing.
    Skip,
}

async fn dest_columns(
    client: &Client,
    t: &PublishedTable,
) -> Result<Option<Vec<(String, String)>>> {
    let rows = client
        .query(
            "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod) \
             FROM pg_catalog.pg_attribute a \
             JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') \
             AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&t.schema, &t.name],
        )
        .await
        .map_err(|e| {
            SqlError::new(
                format!(
                    "reading the definition of {} on the destination",
                    t.qualified_name()
                ),
                e,
            )
        })?;
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&t.schema, &t.name],
        )
        .await
        .map_err(|e| SqlError::new("looking up a destination table", e))?
        .is_some();
    Ok(exists.then(|| rows.iter().map(|r| (r.get(0), r.get(1))).collect()))
}

fn mismatch(t: &PublishedTable, c: &PublishedColumn, dest_type: &str) -> Error {
    Error::Config(format!(
        "column \"{}\" of table {} is {} on the source but {} on the destination: change the destination column's type to {}",
        c.name,
        t.qualified_name(),
        c.type_sql,
        dest_type,
        c.type_sql
    ))
}

/// Checks (and with `create`, makes) the destination's definitions of `tables`.
pub async fn prepare(client: &Client, tables: &[PublishedTable], mode: SchemaMode) -> Result<()> {
    if mode == SchemaMode::Skip {
        return Ok(());
    }
    for t in tables {
        match (dest_columns(client, t).await?, mode) {
            (None, SchemaMode::Verify) => {
                return Err(Error::Config(format!(
                    "table {} is published on the source but does not exist on the destination: create it (pg_dump --schema-only --table …), or run sync with --schema create",
                    t.qualified_name()
                )));
            }
            (None, _) => create_table(client, t).await?,
            (Some(have), mode) => {
                for c in &t.columns {
                    match have.iter().find(|(n, _)| n == &c.name) {
                        Some((_, ty)) if ty == &c.type_sql => {}
                        Some((_, ty)) => return Err(mismatch(t, c, ty)),
                        None if mode == SchemaMode::Create => add_column(client, t, c).await?,
                        None => {
                            return Err(Error::Config(format!(
                                "column \"{}\" ({}) of table {} is published on the source but does not exist on the destination: add it (ALTER TABLE {} ADD COLUMN {} {}), or run sync with --schema create",
                                c.name,
                                c.type_sql,
                                t.qualified_name(),
                                qualified(&t.schema, &t.name),
                                escape_identifier(&c.name),
                                c.type_sql
                            )));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

async fn check_types(client: &Client, t: &PublishedTable, cols: &[&PublishedColumn]) -> Result<()> {
    let mut missing = Vec::new();
    for c in cols {
        if client
            .query_opt("SELECT $1::text::regtype", &[&c.type_sql])
            .await
            .is_err()
        {
            missing.push(format!("{} (column \"{}\")", c.type_sql, c.name));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::Config(format!(
        "table {} uses types that do not exist on the destination: {}; create them there first (CREATE TYPE / CREATE DOMAIN, e.g. from pg_dump --schema-only)",
        t.qualified_name(),
        missing.join(", ")
    )))
}

fn column_sql(c: &PublishedColumn) -> String {
    let mut s = format!("{} {}", escape_identifier(&c.name), c.type_sql);
    if c.not_null {
        s.push_str(" NOT NULL");
    }
    if let Some(d) = &c.constant_default {
        s.push_str(&format!(" DEFAULT {d}"));
    }
    s
}

async fn create_table(client: &Client, t: &PublishedTable) -> Result<()> {
    check_types(client, t, &t.columns.iter().collect::<Vec<_>>()).await?;
    let mut parts: Vec<String> = t.columns.iter().map(column_sql).collect();
    let keys_published = !t.key_columns.is_empty()
        && t.key_columns
            .iter()
            .all(|k| t.columns.iter().any(|c| &c.name == k));
    if keys_published {
        let list = t
            .key_columns
            .iter()
            .map(|k| escape_identifier(k))
            .collect::<Vec<_>>()
            .join(", ");
        parts.push(format!("PRIMARY KEY ({list})"));
    }
    let sql = format!(
        "CREATE SCHEMA IF NOT EXISTS {}; CREATE TABLE {} ({})",
        escape_identifier(&t.schema),
        qualified(&t.schema, &t.name),
        parts.join(", ")
    );
    client.batch_execute(&sql).await.map_err(|e| {
        SqlError::new(
            format!("creating table {} on the destination", t.qualified_name()),
            e,
        )
    })?;
    tracing::info!(table = %t.qualified_name(), "created table on the destination");
    Ok(())
}

async fn add_column(client: &Client, t: &PublishedTable, c: &PublishedColumn) -> Result<()> {
    check_types(client, t, &[c]).await?;
    let mut col = c.clone();
    col.not_null = false; // existing rows have no value for it
    let sql = format!(
        "ALTER TABLE {} ADD COLUMN {}",
        qualified(&t.schema, &t.name),
        column_sql(&col)
    );
    client.batch_execute(&sql).await.map_err(|e| {
        SqlError::new(
            format!("adding column \"{}\" to {}", c.name, t.qualified_name()),
            e,
        )
    })?;
    tracing::info!(table = %t.qualified_name(), column = %c.name, "added column on the destination");
    Ok(())
}
