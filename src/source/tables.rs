//! The tables a set of publications publishes, with their published columns and row
//! filters, read from the source's catalogs (`pg_publication_tables`; column lists and
//! row filters exist from PostgreSQL 15).

use postgres_protocol::escape::escape_literal;
use serde::Serialize;

use crate::conn::Connection;
use crate::error::{Error, Result};

/// One published table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedTable {
    /// Relation OID on the source.
    pub relid: u32,
    /// Schema.
    pub schema: String,
    /// Table name.
    pub name: String,
    /// Published columns, in column order, with their types (`format_type`).
    pub columns: Vec<PublishedColumn>,
    /// Row filter (PostgreSQL 15+), SQL text.
    pub row_filter: Option<String>,
    /// `relreplident`: d, n, f or i.
    pub replica_identity: String,
    /// Primary key or replica-identity index columns.
    pub key_columns: Vec<String>,
    /// Partitioned table (`relkind = p`).
    pub partitioned: bool,
    /// Generated columns, which the stream does not carry (before PostgreSQL 18).
    pub generated_columns: Vec<String>,
}

/// One published column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedColumn {
    /// Name.
    pub name: String,
    /// Type as `format_type` spells it.
    pub type_sql: String,
    /// Type OID on the source.
    pub type_oid: u32,
    /// NOT NULL.
    pub not_null: bool,
    /// Default expression, when it is a constant (no function calls or column refs).
    pub constant_default: Option<String>,
    /// Generated column (not published before PostgreSQL 18).
    pub generated: bool,
}

impl PublishedTable {
    /// `schema.table`.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

fn list(pubs: &[String]) -> String {
    pubs.iter()
        .map(|p| escape_literal(p))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether any of the publications publishes UPDATE or DELETE.
pub async fn publishes_changes(conn: &mut Connection, pubs: &[String]) -> Result<bool> {
    let rows = conn
        .simple_query(&format!(
            "SELECT bool_or(pubupdate OR pubdelete)::text FROM pg_catalog.pg_publication WHERE pubname IN ({})",
            list(pubs)
        ))
        .await?;
    Ok(rows.first().and_then(|r| r.get_idx(0)) == Some("true"))
}

/// Every table the publications publish, ordered by schema and name.
pub async fn published_tables(
    conn: &mut Connection,
    pubs: &[String],
) -> Result<Vec<PublishedTable>> {
    let v = conn.server_version_num();
    let (attnames, rowfilter) = if v >= 150000 {
        ("pt.attnames", "pt.rowfilter")
    } else {
        ("NULL::name[]", "NULL::text")
    };
    let sql = format!(
        "SELECT DISTINCT ON (c.oid) c.oid, pt.schemaname::text, pt.tablename::text, \
                array_to_string({attnames}, ','), {rowfilter}, c.relreplident::text, c.relkind::text \
         FROM pg_catalog.pg_publication_tables pt \
         JOIN pg_catalog.pg_namespace n ON n.nspname = pt.schemaname \
         JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename \
         WHERE pt.pubname IN ({}) ORDER BY c.oid",
        list(pubs)
    );
    let rows = conn.simple_query(&sql).await?;
    let mut tables = Vec::new();
    for r in rows {
        let only: Option<Vec<String>> = r
            .get_idx(3)
            .filter(|s| !s.is_empty())
            .map(|s| s.split(',').map(str::to_owned).collect());
        let found = Found {
            relid: r.get_idx(0).and_then(|v| v.parse().ok()).unwrap_or(0),
            schema: r.get_idx(1).unwrap_or_default().to_owned(),
            name: r.get_idx(2).unwrap_or_default().to_owned(),
            replica_identity: r.get_idx(5).unwrap_or("d").to_owned(),
            partitioned: r.get_idx(6) == Some("p"),
        };
        tables.push(describe(conn, found, only, r.get_idx(4).map(str::to_owned)).await?);
    }
    tables.sort_by(|a, b| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)));
    Ok(tables)
}

/// A table found in the catalogs, before its columns and key are read.
struct Found {
    relid: u32,
    schema: String,
    name: String,
    replica_identity: String,
    partitioned: bool,
}

/// Reads a table's columns (those in `only`, when the publication has a column list)
/// and its key: the replica-identity index, else the primary key.
async fn describe(
    conn: &mut Connection,
    t: Found,
    only: Option<Vec<String>>,
    row_filter: Option<String>,
) -> Result<PublishedTable> {
    let relid = t.relid;
    let generated = if conn.server_version_num() >= 120000 {
        "a.attgenerated <> ''"
    } else {
        "false"
    };
    let cols = conn
        .simple_query(&format!(
            "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.atttypid, a.attnotnull, \
                    CASE WHEN d.adbin IS NOT NULL AND pg_catalog.pg_get_expr(d.adbin, d.adrelid) !~ '[(]|nextval' \
                         THEN pg_catalog.pg_get_expr(d.adbin, d.adrelid) END, {generated} \
             FROM pg_catalog.pg_attribute a \
             LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE a.attrelid = {relid} AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
        ))
        .await?;
    let all: Vec<PublishedColumn> = cols
        .iter()
        .map(|c| PublishedColumn {
            name: c.get_idx(0).unwrap_or_default().to_owned(),
            type_sql: c.get_idx(1).unwrap_or_default().to_owned(),
            type_oid: c.get_idx(2).and_then(|v| v.parse().ok()).unwrap_or(0),
            not_null: c.get_idx(3) == Some("t"),
            constant_default: c.get_idx(4).map(str::to_owned),
            generated: c.get_idx(5) == Some("t"),
        })
        .collect();
    let generated_columns = all
        .iter()
        .filter(|c| c.generated)
        .map(|c| c.name.clone())
        .collect();
    let columns = all
        .into_iter()
        .filter(|c| !c.generated)
        .filter(|c| only.as_ref().is_none_or(|o| o.contains(&c.name)))
        .collect();
    let key_columns = conn
        .simple_query(&format!(
            "SELECT a.attname FROM pg_catalog.pg_index i \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = {relid} AND (i.indisreplident OR (i.indisprimary AND NOT EXISTS \
               (SELECT 1 FROM pg_catalog.pg_index r WHERE r.indrelid = {relid} AND r.indisreplident))) \
             ORDER BY array_position(i.indkey::int2[], a.attnum)"
        ))
        .await?
        .iter()
        .filter_map(|k| k.get_idx(0).map(str::to_owned))
        .collect();
    Ok(PublishedTable {
        relid,
        schema: t.schema,
        name: t.name,
        columns,
        row_filter,
        replica_identity: t.replica_identity,
        key_columns,
        partitioned: t.partitioned,
        generated_columns,
    })
}

/// The tables named on the command line (`schema.table`, or a bare name found through
/// the source's search path), all columns, no row filter.
pub async fn tables_by_name(
    conn: &mut Connection,
    names: &[String],
) -> Result<Vec<PublishedTable>> {
    let mut tables = Vec::new();
    for given in names {
        let rows = conn
            .simple_query(&format!(
                "SELECT c.oid, n.nspname, c.relname, c.relreplident::text, c.relkind::text \
                 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.oid = pg_catalog.to_regclass({}) AND c.relkind IN ('r', 'p')",
                escape_literal(given)
            ))
            .await?;
        let Some(r) = rows.first() else {
            return Err(Error::Config(format!(
                "table {given:?} does not exist on the source (or is not a table): name it as schema.table, as `\\dt` in psql shows it"
            )));
        };
        let found = Found {
            relid: r.get_idx(0).and_then(|v| v.parse().ok()).unwrap_or(0),
            schema: r.get_idx(1).unwrap_or_default().to_owned(),
            name: r.get_idx(2).unwrap_or_default().to_owned(),
            replica_identity: r.get_idx(3).unwrap_or("d").to_owned(),
            partitioned: r.get_idx(4) == Some("p"),
        };
        tables.push(describe(conn, found, None, None).await?);
    }
    Ok(tables)
}
