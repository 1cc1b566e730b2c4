//! `pgsub sync --two-phase` (PostgreSQL 15+): a transaction prepared on the source becomes
//! a prepared transaction on the destination under pgsub's own GID, and is committed or
//! rolled back as the source finishes it — as the built-in subscription with `two_phase =
//! true` does, side by side on the same workload — exactly once also when pgsub is killed
//! between PREPARE and COMMIT PREPARED, or between the destination's COMMIT PREPARED and
//! its acknowledgement; a destination that cannot prepare is refused up front.

mod support;

use pgsub_testkit::{Cluster, ClusterOptions};
use support::oracle::Twin;
use support::*;

fn two_phase_source() -> bool {
    if pgsub_testkit::shared().version_num() < 150000 {
        eprintln!("two-phase decoding for pgoutput needs PostgreSQL 15");
        return false;
    }
    true
}

/// [`two_phase_source`], and a destination whose built-in subscription (the oracle) takes
/// `two_phase` (15+).
fn two_phase_oracle() -> bool {
    if dest_version_num() < 150000 {
        eprintln!("the built-in subscription's two_phase needs a PostgreSQL 15 destination");
        return false;
    }
    two_phase_source()
}

/// The GIDs of the prepared transactions of database `db`.
fn prepared(c: &Cluster, db: &str) -> String {
    sql(
        c,
        db,
        "SELECT coalesce(string_agg(gid, ',' ORDER BY gid), '') FROM pg_prepared_xacts WHERE database = current_database()",
    )
}

#[test]
fn prepared_transactions_are_prepared_on_the_destination_and_finished_as_the_source_finishes_them()
{
    if !two_phase_oracle() {
        return;
    }
    let mut t = Twin::new("two_phase");
    t.everywhere(
        "CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE log (id int, note text)",
    );
    t.source("CREATE PUBLICATION p FOR TABLE a, log; INSERT INTO a VALUES (1, 'one')");
    t.subscribe(&["p"], "two_phase = true", &["--two-phase"])
        .expect_code(0);
    t.source(
        "BEGIN; INSERT INTO a VALUES (2, 'two'); INSERT INTO log VALUES (2, 'prepared, then committed'); \
         PREPARE TRANSACTION 'to_commit'",
    );
    // Committed while the others are prepared: applied at once, not held up by them.
    t.source("INSERT INTO a VALUES (3, 'three'); INSERT INTO log VALUES (3, 'plain')");
    t.source(
        "BEGIN; UPDATE a SET v = 'not so' WHERE id = 1; INSERT INTO log VALUES (4, 'prepared, then rolled back'); \
         PREPARE TRANSACTION 'to_roll_back'",
    );
    t.sync_both();
    // Both replicas hold two prepared transactions, and the rows committed between them.
    t.expect_both(
        "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()",
        "2",
    );
    t.expect_both("SELECT string_agg(id::text, ',' ORDER BY id) FROM a", "1,3");
    // pgsub's GIDs name the source system and the source's xid, and pgsub's name.
    let system = t.source("SELECT system_identifier FROM pg_control_system()");
    let xid = t.source("SELECT transaction FROM pg_prepared_xacts WHERE gid = 'to_commit'");
    let gids = prepared(t.dst, &t.pgsub_db);
    assert!(
        gids.split(',')
            .any(|g| g == format!("pgsub_{system}_{xid}_{}", t.pgsub_db)),
        "{gids}"
    );
    // Prepared, not yet committed: the mark inside is not visible either.
    assert_eq!(t.pgsub("SELECT count(*) FROM pgsub.prepared"), "0");

    t.source("COMMIT PREPARED 'to_commit'; ROLLBACK PREPARED 'to_roll_back'");
    t.sync_both();
    t.expect_both(
        "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()",
        "0",
    );
    t.expect_all("SELECT id, v FROM a ORDER BY id");
    t.expect_all("SELECT id, note FROM log ORDER BY id");
    assert_eq!(t.pgsub("SELECT count(*) FROM pgsub.prepared"), "0");
}

#[test]
#[cfg_attr(
    not(feature = "failpoints"),
    ignore = "crashes pgsub at a failpoint: needs --features failpoints (the README's test command)"
)]
fn a_crash_between_prepare_and_commit_prepared_or_before_its_acknowledgement_applies_it_once() {
    if !two_phase_source() {
        return;
    }
    let (s, d, db) = pair("two_phase_crash");
    // No key on log: a transaction applied twice shows as duplicates.
    let tables =
        "CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE log (id int, note text)";
    sql(s, &db, tables);
    sql(d, &db, tables);
    sql(s, &db, "CREATE PUBLICATION p FOR TABLE a, log");
    let (src, dst) = (s.conninfo(&db), d.conninfo(&db));
    let sync = |extra: &[&str]| {
        let mut all = vec!["--two-phase"];
        all.extend_from_slice(extra);
        sync_args(&src, &dst, "p", &db, &all)
    };
    let until = |extra: &[&str]| {
        let mut all = vec!["--until", "caught-up"];
        all.extend_from_slice(extra);
        run_args(&sync(&all))
    };
    until(&["--create-slot"]).expect_code(0);
    let crash_at = |point: &str| {
        let crashed = run_with(
            pgsub()
                .args(sync(&["--until", "caught-up"]))
                .env("PGSUB_FAILPOINT", point),
        );
        assert_ne!(crashed.code, 0, "{}", crashed.stderr);
        assert!(crashed.stderr.contains(point), "{}", crashed.stderr);
        eventually(
            "the walsender of the dead pgsub did not exit",
            std::time::Duration::from_secs(20),
            || !slot_active(s, &db, &db),
        );
    };

    // Killed right after the destination's PREPARE TRANSACTION.
    sql(
        s,
        &db,
        "BEGIN; INSERT INTO a VALUES (1, 'one'); INSERT INTO log SELECT g, 'first' FROM generate_series(1, 50) g; \
         PREPARE TRANSACTION 'first'",
    );
    crash_at("apply.after-dest-prepare");
    assert_eq!(prepared_count(d, &db), 1, "{}", prepared(d, &db));
    // The restart is sent the transaction again and finds it prepared already.
    until(&[]).expect_code(0);
    assert_eq!(prepared_count(d, &db), 1, "{}", prepared(d, &db));
    sql(s, &db, "COMMIT PREPARED 'first'");
    until(&[]).expect_code(0);
    assert_eq!(prepared(d, &db), "");
    assert_eq!(sql(d, &db, "SELECT count(*) FROM log"), "50");

    // Killed right after the destination's COMMIT PREPARED, before its position is
    // recorded and acknowledged.
    sql(
        s,
        &db,
        "BEGIN; UPDATE a SET v = 'uno'; INSERT INTO log SELECT g, 'second' FROM generate_series(1, 30) g; \
         PREPARE TRANSACTION 'second'",
    );
    until(&[]).expect_code(0);
    sql(s, &db, "COMMIT PREPARED 'second'");
    crash_at("apply.after-dest-commit-prepared");
    assert_eq!(prepared(d, &db), "");
    assert_eq!(sql(d, &db, "SELECT count(*) FROM pgsub.prepared"), "1");
    until(&[]).expect_code(0);
    assert_eq!(sql(d, &db, "SELECT count(*) FROM log"), "80");
    assert_eq!(sql(d, &db, "SELECT v FROM a"), "uno");
    assert_eq!(sql(d, &db, "SELECT count(*) FROM pgsub.prepared"), "0");

    // And once more after a rollback: nothing of it stays.
    sql(
        s,
        &db,
        "BEGIN; INSERT INTO log VALUES (0, 'third'); PREPARE TRANSACTION 'third'",
    );
    until(&[]).expect_code(0);
    sql(s, &db, "ROLLBACK PREPARED 'third'");
    until(&[]).expect_code(0);
    assert_eq!(sql(d, &db, "SELECT count(*) FROM log"), "80");
    assert_eq!(prepared(d, &db), "");
}

#[test]
fn a_large_prepared_transaction_streamed_in_blocks_is_prepared_from_its_spool() {
    if !two_phase_source() {
        return;
    }
    let (s, d, db) = pair("two_phase_stream");
    let tables = "CREATE TABLE big (id int PRIMARY KEY, pad text)";
    sql(s, &db, tables);
    sql(d, &db, tables);
    sql(s, &db, "CREATE PUBLICATION p FOR TABLE big");
    // Every transaction above 64 kB is streamed while in progress.
    let src = format!(
        "{} options='-c logical_decoding_work_mem=64kB'",
        s.conninfo(&db)
    );
    let dst = d.conninfo(&db);
    let sync = |extra: &[&str]| {
        let mut all = vec!["--two-phase", "--streaming", "on", "--until", "caught-up"];
        all.extend_from_slice(extra);
        run_args(&sync_args(&src, &dst, "p", &db, &all))
    };
    sync(&["--create-slot"]).expect_code(0);
    sql(
        s,
        &db,
        "BEGIN; INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 3000) g; \
         PREPARE TRANSACTION 'big'",
    );
    sync(&[]).expect_code(0);
    let streamed: u64 = sql(
        s,
        &db,
        &format!("SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = '{db}'"),
    )
    .parse()
    .unwrap();
    assert!(streamed >= 1, "the transaction was not streamed");
    assert_eq!(prepared_count(d, &db), 1, "{}", prepared(d, &db));
    assert_eq!(sql(d, &db, "SELECT count(*) FROM big"), "0");
    sql(s, &db, "COMMIT PREPARED 'big'");
    sync(&[]).expect_code(0);
    assert_eq!(sql(d, &db, "SELECT count(*) FROM big"), "3000");
    assert_eq!(prepared(d, &db), "");
}

#[test]
fn a_destination_that_cannot_prepare_and_a_two_phase_slot_without_the_flag_are_refused_up_front() {
    if !two_phase_source() {
        return;
    }
    let s = pgsub_testkit::shared();
    let d = &Cluster::start(ClusterOptions {
        extra_conf: vec!["max_prepared_transactions = 0".into()],
        ..dest_options()
    })
    .unwrap();
    let db = s.create_database("two_phase_refused").unwrap();
    sql(d, "postgres", &format!("CREATE DATABASE {db}"));
    sql(
        s,
        &db,
        "CREATE TABLE a (id int PRIMARY KEY); CREATE PUBLICATION p FOR TABLE a",
    );
    sql(d, &db, "CREATE TABLE a (id int PRIMARY KEY)");
    let (src, dst) = (s.conninfo(&db), d.conninfo(&db));
    let out = run_args(&sync_args(
        &src,
        &dst,
        "p",
        &db,
        &["--two-phase", "--create-slot", "--until", "caught-up"],
    ))
    .expect_code(2);
    assert!(
        out.stderr.contains("max_prepared_transactions is 0"),
        "{}",
        out.stderr
    );
    assert_eq!(
        sql(
            s,
            &db,
            &format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{db}'")
        ),
        "0",
        "nothing was created"
    );
    // A slot that decodes two-phase transactions, without --two-phase.
    let slot = format!("{db}_tp");
    sql(
        s,
        &db,
        &format!("SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput', false, true)"),
    );
    let out = run_args(&sync_args(
        &src,
        &dst,
        "p",
        &slot,
        &["--until", "caught-up"],
    ))
    .expect_code(2);
    assert!(out.stderr.contains("pass --two-phase"), "{}", out.stderr);
    sql(
        s,
        &db,
        &format!("SELECT pg_drop_replication_slot('{slot}')"),
    );
}

#[test]
fn a_transaction_prepared_before_the_slot_decoded_two_phase_arrives_whole_at_its_commit_and_is_applied()
 {
    // An existing slot without two-phase decoding gets it at the start that asks for it
    // (as the built-in subscription's does): a transaction prepared before that start is
    // sent at its COMMIT PREPARED, whole, with its PREPARE's position — behind where the
    // stream, and pgsub's progress, already are.
    if !two_phase_source() {
        return;
    }
    let (s, d, db) = pair("two_phase_early");
    let tables = "CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE log (id int)";
    sql(s, &db, tables);
    sql(d, &db, tables);
    sql(s, &db, "CREATE PUBLICATION p FOR TABLE a, log");
    let (src, dst) = (s.conninfo(&db), d.conninfo(&db));
    let sync = |extra: &[&str]| {
        let mut all = vec!["--until", "caught-up"];
        all.extend_from_slice(extra);
        run_args(&sync_args(&src, &dst, "p", &db, &all))
    };
    sync(&["--create-slot"]).expect_code(0);
    sql(
        s,
        &db,
        "BEGIN; INSERT INTO a SELECT g, 'early' FROM generate_series(1, 10) g; \
         INSERT INTO log SELECT g FROM generate_series(1, 10) g; PREPARE TRANSACTION 'early'",
    );
    sql(
        s,
        &db,
        "INSERT INTO a VALUES (100, 'plain'); INSERT INTO log VALUES (100)",
    );
    // Streamed past its PREPARE without two-phase decoding, then made two-phase.
    sync(&[]).expect_code(0);
    assert_eq!(sql(d, &db, "SELECT count(*) FROM a"), "1");
    let out = sync(&["--two-phase"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(prepared_count(d, &db), 0, "not decoded at its PREPARE");
    assert_eq!(
        sql(
            s,
            &db,
            &format!("SELECT two_phase FROM pg_replication_slots WHERE slot_name = '{db}'")
        ),
        "t",
        "the slot decodes two-phase transactions now"
    );
    // Prepared from now on: prepared on the destination too.
    sql(
        s,
        &db,
        "BEGIN; INSERT INTO log VALUES (200); PREPARE TRANSACTION 'later'",
    );
    sync(&["--two-phase"]).expect_code(0);
    assert_eq!(prepared_count(d, &db), 1, "{}", prepared(d, &db));
    sql(s, &db, "COMMIT PREPARED 'early'; COMMIT PREPARED 'later'");
    let out = sync(&["--two-phase"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(sql(d, &db, "SELECT count(*) FROM a"), "11");
    assert_eq!(sql(d, &db, "SELECT count(*) FROM log"), "12");
    assert_eq!(prepared_count(d, &db), 0);
    sync(&["--two-phase"]).expect_code(0);
    assert_eq!(sql(d, &db, "SELECT count(*) FROM log"), "12", "once");
}
