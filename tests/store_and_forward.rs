//! `sync --input`: a recording made by `pgsub record` carried to the destination and
//! applied there with the progress of a live sync. What a replay leaves is what the
//! source holds; a replay killed anywhere and run again applies each transaction once; a
//! recording of another source system is refused before anything changes.

mod support;

use pgsub::Lsn;
use pgsub_testkit::Cluster;
use support::*;

const SCHEMA: &str = "
    CREATE TABLE items (id bigint PRIMARY KEY, name text, price numeric(10,2), tags text[],
                        at timestamptz, flag boolean, doc jsonb, code varchar(12) UNIQUE);
    CREATE TABLE events (who text, what text, n int);
    ALTER TABLE events REPLICA IDENTITY FULL;
    CREATE PUBLICATION p FOR TABLE items, events;";

/// Rows of every kind of change: inserts, updates of the key and of the unique column,
/// deletes, a large transaction, rows of a table without a key (a duplicate would show).
fn workload(s: &Cluster, db: &str, round: i64) {
    let base = round * 10_000;
    sql(
        s,
        db,
        &format!(
            "INSERT INTO items SELECT {base} + g, 'item ' || g, g * 1.25, ARRAY['a', g::text],
                    '2026-01-01 00:00+00'::timestamptz + g * interval '1 minute', g % 2 = 0,
                    jsonb_build_object('g', g), 'c' || ({base} + g)
               FROM generate_series(1, 3000) g;
             INSERT INTO events SELECT 'w{round}', 'insert', g FROM generate_series(1, 500) g;"
        ),
    );
    for i in 0..20 {
        sql(
            s,
            db,
            &format!(
                "BEGIN;
                 UPDATE items SET price = price + 1, flag = NOT flag WHERE id % 20 = {i} AND id > {base};
                 UPDATE events SET n = n + 1000 WHERE who = 'w{round}' AND n % 20 = {i};
                 DELETE FROM items WHERE id = {base} + 3000 - {i};
                 INSERT INTO events VALUES ('w{round}', 'tx', {i});
                 COMMIT;"
            ),
        );
    }
    // A key change and a shift of the unique column, row by row.
    sql(
        s,
        db,
        &format!(
            "UPDATE items SET id = id + 5000 WHERE id BETWEEN {base} + 1 AND {base} + 10;
             DELETE FROM events WHERE who = 'w{round}' AND n < 50;"
        ),
    );
}

fn dump(c: &Cluster, db: &str) -> String {
    sql(
        c,
        db,
        "SELECT 'items', count(*), md5(string_agg(t::text, ',' ORDER BY id)) FROM items t
         UNION ALL
         SELECT 'events', count(*), md5(string_agg(t::text, ',' ORDER BY t::text)) FROM events t",
    )
}

/// A directory of its own for a test's recordings, under the system's temporary one.
fn scratch(db: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pgsub-replay-{db}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn replay(d: &Cluster, db: &str, path: &std::path::Path, env: &[(&str, &str)]) -> Run {
    replay_with(d, db, path, env, &[])
}

/// [`replay`] with more options.
fn replay_with(
    d: &Cluster,
    db: &str,
    path: &std::path::Path,
    env: &[(&str, &str)],
    extra: &[&str],
) -> Run {
    let dst = d.conninfo(db);
    let mut cmd = pgsub();
    cmd.args(["sync", "--input", path.to_str().unwrap(), "--dest", &dst]);
    cmd.args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_with(&mut cmd)
}

/// A live `sync … --until caught-up` of publication `p` on slot `db`.
fn live_sync(s: &Cluster, d: &Cluster, db: &str, extra: &[&str]) {
    let mut args = extra.to_vec();
    args.extend(["--until", "caught-up"]);
    run_args(&sync_args(&s.conninfo(db), &d.conninfo(db), "p", db, &args)).expect_code(0);
}

fn applied_lsn(d: &Cluster, db: &str) -> Lsn {
    sql(
        d,
        db,
        &format!("SELECT applied_lsn FROM pgsub.progress WHERE name = '{db}'"),
    )
    .parse()
    .expect("an LSN")
}

#[test]
fn a_recording_carried_to_the_destination_leaves_what_the_source_holds_and_resumes_exactly_once() {
    let (s, d, db) = pair("replay");
    sql(s, &db, SCHEMA);
    workload(s, &db, 0);
    let dir = scratch(&db);
    // A live sync copies the tables and streams up to now.
    live_sync(s, d, &db, &["--create-slot", "--schema", "create"]);
    assert_eq!(dump(d, &db), dump(s, &db));

    // Then the destination is out of reach: the changes are recorded on the source side.
    workload(s, &db, 1);
    let first = dir.join("first.pgrec");
    record(&s.conninfo(&db), "p", &db, &first, &[]);
    workload(s, &db, 2);
    let second = dir.join("second.pgrec");
    record(&s.conninfo(&db), "p", &db, &second, &[]);
    let end = current_wal(s, &db);
    assert_ne!(dump(d, &db), dump(s, &db), "the recordings hold changes");

    // The first replay is killed right after its first destination commit: that part
    // stays, and the next run goes on after it.
    let killed = replay(
        d,
        &db,
        &first,
        &[("PGSUB_FAILPOINT", "apply.after-dest-commit")],
    );
    assert_ne!(
        killed.code, 0,
        "the failpoint stops the replay: {}",
        killed.stderr
    );
    let after_kill = applied_lsn(d, &db);
    let out = replay(d, &db, &first, &[]).expect_code(0);
    assert!(
        applied_lsn(d, &db) > after_kill,
        "the rerun applied the rest\n{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("(0 skipped as already applied)"),
        "the rerun skipped what the killed run applied\n{}",
        out.stderr
    );
    // The second recording goes on from where the first left the destination.
    replay(d, &db, &second, &[]).expect_code(0);
    assert_eq!(dump(d, &db), dump(s, &db));
    assert!(applied_lsn(d, &db) <= end);

    // Replayed again, both apply nothing: every transaction is skipped.
    let again = replay(d, &db, &first, &[]).expect_code(0);
    assert!(
        again.stderr.contains("applied 0 transactions"),
        "{}",
        again.stderr
    );
    replay(d, &db, &second, &[]).expect_code(0);
    assert_eq!(dump(d, &db), dump(s, &db));

    // And a live sync takes over from the replayed progress without a duplicate.
    workload(s, &db, 3);
    live_sync(s, d, &db, &[]);
    assert_eq!(dump(d, &db), dump(s, &db));
}

#[test]
fn a_recording_replayed_into_a_destination_without_progress_starts_at_the_recordings_start() {
    let (s, d, db) = pair("replay_fresh");
    sql(s, &db, SCHEMA);
    sql(
        d,
        &db,
        &SCHEMA.replace("CREATE PUBLICATION p FOR TABLE items, events;", ""),
    );
    // The slot exists before any row: the destination's empty tables are the source's
    // rows at the slot's start (in real use, a dump of the slot's snapshot).
    create_slot(s, &db, &db);
    workload(s, &db, 0);
    let dir = scratch(&db);
    let rec = dir.join("all.pgrec");
    record(&s.conninfo(&db), "p", &db, &rec, &[]);
    // A replay killed while it held streamed transactions leaves its spool behind: the next
    // start removes the spools of pgsub processes that are gone, and nothing else.
    let spool = dir.join("spool");
    std::fs::create_dir_all(spool.join("pgsub-spool-4000000000")).unwrap();
    std::fs::create_dir_all(spool.join("not-a-spool")).unwrap();
    let out =
        replay_with(d, &db, &rec, &[], &["--spool-dir", spool.to_str().unwrap()]).expect_code(0);
    assert!(
        out.stderr.contains("no progress for this subscription"),
        "the replay says what it assumed\n{}",
        out.stderr
    );
    let left: Vec<String> = std::fs::read_dir(&spool)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["not-a-spool"], "{}", out.stderr);
    assert_eq!(dump(d, &db), dump(s, &db));
    let system_id = sql(s, &db, "SELECT system_identifier FROM pg_control_system()");
    assert_eq!(
        sql(
            d,
            &db,
            "SELECT source_system_id || '|' || slot || '|' || publications::text FROM pgsub.progress"
        ),
        format!("{system_id}|{db}|{{p}}")
    );
}

#[test]
fn a_recording_of_another_source_system_is_refused_with_exit_2_and_nothing_changes() {
    let (s, d, db) = pair("replay_other");
    sql(s, &db, SCHEMA);
    live_sync(s, d, &db, &["--create-slot", "--schema", "create"]);
    // The destination's own server is another source system: a recording made there,
    // under the same slot name, must not be applied under this progress.
    let other = d.create_database("replay_elsewhere").unwrap();
    sql(d, &other, SCHEMA);
    create_slot(d, &other, &db);
    create_slot(d, &other, "elsewhere");
    sql(
        d,
        &other,
        "INSERT INTO items (id, name) VALUES (1, 'elsewhere')",
    );
    let dir = scratch(&db);
    let rec = dir.join("other.pgrec");
    record(&d.conninfo(&other), "p", &db, &rec, &[]);
    let before = applied_lsn(d, &db);
    let out = replay(d, &db, &rec, &[]).expect_code(2);
    let ours = sql(s, &db, "SELECT system_identifier FROM pg_control_system()");
    let theirs = sql(d, &db, "SELECT system_identifier FROM pg_control_system()");
    assert!(
        out.stderr.contains(&ours) && out.stderr.contains(&theirs),
        "both systems are named\n{}",
        out.stderr
    );
    assert_eq!(applied_lsn(d, &db), before);
    assert_eq!(sql(d, &db, "SELECT count(*) FROM items"), "0");
    // Of another slot, its name taken for the subscription's, it would start a new one
    // on tables another subscription follows: refused too, saying what to pass.
    let rec = dir.join("other_slot.pgrec");
    record(&d.conninfo(&other), "p", "elsewhere", &rec, &[]);
    let out = replay(d, &db, &rec, &[]).expect_code(2);
    assert!(
        out.stderr.contains(&format!("follows \"{db}\"")) && out.stderr.contains("--name"),
        "{}",
        out.stderr
    );
    assert_eq!(sql(d, &db, "SELECT count(*) FROM items"), "0");
    assert_eq!(sql(d, &db, "SELECT count(*) FROM pgsub.progress"), "1");
    // Options a replay would ignore are refused, named.
    let dst = d.conninfo(&db);
    let out = run(&[
        "sync",
        "--input",
        rec.to_str().unwrap(),
        "--dest",
        &dst,
        "--schema",
        "create",
    ])
    .expect_code(2);
    assert!(out.stderr.contains("'--schema"), "{}", out.stderr);
}

#[test]
fn a_table_copied_after_the_recordings_start_gets_only_its_changes_after_its_copy() {
    let (s, d, db) = pair("replay_joined");
    sql(
        s,
        &db,
        "CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (id int PRIMARY KEY, v text);
         CREATE TABLE c (id int PRIMARY KEY, v text); CREATE PUBLICATION p FOR TABLE a",
    );
    live_sync(s, d, &db, &["--create-slot", "--schema", "create"]);
    let applied = applied_lsn(d, &db);
    // Table b joins the publication; its rows after that are in the recording (from the
    // slot, which stood at the live sync's end) and in its copy.
    sql(
        s,
        &db,
        "INSERT INTO a VALUES (1, 'before'); INSERT INTO b VALUES (1, 'before')",
    );
    sql(s, &db, "ALTER PUBLICATION p ADD TABLE b");
    sql(
        s,
        &db,
        "INSERT INTO b VALUES (2, 'joined'); INSERT INTO a VALUES (2, 'joined')",
    );
    let dir = scratch(&db);
    let rec = dir.join("joined.pgrec");
    let src = s.conninfo(&db);
    record(&src, "p", &db, &rec, &["--no-ack"]);
    // Table c joins too, but is never copied: its first change stops the replay.
    sql(s, &db, "ALTER PUBLICATION p ADD TABLE c");
    sql(s, &db, "INSERT INTO c VALUES (1, 'never copied')");
    let with_c = dir.join("with_c.pgrec");
    record(&src, "p", &db, &with_c, &["--no-ack"]);
    sql(s, &db, "ALTER PUBLICATION p DROP TABLE c");
    // A live sync that stops at once copies b (at a snapshot after the recording's
    // changes to it) and applies nothing of the stream.
    let dst = d.conninfo(&db);
    run_args(&sync_args(
        &src,
        &dst,
        "p",
        &db,
        &["--schema", "create", "--until", &applied.to_string()],
    ))
    .expect_code(0);
    assert_eq!(sql(d, &db, "SELECT count(*) FROM b"), "2", "b is copied");
    assert_eq!(
        sql(d, &db, "SELECT count(*) FROM a"),
        "0",
        "the stream is not applied"
    );
    // The replay applies a's changes, and of b's only those after b's copy: none.
    replay(d, &db, &rec, &[]).expect_code(0);
    let rows = |c: &Cluster, t: &str| {
        sql(
            c,
            &db,
            &format!("SELECT string_agg(id || v, ',' ORDER BY id) FROM {t}"),
        )
    };
    assert_eq!(rows(d, "a"), rows(s, "a"));
    assert_eq!(rows(d, "b"), rows(s, "b"));
    let out = replay(d, &db, &with_c, &[]);
    assert_ne!(out.code, 0, "c is not followed\n{}", out.stderr);
    assert!(out.stderr.contains("public.c"), "{}", out.stderr);
    assert_eq!(
        sql(
            d,
            &db,
            "SELECT count(*) FROM pgsub.tables WHERE relation = 'public.c'"
        ),
        "0"
    );
}

#[test]
fn a_recording_of_two_phase_transactions_is_replayed_prepared_and_finished_exactly_once() {
    if pgsub_testkit::shared().version_num() < 150000 {
        eprintln!("two-phase decoding for pgoutput needs PostgreSQL 15");
        return;
    }
    let (s, d, db) = pair("replay_two_phase");
    sql(s, &db, SCHEMA);
    let dir = scratch(&db);
    live_sync(
        s,
        d,
        &db,
        &["--create-slot", "--schema", "create", "--two-phase"],
    );
    sql(
        s,
        &db,
        "BEGIN; INSERT INTO events SELECT 'p1', 'prepared', g FROM generate_series(1, 40) g; \
         PREPARE TRANSACTION 'p1'",
    );
    sql(s, &db, "INSERT INTO events VALUES ('plain', 'between', 1)");
    sql(
        s,
        &db,
        "BEGIN; INSERT INTO events SELECT 'p2', 'prepared', g FROM generate_series(1, 30) g; \
         PREPARE TRANSACTION 'p2'",
    );
    sql(s, &db, "COMMIT PREPARED 'p1'");
    let first = dir.join("first.pgrec");
    record(&s.conninfo(&db), "p", &db, &first, &["--two-phase"]);
    let prepared = || prepared_count(d, &db).to_string();
    // Replayed twice: the second finds everything done.
    for _ in 0..2 {
        replay(d, &db, &first, &[]).expect_code(0);
        assert_eq!(prepared(), "1", "p2 is prepared on the destination");
        assert_eq!(sql(d, &db, "SELECT count(*) FROM events"), "41");
    }
    sql(s, &db, "COMMIT PREPARED 'p2'");
    let second = dir.join("second.pgrec");
    record(&s.conninfo(&db), "p", &db, &second, &["--two-phase"]);
    replay(d, &db, &second, &[]).expect_code(0);
    assert_eq!(prepared(), "0");
    assert_eq!(dump(d, &db), dump(s, &db));
    let _ = std::fs::remove_dir_all(&dir);
}
