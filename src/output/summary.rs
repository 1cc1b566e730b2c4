//! The end-of-run summary of positions and byte accounting, as text (stderr) or as one
//! JSON object (stdout, `--format json`).

use std::fmt::Write as _;
use std::io::Write;

use serde_json::json;

use super::{Format, Output};
use crate::error::{Error, Result};
use crate::stream::Session;

/// Prints the summary of a session, with why it ended (`end`, as the run describes it);
/// `quiet` (`-q`) drops the text form, not the JSON one.
pub fn print(
    command: &str,
    out: &Output,
    end: Option<&dyn std::fmt::Display>,
    session: &Session,
) -> Result<()> {
    let end = end.map(ToString::to_string);
    let (format, quiet) = (out.format, out.quiet);
    let pos = session.positions();
    let acc = session.accounting().summary();
    match format {
        Format::Json => {
            let v = json!({
                "kind": "summary",
                "command": command,
                "end": end,
                "positions": {
                    "received": pos.received(),
                    "applied": pos.applied(),
                    "acknowledged": pos.acknowledged(),
                    "last_keepalive_wal_end": pos.last_keepalive(),
                },
                "accounting": acc,
            });
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{v}")
                .and_then(|()| stdout.flush())
                .map_err(|e| Error::io("writing the summary to stdout", e))
        }
        Format::Text if quiet => Ok(()),
        Format::Text => {
            let mut s = String::new();
            let _ = writeln!(
                s,
                "pgsub {command}: {}",
                end.unwrap_or_else(|| "end of input".to_owned())
            );
            let _ = writeln!(
                s,
                "  positions: received {}, applied {}, acknowledged {}, last keepalive {}",
                pos.received(),
                pos.applied(),
                pos.acknowledged(),
                pos.last_keepalive()
            );
            let _ = writeln!(
                s,
                "  bytes: {} CopyData frames, {} bytes on the wire; XLogData {} ({} bytes), keepalives {} ({} bytes)",
                acc.frames.count,
                acc.frames.bytes,
                acc.xlog_data.count,
                acc.xlog_data.bytes,
                acc.keepalives.count,
                acc.keepalives.bytes
            );
            if !acc.messages.is_empty() {
                let kinds: Vec<String> = acc
                    .messages
                    .iter()
                    .map(|k| format!("{} {} ({} B)", k.kind, k.count, k.bytes))
                    .collect();
                let _ = writeln!(s, "  messages: {}", kinds.join(", "));
            }
            for r in &acc.relations {
                let c = &r.counters;
                let _ = writeln!(
                    s,
                    "  {}: {} inserts, {} updates, {} deletes, {} truncates, {} bytes",
                    if c.name.is_empty() {
                        format!("relid {}", r.relid)
                    } else {
                        c.name.clone()
                    },
                    c.inserts,
                    c.updates,
                    c.deletes,
                    c.truncates,
                    c.bytes
                );
            }
            let t = &acc.transactions;
            let _ = writeln!(
                s,
                "  transactions: {} ({} bytes), largest {} bytes in {} messages",
                t.count, t.bytes, t.largest_bytes, t.largest_messages
            );
            if let (Some(first), Some(last)) = (acc.first_wal, acc.last_wal) {
                let _ = writeln!(
                    s,
                    "  WAL span of changes: {first} .. {last} ({} bytes)",
                    last.bytes_since(first)
                );
            }
            out.say(&s);
            Ok(())
        }
    }
}
