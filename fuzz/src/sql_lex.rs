//! A small SQL lexer, for the `sql_text` target: enough of PostgreSQL's scanner to tell
//! structure (keywords, punctuation, parameters) from content (quoted identifiers, string
//! literals, dollar-quoted bodies). The target builds each statement twice, once with
//! fuzzed names and once with placeholder names, and [`same_shape`] requires the two to
//! differ only inside quotes, in the places the names went: a name that changed the
//! structure would be SQL injection.
//!
//! Outside quotes pgsub writes only ASCII, so only ASCII is read as words and space there
//! (anything else is a token of its own, which the reference never has): the scanner's
//! Unicode rules are not needed, and the lexer stays fast under the fuzzer's tracing.
//!
//! Two dialects: SQL, where `E'…'` strings take backslash escapes, and the replication
//! grammar (`repl_scanner.l`), which knows only standard strings.

/// One token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A word outside quotes (keyword, unquoted name, type name), lower-cased.
    Word(String),
    /// `"…"`, unquoted.
    Ident(String),
    /// `'…'` or `E'…'`, unescaped.
    Str(String),
    /// `$tag$…$tag$`, the body (the tag is free to differ).
    Dollar(String),
    /// `$n`.
    Param(u32),
    /// Digits.
    Number(String),
    /// Anything else, one character (`::` is two).
    Punct(char),
}

/// Which scanner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// The SQL scanner (standard_conforming_strings on).
    Sql,
    /// The replication command scanner.
    Replication,
}

/// Cuts `text` into tokens; an error for what the scanner would refuse (an unterminated
/// quote, an `E'…'` string in a replication command, a NUL byte). Works on bytes: every
/// structural character is ASCII, and no byte of a multi-byte UTF-8 sequence is.
pub fn lex(text: &str, dialect: Dialect) -> Result<Vec<Token>, String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == 0 {
            return Err(format!("a NUL at {i}"));
        }
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'"' {
            let (s, next) = quoted(text, i + 1, b'"', false).ok_or("unterminated \"")?;
            if s.is_empty() {
                return Err("a zero-length quoted identifier".into());
            }
            out.push(Token::Ident(s));
            i = next;
        } else if c == b'\'' {
            let (s, next) = quoted(text, i + 1, b'\'', false).ok_or("unterminated '")?;
            out.push(Token::Str(s));
            i = next;
        } else if (c == b'E' || c == b'e') && b.get(i + 1) == Some(&b'\'') {
            if dialect == Dialect::Replication {
                return Err(format!(
                    "an E'' string at {i}: the replication grammar has none"
                ));
            }
            let (s, next) = quoted(text, i + 2, b'\'', true).ok_or("unterminated E'")?;
            out.push(Token::Str(s));
            i = next;
        } else if c == b'$' && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            let j = run(b, i + 1, |x| x.is_ascii_digit());
            out.push(Token::Param(
                text[i + 1..j].parse().map_err(|_| "a huge parameter")?,
            ));
            i = j;
        } else if c == b'$' {
            let j = run(b, i + 1, |x| x.is_ascii_alphanumeric() || x == b'_');
            if b.get(j) != Some(&b'$') {
                return Err(format!("a lone $ at {i}"));
            }
            let tag = &text[i..=j];
            let end = memchr::memmem::find(&b[j + 1..], tag.as_bytes())
                .ok_or("unterminated dollar quote")?;
            out.push(Token::Dollar(text[j + 1..j + 1 + end].to_owned()));
            i = j + 1 + end + tag.len();
        } else if c.is_ascii_digit() {
            let j = run(b, i, |x| x.is_ascii_digit());
            out.push(Token::Number(text[i..j].to_owned()));
            i = j;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let j = run(b, i, |x| x.is_ascii_alphanumeric() || x == b'_');
            out.push(Token::Word(text[i..j].to_ascii_lowercase()));
            i = j;
        } else {
            // One character, whole (a non-ASCII one outside quotes included).
            let ch = text[i..].chars().next().unwrap_or('\u{fffd}');
            out.push(Token::Punct(ch));
            i += ch.len_utf8();
        }
    }
    Ok(out)
}

/// The end of the run of bytes from `i` that `pred` accepts.
fn run(b: &[u8], mut i: usize, pred: impl Fn(u8) -> bool) -> usize {
    while i < b.len() && pred(b[i]) {
        i += 1;
    }
    i
}

/// The content of a quoted run starting after its opening `q`, and where it ends.
fn quoted(text: &str, mut i: usize, q: u8, backslash: bool) -> Option<(String, usize)> {
    let b = text.as_bytes();
    let mut s = String::new();
    loop {
        let rel = if backslash {
            memchr::memchr2(q, b'\\', &b[i..])?
        } else {
            memchr::memchr(q, &b[i..])?
        };
        s.push_str(&text[i..i + rel]);
        i += rel;
        if b[i] == b'\\' {
            let ch = text.get(i + 1..)?.chars().next()?;
            s.push(ch);
            i += 1 + ch.len_utf8();
        } else if b.get(i + 1) == Some(&q) {
            s.push(char::from(q));
            i += 2;
        } else {
            return Some((s, i + 1));
        }
    }
}

/// Whether `fuzzed` has the structure of `reference`: the same tokens, except that an
/// identifier of `reference` that is one of the placeholders (`names[k].0`) reads as
/// `names[k].1` in `fuzzed`, and strings and dollar bodies that differ have the same shape
/// themselves, lexed as SQL (a `'"s"."t"'::regclass` literal, a DO block's body).
pub fn same_shape(
    fuzzed: &[Token],
    reference: &[Token],
    names: &[(String, String)],
) -> Result<(), String> {
    if fuzzed.len() != reference.len() {
        return Err(format!(
            "{} tokens where the reference has {}",
            fuzzed.len(),
            reference.len()
        ));
    }
    for (k, (f, r)) in fuzzed.iter().zip(reference).enumerate() {
        match (f, r) {
            (Token::Ident(f), Token::Ident(r)) => {
                let expected = names
                    .iter()
                    .find(|(placeholder, _)| placeholder == r)
                    .map_or(r, |(_, name)| name);
                if f != expected {
                    return Err(format!(
                        "token {k}: identifier {f:?} where {expected:?} belongs"
                    ));
                }
            }
            (Token::Str(f), Token::Str(r)) | (Token::Dollar(f), Token::Dollar(r)) => {
                if f != r {
                    let inner_f = lex(f, Dialect::Sql)
                        .map_err(|e| format!("token {k}: the string {f:?} does not lex: {e}"))?;
                    let inner_r = lex(r, Dialect::Sql)
                        .map_err(|e| format!("token {k}: the reference {r:?} does not lex: {e}"))?;
                    same_shape(&inner_f, &inner_r, names)
                        .map_err(|e| format!("inside token {k}: {e}"))?;
                }
            }
            (f, r) if f == r => {}
            (f, r) => return Err(format!("token {k}: {f:?} where the reference has {r:?}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_read_as_the_scanner_reads_them() {
        let t = lex(
            r#"SELECT "a""b", 'it''s', E'x\'y', $1::text $q$ 'in' $q$"#,
            Dialect::Sql,
        )
        .unwrap();
        assert_eq!(
            t,
            vec![
                Token::Word("select".into()),
                Token::Ident("a\"b".into()),
                Token::Punct(','),
                Token::Str("it's".into()),
                Token::Punct(','),
                Token::Str("x'y".into()),
                Token::Punct(','),
                Token::Param(1),
                Token::Punct(':'),
                Token::Punct(':'),
                Token::Word("text".into()),
                Token::Dollar(" 'in' ".into()),
            ]
        );
        assert!(lex(r"x E'a'", Dialect::Replication).is_err());
        assert!(lex(r#"x "open"#, Dialect::Sql).is_err());
    }

    #[test]
    fn a_name_that_changes_the_structure_is_caught() {
        let names = vec![("n0".to_owned(), "x\" OR \"1".to_owned())];
        let reference = lex(r#"SELECT "n0""#, Dialect::Sql).unwrap();
        let injected = lex(r#"SELECT "x" OR "1""#, Dialect::Sql).unwrap();
        assert!(same_shape(&injected, &reference, &names).is_err());
        let quoted = lex(r#"SELECT "x"" OR ""1""#, Dialect::Sql).unwrap();
        same_shape(&quoted, &reference, &names).unwrap();
    }
}
