//! What the destination's catalog says about one table: its kind (a partitioned table
//! routes rows to its partitions, a plain one may have inheritance children that changes
//! must not reach), its columns with their types, its key (the replica-identity index,
//! else the primary key, as the built-in worker chooses), the other constraints that make
//! the order of changes observable, and whether row triggers fire.
//!
//! ```text
//!  pg_class ─ relkind, oid          pg_attribute ─ name, type with and without typmod,
//!  pg_index ─ key, unique/exclusion                   generated
//!  pg_trigger ─ row triggers enabled in this session (replica role: R and A; else O and A)
//!  pg_partition_tree ─ the indexes and triggers of every partition count too
//! ```

use std::collections::HashMap;

use tokio_postgres::Client;
use tokio_postgres::types::{ToSql, Type};

use crate::error::Result;
use crate::pg::SqlError;
use crate::pg::ident;

/// A destination column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestColumn {
    /// Name.
    pub name: String,
    /// Type OID.
    pub type_oid: u32,
    /// Type as `format_type` spells it, with its modifier (`character varying(5)`).
    pub type_sql: String,
    /// Type modifier (`atttypmod`; -1 for none).
    pub typmod: i32,
    /// The type without its modifier (`character varying`): values are cast to this, so
    /// that assigning to the column applies the modifier the way input does (an error
    /// for a value too long, never a silent cut). `character` and `bit` become `bpchar`
    /// and `varbit`: without a modifier they would mean one character, one bit.
    pub base_type_sql: String,
    /// A generated column.
    pub generated: bool,
    /// `GENERATED ALWAYS AS IDENTITY`: an UPDATE may not set it.
    pub identity_always: bool,
    /// Its type is an array (`typcategory = 'A'`).
    pub array: bool,
    /// Its type has binary input and output functions (`typreceive`, `typsend`).
    pub binary_io: bool,
}

/// A destination table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestTable {
    /// Schema.
    pub schema: String,
    /// Name.
    pub name: String,
    /// `relkind = 'p'`: rows are routed to partitions, and `ONLY` must not be used.
    pub partitioned: bool,
    /// Columns in order.
    pub columns: Vec<DestColumn>,
    /// The replica-identity index's columns, else the primary key's.
    pub key: Option<Vec<String>>,
    /// Column sets of every unique index and exclusion constraint checked at once (not
    /// deferred), on the table and its partitions; `None` for one on an expression.
    pub immediate_unique: Vec<Option<Vec<String>>>,
    /// Row triggers that fire in this session.
    pub row_triggers: bool,
}

impl DestTable {
    /// `"schema"."name"`.
    pub fn qualified(&self) -> String {
        ident::qualified(&self.schema, &self.name)
    }

    /// `schema.name`, for messages.
    pub fn display(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// `ONLY ` where the table is not partitioned: changes to a table never reach its
    /// inheritance children (the built-in worker works on the named table alone).
    pub fn only(&self) -> &'static str {
        if self.partitioned { "" } else { "ONLY " }
    }

    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&DestColumn> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Whether changes found by `key` (column names) must be applied one at a time, in
    /// source order: a row trigger fires, or a unique index or exclusion constraint
    /// other than `key`'s own is checked row by row, so that a set-based statement could
    /// collide where the source's order did not.
    pub fn order_sensitive(&self, key: &[String]) -> bool {
        let mut key: Vec<&str> = key.iter().map(String::as_str).collect();
        key.sort_unstable();
        self.row_triggers
            || self.immediate_unique.iter().any(|u| match u {
                None => true,
                Some(cols) => {
                    let mut cols: Vec<&str> = cols.iter().map(String::as_str).collect();
                    cols.sort_unstable();
                    cols != key
                }
            })
    }
}

fn err(what: String) -> impl FnOnce(tokio_postgres::Error) -> crate::error::Error {
    move |e| SqlError::new(what, e).into()
}

/// [`read`] of every `(schema, name)`, sent together: a far destination pays two round
/// trips for all of them, not two per table. `replica_role` is taken as off (these are
/// for checking definitions, not for applying).
pub async fn read_all<'a>(
    client: &Client,
    names: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<Vec<Option<DestTable>>> {
    futures_util::future::try_join_all(
        names.map(|(schema, name)| read(client, schema, name, false)),
    )
    .await
}

/// Reads `schema.name` from the destination's catalog; `None` when there is no such
/// table. `replica_role`: `session_replication_role = replica` is in effect (it decides
/// which triggers fire).
pub async fn read(
    client: &Client,
    schema: &str,
    name: &str,
    replica_role: bool,
) -> Result<Option<DestTable>> {
    let display = format!("{schema}.{name}");
    // Every query here is typed (one round trip each, no prepare), and the four after
    // the first go out together: a far destination pays two round trips per table.
    let Some(rel) = client
        .query_typed(
            "SELECT c.oid::int8, c.relkind::text, current_setting('server_version_num')::int \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[(&schema, Type::TEXT), (&name, Type::TEXT)],
        )
        .await
        .map_err(err(format!("looking up {display} on the destination")))?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let oid: i64 = rel.get(0);
    let partitioned = rel.get::<_, String>(1) == "p";
    let version: i32 = rel.get(2);
    let generated = if version >= 120000 {
        "a.attgenerated <> ''"
    } else {
        "false"
    };
    let by_oid = [(&oid as &(dyn ToSql + Sync), Type::INT8)];
    let columns_sql = format!(
        "SELECT a.attname::text, a.atttypid::int8, pg_catalog.format_type(a.atttypid, a.atttypmod), \
                        CASE a.atttypid::int8 WHEN 1042 THEN 'pg_catalog.bpchar' WHEN 1014 THEN 'pg_catalog.bpchar[]' \
                             WHEN 1560 THEN 'pg_catalog.varbit' WHEN 1561 THEN 'pg_catalog.varbit[]' \
                             ELSE pg_catalog.format_type(a.atttypid, NULL) END, {generated}, a.attidentity::text = 'a', a.atttypmod, \
                        t.typcategory = 'A', t.typreceive <> 0 AND t.typsend <> 0 \
                 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
                 WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
    );
    // The table and, when partitioned, every partition: their indexes and triggers all
    // act on the rows pgsub writes.
    let tree = if partitioned && version >= 120000 {
        "SELECT relid FROM pg_catalog.pg_partition_tree($1::int8::oid)"
    } else {
        "SELECT $1::int8::oid"
    };
    let key_sql = "SELECT array(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, pos) \
                          JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                          ORDER BY k.pos) \
             FROM pg_catalog.pg_index i WHERE i.indrelid = $1::int8::oid AND (i.indisreplident OR i.indisprimary) \
             ORDER BY i.indisreplident DESC LIMIT 1";
    let unique_sql = format!(
        "SELECT CASE WHEN 0 = ANY(i.indkey::int2[]) OR i.indexprs IS NOT NULL THEN NULL ELSE \
                array(SELECT a.attname::text FROM unnest(i.indkey::int2[]) k(attnum) \
                      JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum) END \
         FROM pg_catalog.pg_index i \
         WHERE i.indrelid IN ({tree}) AND (i.indisunique OR i.indisexclusion) AND i.indimmediate"
    );
    let enabled = if replica_role { "'R', 'A'" } else { "'O', 'A'" };
    let triggers_sql = format!(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid IN ({tree}) \
         AND t.tgtype & 1 = 1 AND t.tgenabled IN ({enabled}))"
    );
    // Boxed: four query futures side by side would make every caller's future large.
    let (columns, key, unique_rows, triggers) = Box::pin(async {
        tokio::join!(
            client.query_typed(&columns_sql, &by_oid),
            client.query_typed(key_sql, &by_oid),
            client.query_typed(&unique_sql, &by_oid),
            client.query_typed(&triggers_sql, &by_oid),
        )
    })
    .await;
    let columns = columns
        .map_err(err(format!(
            "reading the columns of {display} on the destination"
        )))?
        .iter()
        .map(|r| DestColumn {
            name: r.get(0),
            type_oid: r.get::<_, i64>(1) as u32,
            type_sql: r.get(2),
            base_type_sql: r.get(3),
            generated: r.get(4),
            identity_always: r.get(5),
            typmod: r.get(6),
            array: r.get(7),
            binary_io: r.get(8),
        })
        .collect();
    let key: Option<Vec<String>> = key
        .map_err(err(format!(
            "reading the key of {display} on the destination"
        )))?
        .first()
        .map(|r| r.get(0));
    let unique_rows = unique_rows.map_err(err(format!(
        "reading the constraints of {display} on the destination"
    )))?;
    let mut immediate_unique: Vec<Option<Vec<String>>> = Vec::new();
    for r in &unique_rows {
        let cols: Option<Vec<String>> = r.get(0);
        if !immediate_unique.contains(&cols) {
            immediate_unique.push(cols);
        }
    }
    let row_triggers: bool = triggers
        .map_err(err(format!(
            "reading the triggers of {display} on the destination"
        )))?
        .first()
        .is_some_and(|r| r.get(0));
    Ok(Some(DestTable {
        schema: schema.to_owned(),
        name: name.to_owned(),
        partitioned,
        columns,
        key,
        immediate_unique,
        row_triggers,
    }))
}

/// Whether values of a type can be compared for equality the way the built-in worker
/// compares them under REPLICA IDENTITY FULL (the type's default btree or hash equality,
/// through domains, array elements and composite fields), memoised per type.
#[derive(Debug, Default)]
pub struct Equality {
    known: HashMap<u32, bool>,
}

impl Equality {
    /// Whether the type `oid` has an equality on the destination.
    pub async fn has(&mut self, client: &Client, oid: u32) -> Result<bool> {
        self.check(client, oid, 0).await
    }

    async fn check(&mut self, client: &Client, oid: u32, depth: u32) -> Result<bool> {
        if let Some(&k) = self.known.get(&oid) {
            return Ok(k);
        }
        if depth > 16 {
            return Ok(false);
        }
        // Typed: one round trip (no separate prepare) per type, once per type.
        let row = client
            .query_typed(
                "SELECT t.typtype::text, t.typbasetype::int8, \
                        CASE WHEN t.typcategory = 'A' AND t.typlen = -1 THEN t.typelem ELSE 0 END::int8, \
                        array(SELECT a.atttypid::int8 FROM pg_catalog.pg_attribute a \
                              WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped), \
                        EXISTS (SELECT FROM pg_catalog.pg_opclass oc JOIN pg_catalog.pg_am am ON am.oid = oc.opcmethod \
                                WHERE oc.opcdefault AND am.amname IN ('btree', 'hash') \
                                AND (oc.opcintype = t.oid OR EXISTS (SELECT FROM pg_catalog.pg_cast c \
                                     WHERE c.castsource = t.oid AND c.casttarget = oc.opcintype AND c.castmethod = 'b'))) \
                 FROM pg_catalog.pg_type t WHERE t.oid = $1::int8::oid",
                &[(&i64::from(oid), Type::INT8)],
            )
            .await
            .map_err(err(format!("reading the type with OID {oid} on the destination")))?
            .into_iter()
            .next()
            .ok_or_else(|| {
                crate::error::Error::Definite(format!(
                    "the type with OID {oid} does not exist on the destination"
                ))
            })?;
        let typtype: String = row.get(0);
        let base = row.get::<_, i64>(1) as u32;
        let elem = row.get::<_, i64>(2) as u32;
        let fields: Vec<i64> = row.get(3);
        let opclass: bool = row.get(4);
        let has = match typtype.as_str() {
            "d" => Box::pin(self.check(client, base, depth + 1)).await?,
            "e" | "r" | "m" => true,
            "c" => {
                let mut all = true;
                for f in fields {
                    all &= Box::pin(self.check(client, f as u32, depth + 1)).await?;
                }
                all
            }
            _ if elem != 0 => Box::pin(self.check(client, elem, depth + 1)).await?,
            _ => opclass,
        };
        self.known.insert(oid, has);
        Ok(has)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(unique: Vec<Option<Vec<&str>>>, triggers: bool) -> DestTable {
        DestTable {
            schema: "s".into(),
            name: "t".into(),
            partitioned: false,
            columns: vec![],
            key: Some(vec!["id".into()]),
            immediate_unique: unique
                .into_iter()
                .map(|u| u.map(|c| c.into_iter().map(String::from).collect()))
                .collect(),
            row_triggers: triggers,
        }
    }

    #[test]
    fn only_the_key_own_index_keeps_changes_order_free() {
        let key = vec!["b".to_owned(), "a".to_owned()];
        assert!(!table(vec![Some(vec!["a", "b"])], false).order_sensitive(&key));
        assert!(table(vec![Some(vec!["a", "b"]), Some(vec!["u"])], false).order_sensitive(&key));
        assert!(table(vec![Some(vec!["a"])], false).order_sensitive(&key));
        assert!(table(vec![None], false).order_sensitive(&key));
        assert!(table(vec![], true).order_sensitive(&key));
        assert!(!table(vec![], false).order_sensitive(&key));
    }

    #[test]
    fn partitioned_tables_are_addressed_without_only() {
        let mut t = table(vec![], false);
        assert_eq!(t.only(), "ONLY ");
        t.partitioned = true;
        assert_eq!(t.only(), "");
        assert_eq!(t.qualified(), r#""s"."t""#);
    }
}
