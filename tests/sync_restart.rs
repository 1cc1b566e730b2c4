//! `pgsub sync` riding out server restarts under load: the destination restarted, the
//! source restarted, and the destination's postmaster killed with `kill -9` (losing its
//! asynchronous commits not yet flushed). pgsub reconnects by itself; at the end nothing
//! the source let go of is missing and nothing is doubled. Also: with writes only in
//! another database, the slot of a running sync keeps up with the source's WAL.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pgsub_testkit::{Cluster, ClusterOptions};
use support::*;

/// Inserts into a key-less table and updates by key until `stop`, reconnecting whenever
/// the source goes away; returns the number of committed transactions.
fn workload(conninfo: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut committed = 0u64;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let Ok((client, conn)) =
                    tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await
                else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                tokio::spawn(conn);
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let sql = format!(
                        "BEGIN; INSERT INTO events SELECT {n}, g FROM generate_series(1, 10) g; \
                         UPDATE acct SET v = v + 1 WHERE id = {}; COMMIT",
                        n % 50
                    );
                    if client.batch_execute(&sql).await.is_err() {
                        break;
                    }
                    committed += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            committed
        })
    })
}

fn wait_for<F: FnMut() -> bool>(what: &str, mut f: F) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn contents(c: &Cluster, db: &str) -> String {
    sql(
        c,
        db,
        "SELECT (SELECT count(*) || '/' || coalesce(sum(n * 100 + g), 0) FROM events) || ' ' || \
                (SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM acct)",
    )
}

#[test]
fn sync_rides_out_restarts_of_both_servers_and_a_destination_crash() {
    let s = Cluster::start(ClusterOptions::default()).unwrap();
    let d = Cluster::start(dest_options()).unwrap();
    let db = s.create_database("restart").unwrap();
    sql(&d, "postgres", &format!("CREATE DATABASE {db}"));
    sql(
        &s,
        &db,
        "CREATE TABLE events (n bigint, g int); ALTER TABLE events REPLICA IDENTITY FULL;
         CREATE TABLE acct (id int PRIMARY KEY, v bigint);
         INSERT INTO acct SELECT g, 0 FROM generate_series(0, 49) g;
         CREATE PUBLICATION p FOR ALL TABLES;",
    );
    let args = |extra: &[&str]| {
        let mut v: Vec<String> = [
            "sync",
            "--source",
            &s.conninfo(&db),
            "--dest",
            &d.conninfo(&db),
            "--publication",
            "p",
            "--slot",
            &db,
            "--create-slot",
            "--schema",
            "create",
            "--stats-interval",
            "0",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        v.extend(extra.iter().map(|a| a.to_string()));
        v
    };
    let stop = Arc::new(AtomicBool::new(false));
    let load = workload(s.conninfo(&db), stop.clone());
    let child = start(pgsub().args(args(&[])));
    let applied = |d: &Cluster| {
        d.psql(&db, "SELECT count(*) FROM events")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut seen = 0;
    let mut progressed = |d: &Cluster| {
        let n = applied(d);
        let moved = n > seen + 50;
        if moved {
            seen = n;
        }
        moved
    };
    wait_for("the first changes to arrive", || progressed(&d));
    d.restart().unwrap();
    wait_for("progress after the destination restarted", || {
        progressed(&d)
    });
    s.restart().unwrap();
    wait_for("progress after the source restarted", || progressed(&d));
    d.kill9_postmaster().unwrap();
    d.start_again().unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !progressed(&d) {
        if Instant::now() > deadline {
            let _ = std::process::Command::new("kill")
                .args(["-9", &child.id().to_string()])
                .status();
            let out = wait(child, RUN_LIMIT);
            panic!("no progress after the destination crashed:\n{}", out.stderr);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    let committed = load.join().unwrap();
    terminate(&child);
    let out = wait(child, RUN_LIMIT).expect_code(0);
    assert!(
        out.stderr.contains("retrying"),
        "it did reconnect:\n{}",
        out.stderr
    );
    let last = run(&args(&["--until", "caught-up"])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>())
    .expect_code(0);
    assert_eq!(
        contents(&d, &db),
        contents(&s, &db),
        "after {committed} transactions\n{}",
        last.stderr
    );
    assert!(
        committed > 100,
        "the workload ran ({committed} transactions)"
    );
}

#[test]
fn running_sync_keeps_its_slot_moving_while_only_another_database_writes() {
    let s = Cluster::start(ClusterOptions::default()).unwrap();
    let d = Cluster::start(dest_options()).unwrap();
    let db = s.create_database("idle").unwrap();
    let other = s.create_database("idle_other").unwrap();
    sql(&d, "postgres", &format!("CREATE DATABASE {db}"));
    sql(
        &s,
        &db,
        "CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION p FOR ALL TABLES;",
    );
    sql(&s, &other, "CREATE TABLE w (id int, pad text)");
    let child = start(pgsub().args([
        "sync",
        "--source",
        &s.conninfo(&db),
        "--dest",
        &d.conninfo(&db),
        "--publication",
        "p",
        "--slot",
        &db,
        "--create-slot",
        "--schema",
        "create",
    ]));
    wait_for("sync to stream", || {
        s.psql(
            &db,
            &format!("SELECT active FROM pg_replication_slots WHERE slot_name = '{db}'"),
        )
        .is_ok_and(|v| v == "t")
    });
    for round in 0..3 {
        sql(
            &s,
            &other,
            "INSERT INTO w SELECT g, repeat('w', 200) FROM generate_series(1, 20000) g",
        );
        let wal = current_wal(&s, &db);
        wait_for(&format!("the slot to pass {wal} (round {round})"), || {
            confirmed_flush(&s, &db, &db) >= wal
        });
    }
    terminate(&child);
    wait(child, RUN_LIMIT).expect_code(0);
}
