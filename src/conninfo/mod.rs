//! Connection strings ("conninfo") as libpq reads them, for pgsub's own connection code.
//!
//! This module owns both libpq forms of a connection string — `host=… port=… dbname=…`
//! (key=value pairs, single-quoted values with `\'` and `\\` escapes) and
//! `postgresql://` URIs (percent-decoding, `user:password@`, several hosts, `[IPv6]`,
//! `/dbname`, `?key=value`) — the `PG*` environment variables, libpq's defaults (Unix socket
//! directory, port 5432, the OS user), the connection service file, the password file (see [`pgpass`]), and redaction: a
//! password never appears in anything this module prints, neither in [`Conninfo`]'s
//! `Display` and `Debug` output, nor in a [`ConninfoError`], nor in what
//! [`redact`](fn@redact) returns. It does no network I/O; [`Conninfo::tokio_postgres_config`]
//! hands the result to tokio-postgres for connections made through it.
//!
//! Sources: PostgreSQL `src/interfaces/libpq/fe-connect.c` (`conninfo_parse`,
//! `conninfo_uri_parse_options`, `conninfo_uri_parse_params`, `conninfo_add_defaults`,
//! `connectOptions2`, `passwordFromFile`) and the libpq documentation, sections
//! "Connection Strings", "Parameter Key Words", "Environment Variables" and "The Password File".
//!
//! Files: [`Conninfo`] and the types of its fields are here, with [`Conninfo::parse`]; the
//! keywords and the checks on their values are in `keywords.rs`; the two forms in
//! `keyvalue.rs` and `uri.rs`; the `PG*` variables and the defaults in `env.rs`; the
//! connection service file (`service=`, `pg_service.conf`) in `service.rs`;
//! [`Conninfo::resolve`] in `resolve.rs`; what is shown (`Display`, `Debug`,
//! [`Conninfo::host_display`]) in `display.rs`; [`redact`](fn@redact) and the scrubbing of
//! secrets in `redact.rs`; [`Conninfo::tokio_postgres_config`] in `tokio_config.rs`; the
//! error type in `error.rs`; string helpers in `text.rs`; the password file in [`pgpass`].

mod display;
mod env;
mod error;
mod keyvalue;
mod keywords;
pub mod pgpass;
mod redact;
mod resolve;
mod service;
#[cfg(test)]
mod tests;
mod text;
mod tokio_config;
mod uri;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

pub use error::ConninfoError;
pub use redact::{REDACTED, redact};

use keyvalue::parse_key_value;
use keywords::{CHANNEL_BINDING_EXPECTED, Parsed, SSLMODE_EXPECTED};
use text::{is_space, tail};
use uri::{parse_uri, uri_prefix_len};

/// The port libpq uses when none is given (`DEF_PGPORT`).
pub const DEFAULT_PORT: u16 = 5432;

/// The directories searched, in order, for the default Unix socket (`DEFAULT_PGSOCKET_DIR` is
/// `/var/run/postgresql` in Debian and Red Hat builds, `/tmp` in upstream builds).
pub const DEFAULT_SOCKET_DIRS: [&str; 2] = ["/var/run/postgresql", "/tmp"];

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
}

/// [`Conninfo::parse`], keeping which settings were given explicitly (for
/// [`Conninfo::resolve`]).
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
