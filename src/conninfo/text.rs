//! Small string helpers that never panic: libpq's whitespace, slicing that yields `""`
//! instead of panicking on a bad range, and character positions for messages.

/// libpq's `isspace` in the C locale.
pub(super) fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0B' | '\x0C')
}

/// `s[from..]`, or `""` when `from` is past the end or not a character boundary.
pub(super) fn tail(s: &str, from: usize) -> &str {
    s.get(from..).unwrap_or("")
}

/// `s[from..to]`, or `""` when the range is not valid.
pub(super) fn slice(s: &str, from: usize, to: usize) -> &str {
    s.get(from..to).unwrap_or("")
}

/// The first position at or after `from` that is not whitespace.
pub(super) fn skip_spaces(s: &str, from: usize) -> usize {
    let rest = tail(s, from);
    from + rest.find(|c: char| !is_space(c)).unwrap_or(rest.len())
}

/// Byte offset to a 1-based character position, for messages.
pub(super) fn char_position(s: &str, byte: usize) -> usize {
    s.char_indices().take_while(|(i, _)| *i < byte).count() + 1
}
