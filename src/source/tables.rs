//! The tables a set of publications publishes, with their published columns and row
//! filters, read from the source's catalogs (`pg_publication_tables`; column lists and
//! row filters exist from PostgreSQL 15).

use crate::pg::ident::literal as escape_literal;
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
    /// Row filter (PostgreSQL 15+), SQL text: the OR of every publication's filter, or
    /// none when any publishes the table without one.
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
    /// Type modifier (`atttypmod`; -1 for none).
    pub type_modifier: i32,
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

/// What one publication says of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Membership {
    relid: u32,
    schema: String,
    name: String,
    replica_identity: String,
    partitioned: bool,
    /// The published columns (PostgreSQL 15+; every column when there is no list).
    columns: Option<Vec<String>>,
    /// The publication's row filter for this table (15+).
    row_filter: Option<String>,
    /// Ancestors of a partition.
    ancestors: Vec<u32>,
}

/// The tables of several publications, as the built-in subscription takes them:
///
/// - a partition whose ancestor is also in the set (published through the root by some
///   publication) is left out: its rows are copied, and its changes arrive, as the
///   root's — never twice;
/// - the row filter is the OR of every publication's filter for the table, and none at
///   all when any publication publishes it without one (no WHERE, FOR ALL TABLES, or
///   TABLES IN SCHEMA);
/// - publications that give the table different column lists are refused, as
///   PostgreSQL refuses them.
fn combine(members: Vec<Membership>) -> Result<Vec<(Membership, Option<String>)>> {
    let relids: std::collections::HashSet<u32> = members.iter().map(|m| m.relid).collect();
    let mut by_rel: std::collections::BTreeMap<u32, Vec<Membership>> = Default::default();
    for m in members {
        if m.ancestors.iter().any(|a| relids.contains(a)) {
            continue;
        }
        by_rel.entry(m.relid).or_default().push(m);
    }
    let mut out = Vec::new();
    for (_, ms) in by_rel {
        let first = ms[0].clone();
        let mut lists: Vec<Vec<String>> = ms.iter().filter_map(|m| m.columns.clone()).collect();
        for l in &mut lists {
            l.sort();
        }
        lists.dedup();
        if lists.len() > 1 {
            return Err(Error::Config(format!(
                "the publications give table {}.{} different column lists, which PostgreSQL refuses for one subscription too (\"cannot use different column lists for table in different publications\"): subscribe to publications that publish the same columns of it",
                first.schema, first.name
            )));
        }
        let filter = if ms.iter().any(|m| m.row_filter.is_none()) {
            None
        } else {
            let mut fs: Vec<String> = ms.iter().filter_map(|m| m.row_filter.clone()).collect();
            fs.sort();
            fs.dedup();
            Some(if fs.len() == 1 {
                fs.remove(0)
            } else {
                fs.iter()
                    .map(|f| format!("({f})"))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            })
        };
        out.push((first, filter));
    }
    Ok(out)
}

/// Every table the publications publish, ordered by schema and name.
pub async fn published_tables(
    conn: &mut Connection,
    pubs: &[String],
) -> Result<Vec<PublishedTable>> {
    let v = conn.server_version_num();
    let (attnames, rowfilter) = if v >= 150000 {
        ("pg_catalog.to_json(pt.attnames)::text", "pt.rowfilter")
    } else {
        ("NULL::text", "NULL::text")
    };
    let ancestors = if v >= 120000 {
        "CASE WHEN c.relispartition THEN (SELECT pg_catalog.string_agg(a.relid::oid::int8::text, ',') \
         FROM pg_catalog.pg_partition_ancestors(c.oid) a WHERE a.relid <> c.oid) END"
    } else {
        "NULL::text"
    };
    let sql = format!(
        "SELECT c.oid, pt.schemaname::text, pt.tablename::text, {attnames}, {rowfilter}, \
                c.relreplident::text, c.relkind::text, {ancestors} \
         FROM pg_catalog.pg_publication_tables pt \
         JOIN pg_catalog.pg_namespace n ON n.nspname = pt.schemaname \
         JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename \
         WHERE pt.pubname IN ({}) ORDER BY c.oid, pt.pubname",
        list(pubs)
    );
    let rows = conn.simple_query(&sql).await?;
    let mut members = Vec::new();
    for r in rows {
        let columns = match r.get_idx(3) {
            Some(json) => Some(serde_json::from_str::<Vec<String>>(json).map_err(|e| {
                Error::Config(format!("the source's pg_publication_tables.attnames did not read as a list of names ({e}): {json}"))
            })?),
            None => None,
        };
        members.push(Membership {
            relid: r.get_idx(0).and_then(|v| v.parse().ok()).unwrap_or(0),
            schema: r.get_idx(1).unwrap_or_default().to_owned(),
            name: r.get_idx(2).unwrap_or_default().to_owned(),
            columns,
            row_filter: r.get_idx(4).map(str::to_owned),
            replica_identity: r.get_idx(5).unwrap_or("d").to_owned(),
            partitioned: r.get_idx(6) == Some("p"),
            ancestors: r
                .get_idx(7)
                .map(|a| a.split(',').filter_map(|x| x.parse().ok()).collect())
                .unwrap_or_default(),
        });
    }
    let mut tables = Vec::new();
    for (m, filter) in combine(members)? {
        let found = Found {
            relid: m.relid,
            schema: m.schema,
            name: m.name,
            replica_identity: m.replica_identity,
            partitioned: m.partitioned,
        };
        tables.push(describe(conn, found, m.columns, filter).await?);
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
                         THEN pg_catalog.pg_get_expr(d.adbin, d.adrelid) END, {generated}, a.atttypmod \
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
            type_modifier: c.get_idx(6).and_then(|v| v.parse().ok()).unwrap_or(-1),
        })
        .collect();
    let generated_columns = all
        .iter()
        .filter(|c| c.generated)
        .map(|c| c.name.clone())
        .collect();
    // The publication's columns (a list, or every column but generated ones), in the
    // table's order. Only PostgreSQL 18 publishes generated columns, where the list
    // names them; earlier ones name them in pg_publication_tables but never send them.
    let generated_published = conn.server_version_num() >= 180000;
    let columns = all
        .into_iter()
        .filter(|c| match &only {
            Some(o) => o.contains(&c.name) && (generated_published || !c.generated),
            None => !c.generated,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn m(
        relid: u32,
        filter: Option<&str>,
        columns: Option<&[&str]>,
        ancestors: &[u32],
    ) -> Membership {
        Membership {
            relid,
            schema: "s".into(),
            name: format!("t{relid}"),
            replica_identity: "d".into(),
            partitioned: false,
            columns: columns.map(|c| c.iter().map(|x| (*x).to_owned()).collect()),
            row_filter: filter.map(str::to_owned),
            ancestors: ancestors.to_vec(),
        }
    }

    #[test]
    fn row_filters_of_several_publications_are_ored_and_one_without_wins() {
        let both = combine(vec![
            m(1, Some("a > 1"), None, &[]),
            m(1, Some("b < 2"), None, &[]),
        ])
        .unwrap();
        assert_eq!(both[0].1.as_deref(), Some("(a > 1) OR (b < 2)"));
        let same = combine(vec![
            m(1, Some("a > 1"), None, &[]),
            m(1, Some("a > 1"), None, &[]),
        ])
        .unwrap();
        assert_eq!(same[0].1.as_deref(), Some("a > 1"));
        let unfiltered =
            combine(vec![m(1, Some("a > 1"), None, &[]), m(1, None, None, &[])]).unwrap();
        assert_eq!(unfiltered[0].1, None);
    }

    #[test]
    fn a_partition_whose_root_is_published_is_left_to_the_root() {
        let t = combine(vec![
            m(10, None, None, &[]),
            m(11, None, None, &[10]),
            m(12, None, None, &[99]),
        ])
        .unwrap();
        let ids: Vec<u32> = t.iter().map(|(m, _)| m.relid).collect();
        assert_eq!(ids, vec![10, 12]);
    }

    #[test]
    fn different_column_lists_are_refused_and_the_same_in_any_order_accepted() {
        let e = combine(vec![
            m(1, None, Some(&["a", "b"]), &[]),
            m(1, None, Some(&["a", "c"]), &[]),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("different column lists") && e.contains("s.t1"),
            "{e}"
        );
        assert!(
            combine(vec![
                m(1, None, Some(&["a", "b"]), &[]),
                m(1, None, Some(&["b", "a"]), &[])
            ])
            .is_ok()
        );
    }
}
