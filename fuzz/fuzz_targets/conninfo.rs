//! Fuzz target for connection strings: the input (read as UTF-8, invalid sequences
//! replaced) goes to `Conninfo::parse` and to `redact`, and a parsed `Conninfo` is shown
//! every way pgsub shows one (`redacted`, `Display`, `Debug`, `host_display`) and handed
//! to `tokio_postgres_config`. Nothing may panic, and a redacted connection string must
//! parse again. Secrets are marked: when every `SECRET` in the input stands where a
//! secret's value starts (`password=SECRET…`, `sslpassword='SECRET…`, or the password of
//! a URI's `user:SECRET…@`), no output and no error message may contain `SECRET`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pgsub::conninfo::{Conninfo, redact};

const MARK: &str = "SECRET";
const SECRET_KEYS: [&str; 5] = [
    "password",
    "sslpassword",
    "oauth_client_secret",
    "scram_client_key",
    "scram_server_key",
];

/// True when `SECRET` at byte `at` starts the value of a secret keyword written as
/// `key=` or `key='`, the keyword not being the tail of a longer word.
fn after_secret_key(s: &str, at: usize) -> bool {
    let before = &s[..at];
    let before = before.strip_suffix('\'').unwrap_or(before);
    let Some(before) = before.strip_suffix('=') else {
        return false;
    };
    SECRET_KEYS.iter().any(|key| {
        before.strip_suffix(key).is_some_and(|head| {
            head.chars()
                .next_back()
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
        })
    })
}

/// True when `SECRET` at byte `at` starts the password of a URI's `user:password@`.
fn uri_password(s: &str, at: usize) -> bool {
    let trimmed = s.trim_start();
    let lead = s.len() - trimmed.len();
    let Some(scheme) = ["postgresql://", "postgres://"].iter().find(|p| {
        trimmed
            .get(..p.len())
            .is_some_and(|t| t.eq_ignore_ascii_case(p))
    }) else {
        return false;
    };
    let user_start = lead + scheme.len();
    let Some(user) = s[..at].strip_suffix(':') else {
        return false;
    };
    at > user_start
        && !user[user_start..].contains([':', '@', '/', '?'])
        && s[at..]
            .find(['@', '/', '?'])
            .is_some_and(|i| s[at + i..].starts_with('@'))
}

/// True when the input holds `SECRET` and every one stands where a secret starts.
fn secrets_are_marked(s: &str) -> bool {
    let mut found = false;
    for (at, _) in s.match_indices(MARK) {
        if !(after_secret_key(s, at) || uri_password(s, at)) {
            return false;
        }
        found = true;
    }
    found
}

fn assert_hidden(what: &str, input: &str, shown: &str) {
    assert!(
        !shown.contains(MARK),
        "{what} shows a secret\ninput: {input:?}\nshown: {shown:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let s: &str = &input;
    let marked = secrets_are_marked(s);
    let redacted_raw = redact(s);
    if marked {
        assert_hidden("redact", s, &redacted_raw);
    }
    match Conninfo::parse(s) {
        Ok(info) => {
            let redacted = info.redacted();
            let display = info.to_string();
            let debug = format!("{info:?}");
            let _ = info.host_display();
            let _ = info.tokio_postgres_config();
            if marked {
                assert_hidden("Conninfo::redacted", s, &redacted);
                assert_hidden("Conninfo's Display", s, &display);
                assert_hidden("Conninfo's Debug", s, &debug);
            }
            if let Err(e) = Conninfo::parse(&redacted) {
                panic!(
                    "the redacted form does not parse: {e}\ninput: {s:?}\nredacted: {redacted:?}"
                );
            }
        }
        Err(e) => {
            let message = e.to_string();
            let debug = format!("{e:?}");
            if marked {
                assert_hidden("a ConninfoError", s, &message);
                assert_hidden("a ConninfoError's Debug", s, &debug);
            }
        }
    }
});
