//! The soak: a seeded mixed workload runs on the source while faults are drawn at random —
//! pgsub killed (at a random instant, or at a failpoint), its connections to the source and
//! to the destination cut or stalled by the fault proxy, the source restarted (fast, or
//! killed as an immediate stop would), the destination killed, a destination table locked
//! against a short `statement_timeout`, a spool directory that fills up — and pgsub, run
//! with the same command line after every stop, must end with every table equal to the
//! source, no transaction applied twice (the ledger's key would refuse it), no stop of its
//! own but the ones the faults cause, and no process left behind.
//!
//! `PGSUB_SOAK_FAULTS` faults (default 50), `PGSUB_SOAK_SEED` replays a seed.

mod support;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pgsub::failpoint;
use pgsub_testkit::{Cluster, ClusterOptions};
use support::fault_proxy::{FaultProxy, Faults};
use support::*;

const SCHEMA: &str = "
CREATE TABLE accounts (id int PRIMARY KEY, v bigint NOT NULL);
INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 200) g;
CREATE TABLE ledger (txn bigint PRIMARY KEY, kind text NOT NULL);
CREATE TABLE events (n bigint, note text); ALTER TABLE events REPLICA IDENTITY FULL;
CREATE TABLE big (id bigserial PRIMARY KEY, n bigint, pad text);
CREATE TABLE trunc (id int PRIMARY KEY, n bigint);
CREATE PUBLICATION p FOR ALL TABLES;";

/// Transactions of every kind until `stop`, reconnecting after the source restarts.
fn workload(
    conninfo: String,
    stop: Arc<AtomicBool>,
    seed: u64,
    done: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut rng = SplitMix(seed);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let Ok((client, conn)) =
                    tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await
                else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                tokio::spawn(conn);
                // A prepared transaction left by a connection lost between PREPARE and
                // COMMIT PREPARED would hold its locks for ever.
                if let Ok(rows) = client.query("SELECT gid FROM pg_prepared_xacts", &[]).await {
                    for r in rows {
                        let gid: String = r.get(0);
                        let _ = client.batch_execute(&format!("COMMIT PREPARED '{gid}'")).await;
                    }
                }
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let id = 1 + rng.below(200);
                    let (body, kind) = match rng.below(12) {
                        0..=4 => (
                            format!(
                                "UPDATE accounts SET v = v + {n} WHERE id = {id}; \
                                 INSERT INTO events SELECT {n}, 'e' || g FROM generate_series(1, {}) g; \
                                 UPDATE accounts SET v = v + 1 WHERE id = 1",
                                1 + rng.below(20)
                            ),
                            "small",
                        ),
                        5 => (
                            format!(
                                "UPDATE accounts SET id = id + 100000 WHERE id = {id}; \
                                 UPDATE accounts SET id = id - 100000 WHERE id = {id} + 100000"
                            ),
                            "key",
                        ),
                        6 => (
                            format!("DELETE FROM events WHERE n % 50 = {}", rng.below(50)),
                            "delete",
                        ),
                        7 | 8 => (
                            format!(
                                "INSERT INTO big (n, pad) SELECT {n}, repeat('a', 100) FROM generate_series(1, 2000); \
                                 SAVEPOINT s; INSERT INTO big (n, pad) SELECT {n}, 'gone' FROM generate_series(1, 500); \
                                 ROLLBACK TO SAVEPOINT s; UPDATE big SET pad = 'u' WHERE n = {n} AND id % 3 = 0; \
                                 DELETE FROM big WHERE n = {n} AND id % 5 = 0"
                            ),
                            "large",
                        ),
                        9 => (
                            format!("TRUNCATE trunc; INSERT INTO trunc SELECT g, {n} FROM generate_series(1, {}) g", 1 + rng.below(50)),
                            "truncate",
                        ),
                        10 => (String::new(), "two-phase"),
                        _ => (
                            format!("UPDATE events SET note = note || '+' WHERE n = {}", rng.below(n)),
                            "update",
                        ),
                    };
                    let ledger = format!("INSERT INTO ledger VALUES ({n}, '{kind}')");
                    let result = if kind == "two-phase" {
                        match client
                            .batch_execute(&format!(
                                "BEGIN; {ledger}; UPDATE accounts SET v = v - 1 WHERE id = {id}; PREPARE TRANSACTION 'soak{n}'"
                            ))
                            .await
                        {
                            Ok(()) => client.batch_execute(&format!("COMMIT PREPARED 'soak{n}'")).await,
                            Err(e) => Err(e),
                        }
                    } else {
                        client.batch_execute(&format!("BEGIN; {body}; {ledger}; COMMIT")).await
                    };
                    match result {
                        Ok(()) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) if e.is_closed() || client.is_closed() => break,
                        Err(_) => {
                            let _ = client.batch_execute("ROLLBACK").await;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(rng.below(20))).await;
                }
            }
        })
    })
}

fn contents(c: &Cluster, db: &str) -> Vec<String> {
    [
        "SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM accounts",
        "SELECT count(*), coalesce(sum(txn), 0), string_agg(DISTINCT kind, ',' ORDER BY kind) FROM ledger",
        "SELECT count(*), coalesce(sum(hashtext(n || note)), 0) FROM events",
        "SELECT count(*), coalesce(sum(id), 0), coalesce(sum(hashtext(pad)), 0) FROM big",
        "SELECT count(*), coalesce(sum(n), 0) FROM trunc",
    ]
    .iter()
    .map(|q| sql(c, db, q))
    .collect()
}

/// A pgsub running in the background, its stderr in a file (a pipe nobody reads would
/// fill up and block it).
struct Running {
    child: Child,
    log: PathBuf,
    /// Why it may stop by itself (a failpoint, a spool that fills up).
    expected_stop: Option<&'static str>,
}

fn spawn(
    args: &[String],
    logs: &Path,
    env: &[(&str, &str)],
    file_limit_kb: Option<u64>,
    expected_stop: Option<&'static str>,
) -> Running {
    let base = pgsub();
    let mut cmd = match file_limit_kb {
        // A spool directory that fills up: files may not grow past the limit (writes then
        // fail with EFBIG, SIGXFSZ being ignored).
        Some(kb) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!(
                    "ulimit -f {}; trap '' XFSZ; exec \"$0\" \"$@\"",
                    kb * 2
                ))
                .arg(base.get_program())
                .args(args);
            c
        }
        None => {
            let mut c = Command::new(base.get_program());
            c.args(args);
            c
        }
    };
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let log = logs.join(format!(
        "pgsub-{}.log",
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    let err = File::create(&log).unwrap();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(err))
        .spawn()
        .expect("start pgsub");
    Running {
        child,
        log,
        expected_stop,
    }
}

fn log_tail(log: &Path, lines: usize) -> String {
    let s = std::fs::read_to_string(log).unwrap_or_default();
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

#[test]
#[cfg_attr(
    not(feature = "failpoints"),
    ignore = "crashes pgsub at failpoints: needs --features failpoints (the README's test command)"
)]
fn nothing_is_lost_or_applied_twice_under_random_faults_of_every_kind() {
    let faults: u64 = std::env::var("PGSUB_SOAK_FAULTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let seed = seed_from_env("PGSUB_SOAK_SEED");
    eprintln!("soak: {faults} faults");
    let s = Cluster::start(ClusterOptions {
        extra_conf: vec![
            "max_prepared_transactions = 10".into(),
            "logical_decoding_work_mem = '64kB'".into(),
            "wal_sender_timeout = '1s'".into(),
        ],
        ..ClusterOptions::default()
    })
    .unwrap();
    let d = Cluster::start(ClusterOptions::default()).unwrap();
    let db = s.create_database("soak").unwrap();
    sql(&d, "postgres", &format!("CREATE DATABASE {db}"));
    // Statements that wait for a lock give up after half a second (57014: transient), and
    // pgsub's session is the one to find a deadlock (40P01: transient).
    sql(
        &d,
        "postgres",
        &format!("ALTER DATABASE {db} SET statement_timeout = '500ms'"),
    );
    sql(
        &d,
        "postgres",
        &format!("ALTER DATABASE {db} SET deadlock_timeout = '100ms'"),
    );
    sql(&s, &db, SCHEMA);

    let src_proxy = FaultProxy::start(s.port(), Faults::default(), seed);
    let dst_proxy = FaultProxy::start(d.port(), Faults::default(), seed ^ 1);
    let work = std::env::temp_dir().join(format!("pgsub-soak-{db}"));
    std::fs::create_dir_all(&work).unwrap();
    let spool = work.join("spool");
    let log = work.clone();
    let args = sync_args(
        &src_proxy.through(&s.conninfo(&db)),
        &dst_proxy.through(&d.conninfo(&db)),
        "p",
        &db,
        &[
            "--create-slot",
            "--schema",
            "create",
            "--streaming",
            "on",
            "--spool-dir",
            spool.to_str().unwrap(),
            "--slot-wait",
            "30",
        ],
    );

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let load = workload(s.conninfo(&db), stop.clone(), seed ^ 2, done.clone());
    let mut rng = SplitMix(seed ^ 3);
    let mut pgsub_run = spawn(&args, &log, &[], None, None);
    let mut by_kind: std::collections::BTreeMap<&str, u64> = Default::default();
    let started = Instant::now();
    let mut unexpected = Vec::new();

    // Every kind in turn, in an order drawn anew for each round of them.
    const KINDS: u64 = 12;
    let mut order: Vec<u64> = Vec::new();
    for fault in 0..faults {
        if order.is_empty() {
            order = (0..KINDS).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i as u64 + 1) as usize);
            }
        }
        let draw = order.pop().unwrap();
        if (2..=5).contains(&draw) {
            // A connection fault needs connections: wait (a while) for pgsub to stream.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !slot_active(&s, &db, &db) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        std::thread::sleep(Duration::from_millis(200 + rng.below(600)));
        // pgsub stopped by itself since the last fault: only where a fault meant it to.
        if let Ok(Some(status)) = pgsub_run.child.try_wait() {
            if pgsub_run.expected_stop.is_none() {
                unexpected.push(format!(
                    "before fault {fault}: pgsub exited by itself ({status}):\n{}",
                    log_tail(&pgsub_run.log, 15)
                ));
            }
            pgsub_run = spawn(&args, &log, &[], None, None);
        }
        let kind = match draw {
            0 => {
                let _ = pgsub_run.child.kill();
                let _ = pgsub_run.child.wait();
                pgsub_run = spawn(&args, &log, &[], None, None);
                "kill -9 of pgsub"
            }
            1 => {
                let _ = pgsub_run.child.kill();
                let _ = pgsub_run.child.wait();
                let point = [failpoint::MID_TRANSACTION, failpoint::AFTER_DEST_COMMIT]
                    [rng.below(2) as usize];
                pgsub_run = spawn(
                    &args,
                    &log,
                    &[("PGSUB_FAILPOINT", point)],
                    None,
                    Some("failpoint"),
                );
                "pgsub at a failpoint"
            }
            2 => {
                src_proxy.cut_now(rng.below(2) == 0);
                "source connection cut"
            }
            3 => {
                dst_proxy.cut_now(rng.below(2) == 0);
                "destination connection cut"
            }
            4 => {
                // Longer than the source's wal_sender_timeout.
                src_proxy.stall_now(Duration::from_millis(1500));
                std::thread::sleep(Duration::from_millis(1500));
                "source connection stalled"
            }
            5 => {
                dst_proxy.stall_now(Duration::from_secs(1));
                std::thread::sleep(Duration::from_secs(1));
                "destination connection stalled"
            }
            6 => {
                s.restart().unwrap();
                "source restarted (fast)"
            }
            7 => {
                s.kill9_postmaster().unwrap();
                s.start_again().unwrap();
                "source crashed"
            }
            8 => {
                d.kill9_postmaster().unwrap();
                d.start_again().unwrap();
                "destination crashed"
            }
            9 => {
                // A session holds a lock on the table every workload transaction changes,
                // longer than the destination's statement_timeout.
                let _ = d.psql(
                    &db,
                    "SET statement_timeout = 0; BEGIN; LOCK TABLE accounts IN EXCLUSIVE MODE; SELECT pg_sleep(1.5); COMMIT;",
                );
                "a destination lock against statement_timeout"
            }
            10 => {
                // A destination session locks the hot row, then every row, waiting for
                // those pgsub's open group holds; pgsub then waits for the hot one, and
                // (its deadlock_timeout being the shorter) finds the deadlock and gets
                // 40P01 — or, when the two did not cross, a lock timeout.
                let _ = d.psql(
                    &db,
                    "SET statement_timeout = 0; SET deadlock_timeout = '10s'; BEGIN; \
                     SELECT 1 FROM accounts WHERE id = 1 FOR UPDATE; \
                     SELECT 1 FROM accounts FOR UPDATE; SELECT pg_sleep(0.3); COMMIT;",
                );
                "a deadlock with a destination session"
            }
            _ => {
                let _ = pgsub_run.child.kill();
                let _ = pgsub_run.child.wait();
                pgsub_run = spawn(&args, &log, &[], Some(64), Some("spool full"));
                std::thread::sleep(Duration::from_millis(1500));
                "a spool directory that fills up"
            }
        };
        *by_kind.entry(kind).or_default() += 1;
        // A pgsub that met a full spool stops with an error that says so; it is run again
        // without the limit.
        if pgsub_run.expected_stop == Some("spool full") {
            if let Ok(Some(status)) = pgsub_run.child.try_wait() {
                let tail = log_tail(&pgsub_run.log, 5);
                if !tail.contains("spool") {
                    unexpected.push(format!(
                        "a full spool stopped pgsub ({status}) without saying so:\n{tail}"
                    ));
                }
                *by_kind
                    .entry("  of which pgsub stopped for the full spool")
                    .or_default() += 1;
            }
            let _ = pgsub_run.child.kill();
            let _ = pgsub_run.child.wait();
            pgsub_run = spawn(&args, &log, &[], None, None);
        }
    }
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    // A pgsub respawned just now may not have begun: its first log line comes after its
    // signal handlers are installed, so SIGTERM is sent once there is one.
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&pgsub_run.log).map_or(0, |m| m.len()) == 0
        && Instant::now() < deadline
        && matches!(pgsub_run.child.try_wait(), Ok(None))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    terminate(&pgsub_run.child);
    let status = pgsub_run.child.wait().unwrap();
    if pgsub_run.expected_stop.is_none() && !status.success() {
        unexpected.push(format!(
            "the last pgsub did not stop cleanly on SIGTERM ({status}):\n{}",
            log_tail(&pgsub_run.log, 15)
        ));
    }
    // The comparison's queries must not meet the destination's short statement_timeout
    // (after a long soak, `big` is large).
    sql(
        &d,
        "postgres",
        &format!("ALTER DATABASE {db} RESET statement_timeout"),
    );
    // Caught up without the proxies.
    let last = run_args(&sync_args(
        &s.conninfo(&db),
        &d.conninfo(&db),
        "p",
        &db,
        &[
            "--until",
            "caught-up",
            "--streaming",
            "on",
            "--slot-wait",
            "30",
        ],
    ));
    let elapsed = started.elapsed();
    let mut seen: std::collections::BTreeMap<&str, usize> = Default::default();
    for entry in std::fs::read_dir(&work).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for (what, needle) in [
            ("deadlocks retried", "deadlock detected"),
            (
                "statement timeouts retried",
                "canceling statement due to statement timeout",
            ),
            ("spool full", "File too large"),
        ] {
            *seen.entry(what).or_default() += text.matches(needle).count();
        }
    }
    eprintln!(
        "soak: {} workload transactions, {faults} faults in {elapsed:?}: {by_kind:?}; proxy cuts {} source, {} destination; in pgsub's logs: {seen:?}",
        done.load(Ordering::Relaxed),
        src_proxy.cuts(),
        dst_proxy.cuts()
    );
    assert!(unexpected.is_empty(), "{}", unexpected.join("\n\n"));
    let last = last.expect_code(0);
    assert_eq!(
        contents(&d, &db),
        contents(&s, &db),
        "source and destination differ (seed {seed})\n{}",
        last.stderr
    );
    assert!(done.load(Ordering::Relaxed) > faults, "the workload ran");
    // Nothing left behind: no walsender on the slot, no spool directory.
    eventually("the slot is released", Duration::from_secs(20), || {
        !slot_active(&s, &db, &db)
    });
    let spools: Vec<_> = std::fs::read_dir(&spool)
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(spools.is_empty(), "spool directories left: {spools:?}");
    let _ = std::fs::remove_dir_all(&work);
}
