//! The URI form of a connection string, as libpq's `conninfo_uri_parse_options` and
//! `conninfo_uri_parse_params` read it:
//! `postgresql://[user[:password]@][host][:port][,host[:port]…][/dbname][?key=value&…]`,
//! percent-decoded, with `[IPv6]` hosts and the `ssl=true` alias.

use super::ConninfoError;
use super::keywords::{Parsed, is_secret_key, key_like};
use super::text::{char_position, slice, tail};

/// The prefixes that make a connection string a URI (libpq's `uri_prefix_length`).
pub(super) const URI_PREFIXES: [&str; 2] = ["postgresql://", "postgres://"];

/// The length of a `postgresql://` or `postgres://` prefix (case-sensitive, as libpq).
pub(super) fn uri_prefix_len(s: &str) -> Option<usize> {
    URI_PREFIXES
        .iter()
        .find(|p| s.starts_with(*p))
        .map(|p| p.len())
}

/// Percent-decodes one part of a URI; `what` names the part in errors, never its content.
pub(super) fn percent_decode(s: &str, what: &str) -> Result<String, ConninfoError> {
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
pub(super) fn parse_uri(s: &str, base: usize, rest: &str) -> Result<Parsed, ConninfoError> {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::conninfo::keywords::SSLMODE_EXPECTED;
    use crate::conninfo::tests::{invalid, parse, parse_err, tcp, unix};
    use crate::conninfo::{ConninfoError, SslMode};

    fn uri_problem(s: &str) -> String {
        match parse_err(s) {
            ConninfoError::InvalidUri { problem } => problem,
            other => panic!("{s:?}: expected InvalidUri, got {other:?}"),
        }
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
}
