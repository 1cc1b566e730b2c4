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
//! `PGSUB_BENCH_LOG_DIR=DIR` keeps each pgsub run's debug log there (where the time goes;
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
    let consumers = ["pgsub_near", "pgsub_far", "native_near", "native_far"];
    for c in consumers {
        psql(&d, "postgres", &format!("CREATE DATABASE {c}"));
        psql(&d, c, &format!("CREATE TABLE bench {}", backlog::TABLE));
        psql(
            &s,
            &db,
            &format!("SELECT 1 FROM pg_create_logical_replication_slot('{c}', 'pgoutput')"),
        );
    }
    for (c, source) in [
        ("native_near", s.conninfo(&db)),
        ("native_far", to_source.through(&s.conninfo(&db))),
    ] {
        psql(
            &d,
            c,
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

    let mut seconds = std::collections::BTreeMap::new();
    for (c, dest) in [
        ("pgsub_near", d.conninfo("pgsub_near")),
        ("pgsub_far", to_dest.through(&d.conninfo("pgsub_far"))),
    ] {
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
        seconds.insert(c, t0.elapsed().as_secs_f64());
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
    for c in ["native_near", "native_far"] {
        let t0 = Instant::now();
        psql(&d, c, &format!("ALTER SUBSCRIPTION {c} ENABLE"));
        while confirmed_flush(&s, &db, c) < end {
            assert!(
                t0.elapsed() < Duration::from_secs(1800),
                "{c} did not catch up"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        seconds.insert(c, t0.elapsed().as_secs_f64());
        psql(&d, c, &format!("ALTER SUBSCRIPTION {c} DISABLE"));
    }
    let want = psql(&s, &db, &backlog::checksum_sql("bench"));
    for c in consumers {
        assert_eq!(
            psql(&d, c, &backlog::checksum_sql("bench")),
            want,
            "{c}'s result"
        );
    }

    let rate = |c: &str| changes as f64 / seconds[c];
    println!("| consumer | near | {rtt:?} round trip away | far / near |");
    println!("|---|---|---|---|");
    for (name, near, far) in [
        ("pgsub sync", "pgsub_near", "pgsub_far"),
        ("built-in subscription", "native_near", "native_far"),
    ] {
        println!(
            "| {name} | {:.2} s, {:.0} changes/s | {:.2} s, {:.0} changes/s | {:.2} |",
            seconds[near],
            rate(near),
            seconds[far],
            rate(far),
            rate(far) / rate(near)
        );
    }
}
