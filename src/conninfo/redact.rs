//! Redaction: [`redact`] hides every secret in a raw, user-given connection string, whether
//! or not it parses, and `scrub` hides what looks like a secret inside another value. Secret
//! ranges are found by the key=value lexer, by the URI grammar, and by a last pass blind to
//! any grammar.

use std::ops::Range;

use super::Conninfo;
use super::keyvalue::{LexError, next_pair};
use super::keywords::{SECRET_KEYS, is_secret_key, keyword};
use super::text::{is_space, skip_spaces, slice, tail};
use super::uri::{URI_PREFIXES, percent_decode};

/// What a secret (a password) is shown as.
pub const REDACTED: &str = "********";

/// A non-secret value with anything in it that looks like a secret (`user:password@` after
/// `://`, `password=…`) replaced by `********`.
pub(super) fn scrub(value: &str) -> String {
    apply_redactions(value, loose_secret_ranges(value, 0..value.len()))
}

/// A raw, user-given connection string with every secret replaced by `********`, whether or
/// not it parses: `password=…` in key=value form (quoted or not, also the stray words that
/// follow an unquoted one), `user:password@` in URIs, and `?password=` / `&password=` in URI
/// queries. Everything else is kept as written.
pub fn redact(raw: &str) -> String {
    let trimmed = raw.trim_start_matches(is_space);
    let lead = raw.len() - trimmed.len();
    let prefix = URI_PREFIXES
        .iter()
        .find(|p| {
            trimmed
                .get(..p.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(p))
        })
        .map(|p| p.len());
    let mut ranges = match prefix {
        Some(prefix) => uri_secret_ranges(raw, lead + prefix, Conninfo::parse(raw).is_ok()),
        None => key_value_secret_ranges(raw),
    };
    // A last pass over the whole text, blind to the grammar: a `password=` that the lexer
    // saw inside another value (`application_name='a password='secret' …`) still has its
    // value hidden.
    ranges.extend(loose_secret_ranges(raw, 0..raw.len()));
    apply_redactions(raw, ranges)
}

/// Replaces each range of `raw` with `********`, overlapping ranges merged.
fn apply_redactions(raw: &str, mut ranges: Vec<Range<usize>>) -> String {
    ranges.retain(|r| r.start < r.end);
    ranges.sort_by_key(|r| r.start);
    let mut out = String::with_capacity(raw.len());
    let mut copied = 0;
    for range in ranges {
        if range.start < copied {
            copied = copied.max(range.end);
            continue;
        }
        out.push_str(slice(raw, copied, range.start));
        out.push_str(REDACTED);
        copied = range.end;
    }
    out.push_str(tail(raw, copied));
    out
}

/// Where the secrets are in a key=value string, lexed as libpq does and, past what libpq
/// would refuse, guessed at generously.
fn key_value_secret_ranges(raw: &str) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    // The value of the last secret pair, extended over stray words that follow it.
    let mut secret: Option<Range<usize>> = None;
    let mut from = 0;
    loop {
        match next_pair(raw, from) {
            Ok(None) => break,
            Ok(Some(pair)) => {
                from = pair.end;
                if is_secret_key(pair.key) {
                    ranges.extend(secret.replace(pair.value_start..pair.end));
                } else if keyword(pair.key).is_none()
                    && let Some(run) = &mut secret
                {
                    run.end = pair.end;
                } else {
                    ranges.extend(secret.take());
                    ranges.extend(loose_secret_ranges(raw, pair.start..pair.end));
                }
            }
            Err(LexError::MissingEquals {
                word_start,
                word_end,
                resume,
            }) => {
                from = resume;
                match &mut secret {
                    Some(run) => run.end = word_end,
                    None => ranges.extend(loose_secret_ranges(raw, word_start..word_end)),
                }
            }
            Err(LexError::UnterminatedQuote {
                key_start,
                key_end,
                value_start,
            }) => {
                let key = slice(raw, key_start, key_end);
                if let Some(run) = &mut secret
                    && keyword(key).is_none()
                {
                    run.end = raw.len();
                } else if is_secret_key(key) {
                    ranges.extend(secret.take());
                    ranges.push(value_start..raw.len());
                } else {
                    ranges.extend(secret.take());
                    ranges.extend(loose_secret_ranges(raw, key_start..raw.len()));
                }
                break;
            }
        }
    }
    ranges.extend(secret);
    ranges
}

/// Where the secrets are in a URI whose scheme ends at `rest_start`. When the URI parses,
/// the password runs from the first `:` of the user part to the last `@` before the host
/// list ends; when it does not, to the last `@` anywhere. Query parameters are checked one
/// by one (from the first `?`, and from the first `?` after the user part), and the whole
/// remainder is also scanned for `password=`.
fn uri_secret_ranges(raw: &str, rest_start: usize, parses: bool) -> Vec<Range<usize>> {
    let rest = tail(raw, rest_start);
    let mut ranges = Vec::new();
    let at = if parses {
        rest.find(['@', '/'])
            .filter(|&i| tail(rest, i).starts_with('@'))
            .map(|first| {
                let host_end = tail(rest, first)
                    .find(['/', '?'])
                    .map_or(rest.len(), |j| first + j);
                slice(rest, 0, host_end).rfind('@').unwrap_or(first)
            })
    } else {
        rest.rfind('@')
    };
    if let Some(at) = at
        && let Some(colon) = slice(rest, 0, at).find(':')
    {
        ranges.push(rest_start + colon + 1..rest_start + at);
    }
    let after = rest_start + at.map_or(0, |a| a + 1);
    let query_starts = [rest_start, after]
        .into_iter()
        .filter_map(|from| tail(raw, from).find('?').map(|q| from + q + 1));
    for start in query_starts {
        ranges.extend(query_secret_ranges(raw, start));
    }
    ranges.extend(loose_secret_ranges(raw, rest_start..raw.len()));
    ranges
}

/// The values of secret parameters in the URI query starting at `start`, and the
/// `=`-less pieces that follow one (an unencoded `&` inside a password).
fn query_secret_ranges(raw: &str, start: usize) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut piece_start = start;
    let mut after_secret = false;
    for piece in tail(raw, start).split('&') {
        let piece_end = piece_start + piece.len();
        match piece.find('=') {
            Some(eq) => {
                let key = percent_decode(slice(piece, 0, eq), "key").unwrap_or_default();
                after_secret = is_secret_key(&key);
                if after_secret {
                    ranges.push(piece_start + eq + 1..piece_end);
                }
            }
            None if after_secret => ranges.push(piece_start..piece_end),
            None => {}
        }
        piece_start = piece_end + 1;
    }
    ranges
}

/// Secrets in text that follows no grammar: `scheme://user:password@…` and
/// `password = value` (any case, quoted or not, ending at whitespace or `&`).
fn loose_secret_ranges(raw: &str, span: Range<usize>) -> Vec<Range<usize>> {
    let base = span.start;
    let Some(text) = raw.get(span) else {
        return Vec::new();
    };
    let lower = text.to_ascii_lowercase();
    let mut ranges = Vec::new();
    let mut from = 0;
    while let Some(i) = tail(&lower, from).find("://") {
        let start = from + i + 3;
        let segment = tail(text, start);
        let segment = slice(segment, 0, segment.find(is_space).unwrap_or(segment.len()));
        if let Some(at) = segment.rfind('@')
            && let Some(colon) = slice(segment, 0, at).find(':')
        {
            ranges.push(base + start + colon + 1..base + start + at);
        }
        from = start;
    }
    for key in SECRET_KEYS {
        let mut from = 0;
        while let Some(i) = tail(&lower, from).find(key) {
            let key_start = from + i;
            from = key_start + key.len();
            let at_boundary = slice(text, 0, key_start)
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
            let eq = skip_spaces(text, from);
            if !at_boundary || !tail(text, eq).starts_with('=') {
                continue;
            }
            let value_start = skip_spaces(text, eq + 1);
            let value_end = loose_value_end(text, value_start);
            ranges.push(base + value_start..base + value_end);
        }
    }
    ranges
}

/// The end of a value in free text: after its closing quote, or at whitespace or `&`.
fn loose_value_end(text: &str, start: usize) -> usize {
    let rest = tail(text, start);
    if let Some(quoted) = rest.strip_prefix('\'') {
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '\'' => return start + 1 + i + 1,
                _ => {}
            }
        }
        return text.len();
    }
    start
        + rest
            .find(|c: char| is_space(c) || c == '&')
            .unwrap_or(rest.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_a_password_that_follows_a_quoted_value_ending_in_password_equals() {
        let out = redact("application_name='a password='SECRETpw' host=h");
        assert!(!out.contains("SECRETpw"), "{out}");
    }

    #[test]
    fn redact_hides_password_in_both_forms_even_when_unparseable() {
        let cases = [
            (
                "host=db password=secret user=u",
                "host=db password=******** user=u",
            ),
            (
                "host=db password = 'two words' user=u",
                "host=db password = ******** user=u",
            ),
            (
                "host=db password=two words user=u",
                "host=db password=******** user=u",
            ),
            (
                "host=db password='unterminated",
                "host=db password=********",
            ),
            (
                "host=db sslmode=bogus password=secret",
                "host=db sslmode=bogus password=********",
            ),
            ("PASSWORD=secret", "PASSWORD=********"),
            ("sslpassword=keypass host=h", "sslpassword=******** host=h"),
            (
                "postgresql://alice:secret@db/app",
                "postgresql://alice:********@db/app",
            ),
            (
                "  postgresql://alice:secret@db",
                "  postgresql://alice:********@db",
            ),
            (
                "postgresql://alice:p@ss@db/app",
                "postgresql://alice:********@db/app",
            ),
            (
                "postgresql://alice:pa/ss@db/app",
                "postgresql://alice:********@db/app",
            ),
            (
                "postgresql://alice:secret@db:notaport/app",
                "postgresql://alice:********@db:notaport/app",
            ),
            (
                "postgresql://alice@db/app?password=secret&sslmode=require",
                "postgresql://alice@db/app?password=********&sslmode=require",
            ),
            (
                "postgresql://db/app?password=a&b&sslmode=require",
                "postgresql://db/app?password=********&********&sslmode=require",
            ),
            (
                "postgresql://db/app?pass%77ord=secret",
                "postgresql://db/app?pass%77ord=********",
            ),
            (
                "jdbc:postgresql://db/app?user=u&password=secret",
                "jdbc:postgresql://db/app?user=u&password=********",
            ),
            ("xpostgres://u:secret@h/db", "xpostgres://u:********@h/db"),
            ("postgres://db/app?user=a@b", "postgres://db/app?user=a@b"),
            (
                "postgresql://h/db?password=a@b&sslmode=bogus",
                "postgresql://h/db?password=********&sslmode=bogus",
            ),
            (
                "postgresql://u:pw@h/db?password=a@b&sslmode=bogus",
                "postgresql://u:********&sslmode=bogus",
            ),
            ("password=a b='c d", "password=********"),
            (
                "dbname='postgresql://u:secret@h/db' host=h",
                "dbname='postgresql://u:********@h/db' host=h",
            ),
            ("host=db user=u", "host=db user=u"),
            ("", ""),
        ];
        for (raw, redacted) in cases {
            assert_eq!(redact(raw), redacted, "{raw:?}");
        }
    }
}
