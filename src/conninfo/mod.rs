//! Connection strings ("conninfo") as libpq reads them, for pgsub's own connection code.
//!
//! This module owns both libpq forms of a connection string — `host=… port=… dbname=…`
//! (key=value pairs, single-quoted values with `\'` and `\\` escapes) and
//! `postgresql://` URIs (percent-decoding, `user:password@`, several hosts, `[IPv6]`,
//! `/dbname`, `?key=value`) — the `PG*` environment variables, libpq's defaults (Unix socket
//! directory, port 5432, the OS user), the password file (see [`pgpass`]), and redaction: a
//! password never appears in anything this module prints, neither in [`Conninfo`]'s
//! `Display` and `Debug` output, nor in a [`ConninfoError`], nor in what [`redact`] returns.
//! It does no network I/O; [`Conninfo::tokio_postgres_config`] hands the result to
//! tokio-postgres for connections made through it.
//!
//! Sources: PostgreSQL `src/interfaces/libpq/fe-connect.c` (`conninfo_parse`,
//! `conninfo_uri_parse_options`, `conninfo_uri_parse_params`, `conninfo_add_defaults`,
//! `connectOptions2`, `passwordFromFile`) and the libpq documentation, sections
//! "Connection Strings", "Parameter Key Words", "Environment Variables" and "The Password File".

pub mod pgpass;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// The port libpq uses when none is given (`DEF_PGPORT`).
pub const DEFAULT_PORT: u16 = 5432;

/// The directories searched, in order, for the default Unix socket (`DEFAULT_PGSOCKET_DIR` is
/// `/var/run/postgresql` in Debian and Red Hat builds, `/tmp` in upstream builds).
pub const DEFAULT_SOCKET_DIRS: [&str; 2] = ["/var/run/postgresql", "/tmp"];

/// What a secret (a password) is shown as.
pub const REDACTED: &str = "********";

/// libpq keywords whose values are secrets: never printed, never put in an error message.
const SECRET_KEYS: [&str; 5] = [
    "password",
    "sslpassword",
    "oauth_client_secret",
    "scram_client_key",
    "scram_server_key",
];

const SSLMODE_EXPECTED: &str = "expected disable, allow, prefer, require, verify-ca or verify-full";
const CHANNEL_BINDING_EXPECTED: &str = "expected disable, prefer or require";
const TARGET_SESSION_ATTRS_EXPECTED: &str =
    "expected any, read-write, read-only, primary, standby or prefer-standby";
const PORT_EXPECTED: &str =
    "expected a port number from 1 to 65535, or a comma-separated list of them, one per host";
const INTEGER_EXPECTED: &str = "expected an integer";
const HOSTADDR_EXPECTED: &str =
    "expected a numeric IPv4 or IPv6 address, or a comma-separated list of them, one per host";
const GSSENCMODE_EXPECTED: &str = "expected disable, prefer or require";

/// One server to try: a host reached over TCP, or a directory holding a Unix-domain socket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A host name or a numeric IPv4/IPv6 address (an IPv6 address without brackets).
    Tcp(String),
    /// The directory holding the server's socket `.s.PGSQL.<port>`. An entry starting with
    /// `@` names a Linux abstract socket namespace, as in libpq.
    Unix(PathBuf),
}

impl From<&str> for Host {
    /// Classifies one `host` entry as libpq does (`is_unixsock_path`): an entry starting with
    /// `/` or `@` is a Unix socket directory, anything else a TCP host.
    fn from(entry: &str) -> Host {
        if entry.starts_with('/') || entry.starts_with('@') {
            Host::Unix(PathBuf::from(entry))
        } else {
            Host::Tcp(entry.to_owned())
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Tcp(name) => f.write_str(name),
            Host::Unix(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// libpq's `sslmode`: whether TLS is used and what of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SslMode {
    /// `disable`: plain connection only.
    Disable,
    /// `allow`: plain first, TLS if the server insists; no certificate check.
    Allow,
    /// `prefer` (the default): TLS if the server offers it, else plain; no certificate check.
    #[default]
    Prefer,
    /// `require`: TLS only; the certificate chain is checked only when a root certificate is given.
    Require,
    /// `verify-ca`: TLS only, the certificate must chain to a trusted root.
    VerifyCa,
    /// `verify-full`: as `verify-ca`, and the certificate must name the host.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling: `disable`, `allow`, `prefer`, `require`, `verify-ca`, `verify-full`.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = ConninfoError;

    /// Parses the libpq spelling (case-sensitive, as libpq).
    fn from_str(s: &str) -> Result<SslMode, ConninfoError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return Err(ConninfoError::invalid("sslmode", s, SSLMODE_EXPECTED)),
        })
    }
}

/// libpq's `channel_binding`: whether SCRAM authentication binds to the TLS channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ChannelBindingMode {
    /// `disable`: never use channel binding.
    Disable,
    /// `prefer` (the default): use it when TLS and the server support it.
    #[default]
    Prefer,
    /// `require`: fail unless the server authenticates with channel binding.
    Require,
}

impl ChannelBindingMode {
    /// The libpq spelling: `disable`, `prefer`, `require`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelBindingMode::Disable => "disable",
            ChannelBindingMode::Prefer => "prefer",
            ChannelBindingMode::Require => "require",
        }
    }
}

impl fmt::Display for ChannelBindingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChannelBindingMode {
    type Err = ConninfoError;

    /// Parses the libpq spelling (case-sensitive, as libpq).
    fn from_str(s: &str) -> Result<ChannelBindingMode, ConninfoError> {
        Ok(match s {
            "disable" => ChannelBindingMode::Disable,
            "prefer" => ChannelBindingMode::Prefer,
            "require" => ChannelBindingMode::Require,
            _ => {
                return Err(ConninfoError::invalid(
                    "channel_binding",
                    s,
                    CHANNEL_BINDING_EXPECTED,
                ));
            }
        })
    }
}

/// A parsed connection string: every libpq setting pgsub understands, named as the libpq keywords.
///
/// "Unset" is `None`, an empty `Vec`, or — for `sslmode` and `channel_binding` — the default;
/// an empty value in a connection string (`host=''`) is the same as leaving the key out.
/// `Display` and `Debug` never show the password.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Conninfo {
    /// `host`: the servers to try, in order.
    pub hosts: Vec<Host>,
    /// `port`: none (5432 for every host), one (for every host), or one per host.
    pub ports: Vec<u16>,
    /// `hostaddr`: numeric addresses, comma-separated, one per host; used instead of resolving `host`.
    pub hostaddr: Option<String>,
    /// `user`: the role to log in as.
    pub user: Option<String>,
    /// `password`. Never printed.
    pub password: Option<String>,
    /// `dbname`: the database to connect to.
    pub dbname: Option<String>,
    /// `application_name`, as shown in `pg_stat_activity`.
    pub application_name: Option<String>,
    /// `options`: command-line options sent to the server at startup, e.g. `-c search_path=x`.
    pub options: Option<String>,
    /// `connect_timeout`: how long one connection attempt may take; `Some(Duration::ZERO)`
    /// means wait indefinitely (libpq's `0`), and 1 second is raised to 2, as libpq does.
    pub connect_timeout: Option<Duration>,
    /// `sslmode`.
    pub sslmode: SslMode,
    /// `sslrootcert`: file of trusted root certificates, or `system` for the system's roots.
    pub sslrootcert: Option<String>,
    /// `sslcert`: the client certificate file.
    pub sslcert: Option<String>,
    /// `sslkey`: the client certificate's private key file.
    pub sslkey: Option<String>,
    /// `passfile`: the password file to read instead of `~/.pgpass`.
    pub passfile: Option<PathBuf>,
    /// `channel_binding`.
    pub channel_binding: ChannelBindingMode,
    /// `replication`: accepted and kept as given; pgsub sets it itself on its connections.
    pub replication: Option<String>,
    /// `target_session_attrs`: `any`, `read-write`, `read-only`, `primary`, `standby` or `prefer-standby`.
    pub target_session_attrs: Option<String>,
    /// Other libpq keywords pgsub accepts but does not act on itself (`keepalives`,
    /// `keepalives_idle`, `keepalives_interval`, `keepalives_count`, `tcp_user_timeout`,
    /// `client_encoding`, `fallback_application_name`, `sslsni`, …), by keyword. Integer
    /// keywords are checked to be integers; secret ones (`sslpassword`) are never printed.
    pub other: BTreeMap<String, String>,
}

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
    fn invalid(key: &str, value: &str, expected: &'static str) -> ConninfoError {
        ConninfoError::InvalidValue {
            key: key.to_owned(),
            value: shown_value(value),
            expected,
        }
    }

    fn uri(problem: impl Into<String>) -> ConninfoError {
        ConninfoError::InvalidUri {
            problem: problem.into(),
        }
    }

    /// The same error about the environment variable `var` instead of a keyword.
    fn about_env_var(self, var: &str) -> ConninfoError {
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
    fn hide_unknown_key(self, after_secret: bool, position: usize) -> ConninfoError {
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

fn is_secret_key(key: &str) -> bool {
    SECRET_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key))
}

/// True for something that looks like a keyword and so may be repeated in an error.
fn key_like(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 64
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// What a libpq keyword sets.
#[derive(Clone, Copy)]
enum Keyword {
    Host,
    Hostaddr,
    Port,
    Dbname,
    User,
    Password,
    Passfile,
    ApplicationName,
    Options,
    ConnectTimeout,
    Sslmode,
    Sslrootcert,
    Sslcert,
    Sslkey,
    ChannelBinding,
    Replication,
    TargetSessionAttrs,
    /// Kept in `other` as given.
    OtherText,
    /// Kept in `other`, checked to be an integer.
    OtherInteger,
    /// Kept in `other`; `require` is refused (pgsub has no GSSAPI encryption).
    Gssencmode,
    /// Refused when given a value: ignoring it would weaken security or change the target.
    Unsupported(&'static str),
}

/// The libpq keyword `key` (case-sensitive, as libpq), or `None` for an unknown key.
fn keyword(key: &str) -> Option<Keyword> {
    Some(match key {
        "host" => Keyword::Host,
        "hostaddr" => Keyword::Hostaddr,
        "port" => Keyword::Port,
        "dbname" => Keyword::Dbname,
        "user" => Keyword::User,
        "password" => Keyword::Password,
        "passfile" => Keyword::Passfile,
        "application_name" => Keyword::ApplicationName,
        "options" => Keyword::Options,
        "connect_timeout" => Keyword::ConnectTimeout,
        "sslmode" => Keyword::Sslmode,
        "sslrootcert" => Keyword::Sslrootcert,
        "sslcert" => Keyword::Sslcert,
        "sslkey" => Keyword::Sslkey,
        "channel_binding" => Keyword::ChannelBinding,
        "replication" => Keyword::Replication,
        "target_session_attrs" => Keyword::TargetSessionAttrs,
        "keepalives"
        | "keepalives_idle"
        | "keepalives_interval"
        | "keepalives_count"
        | "tcp_user_timeout" => Keyword::OtherInteger,
        "client_encoding"
        | "fallback_application_name"
        | "sslcompression"
        | "sslsni"
        | "sslpassword"
        | "sslcertmode"
        | "sslnegotiation"
        | "sslkeylogfile"
        | "ssl_min_protocol_version"
        | "ssl_max_protocol_version"
        | "min_protocol_version"
        | "max_protocol_version"
        | "krbsrvname"
        | "gsslib"
        | "gssdelegation"
        | "load_balance_hosts"
        | "oauth_issuer"
        | "oauth_client_id"
        | "oauth_client_secret"
        | "oauth_scope"
        | "scram_client_key"
        | "scram_server_key" => Keyword::OtherText,
        "gssencmode" => Keyword::Gssencmode,
        "service" => Keyword::Unsupported(
            "pgsub does not read pg_service.conf; give host, port, dbname and user instead",
        ),
        "requirepeer" => Keyword::Unsupported(
            "pgsub cannot check the server process's user; remove it or use a TCP connection with sslmode=verify-full",
        ),
        "require_auth" => Keyword::Unsupported(
            "pgsub does not restrict authentication methods; remove it (channel_binding=require forces SCRAM with channel binding)",
        ),
        "sslcrl" | "sslcrldir" => {
            Keyword::Unsupported("pgsub does not check certificate revocation lists; remove it")
        }
        _ => return None,
    })
}

/// Which settings were given explicitly although equal to their default.
#[derive(Clone, Copy, Default)]
struct Seen {
    sslmode: bool,
    channel_binding: bool,
}

impl Seen {
    /// What can be told from the values alone: a non-default value was given.
    fn inferred(info: &Conninfo) -> Seen {
        Seen {
            sslmode: info.sslmode != SslMode::default(),
            channel_binding: info.channel_binding != ChannelBindingMode::default(),
        }
    }
}

/// A connection string being parsed, with what was given explicitly.
#[derive(Default)]
struct Parsed {
    info: Conninfo,
    seen: Seen,
}

impl Parsed {
    /// Sets keyword `key` to `value`, as libpq's `conninfo_storeval` followed by the checks of
    /// `connectOptions2`. An empty value unsets the keyword. Nothing changes on error.
    fn set(&mut self, key: &str, value: &str) -> Result<(), ConninfoError> {
        let Some(kw) = keyword(key) else {
            return Err(ConninfoError::UnknownKey {
                key: key.to_owned(),
            });
        };
        let info = &mut self.info;
        let text = (!value.is_empty()).then(|| value.to_owned());
        match kw {
            Keyword::Host => info.hosts = parse_hosts("host", value)?,
            Keyword::Hostaddr => {
                check_hostaddrs(value)?;
                info.hostaddr = text;
            }
            Keyword::Port => info.ports = parse_ports("port", value)?,
            Keyword::Dbname => info.dbname = text,
            Keyword::User => info.user = text,
            Keyword::Password => info.password = text,
            Keyword::Passfile => info.passfile = text.map(PathBuf::from),
            Keyword::ApplicationName => info.application_name = text,
            Keyword::Options => info.options = text,
            Keyword::ConnectTimeout => info.connect_timeout = parse_connect_timeout(value)?,
            Keyword::Sslmode => {
                info.sslmode = if value.is_empty() {
                    SslMode::default()
                } else {
                    value.parse()?
                };
                self.seen.sslmode = !value.is_empty();
            }
            Keyword::Sslrootcert => info.sslrootcert = text,
            Keyword::Sslcert => info.sslcert = text,
            Keyword::Sslkey => info.sslkey = text,
            Keyword::ChannelBinding => {
                info.channel_binding = if value.is_empty() {
                    ChannelBindingMode::default()
                } else {
                    value.parse()?
                };
                self.seen.channel_binding = !value.is_empty();
            }
            Keyword::Replication => info.replication = text,
            Keyword::TargetSessionAttrs => {
                check_target_session_attrs(value)?;
                info.target_session_attrs = text;
            }
            Keyword::OtherText | Keyword::OtherInteger | Keyword::Gssencmode => {
                check_other(kw, key, value)?;
                match text {
                    Some(v) => info.other.insert(key.to_owned(), v),
                    None => info.other.remove(key),
                };
            }
            Keyword::Unsupported(hint) if !value.is_empty() => {
                return Err(ConninfoError::Unsupported {
                    key: key.to_owned(),
                    hint,
                });
            }
            Keyword::Unsupported(_) => {}
        }
        Ok(())
    }
}

/// Splits a comma-separated list; one empty value is an empty list, an empty entry among
/// several is an error.
fn split_list<'a>(key: &str, value: &'a str) -> Result<Vec<&'a str>, ConninfoError> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    let entries: Vec<&str> = value.split(',').collect();
    if entries.iter().any(|e| e.is_empty()) {
        return Err(ConninfoError::EmptyListEntry {
            key: key.to_owned(),
        });
    }
    Ok(entries)
}

fn parse_hosts(key: &str, value: &str) -> Result<Vec<Host>, ConninfoError> {
    Ok(split_list(key, value)?
        .into_iter()
        .map(Host::from)
        .collect())
}

/// Ports as libpq reads them: comma-separated, an empty entry meaning 5432.
fn parse_ports(key: &str, value: &str) -> Result<Vec<u16>, ConninfoError> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .map(|entry| {
            let entry = entry.trim_matches(is_space);
            if entry.is_empty() {
                return Ok(DEFAULT_PORT);
            }
            match entry.parse::<u16>() {
                Ok(port) if port > 0 => Ok(port),
                _ => Err(ConninfoError::invalid(key, entry, PORT_EXPECTED)),
            }
        })
        .collect()
}

fn check_hostaddrs(value: &str) -> Result<(), ConninfoError> {
    for entry in split_list("hostaddr", value)? {
        if entry.parse::<IpAddr>().is_err() {
            return Err(ConninfoError::invalid("hostaddr", entry, HOSTADDR_EXPECTED));
        }
    }
    Ok(())
}

/// An integer as libpq's `parse_int_param` reads it: surrounding whitespace allowed.
fn parse_integer(key: &str, value: &str) -> Result<i64, ConninfoError> {
    value
        .trim_matches(is_space)
        .parse::<i64>()
        .map_err(|_| ConninfoError::invalid(key, value, INTEGER_EXPECTED))
}

/// `connect_timeout` in seconds: zero or less waits indefinitely, 1 becomes 2 (libpq: "to
/// prevent possibly waiting hardly-at-all").
fn parse_connect_timeout(value: &str) -> Result<Option<Duration>, ConninfoError> {
    if value.is_empty() {
        return Ok(None);
    }
    let seconds = parse_integer("connect_timeout", value)?;
    Ok(Some(match seconds {
        i64::MIN..=0 => Duration::ZERO,
        1 => Duration::from_secs(2),
        n => Duration::from_secs(n.unsigned_abs()),
    }))
}

fn check_target_session_attrs(value: &str) -> Result<(), ConninfoError> {
    match value {
        "" | "any" | "read-write" | "read-only" | "primary" | "standby" | "prefer-standby" => {
            Ok(())
        }
        _ => Err(ConninfoError::invalid(
            "target_session_attrs",
            value,
            TARGET_SESSION_ATTRS_EXPECTED,
        )),
    }
}

fn check_other(kw: Keyword, key: &str, value: &str) -> Result<(), ConninfoError> {
    if value.is_empty() {
        return Ok(());
    }
    match kw {
        Keyword::OtherInteger => parse_integer(key, value).map(|_| ()),
        Keyword::Gssencmode => match value {
            "disable" | "prefer" => Ok(()),
            "require" => Err(ConninfoError::Unsupported {
                key: "gssencmode=require".to_owned(),
                hint: "pgsub has no GSSAPI encryption; use sslmode=verify-full instead",
            }),
            _ => Err(ConninfoError::invalid(key, value, GSSENCMODE_EXPECTED)),
        },
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------
// Small string helpers that never panic.

/// libpq's `isspace` in the C locale.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0B' | '\x0C')
}

/// `s[from..]`, or `""` when `from` is past the end or not a character boundary.
fn tail(s: &str, from: usize) -> &str {
    s.get(from..).unwrap_or("")
}

/// `s[from..to]`, or `""` when the range is not valid.
fn slice(s: &str, from: usize, to: usize) -> &str {
    s.get(from..to).unwrap_or("")
}

/// The first position at or after `from` that is not whitespace.
fn skip_spaces(s: &str, from: usize) -> usize {
    let rest = tail(s, from);
    from + rest.find(|c: char| !is_space(c)).unwrap_or(rest.len())
}

/// Byte offset to a 1-based character position, for messages.
fn char_position(s: &str, byte: usize) -> usize {
    s.char_indices().take_while(|(i, _)| *i < byte).count() + 1
}

// ---------------------------------------------------------------------------------------
// The key=value form.

/// One `key = value` pair, where it sits in the string, and its unescaped value.
struct Pair<'a> {
    key: &'a str,
    value: String,
    start: usize,
    value_start: usize,
    end: usize,
}

/// Why the key=value lexer stopped.
enum LexError {
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
fn next_pair(s: &str, from: usize) -> Result<Option<Pair<'_>>, LexError> {
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

fn parse_key_value(s: &str) -> Result<Parsed, ConninfoError> {
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

// ---------------------------------------------------------------------------------------
// The URI form.

/// The length of a `postgresql://` or `postgres://` prefix (case-sensitive, as libpq).
fn uri_prefix_len(s: &str) -> Option<usize> {
    ["postgresql://", "postgres://"]
        .iter()
        .find(|p| s.starts_with(*p))
        .map(|p| p.len())
}

/// Percent-decodes one part of a URI; `what` names the part in errors, never its content.
fn percent_decode(s: &str, what: &str) -> Result<String, ConninfoError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let hex = |at: usize| bytes.get(at).and_then(|h| (*h as char).to_digit(16));
        let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
            return Err(ConninfoError::uri(format!(
                "invalid percent-encoding in the {what} (expected % followed by two hexadecimal digits)"
            )));
        };
        let decoded = (hi * 16 + lo) as u8;
        if decoded == 0 {
            return Err(ConninfoError::uri(format!("forbidden %00 in the {what}")));
        }
        out.push(decoded);
        i += 3;
    }
    String::from_utf8(out)
        .map_err(|_| ConninfoError::uri(format!("the percent-decoded {what} is not valid UTF-8")))
}

/// Parses the part after `postgresql://`, as libpq's `conninfo_uri_parse_options`. `base` is
/// where `rest` starts in `s`, for positions in messages.
fn parse_uri(s: &str, base: usize, rest: &str) -> Result<Parsed, ConninfoError> {
    let mut parsed = Parsed::default();
    let mut p = parse_userinfo(&mut parsed, rest)?;
    p = parse_netlocs(&mut parsed, rest, p)?;
    if tail(rest, p).starts_with('/') {
        let path = tail(rest, p + 1);
        let len = path.find('?').unwrap_or(path.len());
        let dbname = slice(path, 0, len);
        if !dbname.is_empty() {
            parsed.set("dbname", &percent_decode(dbname, "database name")?)?;
        }
        p += 1 + len;
    }
    if tail(rest, p).starts_with('?') {
        parse_query(&mut parsed, s, base + p + 1, tail(rest, p + 1))?;
    }
    Ok(parsed)
}

/// `user[:password]@`, when an `@` comes before the first `/` (libpq's rule); returns where
/// the host list starts.
fn parse_userinfo(parsed: &mut Parsed, rest: &str) -> Result<usize, ConninfoError> {
    let Some(at) = rest
        .find(['@', '/'])
        .filter(|&i| tail(rest, i).starts_with('@'))
    else {
        return Ok(0);
    };
    let userinfo = slice(rest, 0, at);
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (userinfo, None),
    };
    if !user.is_empty() {
        parsed.set("user", &percent_decode(user, "user name")?)?;
    }
    if let Some(password) = password
        && !password.is_empty()
    {
        parsed.set("password", &percent_decode(password, "password")?)?;
    }
    Ok(at + 1)
}

/// `host[:port][,host[:port]…]` starting at `p`, with `[IPv6]` hosts; returns where it ends.
/// As libpq, the hosts and the ports are gathered into comma-separated lists, decoded and
/// stored as `host=…` and `port=…`.
fn parse_netlocs(parsed: &mut Parsed, rest: &str, mut p: usize) -> Result<usize, ConninfoError> {
    let mut hosts = String::new();
    let mut ports = String::new();
    loop {
        let netloc = tail(rest, p);
        if let Some(v6) = netloc.strip_prefix('[') {
            let Some(close) = v6.find(']') else {
                return Err(ConninfoError::uri(
                    "missing \"]\" after an IPv6 host address",
                ));
            };
            if close == 0 {
                return Err(ConninfoError::uri(
                    "empty IPv6 host address between \"[\" and \"]\"",
                ));
            }
            hosts.push_str(slice(v6, 0, close));
            p += close + 2;
            if let Some(c) = tail(rest, p).chars().next()
                && !matches!(c, ':' | '/' | '?' | ',')
            {
                return Err(ConninfoError::uri(format!(
                    "unexpected character \"{c}\" after an IPv6 host address (expected \":\", \"/\", \"?\" or \",\")"
                )));
            }
        } else {
            let len = netloc.find([':', '/', '?', ',']).unwrap_or(netloc.len());
            hosts.push_str(slice(netloc, 0, len));
            p += len;
        }
        if tail(rest, p).starts_with(':') {
            let port = tail(rest, p + 1);
            let len = port.find(['/', '?', ',']).unwrap_or(port.len());
            ports.push_str(slice(port, 0, len));
            p += 1 + len;
        }
        if !tail(rest, p).starts_with(',') {
            break;
        }
        p += 1;
        hosts.push(',');
        ports.push(',');
    }
    if !hosts.is_empty() {
        parsed.set("host", &percent_decode(&hosts, "host")?)?;
    }
    if ports.split(',').any(|port| !port.is_empty()) {
        let ports = percent_decode(&ports, "port")?;
        parsed.set("port", &ports).map_err(|_| {
            ConninfoError::uri(
                "invalid port after a host (expected a number from 1 to 65535; percent-encode special characters in the user name and password, e.g. \"/\" as %2F)",
            )
        })?;
    }
    Ok(p)
}

/// `key=value&…` as libpq's `conninfo_uri_parse_params`, including its `ssl=true` alias for
/// `sslmode=require`. `at` is where `query` starts in `s`.
fn parse_query(parsed: &mut Parsed, s: &str, at: usize, query: &str) -> Result<(), ConninfoError> {
    let mut piece_start = at;
    let mut after_secret = false;
    for piece in query.split('&') {
        let position = char_position(s, piece_start);
        piece_start += piece.len() + 1;
        if piece.is_empty() {
            continue;
        }
        let Some((raw_key, raw_value)) = piece.split_once('=') else {
            return Err(ConninfoError::uri(format!(
                "missing \"=\" in query parameter {}",
                describe_param(piece, after_secret, position)
            )));
        };
        let key = percent_decode(raw_key, "query parameter name")?;
        let shown = describe_param(&key, after_secret, position);
        if raw_value.contains('=') {
            return Err(ConninfoError::uri(format!(
                "extra \"=\" in query parameter {shown} (percent-encode \"=\" in values as %3D)"
            )));
        }
        let value = percent_decode(raw_value, &format!("value of query parameter {shown}"))?;
        let (key, value) = if key == "ssl" && value == "true" {
            ("sslmode", "require")
        } else {
            (key.as_str(), value.as_str())
        };
        parsed
            .set(key, value)
            .map_err(|e| e.hide_unknown_key(after_secret, position))?;
        after_secret = is_secret_key(key);
    }
    Ok(())
}

/// A query parameter name for a message: quoted when it looks like a keyword, else its position.
fn describe_param(key: &str, after_secret: bool, position: usize) -> String {
    if !after_secret && key_like(key) {
        format!("\"{key}\"")
    } else {
        format!("at character {position}")
    }
}

// ---------------------------------------------------------------------------------------
// Environment and defaults.

/// The environment variables libpq reads, and the keyword each one fills.
const ENV_VARS: [(&str, &str); 16] = [
    ("PGHOST", "host"),
    ("PGHOSTADDR", "hostaddr"),
    ("PGPORT", "port"),
    ("PGDATABASE", "dbname"),
    ("PGUSER", "user"),
    ("PGPASSWORD", "password"),
    ("PGPASSFILE", "passfile"),
    ("PGSSLMODE", "sslmode"),
    ("PGSSLROOTCERT", "sslrootcert"),
    ("PGSSLCERT", "sslcert"),
    ("PGSSLKEY", "sslkey"),
    ("PGAPPNAME", "application_name"),
    ("PGCONNECT_TIMEOUT", "connect_timeout"),
    ("PGOPTIONS", "options"),
    ("PGCHANNELBINDING", "channel_binding"),
    ("PGTARGETSESSIONATTRS", "target_session_attrs"),
];

/// The process environment, as a lookup function.
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Parsed {
    /// True when `key` was not given, so that its environment variable applies.
    fn is_unset(&self, key: &str) -> bool {
        let info = &self.info;
        match key {
            "host" => info.hosts.is_empty(),
            "hostaddr" => info.hostaddr.is_none(),
            "port" => info.ports.is_empty(),
            "dbname" => info.dbname.is_none(),
            "user" => info.user.is_none(),
            "password" => info.password.is_none(),
            "passfile" => info.passfile.is_none(),
            "sslmode" => !self.seen.sslmode,
            "sslrootcert" => info.sslrootcert.is_none(),
            "sslcert" => info.sslcert.is_none(),
            "sslkey" => info.sslkey.is_none(),
            "application_name" => info.application_name.is_none(),
            "connect_timeout" => info.connect_timeout.is_none(),
            "options" => info.options.is_none(),
            "channel_binding" => !self.seen.channel_binding,
            "target_session_attrs" => info.target_session_attrs.is_none(),
            _ => false,
        }
    }

    /// Fills unset keywords from the environment (libpq's `conninfo_add_defaults`); an empty
    /// variable counts as unset. Invalid values are skipped and returned as errors.
    fn apply_env(mut self, get: &dyn Fn(&str) -> Option<String>) -> (Parsed, Vec<ConninfoError>) {
        let mut errors = Vec::new();
        for (var, key) in ENV_VARS {
            if !self.is_unset(key) {
                continue;
            }
            let Some(value) = get(var).filter(|v| !v.is_empty()) else {
                continue;
            };
            if let Err(e) = self.set(key, &value) {
                errors.push(e.about_env_var(var));
            }
        }
        (self, errors)
    }
}

/// One line of `/etc/passwd`, the parts pgsub uses.
struct PasswdEntry {
    name: String,
    home: PathBuf,
}

/// The entry for `uid` in the contents of an `/etc/passwd` file.
fn passwd_entry(contents: &str, uid: u32) -> Option<PasswdEntry> {
    contents.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        let id: u32 = fields.next()?.parse().ok()?;
        let _gid = fields.next()?;
        let _gecos = fields.next()?;
        let home = fields.next()?;
        (id == uid && !name.is_empty() && !name.starts_with('#')).then(|| PasswdEntry {
            name: name.to_owned(),
            home: PathBuf::from(home),
        })
    })
}

/// The `/etc/passwd` entry of this process's effective user: `/proc/self` is owned by it.
fn current_passwd_entry() -> Option<PasswdEntry> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let contents = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd_entry(&contents, uid)
}

/// The OS user name: `$USER`, else `$LOGNAME`, else the effective user's `/etc/passwd` entry.
fn os_user(get: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|var| get(var).filter(|v| !v.is_empty()))
        .or_else(|| current_passwd_entry().map(|e| e.name))
}

/// The default host: the first of [`DEFAULT_SOCKET_DIRS`] holding the socket for `port`,
/// else the first that exists, else `localhost` over TCP.
fn default_host(port: u16, exists: &dyn Fn(&Path) -> bool) -> Host {
    let socket = format!(".s.PGSQL.{port}");
    let dirs = DEFAULT_SOCKET_DIRS.iter().map(Path::new);
    dirs.clone()
        .find(|dir| exists(&dir.join(&socket)))
        .or_else(|| dirs.clone().find(|dir| exists(dir)))
        .map_or_else(
            || Host::Tcp("localhost".to_owned()),
            |dir| Host::Unix(dir.to_path_buf()),
        )
}

// ---------------------------------------------------------------------------------------
// Conninfo.

impl FromStr for Conninfo {
    type Err = ConninfoError;

    /// Same as [`Conninfo::parse`].
    fn from_str(s: &str) -> Result<Conninfo, ConninfoError> {
        Conninfo::parse(s)
    }
}

impl Conninfo {
    /// Parses a connection string in either libpq form: key=value pairs
    /// (`host=db port=5432 password='it''s'`) or a `postgresql://` / `postgres://` URI.
    /// The empty string is valid (everything unset). Only the string is read: no
    /// environment, defaults or password file (see [`Conninfo::resolve`]).
    pub fn parse(s: &str) -> Result<Conninfo, ConninfoError> {
        parse_tracked(s).map(|parsed| parsed.info)
    }

    /// Fills unset settings from the `PG*` environment variables (`PGHOST`, `PGHOSTADDR`,
    /// `PGPORT`, `PGDATABASE`, `PGUSER`, `PGPASSWORD`, `PGPASSFILE`, `PGSSLMODE`,
    /// `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`, `PGAPPNAME`, `PGCONNECT_TIMEOUT`,
    /// `PGOPTIONS`, `PGCHANNELBINDING`, `PGTARGETSESSIONATTRS`). Invalid values are skipped
    /// with a warning; [`Conninfo::resolve`] refuses them instead.
    pub fn with_env(self) -> Self {
        self.with_env_from(process_env)
    }

    /// [`Conninfo::with_env`] reading variables through `get`. `sslmode` and
    /// `channel_binding` count as unset when they hold their default, `prefer`.
    pub fn with_env_from(self, get: impl Fn(&str) -> Option<String>) -> Self {
        let seen = Seen::inferred(&self);
        let (parsed, errors) = Parsed { info: self, seen }.apply_env(&get);
        for error in errors {
            tracing::warn!("ignoring environment variable: {error}");
        }
        parsed.info
    }

    /// Fills what is still unset with libpq's defaults: port 5432; host the default Unix
    /// socket directory (see [`DEFAULT_SOCKET_DIRS`]) or `localhost`, unless `hostaddr` is
    /// given; user the OS user; dbname the user.
    pub fn with_defaults(self) -> Self {
        self.with_defaults_from(&process_env, &|path: &Path| path.exists())
    }

    fn with_defaults_from(
        mut self,
        get: &dyn Fn(&str) -> Option<String>,
        exists: &dyn Fn(&Path) -> bool,
    ) -> Self {
        if self.ports.is_empty() {
            self.ports = vec![DEFAULT_PORT];
        }
        if self.hosts.is_empty() && self.hostaddr.is_none() {
            self.hosts = vec![default_host(self.port_for(0), exists)];
        }
        if self.user.is_none() {
            self.user = os_user(get);
        }
        if self.dbname.is_none() {
            self.dbname = self.user.clone();
        }
        self
    }

    /// Everything libpq does before connecting: parses `s`, fills unset settings from the
    /// environment and then the defaults, checks that hosts, hostaddrs and ports match up,
    /// applies `sslrootcert=system` (default sslmode `verify-full`, weaker ones refused), and
    /// when no password is given looks one up in the password file (`passfile`, else
    /// `PGPASSFILE`, else `~/.pgpass`). An invalid `PG*` variable is an error here.
    pub fn resolve(s: &str) -> Result<Conninfo, ConninfoError> {
        resolve_from(s, &process_env, &|path: &Path| path.exists())
    }

    /// The port for the host at `index`: the only port, that host's own, or 5432.
    pub fn port_for(&self, index: usize) -> u16 {
        match self.ports.as_slice() {
            [] => DEFAULT_PORT,
            [port] => *port,
            ports => ports.get(index).copied().unwrap_or(DEFAULT_PORT),
        }
    }

    /// The `hostaddr` entries, in order.
    fn hostaddrs(&self) -> Vec<&str> {
        self.hostaddr
            .as_deref()
            .map_or_else(Vec::new, |a| a.split(',').collect())
    }

    /// libpq's checks on list lengths (`connectOptions2`); lists not yet known are skipped.
    fn check_counts(&self) -> Result<(), ConninfoError> {
        let hostaddrs = self.hostaddrs().len();
        if hostaddrs > 0 && !self.hosts.is_empty() && hostaddrs != self.hosts.len() {
            return Err(ConninfoError::HostaddrCountMismatch {
                hosts: self.hosts.len(),
                hostaddrs,
            });
        }
        let targets = if hostaddrs > 0 {
            hostaddrs
        } else {
            self.hosts.len()
        };
        if targets > 0 && self.ports.len() > 1 && self.ports.len() != targets {
            return Err(ConninfoError::PortCountMismatch {
                ports: self.ports.len(),
                hosts: targets,
            });
        }
        Ok(())
    }

    /// The host names to look up in the password file for target `index`, in order. libpq
    /// matches a socket in the default directory as `localhost` and any other socket by its
    /// directory; pgsub also tries `localhost` for the latter.
    fn pgpass_hosts(&self, index: usize) -> Vec<String> {
        match self.hosts.get(index) {
            Some(Host::Tcp(name)) => vec![name.clone()],
            Some(Host::Unix(dir)) => {
                let dir = dir.to_string_lossy().into_owned();
                let default =
                    DEFAULT_SOCKET_DIRS.contains(&dir.as_str()) || dir == "/run/postgresql";
                if default {
                    vec!["localhost".to_owned()]
                } else {
                    vec![dir, "localhost".to_owned()]
                }
            }
            None => match self.hostaddrs().get(index) {
                Some(addr) => vec![(*addr).to_owned()],
                None => vec!["localhost".to_owned()],
            },
        }
    }

    /// The password from the password file for the first target that has one.
    fn password_from_file(&self, get: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        let path = self
            .passfile
            .clone()
            .or_else(|| pgpass::default_path_from(get))?;
        let user = self.user.as_deref()?;
        let dbname = self.dbname.as_deref()?;
        let contents = match pgpass::load(&path) {
            Ok(contents) => contents?,
            Err(error) => {
                tracing::warn!("ignoring the password file: {error}");
                return None;
            }
        };
        let targets = self.hosts.len().max(self.hostaddrs().len()).max(1);
        (0..targets).find_map(|i| {
            let port = self.port_for(i);
            self.pgpass_hosts(i).iter().find_map(|host| {
                pgpass::find_in(&contents, host, port, dbname, user).filter(|pw| !pw.is_empty())
            })
        })
    }

    /// This connection string in key=value form, values quoted where needed, secrets
    /// (`password`, `sslpassword`) shown as `********`, and so is anything inside another
    /// value that looks like one (`dbname='postgresql://u:secret@h'`). Parsing it gives back
    /// the same settings, secrets aside.
    pub fn redacted(&self) -> String {
        self.pairs()
            .into_iter()
            .map(|(key, value)| {
                if is_secret_key(key) {
                    format!("{key}={REDACTED}")
                } else {
                    format!("{key}={}", quote_value(&scrub(&value)))
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Every set keyword with its value, in libpq's order, secrets included.
    fn pairs(&self) -> Vec<(&str, String)> {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        let mut push = |key, value: Option<String>| {
            if let Some(value) = value {
                pairs.push((key, value));
            }
        };
        let join = |items: Vec<String>| (!items.is_empty()).then(|| items.join(","));
        push(
            "host",
            join(self.hosts.iter().map(Host::to_string).collect()),
        );
        push("hostaddr", self.hostaddr.clone());
        push(
            "port",
            join(self.ports.iter().map(u16::to_string).collect()),
        );
        push("dbname", self.dbname.clone());
        push("user", self.user.clone());
        push("password", self.password.clone());
        push(
            "passfile",
            self.passfile
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
        );
        push("application_name", self.application_name.clone());
        push("options", self.options.clone());
        push(
            "connect_timeout",
            self.connect_timeout.map(|t| t.as_secs().to_string()),
        );
        push(
            "sslmode",
            (self.sslmode != SslMode::default()).then(|| self.sslmode.to_string()),
        );
        push("sslrootcert", self.sslrootcert.clone());
        push("sslcert", self.sslcert.clone());
        push("sslkey", self.sslkey.clone());
        push(
            "channel_binding",
            (self.channel_binding != ChannelBindingMode::default())
                .then(|| self.channel_binding.to_string()),
        );
        push("replication", self.replication.clone());
        push("target_session_attrs", self.target_session_attrs.clone());
        for (key, value) in &self.other {
            pairs.push((key.as_str(), value.clone()));
        }
        pairs
    }

    /// The servers to try, for messages: `127.0.0.1:5432`, `[::1]:5432`,
    /// `/tmp (port 5432)`, `db (hostaddr 10.0.0.5):5432`, comma-separated when several.
    pub fn host_display(&self) -> String {
        let hostaddrs = self.hostaddrs();
        let targets = self.hosts.len().max(hostaddrs.len());
        if targets == 0 {
            return format!("default host (port {})", self.port_for(0));
        }
        (0..targets)
            .map(|i| {
                let port = self.port_for(i);
                let addr = hostaddrs.get(i).copied();
                match (self.hosts.get(i), addr) {
                    (Some(Host::Unix(dir)), _) => format!("{} (port {port})", dir.display()),
                    (Some(Host::Tcp(name)), Some(addr)) => {
                        format!("{} (hostaddr {addr}):{port}", bracketed(name))
                    }
                    (Some(Host::Tcp(name)), None) => format!("{}:{port}", bracketed(name)),
                    (None, Some(addr)) => format!("{}:{port}", bracketed(addr)),
                    (None, None) => format!("default host (port {port})"),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The same settings for tokio-postgres: hosts (TCP and Unix), hostaddrs, ports, user,
    /// password, dbname, application_name (else `fallback_application_name`), options,
    /// connect_timeout, keepalives, tcp_user_timeout, target_session_attrs (`any`,
    /// `read-write`, `read-only`), load_balance_hosts, channel_binding, and sslmode as
    /// tokio-postgres knows it: `disable` → Disable, `allow`/`prefer` → Prefer,
    /// `require`/`verify-ca`/`verify-full` → Require (certificate checks are the TLS
    /// connector's job). Settings tokio-postgres lacks are left out.
    pub fn tokio_postgres_config(&self) -> tokio_postgres::Config {
        use tokio_postgres::config as tp;
        let mut config = tokio_postgres::Config::new();
        for host in &self.hosts {
            match host {
                Host::Tcp(name) => config.host(name.as_str()),
                Host::Unix(dir) => config.host_path(dir),
            };
        }
        for addr in self.hostaddrs() {
            if let Ok(addr) = addr.parse::<IpAddr>() {
                config.hostaddr(addr);
            }
        }
        for &port in &self.ports {
            config.port(port);
        }
        if let Some(user) = &self.user {
            config.user(user.as_str());
        }
        if let Some(password) = &self.password {
            config.password(password.as_bytes());
        }
        if let Some(dbname) = &self.dbname {
            config.dbname(dbname.as_str());
        }
        if let Some(name) = self
            .application_name
            .as_ref()
            .or_else(|| self.other.get("fallback_application_name"))
        {
            config.application_name(name.as_str());
        }
        if let Some(options) = &self.options {
            config.options(options.as_str());
        }
        if let Some(timeout) = self.connect_timeout.filter(|t| !t.is_zero()) {
            config.connect_timeout(timeout);
        }
        config.ssl_mode(match self.sslmode {
            SslMode::Disable => tp::SslMode::Disable,
            SslMode::Allow | SslMode::Prefer => tp::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => tp::SslMode::Require,
        });
        config.channel_binding(match self.channel_binding {
            ChannelBindingMode::Disable => tp::ChannelBinding::Disable,
            ChannelBindingMode::Prefer => tp::ChannelBinding::Prefer,
            ChannelBindingMode::Require => tp::ChannelBinding::Require,
        });
        match self.target_session_attrs.as_deref() {
            Some("read-write") => {
                config.target_session_attrs(tp::TargetSessionAttrs::ReadWrite);
            }
            Some("read-only") => {
                config.target_session_attrs(tp::TargetSessionAttrs::ReadOnly);
            }
            _ => {}
        }
        if self.other.get("load_balance_hosts").map(String::as_str) == Some("random") {
            config.load_balance_hosts(tp::LoadBalanceHosts::Random);
        }
        self.apply_tcp_settings(&mut config);
        config
    }

    /// keepalives, keepalives_idle, keepalives_interval, keepalives_count, tcp_user_timeout.
    fn apply_tcp_settings(&self, config: &mut tokio_postgres::Config) {
        let int = |key: &str| {
            self.other
                .get(key)
                .and_then(|v| v.trim_matches(is_space).parse::<i64>().ok())
        };
        let positive = |key: &str| {
            int(key)
                .and_then(|v| u64::try_from(v).ok())
                .filter(|&v| v > 0)
        };
        if let Some(on) = int("keepalives") {
            config.keepalives(on != 0);
        }
        if let Some(seconds) = positive("keepalives_idle") {
            config.keepalives_idle(Duration::from_secs(seconds));
        }
        if let Some(seconds) = positive("keepalives_interval") {
            config.keepalives_interval(Duration::from_secs(seconds));
        }
        if let Some(count) = positive("keepalives_count").and_then(|c| u32::try_from(c).ok()) {
            config.keepalives_retries(count);
        }
        if let Some(millis) = positive("tcp_user_timeout") {
            config.tcp_user_timeout(Duration::from_millis(millis));
        }
    }
}

/// A non-secret value with anything in it that looks like a secret (`user:password@` after
/// `://`, `password=…`) replaced by `********`.
fn scrub(value: &str) -> String {
    apply_redactions(value, loose_secret_ranges(value, 0..value.len()))
}

/// An IPv6 address in brackets, anything else as it is.
fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// A value for the key=value form: single-quoted, with `\'` and `\\`, when empty or when it
/// contains whitespace, a quote or a backslash.
fn quote_value(value: &str) -> String {
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

fn parse_tracked(s: &str) -> Result<Parsed, ConninfoError> {
    let trimmed = s.trim_start_matches(is_space);
    let parsed = match uri_prefix_len(trimmed) {
        Some(prefix) => {
            let base = s.len() - trimmed.len() + prefix;
            parse_uri(s, base, tail(trimmed, prefix).trim_end_matches(is_space))?
        }
        None => parse_key_value(s)?,
    };
    parsed.info.check_counts()?;
    Ok(parsed)
}

fn resolve_from(
    s: &str,
    get: &dyn Fn(&str) -> Option<String>,
    exists: &dyn Fn(&Path) -> bool,
) -> Result<Conninfo, ConninfoError> {
    let (parsed, errors) = parse_tracked(s)?.apply_env(get);
    if let Some(error) = errors.into_iter().next() {
        return Err(error);
    }
    let seen = parsed.seen;
    let mut info = parsed.info.with_defaults_from(get, exists);
    info.check_counts()?;
    if info.sslrootcert.as_deref() == Some("system") {
        if !seen.sslmode {
            info.sslmode = SslMode::VerifyFull;
        } else if info.sslmode != SslMode::VerifyFull {
            return Err(ConninfoError::WeakSslmodeWithSystemRoot {
                sslmode: info.sslmode,
            });
        }
    }
    if info.password.is_none() {
        info.password = info.password_from_file(get);
    }
    Ok(info)
}

impl fmt::Display for Conninfo {
    /// Same as [`Conninfo::redacted`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for Conninfo {
    /// All fields, with secrets shown as `Some("********")` (and text inside other values
    /// that looks like a secret scrubbed, as in [`Conninfo::redacted`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = |value: &Option<String>| value.as_deref().map(scrub);
        let hosts: Vec<String> = self.hosts.iter().map(|h| scrub(&h.to_string())).collect();
        let path =
            |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| scrub(&p.display().to_string()));
        let other: BTreeMap<&str, String> = self
            .other
            .iter()
            .map(|(k, v)| {
                let v = if is_secret_key(k) {
                    REDACTED.to_owned()
                } else {
                    scrub(v)
                };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("Conninfo")
            .field("hosts", &hosts)
            .field("ports", &self.ports)
            .field("hostaddr", &text(&self.hostaddr))
            .field("user", &text(&self.user))
            .field("password", &self.password.as_ref().map(|_| REDACTED))
            .field("dbname", &text(&self.dbname))
            .field("application_name", &text(&self.application_name))
            .field("options", &text(&self.options))
            .field("connect_timeout", &self.connect_timeout)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &text(&self.sslrootcert))
            .field("sslcert", &text(&self.sslcert))
            .field("sslkey", &text(&self.sslkey))
            .field("passfile", &path(&self.passfile))
            .field("channel_binding", &self.channel_binding)
            .field("replication", &text(&self.replication))
            .field("target_session_attrs", &text(&self.target_session_attrs))
            .field("other", &other)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------
// Redaction of raw strings.

/// A raw, user-given connection string with every secret replaced by `********`, whether or
/// not it parses: `password=…` in key=value form (quoted or not, also the stray words that
/// follow an unquoted one), `user:password@` in URIs, and `?password=` / `&password=` in URI
/// queries. Everything else is kept as written.
pub fn redact(raw: &str) -> String {
    let trimmed = raw.trim_start_matches(is_space);
    let lead = raw.len() - trimmed.len();
    let prefix = ["postgresql://", "postgres://"]
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
    use super::pgpass::tests::TempDir;
    use super::*;
    use proptest::prelude::*;

    fn parse(s: &str) -> Conninfo {
        Conninfo::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

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
    fn debug_scrubs_every_text_field() {
        let info = parse("host=h sslrootcert= password=SECRETx");
        let dbg = format!("{info:?}");
        assert!(!dbg.contains("SECRETx"), "{dbg}");
    }

    #[test]
    fn redact_hides_a_password_that_follows_a_quoted_value_ending_in_password_equals() {
        let out = redact("application_name='a password='SECRETpw' host=h");
        assert!(!out.contains("SECRETpw"), "{out}");
    }

    fn parse_err(s: &str) -> ConninfoError {
        match Conninfo::parse(s) {
            Ok(info) => panic!("{s:?} should not parse, got {info:?}"),
            Err(e) => e,
        }
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    /// `resolve` with a fake environment and no socket directories.
    fn resolve_with(s: &str, vars: &[(&str, &str)]) -> Result<Conninfo, ConninfoError> {
        resolve_from(s, &env(vars), &|_: &Path| false)
    }

    fn tcp(name: &str) -> Host {
        Host::Tcp(name.to_owned())
    }

    fn unix(dir: &str) -> Host {
        Host::Unix(PathBuf::from(dir))
    }

    fn invalid(key: &str, value: &str, expected: &'static str) -> ConninfoError {
        ConninfoError::InvalidValue {
            key: key.to_owned(),
            value: value.to_owned(),
            expected,
        }
    }

    fn uri_problem(s: &str) -> String {
        match parse_err(s) {
            ConninfoError::InvalidUri { problem } => problem,
            other => panic!("{s:?}: expected InvalidUri, got {other:?}"),
        }
    }

    #[test]
    fn empty_string_is_all_defaults() {
        for s in [
            "",
            "  \t\n",
            "postgresql://",
            "postgres://",
            "postgresql://?",
        ] {
            assert_eq!(parse(s), Conninfo::default(), "{s:?}");
        }
    }

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

    #[test]
    fn unknown_key_is_an_error_naming_the_key() {
        let err = parse_err("host=db hostname=x");
        assert_eq!(
            err,
            ConninfoError::UnknownKey {
                key: "hostname".to_owned()
            }
        );
        assert_eq!(
            err.to_string(),
            "invalid connection option \"hostname\": expected a libpq keyword such as host, port, dbname, user, password or sslmode"
        );
        assert_eq!(
            parse_err("HOST=db"),
            ConninfoError::UnknownKey {
                key: "HOST".to_owned()
            }
        );
        assert_eq!(
            parse_err("postgresql://db/app?foo=bar"),
            ConninfoError::UnknownKey {
                key: "foo".to_owned()
            }
        );
        assert_eq!(
            parse_err("password=two words=x"),
            ConninfoError::UnknownKeyHidden { position: 14 }
        );
    }

    #[test]
    fn uri_with_percent_encoded_password_and_ipv6_host() {
        let info =
            parse("postgresql://app%40corp:p%40ss%3Aw0rd%2F@[::1]:5433/my%20db?sslmode=require");
        assert_eq!(info.user.as_deref(), Some("app@corp"));
        assert_eq!(info.password.as_deref(), Some("p@ss:w0rd/"));
        assert_eq!(info.hosts, vec![tcp("::1")]);
        assert_eq!(info.ports, vec![5433]);
        assert_eq!(info.dbname.as_deref(), Some("my db"));
        assert_eq!(info.sslmode, SslMode::Require);
        assert_eq!(info.host_display(), "[::1]:5433");

        let info = parse("postgres://u:pa:ss?@h");
        assert_eq!(info.user.as_deref(), Some("u"));
        assert_eq!(info.password.as_deref(), Some("pa:ss?"));
        assert_eq!(info.hosts, vec![tcp("h")]);
    }

    #[test]
    fn uri_query_parameters_override() {
        let info = parse(
            "postgresql://alice@h1:5432/app?host=/var/run/postgresql&port=5433&dbname=other&user=bob&application_name=pgsub%20test&ssl=true&connect_timeout=10&",
        );
        assert_eq!(info.hosts, vec![unix("/var/run/postgresql")]);
        assert_eq!(info.ports, vec![5433]);
        assert_eq!(info.dbname.as_deref(), Some("other"));
        assert_eq!(info.user.as_deref(), Some("bob"));
        assert_eq!(info.application_name.as_deref(), Some("pgsub test"));
        assert_eq!(info.sslmode, SslMode::Require);
        assert_eq!(info.connect_timeout, Some(Duration::from_secs(10)));
    }

    #[test]
    fn uri_unix_socket_and_empty_parts() {
        let info = parse("postgresql://%2Ftmp%2Fsock/db");
        assert_eq!(info.hosts, vec![unix("/tmp/sock")]);
        assert_eq!(info.dbname.as_deref(), Some("db"));
        assert_eq!(
            parse("postgresql:///db?host=/tmp").hosts,
            vec![unix("/tmp")]
        );
        assert_eq!(
            parse("postgresql:///db?host=@abstract").hosts,
            vec![unix("@abstract")]
        );
        let info = parse("postgresql://:5433/db");
        assert_eq!(info.hosts, vec![]);
        assert_eq!(info.ports, vec![5433]);
        assert_eq!(parse("postgresql://h/").dbname, None);
        assert_eq!(parse("  postgresql://h/db  ").dbname.as_deref(), Some("db"));
    }

    #[test]
    fn uri_errors_say_what_is_wrong() {
        assert_eq!(
            uri_problem("postgresql://[::1/db"),
            "missing \"]\" after an IPv6 host address"
        );
        assert_eq!(
            uri_problem("postgresql://[]/db"),
            "empty IPv6 host address between \"[\" and \"]\""
        );
        assert_eq!(
            uri_problem("postgresql://[::1]x/db"),
            "unexpected character \"x\" after an IPv6 host address (expected \":\", \"/\", \"?\" or \",\")"
        );
        assert!(uri_problem("postgresql://h:99999/db").starts_with("invalid port after a host"));
        assert_eq!(
            uri_problem("postgresql://h/db?sslmode"),
            "missing \"=\" in query parameter \"sslmode\""
        );
        assert_eq!(
            uri_problem("postgresql://h/db?sslmode=a=b"),
            "extra \"=\" in query parameter \"sslmode\" (percent-encode \"=\" in values as %3D)"
        );
        assert_eq!(
            uri_problem("postgresql://u%zz@h"),
            "invalid percent-encoding in the user name (expected % followed by two hexadecimal digits)"
        );
        assert_eq!(
            uri_problem("postgresql://u%00@h"),
            "forbidden %00 in the user name"
        );
        assert_eq!(
            uri_problem("postgresql://h/%ff"),
            "the percent-decoded database name is not valid UTF-8"
        );
        assert_eq!(
            parse_err("postgresql://h/db?sslmode=bogus"),
            invalid("sslmode", "bogus", SSLMODE_EXPECTED)
        );
    }

    #[test]
    fn multiple_hosts_and_ports() {
        let info = parse("host=db1,db2,/tmp port=5432,5433,5434");
        assert_eq!(info.hosts, vec![tcp("db1"), tcp("db2"), unix("/tmp")]);
        assert_eq!(info.ports, vec![5432, 5433, 5434]);
        assert_eq!(info.port_for(2), 5434);
        assert_eq!(info.host_display(), "db1:5432, db2:5433, /tmp (port 5434)");

        let info = parse("host=db1,db2 port=6000");
        assert_eq!((info.port_for(0), info.port_for(1)), (6000, 6000));

        let info = parse("postgresql://db1:5433,db2,[::1]:5434/app");
        assert_eq!(info.hosts, vec![tcp("db1"), tcp("db2"), tcp("::1")]);
        assert_eq!(info.ports, vec![5433, 5432, 5434]);
        assert_eq!(parse("postgresql://a,b/db").ports, Vec::<u16>::new());
        assert_eq!(parse("port=5433,,5434").ports, vec![5433, 5432, 5434]);

        assert_eq!(
            parse_err("host=a,b,c port=1,2"),
            ConninfoError::PortCountMismatch { ports: 2, hosts: 3 }
        );
        assert_eq!(
            parse_err("host=a,,b"),
            ConninfoError::EmptyListEntry {
                key: "host".to_owned()
            }
        );
        assert_eq!(
            parse_err("host=a,b hostaddr=10.0.0.1"),
            ConninfoError::HostaddrCountMismatch {
                hosts: 2,
                hostaddrs: 1
            }
        );
        let info = parse("hostaddr=10.0.0.1,::1 port=5432,5433");
        assert_eq!(info.host_display(), "10.0.0.1:5432, [::1]:5433");
        assert_eq!(
            parse_err("hostaddr=db.example.com"),
            invalid("hostaddr", "db.example.com", HOSTADDR_EXPECTED)
        );
        assert_eq!(parse_err("port=0"), invalid("port", "0", PORT_EXPECTED));
        assert_eq!(parse_err("port=x"), invalid("port", "x", PORT_EXPECTED));
    }

    #[test]
    fn verify_full_and_sslrootcert_are_accepted() {
        let info =
            parse("sslmode=verify-full sslrootcert=/etc/ssl/root.crt sslcert=/c.crt sslkey=/c.key");
        assert_eq!(info.sslmode, SslMode::VerifyFull);
        assert_eq!(info.sslrootcert.as_deref(), Some("/etc/ssl/root.crt"));
        assert_eq!(info.sslcert.as_deref(), Some("/c.crt"));
        assert_eq!(info.sslkey.as_deref(), Some("/c.key"));

        let info = parse("postgresql://h/db?sslmode=verify-ca&sslrootcert=%2Froot.crt");
        assert_eq!(info.sslmode, SslMode::VerifyCa);
        assert_eq!(info.sslrootcert.as_deref(), Some("/root.crt"));

        let err = parse_err("sslmode=verify_full");
        assert_eq!(
            err.to_string(),
            "invalid sslmode value \"verify_full\": expected disable, allow, prefer, require, verify-ca or verify-full"
        );
        for mode in [
            SslMode::Disable,
            SslMode::Allow,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            assert_eq!(mode.to_string().parse::<SslMode>(), Ok(mode));
        }
        assert_eq!(SslMode::default(), SslMode::Prefer);
        assert_eq!(SslMode::VerifyCa.to_string(), "verify-ca");
    }

    #[test]
    fn sslrootcert_system_defaults_to_verify_full_and_refuses_weaker_modes() {
        let vars = [("USER", "u"), ("PGPASSFILE", "/nonexistent/pgpass")];
        let info = resolve_with("host=h sslrootcert=system", &vars).expect("valid");
        assert_eq!(info.sslmode, SslMode::VerifyFull);
        assert_eq!(
            resolve_with("host=h sslrootcert=system sslmode=prefer", &vars),
            Err(ConninfoError::WeakSslmodeWithSystemRoot {
                sslmode: SslMode::Prefer
            })
        );
        let vars = [
            ("USER", "u"),
            ("PGSSLMODE", "require"),
            ("PGSSLROOTCERT", "system"),
        ];
        assert_eq!(
            resolve_with("host=h passfile=/nonexistent", &vars),
            Err(ConninfoError::WeakSslmodeWithSystemRoot {
                sslmode: SslMode::Require
            })
        );
    }

    #[test]
    fn connect_timeout_follows_libpq() {
        let timeout = |s: &str| parse(s).connect_timeout;
        assert_eq!(timeout("connect_timeout=0"), Some(Duration::ZERO));
        assert_eq!(timeout("connect_timeout=-5"), Some(Duration::ZERO));
        assert_eq!(timeout("connect_timeout=1"), Some(Duration::from_secs(2)));
        assert_eq!(
            timeout("connect_timeout=' 10 '"),
            Some(Duration::from_secs(10))
        );
        assert_eq!(timeout("connect_timeout="), None);
        assert_eq!(
            parse_err("connect_timeout=soon"),
            invalid("connect_timeout", "soon", INTEGER_EXPECTED)
        );
    }

    #[test]
    fn known_but_unused_keys_are_kept_and_unsafe_ones_refused() {
        let info = parse(
            "keepalives=1 keepalives_idle=30 keepalives_interval=10 keepalives_count=3 tcp_user_timeout=5000 client_encoding=UTF8 gssencmode=disable replication=database target_session_attrs=read-write channel_binding=require",
        );
        let other: Vec<(&str, &str)> = info
            .other
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            other,
            vec![
                ("client_encoding", "UTF8"),
                ("gssencmode", "disable"),
                ("keepalives", "1"),
                ("keepalives_count", "3"),
                ("keepalives_idle", "30"),
                ("keepalives_interval", "10"),
                ("tcp_user_timeout", "5000"),
            ]
        );
        assert_eq!(info.replication.as_deref(), Some("database"));
        assert_eq!(info.target_session_attrs.as_deref(), Some("read-write"));
        assert_eq!(info.channel_binding, ChannelBindingMode::Require);

        assert_eq!(
            parse_err("keepalives_idle=soon"),
            invalid("keepalives_idle", "soon", INTEGER_EXPECTED)
        );
        assert_eq!(
            parse_err("target_session_attrs=primary-ish"),
            invalid(
                "target_session_attrs",
                "primary-ish",
                TARGET_SESSION_ATTRS_EXPECTED
            )
        );
        assert_eq!(
            parse_err("channel_binding=yes"),
            invalid("channel_binding", "yes", CHANNEL_BINDING_EXPECTED)
        );
        assert!(matches!(
            parse_err("service=prod"),
            ConninfoError::Unsupported { key, .. } if key == "service"
        ));
        assert!(matches!(
            parse_err("gssencmode=require"),
            ConninfoError::Unsupported { .. }
        ));
        assert!(matches!(
            parse_err("sslcrl=/crl.pem"),
            ConninfoError::Unsupported { .. }
        ));
        assert_eq!(parse("service=''"), Conninfo::default());
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

    #[test]
    fn debug_output_hides_password() {
        let info = parse("host=h user=u password=secret sslpassword=keypass");
        for shown in [format!("{info:?}"), format!("{info:#?}"), info.to_string()] {
            assert!(!shown.contains("secret"), "{shown}");
            assert!(!shown.contains("keypass"), "{shown}");
        }
        let debug = format!("{info:?}");
        assert!(debug.contains(r#"password: Some("********")"#), "{debug}");
        assert!(debug.contains(r#""sslpassword": "********""#), "{debug}");
        assert_eq!(
            info.to_string(),
            "host=h user=u password=******** sslpassword=********"
        );
        assert!(format!("{:?}", parse("host=h")).contains("password: None"));

        let info = parse("dbname='postgresql://u:secret@h/db' options='-c password=secret'");
        for shown in [format!("{info:?}"), info.to_string()] {
            assert!(!shown.contains("secret"), "{shown}");
        }
        assert_eq!(
            info.to_string(),
            "dbname=postgresql://u:********@h/db options='-c password=********'"
        );
    }

    #[test]
    fn redacted_quotes_values_and_round_trips() {
        let info = parse(
            r"host=db1,/tmp port=5432,5433 dbname='my db' user=o\'brien options='-c x=1' connect_timeout=10 sslmode=verify-full sslrootcert=/r.crt channel_binding=require keepalives=1",
        );
        assert_eq!(
            info.redacted(),
            r"host=db1,/tmp port=5432,5433 dbname='my db' user='o\'brien' options='-c x=1' connect_timeout=10 sslmode=verify-full sslrootcert=/r.crt channel_binding=require keepalives=1"
        );
        assert_eq!(parse(&info.redacted()), info);
        assert_eq!(Conninfo::default().redacted(), "");
    }

    #[test]
    fn env_fills_only_missing_fields() {
        let vars = [
            ("PGHOST", "envhost"),
            ("PGHOSTADDR", "10.0.0.1"),
            ("PGPORT", "6543"),
            ("PGDATABASE", "envdb"),
            ("PGUSER", "envuser"),
            ("PGPASSWORD", "envpw"),
            ("PGPASSFILE", "/env/pgpass"),
            ("PGSSLMODE", "require"),
            ("PGSSLROOTCERT", "/env/root.crt"),
            ("PGSSLCERT", "/env/c.crt"),
            ("PGSSLKEY", "/env/c.key"),
            ("PGAPPNAME", "envapp"),
            ("PGCONNECT_TIMEOUT", "7"),
            ("PGOPTIONS", "-c x=1"),
            ("PGCHANNELBINDING", "disable"),
            ("PGTARGETSESSIONATTRS", "read-only"),
        ];
        let info = parse("host=given user=givenuser sslmode=verify-full").with_env_from(env(&vars));
        assert_eq!(info.hosts, vec![tcp("given")]);
        assert_eq!(info.hostaddr.as_deref(), Some("10.0.0.1"));
        assert_eq!(info.ports, vec![6543]);
        assert_eq!(info.user.as_deref(), Some("givenuser"));
        assert_eq!(info.dbname.as_deref(), Some("envdb"));
        assert_eq!(info.password.as_deref(), Some("envpw"));
        assert_eq!(info.passfile, Some(PathBuf::from("/env/pgpass")));
        assert_eq!(info.sslmode, SslMode::VerifyFull);
        assert_eq!(info.sslrootcert.as_deref(), Some("/env/root.crt"));
        assert_eq!(info.sslcert.as_deref(), Some("/env/c.crt"));
        assert_eq!(info.sslkey.as_deref(), Some("/env/c.key"));
        assert_eq!(info.application_name.as_deref(), Some("envapp"));
        assert_eq!(info.connect_timeout, Some(Duration::from_secs(7)));
        assert_eq!(info.options.as_deref(), Some("-c x=1"));
        assert_eq!(info.channel_binding, ChannelBindingMode::Disable);
        assert_eq!(info.target_session_attrs.as_deref(), Some("read-only"));

        let info = parse("").with_env_from(env(&[("PGHOST", "/tmp"), ("PGSSLMODE", "require")]));
        assert_eq!(info.hosts, vec![unix("/tmp")]);
        assert_eq!(info.sslmode, SslMode::Require);
        assert_eq!(
            parse("").with_env_from(env(&[("PGHOST", "")])).hosts,
            vec![]
        );
        let ignored = parse("").with_env_from(env(&[("PGSSLMODE", "bogus"), ("PGPORT", "x")]));
        assert_eq!(ignored, Conninfo::default());
    }

    #[test]
    fn resolve_refuses_invalid_env_and_keeps_explicit_prefer() {
        let vars = [("USER", "u"), ("PGSSLMODE", "bogus")];
        assert_eq!(
            resolve_with("host=h passfile=/nonexistent", &vars),
            Err(invalid("PGSSLMODE", "bogus", SSLMODE_EXPECTED))
        );
        let vars = [("USER", "u"), ("PGSSLMODE", "require")];
        let info =
            resolve_with("host=h sslmode=prefer passfile=/nonexistent", &vars).expect("valid");
        assert_eq!(info.sslmode, SslMode::Prefer);
        let vars = [("USER", "u"), ("PGHOST", "a,b"), ("PGPORT", "1,2,3")];
        assert_eq!(
            resolve_with("passfile=/nonexistent", &vars),
            Err(ConninfoError::PortCountMismatch { ports: 3, hosts: 2 })
        );
    }

    #[test]
    fn defaults_fill_socket_port_user_and_dbname() {
        let alice = env(&[("USER", "alice"), ("LOGNAME", "other")]);
        let socket_in_tmp = |p: &Path| p == Path::new("/tmp/.s.PGSQL.5432");
        let info = Conninfo::default().with_defaults_from(&alice, &socket_in_tmp);
        assert_eq!(info.hosts, vec![unix("/tmp")]);
        assert_eq!(info.ports, vec![5432]);
        assert_eq!(info.user.as_deref(), Some("alice"));
        assert_eq!(info.dbname.as_deref(), Some("alice"));

        let debian_dir = |p: &Path| p == Path::new("/var/run/postgresql");
        let info = Conninfo::default().with_defaults_from(&alice, &debian_dir);
        assert_eq!(info.hosts, vec![unix("/var/run/postgresql")]);

        let logname = env(&[("LOGNAME", "bob")]);
        let info = parse("port=6000").with_defaults_from(&logname, &|_: &Path| false);
        assert_eq!(info.hosts, vec![tcp("localhost")]);
        assert_eq!(info.ports, vec![6000]);
        assert_eq!(info.user.as_deref(), Some("bob"));

        let info =
            parse("hostaddr=10.0.0.1 user=u dbname=d").with_defaults_from(&alice, &socket_in_tmp);
        assert_eq!(info.hosts, vec![]);
        assert_eq!(info.user.as_deref(), Some("u"));
        assert_eq!(info.dbname.as_deref(), Some("d"));
    }

    #[test]
    fn passwd_entry_finds_the_effective_user() {
        let contents = "root:x:0:0:root:/root:/bin/bash\n#x:x:1000:1:c:/h:/s\nbroken line\nalice:x:1000:1000:Alice,,,:/home/alice:/bin/sh\n";
        let entry = passwd_entry(contents, 1000).expect("alice");
        assert_eq!(entry.name, "alice");
        assert_eq!(entry.home, PathBuf::from("/home/alice"));
        assert!(passwd_entry(contents, 5).is_none());
    }

    #[test]
    fn resolve_reads_password_from_pgpass() {
        let dir = TempDir::new("resolve-pgpass");
        let path = dir.file("pgpass", "db.example.com:5433:app:alice:from-file\n", 0o600);
        let path = path.to_str().expect("utf-8 temp path");
        let vars = [("PGPASSFILE", path), ("USER", "nobody")];
        let resolved = |s: &str| resolve_with(s, &vars).expect("valid").password;

        assert_eq!(
            resolved("postgresql://alice@db.example.com:5433/app").as_deref(),
            Some("from-file")
        );
        assert_eq!(
            resolved("postgresql://alice:given@db.example.com:5433/app").as_deref(),
            Some("given")
        );
        assert_eq!(
            resolved("host=other,db.example.com port=5432,5433 user=alice dbname=app").as_deref(),
            Some("from-file")
        );
        assert_eq!(resolved("host=db.example.com port=5433 user=alice"), None);

        let other_vars = [("PGPASSFILE", "/nonexistent"), ("USER", "alice")];
        let info = resolve_with(
            &format!("host=db.example.com port=5433 dbname=app passfile={path}"),
            &other_vars,
        )
        .expect("valid");
        assert_eq!(info.password.as_deref(), Some("from-file"));

        dir.file("pgpass", "db.example.com:5433:app:alice:from-file\n", 0o644);
        assert_eq!(resolved("postgresql://alice@db.example.com:5433/app"), None);
    }

    #[test]
    fn unix_socket_host_matches_localhost_entry() {
        let dir = TempDir::new("pgpass-socket");
        let path = dir.file("pgpass", "localhost:5432:app:alice:socket-pw\n", 0o600);
        let path = path.to_str().expect("utf-8 temp path");
        let vars = [("PGPASSFILE", path)];
        let resolved = |s: &str| resolve_with(s, &vars).expect("valid").password;
        assert_eq!(
            resolved("host=/var/run/postgresql user=alice dbname=app").as_deref(),
            Some("socket-pw")
        );
        assert_eq!(
            resolved("host=/tmp/custom user=alice dbname=app").as_deref(),
            Some("socket-pw")
        );
        dir.file(
            "pgpass",
            "/tmp/custom:5432:app:alice:dir-pw\nlocalhost:5432:app:alice:socket-pw\n",
            0o600,
        );
        assert_eq!(
            resolved("host=/tmp/custom user=alice dbname=app").as_deref(),
            Some("dir-pw")
        );
        assert_eq!(
            resolved("host=/tmp user=alice dbname=app").as_deref(),
            Some("socket-pw")
        );
    }

    #[test]
    fn host_display_for_messages() {
        assert_eq!(
            parse("host=127.0.0.1 port=5432").host_display(),
            "127.0.0.1:5432"
        );
        assert_eq!(
            parse("host=/tmp/sock").host_display(),
            "/tmp/sock (port 5432)"
        );
        assert_eq!(
            parse("host=db hostaddr=10.0.0.5").host_display(),
            "db (hostaddr 10.0.0.5):5432"
        );
        assert_eq!(
            Conninfo::default().host_display(),
            "default host (port 5432)"
        );
    }

    #[test]
    fn tokio_postgres_config_carries_the_settings() {
        use tokio_postgres::config as tp;
        let info = parse(
            "host=db1,/tmp port=5433 user=u password=pw dbname=d application_name=app options='-c x=1' connect_timeout=10 sslmode=verify-full channel_binding=require keepalives_idle=30 target_session_attrs=read-write hostaddr=10.0.0.1,10.0.0.2",
        );
        let config = info.tokio_postgres_config();
        assert_eq!(
            config.get_hosts(),
            &[
                tp::Host::Tcp("db1".to_owned()),
                tp::Host::Unix(PathBuf::from("/tmp"))
            ]
        );
        let addrs: Vec<IpAddr> = ["10.0.0.1", "10.0.0.2"]
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        assert_eq!(config.get_hostaddrs(), addrs.as_slice());
        assert_eq!(config.get_ports(), &[5433]);
        assert_eq!(config.get_user(), Some("u"));
        assert_eq!(config.get_password(), Some(&b"pw"[..]));
        assert_eq!(config.get_dbname(), Some("d"));
        assert_eq!(config.get_application_name(), Some("app"));
        assert_eq!(config.get_options(), Some("-c x=1"));
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(10)));
        assert_eq!(config.get_ssl_mode(), tp::SslMode::Require);
        assert_eq!(config.get_channel_binding(), tp::ChannelBinding::Require);
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(30));
        assert_eq!(
            config.get_target_session_attrs(),
            tp::TargetSessionAttrs::ReadWrite
        );

        let ssl = |mode: &str| {
            parse(&format!("sslmode={mode}"))
                .tokio_postgres_config()
                .get_ssl_mode()
        };
        assert_eq!(ssl("disable"), tp::SslMode::Disable);
        assert_eq!(ssl("allow"), tp::SslMode::Prefer);
        assert_eq!(ssl("prefer"), tp::SslMode::Prefer);
        assert_eq!(ssl("require"), tp::SslMode::Require);
        assert_eq!(ssl("verify-ca"), tp::SslMode::Require);
        let config = parse("connect_timeout=0").tokio_postgres_config();
        assert_eq!(config.get_connect_timeout(), None);
    }

    /// `s` with every byte but ASCII letters and digits percent-encoded.
    fn percent_encode(s: &str) -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn parse_and_redact_never_panic(s in "\\PC{0,60}") {
            let _ = Conninfo::parse(&s).map(|info| info.redacted());
            let _ = redact(&s);
        }

        #[test]
        fn parse_and_redact_never_panic_on_near_misses(
            s in "(postgres(ql)?://)?[a-z0-9=' \\\\:/@?&%,\\[\\]\t]{0,48}"
        ) {
            let _ = Conninfo::parse(&s).map(|info| (info.redacted(), info.host_display()));
            let _ = redact(&s);
        }

        #[test]
        fn redact_and_errors_never_show_a_password(pw in "[!-~]{10,24}", form in 0usize..6) {
            let quoted = pw.replace('\\', "\\\\").replace('\'', "\\'");
            let encoded = percent_encode(&pw);
            let s = match form {
                0 => format!("host=h password='{quoted}' dbname=d"),
                1 => format!("host=h password='{quoted}' sslmode=bogus"),
                2 => format!("postgresql://u:{encoded}@h/d"),
                3 => format!("postgresql://u:{encoded}@h:bad/d"),
                4 => format!("postgresql://h/d?user=u&password={encoded}"),
                _ => format!("postgresql://h/d?password={encoded}&sslmode=bogus"),
            };
            prop_assert!(!redact(&s).contains(&pw), "{}", redact(&s));
            match Conninfo::parse(&s) {
                Ok(info) => {
                    prop_assert_eq!(info.password.as_deref(), Some(pw.as_str()));
                    prop_assert!(!info.to_string().contains(&pw));
                    let debug = format!("{info:?}");
                    prop_assert!(!debug.contains(&pw));
                }
                Err(e) => prop_assert!(!e.to_string().contains(&pw)),
            }
        }
    }
}
