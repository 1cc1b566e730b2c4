//! The acknowledgement rules (`docs/design.md` § Positions), checked against what the server
//! records: `pg_replication_slots.confirmed_flush_lsn`.
//!
//! - after a transaction is printed, the slot advances exactly to its Commit `end_lsn`;
//! - it never passes a transaction that was not processed: the next run gets it, once;
//! - on an idle source (writes going to another database only) keepalives move it;
//! - `--no-ack` leaves it where it was.

mod support;

use std::time::{Duration, Instant};

use pgsub::Lsn;
use pgsub_testkit::{self as cluster, Cluster};
use support::*;

fn decode(c: &Cluster, db: &str, slot: &str, extra: &[&str]) -> Run {
    support::decode(&source(c, db), "p", slot, extra).expect_code(0)
}

/// A database with table `t` in publication `p` and a slot named like the database
/// (slot names are cluster-wide).
fn setup(prefix: &str) -> (&'static Cluster, String) {
    let c = cluster::shared();
    let db = c.create_database(prefix).unwrap();
    sql(
        c,
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, v text); CREATE PUBLICATION p FOR TABLE t;",
    );
    create_slot(c, &db, &db);
    (c, db)
}

fn ids(run: &Run) -> Vec<String> {
    run.kind("insert")
        .iter()
        .map(|v| v["new"]["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn confirmed_flush_advances_exactly_to_the_commit_end_lsn() {
    let (c, db) = setup("ack_end_lsn");
    let before = confirmed_flush(c, &db, &db);
    sql(c, &db, "INSERT INTO t VALUES (1, 'a')");
    // Look without acknowledging, to learn the commit's end_lsn.
    let peek = decode(c, &db, &db, &["--until", "caught-up", "--no-ack"]);
    let commit = peek.kind("commit");
    assert_eq!(commit.len(), 1);
    let end = lsn(&commit[0], "end_lsn");
    assert_eq!(
        confirmed_flush(c, &db, &db),
        before,
        "--no-ack moved the slot"
    );
    // Stop right at that end_lsn: the slot must report exactly it.
    let out = decode(c, &db, &db, &["--until", &end.to_string()]);
    assert_eq!(ids(&out), vec!["1"]);
    assert_eq!(confirmed_flush(c, &db, &db), end);
    // And the transaction is not sent again.
    let again = decode(c, &db, &db, &["--until", "caught-up"]);
    assert!(
        ids(&again).is_empty(),
        "acknowledged transaction replayed: {}",
        again.stdout
    );
}

#[test]
fn confirmed_flush_never_passes_a_transaction_that_was_not_processed() {
    let (c, db) = setup("ack_not_past");
    sql(c, &db, "INSERT INTO t VALUES (1, 'a')");
    sql(c, &db, "INSERT INTO t VALUES (2, 'b')");
    let peek = decode(c, &db, &db, &["--until", "caught-up", "--no-ack"]);
    let commits = peek.kind("commit");
    assert_eq!(commits.len(), 2);
    let first_end = lsn(&commits[0], "end_lsn");
    let second_commit = lsn(&commits[1], "commit_lsn");
    // Stop after the first transaction although the second is already on its way.
    let out = decode(c, &db, &db, &["--until", &first_end.to_string()]);
    assert_eq!(ids(&out), vec!["1"]);
    let confirmed = confirmed_flush(c, &db, &db);
    assert!(
        confirmed <= second_commit,
        "slot confirmed {confirmed}, past the unprocessed commit at {second_commit}"
    );
    // The next run gets exactly the second transaction.
    let rest = decode(c, &db, &db, &["--until", "caught-up"]);
    assert_eq!(ids(&rest), vec!["2"]);
}

#[test]
fn no_ack_leaves_the_slot_and_the_next_run_sees_the_same_changes() {
    let (c, db) = setup("ack_no_ack");
    let before = confirmed_flush(c, &db, &db);
    sql(c, &db, "INSERT INTO t VALUES (1, 'a'), (2, 'b')");
    let first = decode(c, &db, &db, &["--until", "caught-up", "--no-ack"]);
    let second = decode(c, &db, &db, &["--until", "caught-up", "--no-ack"]);
    assert_eq!(ids(&first), vec!["1", "2"]);
    assert_eq!(first.stdout, second.stdout);
    assert_eq!(confirmed_flush(c, &db, &db), before);
}

#[test]
fn idle_source_slot_catches_up_while_another_database_writes() {
    let (c, db) = setup("ack_idle");
    let other = c.create_database("ack_idle_other").unwrap();
    sql(c, &other, "CREATE TABLE w (id int, pad text)");
    let before = confirmed_flush(c, &db, &db);
    sql(
        c,
        &other,
        "INSERT INTO w SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g",
    );
    let wal = current_wal(c, &db);
    assert!(
        wal.bytes_since(before) > 1_000_000,
        "the other database wrote WAL"
    );
    let out = decode(c, &db, &db, &["--until", "caught-up"]);
    assert!(
        out.kind("insert").is_empty(),
        "nothing of this database was published"
    );
    let after = confirmed_flush(c, &db, &db);
    assert!(
        after >= wal,
        "slot at {after}, behind the WAL position {wal} taken before the run"
    );
}

#[test]
fn long_running_decode_keeps_the_slot_moving_and_stops_cleanly_on_sigterm() {
    let (c, db) = setup("ack_running");
    let other = c.create_database("ack_running_other").unwrap();
    sql(c, &other, "CREATE TABLE w (id int, pad text)");
    let src = source(c, &db);
    let child = start(pgsub().args([
        "decode",
        "--source",
        &src,
        "--publication",
        "p",
        "--slot",
        &db,
    ]));
    for round in 0..3 {
        sql(
            c,
            &other,
            "INSERT INTO w SELECT g, repeat('y', 100) FROM generate_series(1, 5000) g",
        );
        if round == 1 {
            sql(c, &db, "INSERT INTO t VALUES (42, 'in between')");
        }
        let target = current_wal(c, &db);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let confirmed = confirmed_flush(c, &db, &db);
            if confirmed >= target {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: slot stuck at {confirmed}, WAL at {target}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    terminate(&child);
    let out = wait(child, RUN_LIMIT).expect_code(0);
    assert_eq!(ids(&out), vec!["42"]);
    assert!(out.stderr.contains("stopped by a signal"), "{}", out.stderr);
    // What was printed was acknowledged: the insert is not sent again.
    let again = decode(c, &db, &db, &["--until", "caught-up"]);
    assert!(ids(&again).is_empty());
    let _: Lsn = confirmed_flush(c, &db, &db);
}
