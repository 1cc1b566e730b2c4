//! `pgsub bench`: the decode bench counts what `decode` counts, from a recording and live
//! (without moving the slot); the apply bench replays a recording into a scratch database
//! that holds the source's rows when kept, and is gone otherwise.

mod support;

use pgsub_testkit::Cluster;
use serde_json::Value;
use support::*;

const SCHEMA: &str = "
    CREATE TABLE items (id bigint PRIMARY KEY, name text, price numeric(10,2), tags text[],
                        at timestamptz, doc jsonb);
    CREATE TABLE events (who text, n int);
    ALTER TABLE events REPLICA IDENTITY FULL;
    CREATE PUBLICATION p FOR TABLE items, events;";

const WORKLOAD: &str = "
    INSERT INTO items SELECT g, 'item ' || g, g * 1.5, ARRAY['a', g::text],
           '2026-01-01 00:00+00'::timestamptz + g * interval '1 s', jsonb_build_object('g', g)
      FROM generate_series(1, 2000) g;
    INSERT INTO events SELECT 'w', g FROM generate_series(1, 300) g;
    UPDATE items SET price = price + 1 WHERE id % 4 = 0;
    DELETE FROM items WHERE id % 10 = 0;
    UPDATE events SET n = n + 1000 WHERE n % 3 = 0;
    DELETE FROM events WHERE n < 20;";

/// A source database with the workload in its slot's backlog, and a recording of it made
/// without acknowledging (the slot keeps the backlog).
fn backlog(prefix: &str) -> (&'static Cluster, String, std::path::PathBuf) {
    let s = pgsub_testkit::shared();
    let db = s.create_database(prefix).unwrap();
    sql(s, &db, SCHEMA);
    create_slot(s, &db, &db);
    sql(s, &db, WORKLOAD);
    let path = std::env::temp_dir().join(format!("pgsub-bench-{db}.pgrec"));
    record(&s.conninfo(&db), "p", &db, &path, &["--no-ack"]);
    (s, db, path)
}

/// Runs `pgsub ARGS` to completion; also gives the scratch database `bench apply` names
/// after its process id (tests of this file run at once: each looks for its own).
fn run_scratch(args: &[&str]) -> (Run, String) {
    let child = start(pgsub().args(args));
    let scratch = format!("pgsub_bench_{}", child.id());
    (wait(child, std::time::Duration::from_secs(120)), scratch)
}

fn exists(c: &Cluster, database: &str) -> bool {
    sql(
        c,
        "postgres",
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{database}'"),
    ) == "1"
}

fn json(out: &Run) -> Value {
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 1, "one JSON object: {}", out.stdout);
    lines[0].clone()
}

fn count(report: &Value, kind: &str) -> u64 {
    report["by_kind"]
        .as_array()
        .expect("by_kind")
        .iter()
        .find(|k| k["kind"] == kind)
        .map_or(0, |k| k["count"].as_u64().unwrap())
}

#[test]
fn the_decode_bench_counts_what_decode_counts_from_a_recording_and_live_without_moving_the_slot() {
    let (s, db, path) = backlog("bench_decode");
    let file = path.to_str().unwrap();
    let decoded = run(&["--format", "json", "decode", "--input", file, "-q"]).expect_code(0);
    let decoded = json_lines(&decoded.stdout).pop().expect("the summary");
    let mut want = std::collections::BTreeMap::new();
    for k in decoded["accounting"]["messages"].as_array().unwrap() {
        want.insert(
            k["kind"].as_str().unwrap().to_owned(),
            k["count"].as_u64().unwrap(),
        );
    }
    assert_eq!(want["insert"], 2300, "{decoded}");

    let offline =
        json(&run(&["--format", "json", "bench", "decode", "--input", file]).expect_code(0));
    assert_eq!(offline["kind"], "bench");
    for (kind, n) in &want {
        assert_eq!(count(&offline, kind), *n, "{kind} in {offline}");
    }
    assert_eq!(offline["frames"], decoded["accounting"]["frames"]["count"]);
    assert!(offline["megabytes_per_second"].as_f64().unwrap() > 0.0);
    assert!(offline["process_seconds"].as_f64().unwrap() >= offline["seconds"].as_f64().unwrap());

    let before = confirmed_flush(s, &db, &db);
    let src = s.conninfo(&db);
    let live = json(
        &stream_command(
            &["--format", "json", "bench", "decode"],
            &src,
            "p",
            &db,
            &[],
        )
        .expect_code(0),
    );
    for kind in ["insert", "update", "delete", "begin", "commit"] {
        assert_eq!(count(&live, kind), want[kind], "{kind} in {live}");
    }
    assert!(live["cpu_seconds"].as_f64().is_some(), "{live}");
    assert_eq!(
        confirmed_flush(s, &db, &db),
        before,
        "a bench leaves the slot where it was"
    );

    // Text for people: the rates by kind.
    let text = run(&["bench", "decode", "--input", file]).expect_code(0);
    assert!(
        text.stderr.contains("pgsub bench decode: recording"),
        "{}",
        text.stderr
    );
    assert!(text.stderr.contains("insert 2300 ("), "{}", text.stderr);
}

#[test]
fn the_apply_bench_replays_into_a_scratch_database_it_drops_unless_kept() {
    let (s, db, path) = backlog("bench_apply");
    let d = dest_cluster();
    let dst = d.conninfo("postgres");
    let file = path.to_str().unwrap();
    let (out, scratch) = run_scratch(&[
        "--format", "json", "bench", "apply", "--input", file, "--dest", &dst,
    ]);
    let report = json(&out.expect_code(0));
    let applied = &report["applied"];
    assert_eq!(applied["inserted"], 2300, "{report}");
    assert_eq!(applied["updated"], 600, "{report}");
    assert_eq!(applied["deleted"], 200 + 19 - 6, "{report}");
    assert_eq!(applied["conflicts"], "", "{report}");
    assert!(!exists(d, &scratch), "the scratch database is dropped");
    assert_eq!(
        sql(
            d,
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_replication_origin WHERE roname = 'pgsub_{scratch}_bench'"
            )
        ),
        "0",
        "and pgsub's origin with it"
    );

    // Kept, it holds the source's rows.
    let (kept, name) = run_scratch(&["bench", "apply", "--input", file, "--dest", &dst, "--keep"]);
    kept.expect_code(0);
    assert!(exists(d, &name), "kept");
    let digest = "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM items t";
    assert_eq!(sql(d, &name, digest), sql(s, &db, digest));
    let events = "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM events t";
    assert_eq!(sql(d, &name, events), sql(s, &db, events));
    sql(d, "postgres", &format!("DROP DATABASE {name}"));
    sql(
        d,
        "postgres",
        &format!("SELECT pg_replication_origin_drop('pgsub_{name}_bench')"),
    );
}

#[test]
fn the_apply_bench_refuses_a_column_of_a_user_defined_type_naming_it() {
    let s = pgsub_testkit::shared();
    let db = s.create_database("bench_enum").unwrap();
    sql(
        s,
        &db,
        "CREATE TYPE mood AS ENUM ('ok', 'sad'); CREATE TABLE feel (id int PRIMARY KEY, m mood);
         CREATE PUBLICATION p FOR TABLE feel;",
    );
    create_slot(s, &db, &db);
    sql(s, &db, "INSERT INTO feel VALUES (1, 'ok')");
    let path = std::env::temp_dir().join(format!("pgsub-bench-{db}.pgrec"));
    record(&s.conninfo(&db), "p", &db, &path, &[]);
    let d = dest_cluster();
    let dst = d.conninfo("postgres");
    let (out, scratch) = run_scratch(&[
        "bench",
        "apply",
        "--input",
        path.to_str().unwrap(),
        "--dest",
        &dst,
    ]);
    let out = out.expect_code(2);
    assert!(out.stderr.contains("public.feel.m"), "{}", out.stderr);
    assert!(!exists(d, &scratch), "the scratch database is dropped");
}
