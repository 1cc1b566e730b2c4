//! Quoting of identifiers and literals, for SQL and for replication commands: the one
//! place pgsub spells a name or a value into a statement (re-exported as `pg::ident`).

pub use postgres_protocol::escape::{escape_identifier as ident, escape_literal as literal};

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
    }
}
