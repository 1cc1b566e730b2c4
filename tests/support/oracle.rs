//! The built-in subscription as the oracle: one source database replicated twice, by a
//! native subscription into one destination database and by `pgsub sync` into another,
//! so that a test can run the same workload through both and compare what each made of
//! it.
//!
//! ```text
//!  source cluster            destination cluster
//!  <db> ──── CREATE SUBSCRIPTION ───► <db>_n   (the oracle)
//!       ──── pgsub sync ────────────► <db>_p   (under test)
//! ```
//!
//! The clusters are this process's own (see [`clusters`]): more replication slots, apply
//! workers and sync workers than the defaults, so that several pairs can run at once, and
//! a short `wal_retrieve_retry_interval`, so that a native worker that failed retries
//! quickly.

use std::process::Child;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pgsub::Lsn;
use pgsub_testkit::{Cluster, ClusterOptions};

use super::{Run, current_wal, pgsub, run_args, sql, start, sync_args, wait};

/// The source and destination clusters of the oracle tests of this process.
pub fn clusters() -> (&'static Cluster, &'static Cluster) {
    static SRC: OnceLock<Cluster> = OnceLock::new();
    static DST: OnceLock<Cluster> = OnceLock::new();
    // The destination runs `$PGSUB_DEST_PGBIN`'s binaries where set (the matrix).
    let start = |base: ClusterOptions, extra: &[&str]| {
        Cluster::start(ClusterOptions {
            extra_conf: extra.iter().map(|s| (*s).to_owned()).collect(),
            ..base
        })
        .expect("a cluster for the oracle tests")
    };
    let s = SRC.get_or_init(|| {
        start(
            ClusterOptions::default(),
            &[
                "max_replication_slots = 80",
                "max_wal_senders = 80",
                "max_connections = 200",
            ],
        )
    });
    let d = DST.get_or_init(|| {
        start(
            super::dest_options(),
            &[
                "max_logical_replication_workers = 24",
                "max_worker_processes = 40",
                "max_sync_workers_per_subscription = 4",
                "wal_retrieve_retry_interval = '200ms'",
                "max_connections = 200",
                "max_replication_slots = 40",
            ],
        )
    });
    (s, d)
}

/// How the native subscription ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Native {
    /// Caught up with the source.
    CaughtUp,
    /// Its workers kept failing (the errors from the destination's log), or it did not
    /// catch up in time.
    Failed(String),
}

/// One source database and its two replicas.
pub struct Twin {
    /// Source cluster.
    pub src: &'static Cluster,
    /// Destination cluster (both replicas).
    pub dst: &'static Cluster,
    /// Source database.
    pub db: String,
    /// Native subscription's database (and the subscription's and its slot's name).
    pub native_db: String,
    /// pgsub's database (and pgsub's slot name).
    pub pgsub_db: String,
    publications: Vec<String>,
    pgsub_extra: Vec<String>,
    subscribed: bool,
    /// pgsub's destination connection goes through this, when it is to be far away.
    far: Option<super::fault_proxy::FaultProxy>,
    /// How long a native subscription may take to catch up.
    pub native_limit: Duration,
}

impl Twin {
    /// A fresh source database and two empty destination databases.
    pub fn new(prefix: &str) -> Twin {
        let (src, dst) = clusters();
        let db = src.create_database(prefix).expect("a source database");
        let native_db = format!("{db}_n");
        let pgsub_db = format!("{db}_p");
        sql(dst, "postgres", &format!("CREATE DATABASE {native_db}"));
        sql(dst, "postgres", &format!("CREATE DATABASE {pgsub_db}"));
        Twin {
            src,
            dst,
            db,
            native_db,
            pgsub_db,
            publications: Vec::new(),
            pgsub_extra: Vec::new(),
            subscribed: false,
            far: None,
            native_limit: Duration::from_secs(60),
        }
    }

    /// Runs SQL on the source.
    pub fn source(&self, q: &str) -> String {
        sql(self.src, &self.db, q)
    }

    /// Runs SQL on both destinations (the same definitions on both).
    pub fn dests(&self, q: &str) {
        sql(self.dst, &self.native_db, q);
        sql(self.dst, &self.pgsub_db, q);
    }

    /// Runs SQL on the source and on both destinations.
    pub fn everywhere(&self, q: &str) {
        self.source(q);
        self.dests(q);
    }

    /// Runs SQL on the native subscription's database.
    pub fn native(&self, q: &str) -> String {
        sql(self.dst, &self.native_db, q)
    }

    /// Runs SQL on pgsub's database.
    pub fn pgsub(&self, q: &str) -> String {
        sql(self.dst, &self.pgsub_db, q)
    }

    /// `--source` for pgsub.
    pub fn source_conninfo(&self) -> String {
        self.src.conninfo(&self.db)
    }

    /// `--dest` for pgsub.
    pub fn dest_conninfo(&self) -> String {
        let direct = self.dst.conninfo(&self.pgsub_db);
        match &self.far {
            Some(proxy) => proxy.through(&direct),
            None => direct,
        }
    }

    /// From now on pgsub reaches its destination through a proxy adding round-trip time
    /// ([`super::fault_proxy::FaultProxy::far`]): it applies as for a far destination.
    pub fn far_destination(&mut self) {
        self.far = Some(super::fault_proxy::FaultProxy::far(self.dst.port()));
    }

    /// Whether pgsub's destination is far away.
    pub fn is_far(&self) -> bool {
        self.far.is_some()
    }

    /// pgsub's `sync` command line, with `extra` after the options given at
    /// [`Twin::subscribe`].
    pub fn sync_args(&self, extra: &[&str]) -> Vec<String> {
        let mut all: Vec<&str> = self.pgsub_extra.iter().map(String::as_str).collect();
        all.extend_from_slice(extra);
        sync_args(
            &self.source_conninfo(),
            &self.dest_conninfo(),
            &self.publications.join(","),
            &self.pgsub_db,
            &all,
        )
    }

    /// Subscribes both replicas to `publications`: `CREATE SUBSCRIPTION … WITH
    /// (native_with)` (its initial copy runs in the background) and `pgsub sync
    /// --create-slot --until caught-up pgsub_extra…` (the copy, then streaming up to the
    /// source's position). Returns pgsub's run.
    pub fn subscribe(
        &mut self,
        publications: &[&str],
        native_with: &str,
        pgsub_extra: &[&str],
    ) -> Run {
        self.set_publications(publications, pgsub_extra);
        self.subscribe_native(native_with);
        run_args(&self.sync_args(&["--create-slot", "--until", "caught-up"]))
    }

    /// Subscribes pgsub's replica only (no native subscription: for what the built-in
    /// subscription refuses or gets wrong): `pgsub sync --create-slot --until caught-up`.
    pub fn subscribe_pgsub_only(&mut self, publications: &[&str], pgsub_extra: &[&str]) -> Run {
        self.set_publications(publications, pgsub_extra);
        run_args(&self.sync_args(&["--create-slot", "--until", "caught-up"]))
    }

    /// The publications both replicas subscribe to, and pgsub's options on every run.
    pub fn set_publications(&mut self, publications: &[&str], pgsub_extra: &[&str]) {
        self.publications = publications.iter().map(|p| (*p).to_owned()).collect();
        self.pgsub_extra = pgsub_extra.iter().map(|a| (*a).to_owned()).collect();
    }

    /// The publications, comma-separated.
    pub fn publications(&self) -> String {
        self.publications.join(",")
    }

    /// Creates the native subscription (its copy runs in the background) to the
    /// publications of [`Twin::set_publications`].
    pub fn subscribe_native(&mut self, native_with: &str) {
        let with = if native_with.is_empty() {
            String::new()
        } else {
            format!(" WITH ({native_with})")
        };
        sql(
            self.dst,
            &self.native_db,
            &format!(
                "CREATE SUBSCRIPTION {} CONNECTION '{}' PUBLICATION {}{with}",
                self.native_db,
                self.src.conninfo(&self.db),
                self.publications.join(", ")
            ),
        );
        self.subscribed = true;
    }

    /// Runs `pgsub sync EXTRA…` (pgsub's replica only) to completion.
    pub fn pgsub_sync(&self, extra: &[&str]) -> Run {
        run_args(&self.sync_args(extra))
    }

    /// Stops and starts the native subscription's workers again (what a pgsub that is
    /// stopped and started again goes through: a new walsender from the confirmed
    /// position).
    pub fn restart_native(&self) {
        if !self.subscribed {
            return;
        }
        let sub = &self.native_db;
        sql(
            self.dst,
            &self.native_db,
            &format!("ALTER SUBSCRIPTION {sub} DISABLE"),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while sql(
            self.dst,
            &self.native_db,
            &format!(
                "SELECT count(*) FROM pg_stat_subscription WHERE subname = '{sub}' AND pid IS NOT NULL"
            ),
        ) != "0"
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        sql(
            self.dst,
            &self.native_db,
            &format!("ALTER SUBSCRIPTION {sub} ENABLE"),
        );
    }

    /// Starts `pgsub sync` (no `--until`) in the background.
    pub fn start_pgsub(&self, extra: &[&str]) -> Child {
        start(pgsub().args(self.sync_args(extra)))
    }

    /// Waits for the native subscription to catch up with the source's current
    /// position (or to fail), and runs `pgsub sync --until caught-up`.
    pub fn catch_up(&self) -> (Native, Run) {
        self.catch_up_with(&[])
    }

    /// [`Twin::catch_up`] with more options for pgsub's run.
    pub fn catch_up_with(&self, extra: &[&str]) -> (Native, Run) {
        let target = current_wal(self.src, &self.db);
        let mut args = vec!["--until", "caught-up"];
        args.extend_from_slice(extra);
        let pgsub = run_args(&self.sync_args(&args));
        (self.wait_native(target), pgsub)
    }

    /// [`Twin::catch_up`], asserting that both replicas caught up.
    pub fn sync_both(&self) -> Run {
        let (native, run) = self.catch_up();
        assert_eq!(native, Native::CaughtUp, "the native subscription failed");
        run.expect_code(0)
    }

    /// The native subscription's worker errors so far (apply and table sync).
    fn native_error_count(&self) -> i64 {
        if self.dst.version_num() < 150000 {
            return 0; // no pg_stat_subscription_stats before 15: the wait's limit tells
        }
        sql(
            self.dst,
            &self.native_db,
            &format!(
                "SELECT coalesce(sum(apply_error_count + sync_error_count), 0) FROM pg_stat_subscription_stats WHERE subname = '{}'",
                self.native_db
            ),
        )
        .parse()
        .unwrap_or(0)
    }

    /// Waits until the native subscription has caught up with `target`, or has failed:
    /// its workers keep failing (errors counted since the wait began), or it did not catch
    /// up in time. Caught up means so twice, 300 ms apart (longer than the workers' retry
    /// interval), with no new error.
    pub fn wait_native(&self, target: Lsn) -> Native {
        if !self.subscribed {
            return Native::Failed("no native subscription".into());
        }
        let started = Instant::now();
        let errors_before = self.native_error_count();
        let mut failing_since: Option<Instant> = None;
        loop {
            if native_caught_up(self.dst, &self.native_db, target) {
                std::thread::sleep(Duration::from_millis(300));
                if native_caught_up(self.dst, &self.native_db, target)
                    && self.native_error_count() == errors_before
                {
                    return Native::CaughtUp;
                }
            }
            let errors = self.native_error_count() - errors_before;
            if errors > 0 && failing_since.is_none() {
                failing_since = Some(Instant::now());
            }
            let failed_for = failing_since.map_or(Duration::ZERO, |t| t.elapsed());
            if failed_for > Duration::from_secs(3) || started.elapsed() > self.native_limit {
                return Native::Failed(format!(
                    "{errors} worker errors, not caught up with {target} after {:?}; destination log:\n{}",
                    started.elapsed(),
                    self.native_errors()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The destination log's ERROR lines of the native subscription's workers.
    pub fn native_errors(&self) -> String {
        let oid = sql(
            self.dst,
            &self.native_db,
            &format!(
                "SELECT oid FROM pg_subscription WHERE subname = '{}'",
                self.native_db
            ),
        );
        let log = std::fs::read_to_string(self.dst.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            if l.contains("ERROR:")
                && lines[i.saturating_sub(2)..lines.len().min(i + 4)]
                    .iter()
                    .any(|c| c.contains(&format!("pg_{oid}")) || c.contains(&self.native_db))
            {
                out.extend(lines[i..lines.len().min(i + 3)].iter().copied());
            }
        }
        out.dedup();
        out.into_iter().take(5).collect::<Vec<_>>().join("\n")
    }

    /// The result of `q` on both replicas: (native, pgsub).
    pub fn both(&self, q: &str) -> (String, String) {
        (self.native(q), self.pgsub(q))
    }

    /// Asserts that `q` gives `want` on both replicas. pgsub's run has ended when this is
    /// asked; the native worker may still be applying what its walsender already reported
    /// as received (`latest_end_lsn`, which [`Twin::wait_native`] waits for, runs ahead of
    /// a PREPARE being applied), so its answer is asked again for a few seconds.
    pub fn expect_both(&self, q: &str, want: &str) {
        let started = Instant::now();
        let mut n = self.native(q);
        while n != want && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
            n = self.native(q);
        }
        assert_eq!(n, want, "native subscription: {q}");
        assert_eq!(self.pgsub(q), want, "pgsub: {q}");
    }

    /// Asserts that `q` gives the same on the source and on both replicas, and returns it.
    pub fn expect_all(&self, q: &str) -> String {
        let want = self.source(q);
        self.expect_both(q, &want);
        want
    }

    /// Asserts that `q` gives the same on both replicas, and returns it.
    pub fn expect_same(&self, q: &str) -> String {
        let (n, p) = self.both(q);
        assert_eq!(p, n, "pgsub differs from the native subscription: {q}");
        p
    }
}

/// Whether the native subscription `name` (in database `db`, named like it) finished its
/// initial copy and has reported a position at or past `target` to the source. The
/// statistics views are the cluster's: the subscription is picked by name.
fn native_caught_up(d: &Cluster, db: &str, target: Lsn) -> bool {
    let row = sql(
        d,
        db,
        &format!(
            "SELECT (SELECT count(*) FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid \
                     WHERE s.subname = '{db}' AND r.srsubstate <> 'r') || '|' || \
                    coalesce((SELECT latest_end_lsn::text FROM pg_stat_subscription \
                              WHERE subname = '{db}' AND relid IS NULL), '0/0')"
        ),
    );
    let (syncing, at) = row.split_once('|').unwrap_or(("1", "0/0"));
    syncing == "0" && at.parse::<Lsn>().is_ok_and(|at| at >= target)
}

impl Drop for Twin {
    fn drop(&mut self) {
        // Drop what holds slots on the source; the databases are the clusters' to remove.
        if self.subscribed {
            let _ = self.dst.psql(
                &self.native_db,
                &format!("DROP SUBSCRIPTION IF EXISTS {}", self.native_db),
            );
        }
        let _ = self.src.psql(
            &self.db,
            &format!(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE slot_name = '{}' AND NOT active",
                self.pgsub_db
            ),
        );
        // pgsub's replication origin holds one of the destination's origin states (as
        // many as max_replication_slots) until it is dropped, whatever the database.
        let _ = self.dst.psql(
            "postgres",
            &format!(
                "SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin \
                 WHERE roname LIKE 'pgsub\\_{}\\_%'",
                self.pgsub_db
            ),
        );
        if !std::thread::panicking() {
            let force = if self.dst.version_num() >= 130000 {
                " WITH (FORCE)"
            } else {
                ""
            };
            for db in [&self.native_db, &self.pgsub_db] {
                let _ = self
                    .dst
                    .psql("postgres", &format!("DROP DATABASE IF EXISTS {db}{force}"));
            }
            let force = if self.src.version_num() >= 130000 {
                " WITH (FORCE)"
            } else {
                ""
            };
            let _ = self.src.psql(
                "postgres",
                &format!("DROP DATABASE IF EXISTS {}{force}", self.db),
            );
        }
    }
}

/// Waits for a background pgsub after asking it to stop.
pub fn stop(child: Child) -> Run {
    super::terminate(&child);
    wait(child, Duration::from_secs(60))
}
