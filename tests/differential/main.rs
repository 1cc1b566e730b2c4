//! The differential test: one seeded random schema and workload on a source, replicated
//! by the built-in subscription (the oracle) and by `pgsub sync` at the same time, then
//! both replicas compared with the source and with each other, relation by relation, as
//! multisets of rows.
//!
//! ```text
//!  seed ─► schema (types of every family, keys of every kind, partitions, inheritance,
//!          generated columns, foreign keys, row filters and column lists, publications)
//!       ─► initial rows ─► CREATE SUBSCRIPTION  +  pgsub sync (in the background)
//!       ─► 2–4 concurrent sessions of random transactions (for a quarter of the seeds
//!          that settle first, carried by `pgsub record` and `sync --input`)
//!       ─► a column added ─► more
//!       ─► both caught up ─► source (filtered, projected) = native = pgsub ?
//!                          ─► pgsub verify agrees ?  trigger order the same ?
//! ```
//!
//! Every seed prints a line; `PGSUB_DIFF_SEED=N` runs that seed alone,
//! `PGSUB_DIFF_SEEDS=N` runs seeds 1..=N (default 20), `PGSUB_DIFF_JOBS` seeds at once
//! (default 2), and `PGSUB_DIFF_VERBOSE=1` shows each refused source transaction. A
//! failure names the seed and the first differing rows.
//!
//! Where the built-in subscription itself fails, the seed is recorded as such and pgsub
//! must do at least as well: equal to the source, or stopped with an error — never
//! silently different.

#[path = "../support/mod.rs"]
mod support;

mod compare;
mod rng;
mod schema;
mod types;
mod workload;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rng::Rng;
use schema::{Col, Role, Schema};
use support::oracle::{self, Native, Twin};
use support::{Run, run_args};
use types::Ty;
use workload::{Done, Session};

/// What one seed found.
#[derive(Debug)]
struct Outcome {
    seed: u64,
    tables: usize,
    done: Done,
    native: Result<(), String>,
    pgsub: Result<(), String>,
    /// pgsub differs from the source, and did not say so.
    silent: Option<String>,
    /// The first workload went by `record` and `sync --input`.
    replayed: bool,
    /// Two-phase transactions, prepared on both destinations.
    two_phase: bool,
    /// pgsub streamed values in binary (and, the second, went on in text after meeting
    /// a column that cannot).
    binary: (bool, bool),
    /// pgsub's destination was far away ([`far_seed`]).
    far: bool,
    seconds: f64,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Runs every session's transactions at once.
async fn workload(
    conninfo: &str,
    schema: &Schema,
    rng: &mut Rng,
    phase: i64,
    two_phase: bool,
) -> Done {
    let sessions = rng.range(2, 4);
    let mut tasks = Vec::new();
    for s in 0..sessions {
        let mut session =
            Session::new(schema, phase * 10 + s + 1, rng.fork()).with_two_phase(two_phase);
        let txns: Vec<String> = (0..rng.range(10, 25))
            .map(|_| session.transaction())
            .collect();
        let conninfo = conninfo.to_owned();
        tasks.push(tokio::spawn(async move {
            let client = compare::connect(&conninfo).await;
            let mut done = Done::default();
            for t in &txns {
                for part in t.split(workload::THEN) {
                    workload::run(&client, part, &mut done).await;
                }
            }
            done
        }));
    }
    let mut done = Done::default();
    for t in tasks {
        done += t.await.expect("a session");
    }
    done
}

/// Whether seed `seed` runs two-phase transactions (`--two-phase`, `two_phase = true`):
/// decided by its number, so that no seed draws differently than before, and never one of
/// the store-and-forward seeds (a replay does not take two-phase recordings).
fn two_phase_seed(seed: u64, version: u32) -> bool {
    version >= 150000 && seed % 4 == 2
}

/// Whether seed `seed` draws a schema whose columns all stream in binary (pgsub's default
/// `--binary auto` then streams binary, the built-in subscription text): by its number,
/// as for two-phase, and never a store-and-forward or two-phase seed.
fn binary_seed(seed: u64, version: u32) -> bool {
    version >= 140000 && seed % 4 == 1
}

/// Whether seed `seed` has pgsub reach its destination through a proxy adding round-trip
/// time, so that it applies as for a far destination (inserts as pipelined statements,
/// not COPY; savepoints spaced): by its number, as for two-phase.
fn far_seed(seed: u64) -> bool {
    seed.is_multiple_of(3)
}

/// The options of pgsub and of the native subscription for this seed.
fn options(rng: &mut Rng, version: u32, two_phase: bool) -> (Vec<String>, String) {
    let streaming = if version >= 160000 {
        *rng.pick(&["off", "on", "parallel"])
    } else {
        *rng.pick(&["off", "on"])
    };
    let jobs = rng.range(1, 4).to_string();
    let native_streaming = if version >= 160000 {
        *rng.pick(&["off", "on", "parallel"])
    } else {
        *rng.pick(&["off", "on"])
    };
    let mut pgsub = vec![
        "--streaming".into(),
        streaming.into(),
        "--copy-jobs".into(),
        jobs,
    ];
    let mut native = format!("streaming = {native_streaming}");
    if two_phase {
        pgsub.push("--two-phase".into());
        native.push_str(", two_phase = true");
    }
    (pgsub, native)
}

/// Waits (up to a minute) until both replicas have confirmed everything the source wrote
/// so far, and neither holds a prepared transaction. Both are needed: a replica may not
/// yet have received a PREPARE whose COMMIT PREPARED the source already ran, and then a
/// look at `pg_prepared_xacts` alone finds nothing, the PREPARE is applied right after,
/// and an ALTER TABLE queued behind it waits for ever (the replica's next change of the
/// table queues behind the ALTER, and its COMMIT PREPARED behind that change).
fn no_prepared_transactions(twin: &Twin) {
    let target = support::current_wal(twin.src, &twin.db);
    let confirmed = format!(
        "SELECT count(*) FROM pg_catalog.pg_replication_slots \
         WHERE slot_name IN ('{}', '{}') AND confirmed_flush_lsn >= '{target}'",
        twin.native_db, twin.pgsub_db
    );
    let held = |db: &str| support::prepared_count(twin.dst, db) > 0;
    let t0 = Instant::now();
    while (twin.source(&confirmed) != "2" || held(&twin.native_db) || held(&twin.pgsub_db))
        && t0.elapsed().as_secs() < 60
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Adds a column to one table, on the destinations first (as an operator would).
fn add_column(twin: &Twin, schema: &mut Schema, rng: &mut Rng) {
    let i = rng.below(schema.tables.len() as u64) as usize;
    if schema.via_root && schema.tables[i].partitioned.is_some() {
        // Not a partitioned table published through its root: after such an ALTER, a
        // walsender that starts again from pgsub's slot fails with "could not convert
        // row type" (PostgreSQL 15.18; seed 30 showed it, the native subscription's
        // walsender did not). Left open in docs/differential.md.
        return;
    }
    let ty = rng
        .pick(&[
            Ty::Text,
            Ty::Int8,
            Ty::Numeric,
            Ty::Timestamptz,
            Ty::Jsonb,
            Ty::Bool,
        ])
        .clone();
    let t = &mut schema.tables[i];
    let sql = format!(
        "ALTER TABLE {} ADD COLUMN added {}",
        t.qualified(&schema.namespace),
        ty.sql()
    );
    // The replicas' apply transactions hold locks on the table: a deadlock is retried,
    // as an operator would. A lock held for a minute (a prepared transaction nobody is
    // to finish) fails the seed instead of hanging it.
    let guarded = format!("SET lock_timeout = '60s'; {sql}");
    for db in [&twin.native_db, &twin.pgsub_db] {
        let mut tries = 0;
        while let Err(e) = twin.dst.psql(db, &guarded) {
            tries += 1;
            assert!(tries < 20 && e.to_string().contains("deadlock"), "{e}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    twin.source(&sql);
    t.cols.push(Col {
        name: "added".into(),
        ty,
        role: Role::Payload,
    });
    if !t.unpublished.is_empty() {
        // A column list does not grow with the table.
        t.unpublished.push("added".into());
    }
}

/// Waits until both initial copies are done (tables ready on both sides); otherwise
/// says what each side's state was.
fn copies_done(twin: &Twin) -> Result<(), String> {
    let limit = Instant::now() + Duration::from_secs(60);
    let (mut native, mut pgsub) = (String::new(), String::new());
    while Instant::now() < limit {
        native = twin.native("SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'");
        pgsub = twin
            .dst
            .psql(
                &twin.pgsub_db,
                "SELECT count(*) FILTER (WHERE state <> 'ready') || '/' || count(*) FROM pgsub.tables",
            )
            .unwrap_or_default();
        if native == "0" && pgsub.starts_with("0/") && !pgsub.ends_with("/0") {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "native: {native} tables not ready ({}); pgsub: {pgsub} tables not ready",
        twin.native_errors()
    ))
}

/// Compares every relation: returns (native's differences, pgsub's differences), each
/// a message naming the relations and rows, empty when equal.
async fn compare_all(twin: &Twin, schema: &Schema) -> (String, String) {
    let src = compare::connect(&twin.source_conninfo()).await;
    let native = compare::connect(&twin.dst.conninfo(&twin.native_db)).await;
    let pgsub = compare::connect(&twin.dst.conninfo(&twin.pgsub_db)).await;
    let (mut n_diff, mut p_diff) = (String::new(), String::new());
    for (i, t) in schema.tables.iter().enumerate() {
        let filter = schema.effective_filter(i);
        let mut cols: Vec<String> = t.published().iter().map(|c| c.ident()).collect();
        for (name, only, filter) in t.relations(schema.via_root, filter) {
            if name.ends_with("_c") && t.child {
                cols.push("extra".into());
            }
            let rel = format!("\"{}\".\"{name}\"", schema.namespace);
            let want = compare::rows(&src, &rel, only, &cols, filter.as_deref())
                .await
                .expect("source rows");
            for (client, out) in [(&native, &mut n_diff), (&pgsub, &mut p_diff)] {
                match compare::rows(client, &rel, only, &cols, None).await {
                    Ok(have) => {
                        let d = compare::diff(&want, &have);
                        if !d.is_empty() {
                            out.push_str(&format!(
                                "\n  {rel} ({} rows on the source):{}",
                                want.len(),
                                d.show(3)
                            ));
                        }
                    }
                    Err(e) => out.push_str(&format!("\n  {rel}: {e}")),
                }
            }
            if name.ends_with("_c") && t.child {
                cols.pop();
            }
        }
    }
    (n_diff, p_diff)
}

/// The trigger log of a replica, as one line.
fn audit(twin: &Twin, native: bool) -> String {
    let q = "SELECT coalesce(string_agg(tbl || ':' || op || ':' || n || '@' || seen, ' ' ORDER BY seq), '') FROM public.diff_audit";
    if native {
        twin.native(q)
    } else {
        twin.pgsub(q)
    }
}

fn run_seed(seed: u64) -> Outcome {
    let started = Instant::now();
    let (src, _) = oracle::clusters();
    let mut rng = Rng::new(seed);
    let mut schema = Schema::random(
        &mut rng,
        src.version_num(),
        binary_seed(seed, src.version_num()),
    );
    let mut twin = Twin::new(&format!("diff{seed}"));
    if far_seed(seed) {
        twin.far_destination();
    }
    twin.source(&format!(
        "ALTER DATABASE {} SET logical_decoding_work_mem = '64kB'",
        twin.db
    ));
    if std::env::var_os("PGSUB_DIFF_VERBOSE").is_some() {
        eprintln!(
            "seed {seed} source:\n{}\n{}",
            schema.source_ddl(),
            schema.publications_ddl()
        );
        eprintln!("seed {seed} destinations:\n{}", schema.dest_ddl());
    }
    twin.source(&schema.source_ddl());
    twin.dests(&schema.dest_ddl());
    let rt = runtime();
    let conninfo = twin.source_conninfo();
    let mut done = Done::default();
    rt.block_on(async {
        let client = compare::connect(&conninfo).await;
        let mut loader = Session::new(&schema, 0, rng.fork());
        for sql in loader.initial(300) {
            workload::run(&client, &format!("BEGIN; {sql} COMMIT;"), &mut done).await;
        }
    });
    twin.source(&schema.publications_ddl());
    let two_phase = two_phase_seed(seed, src.version_num());
    let (pgsub_opts, native_with) = options(&mut rng, src.version_num(), two_phase);
    if std::env::var_os("PGSUB_DIFF_VERBOSE").is_some() {
        eprintln!("seed {seed}: pgsub {pgsub_opts:?}, native WITH ({native_with})");
    }
    let opts: Vec<&str> = pgsub_opts.iter().map(String::as_str).collect();
    twin.set_publications(&schema.publication_names(), &opts);
    twin.subscribe_native(&native_with);
    let background = twin.start_pgsub(&["--create-slot"]);
    // Half the seeds let both copies finish first and then compare the order in which
    // destination triggers saw the changes; the others overlap copy and changes.
    let settled = rng.percent(50);
    // A quarter of those carry the first workload by store and forward (decided by the
    // seed's number, so that no seed draws differently than before).
    let replayed = settled && seed.is_multiple_of(4);
    if settled {
        if let Err(e) = copies_done(&twin) {
            let run = oracle::stop(background);
            panic!(
                "seed {seed}: the initial copies did not finish: {e}\npgsub:\n{}",
                tail(&run.stderr)
            );
        }
        twin.dests("DELETE FROM public.diff_audit");
    }
    done += rt.block_on(workload(&conninfo, &schema, &mut rng, 1, two_phase));
    let mut background = background;
    // Runs of pgsub before the last two, whose failures count as well.
    let mut earlier: Vec<Run> = Vec::new();
    if replayed {
        // pgsub stops; what its slot holds is recorded and replayed with `sync --input`
        // (the same streaming mode), then the live sync goes on from there.
        earlier.push(oracle::stop(background));
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("differential");
        let _ = std::fs::create_dir_all(&dir);
        let rec = dir.join(format!("seed-{seed}.pgrec"));
        let streaming = pgsub_opts
            .iter()
            .position(|o| o == "--streaming")
            .map_or("off", |i| pgsub_opts[i + 1].as_str());
        support::record(
            &twin.source_conninfo(),
            &twin.publications(),
            &twin.pgsub_db,
            &rec,
            &["--streaming", streaming],
        );
        earlier.push(run_args(&[
            "sync".into(),
            "--input".into(),
            rec.display().to_string(),
            "--dest".into(),
            twin.dest_conninfo(),
        ]));
        background = twin.start_pgsub(&["--create-slot"]);
    }
    if rng.percent(30) {
        // kill -9 halfway, and start again: nothing lost, nothing applied twice.
        let _ = background.kill();
        let _ = background.wait();
        twin.restart_native();
        background = twin.start_pgsub(&["--create-slot"]);
    }
    if rng.percent(40) {
        if two_phase {
            // An ALTER TABLE queued behind a replica's prepared transaction would also
            // queue that replica's worker, the one that is to finish it: wait for the
            // replicas to finish what the source finished first.
            no_prepared_transactions(&twin);
        }
        add_column(&twin, &mut schema, &mut rng);
    }
    done += rt.block_on(workload(&conninfo, &schema, &mut rng, 2, two_phase));
    // Both stop and start again from what they confirmed, before catching up.
    let stopped = oracle::stop(background);
    twin.restart_native();
    // The stop may have come while the background run was still creating its slot (a
    // stop before streaming ends at once): the last run creates it then.
    let (native, last) = twin.catch_up_with(&["--create-slot"]);
    let (n_diff, p_diff) = rt.block_on(compare_all(&twin, &schema));
    let native = match native {
        Native::Failed(e) => Err(e),
        Native::CaughtUp if !n_diff.is_empty() => Err(format!("differs from the source:{n_diff}")),
        Native::CaughtUp => Ok(()),
    };
    let loud = |r: &Run| r.code != 0;
    let pgsub_failed = loud(&stopped) || loud(&last) || earlier.iter().any(loud);
    let mut pgsub = if pgsub_failed {
        let before: String = earlier
            .iter()
            .filter(|r| loud(r))
            .map(|r| {
                format!(
                    "an earlier run (stopped, or the replay) exited {}:\n{}\n",
                    r.code,
                    tail(&r.stderr)
                )
            })
            .collect();
        Err(format!(
            "{before}pgsub exited {} then {}:\n{}\n{}",
            stopped.code,
            last.code,
            tail(&stopped.stderr),
            tail(&last.stderr)
        ))
    } else if !p_diff.is_empty() {
        Err(format!("differs from the source:{p_diff}"))
    } else {
        Ok(())
    };
    let silent = (!pgsub_failed && !p_diff.is_empty()).then(|| p_diff.clone());
    if pgsub_failed || !p_diff.is_empty() {
        // pgsub's whole output, for the one who reruns the seed.
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("differential");
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("seed-{seed}.log"));
        let _ = std::fs::write(
            &path,
            format!(
                "--- differences\n{p_diff}\n--- native\n{n_diff}\n--- earlier runs (replayed: {replayed})\n{}\n--- background run\n{}\n--- last run\n{}\n",
                earlier
                    .iter()
                    .map(|r| r.stderr.as_str())
                    .collect::<Vec<_>>()
                    .join("\n---\n"),
                stopped.stderr,
                last.stderr
            ),
        );
        eprintln!("seed {seed}: pgsub's output in {}", path.display());
    }
    // verify must agree with the comparison above.
    if !pgsub_failed {
        let v = run_args(&[
            "verify".into(),
            "--source".into(),
            twin.source_conninfo(),
            "--dest".into(),
            twin.dest_conninfo(),
            "--publication".into(),
            twin.publications(),
            "--settle".into(),
            "2".into(),
        ]);
        let want = if p_diff.is_empty() { 0 } else { 3 };
        if v.code != want && pgsub.is_ok() {
            pgsub = Err(format!(
                "pgsub verify exited {} but the replicas compare {}:\n{}{}",
                v.code,
                if want == 0 { "equal" } else { "different" },
                tail(&v.stdout),
                tail(&v.stderr)
            ));
        }
    }
    if settled && native.is_ok() && pgsub.is_ok() {
        let (a, b) = (audit(&twin, true), audit(&twin, false));
        if a != b {
            pgsub = Err(format!(
                "destination triggers saw the changes in another order:\n  native: {}\n  pgsub:  {}",
                a.chars().take(400).collect::<String>(),
                b.chars().take(400).collect::<String>()
            ));
        }
    }
    Outcome {
        seed,
        tables: schema.tables.len(),
        done,
        native,
        pgsub,
        silent,
        replayed,
        two_phase,
        far: twin.is_far(),
        binary: {
            let runs = || earlier.iter().chain([&stopped, &last]);
            (
                runs().any(|r| r.stderr.contains("binary 'true'")),
                runs().any(|r| r.stderr.contains("starting again with values in text")),
            )
        },
        seconds: started.elapsed().as_secs_f64(),
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(12)..].join("\n")
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn pgsub_replicates_random_schemas_and_workloads_as_the_built_in_subscription_does() {
    let seeds: Vec<u64> = match env_u64("PGSUB_DIFF_SEED") {
        Some(s) => vec![s],
        None => (1..=env_u64("PGSUB_DIFF_SEEDS").unwrap_or(20)).collect(),
    };
    let jobs = env_u64("PGSUB_DIFF_JOBS").unwrap_or(2).max(1) as usize;
    let queue = Mutex::new(seeds.into_iter());
    let outcomes = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    let Some(seed) = queue.lock().expect("queue").next() else {
                        break;
                    };
                    let o = std::panic::catch_unwind(|| run_seed(seed)).unwrap_or_else(|p| {
                        let msg = p
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                            .unwrap_or_default();
                        Outcome {
                            seed,
                            tables: 0,
                            done: Done::default(),
                            native: Ok(()),
                            pgsub: Err(format!("the harness panicked: {msg}")),
                            silent: None,
                            replayed: false,
                            two_phase: false,
                            binary: (false, false),
                            far: far_seed(seed),
                            seconds: 0.0,
                        }
                    });
                    eprintln!(
                        "seed {:>4}: {} tables, {} transactions ({} refused by the source), {} rows changed; native {}; pgsub {}{}{}{}{}; {:.1} s",
                        o.seed,
                        o.tables,
                        o.done.committed,
                        o.done.refused,
                        o.done.rows,
                        if o.native.is_ok() { "equal" } else { "FAILED" },
                        if o.pgsub.is_ok() { "equal" } else { "FAILED" },
                        if o.replayed { " (part by sync --input)" } else { "" },
                        if o.two_phase { " (two-phase)" } else { "" },
                        match o.binary {
                            (true, false) => " (binary)",
                            (true, true) => " (binary, then text)",
                            _ => "",
                        },
                        if o.far { " (far destination)" } else { "" },
                        o.seconds
                    );
                    outcomes.lock().expect("outcomes").push(o);
                }
            });
        }
    });
    let outcomes = outcomes.into_inner().expect("outcomes");
    let mut failures = Vec::new();
    for o in &outcomes {
        if let Err(e) = &o.native {
            eprintln!("seed {}: the built-in subscription failed: {e}", o.seed);
        }
        let bad = match (&o.native, &o.pgsub) {
            (Ok(()), Err(e)) => Some(e.clone()),
            (Err(_), Err(_)) if o.silent.is_some() => o.silent.clone(),
            _ => None,
        };
        if let Some(e) = bad {
            failures.push(format!(
                "seed {} (rerun with PGSUB_DIFF_SEED={}): {e}",
                o.seed, o.seed
            ));
        }
    }
    let changes: u64 = outcomes.iter().map(|o| o.done.rows).sum();
    eprintln!(
        "{} seeds, {} rows changed, {} where the built-in subscription failed, {} where pgsub did worse",
        outcomes.len(),
        changes,
        outcomes.iter().filter(|o| o.native.is_err()).count(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
