//! [`ConninfoError`], why a connection string or a `PG*` variable was refused, and how a
//! value is shown in one: scrubbed of anything that looks like a secret, and shortened.

use std::path::PathBuf;

use super::SslMode;
use super::keywords::key_like;
use super::redact::scrub;
use super::text::slice;

/// Why a connection string (or a `PG*` variable) was refused. Messages name the offending
/// key and, unless it is a secret, its value, and say what was expected; they never contain
/// a password or the whole connection string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConninfoError {
    /// A key that is not a libpq keyword.
    #[error(
        "invalid connection option \"{key}\": expected a libpq keyword such as host, port, dbname, user, password or sslmode"
    )]
    UnknownKey {
        /// The key as written.
        key: String,
    },
    /// A key that is not a libpq keyword, not shown because it may hold part of a secret
    /// (it follows a password, or it does not look like a keyword at all).
    #[error(
        "invalid connection option at character {position} of the connection string: expected libpq keywords; a value containing spaces must be quoted, as in password='two words'"
    )]
    UnknownKeyHidden {
        /// Where the key starts, counted in characters from 1.
        position: usize,
    },
    /// A libpq keyword that pgsub does not implement and cannot safely ignore.
    #[error("connection option \"{key}\" is not supported by pgsub: {hint}")]
    Unsupported {
        /// The keyword.
        key: String,
        /// What to do instead.
        hint: &'static str,
    },
    /// A word without `=` in the key=value form.
    #[error(
        "missing \"=\" after {} in the connection string: expected key=value pairs such as host=localhost port=5432 (quote values containing spaces: key='a b'), or a postgresql:// URI",
        describe_word(.keyword.as_deref(), *.position)
    )]
    MissingEquals {
        /// The word, when it is a libpq keyword (other words are not repeated: they may be secrets).
        keyword: Option<String>,
        /// Where the word starts, counted in characters from 1.
        position: usize,
    },
    /// A quoted value without its closing quote.
    #[error(
        "unterminated quoted string {}: close the value with a single quote (write \\' for a quote inside a value)",
        in_value_of(.key.as_deref())
    )]
    UnterminatedQuote {
        /// The key whose value is unterminated, when it looks like a keyword.
        key: Option<String>,
    },
    /// A value a keyword (or its environment variable) does not accept.
    #[error("invalid {key} value \"{value}\": {expected}")]
    InvalidValue {
        /// The keyword, or the environment variable the value came from.
        key: String,
        /// The value as given (never a secret's).
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// An empty entry in a comma-separated list, as in `host=a,,b`.
    #[error(
        "empty entry in the {key} list: expected comma-separated values without empty entries, as in host=db1,db2"
    )]
    EmptyListEntry {
        /// The keyword, or the environment variable the list came from.
        key: String,
    },
    /// More than one port, but not one per host.
    #[error(
        "could not match {ports} port numbers to {hosts} hosts: give one port for all hosts, or one per host in the same order"
    )]
    PortCountMismatch {
        /// How many ports were given.
        ports: usize,
        /// How many hosts were given.
        hosts: usize,
    },
    /// `host` and `hostaddr` lists of different lengths.
    #[error(
        "could not match {hosts} host names to {hostaddrs} hostaddr values: give one hostaddr per host, in the same order"
    )]
    HostaddrCountMismatch {
        /// How many hosts were given.
        hosts: usize,
        /// How many hostaddr values were given.
        hostaddrs: usize,
    },
    /// A malformed `postgresql://` URI.
    #[error(
        "invalid connection URI: {problem}; expected postgresql://[user[:password]@][host][:port][,host[:port]…][/dbname][?key=value&…]"
    )]
    InvalidUri {
        /// What is wrong (never containing the user name, password or whole URI).
        problem: String,
    },
    /// `sslrootcert=system` with an sslmode weaker than `verify-full`.
    #[error(
        "weaker sslmode \"{sslmode}\" may not be used with sslrootcert=system: use sslmode=verify-full, or leave sslmode out"
    )]
    WeakSslmodeWithSystemRoot {
        /// The sslmode that was given.
        sslmode: SslMode,
    },
    /// `service=NAME` (or `PGSERVICE`) names a service no service file defines.
    #[error(
        "definition of service \"{service}\" not found (looked in {looked_in}): add a [{service}] section to ~/.pg_service.conf, or point PGSERVICEFILE at the file that has it"
    )]
    ServiceNotFound {
        /// The service name.
        service: String,
        /// The files looked in, in order.
        looked_in: String,
    },
    /// A line of the service's section that libpq would refuse.
    #[error("syntax error in service file \"{}\", line {line}: {reason}", .path.display())]
    ServiceFile {
        /// The service file.
        path: PathBuf,
        /// The line, counted from 1.
        line: usize,
        /// What is wrong (never the value, which may be a password).
        reason: &'static str,
    },
    /// A value of the service's section that its keyword does not accept.
    #[error("in service file \"{}\", line {line}: {error}", .path.display())]
    ServiceFileValue {
        /// The service file.
        path: PathBuf,
        /// The line, counted from 1.
        line: usize,
        /// The error about the value (which never shows a secret).
        error: Box<ConninfoError>,
    },
    /// A service file that exists but cannot be read.
    #[error("could not read service file \"{}\": {reason}", .path.display())]
    ServiceFileRead {
        /// The service file.
        path: PathBuf,
        /// What the operating system said.
        reason: String,
    },
}

fn describe_word(keyword: Option<&str>, position: usize) -> String {
    match keyword {
        Some(k) => format!("\"{k}\" (character {position})"),
        None => format!("the word at character {position}"),
    }
}

fn in_value_of(key: Option<&str>) -> String {
    match key {
        Some(k) => format!("in the value of \"{k}\""),
        None => "in the connection string".to_owned(),
    }
}

impl ConninfoError {
    pub(super) fn invalid(key: &str, value: &str, expected: &'static str) -> ConninfoError {
        ConninfoError::InvalidValue {
            key: key.to_owned(),
            value: shown_value(value),
            expected,
        }
    }

    pub(super) fn uri(problem: impl Into<String>) -> ConninfoError {
        ConninfoError::InvalidUri {
            problem: problem.into(),
        }
    }

    /// The same error about the environment variable `var` instead of a keyword.
    pub(super) fn about_env_var(self, var: &str) -> ConninfoError {
        match self {
            ConninfoError::InvalidValue {
                value, expected, ..
            } => ConninfoError::InvalidValue {
                key: var.to_owned(),
                value,
                expected,
            },
            ConninfoError::EmptyListEntry { .. } => ConninfoError::EmptyListEntry {
                key: var.to_owned(),
            },
            other => other,
        }
    }

    /// Hides an unknown key that may be part of a secret.
    pub(super) fn hide_unknown_key(self, after_secret: bool, position: usize) -> ConninfoError {
        match self {
            ConninfoError::UnknownKey { key } if after_secret || !key_like(&key) => {
                ConninfoError::UnknownKeyHidden { position }
            }
            other => other,
        }
    }
}

/// A value as repeated in an error message: scrubbed of anything that looks like a secret
/// (`port= password=x` gives port the value `password=x`, as in libpq), at most 64 characters.
fn shown_value(value: &str) -> String {
    const MAX: usize = 64;
    let value = scrub(value);
    let value = value.as_str();
    match value.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", slice(value, 0, cut)),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use crate::conninfo::tests::parse_err;

    #[test]
    fn empty_value_swallowing_the_password_pair_is_not_echoed_in_errors() {
        for s in [
            "host=h port= password=SECRETx",
            "host=h sslmode= password=SECRETx",
            "host=h connect_timeout= password=SECRETx",
        ] {
            let err = parse_err(s).to_string();
            assert!(!err.contains("SECRETx"), "{s:?}: {err}");
        }
    }

    #[test]
    fn error_messages_never_contain_the_password() {
        let secret = "S3cr3tPw";
        let cases = [
            "host=h password=S3cr3tPw sslmode=bogus",
            "password=first S3cr3tPw",
            "password=first S3cr3tPw=x",
            "password='S3cr3tPw",
            "sslpassword=first S3cr3tPw",
            "xpostgres://u:S3cr3tPw@h/db",
            "jdbc:postgresql://h/db?user=u&password=S3cr3tPw",
            "postgresql://u:S3cr3tPw@h:bad/db",
            "postgresql://u:S3cr3tPw%zz@h/db",
            "postgresql://u:S3cr3tPw%ff@h/db",
            "postgresql://u:S3cr3tPw@h/db?sslmode=bogus",
            "postgresql://u:S3cr3tPw@[::1/db",
            "postgresql://u:S3/cr3tPw@h/db",
            "postgresql://h/db?password=first&S3cr3tPw",
            "postgresql://h/db?password=first&S3cr3tPw=x",
            "postgresql://h/db?password=S3cr3tPw=x",
            "postgresql://h/db?password=S3cr3tPw%zz",
        ];
        for case in cases {
            let err = parse_err(case);
            for shown in [err.to_string(), format!("{err:?}")] {
                assert!(!shown.contains(secret), "{case:?} gave {shown:?}");
                assert!(!shown.contains("cr3tPw"), "{case:?} gave {shown:?}");
                assert!(!shown.contains("first"), "{case:?} gave {shown:?}");
            }
        }
    }
}
