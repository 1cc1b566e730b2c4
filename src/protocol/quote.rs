//! Quoting of identifiers and literals, for SQL and for replication commands: the one
//! place pgsub spells a name or a value into a statement (re-exported as `pg::ident`).

pub use postgres_protocol::escape::{escape_identifier as ident, escape_literal as literal};

/// A string literal for a replication command (`START_REPLICATION … (publication_names
/// '…')`): the replication grammar knows only standard strings, `'…'` with `''` for a
/// quote and a backslash taken as it is; an `E'…'` literal, which [`literal`] writes for
/// a value with a backslash, is a syntax error there.
pub fn replication_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// `"schema"."name"`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_quoted_so_nothing_escapes_them() {
        assert_eq!(qualified("Public", "we\"ird"), r#""Public"."we""ird""#);
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("back\\slash"), r" E'back\\slash'");
        assert_eq!(replication_literal(r#""a\b","it's""#), r#"'"a\b","it''s"'"#);
    }
}
