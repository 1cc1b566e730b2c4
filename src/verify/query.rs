//! The statements `verify` reads each side with, and the key order they return rows in.
//!
//! Both sides are read with the same statement, `key::text…, row hash ORDER BY key`, and
//! merged on the client, so the client must compare keys exactly as the servers sorted
//! them, whatever their collations. Each key column is sorted one of two ways:
//!
//! | key column type                  | ORDER BY             | client compares            |
//! |----------------------------------|----------------------|----------------------------|
//! | int2, int4, int8, oid            | the column (index)   | the integers               |
//! | uuid                             | the column (index)   | the text's bytes (same order) |
//! | anything else                    | `col::text COLLATE "C"` | the text's bytes         |
//!
//! The row hash is 64 bits of the row's text form (`ROW(c1, c2, …)::text`): with both
//! sessions set to the same output formats (ISO dates, UTC, hex bytea, shortest exact
//! floats) equal values have equal text on every server version. A table without a usable
//! key is read as the sorted multiset of its row hashes.

use std::cmp::Ordering;

use crate::pg::ident::{ident as escape_identifier, literal as escape_literal};

use crate::pg::ident::qualified;
use crate::source::tables::PublishedTable;

/// Settings both sides read under, so that equal values print equal.
pub const SESSION_SETTINGS: &str = "SET datestyle = ISO; SET intervalstyle = postgres; \
    SET extra_float_digits = 3; SET bytea_output = hex; SET timezone = 'UTC'; \
    SET lc_monetary = 'C'";

/// How one key column is ordered and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Sorted as integers by the server; compared as integers.
    Integer,
    /// Sorted by the column itself, whose order is its text's byte order.
    NativeBytes,
    /// Sorted by its text under the "C" collation; compared as bytes.
    TextBytes,
}

impl KeyKind {
    /// The kind for a column of type `oid`.
    pub fn for_type(oid: u32) -> Self {
        match oid {
            20 | 21 | 23 | 26 => KeyKind::Integer,
            2950 => KeyKind::NativeBytes,
            _ => KeyKind::TextBytes,
        }
    }

    fn order_expr(self, col: &str) -> String {
        match self {
            KeyKind::Integer | KeyKind::NativeBytes => col.to_owned(),
            KeyKind::TextBytes => format!("{col}::text COLLATE \"C\""),
        }
    }

    fn compare(self, a: &str, b: &str) -> Ordering {
        if self == KeyKind::Integer
            && let (Ok(x), Ok(y)) = (a.parse::<i128>(), b.parse::<i128>())
        {
            return x.cmp(&y);
        }
        a.as_bytes().cmp(b.as_bytes())
    }
}

/// The order of keys as the servers return them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOrder(pub Vec<KeyKind>);

impl KeyOrder {
    /// Compares two keys.
    pub fn compare(&self, a: &[String], b: &[String]) -> Ordering {
        for ((k, x), y) in self.0.iter().zip(a).zip(b) {
            match k.compare(x, y) {
                Ordering::Equal => {}
                other => return other,
            }
        }
        a.len().cmp(&b.len())
    }
}

/// The row hash function both servers have: `hashtextextended` from PostgreSQL 11, else
/// 64 bits of `md5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFn {
    /// `hashtextextended(text, 0)`.
    HashTextExtended,
    /// The first 16 hex digits of `md5(text)`.
    Md5,
}

impl HashFn {
    /// The function both servers of these versions have.
    pub fn for_versions(a: u32, b: u32) -> Self {
        if a.min(b) >= 110000 {
            HashFn::HashTextExtended
        } else {
            HashFn::Md5
        }
    }

    fn apply(self, text: &str) -> String {
        match self {
            HashFn::HashTextExtended => format!("pg_catalog.hashtextextended({text}, 0)"),
            HashFn::Md5 => format!("('x' || left(pg_catalog.md5({text}), 16))::bit(64)::int8"),
        }
    }
}

/// How one table is read on both sides.
#[derive(Debug, Clone)]
pub struct TableQuery {
    /// `schema.table`, as printed.
    pub name: String,
    /// The quoted, schema-qualified name.
    relation: String,
    /// The source table is partitioned (read with its partitions, else with `ONLY`).
    source_partitioned: bool,
    /// The destination table is partitioned.
    pub dest_partitioned: bool,
    /// Quoted key columns; empty when the table is compared as a multiset.
    key_columns: Vec<String>,
    /// Key column names as printed.
    pub key_names: Vec<String>,
    /// Quoted compared columns.
    columns: Vec<String>,
    /// Compared column names as printed.
    pub column_names: Vec<String>,
    /// The source's row filter.
    row_filter: Option<String>,
    /// Order of the keys.
    pub order: KeyOrder,
    hash: HashFn,
}

impl TableQuery {
    /// The statements for `t`: keyed when all its key columns are compared, else a multiset.
    pub fn new(t: &PublishedTable, hash: HashFn) -> Self {
        let keyed = !t.key_columns.is_empty()
            && t.key_columns
                .iter()
                .all(|k| t.columns.iter().any(|c| &c.name == k));
        let key: Vec<_> = if keyed {
            t.key_columns
                .iter()
                .filter_map(|k| t.columns.iter().find(|c| &c.name == k))
                .collect()
        } else {
            Vec::new()
        };
        TableQuery {
            name: t.qualified_name(),
            relation: qualified(&t.schema, &t.name),
            source_partitioned: t.partitioned,
            dest_partitioned: false,
            key_columns: key.iter().map(|c| escape_identifier(&c.name)).collect(),
            key_names: key.iter().map(|c| c.name.clone()).collect(),
            columns: t
                .columns
                .iter()
                .map(|c| escape_identifier(&c.name))
                .collect(),
            column_names: t.columns.iter().map(|c| c.name.clone()).collect(),
            row_filter: t.row_filter.clone(),
            order: KeyOrder(if keyed {
                key.iter().map(|c| KeyKind::for_type(c.type_oid)).collect()
            } else {
                vec![KeyKind::Integer]
            }),
            hash,
        }
    }

    /// The quoted, schema-qualified name.
    pub fn relation_text(&self) -> String {
        self.relation.clone()
    }

    /// The relation as read on one side: with `ONLY` for a plain table (its inheritance
    /// children are compared on their own), without for a partitioned one.
    fn from(&self, source: bool) -> String {
        let partitioned = if source {
            self.source_partitioned
        } else {
            self.dest_partitioned
        };
        format!(
            "{}{}",
            if partitioned { "" } else { "ONLY " },
            self.relation
        )
    }

    /// Compared as a multiset of rows (no usable key).
    pub fn is_multiset(&self) -> bool {
        self.key_columns.is_empty()
    }

    fn hash_expr(&self) -> String {
        self.hash
            .apply(&format!("ROW({})::text", self.columns.join(", ")))
    }

    fn filter(&self, source: bool, extra: Option<String>) -> String {
        let mut conds = Vec::new();
        if source && let Some(f) = &self.row_filter {
            conds.push(format!("({f})"));
        }
        conds.extend(extra);
        if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        }
    }

    fn key_select(&self) -> String {
        if self.is_multiset() {
            format!("{}::text", self.hash_expr())
        } else {
            self.key_columns
                .iter()
                .map(|k| format!("{k}::text"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    }

    /// Number of key values at the start of each row the statements return.
    pub fn key_len(&self) -> usize {
        self.key_columns.len().max(1)
    }

    /// Every row: key texts then the row hash, in key order. `source` applies the
    /// publication's row filter.
    pub fn scan(&self, source: bool) -> String {
        // Positions and the alias keep ORDER BY off the output columns, which are text
        // and carry the key columns' names.
        let order = if self.is_multiset() {
            "2".to_owned()
        } else {
            self.key_columns
                .iter()
                .zip(&self.order.0)
                .map(|(k, kind)| kind.order_expr(&format!("r.{k}")))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "SELECT {}, {} FROM {} AS r{} ORDER BY {order}",
            self.key_select(),
            self.hash_expr(),
            self.from(source),
            self.filter(source, None)
        )
    }

    fn key_match(&self, keys: &[Vec<String>]) -> String {
        if self.is_multiset() {
            let list: Vec<_> = keys.iter().map(|k| k[0].clone()).collect();
            return format!("{} IN ({})", self.hash_expr(), list.join(", "));
        }
        let tuples: Vec<String> = keys
            .iter()
            .map(|k| {
                let vals: Vec<_> = k.iter().map(|v| escape_literal(v)).collect();
                format!("({})", vals.join(", "))
            })
            .collect();
        format!(
            "({}) IN ({})",
            self.key_columns.join(", "),
            tuples.join(", ")
        )
    }

    /// The rows with these keys now: key texts then the row hash (for a multiset, one
    /// row per hash with a count instead).
    pub fn recheck(&self, source: bool, keys: &[Vec<String>]) -> String {
        let filter = self.filter(source, Some(self.key_match(keys)));
        if self.is_multiset() {
            format!(
                "SELECT {h}::text, count(*) FROM {}{filter} GROUP BY 1",
                self.from(source),
                h = self.hash_expr()
            )
        } else {
            format!(
                "SELECT {}, {} FROM {}{filter}",
                self.key_select(),
                self.hash_expr(),
                self.from(source)
            )
        }
    }

    /// The compared columns as text of the rows with these keys, after the key texts.
    pub fn values(&self, source: bool, keys: &[Vec<String>]) -> String {
        let cols: Vec<_> = self.columns.iter().map(|c| format!("{c}::text")).collect();
        let limit = if self.is_multiset() { " LIMIT 1" } else { "" };
        format!(
            "SELECT {}, {} FROM {}{}{limit}",
            self.key_select(),
            cols.join(", "),
            self.from(source),
            self.filter(source, Some(self.key_match(keys)))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::tables::PublishedColumn;

    fn table(keys: &[&str]) -> PublishedTable {
        let col = |name: &str, oid| PublishedColumn {
            name: name.into(),
            type_sql: String::new(),
            type_oid: oid,
            not_null: true,
            constant_default: None,
            generated: false,
            type_modifier: -1,
        };
        PublishedTable {
            relid: 1,
            schema: "public".into(),
            name: "T".into(),
            columns: vec![col("id", 20), col("name", 25)],
            row_filter: Some("id > 0".into()),
            replica_identity: "d".into(),
            key_columns: keys.iter().map(|k| (*k).to_owned()).collect(),
            partitioned: false,
            generated_columns: Vec::new(),
        }
    }

    #[test]
    fn integer_keys_compare_as_numbers_and_others_as_bytes() {
        let order = KeyOrder(vec![KeyKind::Integer, KeyKind::TextBytes]);
        let k = |a: &str, b: &str| vec![a.to_owned(), b.to_owned()];
        assert_eq!(order.compare(&k("9", "b"), &k("10", "a")), Ordering::Less);
        assert_eq!(order.compare(&k("-5", "b"), &k("3", "a")), Ordering::Less);
        assert_eq!(order.compare(&k("1", "B"), &k("1", "a")), Ordering::Less);
        assert_eq!(
            order.compare(&k("1", "ab"), &k("1", "a")),
            Ordering::Greater
        );
        assert_eq!(order.compare(&k("1", "é"), &k("1", "z")), Ordering::Greater);
    }

    #[test]
    fn scan_of_keyed_table_orders_by_key_and_filters_only_the_source() {
        let q = TableQuery::new(&table(&["id", "name"]), HashFn::HashTextExtended);
        assert!(!q.is_multiset());
        let src = q.scan(true);
        assert!(
            src.contains("FROM ONLY \"public\".\"T\" AS r WHERE (id > 0) ORDER BY r.\"id\", r.\"name\"::text COLLATE \"C\""),
            "{src}"
        );
        assert!(
            src.contains("hashtextextended(ROW(\"id\", \"name\")::text, 0)"),
            "{src}"
        );
        assert!(!q.scan(false).contains("WHERE"));
        let mut q = q;
        q.dest_partitioned = true;
        assert!(
            q.scan(false).contains("FROM \"public\".\"T\" AS r"),
            "a partitioned table is read with its partitions"
        );
    }

    #[test]
    fn table_without_key_is_a_multiset_ordered_by_hash() {
        let q = TableQuery::new(&table(&[]), HashFn::Md5);
        assert!(q.is_multiset());
        assert!(q.scan(false).ends_with("ORDER BY 2"));
        assert!(q.scan(false).contains("md5(ROW(\"id\", \"name\")::text)"));
    }

    #[test]
    fn recheck_quotes_key_values_as_literals() {
        let q = TableQuery::new(&table(&["name"]), HashFn::HashTextExtended);
        let sql = q.recheck(false, &[vec!["it's".to_owned()]]);
        assert!(sql.contains("(\"name\") IN (('it''s'))"), "{sql}");
    }
}
