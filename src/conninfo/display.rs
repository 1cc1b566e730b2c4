//! How a [`Conninfo`] is shown: [`Conninfo::redacted`] (also its `Display`), key=value text
//! that parses back to the same settings with every secret shown as `********`; its
//! `Debug`, with the same redaction; and [`Conninfo::host_display`], the servers to try,
//! for messages.

use std::collections::BTreeMap;
use std::fmt;

use super::keyvalue::quote_value;
use super::keywords::is_secret_key;
use super::redact::{REDACTED, scrub};
use super::{ChannelBindingMode, Conninfo, Host, SslMode};

impl Conninfo {
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
                } else if matches!(key, "host" | "hostaddr" | "port") {
                    // A list: each element scrubbed on its own, so that a secret-looking
                    // run cannot swallow a comma and change how many hosts there are.
                    let list: Vec<String> = value.split(',').map(scrub).collect();
                    format!("{key}={}", quote_value(&list.join(",")))
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
}

/// An IPv6 address in brackets, anything else as it is.
fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conninfo::tests::parse;

    #[test]
    fn debug_scrubs_every_text_field() {
        let info = parse("host=h sslrootcert= password=SECRETx");
        let dbg = format!("{info:?}");
        assert!(!dbg.contains("SECRETx"), "{dbg}");
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
}
