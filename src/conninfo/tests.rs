//! Tests of the module as a whole — parsing as libpq does, multi-host lists, `sslmode`, and
//! property tests that no input panics and no password leaks — and the helpers the tests of
//! every part of the module share.

use std::path::PathBuf;

use proptest::prelude::*;

use super::keywords::{HOSTADDR_EXPECTED, PORT_EXPECTED};
use super::*;

pub(super) fn parse(s: &str) -> Conninfo {
    Conninfo::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

pub(super) fn parse_err(s: &str) -> ConninfoError {
    match Conninfo::parse(s) {
        Ok(info) => panic!("{s:?} should not parse, got {info:?}"),
        Err(e) => e,
    }
}

pub(super) fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

pub(super) fn tcp(name: &str) -> Host {
    Host::Tcp(name.to_owned())
}

pub(super) fn unix(dir: &str) -> Host {
    Host::Unix(PathBuf::from(dir))
}

pub(super) fn invalid(key: &str, value: &str, expected: &'static str) -> ConninfoError {
    ConninfoError::InvalidValue {
        key: key.to_owned(),
        value: value.to_owned(),
        expected,
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

#[test]
fn a_host_that_looks_like_a_secret_is_hidden_without_merging_the_host_list() {
    // Found by the conninfo fuzz target: scrubbing the host list as one value let the
    // hidden run swallow the comma, so the redacted form named one host and two ports.
    let info = parse("postgresql://u@[a?password=x]:5432,b/db");
    assert_eq!(info.hosts.len(), 2);
    let redacted = info.redacted();
    assert!(!redacted.contains("password=x"), "{redacted}");
    assert_eq!(parse(&redacted).hosts.len(), 2, "{redacted}");
}
