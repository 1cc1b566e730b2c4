//! `pgsub bench`: throughput as people measuring a decoder or an apply path want it.
//!
//! ```text
//!  bench decode --input FILE      frames ─► Session (decode only)            ─┐
//!  bench decode --source … --slot  server ─► receive ─► Session (no ack)     ─┼─► Report
//!  bench apply  --input FILE --dest  scratch database ◄─ tables from the     ─┘
//!                                    recording's Relation messages ◄─ replay
//! ```
//!
//! Every report gives the measured span (first frame to the end, which for `apply` means
//! everything durable), the time from process start to the end (what the user waits),
//! bytes and messages per second by kind, and the process's CPU time over the span: a
//! live decode whose CPU time is well below its span spent the rest waiting for the
//! server. Text on stderr, or one JSON object on stdout under `--format json`.

pub mod apply;
pub mod decode;

use std::fmt::Write as _;
use std::io::Write as _;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::output::{Format, Output};
use crate::stream::Session;

/// One kind of message and how many of it.
#[derive(Debug, Clone, Serialize)]
pub struct KindRate {
    /// The message kind (`insert`, `begin`, …).
    pub kind: String,
    /// How many.
    pub count: u64,
    /// Their bytes.
    pub bytes: u64,
    /// How many per second of the span.
    pub per_second: f64,
}

/// What `bench apply` applied.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// Source transactions applied.
    pub transactions: u64,
    /// Destination transactions committed.
    pub groups: u64,
    /// Rows inserted, updated, deleted.
    pub inserted: u64,
    /// Rows updated.
    pub updated: u64,
    /// Rows deleted.
    pub deleted: u64,
    /// Rows changed per second of the span.
    pub rows_per_second: f64,
    /// Conflicts, one line (empty when none).
    pub conflicts: String,
}

/// The result of one benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `decode` or `apply`.
    pub bench: &'static str,
    /// What was read: a recording's path, or the slot and server.
    pub input: String,
    /// The measured span, in seconds.
    pub seconds: f64,
    /// From the start of the process to the end of the benchmark, in seconds.
    pub process_seconds: Option<f64>,
    /// CPU time of the process over the span (user and system), in seconds.
    pub cpu_seconds: Option<f64>,
    /// CopyData frames read.
    pub frames: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Megabytes (10^6 bytes) per second of the span.
    pub megabytes_per_second: f64,
    /// pgoutput messages decoded.
    pub messages: u64,
    /// Messages per second of the span.
    pub messages_per_second: f64,
    /// By kind.
    pub by_kind: Vec<KindRate>,
    /// For `apply`.
    pub applied: Option<Applied>,
}

impl Report {
    /// A report of `session`'s accounting over `seconds`, CPU time `cpu` (from
    /// [`cpu_seconds`] at the span's start).
    pub fn of(
        bench: &'static str,
        input: String,
        session: &Session,
        seconds: f64,
        cpu: Option<f64>,
    ) -> Self {
        let acc = session.accounting().summary();
        let span = seconds.max(1e-6);
        let by_kind: Vec<KindRate> = acc
            .messages
            .iter()
            .map(|k| KindRate {
                kind: k.kind.to_string(),
                count: k.count,
                bytes: k.bytes,
                per_second: k.count as f64 / span,
            })
            .collect();
        let messages = by_kind.iter().map(|k| k.count).sum::<u64>();
        Report {
            bench,
            input,
            seconds,
            // The process clock counts in ticks of 10 ms: never less than the span.
            process_seconds: since_process_start().map(|p| p.max(seconds)),
            cpu_seconds: cpu.and_then(|at| cpu_seconds().map(|now| now - at)),
            frames: acc.frames.count,
            bytes: acc.frames.bytes,
            megabytes_per_second: acc.frames.bytes as f64 / 1e6 / span,
            messages,
            messages_per_second: messages as f64 / span,
            by_kind,
            applied: None,
        }
    }

    /// Prints the report as `out` asks.
    pub fn print(&self, out: &Output) -> Result<()> {
        match out.format {
            Format::Json => {
                let mut v = serde_json::to_value(self)
                    .map_err(|e| Error::io("rendering the report", e.into()))?;
                v["kind"] = "bench".into();
                let mut stdout = std::io::stdout().lock();
                writeln!(stdout, "{v}")
                    .and_then(|()| stdout.flush())
                    .map_err(|e| Error::io("writing the report to stdout", e))
            }
            Format::Text => {
                eprint!("{}", self.text());
                Ok(())
            }
        }
    }

    /// The text form.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "pgsub bench {}: {}", self.bench, self.input);
        let _ = writeln!(
            s,
            "  {} bytes in {} frames in {:.3} s: {:.1} MB/s; {} messages, {:.0} messages/s",
            self.bytes,
            self.frames,
            self.seconds,
            self.megabytes_per_second,
            self.messages,
            self.messages_per_second
        );
        if !self.by_kind.is_empty() {
            let kinds: Vec<String> = self
                .by_kind
                .iter()
                .map(|k| format!("{} {} ({:.0}/s)", k.kind, k.count, k.per_second))
                .collect();
            let _ = writeln!(s, "  by kind: {}", kinds.join(", "));
        }
        if let Some(a) = &self.applied {
            let _ = writeln!(
                s,
                "  applied {} transactions in {} destination transactions: {} inserted, {} updated, {} deleted, {:.0} rows/s{}",
                a.transactions,
                a.groups,
                a.inserted,
                a.updated,
                a.deleted,
                a.rows_per_second,
                if a.conflicts.is_empty() {
                    String::new()
                } else {
                    format!("; conflicts: {}", a.conflicts)
                }
            );
        }
        if let Some(cpu) = self.cpu_seconds {
            let _ = writeln!(
                s,
                "  CPU: {cpu:.3} s, {:.0}% of one core over the span",
                100.0 * cpu / self.seconds.max(1e-6)
            );
        }
        if let Some(p) = self.process_seconds {
            let _ = writeln!(s, "  process start to end: {p:.3} s");
        }
        s
    }
}

/// The clock ticks of `/proc` (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// The process's CPU time so far (user and system, all threads), where `/proc` tells.
pub fn cpu_seconds() -> Option<f64> {
    let fields = proc_stat()?;
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// Seconds since the process started, where `/proc` tells.
pub fn since_process_start() -> Option<f64> {
    let fields = proc_stat()?;
    let start: f64 = fields.get(19)?.parse().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((uptime - start / TICKS_PER_SECOND).max(0.0))
}

/// The fields of `/proc/self/stat` after the command name (field 3, the state, first).
fn proc_stat() -> Option<Vec<String>> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    Some(after.split_whitespace().map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_clock_and_cpu_time_are_read_from_proc() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        let cpu = cpu_seconds().expect("cpu time");
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_seconds().unwrap() >= cpu);
        let age = since_process_start().expect("process age");
        assert!(age < 24.0 * 3600.0, "{age}");
    }

    #[test]
    fn the_text_report_names_rates_by_kind_and_what_was_applied() {
        let session = Session::new(crate::lsn::Lsn::ZERO);
        let mut r = Report::of("apply", "recording x".into(), &session, 2.0, None);
        r.by_kind.push(KindRate {
            kind: "insert".into(),
            count: 10,
            bytes: 100,
            per_second: 5.0,
        });
        r.applied = Some(Applied {
            transactions: 1,
            groups: 1,
            inserted: 10,
            updated: 0,
            deleted: 0,
            rows_per_second: 5.0,
            conflicts: "2 update_missing".into(),
        });
        let t = r.text();
        assert!(t.contains("pgsub bench apply: recording x"), "{t}");
        assert!(t.contains("insert 10 (5/s)"), "{t}");
        assert!(
            t.contains("10 inserted") && t.contains("conflicts: 2 update_missing"),
            "{t}"
        );
    }
}
