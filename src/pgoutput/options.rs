//! The pgoutput options of `START_REPLICATION`, negotiated against the server's version.
//!
//! | option              | server | protocol needed |
//! |---------------------|--------|-----------------|
//! | `proto_version` 1   | 10+    |                 |
//! | `proto_version` 2   | 14+    |                 |
//! | `proto_version` 3   | 15+    |                 |
//! | `proto_version` 4   | 16+    |                 |
//! | `binary`, `messages`| 14+    |                 |
//! | `streaming` on      | 14+    | 2               |
//! | `streaming` parallel| 16+    | 4               |
//! | `two_phase`         | 15+    | 3               |
//! | `origin`            | 16+    |                 |
//!
//! An option the server does not know makes it fail with "unrecognized pgoutput option",
//! so nothing is sent that the version does not take. A feature the operator asked for
//! explicitly and the server lacks is an error naming both; a default is simply left out.
//! Publication names are identifiers: each is quoted as an identifier, and the list as a
//! string literal, as the built-in subscriber does, so `MyPub` keeps its case.

use crate::protocol::quote::{ident as escape_identifier, replication_literal};

/// `streaming`: how large in-progress transactions are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Streaming {
    /// Whole transactions at commit only.
    #[default]
    Off,
    /// In-progress transactions in blocks (proto 2, PostgreSQL 14+).
    On,
    /// As `on`, with abort positions for parallel apply (proto 4, PostgreSQL 16+).
    Parallel,
}

/// `origin`: which transactions to send by replication origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OriginFilter {
    /// All transactions (the server's default).
    Any,
    /// Only transactions that did not arrive through replication.
    None,
}

/// What the operator asked for; `None` means "the default".
#[derive(Debug, Clone, Default)]
pub struct RequestedOptions {
    /// Publications to stream.
    pub publication_names: Vec<String>,
    /// `binary`; default off.
    pub binary: Option<bool>,
    /// `messages`; default on where supported.
    pub messages: Option<bool>,
    /// `streaming`; default off.
    pub streaming: Option<Streaming>,
    /// `two_phase`; default off.
    pub two_phase: Option<bool>,
    /// `origin`; default: not sent (the server's `any`).
    pub origin: Option<OriginFilter>,
    /// Force a protocol version instead of the highest the server supports.
    pub proto_version: Option<u32>,
}

/// The options pgsub will send.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StreamOptions {
    /// `proto_version`.
    pub proto_version: u32,
    /// `publication_names`.
    pub publication_names: Vec<String>,
    /// `binary`, when sent.
    pub binary: Option<bool>,
    /// `messages`, when sent.
    pub messages: Option<bool>,
    /// `streaming`, when sent.
    pub streaming: Option<Streaming>,
    /// `two_phase`, when sent.
    pub two_phase: Option<bool>,
    /// `origin`, when sent.
    pub origin: Option<OriginFilter>,
}

/// A requested feature the source server cannot provide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{feature} needs PostgreSQL {needs} or newer on the source, which runs {server}; leave it out or upgrade the source"
)]
pub struct UnsupportedOption {
    /// The option, as on the command line.
    pub feature: String,
    /// Lowest major version that has it.
    pub needs: u32,
    /// The server's version, as `server_version_num` shows it (major.minor).
    pub server: String,
}

/// Highest pgoutput protocol version of a server (`server_version_num`, e.g. 150004).
pub fn max_proto_version(server_version_num: u32) -> u32 {
    match server_version_num / 10000 {
        0..=13 => 1,
        14 => 2,
        15 => 3,
        _ => 4,
    }
}

/// `server_version_num` as a version: `150018` is `15.18`.
pub fn version_text(num: u32) -> String {
    format!("{}.{}", num / 10000, num % 10000)
}

impl StreamOptions {
    /// Chooses the options for a server of `server_version_num`.
    pub fn negotiate(
        server_version_num: u32,
        req: &RequestedOptions,
    ) -> Result<Self, UnsupportedOption> {
        let major = server_version_num / 10000;
        let unsupported = |feature: &str, needs: u32| UnsupportedOption {
            feature: feature.to_owned(),
            needs,
            server: version_text(server_version_num),
        };
        let max = max_proto_version(server_version_num);
        let proto_version = match req.proto_version {
            Some(v) if v == 0 || v > 4 => {
                return Err(unsupported(&format!("proto_version {v}"), 99));
            }
            Some(v) if v > max => {
                return Err(unsupported(
                    &format!("proto_version {v}"),
                    [0, 10, 14, 15, 16][v as usize],
                ));
            }
            Some(v) => v,
            None => max,
        };
        let binary = match req.binary {
            Some(true) if major < 14 => return Err(unsupported("--binary on", 14)),
            Some(b) if major >= 14 => Some(b),
            _ => None,
        };
        let messages = match req.messages {
            Some(true) if major < 14 => return Err(unsupported("logical messages", 14)),
            None if major >= 14 => Some(true),
            Some(m) if major >= 14 => Some(m),
            _ => None,
        };
        let streaming = match req.streaming.unwrap_or_default() {
            Streaming::Off => None,
            Streaming::On if major < 14 || proto_version < 2 => {
                return Err(unsupported("--streaming on", 14));
            }
            Streaming::Parallel if major < 16 || proto_version < 4 => {
                return Err(unsupported("--streaming parallel", 16));
            }
            s => Some(s),
        };
        let two_phase = match req.two_phase {
            Some(true) if major < 15 || proto_version < 3 => {
                return Err(unsupported("--two-phase", 15));
            }
            Some(true) => Some(true),
            _ => None,
        };
        let origin = match req.origin {
            Some(OriginFilter::None) if major < 16 => return Err(unsupported("--origin none", 16)),
            Some(o) if major >= 16 => Some(o),
            _ => None,
        };
        Ok(StreamOptions {
            proto_version,
            publication_names: req.publication_names.clone(),
            binary,
            messages,
            streaming,
            two_phase,
            origin,
        })
    }

    /// The parenthesised option list of `START_REPLICATION … LOGICAL X/Y (…)`.
    pub fn to_sql(&self) -> String {
        let pubs = self
            .publication_names
            .iter()
            .map(|p| escape_identifier(p))
            .collect::<Vec<_>>()
            .join(",");
        let mut opts = vec![
            format!("proto_version '{}'", self.proto_version),
            format!("publication_names {}", replication_literal(&pubs)),
        ];
        let flag = |b: bool| if b { "'true'" } else { "'false'" };
        if let Some(b) = self.binary {
            opts.push(format!("binary {}", flag(b)));
        }
        if let Some(m) = self.messages {
            opts.push(format!("messages {}", flag(m)));
        }
        match self.streaming {
            Some(Streaming::On) => opts.push("streaming 'on'".into()),
            Some(Streaming::Parallel) => opts.push("streaming 'parallel'".into()),
            Some(Streaming::Off) | None => {}
        }
        if let Some(t) = self.two_phase {
            opts.push(format!("two_phase {}", flag(t)));
        }
        match self.origin {
            Some(OriginFilter::Any) => opts.push("origin 'any'".into()),
            Some(OriginFilter::None) => opts.push("origin 'none'".into()),
            None => {}
        }
        format!("({})", opts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(pubs: &[&str]) -> RequestedOptions {
        RequestedOptions {
            publication_names: pubs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn highest_protocol_per_major_version() {
        assert_eq!(max_proto_version(100023), 1);
        assert_eq!(max_proto_version(130016), 1);
        assert_eq!(max_proto_version(140013), 2);
        assert_eq!(max_proto_version(150018), 3);
        assert_eq!(max_proto_version(160009), 4);
        assert_eq!(max_proto_version(180004), 4);
    }

    #[test]
    fn postgres_13_gets_nothing_it_would_reject() {
        let o = StreamOptions::negotiate(130016, &req(&["pub1"])).unwrap();
        assert_eq!(
            o.to_sql(),
            r#"(proto_version '1', publication_names '"pub1"')"#
        );
    }

    #[test]
    fn postgres_15_defaults_to_proto_3_with_messages() {
        let o = StreamOptions::negotiate(150018, &req(&["pub1", "MyPub"])).unwrap();
        assert_eq!(
            o.to_sql(),
            r#"(proto_version '3', publication_names '"pub1","MyPub"', messages 'true')"#
        );
    }

    #[test]
    fn publication_name_with_quotes_is_escaped_twice() {
        let o = StreamOptions::negotiate(150018, &req(&["we'ird\"pub"])).unwrap();
        assert!(
            o.to_sql().contains(r#"publication_names '"we''ird""pub"'"#),
            "{}",
            o.to_sql()
        );
    }

    #[test]
    fn explicit_feature_the_server_lacks_is_an_error_naming_versions() {
        let mut r = req(&["p"]);
        r.two_phase = Some(true);
        let err = StreamOptions::negotiate(140013, &r).unwrap_err();
        assert_eq!(err.needs, 15);
        assert!(err.to_string().contains("14.13"), "{err}");
        r.two_phase = None;
        r.streaming = Some(Streaming::Parallel);
        assert_eq!(StreamOptions::negotiate(150018, &r).unwrap_err().needs, 16);
        r.streaming = Some(Streaming::On);
        r.proto_version = Some(1);
        assert!(StreamOptions::negotiate(150018, &r).is_err());
    }

    #[test]
    fn postgres_16_takes_every_option() {
        let mut r = req(&["p"]);
        r.binary = Some(true);
        r.streaming = Some(Streaming::Parallel);
        r.two_phase = Some(true);
        r.origin = Some(OriginFilter::None);
        let o = StreamOptions::negotiate(160009, &r).unwrap();
        assert_eq!(
            o.to_sql(),
            r#"(proto_version '4', publication_names '"p"', binary 'true', messages 'true', streaming 'parallel', two_phase 'true', origin 'none')"#
        );
    }
}
