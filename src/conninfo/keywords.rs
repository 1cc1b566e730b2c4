//! The libpq keywords ("Parameter Key Words"): which exist, what each sets in a
//! [`Conninfo`], which are secrets, and the checks on their values that libpq makes in
//! `conninfo_storeval` and `connectOptions2`. Both forms of a connection string, and the
//! `PG*` variables, set keywords through [`Parsed::set`].

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::text::is_space;
use super::{ChannelBindingMode, Conninfo, ConninfoError, DEFAULT_PORT, Host, SslMode};

/// libpq keywords whose values are secrets: never printed, never put in an error message.
pub(super) const SECRET_KEYS: [&str; 5] = [
    "password",
    "sslpassword",
    "oauth_client_secret",
    "scram_client_key",
    "scram_server_key",
];

pub(super) const SSLMODE_EXPECTED: &str =
    "expected disable, allow, prefer, require, verify-ca or verify-full";
pub(super) const CHANNEL_BINDING_EXPECTED: &str = "expected disable, prefer or require";
pub(super) const TARGET_SESSION_ATTRS_EXPECTED: &str =
    "expected any, read-write, read-only, primary, standby or prefer-standby";
pub(super) const PORT_EXPECTED: &str =
    "expected a port number from 1 to 65535, or a comma-separated list of them, one per host";
pub(super) const INTEGER_EXPECTED: &str = "expected an integer";
pub(super) const HOSTADDR_EXPECTED: &str =
    "expected a numeric IPv4 or IPv6 address, or a comma-separated list of them, one per host";
pub(super) const GSSENCMODE_EXPECTED: &str = "expected disable, prefer or require";

pub(super) fn is_secret_key(key: &str) -> bool {
    SECRET_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key))
}

/// True for something that looks like a keyword and so may be repeated in an error.
pub(super) fn key_like(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 64
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// What a libpq keyword sets.
#[derive(Clone, Copy)]
pub(super) enum Keyword {
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
pub(super) fn keyword(key: &str) -> Option<Keyword> {
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
        | "scram_server_key"
        | "service"
        | "servicefile" => Keyword::OtherText,
        "gssencmode" => Keyword::Gssencmode,
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
pub(super) struct Seen {
    pub(super) sslmode: bool,
    pub(super) channel_binding: bool,
}

impl Seen {
    /// What can be told from the values alone: a non-default value was given.
    pub(super) fn inferred(info: &Conninfo) -> Seen {
        Seen {
            sslmode: info.sslmode != SslMode::default(),
            channel_binding: info.channel_binding != ChannelBindingMode::default(),
        }
    }
}

/// A connection string being parsed, with what was given explicitly.
#[derive(Default)]
pub(super) struct Parsed {
    pub(super) info: Conninfo,
    pub(super) seen: Seen,
}

impl Parsed {
    /// Sets keyword `key` to `value`, as libpq's `conninfo_storeval` followed by the checks of
    /// `connectOptions2`. An empty value unsets the keyword. Nothing changes on error.
    pub(super) fn set(&mut self, key: &str, value: &str) -> Result<(), ConninfoError> {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::conninfo::tests::{invalid, parse, parse_err};

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
            parse_err("gssencmode=require"),
            ConninfoError::Unsupported { .. }
        ));
        assert!(matches!(
            parse_err("sslcrl=/crl.pem"),
            ConninfoError::Unsupported { .. }
        ));
        assert_eq!(parse("service=''"), Conninfo::default());
    }
}
