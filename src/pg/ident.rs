//! Quoting of identifiers and literals for SQL text: the one place pgsub spells a name or
//! a value into a statement.

pub use postgres_protocol::escape::{escape_identifier as ident, escape_literal as literal};

/// `"schema"."name"`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// `'a', 'b'`: literals separated by commas.
pub fn literal_list<S: AsRef<str>>(values: &[S]) -> String {
    values
        .iter()
        .map(|v| literal(v.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_quoted_so_nothing_escapes_them() {
        assert_eq!(qualified("Public", "we\"ird"), r#""Public"."we""ird""#);
        assert_eq!(literal_list(&["a", "it's"]), "'a', 'it''s'");
        assert_eq!(literal("back\\slash"), r" E'back\\slash'");
    }
}
