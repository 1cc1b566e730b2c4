//! `pgsub handoff` between a native subscription and pgsub, both ways, while the source
//! keeps writing: after each, `verify` finds the two sides equal and no row applied twice.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use pgsub_testkit::Cluster;
use support::*;

const TABLES: &str = "
CREATE TABLE t (id int PRIMARY KEY, v int);
CREATE TABLE log (id int, note text);";

/// Writes to the source until stopped: inserts, updates and deletes by key, and inserts
/// into a keyless table (where a duplicate would show).
struct Workload {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Workload {
    fn start(db: &str, next: Arc<AtomicU32>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, db) = (stop.clone(), db.to_owned());
        let thread = std::thread::spawn(move || {
            let s = pgsub_testkit::shared();
            while !flag.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                sql(
                    s,
                    &db,
                    &format!(
                        "BEGIN; INSERT INTO t VALUES ({i}, 0); UPDATE t SET v = v + 1 WHERE id = {}; \
                         DELETE FROM t WHERE id = {}; INSERT INTO log VALUES ({i}, 'row {i}'); COMMIT;",
                        i / 2,
                        i.saturating_sub(40)
                    ),
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Workload {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn handoff(s: &Cluster, d: &Cluster, db: &str, extra: &[&str]) -> Run {
    handoff_between(&s.conninfo(db), &d.conninfo(db), "native", extra)
}

/// `pgsub handoff --source SRC --dest DST --subscription SUB EXTRA…`.
fn handoff_between(src: &str, dst: &str, subscription: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "handoff",
        "--source",
        src,
        "--dest",
        dst,
        "--subscription",
        subscription,
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// Runs `sync` for two seconds while `work` writes, stops both, then runs it once more
/// until caught up.
fn sync_while_writing(work: Workload, sync: &dyn Fn(&[&str]) -> Vec<String>) {
    let mut syncing = start(pgsub().args(sync(&[])));
    std::thread::sleep(Duration::from_secs(2));
    work.stop();
    terminate(&syncing);
    assert!(syncing.wait().unwrap().success());
    run_args(&sync(&["--until", "caught-up"])).expect_code(0);
}

fn verify_equal(s: &Cluster, d: &Cluster, db: &str) {
    let (src, dst) = (s.conninfo(db), d.conninfo(db));
    let out = run(&[
        "verify",
        "--source",
        &src,
        "--dest",
        &dst,
        "--publication",
        "pub",
        "--settle",
        "30",
        "--format",
        "json",
    ]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let log = out
        .kind("table")
        .into_iter()
        .find(|t| t["table"] == "public.log")
        .unwrap();
    assert_eq!(log["source_rows"], log["dest_rows"], "{log}");
}

fn wait_native_caught_up(s: &Cluster, d: &Cluster, db: &str) {
    let target = current_wal(s, db);
    eventually(
        "the native subscription did not catch up",
        Duration::from_secs(60),
        || native_caught_up(d, db, target),
    );
}

#[test]
#[cfg_attr(
    not(feature = "failpoints"),
    ignore = "crashes pgsub at a failpoint: needs --features failpoints (the README's test command)"
)]
fn handoff_both_ways_under_a_running_workload_loses_and_repeats_nothing() {
    let (s, d, db) = pair("handoff");
    let slot = format!("{db}_h");
    sql(s, &db, TABLES);
    sql(
        s,
        &db,
        "INSERT INTO t SELECT g, 0 FROM generate_series(1, 20) g; CREATE PUBLICATION pub FOR TABLE t, log",
    );
    sql(d, &db, TABLES);
    sql(
        d,
        &db,
        &format!(
            "CREATE SUBSCRIPTION native CONNECTION '{}' PUBLICATION pub WITH (slot_name = '{slot}')",
            s.conninfo(&db)
        ),
    );
    let target = current_wal(s, &db);
    eventually(
        "the initial sync did not finish",
        Duration::from_secs(60),
        || native_caught_up(d, &db, target),
    );
    let next = Arc::new(AtomicU32::new(100));
    let work = Workload::start(&db, next.clone());
    std::thread::sleep(Duration::from_millis(800));

    // A dry run changes nothing.
    let dry = handoff(s, d, &db, &["--to-pgsub", "--dry-run"]).expect_code(0);
    assert!(
        dry.stdout
            .contains("ALTER SUBSCRIPTION \"native\" DISABLE;"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains("SET (slot_name = NONE)"),
        "{}",
        dry.stdout
    );
    assert_eq!(
        sql(
            d,
            &db,
            "SELECT subenabled FROM pg_subscription WHERE subname = 'native'"
        ),
        "t"
    );

    // Native → pgsub, while the source writes.
    let out = handoff(s, d, &db, &["--to-pgsub"]).expect_code(0);
    assert!(
        out.stdout.contains(&format!("--slot {slot}")),
        "{}",
        out.stdout
    );
    assert_eq!(
        sql(
            d,
            &db,
            "SELECT subenabled::text || coalesce(subslotname::text, 'NONE') FROM pg_subscription"
        ),
        "falseNONE"
    );
    let origin = sql(
        d,
        &db,
        "SELECT remote_lsn FROM pg_replication_origin_status o JOIN pg_subscription s ON o.external_id = 'pg_' || s.oid",
    );
    assert_eq!(
        sql(
            d,
            &db,
            &format!("SELECT applied_lsn::text FROM pgsub.progress WHERE name = '{slot}'")
        ),
        origin
    );
    let (src, dst) = (s.conninfo(&db), d.conninfo(&db));
    let sync = |extra: &[&str]| sync_args(&src, &dst, "pub", &slot, extra);
    sync_while_writing(work, &sync);
    verify_equal(s, d, &db);

    // pgsub → native, while the source writes again; pgsub dies (as by kill -9) right
    // after a destination commit, before telling the source: the slot confirms less than
    // pgsub applied, and only the origin's advance keeps the subscription from applying
    // that transaction twice.
    let work = Workload::start(&db, next.clone());
    std::thread::sleep(Duration::from_millis(500));
    let crashed = run_with(
        pgsub()
            .args(sync(&[]))
            .env("PGSUB_FAILPOINT", "apply.after-dest-commit"),
    );
    assert_ne!(crashed.code, 0, "{}", crashed.stderr);
    eventually(
        "the walsender of the dead pgsub did not exit",
        Duration::from_secs(20),
        || !slot_active(s, &db, &slot),
    );
    let applied: pgsub::Lsn = sql(d, &db, "SELECT applied_lsn FROM pgsub.progress")
        .parse()
        .unwrap();
    assert!(
        confirmed_flush(s, &db, &slot) < applied,
        "the slot must be behind pgsub's applied position for this test to mean something"
    );
    let dry = handoff(s, d, &db, &["--to-native", "--slot", &slot, "--dry-run"]).expect_code(0);
    assert!(
        dry.stdout.contains("pg_replication_origin_advance"),
        "{}",
        dry.stdout
    );
    // Creating another one shows its connection string redacted.
    let conninfo = format!("{} password=Hush1234", s.conninfo(&db));
    let (srcs, dsts) = (s.conninfo(&db), d.conninfo(&db));
    let other = run(&[
        "handoff",
        "--source",
        &srcs,
        "--dest",
        &dsts,
        "--subscription",
        "other",
        "--to-native",
        "--slot",
        &slot,
        "--subscription-conninfo",
        &conninfo,
        "--dry-run",
    ])
    .expect_code(0);
    assert!(
        other
            .stdout
            .contains("CREATE SUBSCRIPTION \"other\" CONNECTION"),
        "{}",
        other.stdout
    );
    assert!(
        other.stdout.contains("password=********"),
        "{}",
        other.stdout
    );
    assert!(!other.stdout.contains("Hush1234") && !other.stderr.contains("Hush1234"));

    handoff(s, d, &db, &["--to-native", "--slot", &slot]).expect_code(0);
    assert_eq!(sql(d, &db, "SELECT count(*) FROM pgsub.progress"), "0");
    std::thread::sleep(Duration::from_secs(2));
    work.stop();
    wait_native_caught_up(s, d, &db);
    verify_equal(s, d, &db);
    sql(d, &db, "DROP SUBSCRIPTION native");
}

/// The destination's admin role on a managed service (the `aiven_extras` stand-in).
const ADMIN: &str = "avnadmin";
const ADMIN_PASSWORD: &str = "Adm1n-secret";

#[test]
fn handoff_as_a_managed_admin_role_goes_through_aiven_extras_and_needs_a_write_pause_without_the_origin()
 {
    // A destination of its own: the stand-in closes pg_subscription for the whole cluster.
    // Its WAL writer flushes only every 10 s, so that the subscription (which commits
    // asynchronously, and confirms only what its destination flushed) has applied
    // changes it has not confirmed whenever writes go on.
    let s = pgsub_testkit::shared();
    let d = &Cluster::start(pgsub_testkit::ClusterOptions {
        extra_conf: vec!["wal_writer_delay = '10s'".into()],
        ..dest_options()
    })
    .unwrap();
    let db = s.create_database("handoff_managed").unwrap();
    sql(d, "postgres", &format!("CREATE DATABASE {db}"));
    let slot = format!("{db}_m");
    sql(s, &db, TABLES);
    sql(
        s,
        &db,
        "INSERT INTO t SELECT g, 0 FROM generate_series(1, 20) g; CREATE PUBLICATION pub FOR TABLE t, log",
    );
    support::aiven_extras::install(d, &db, ADMIN, ADMIN_PASSWORD);
    let src = s.conninfo(&db);
    let admin = d.conninfo_as(&db, ADMIN, ADMIN_PASSWORD);
    // The managed procedure: the admin role makes the tables, the slot is made on the
    // source, the subscription through the extension (so a superuser owns it).
    create_slot(s, &db, &slot);
    sql(
        d,
        &db,
        &format!(
            "SET ROLE {ADMIN}; {TABLES}
             SELECT aiven_extras.pg_create_subscription('managed', '{src}', 'pub', '{slot}', false, true);"
        ),
    );
    let target = current_wal(s, &db);
    eventually(
        "the initial sync did not finish",
        Duration::from_secs(60),
        || native_caught_up(d, &db, target),
    );
    let enabled = || {
        sql(
            d,
            &db,
            "SELECT string_agg(subname || ':' || subenabled, ',') FROM pg_subscription",
        )
    };
    let handoff_as_admin = |extra: &[&str]| handoff_between(&src, &admin, "managed", extra);
    let next = Arc::new(AtomicU32::new(100));
    let work = Workload::start(&db, next.clone());
    std::thread::sleep(Duration::from_millis(500));

    // The origin is closed to the role: refused before anything changes, with the ways on.
    let refused = handoff_as_admin(&["--to-pgsub"]).expect_code(2);
    for needed in [
        "pg_replication_origin_status",
        "--writes-paused",
        "aiven_extras.pg_drop_subscription('managed', true)",
        "nothing was changed",
    ] {
        assert!(
            refused.stderr.contains(needed),
            "{needed}: {}",
            refused.stderr
        );
    }
    assert_eq!(enabled(), "managed:true");

    // Writes that go on although the pause is claimed: the subscription applied changes it
    // had not confirmed when it stopped; found, and the subscription is enabled again.
    let caught = handoff_as_admin(&["--to-pgsub", "--writes-paused"]).expect_code(2);
    assert!(
        caught.stderr.contains("published change(s) follow slot"),
        "{}",
        caught.stderr
    );
    assert_eq!(enabled(), "managed:true");

    // With the writes paused, the slot's confirmed position is exact.
    work.stop();
    let out = handoff_as_admin(&["--to-pgsub", "--writes-paused", "--format", "json"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let report: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(report["position_from"], "slot", "{report}");
    let statements = report["statements"].to_string();
    assert!(
        statements.contains("aiven_extras.pg_alter_subscription_disable('managed')")
            && statements.contains("aiven_extras.pg_drop_subscription('managed', false)"),
        "{statements}"
    );
    assert_eq!(enabled(), "", "the subscription is dropped, its slot kept");
    let confirmed = confirmed_flush(s, &db, &slot);
    assert_eq!(
        sql(d, &db, "SELECT applied_lsn::text FROM pgsub.progress"),
        confirmed.to_string()
    );

    // pgsub carries on as the admin role while the source writes again.
    let sync = |extra: &[&str]| sync_args(&src, &admin, "pub", &slot, extra);
    let work = Workload::start(&db, next.clone());
    sync_while_writing(work, &sync);
    verify_equal(s, d, &db);

    // And back: the role may not CREATE SUBSCRIPTION, so the extension makes it, on
    // pgsub's slot, which confirms everything pgsub applied.
    let back = handoff_as_admin(&[
        "--to-native",
        "--slot",
        &slot,
        "--subscription-conninfo",
        &src,
    ]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert!(
        back.stdout
            .contains("SELECT aiven_extras.pg_create_subscription('managed'"),
        "{}",
        back.stdout
    );
    assert_eq!(sql(d, &db, "SELECT count(*) FROM pgsub.progress"), "0");
    assert_eq!(enabled(), "managed:true");
    assert_eq!(
        sql(
            d,
            &db,
            "SELECT pg_get_userbyid(subowner) <> 'avnadmin' FROM pg_subscription"
        ),
        "t",
        "made through the extension, the subscription is not the admin role's"
    );
    let work = Workload::start(&db, next.clone());
    std::thread::sleep(Duration::from_secs(1));
    work.stop();
    wait_native_caught_up(s, d, &db);
    verify_equal(s, d, &db);

    // Where the role may read the origin, the hand-off is exact under a running workload,
    // still through the extension's functions.
    sql(
        d,
        &db,
        &format!(
            "GRANT SELECT ON pg_catalog.pg_subscription, pg_catalog.pg_replication_origin_status TO {ADMIN};
             GRANT EXECUTE ON FUNCTION pg_catalog.pg_show_replication_origin_status() TO {ADMIN}"
        ),
    );
    let work = Workload::start(&db, next.clone());
    std::thread::sleep(Duration::from_millis(500));
    let out = handoff_as_admin(&["--to-pgsub", "--format", "json"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let report: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(report["position_from"], "origin", "{report}");
    sync_while_writing(work, &sync);
    verify_equal(s, d, &db);
    for o in [&refused, &caught, &back] {
        assert!(
            !o.stdout.contains(ADMIN_PASSWORD) && !o.stderr.contains(ADMIN_PASSWORD),
            "{}{}",
            o.stdout,
            o.stderr
        );
    }
}
