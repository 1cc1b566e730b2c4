//! `pgsub sync` against PostgreSQL's built-in subscription, on the same data in the same
//! run: streaming apply of a backlog, and the initial copy of several tables.
//!
//! Two throwaway clusters. **Apply**: a table of an int8 key, an int and ~80 bytes of text;
//! a native subscription (created disabled, `copy_data = false`, its own slot) and a pgsub
//! slot are created first, then the backlog is written — `PGSUB_BENCH_ROWS` inserts
//! (default 200 000) in transactions of 200 rows, updates of half of them by key and deletes
//! of a quarter by key, in transactions of 100 — and each consumer applies it into its own
//! destination database: the subscription is enabled and timed until its slot's
//! `confirmed_flush_lsn` reaches the end of the backlog; `pgsub sync --until` is timed until
//! it exits, which it does once the same holds for its slot. **Copy**: four such tables of
//! `PGSUB_BENCH_COPY_ROWS` rows each (default 250 000) copied by a native subscription
//! (default `max_sync_workers_per_subscription = 2`) until every table is ready, and by
//! `pgsub sync` (default `--copy-jobs 4`) until it exits. Destination tables are identical
//! and empty before each run; both sides are checked equal afterwards. **Large table**: one
//! such table of `PGSUB_BENCH_LARGE_ROWS` rows (default 2 000 000), copied the same way
//! (pgsub cuts it into chunks of `--copy-chunk-mb`, `PGSUB_BENCH_CHUNK_MB`, default 64 MiB,
//! on 14+; 0 copies it in one piece). **Clone**, where
//! `pgcopydb` is installed (on PATH, or `PGSUB_BENCH_PGCOPYDB`): the same four tables, with a
//! secondary index each, cloned into empty databases — tables, data and indexes — by
//! `pgcopydb clone --table-jobs 4 --index-jobs 4` and by `pgsub sync --schema create
//! --copy-jobs 4`, each timed from process start to exit, both checked equal.
//!
//! Run: `cargo bench --bench sync_vs_native` (figures in docs/benchmarks.md).

use std::process::Command;
use std::time::{Duration, Instant};

use pgsub::Lsn;
use pgsub_testkit::{Cluster, ClusterOptions};

#[path = "common/env.rs"]
mod env;
use env::env_u64;

fn psql(c: &Cluster, db: &str, sql: &str) -> String {
    c.psql(db, sql).unwrap_or_else(|e| panic!("{e}"))
}

fn lsn(c: &Cluster, db: &str, sql: &str) -> Lsn {
    psql(c, db, sql).parse().unwrap_or_default()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> f64 {
    let t0 = Instant::now();
    while !done() {
        assert!(
            t0.elapsed() < Duration::from_secs(1800),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    t0.elapsed().as_secs_f64()
}

#[path = "common/backlog.rs"]
mod backlog;
use backlog::TABLE;

fn pgsub(args: &[&str]) -> f64 {
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_pgsub"))
        .args(args)
        .arg("-q")
        .output()
        .expect("run pgsub");
    assert!(
        out.status.success(),
        "pgsub failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t0.elapsed().as_secs_f64()
}

fn checksum(c: &Cluster, db: &str, table: &str) -> String {
    psql(c, db, &backlog::checksum_sql(table))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows = env_u64("PGSUB_BENCH_ROWS", 200_000);
    let copy_rows = env_u64("PGSUB_BENCH_COPY_ROWS", 250_000);
    let large_rows = env_u64("PGSUB_BENCH_LARGE_ROWS", 2_000_000);
    let s = Cluster::start(ClusterOptions::default()).expect("source cluster");
    let d = Cluster::start(ClusterOptions::default()).expect("destination cluster");
    // The launcher starts an apply worker at most every wal_retrieve_retry_interval (5 s):
    // a subscription made within that of the previous one's start would wait for it, which
    // is the benchmark's doing, not the subscription's (found in far_destination).
    psql(
        &d,
        "postgres",
        "ALTER SYSTEM SET wal_retrieve_retry_interval = '50ms'; SELECT pg_reload_conf()",
    );
    eprintln!("PostgreSQL {}", s.bin().version);

    // ---------------- apply ----------------
    let db = s.create_database("bench_apply").unwrap();
    psql(
        &s,
        &db,
        &format!("CREATE TABLE bench {TABLE}; CREATE PUBLICATION p FOR TABLE bench;"),
    );
    for dest_db in ["native_apply", "pgsub_apply"] {
        psql(&d, "postgres", &format!("CREATE DATABASE {dest_db}"));
        psql(&d, dest_db, &format!("CREATE TABLE bench {TABLE}"));
    }
    psql(
        &d,
        "native_apply",
        &format!(
            "CREATE SUBSCRIPTION native CONNECTION '{}' PUBLICATION p \
             WITH (enabled = false, copy_data = false, slot_name = 'native_apply')",
            s.conninfo(&db)
        ),
    );
    psql(
        &s,
        &db,
        "SELECT 1 FROM pg_create_logical_replication_slot('pgsub_apply', 'pgoutput')",
    );
    // One psql session, each statement its own transaction.
    let t0 = Instant::now();
    let script = backlog::script(rows);
    psql(&s, &db, &script);
    let end = lsn(&s, &db, "SELECT pg_current_wal_lsn()");
    let changes = backlog::changes(rows);
    eprintln!(
        "apply backlog: {rows} inserts, {} updates, {} deletes ({changes} changes) written in {:.1} s",
        rows / 2,
        rows / 4,
        t0.elapsed().as_secs_f64()
    );
    psql(&d, "native_apply", "ALTER SUBSCRIPTION native ENABLE");
    let native_apply = wait_until("the native subscription to catch up", || {
        lsn(
            &s,
            &db,
            "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'native_apply'",
        ) >= end
    });
    psql(&d, "native_apply", "ALTER SUBSCRIPTION native DISABLE");
    let pgsub_apply = pgsub(&[
        "sync",
        "--source",
        &s.conninfo(&db),
        "--dest",
        &d.conninfo("pgsub_apply"),
        "--publication",
        "p",
        "--slot",
        "pgsub_apply",
        "--no-copy-data",
        "--until",
        &end.to_string(),
        "--stats-interval",
        "0",
    ]);
    let want = checksum(&s, &db, "bench");
    assert_eq!(
        checksum(&d, "native_apply", "bench"),
        want,
        "native subscription result"
    );
    assert_eq!(checksum(&d, "pgsub_apply", "bench"), want, "pgsub result");

    // ---------------- initial copy ----------------
    let cdb = s.create_database("bench_copy").unwrap();
    let tables = ["c1", "c2", "c3", "c4"];
    let (native_copy, pgsub_copy) = copy_vs_native(&s, &d, &cdb, &tables, copy_rows, "copy");
    // One large table: pgsub copies it in chunks (--copy-chunk-mb, 14+).
    let ldb = s.create_database("bench_large").unwrap();
    let (native_large, pgsub_large) = copy_vs_native(&s, &d, &ldb, &["large"], large_rows, "large");
    let copied = copy_rows * tables.len() as u64;
    let clone = clone_vs_pgcopydb(&s, &d, &cdb, &tables);

    println!("| benchmark | built-in subscription | pgsub sync | pgsub vs built-in (rows/s) |");
    println!("|---|---|---|---|");
    println!(
        "| apply {changes} changes | {native_apply:.2} s, {:.0} rows/s | {pgsub_apply:.2} s, {:.0} rows/s | {:.2}× |",
        changes as f64 / native_apply,
        changes as f64 / pgsub_apply,
        native_apply / pgsub_apply
    );
    println!(
        "| initial copy, {} tables × {copy_rows} rows | {native_copy:.2} s, {:.0} rows/s | {pgsub_copy:.2} s, {:.0} rows/s | {:.2}× |",
        tables.len(),
        copied as f64 / native_copy,
        copied as f64 / pgsub_copy,
        native_copy / pgsub_copy
    );
    println!(
        "| initial copy, 1 table × {large_rows} rows | {native_large:.2} s, {:.0} rows/s | {pgsub_large:.2} s, {:.0} rows/s | {:.2}× |",
        large_rows as f64 / native_large,
        large_rows as f64 / pgsub_large,
        native_large / pgsub_large
    );
    match clone {
        Some((pgcopydb, pgsub_clone)) => {
            println!();
            println!(
                "| benchmark | pgcopydb clone | pgsub sync --schema create | pgsub vs pgcopydb (rows/s) |"
            );
            println!("|---|---|---|---|");
            println!(
                "| clone (tables, data, indexes), {} tables × {copy_rows} rows | {pgcopydb:.2} s, {:.0} rows/s | {pgsub_clone:.2} s, {:.0} rows/s | {:.2}× |",
                tables.len(),
                copied as f64 / pgcopydb,
                copied as f64 / pgsub_clone,
                pgcopydb / pgsub_clone
            );
        }
        None => println!(
            "\n(pgcopydb not found: install it (Debian: apt-get install pgcopydb) or set PGSUB_BENCH_PGCOPYDB for the clone comparison)"
        ),
    }
}

/// `tables` of `rows` rows each made in the source database `cdb`, then copied by a native
/// subscription (until every table is ready) and by `pgsub sync --until caught-up` (start
/// to exit) into empty tables of databases `native_<label>` and `pgsub_<label>`, checked
/// equal: (native, pgsub) seconds.
fn copy_vs_native(
    s: &Cluster,
    d: &Cluster,
    cdb: &str,
    tables: &[&str],
    rows: u64,
    label: &str,
) -> (f64, f64) {
    for t in tables {
        psql(
            s,
            cdb,
            &format!(
                "CREATE TABLE {t} {TABLE}; INSERT INTO {t} SELECT g, g % 1000, md5(g::text) || md5((g + 1)::text) || repeat('x', 16) \
                 FROM generate_series(1, {rows}) g"
            ),
        );
    }
    let publication = format!("p_{label}");
    psql(
        s,
        cdb,
        &format!("CREATE PUBLICATION {publication} FOR ALL TABLES; CHECKPOINT"),
    );
    let (native_db, pgsub_db) = (format!("native_{label}"), format!("pgsub_{label}"));
    for dest_db in [&native_db, &pgsub_db] {
        psql(d, "postgres", &format!("CREATE DATABASE {dest_db}"));
        for t in tables {
            psql(d, dest_db, &format!("CREATE TABLE {t} {TABLE}"));
        }
    }
    let t0 = Instant::now();
    psql(
        d,
        &native_db,
        &format!(
            "CREATE SUBSCRIPTION {native_db} CONNECTION '{}' PUBLICATION {publication} WITH (slot_name = '{native_db}')",
            s.conninfo(cdb)
        ),
    );
    wait_until("the native table sync", || {
        psql(
            d,
            &native_db,
            "SELECT count(*) FILTER (WHERE srsubstate <> 'r') FROM pg_subscription_rel",
        ) == "0"
            && psql(d, &native_db, "SELECT count(*) FROM pg_subscription_rel")
                == tables.len().to_string()
    });
    let native = t0.elapsed().as_secs_f64();
    psql(
        d,
        &native_db,
        &format!("ALTER SUBSCRIPTION {native_db} DISABLE"),
    );
    let pgsub = pgsub(&[
        "sync",
        "--source",
        &s.conninfo(cdb),
        "--dest",
        &d.conninfo(&pgsub_db),
        "--publication",
        &publication,
        "--slot",
        &pgsub_db,
        "--create-slot",
        "--until",
        "caught-up",
        "--stats-interval",
        "0",
        "--copy-chunk-mb",
        &env_u64("PGSUB_BENCH_CHUNK_MB", 64).to_string(),
    ]);
    for t in tables {
        let want = checksum(s, cdb, t);
        assert_eq!(checksum(d, &native_db, t), want, "native copy of {t}");
        assert_eq!(checksum(d, &pgsub_db, t), want, "pgsub copy of {t}");
    }
    (native, pgsub)
}

/// The tables of `db` cloned into empty databases by `pgcopydb clone` and by `pgsub sync
/// --schema create`, each timed from start to exit: (pgcopydb, pgsub) seconds, or `None`
/// without pgcopydb.
fn clone_vs_pgcopydb(s: &Cluster, d: &Cluster, db: &str, tables: &[&str]) -> Option<(f64, f64)> {
    let pgcopydb = std::env::var("PGSUB_BENCH_PGCOPYDB").unwrap_or_else(|_| "pgcopydb".into());
    let found = Command::new(&pgcopydb)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        return None;
    }
    for t in tables {
        psql(s, db, &format!("CREATE INDEX ON {t} (n)"));
    }
    for dest_db in ["pgcopydb_clone", "pgsub_clone"] {
        psql(d, "postgres", &format!("CREATE DATABASE {dest_db}"));
    }
    let work = std::env::temp_dir().join(format!("pgsub-bench-pgcopydb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let t0 = Instant::now();
    let out = Command::new(&pgcopydb)
        .args([
            "clone",
            "--source",
            &s.conninfo(db),
            "--target",
            &d.conninfo("pgcopydb_clone"),
        ])
        .args([
            "--table-jobs",
            "4",
            "--index-jobs",
            "4",
            "--no-owner",
            "--no-acl",
            "--dir",
        ])
        .arg(&work)
        .output()
        .expect("run pgcopydb");
    let pgcopydb_secs = t0.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "pgcopydb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&work);
    let pgsub_secs = pgsub(&[
        "sync",
        "--source",
        &s.conninfo(db),
        "--dest",
        &d.conninfo("pgsub_clone"),
        "--publication",
        "p_copy",
        "--slot",
        "pgsub_clone",
        "--create-slot",
        "--schema",
        "create",
        "--until",
        "caught-up",
        "--stats-interval",
        "0",
    ]);
    for t in tables {
        let want = checksum(s, db, t);
        assert_eq!(
            checksum(d, "pgcopydb_clone", t),
            want,
            "pgcopydb clone of {t}"
        );
        assert_eq!(checksum(d, "pgsub_clone", t), want, "pgsub clone of {t}");
        let indexes = format!("SELECT count(*) FROM pg_indexes WHERE tablename = '{t}'");
        assert_eq!(
            psql(d, "pgcopydb_clone", &indexes),
            "2",
            "pgcopydb's indexes of {t}"
        );
        assert_eq!(
            psql(d, "pgsub_clone", &indexes),
            "2",
            "pgsub's indexes of {t}"
        );
    }
    Some((pgcopydb_secs, pgsub_secs))
}
