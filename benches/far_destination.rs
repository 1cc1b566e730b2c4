//! A destination far away (issue 10, point 4): the apply rate of `pgsub sync` on one backlog
//! with and without round-trip time added between pgsub and the destination, and, in the
//! same run, of the built-in subscription with and without the same time added between its
//! worker (which sits on the destination) and the source.
//!
//! Two throwaway clusters; the backlog of `common/backlog.rs` (`PGSUB_BENCH_ROWS` inserts,
//! default 200 000, with updates and deletes: 350 000 changes) is written once, after four
//! slots were made for it: two for pgsub, two for native subscriptions (created disabled,
//! `copy_data = false`). The far links go through the test support's proxy with a one-way
//! latency of `PGSUB_BENCH_RTT_MS / 2` (default RTT 5 ms), pipelined: bytes in flight are not
//! limited, as on a long fast link. Each consumer applies into a database of its own, one at a
//! time; pgsub is timed from process start to exit (`--until` the end of the backlog), the
//! subscriptions from ENABLE until their slot confirms the end. Every destination is checked
//! equal to the source. The target: pgsub far away keeps at least 80% of its rate near.
//! `PGSUB_BENCH_RUNS` (default 3) repeats each consumer, near and far in turn, and the
//! medians are compared (single runs on two shared cores vary by ±20%); each pgsub run
//! prints where the CPU went. `PGSUB_BENCH_LOG_DIR=DIR` keeps each pgsub run's debug log there (where the time goes;
//! `PGSUB_BENCH_LOG_FILTER=pgsub=debug,tokio_postgres=debug` shows every statement too).
//!
//! Run: `cargo bench --bench far_destination` (figures in docs/benchmarks.md).

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "common/backlog.rs"]
mod backlog;

use std::time::{Duration, Instant};

use pgsub::Lsn;
use pgsub_testkit::{Cluster, ClusterOptions};
use support::fault_proxy::{FaultProxy, Faults};
use support::{confirmed_flush, pgsub, sql as psql};

#[path = "common/env.rs"]
mod env;
use env::env_u64;

/// CPU seconds (user + system) of the exited, reaped children of process `pid`: for a
/// postmaster, the backends and walsenders that ended; for this process, the pgsub runs.
fn children_cpu(pid: &str) -> f64 {
    cpu_fields(pid, 16)
}

/// CPU seconds of process `pid` itself: for this process, the proxies' threads (the rest
/// of it waits while a pgsub runs).
fn own_cpu(pid: &str) -> f64 {
    cpu_fields(pid, 14)
}

/// Fields `first` and `first + 1` of `/proc/PID/stat` (utime and stime from 14, cutime
/// and cstime from 16), in seconds.
fn cpu_fields(pid: &str, first: usize) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis, which is field 2.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(first) + ticks(first + 1)) / 100.0
}

/// The postmaster's pid of a cluster.
fn postmaster(c: &Cluster) -> String {
    std::fs::read_to_string(c.data_dir().join("postmaster.pid"))
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows = env_u64("PGSUB_BENCH_ROWS", 200_000);
    let rtt = Duration::from_micros(env_u64("PGSUB_BENCH_RTT_MS", 5) * 1000);
    let s = Cluster::start(ClusterOptions::default()).expect("source cluster");
    let d = Cluster::start(ClusterOptions::default()).expect("destination cluster");
    eprintln!("PostgreSQL {}, round trip added {rtt:?}", s.bin().version);
    let latency = Faults {
        delay: rtt / 2,
        ..Faults::default()
    };
    let to_dest = FaultProxy::start(d.port(), latency.clone(), 1);
    let to_source = FaultProxy::start(s.port(), latency, 2);

    let db = s.create_database("bench_far").unwrap();
    psql(
        &s,
        &db,
        &format!(
            "CREATE TABLE bench {}; CREATE PUBLICATION p FOR TABLE bench",
            backlog::TABLE
        ),
    );
    // The launcher starts an apply worker at most every wal_retrieve_retry_interval
    // (5 s): the second subscription enabled within that of the first would wait for it,
    // which is the benchmark's doing, not the subscription's.
    psql(
        &d,
        "postgres",
        "ALTER SYSTEM SET wal_retrieve_retry_interval = '50ms'; SELECT pg_reload_conf()",
    );
    // Each consumer runs PGSUB_BENCH_RUNS times (near and far in turn), each time from a
    // slot and into a database of its own; the table gives each run and the medians.
    let runs = env_u64("PGSUB_BENCH_RUNS", 3).max(1) as usize;
    let named = |kind: &str| -> Vec<String> { (1..=runs).map(|i| format!("{kind}_{i}")).collect() };
    let kinds = ["pgsub_near", "pgsub_far", "native_near", "native_far"];
    let consumers: Vec<String> = kinds.iter().flat_map(|k| named(k)).collect();
    for c in &consumers {
        psql(&d, "postgres", &format!("CREATE DATABASE {c}"));
        psql(&d, c, &format!("CREATE TABLE bench {}", backlog::TABLE));
        psql(
            &s,
            &db,
            &format!("SELECT 1 FROM pg_create_logical_replication_slot('{c}', 'pgoutput')"),
        );
    }
    let natives = named("native_near")
        .into_iter()
        .map(|c| (c, s.conninfo(&db)))
        .chain(
            named("native_far")
                .into_iter()
                .map(|c| (c, to_source.through(&s.conninfo(&db)))),
        );
    for (c, source) in natives {
        psql(
            &d,
            &c,
            &format!(
                "CREATE SUBSCRIPTION {c} CONNECTION '{source}' PUBLICATION p \
                 WITH (enabled = false, create_slot = false, copy_data = false, slot_name = '{c}')"
            ),
        );
    }
    let t0 = Instant::now();
    psql(&s, &db, &backlog::script(rows));
    let end: Lsn = psql(&s, &db, "SELECT pg_current_wal_lsn()")
        .parse()
        .unwrap();
    let changes = backlog::changes(rows);
    eprintln!(
        "backlog of {changes} changes written in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    let mut seconds: std::collections::BTreeMap<String, f64> = std::collections::BTreeMap::new();
    let pgsubs = named("pgsub_near")
        .into_iter()
        .zip(named("pgsub_far"))
        .flat_map(|(near, far)| {
            let far_dest = to_dest.through(&d.conninfo(&far));
            [(near.clone(), d.conninfo(&near)), (far, far_dest)]
        });
    for (c, dest) in pgsubs {
        let c = c.as_str();
        let cpu_before = (
            children_cpu(&postmaster(&s)),
            children_cpu(&postmaster(&d)),
            children_cpu("self"),
            own_cpu("self"),
        );
        let t0 = Instant::now();
        let mut cmd = pgsub();
        if std::env::var_os("PGSUB_BENCH_LOG_DIR").is_some() {
            let filter = std::env::var("PGSUB_BENCH_LOG_FILTER");
            cmd.env("PGSUB_LOG", filter.as_deref().unwrap_or("pgsub=debug"));
        }
        let out = cmd
            .args([
                "sync",
                "--source",
                &s.conninfo(&db),
                "--dest",
                &dest,
                "--publication",
                "p",
                "--slot",
                c,
                "--no-copy-data",
                "--until",
                &end.to_string(),
                "--stats-interval",
                "0",
            ])
            .output()
            .expect("run pgsub");
        assert!(
            out.status.success(),
            "{c}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        seconds.insert(c.to_owned(), t0.elapsed().as_secs_f64());
        // Where the CPU went (the backends are reaped once pgsub has disconnected).
        std::thread::sleep(Duration::from_millis(200));
        eprintln!(
            "{c}: CPU seconds: source walsender {:.2}, destination backend {:.2}, pgsub {:.2}, delay proxy {:.2}",
            children_cpu(&postmaster(&s)) - cpu_before.0,
            children_cpu(&postmaster(&d)) - cpu_before.1,
            children_cpu("self") - cpu_before.2,
            own_cpu("self") - cpu_before.3,
        );
        if let Ok(dir) = std::env::var("PGSUB_BENCH_LOG_DIR") {
            let path = std::path::Path::new(&dir).join(format!("{c}.log"));
            std::fs::write(&path, &out.stderr).expect("write the log");
        }
        // What pgsub did: transactions, groups, statements.
        for line in String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.starts_with("pgsub sync: applied"))
        {
            eprintln!("{c}: {line}");
        }
    }
    let natives: Vec<String> = named("native_near")
        .into_iter()
        .zip(named("native_far"))
        .flat_map(|(near, far)| [near, far])
        .collect();
    for c in &natives {
        let t0 = Instant::now();
        psql(&d, c, &format!("ALTER SUBSCRIPTION {c} ENABLE"));
        while confirmed_flush(&s, &db, c) < end {
            assert!(
                t0.elapsed() < Duration::from_secs(1800),
                "{c} did not catch up"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        seconds.insert(c.clone(), t0.elapsed().as_secs_f64());
        psql(&d, c, &format!("ALTER SUBSCRIPTION {c} DISABLE"));
    }
    let want = psql(&s, &db, &backlog::checksum_sql("bench"));
    for c in &consumers {
        assert_eq!(
            psql(&d, c, &backlog::checksum_sql("bench")),
            want,
            "{c}'s result"
        );
    }

    let median = |kind: &str| {
        let mut v: Vec<f64> = named(kind).iter().map(|c| seconds[c]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let rate = |secs: f64| changes as f64 / secs;
    println!("| consumer | run | near | {rtt:?} round trip away | far / near |");
    println!("|---|---|---|---|---|");
    for (name, kind) in [("pgsub sync", "pgsub"), ("built-in subscription", "native")] {
        let (near, far) = (format!("{kind}_near"), format!("{kind}_far"));
        for (i, (n, f)) in named(&near).iter().zip(named(&far)).enumerate() {
            let (n, f) = (seconds[n], seconds[&f]);
            println!(
                "| {name} | {} | {n:.2} s | {f:.2} s | {:.2} |",
                i + 1,
                rate(f) / rate(n)
            );
        }
        let (n, f) = (median(&near), median(&far));
        println!(
            "| {name} | median | {n:.2} s, {:.0} changes/s | {f:.2} s, {:.0} changes/s | {:.2} |",
            rate(n),
            rate(f),
            rate(f) / rate(n)
        );
    }
}
