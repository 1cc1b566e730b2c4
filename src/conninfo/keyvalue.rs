//! The key=value form of a connection string, as libpq's `conninfo_parse` reads it:
//! `host = db port=5432 password='it\'s'`. The lexer ([`next_pair`]) is shared with the
//! redaction of raw strings, which must find the same pairs; [`quote_value`] writes a value
//! back in this form.

use super::ConninfoError;
use super::keywords::{Parsed, is_secret_key, key_like, keyword};
use super::text::{char_position, is_space, skip_spaces, slice, tail};

/// One `key = value` pair, where it sits in the string, and its unescaped value.
pub(super) struct Pair<'a> {
    pub(super) key: &'a str,
    pub(super) value: String,
    pub(super) start: usize,
    pub(super) value_start: usize,
    pub(super) end: usize,
}

/// Why the key=value lexer stopped.
pub(super) enum LexError {
    /// A word not followed by `=`; lexing may resume at `resume`.
    MissingEquals {
        word_start: usize,
        word_end: usize,
        resume: usize,
    },
    /// A quoted value without its closing quote.
    UnterminatedQuote {
        key_start: usize,
        key_end: usize,
        value_start: usize,
    },
}

/// The next pair at or after `from`, as libpq's `conninfo_parse`: a keyword ends at `=` or
/// whitespace, whitespace is allowed around `=`, a value is either single-quoted or runs to
/// the next whitespace, and in both a backslash takes the next character literally.
pub(super) fn next_pair(s: &str, from: usize) -> Result<Option<Pair<'_>>, LexError> {
    let start = skip_spaces(s, from);
    let rest = tail(s, start);
    if rest.is_empty() {
        return Ok(None);
    }
    let key_end = start
        + rest
            .find(|c: char| c == '=' || is_space(c))
            .unwrap_or(rest.len());
    let after_key = skip_spaces(s, key_end);
    if !tail(s, after_key).starts_with('=') {
        return Err(LexError::MissingEquals {
            word_start: start,
            word_end: key_end,
            resume: after_key,
        });
    }
    let value_start = skip_spaces(s, after_key + 1);
    let (value, end) = lex_value(s, value_start).ok_or(LexError::UnterminatedQuote {
        key_start: start,
        key_end,
        value_start,
    })?;
    Ok(Some(Pair {
        key: slice(s, start, key_end),
        value,
        start,
        value_start,
        end,
    }))
}

/// The value starting at `start` and the position just after it; `None` when a quoted value
/// is not closed.
fn lex_value(s: &str, start: usize) -> Option<(String, usize)> {
    let rest = tail(s, start);
    let mut value = String::new();
    if let Some(quoted) = rest.strip_prefix('\'') {
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => value.push(chars.next()?.1),
                '\'' => return Some((value, start + 1 + i + 1)),
                _ => value.push(c),
            }
        }
        return None;
    }
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            c if is_space(c) => return Some((value, start + i)),
            '\\' => {
                if let Some((_, next)) = chars.next() {
                    value.push(next);
                }
            }
            _ => value.push(c),
        }
    }
    Some((value, s.len()))
}

pub(super) fn parse_key_value(s: &str) -> Result<Parsed, ConninfoError> {
    let mut parsed = Parsed::default();
    let mut from = 0;
    let mut after_secret = false;
    loop {
        let pair = match next_pair(s, from) {
            Ok(Some(pair)) => pair,
            Ok(None) => break,
            Err(LexError::MissingEquals {
                word_start,
                word_end,
                ..
            }) => {
                let word = slice(s, word_start, word_end);
                let keyword = (!after_secret && keyword(word).is_some()).then(|| word.to_owned());
                return Err(ConninfoError::MissingEquals {
                    keyword,
                    position: char_position(s, word_start),
                });
            }
            Err(LexError::UnterminatedQuote {
                key_start, key_end, ..
            }) => {
                let key = slice(s, key_start, key_end);
                let key = (!after_secret && key_like(key)).then(|| key.to_owned());
                return Err(ConninfoError::UnterminatedQuote { key });
            }
        };
        parsed
            .set(pair.key, &pair.value)
            .map_err(|e| e.hide_unknown_key(after_secret, char_position(s, pair.start)))?;
        after_secret = is_secret_key(pair.key);
        from = pair.end;
    }
    Ok(parsed)
}

/// A value for the key=value form: single-quoted, with `\'` and `\\`, when empty or when it
/// contains whitespace, a quote or a backslash.
pub(super) fn quote_value(value: &str) -> String {
    let needs_quotes =
        value.is_empty() || value.chars().any(|c| is_space(c) || c == '\'' || c == '\\');
    if !needs_quotes {
        return value.to_owned();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('\'');
    quoted
}

#[cfg(test)]
mod tests {
    use crate::conninfo::tests::{parse, parse_err, tcp};
    use crate::conninfo::{ConninfoError, SslMode};

    #[test]
    fn key_value_with_quoted_value_and_escapes() {
        let info = parse(
            r"host = db.example.com port= 5433 dbname ='my db' user=o\'brien password='it\'s a \\ secret' options='-c search_path=app' application_name=''",
        );
        assert_eq!(info.hosts, vec![tcp("db.example.com")]);
        assert_eq!(info.ports, vec![5433]);
        assert_eq!(info.dbname.as_deref(), Some("my db"));
        assert_eq!(info.user.as_deref(), Some("o'brien"));
        assert_eq!(info.password.as_deref(), Some(r"it's a \ secret"));
        assert_eq!(info.options.as_deref(), Some("-c search_path=app"));
        assert_eq!(info.application_name, None);

        let info = parse("host='a'port=5 dbname=x=y");
        assert_eq!(info.hosts, vec![tcp("a")]);
        assert_eq!(info.ports, vec![5]);
        assert_eq!(info.dbname.as_deref(), Some("x=y"));
    }

    #[test]
    fn key_value_last_duplicate_wins() {
        let info = parse("host=a host=b sslmode=require sslmode=disable");
        assert_eq!(info.hosts, vec![tcp("b")]);
        assert_eq!(info.sslmode, SslMode::Disable);
    }

    #[test]
    fn unterminated_quote_and_missing_equals_are_errors() {
        assert_eq!(
            parse_err("host='db"),
            ConninfoError::UnterminatedQuote {
                key: Some("host".to_owned())
            }
        );
        let err = parse_err("host db");
        assert_eq!(
            err,
            ConninfoError::MissingEquals {
                keyword: Some("host".to_owned()),
                position: 1
            }
        );
        assert_eq!(
            err.to_string(),
            "missing \"=\" after \"host\" (character 1) in the connection string: expected key=value pairs such as host=localhost port=5432 (quote values containing spaces: key='a b'), or a postgresql:// URI"
        );
        assert_eq!(
            parse_err("host=db hots"),
            ConninfoError::MissingEquals {
                keyword: None,
                position: 9
            }
        );
    }
}
