//! Small text helpers of the cluster code: quoting a value for a libpq connection string,
//! a `postgresql.conf` string and a POSIX shell word; the last lines of a log; shortening
//! a long SQL script for an error message.

pub(super) fn last_lines(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A value for a libpq `key=value` connection string, quoted when needed.
pub(super) fn conninfo_value(value: &str) -> String {
    if !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\' || c == '=')
    {
        return value.to_string();
    }
    let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
    format!("'{escaped}'")
}

/// A single-quoted `postgresql.conf` string.
pub(super) fn conf_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A single-quoted POSIX shell word.
pub(super) fn sh_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

pub(super) fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} … ({} bytes)", &text[..end], text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(conninfo_value("db"), "db");
        assert_eq!(conninfo_value(""), "''");
        assert_eq!(conninfo_value("a b'c\\"), r"'a b\'c\\'");
        assert_eq!(conf_string("it's"), "'it''s'");
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("", 2), "");
    }
}
