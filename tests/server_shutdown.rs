//! The source shutting down under a running `pgsub decode`: a fast shutdown ends the
//! stream cleanly (the walsender waits until pgsub confirmed everything, then sends
//! CommandComplete and exits), a crash of the source is a transient error, and in both
//! cases nothing is lost: the next run starts at the slot's position as the server
//! restored it.
//!
//! That position may be older than what pgsub confirmed: before PostgreSQL 17 the server
//! keeps `confirmed_flush_lsn` in memory and writes it to disk only when the slot's
//! horizons move (17 also writes it at shutdown). So after a restart confirmed
//! transactions can be sent again; `decode` has nowhere to remember them, which is why
//! `sync` keeps its own progress on the destination. These tests accept such replays
//! and fail on any loss.

mod support;

use std::time::{Duration, Instant};

use pgsub_testkit::{Cluster, ClusterOptions};
use support::*;

fn start_decode(c: &Cluster, db: &str) -> std::process::Child {
    start(pgsub().args([
        "decode",
        "--source",
        &source(c, db),
        "--publication",
        "p",
        "--slot",
        db,
    ]))
}

fn wait_active(c: &Cluster, db: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while sql(
        c,
        db,
        &format!("SELECT active FROM pg_replication_slots WHERE slot_name = '{db}'"),
    ) != "t"
    {
        assert!(Instant::now() < deadline, "decode never became active");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn inserted(run: &Run) -> Vec<String> {
    run.kind("insert")
        .iter()
        .map(|v| v["new"]["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn fast_shutdown_of_the_source_ends_decode_cleanly_and_the_next_run_resumes() {
    let c = Cluster::start(ClusterOptions::default()).unwrap();
    let db = c.create_database("shutdown").unwrap();
    sql(
        &c,
        &db,
        "CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION p FOR TABLE t;",
    );
    create_slot(&c, &db, &db);
    let child = start_decode(&c, &db);
    wait_active(&c, &db);
    sql(
        &c,
        &db,
        "INSERT INTO t VALUES (1); INSERT INTO t VALUES (2);",
    );
    c.stop().unwrap();
    let out = wait(child, RUN_LIMIT).expect_code(0);
    assert!(
        out.stderr.contains("the server ended the stream"),
        "{}",
        out.stderr
    );
    assert_eq!(inserted(&out), vec!["1", "2"]);
    c.start_again().unwrap();
    sql(&c, &db, "INSERT INTO t VALUES (3)");
    let next = decode(&source(&c, &db), "p", &db, &["--until", "caught-up"]).expect_code(0);
    let next = inserted(&next);
    if c.version_num() >= 170000 {
        assert_eq!(
            next,
            vec!["3"],
            "17+ saves the confirmed position at shutdown"
        );
    } else {
        // A replay starts at the restored position and runs in order to the new row.
        assert_eq!(next.last().map(String::as_str), Some("3"));
        assert!(
            ["1", "2"]
                .iter()
                .all(|r| next.contains(&r.to_string()) || next.len() < 3)
        );
    }
}

#[test]
fn crash_of_the_source_is_a_transient_error_and_nothing_is_lost() {
    let c = Cluster::start(ClusterOptions::default()).unwrap();
    let db = c.create_database("crash").unwrap();
    sql(
        &c,
        &db,
        "CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION p FOR TABLE t;",
    );
    create_slot(&c, &db, &db);
    let child = start_decode(&c, &db);
    wait_active(&c, &db);
    sql(&c, &db, "INSERT INTO t VALUES (1)");
    // Let the insert be printed and acknowledged before the crash.
    let deadline = Instant::now() + Duration::from_secs(30);
    let end = current_wal(&c, &db);
    while confirmed_flush(&c, &db, &db) < end {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    }
    sql(&c, &db, "INSERT INTO t VALUES (2)");
    c.kill9_postmaster().unwrap();
    let out = wait(child, RUN_LIMIT).expect_code(1);
    assert!(out.stderr.contains("worth retrying"), "{}", out.stderr);
    c.start_again().unwrap();
    let next = decode(&source(&c, &db), "p", &db, &["--until", "caught-up"]).expect_code(0);
    // Row 2 was committed before the crash: whether or not the first run printed it, the
    // second run (starting at the position the server restored) must not miss it.
    let first = inserted(&out);
    let next = inserted(&next);
    assert_eq!(first.first().map(String::as_str), Some("1"));
    let two = "2".to_owned();
    assert!(
        first.contains(&two) || next.contains(&two),
        "row 2 lost: first {first:?}, next {next:?}"
    );
}
