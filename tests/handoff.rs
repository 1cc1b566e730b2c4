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
    let (src, dst) = (s.conninfo(db), d.conninfo(db));
    let mut args = vec![
        "handoff",
        "--source",
        &src,
        "--dest",
        &dst,
        "--subscription",
        "native",
    ];
    args.extend_from_slice(extra);
    run(&args)
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
    let mut syncing = start(pgsub().args(sync(&[])));
    std::thread::sleep(Duration::from_secs(2));
    work.stop();
    terminate(&syncing);
    assert!(syncing.wait().unwrap().success());
    run_args(&sync(&["--until", "caught-up"])).expect_code(0);
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
