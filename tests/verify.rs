//! `pgsub verify` between two real servers: equal after a sync, every row changed behind
//! the replication's back found (on either side, keyed and keyless tables), rows in
//! flight under live replication not reported, and agreement with a native subscription.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pgsub_testkit::Cluster;
use serde_json::Value;
use support::*;

const SCHEMA: &str = "
CREATE TABLE orders (id int8 PRIMARY KEY, note text, amount numeric, at timestamptz DEFAULT now());
CREATE TABLE tags (name text PRIMARY KEY, n int);
CREATE TABLE pairs (a int, b text, v int, PRIMARY KEY (a, b));
CREATE TABLE log (msg text, f float8);
ALTER TABLE log REPLICA IDENTITY FULL;
INSERT INTO orders (id, note, amount) SELECT g, 'order ' || g, g * 1.5 FROM generate_series(1, 500) g;
INSERT INTO tags VALUES ('apple', 1), ('Banana', 2), ('cherry', 3), ('Ähre', 4), ('zz top', 5), ('10', 6), ('9', 7);
INSERT INTO pairs SELECT g % 7, chr(97 + g % 5), g FROM generate_series(1, 30) g ON CONFLICT DO NOTHING;
INSERT INTO log VALUES ('same', 0.1), ('same', 0.1), ('other', 1e300), (NULL, NULL);
CREATE PUBLICATION pub FOR ALL TABLES;
";

fn sync_to_caught_up(s: &Cluster, d: &Cluster, db: &str) {
    let (src, dst) = (s.conninfo(db), d.conninfo(db));
    let extra = [
        "--create-slot",
        "--schema",
        "create",
        "--until",
        "caught-up",
    ];
    run_args(&sync_args(&src, &dst, "pub", db, &extra)).expect_code(0);
}

fn verify(s: &Cluster, d: &Cluster, db: &str, extra: &[&str]) -> Run {
    let (src, dst) = (s.conninfo(db), d.conninfo(db));
    let mut args = vec![
        "verify", "--source", &src, "--dest", &dst, "--format", "json",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn table(out: &Run, name: &str) -> Value {
    out.kind("table")
        .into_iter()
        .find(|t| t["table"] == name)
        .unwrap_or_else(|| panic!("no {name} in {}", out.stdout))
}

fn counts(t: &Value) -> (u64, u64, u64) {
    (
        t["missing"].as_u64().unwrap(),
        t["extra"].as_u64().unwrap(),
        t["different"].as_u64().unwrap(),
    )
}

#[test]
fn verify_is_equal_after_a_sync_and_finds_every_row_changed_behind_its_back() {
    let (s, d, db) = pair("verify_diff");
    sql(s, &db, SCHEMA);
    sync_to_caught_up(s, d, &db);

    let out = verify(s, d, &db, &["--publication", "pub"]).expect_code(0);
    let summary = &out.kind("summary")[0];
    assert_eq!(summary["equal"], true);
    assert_eq!(summary["tables"], 4);
    assert_eq!(table(&out, "public.orders")["source_rows"], 500);
    assert_eq!(table(&out, "public.orders")["dest_rows"], 500);
    // The position each side was read at: the source's WAL and pgsub's applied position.
    assert!(summary["source_lsn"].is_string(), "{summary}");
    assert!(
        summary["positions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["what"] == "pgsub progress" && p["name"] == db.as_str()),
        "{summary}"
    );
    let log = table(&out, "public.log");
    assert!(
        log["key"].is_null(),
        "a keyless table is compared as a multiset: {log}"
    );

    // Behind the replication's back, on both sides.
    sql(d, &db, "DELETE FROM orders WHERE id = 3");
    sql(
        s,
        &db,
        "SET session_replication_role = replica; UPDATE orders SET note = 'changed' WHERE id = 5",
    );
    sql(d, &db, "INSERT INTO tags VALUES ('Zebra', 9)");
    sql(
        d,
        &db,
        "UPDATE pairs SET v = v + 100 WHERE a = 2 AND b = 'c'",
    );
    sql(d, &db, "INSERT INTO log VALUES ('same', 0.1)");
    sql(s, &db, "DELETE FROM log WHERE msg = 'other'");

    let out = verify(s, d, &db, &["--publication", "pub", "--settle", "1"]).expect_code(3);
    let orders = table(&out, "public.orders");
    assert_eq!(counts(&orders), (1, 0, 1), "{orders}");
    let samples = orders["samples"].as_array().unwrap();
    assert!(
        samples
            .iter()
            .any(|x| x["kind"] == "missing" && x["key"][0] == "3"),
        "{orders}"
    );
    assert!(
        samples.iter().any(|x| x["kind"] == "different"
            && x["key"][0] == "5"
            && x["columns"] == serde_json::json!(["note"])),
        "{orders}"
    );
    let tags = table(&out, "public.tags");
    assert_eq!(counts(&tags), (0, 1, 0), "{tags}");
    assert_eq!(tags["samples"][0]["key"][0], "Zebra");
    let pairs = table(&out, "public.pairs");
    assert_eq!(counts(&pairs), (0, 0, 1), "{pairs}");
    assert_eq!(pairs["samples"][0]["key"], serde_json::json!(["2", "c"]));
    assert_eq!(pairs["samples"][0]["columns"], serde_json::json!(["v"]));
    let log = table(&out, "public.log");
    assert_eq!(
        counts(&log),
        (0, 2, 0),
        "one duplicate added, one row deleted on the source: {log}"
    );
    assert_eq!(out.kind("summary")[0]["differing_tables"], 4);

    // Text: the keys, and one table by bare name.
    let (src, dst) = (s.conninfo(&db), d.conninfo(&db));
    let text = run(&[
        "verify", "--source", &src, "--dest", &dst, "--table", "orders", "--settle", "0",
    ])
    .expect_code(3);
    assert!(
        text.stdout.contains("public.orders: DIFFERENT"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("missing on the destination: (id)=(3)"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("different: (id)=(5) in column(s) note"),
        "{}",
        text.stdout
    );
    assert!(!text.stdout.contains("public.tags"), "{}", text.stdout);
    assert!(text.stderr.contains("differ"), "{}", text.stderr);

    // Repaired, it is equal again.
    sql(
        d,
        &db,
        "INSERT INTO orders (id, note, amount, at) SELECT 3, 'order 3', 4.5, at FROM orders WHERE id = 4",
    );
    let again = verify(s, d, &db, &["--table", "public.orders", "--settle", "0"]).expect_code(3);
    // The rows were inserted in one statement: the same `at` as its neighbour.
    let orders = table(&again, "public.orders");
    assert_eq!(counts(&orders), (0, 0, 1), "{orders}");
}

#[test]
fn verify_does_not_report_rows_in_flight_under_live_replication() {
    let (s, d, db) = pair("verify_live");
    sql(s, &db, SCHEMA);
    sync_to_caught_up(s, d, &db);
    let (src, dst) = (s.conninfo(&db), d.conninfo(&db));
    let mut syncing = start(pgsub().args([
        "sync",
        "--source",
        &src,
        "--dest",
        &dst,
        "--publication",
        "pub",
        "--slot",
        &db,
        "--status-interval",
        "1",
    ]));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let src_db = db.clone();
        std::thread::spawn(move || {
            let s = pgsub_testkit::shared();
            let mut i = 1000;
            while !stop.load(Ordering::Relaxed) {
                sql(
                    s,
                    &src_db,
                    &format!(
                        "INSERT INTO orders (id, note) VALUES ({i}, 'live'); \
                         UPDATE orders SET amount = amount + 1 WHERE id = {}; \
                         DELETE FROM orders WHERE id = {}; INSERT INTO log VALUES ('live {i}', {i})",
                        i % 400 + 1,
                        i - 990
                    ),
                );
                i += 1;
            }
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    let out = verify(s, d, &db, &["--publication", "pub", "--settle", "60"]);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    terminate(&syncing);
    let _ = syncing.wait();
    let out = out.expect_code(0);
    assert_eq!(out.kind("summary")[0]["equal"], true, "{}", out.stdout);
    eprintln!("verify under load took {:?}", started.elapsed());
}

#[test]
fn verify_agrees_with_a_native_subscription_after_it_caught_up() {
    let (s, d, db) = pair("verify_native");
    sql(s, &db, SCHEMA);
    sql(
        d,
        &db,
        &SCHEMA
            .replace("CREATE PUBLICATION pub FOR ALL TABLES;", "")
            .replace("INSERT", "-- INSERT"),
    );
    sql(
        d,
        &db,
        &format!(
            "CREATE SUBSCRIPTION native_sub CONNECTION '{}' PUBLICATION pub",
            s.conninfo(&db)
        ),
    );
    sql(
        s,
        &db,
        "UPDATE orders SET note = 'after' WHERE id < 10; DELETE FROM tags WHERE n = 1",
    );
    let target = current_wal(s, &db);
    eventually(
        "the native subscription did not catch up",
        Duration::from_secs(60),
        || native_caught_up(d, &db, target),
    );
    let out = verify(s, d, &db, &["--publication", "pub", "--settle", "5"]).expect_code(0);
    let summary = &out.kind("summary")[0];
    let native = summary["positions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["what"] == "native subscription")
        .cloned()
        .unwrap_or_else(|| panic!("{summary}"));
    assert_eq!(native["name"], "native_sub");
    assert!(native["lsn"].is_string(), "{native}");
    sql(d, &db, "DROP SUBSCRIPTION native_sub");
}

#[test]
fn verify_counts_a_key_held_twice_on_a_destination_without_the_constraint() {
    let (s, d, db) = pair("verify_dup");
    sql(
        s,
        &db,
        "CREATE TABLE k (id int PRIMARY KEY, v text); INSERT INTO k SELECT g, 'v' FROM generate_series(1, 20) g; \
         CREATE PUBLICATION pub FOR TABLE k",
    );
    // The destination's table lacks the primary key.
    sql(d, &db, "CREATE TABLE k (id int NOT NULL, v text)");
    run_args(&sync_args(
        &s.conninfo(&db),
        &d.conninfo(&db),
        "pub",
        &db,
        &["--create-slot", "--until", "caught-up"],
    ))
    .expect_code(0);
    verify(s, d, &db, &["--publication", "pub", "--settle", "1"]).expect_code(0);
    // The same row twice: as a multiset the sides differ, whatever the re-check reads.
    sql(d, &db, "INSERT INTO k VALUES (7, 'v')");
    let out = verify(s, d, &db, &["--publication", "pub", "--settle", "1"]).expect_code(3);
    let t = table(&out, "public.k");
    assert_eq!(counts(&t), (0, 1, 0), "{t}");
    assert_eq!(
        (t["source_rows"].as_u64(), t["dest_rows"].as_u64()),
        (Some(20), Some(21))
    );
    // And the other way: one of the two rows changed.
    sql(
        d,
        &db,
        "UPDATE k SET v = 'w' WHERE ctid = (SELECT max(ctid) FROM k WHERE id = 7)",
    );
    let out = verify(s, d, &db, &["--publication", "pub", "--settle", "1"]).expect_code(3);
    assert_eq!(counts(&table(&out, "public.k")).1, 1, "{}", out.stdout);
}

#[test]
fn verify_confirms_a_difference_at_once_when_the_destination_has_caught_up() {
    let (s, d, db) = pair("verify_confirm");
    sql(
        s,
        &db,
        "CREATE TABLE big (id int PRIMARY KEY, v text); INSERT INTO big SELECT g, 'v' FROM generate_series(1, 5000) g; \
         CREATE PUBLICATION pub FOR TABLE big",
    );
    sync_to_caught_up(s, d, &db);
    sql(d, &db, "UPDATE big SET v = 'changed' WHERE id = 4321");
    // Nothing streams into the destination now, so the difference cannot settle: it is
    // confirmed on the first re-check, not after --settle.
    let out = verify(s, d, &db, &["--publication", "pub", "--settle", "600"]).expect_code(3);
    let t = table(&out, "public.big");
    assert_eq!(counts(&t), (0, 0, 1), "{t}");
    assert_eq!(t["confirmed"], 1, "{t}");
}
