//! The text of the statements that apply runs of changes, and the COPY text encoding of
//! rows. Pure functions: everything here is tested without a server.
//!
//! Values arrive in the text output format of their type; every statement takes them as
//! `text` (or `text[]`) parameters and casts them to the destination column's type, the
//! input function undoing the source's output function:
//!
//! ```text
//! INSERT  COPY "s"."t" ("id", "v") FROM STDIN                          one COPY per run
//! UPDATE  UPDATE "s"."t" AS t SET "v" = u.c2::text                      one statement per run
//!           FROM unnest($1::text[], $2::text[]) AS u(c1, c2)            of one shape (the same
//!          WHERE t."id" = u.c1::integer                                 columns left unchanged)
//! DELETE  DELETE FROM "s"."t" AS t USING unnest($1::text[]) AS u(c1)
//!          WHERE t."id" = u.c1::integer
//! FULL    … WHERE t.ctid = (SELECT ctid FROM "s"."t" WHERE ROW(…::text) IS NOT DISTINCT
//!          FROM ROW($1, …) LIMIT 1)                                     exactly one row
//! ```

use postgres_protocol::escape::escape_identifier;

/// Appends `value` in COPY text format (backslash escapes), or `\N` for NULL.
pub fn copy_text_value(value: Option<&[u8]>, out: &mut Vec<u8>) {
    let Some(v) = value else {
        out.extend_from_slice(b"\\N");
        return;
    };
    for &b in v {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.push(b),
        }
    }
}

/// `"schema"."table"`.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", escape_identifier(schema), escape_identifier(table))
}

/// A destination column as statements use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Col {
    /// Column name (unquoted).
    pub name: String,
    /// Its type as `format_type` spells it, e.g. `character varying(10)`.
    pub type_sql: String,
}

impl Col {
    fn ident(&self) -> String {
        escape_identifier(&self.name)
    }
}

/// `COPY table (cols) FROM STDIN`.
pub fn copy_in(table: &str, cols: &[&Col]) -> String {
    let list = cols
        .iter()
        .map(|c| c.ident())
        .collect::<Vec<_>>()
        .join(", ");
    format!("COPY {table} ({list}) FROM STDIN")
}

fn unnest(n: usize) -> String {
    let params = (1..=n)
        .map(|i| format!("${i}::text[]"))
        .collect::<Vec<_>>()
        .join(", ");
    let names = (1..=n)
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("unnest({params}) AS u({names})")
}

/// `t.k1 = u.c1::type AND …`: the key columns against the first unnest columns.
fn key_matches(keys: &[&Col]) -> String {
    keys.iter()
        .enumerate()
        .map(|(i, c)| format!("t.{} = u.c{}::{}", c.ident(), i + 1, c.type_sql))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// Set-based update of a run: `keys` match the old key, `set` are assigned. Parameters:
/// one `text[]` per key column, then one per set column.
pub fn update_by_key(table: &str, keys: &[&Col], set: &[&Col]) -> String {
    let n = keys.len() + set.len();
    let assignments = set
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} = u.c{}::{}", c.ident(), keys.len() + i + 1, c.type_sql))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "UPDATE {table} AS t SET {assignments} FROM {} WHERE {}",
        unnest(n),
        key_matches(keys)
    )
}

/// Set-based delete of a run by key. Parameters: one `text[]` per key column.
pub fn delete_by_key(table: &str, keys: &[&Col]) -> String {
    format!(
        "DELETE FROM {table} AS t USING {} WHERE {}",
        unnest(keys.len()),
        key_matches(keys)
    )
}

/// The `ctid` of one row whose every column equals the old row (compared as text, NULL
/// equal to NULL): REPLICA IDENTITY FULL identifies a row by all its columns, and a table
/// without a key may hold duplicates, of which exactly one is changed. Parameters `$1…`
/// are the old values.
fn one_row_equal_to(table: &str, all: &[&Col]) -> String {
    let left = all
        .iter()
        .map(|c| format!("{}::text", c.ident()))
        .collect::<Vec<_>>()
        .join(", ");
    let right = (1..=all.len())
        .map(|i| format!("${i}::text"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "(SELECT ctid FROM {table} WHERE ROW({left}) IS NOT DISTINCT FROM ROW({right}) LIMIT 1)"
    )
}

/// Update of one row identified by its whole old image. Parameters: the old values of
/// `all`, then the new values of `set`.
pub fn update_full(table: &str, all: &[&Col], set: &[&Col]) -> String {
    let assignments = set
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "{} = ${}::text::{}",
                c.ident(),
                all.len() + i + 1,
                c.type_sql
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "UPDATE {table} SET {assignments} WHERE ctid = {}",
        one_row_equal_to(table, all)
    )
}

/// Delete of one row identified by its whole old image. Parameters: the old values.
pub fn delete_full(table: &str, all: &[&Col]) -> String {
    format!(
        "DELETE FROM {table} WHERE ctid = {}",
        one_row_equal_to(table, all)
    )
}

/// `TRUNCATE ONLY …`: never cascading, as the built-in worker replays it.
pub fn truncate(tables: &[String], restart_identity: bool) -> String {
    format!(
        "TRUNCATE ONLY {}{}",
        tables.join(", "),
        if restart_identity {
            " RESTART IDENTITY"
        } else {
            ""
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: &str) -> Col {
        Col {
            name: name.into(),
            type_sql: ty.into(),
        }
    }

    #[test]
    fn copy_text_escapes_what_copy_would_misread() {
        let mut out = Vec::new();
        copy_text_value(Some(b"a\tb\nc\\d\re"), &mut out);
        out.push(b'\t');
        copy_text_value(None, &mut out);
        assert_eq!(out, b"a\\tb\\nc\\\\d\\re\t\\N");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(qualified("Public", "we\"ird"), r#""Public"."we""ird""#);
        let c = col("Id", "integer");
        assert_eq!(copy_in("t", &[&c]), r#"COPY t ("Id") FROM STDIN"#);
    }

    #[test]
    fn update_by_key_numbers_parameters_keys_first() {
        let id = col("id", "bigint");
        let v = col("v", "character varying(10)");
        assert_eq!(
            update_by_key("t", &[&id], &[&id, &v]),
            r#"UPDATE t AS t SET "id" = u.c2::bigint, "v" = u.c3::character varying(10) FROM unnest($1::text[], $2::text[], $3::text[]) AS u(c1, c2, c3) WHERE t."id" = u.c1::bigint"#
        );
    }

    #[test]
    fn delete_by_composite_key() {
        let a = col("a", "integer");
        let b = col("b", "text");
        assert_eq!(
            delete_by_key("t", &[&a, &b]),
            r#"DELETE FROM t AS t USING unnest($1::text[], $2::text[]) AS u(c1, c2) WHERE t."a" = u.c1::integer AND t."b" = u.c2::text"#
        );
    }

    #[test]
    fn full_identity_changes_one_row_compared_as_text() {
        let a = col("a", "integer");
        let b = col("b", "text");
        assert_eq!(
            delete_full("t", &[&a, &b]),
            r#"DELETE FROM t WHERE ctid = (SELECT ctid FROM t WHERE ROW("a"::text, "b"::text) IS NOT DISTINCT FROM ROW($1::text, $2::text) LIMIT 1)"#
        );
        assert!(
            update_full("t", &[&a, &b], &[&b])
                .starts_with(r#"UPDATE t SET "b" = $3::text::text WHERE ctid ="#)
        );
    }

    #[test]
    fn truncate_never_cascades() {
        assert_eq!(
            truncate(&["a".into(), "b".into()], true),
            "TRUNCATE ONLY a, b RESTART IDENTITY"
        );
        assert!(!truncate(&["a".into()], false).contains("CASCADE"));
    }
}
