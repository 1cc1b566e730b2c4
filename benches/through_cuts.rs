//! Keeping up through a flaky network: `pgsub sync` and the built-in subscription on the
//! same steady workload, in the same run, each with its connections cut every few hundred
//! kilobytes by the test support's fault proxy (the scenario of issue 11's opening).
//!
//! Two throwaway clusters. The source has a table of a bigint key, ~256 bytes of text and
//! an int; a native subscription (`copy_data = false`, its own slot) and pgsub (its own
//! slot, `sync` running) start before the workload. The native subscription's source
//! connection goes through one proxy; pgsub's source connection through another with the
//! same faults and seed, and its destination connection through a third (the built-in
//! worker's destination is its own server, which no network separates). Each proxy cuts
//! each connection once 150–500 kB (the destination: 60–400 kB) have passed, half of the
//! cuts resets. The workload writes `PGSUB_BENCH_CUT_ROWS_PER_S` rows a second (default
//! 2000) in transactions of 10 for `PGSUB_BENCH_CUT_SECONDS` (default 30). Measured: for
//! each consumer, how long after the workload ends its destination holds every row (its
//! lag; `PGSUB_BENCH_CUT_LIMIT`, default 300 s, is as long as it waits), and the rows it
//! held when the workload ended. A destination that caught up is checked equal to the
//! source.
//!
//! Run: `cargo bench --bench through_cuts` (figures in docs/benchmarks.md).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use pgsub_testkit::{Cluster, ClusterOptions};
use support::fault_proxy::{FaultProxy, Faults};
use support::{pgsub, sql as psql, start, terminate, wait};

#[path = "common/env.rs"]
mod env;
use env::env_u64;

fn count(c: &Cluster, db: &str) -> u64 {
    c.psql(db, "SELECT count(*) FROM events")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn contents(c: &Cluster, db: &str) -> String {
    psql(
        c,
        db,
        "SELECT count(*) || ':' || coalesce(sum(hashtext(id::text || payload || n::text)::int8), 0) FROM events",
    )
}

const TABLE: &str = "CREATE TABLE events (id bigint PRIMARY KEY, payload text NOT NULL, n int)";

fn cuts(from: u64, to: u64) -> Faults {
    Faults {
        cut_after: Some(from..to),
        reset_percent: 50,
        ..Faults::default()
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rate = env_u64("PGSUB_BENCH_CUT_ROWS_PER_S", 2000);
    let seconds = env_u64("PGSUB_BENCH_CUT_SECONDS", 30);
    let seed = env_u64("PGSUB_BENCH_SEED", 7);
    let s = Cluster::start(ClusterOptions::default()).expect("source cluster");
    let d = Cluster::start(ClusterOptions::default()).expect("destination cluster");
    eprintln!("PostgreSQL {}", s.bin().version);
    let db = s.create_database("bench_cuts").unwrap();
    psql(
        &s,
        &db,
        &format!("{TABLE}; CREATE PUBLICATION p FOR TABLE events"),
    );
    for dest_db in ["native_cuts", "pgsub_cuts"] {
        psql(&d, "postgres", &format!("CREATE DATABASE {dest_db}"));
        psql(&d, dest_db, TABLE);
    }
    let native_proxy = FaultProxy::start(s.port(), cuts(150_000, 500_000), seed);
    let source_proxy = FaultProxy::start(s.port(), cuts(150_000, 500_000), seed);
    let dest_proxy = FaultProxy::start(d.port(), cuts(60_000, 400_000), seed ^ 0xd);

    psql(
        &s,
        &db,
        "SELECT 1 FROM pg_create_logical_replication_slot('native_cuts', 'pgoutput'); \
         SELECT 1 FROM pg_create_logical_replication_slot('pgsub_cuts', 'pgoutput')",
    );
    psql(
        &d,
        "native_cuts",
        &format!(
            "CREATE SUBSCRIPTION native CONNECTION '{}' PUBLICATION p \
             WITH (create_slot = false, copy_data = false, slot_name = 'native_cuts')",
            native_proxy.through(&s.conninfo(&db))
        ),
    );
    let child = start(pgsub().args([
        "sync",
        "--source",
        &source_proxy.through(&s.conninfo(&db)),
        "--dest",
        &dest_proxy.through(&d.conninfo("pgsub_cuts")),
        "--publication",
        "p",
        "--slot",
        "pgsub_cuts",
        "--no-copy-data",
        "--stats-interval",
        "0",
    ]));

    // The steady workload: `rate` rows a second, in transactions of 10.
    let per_tick = (rate / 10).max(1);
    let ticks = seconds * 10;
    let t0 = Instant::now();
    psql(
        &s,
        &db,
        &format!(
            "DO $$ DECLARE t0 timestamptz := clock_timestamp(); BEGIN FOR t IN 0..{} LOOP \
               FOR k IN 0..{} LOOP \
                 INSERT INTO events SELECT (t * {per_tick} + k) * 10 + g, repeat(md5(((t * {per_tick} + k) * 10 + g)::text), 8), t \
                   FROM generate_series(0, 9) g; \
                 COMMIT; \
               END LOOP; \
               PERFORM pg_sleep(greatest(0, 0.1 * (t + 1) - extract(epoch FROM clock_timestamp() - t0))); \
             END LOOP; END $$",
            ticks - 1,
            per_tick / 10 - 1
        ),
    );
    let written = t0.elapsed().as_secs_f64();
    let ended = Instant::now();
    let want = count(&s, &db);
    let at_end = [count(&d, "native_cuts"), count(&d, "pgsub_cuts")];
    eprintln!(
        "workload: {want} rows in {written:.1} s; held when it ended: built-in {}, pgsub {}",
        at_end[0], at_end[1]
    );
    let limit = Duration::from_secs(env_u64("PGSUB_BENCH_CUT_LIMIT", 300));
    let mut lag = [None, None];
    let mut reported = Instant::now();
    while lag.iter().any(Option::is_none) && ended.elapsed() < limit {
        let held = [count(&d, "native_cuts"), count(&d, "pgsub_cuts")];
        for i in 0..2 {
            if lag[i].is_none() && held[i] >= want {
                lag[i] = Some(ended.elapsed().as_secs_f64());
            }
        }
        if reported.elapsed() >= Duration::from_secs(10) {
            eprintln!(
                "{:.0} s after the workload: built-in {} and pgsub {} of {want}",
                ended.elapsed().as_secs_f64(),
                held[0],
                held[1]
            );
            reported = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let held = [count(&d, "native_cuts"), count(&d, "pgsub_cuts")];
    terminate(&child);
    let out = wait(child, Duration::from_secs(60));
    assert_eq!(out.code, 0, "pgsub: {}", out.stderr);
    if let Ok(path) = std::env::var("PGSUB_BENCH_LOG") {
        std::fs::write(&path, &out.stderr).expect("writing pgsub's log");
    }
    psql(&d, "native_cuts", "ALTER SUBSCRIPTION native DISABLE");
    // A destination that caught up holds exactly the source's rows.
    let want_contents = contents(&s, &db);
    for (i, dest_db) in ["native_cuts", "pgsub_cuts"].iter().enumerate() {
        if lag[i].is_some() {
            assert_eq!(contents(&d, dest_db), want_contents, "{dest_db}");
        }
    }
    let shown = |l: Option<f64>, held: u64| match l {
        Some(l) => format!("{l:.1} s"),
        None => format!("not within {} s ({held} of {want})", limit.as_secs()),
    };
    let ratio = match lag {
        [Some(n), Some(p)] => format!("{:.2}× (lag)", n / p.max(0.1)),
        [None, Some(p)] => format!("> {:.1}× (lag)", limit.as_secs_f64() / p.max(0.1)),
        _ => "—".to_owned(),
    };

    println!(
        "| through cuts, {want} rows at {rate}/s | built-in subscription | pgsub sync | pgsub vs built-in |"
    );
    println!("|---|---|---|---|");
    println!(
        "| rows held when the workload ended | {} | {} | {:.2}× |",
        at_end[0],
        at_end[1],
        at_end[1] as f64 / at_end[0].max(1) as f64
    );
    println!(
        "| caught up after the workload ended | {} | {} | {ratio} |",
        shown(lag[0], held[0]),
        shown(lag[1], held[1])
    );
    println!(
        "| connections cut | {} (source) | {} (source), {} (destination) | |",
        native_proxy.cuts(),
        source_proxy.cuts(),
        dest_proxy.cuts()
    );
}
