//! Table definitions on the destination (`--schema verify|create|skip`).
//!
//! - `verify` (the default): every published table exists on the destination with every
//!   published column, of a type that reads the source's values ([`compat`]: the same
//!   type, or one that takes its text, with a warning where values can be rejected or
//!   rounded); the first incompatibility stops pgsub with a message naming table, column
//!   and both types. Under REPLICA IDENTITY FULL without a usable destination key, every
//!   column needs an equality operator.
//! - `create`: missing schemas and tables are created from the source's catalogs (columns
//!   and types by name, NOT NULL, constant defaults, the primary key or a unique
//!   constraint on the replica-identity index); missing columns are added. User-defined
//!   types must already exist on the destination: pgsub names the missing ones. The
//!   source's other indexes and unique constraints are built after the copy ([`indexes`]).
//! - `skip`: nothing is checked; mismatches surface as errors when rows are applied.

use crate::pg::ident::ident as escape_identifier;
use tokio_postgres::Client;

pub mod compat;
pub mod indexes;

use crate::apply::table::{self, DestColumn, DestTable, Equality};
use crate::error::{Error, Result};
use crate::pg::SqlError;
use crate::pg::ident::qualified;
use crate::source::tables::{PublishedColumn, PublishedTable};
use compat::{ColumnType, Compat};

/// What to do about table definitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaMode {
    /// Check that the destination's tables match.
    Verify,
    /// Create what is missing.
    Create,
    /// Do nothing.
    Skip,
}

fn refused(t: &PublishedTable, c: &PublishedColumn, dest_type: &str) -> Error {
    Error::Config(format!(
        "column \"{}\" of table {} is {} on the source but {} on the destination, which does not read the source's values: change the destination column's type to {} (or to text, which reads any value)",
        c.name,
        t.qualified_name(),
        c.type_sql,
        dest_type,
        c.type_sql
    ))
}

/// Checks one published column against the destination's: refused, warned about, or
/// accepted (see [`compat`]); a value for a column the destination generates is refused
/// unless the source generates it too (then the destination computes its own).
fn check_column(t: &PublishedTable, c: &PublishedColumn, d: &DestColumn) -> Result<()> {
    if d.generated && !c.generated {
        return Err(Error::Config(format!(
            "column \"{}\" of table {} is a generated column on the destination, but the source publishes values for it (the built-in worker refuses this too): make it an ordinary column on the destination, or leave it out of the publication's column list",
            c.name,
            t.qualified_name()
        )));
    }
    let source = ColumnType {
        oid: c.type_oid,
        typmod: c.type_modifier,
        sql: &c.type_sql,
    };
    let dest = ColumnType {
        oid: d.type_oid,
        typmod: d.typmod,
        sql: &d.type_sql,
    };
    match compat::compat(source, dest) {
        Compat::Same | Compat::Accepted => Ok(()),
        Compat::Warn(why) => {
            tracing::warn!(
                table = %t.qualified_name(),
                column = %c.name,
                source_type = %c.type_sql,
                dest_type = %d.type_sql,
                "the destination column's type differs from the source's: {why}"
            );
            Ok(())
        }
        Compat::Refused => Err(refused(t, c, &d.type_sql)),
    }
}

/// Under REPLICA IDENTITY FULL on the source, a destination without a usable key (its
/// replica-identity index or primary key, every column of it published) finds rows by
/// comparing every column: each needs an equality operator, as the built-in worker
/// requires. Names the columns that have none.
async fn check_full_identity(
    client: &Client,
    t: &PublishedTable,
    d: &DestTable,
    equality: &mut Equality,
) -> Result<()> {
    if t.replica_identity != "f" {
        return Ok(());
    }
    let usable_key = d
        .key
        .as_ref()
        .is_some_and(|k| k.iter().all(|k| t.columns.iter().any(|c| &c.name == k)));
    if usable_key {
        return Ok(());
    }
    let mut without = Vec::new();
    for c in &t.columns {
        if let Some(dc) = d.column(&c.name)
            && !dc.generated
            && !equality.has(client, dc.type_oid).await?
        {
            without.push(format!("\"{}\" ({})", c.name, dc.type_sql));
        }
    }
    if without.is_empty() {
        return Ok(());
    }
    Err(Error::Config(format!(
        "{} has REPLICA IDENTITY FULL on the source and no primary key or replica-identity index on the destination, so each update or delete finds its row by comparing every column; but {} ha{} no equality operator (the built-in worker refuses this too): give the destination table a primary key or a replica-identity index, or publish without those columns",
        t.qualified_name(),
        without.join(", "),
        if without.len() == 1 { "s" } else { "ve" }
    )))
}

/// Checks (and with `create`, makes) the destination's definitions of `tables`; returns
/// each as the destination has it then (`None`: missing, under `--schema skip`). Every
/// table's catalog is read at once (two round trips for all of them); a table created or
/// given columns is read again.
pub async fn prepare(
    client: &Client,
    tables: &[PublishedTable],
    mode: SchemaMode,
) -> Result<Vec<Option<DestTable>>> {
    let mut dests = table::read_all(
        client,
        tables.iter().map(|t| (t.schema.as_str(), t.name.as_str())),
    )
    .await?;
    if mode == SchemaMode::Skip {
        return Ok(dests);
    }
    let mut equality = Equality::default();
    for (t, slot) in tables.iter().zip(dests.iter_mut()) {
        let dest = match (slot.take(), mode) {
            (None, SchemaMode::Verify) => {
                return Err(Error::Config(format!(
                    "table {} is published on the source but does not exist on the destination: create it (pg_dump --schema-only --table …), or run sync with --schema create",
                    t.qualified_name()
                )));
            }
            (None, _) => {
                create_table(client, t).await?;
                *slot = table::read(client, &t.schema, &t.name, false).await?;
                continue;
            }
            (Some(d), _) => d,
        };
        let mut added = false;
        for c in &t.columns {
            match dest.column(&c.name) {
                Some(d) => check_column(t, c, d)?,
                None if mode == SchemaMode::Create => {
                    add_column(client, t, c).await?;
                    added = true;
                }
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
        let dest = if added {
            table::read(client, &t.schema, &t.name, false)
                .await?
                .unwrap_or(dest)
        } else {
            dest
        };
        check_full_identity(client, t, &dest, &mut equality).await?;
        *slot = Some(dest);
    }
    Ok(dests)
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
