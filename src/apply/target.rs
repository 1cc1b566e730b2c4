//! Where a source relation's rows go: the destination table of the same schema and name
//! ([`DestTable`]), its columns matched to the source's by name (never by position or
//! OID), the columns that find a row, and whether changes may be applied set-based.
//!
//! A Relation message describes the published columns in order; row messages carry
//! values in that order. A [`Target`] maps each of those positions to a destination column
//! and is rebuilt whenever a new Relation message arrives for the relation, since columns
//! may have been added or dropped on the source.
//!
//! How a row is found, as the built-in worker finds it:
//! - by the source's replica-identity key (`K` images, or the new row when the key did
//!   not change);
//! - under REPLICA IDENTITY FULL (`O` images), by the destination's own key (replica
//!   identity index, else primary key) when every column of it is published; otherwise
//!   by every column, each compared with its type's equality, NULL equal to NULL, and one
//!   matching row changed.

use tokio_postgres::Client;
use tokio_postgres::types::Type;

use super::table::{self, DestTable, Equality};
use super::values::ValueFormat;
use crate::error::{Error, Result};
use crate::pg::SqlError;
use crate::pg::ident;
use crate::pgoutput::{Relation, RelationColumn, ReplicaIdentity};
use crate::stream::relations::RelationCache;

/// A destination column, as statements use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Col {
    /// Column name (unquoted).
    pub name: String,
    /// The type values are cast to: the destination's, without its modifier.
    pub cast: String,
    /// The type of the parameters that carry its values: `text` for text values, the
    /// destination's type without its modifier ([`Col::cast`]) for binary ones.
    pub param: String,
    /// The destination type's OID.
    pub type_oid: u32,
    /// The source column's type with its modifier, for messages.
    pub source_type: String,
    /// The destination column's type with its modifier, for messages.
    pub dest_type: String,
    /// False for a generated column of the source that is generated on the destination
    /// too: the destination computes it.
    pub write: bool,
    /// `GENERATED ALWAYS AS IDENTITY` on the destination: inserted, never updated.
    pub identity_always: bool,
}

impl Col {
    /// The quoted name.
    pub fn ident(&self) -> String {
        ident::ident(&self.name)
    }
}

/// The destination of one source relation.
#[derive(Debug, Clone)]
pub struct Target {
    /// `"schema"."table"` on the destination.
    pub table: String,
    /// `schema.table`, for messages.
    pub name: String,
    /// `ONLY ` for a plain table, nothing for a partitioned one.
    pub only: &'static str,
    /// Destination column for each published source column, in the source's order.
    pub cols: Vec<Col>,
    /// Positions (in the source's order) of the source's replica-identity columns.
    pub key: Vec<usize>,
    /// Under REPLICA IDENTITY FULL: positions of the destination's key columns, when it
    /// has a key and every column of it is published.
    pub full_key: Option<Vec<usize>>,
    /// Updates and deletes are applied one row per statement, in source order.
    pub order_sensitive: bool,
    /// Inserts too (a row trigger fires).
    pub row_triggers: bool,
    /// Columns whose type has no equality: a row cannot be found by comparing every
    /// column (REPLICA IDENTITY FULL without a usable destination key).
    pub no_equality: Vec<String>,
    /// The format its values arrive in.
    pub format: ValueFormat,
}

impl Target {
    /// The columns at `positions`.
    pub fn cols_at(&self, positions: &[usize]) -> Vec<&Col> {
        positions.iter().map(|&i| &self.cols[i]).collect()
    }

    /// The names of the columns at `positions`.
    pub fn names_at(&self, positions: &[usize]) -> Vec<String> {
        positions
            .iter()
            .map(|&i| self.cols[i].name.clone())
            .collect()
    }

    /// The positions of every written column.
    pub fn written(&self) -> Vec<usize> {
        (0..self.cols.len())
            .filter(|&i| self.cols[i].write)
            .collect()
    }

    /// The positions an UPDATE may set: written, and not `GENERATED ALWAYS AS
    /// IDENTITY` on the destination.
    pub fn updatable(&self) -> Vec<usize> {
        (0..self.cols.len())
            .filter(|&i| self.cols[i].write && !self.cols[i].identity_always)
            .collect()
    }

    /// The columns that find a row of a change whose old image is `full` (the whole row)
    /// or a key: positions in the source's order, or `None` when every column is
    /// compared.
    pub fn match_key(&self, full: bool) -> Option<&[usize]> {
        if full {
            self.full_key.as_deref()
        } else {
            Some(&self.key)
        }
    }

    /// The columns of a value that did not fit, named with both types: the published
    /// columns whose destination type differs from the source's.
    pub fn narrower_columns(&self) -> String {
        let cols: Vec<String> = self
            .cols
            .iter()
            .filter(|c| c.source_type != c.dest_type)
            .map(|c| {
                format!(
                    "\"{}\" is {} on the source and {} on the destination",
                    c.name, c.source_type, c.dest_type
                )
            })
            .collect();
        if cols.is_empty() {
            format!(
                "every published column of {} has the source's type",
                self.name
            )
        } else {
            cols.join("; ")
        }
    }
}

/// The destination's spelling of a source column's type: built-in types (OIDs below
/// 10000 are the same on every server) through `format_type`, user types by the name
/// their Type message gave.
pub async fn source_type_sql(
    client: &Client,
    c: &RelationColumn,
    types: &RelationCache,
) -> Result<String> {
    let mut one = source_types_sql(client, std::slice::from_ref(c), types).await?;
    Ok(one.pop().unwrap_or_default())
}

/// [`source_type_sql`] of every column, in one round trip for all the built-in types.
pub async fn source_types_sql(
    client: &Client,
    cols: &[RelationColumn],
    types: &RelationCache,
) -> Result<Vec<String>> {
    let mut out: Vec<Option<String>> = cols
        .iter()
        .map(|c| {
            types.get_type(c.type_oid).map(|t| {
                ident::qualified(
                    if t.namespace.is_empty() {
                        "pg_catalog"
                    } else {
                        &t.namespace
                    },
                    &t.name,
                )
            })
        })
        .collect();
    let asked: Vec<usize> = (0..cols.len()).filter(|&i| out[i].is_none()).collect();
    if !asked.is_empty() {
        let oids: Vec<i64> = asked.iter().map(|&i| i64::from(cols[i].type_oid)).collect();
        let mods: Vec<i32> = asked.iter().map(|&i| cols[i].type_modifier).collect();
        let rows = client
            .query_typed(
                "SELECT pg_catalog.format_type(t.o::oid, t.m) \
                 FROM unnest($1::int8[], $2::int4[]) WITH ORDINALITY AS t(o, m, i) ORDER BY t.i",
                &[(&oids, Type::INT8_ARRAY), (&mods, Type::INT4_ARRAY)],
            )
            .await
            .map_err(|e| {
                Error::from(SqlError::new(
                    format!("naming the types with OIDs {oids:?}"),
                    e,
                ))
            })?;
        for (&i, row) in asked.iter().zip(rows) {
            out[i] = row.get(0);
        }
    }
    Ok(out.into_iter().map(Option::unwrap_or_default).collect())
}

/// How to resolve targets.
#[derive(Debug, Clone, Copy)]
pub struct ResolveOptions {
    /// Add a published column the destination lacks (`--schema create`).
    pub add_columns: bool,
    /// `session_replication_role = replica` is in effect.
    pub replica_role: bool,
    /// The format of the stream's values.
    pub format: ValueFormat,
}

/// Builds the target of `rel` from the destination's catalog. `source_generated`: the
/// columns that are generated on the source (published by PostgreSQL 18).
pub async fn resolve(
    client: &Client,
    rel: &Relation,
    types: &RelationCache,
    source_generated: &[String],
    opts: ResolveOptions,
    equality: &mut Equality,
) -> Result<Target> {
    let schema = rel.schema();
    let name = format!("{schema}.{}", rel.name);
    let missing_table = || {
        Error::Config(format!(
            "table {name} is published on the source but does not exist on the destination: create it (pg_dump --schema-only, or run sync with --schema create)"
        ))
    };
    let mut dest = table::read(client, schema, &rel.name, opts.replica_role)
        .await?
        .ok_or_else(missing_table)?;
    if opts.add_columns {
        let mut added = false;
        for c in &rel.columns {
            if dest.column(&c.name).is_none() {
                let ty = source_type_sql(client, c, types).await?;
                let sql = format!(
                    "ALTER TABLE {} ADD COLUMN {} {ty}",
                    dest.qualified(),
                    ident::ident(&c.name)
                );
                client.batch_execute(&sql).await.map_err(|e| {
                    SqlError::new(format!("adding column \"{}\" to {name}", c.name), e)
                })?;
                tracing::info!(table = %name, column = %c.name, r#type = %ty, "added a column the source added");
                added = true;
            }
        }
        if added {
            dest = table::read(client, schema, &rel.name, opts.replica_role)
                .await?
                .ok_or_else(missing_table)?;
        }
    }
    build(
        client,
        rel,
        types,
        source_generated,
        &dest,
        opts.format,
        equality,
    )
    .await
}

async fn build(
    client: &Client,
    rel: &Relation,
    types: &RelationCache,
    source_generated: &[String],
    dest: &DestTable,
    format: ValueFormat,
    equality: &mut Equality,
) -> Result<Target> {
    let name = dest.display();
    let mut cols = Vec::with_capacity(rel.columns.len());
    let mut no_equality = Vec::new();
    let mut source_types = source_types_sql(client, &rel.columns, types)
        .await?
        .into_iter();
    for c in &rel.columns {
        let Some(d) = dest.column(&c.name) else {
            return Err(Error::Config(format!(
                "column \"{}\" of table {name} is published on the source but does not exist on the destination: add it there (ALTER TABLE {} ADD COLUMN …), or run sync with --schema create",
                c.name,
                dest.qualified()
            )));
        };
        let generated_on_source = source_generated.contains(&c.name);
        if d.generated && !generated_on_source {
            return Err(Error::Config(format!(
                "column \"{}\" of table {name} is a generated column on the destination, but the source publishes values for it: make it an ordinary column on the destination, or stop publishing it",
                c.name
            )));
        }
        if !equality.has(client, d.type_oid).await? {
            no_equality.push(c.name.clone());
        }
        if format == ValueFormat::Binary
            && !d.generated
            && let Some(why) = super::values::binary_refusal(c.type_oid, d)
        {
            return Err(Error::BinaryRefused {
                column: format!("\"{}\" of table {name}", c.name),
                why,
            });
        }
        cols.push(Col {
            name: d.name.clone(),
            cast: d.base_type_sql.clone(),
            param: match format {
                ValueFormat::Text => "text".to_owned(),
                ValueFormat::Binary => d.base_type_sql.clone(),
            },
            type_oid: d.type_oid,
            source_type: source_types.next().unwrap_or_default(),
            dest_type: d.type_sql.clone(),
            write: !d.generated,
            identity_always: d.identity_always,
        });
    }
    let key: Vec<usize> = rel
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.is_key())
        .map(|(i, _)| i)
        .collect();
    let full = rel.replica_identity == ReplicaIdentity::Full;
    let full_key = dest.key.as_ref().filter(|_| full).and_then(|k| {
        k.iter()
            .map(|name| cols.iter().position(|c| &c.name == name))
            .collect::<Option<Vec<usize>>>()
    });
    let match_names: Vec<String> = match (&full_key, full) {
        (Some(k), _) => k.iter().map(|&i| cols[i].name.clone()).collect(),
        (None, false) => key.iter().map(|&i| cols[i].name.clone()).collect(),
        (None, true) => Vec::new(),
    };
    Ok(Target {
        table: dest.qualified(),
        name,
        only: dest.only(),
        order_sensitive: dest.order_sensitive(&match_names),
        row_triggers: dest.row_triggers,
        cols,
        key,
        full_key,
        no_equality,
        format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, source: &str, dest: &str) -> Col {
        Col {
            name: name.into(),
            cast: dest.into(),
            param: "text".into(),
            type_oid: 0,
            source_type: source.into(),
            dest_type: dest.into(),
            write: true,
            identity_always: false,
        }
    }

    #[test]
    fn a_value_too_wide_names_the_columns_with_both_types() {
        let t = Target {
            table: "\"s\".\"t\"".into(),
            name: "s.t".into(),
            only: "ONLY ",
            cols: vec![
                col("id", "integer", "integer"),
                col("v", "character varying(10)", "character varying(5)"),
            ],
            key: vec![0],
            full_key: None,
            order_sensitive: false,
            row_triggers: false,
            no_equality: vec![],
            format: ValueFormat::Text,
        };
        assert_eq!(
            t.narrower_columns(),
            "\"v\" is character varying(10) on the source and character varying(5) on the destination"
        );
        assert_eq!(t.match_key(false), Some(&[0][..]));
        assert_eq!(t.match_key(true), None);
    }
}
