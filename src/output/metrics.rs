//! Prometheus metrics for `sync` and `decode` (`--metrics-addr HOST:PORT`).
//!
//! Every metric is declared once, in [`ALL`], with its type and help text; the values live
//! in one [`Registry`] that the stream loop and the copy update from their own counters
//! (the session's byte accounting, the apply sink's statistics) about once a second, so
//! the hot path pays nothing per message. A small HTTP listener answers `GET /metrics`
//! with the text exposition format (version 0.0.4).
//!
//! ```text
//!  Session accounting ─┐  publish (≈1 s)   ┌──────────┐  GET /metrics
//!  ApplySink stats    ─┼────────────────►  │ Registry │ ◄──────────── Prometheus
//!  copy jobs          ─┘                   └──────────┘
//! ```
//!
//! LSNs are exported as their 64-bit byte position, so that differences are byte counts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::error::{Error, Result};

/// Counter or gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// A metric's declaration.
#[derive(Debug)]
pub struct Metric {
    /// Name, as Prometheus sees it.
    pub name: &'static str,
    /// Type.
    pub kind: Kind,
    /// Help text.
    pub help: &'static str,
}

macro_rules! metrics {
    ($($id:ident = $name:literal, $kind:ident, $help:literal;)*) => {
        $(
            #[doc = $help]
            pub const $id: Metric = Metric { name: $name, kind: Kind::$kind, help: $help };
        )*
        /// Every metric pgsub exports.
        pub const ALL: &[&Metric] = &[$(&$id),*];
    };
}

metrics! {
    RECEIVED_LSN = "pgsub_received_lsn", Gauge, "End of the last WAL data received from the source (byte position).";
    APPLIED_LSN = "pgsub_applied_lsn", Gauge, "End of the last source transaction durably applied (byte position).";
    ACKNOWLEDGED_LSN = "pgsub_acknowledged_lsn", Gauge, "Last flush position acknowledged to the source (byte position).";
    SOURCE_WAL_END_LSN = "pgsub_source_wal_end_lsn", Gauge, "The source's WAL end from its last keepalive (byte position).";
    LAG_BYTES = "pgsub_lag_bytes", Gauge, "Bytes of WAL between the source's last known position and what was acknowledged.";
    FRAMES_TOTAL = "pgsub_frames_total", Counter, "CopyData frames received on the replication connection.";
    FRAME_BYTES_TOTAL = "pgsub_frame_bytes_total", Counter, "Bytes of CopyData frames received, headers included.";
    MESSAGES_TOTAL = "pgsub_messages_total", Counter, "pgoutput messages received, by kind.";
    MESSAGE_BYTES_TOTAL = "pgsub_message_bytes_total", Counter, "Bytes of pgoutput messages received, by kind.";
    ROWS_TOTAL = "pgsub_rows_total", Counter, "Row changes decoded, by table and operation (sync applies each, or skips it when already applied).";
    TRANSACTIONS_TOTAL = "pgsub_transactions_total", Counter, "Source transactions received.";
    APPLIED_TRANSACTIONS_TOTAL = "pgsub_applied_transactions_total", Counter, "Source transactions applied to the destination (sync).";
    SKIPPED_TRANSACTIONS_TOTAL = "pgsub_skipped_transactions_total", Counter, "Source transactions skipped as already applied (sync).";
    APPLIED_ROWS_TOTAL = "pgsub_applied_rows_total", Counter, "Rows applied to the destination, by operation (sync).";
    DEST_TRANSACTIONS_TOTAL = "pgsub_dest_transactions_total", Counter, "Destination transactions committed (sync groups source transactions).";
    APPLY_CONFLICTS_TOTAL = "pgsub_apply_conflicts_total", Counter, "Conflicts met while applying, by kind (insert_exists, update_exists, update_missing, delete_missing) and table (sync).";
    RECONNECTS_TOTAL = "pgsub_reconnects_total", Counter, "Restarts after a transient failure (sync).";
    COPY_ROWS = "pgsub_copy_rows", Gauge, "Rows copied so far in the initial copy, by table.";
    COPY_BYTES = "pgsub_copy_bytes", Gauge, "Bytes copied so far in the initial copy, by table.";
    COPY_TABLES_REMAINING = "pgsub_copy_tables_remaining", Gauge, "Tables of the initial copy not finished yet.";
}

type Labels = Vec<(&'static str, String)>;

/// The current values.
#[derive(Debug, Default)]
pub struct Registry {
    values: Mutex<BTreeMap<&'static str, BTreeMap<Labels, f64>>>,
}

impl Registry {
    fn with<R>(
        &self,
        f: impl FnOnce(&mut BTreeMap<&'static str, BTreeMap<Labels, f64>>) -> R,
    ) -> R {
        let mut guard = self.values.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// Sets a value.
    pub fn set(&self, m: &Metric, labels: &[(&'static str, &str)], value: f64) {
        let labels = labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        self.with(|all| {
            all.entry(m.name).or_default().insert(labels, value);
        });
    }

    /// Adds to a value.
    pub fn add(&self, m: &Metric, labels: &[(&'static str, &str)], by: f64) {
        let labels = labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        self.with(|all| {
            *all.entry(m.name).or_default().entry(labels).or_default() += by;
        });
    }

    /// A value (tests and summaries).
    pub fn get(&self, m: &Metric, labels: &[(&'static str, &str)]) -> Option<f64> {
        let labels: Labels = labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        self.with(|all| all.get(m.name).and_then(|v| v.get(&labels)).copied())
    }

    /// The text exposition format: every declared metric with a value.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.with(|all| {
            for m in ALL {
                let Some(series) = all.get(m.name) else {
                    continue;
                };
                let kind = match m.kind {
                    Kind::Counter => "counter",
                    Kind::Gauge => "gauge",
                };
                let _ = writeln!(out, "# HELP {} {}", m.name, m.help);
                let _ = writeln!(out, "# TYPE {} {kind}", m.name);
                for (labels, value) in series {
                    let _ = writeln!(out, "{}{} {value}", m.name, label_text(labels));
                }
            }
        });
        out
    }
}

fn label_text(labels: &Labels) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

static REGISTRY: OnceLock<Registry> = OnceLock::new();

/// The process's registry, when `--metrics-addr` turned metrics on.
pub fn registry() -> Option<&'static Registry> {
    REGISTRY.get()
}

/// Binds `addr` and serves the registry there for the rest of the process.
pub async fn serve(addr: &str) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        Error::Usage(format!(
            "--metrics-addr {addr}: cannot listen there ({e}); give a free HOST:PORT, e.g. 127.0.0.1:9187"
        ))
    })?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::io("reading the metrics listener's address", e))?;
    let registry = REGISTRY.get_or_init(Registry::default);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut len = 0;
                // Read the request head (the request line is all that matters).
                while len < buf.len() {
                    match sock.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => len += n,
                    }
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let head = String::from_utf8_lossy(&buf[..len]);
                let path = head.split_whitespace().nth(1).unwrap_or("");
                let (status, body) =
                    if head.starts_with("GET ") && (path == "/metrics" || path == "/") {
                        ("200 OK", registry.render())
                    } else {
                        ("404 Not Found", "pgsub serves GET /metrics\n".to_owned())
                    };
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    tracing::info!("serving Prometheus metrics on http://{bound}/metrics");
    Ok(bound)
}

/// Publishes a session's positions and accounting.
pub fn publish_session(session: &crate::stream::Session) {
    let Some(r) = registry() else { return };
    let pos = session.positions();
    let lsn = |l: crate::lsn::Lsn| l.as_u64() as f64;
    r.set(&RECEIVED_LSN, &[], lsn(pos.received()));
    r.set(&APPLIED_LSN, &[], lsn(pos.applied()));
    r.set(&ACKNOWLEDGED_LSN, &[], lsn(pos.acknowledged()));
    r.set(&SOURCE_WAL_END_LSN, &[], lsn(pos.last_keepalive()));
    r.set(
        &LAG_BYTES,
        &[],
        pos.last_keepalive()
            .max(pos.received())
            .bytes_since(pos.acknowledged()) as f64,
    );
    let acc = session.accounting().summary();
    r.set(&FRAMES_TOTAL, &[], acc.frames.count as f64);
    r.set(&FRAME_BYTES_TOTAL, &[], acc.frames.bytes as f64);
    r.set(&TRANSACTIONS_TOTAL, &[], acc.transactions.count as f64);
    for k in &acc.messages {
        r.set(&MESSAGES_TOTAL, &[("kind", k.kind)], k.count as f64);
        r.set(&MESSAGE_BYTES_TOTAL, &[("kind", k.kind)], k.bytes as f64);
    }
    for rel in &acc.relations {
        let c = &rel.counters;
        for (op, n) in [
            ("insert", c.inserts),
            ("update", c.updates),
            ("delete", c.deletes),
            ("truncate", c.truncates),
        ] {
            r.set(&ROWS_TOTAL, &[("table", &c.name), ("op", op)], n as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_declared_once_and_follow_prometheus_rules() {
        let mut seen = std::collections::HashSet::new();
        for m in ALL {
            assert!(seen.insert(m.name), "{} declared twice", m.name);
            assert!(m.name.starts_with("pgsub_"));
            assert!(m.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}",
                m.name
            );
        }
    }

    #[test]
    fn render_writes_help_type_and_escaped_labels() {
        let r = Registry::default();
        r.set(
            &ROWS_TOTAL,
            &[("table", "public.\"odd\""), ("op", "insert")],
            3.0,
        );
        r.add(&RECONNECTS_TOTAL, &[], 1.0);
        r.add(&RECONNECTS_TOTAL, &[], 1.0);
        let text = r.render();
        assert!(text.contains("# TYPE pgsub_rows_total counter\n"), "{text}");
        assert!(
            text.contains("pgsub_rows_total{table=\"public.\\\"odd\\\"\",op=\"insert\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("pgsub_reconnects_total 2\n"), "{text}");
        assert!(
            !text.contains("pgsub_lag_bytes"),
            "only metrics with values: {text}"
        );
    }
}
