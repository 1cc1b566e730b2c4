//! Live streaming, side by side: `pgsub record` and `pgsub decode` against PostgreSQL's own
//! `pg_recvlogical`, consuming the same backlog from a real server in the same run.
//!
//! A throwaway cluster gets one slot per run, then a backlog of `PGSUB_BENCH_ROWS` rows
//! (default 500 000, `PGSUB_BENCH_RUNS` rounds, default 5; int8 key, int, ~80 bytes of text) in transactions of 1 000 rows. Each
//! client then streams its own slot from the start to the same end position:
//!
//! - `pg_recvlogical --endpos … -f FILE` (receives and writes the raw pgoutput bytes;
//!   decodes nothing), the baseline;
//! - `pgsub record --until … --output FILE` (receives, decodes every message through the
//!   session — positions, grammar, accounting — and writes the frames with CRCs);
//! - `pgsub decode --until …` with stdout to a file (all of that plus one JSON line per
//!   message).
//!
//! Runs alternate (recvlogical, record, decode, recvlogical, …) to spread noise evenly.
//! Output files go to `$PGSUB_BENCH_OUT` (default the temp directory): on a slow disk the
//! clients' fsyncs weigh in (pg_recvlogical syncs every 10 s, pgsub record every second).
//! The report gives seconds, rows/s, MB/s of WAL span and the ratio to pg_recvlogical.
//! Needs `pg_recvlogical` next to the server binaries (Debian's postgresql package has it).
//!
//! Run: `cargo bench --bench live_stream` (figures in docs/benchmarks.md).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use pgsub::Lsn;
use pgsub_testkit::{Cluster, ClusterOptions};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        // `cargo test --benches` asks benchmarks to list themselves; nothing to list.
        return;
    }
    let rows: u64 = std::env::var("PGSUB_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500_000);
    let runs: usize = std::env::var("PGSUB_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let cluster = Cluster::start(ClusterOptions::default()).expect("a cluster");
    let recvlogical = cluster.bin().dir.join("pg_recvlogical");
    if !recvlogical.exists() {
        eprintln!(
            "skipped: no pg_recvlogical in {}",
            cluster.bin().dir.display()
        );
        return;
    }
    let db = cluster.create_database("bench_stream").unwrap();
    let psql = |sql: &str| cluster.psql(&db, sql).expect("psql");
    psql(
        "CREATE TABLE bench (id int8 PRIMARY KEY, n int, body text); CREATE PUBLICATION p FOR TABLE bench;",
    );
    let clients = ["pg_recvlogical", "pgsub record", "pgsub decode"];
    for run in 0..runs {
        for c in 0..clients.len() {
            psql(&format!(
                "SELECT 1 FROM pg_create_logical_replication_slot('s_{run}_{c}', 'pgoutput')"
            ));
        }
    }
    let start: Lsn = psql("SELECT pg_current_wal_lsn()").parse().unwrap();
    let batches = rows.div_ceil(1000);
    for b in 0..batches {
        psql(&format!(
            "INSERT INTO bench SELECT g, g % 1000, md5(g::text) || md5((g + 1)::text) || repeat('x', 16) \
             FROM generate_series({}, {}) g",
            b * 1000 + 1,
            (b + 1) * 1000
        ));
    }
    let end: Lsn = psql("SELECT pg_current_wal_lsn()").parse().unwrap();
    let span_mb = end.bytes_since(start) as f64 / 1e6;
    eprintln!(
        "backlog: {rows} rows in {batches} transactions, WAL span {span_mb:.1} MB ({start} .. {end}), PostgreSQL {}",
        cluster.bin().version
    );
    let out_root =
        std::env::var_os("PGSUB_BENCH_OUT").map_or_else(std::env::temp_dir, PathBuf::from);
    let out_dir = out_root.join(format!("pgsub-bench-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let pgsub = env!("CARGO_BIN_EXE_pgsub");
    let conninfo = cluster.conninfo(&db);
    let mut times = vec![Vec::new(); clients.len()];
    for run in 0..runs {
        for (c, name) in clients.iter().enumerate() {
            let slot = format!("s_{run}_{c}");
            let file: PathBuf = out_dir.join(format!("{slot}.out"));
            let mut cmd = match c {
                0 => {
                    let mut cmd = Command::new(&recvlogical);
                    cmd.args(["-d", &conninfo, "--slot", &slot, "--start", "--no-loop"])
                        .args(["-o", "proto_version=1", "-o", "publication_names=p"])
                        .args(["-E", &end.to_string(), "-f"])
                        .arg(&file);
                    cmd
                }
                1 => {
                    let mut cmd = Command::new(pgsub);
                    cmd.args(["record", "--source", &conninfo, "--publication", "p"])
                        .args([
                            "--slot",
                            &slot,
                            "--until",
                            &end.to_string(),
                            "-q",
                            "--output",
                        ])
                        .arg(&file);
                    cmd
                }
                _ => {
                    let mut cmd = Command::new(pgsub);
                    cmd.args(["decode", "--source", &conninfo, "--publication", "p"])
                        .args(["--slot", &slot, "--until", &end.to_string(), "-q"])
                        .stdout(std::fs::File::create(&file).unwrap());
                    cmd
                }
            };
            let t0 = Instant::now();
            let status = cmd.status().expect("run the client");
            let secs = t0.elapsed().as_secs_f64();
            assert!(status.success(), "{name} failed: {status}");
            times[c].push(secs);
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            eprintln!(
                "run {run}: {name:<15} {secs:7.3} s  ({:.1} MB written)",
                size as f64 / 1e6
            );
            let _ = std::fs::remove_file(&file);
        }
    }
    let median = |v: &Vec<f64>| {
        let mut v = v.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let base = median(&times[0]);
    println!("| client | median of {runs} (s) | rows/s | WAL MB/s | time vs pg_recvlogical |");
    println!("|---|---|---|---|---|");
    for (c, name) in clients.iter().enumerate() {
        let m = median(&times[c]);
        println!(
            "| {name} | {m:.3} | {:.0} | {:.1} | {:.2}× |",
            rows as f64 / m,
            span_mb / m,
            m / base
        );
    }
    let _ = std::fs::remove_dir_all(&out_dir);
}
