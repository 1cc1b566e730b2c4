//! `pgsub sync` between two real servers: the managed procedure both ways, reruns that
//! resume without duplicates, and the apply semantics of the built-in worker.

mod support;

use std::time::Duration;

use pgsub_testkit::Cluster;
use support::*;

fn sync(s: &Cluster, d: &Cluster, db: &str, publication: &str, extra: &[&str]) -> Run {
    let src = s.conninfo(db);
    let dst = d.conninfo(db);
    let mut args = vec![
        "sync",
        "--source",
        &src,
        "--dest",
        &dst,
        "--publication",
        publication,
        "--slot",
        db,
        "--create-slot",
        "--until",
        "caught-up",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn rows(c: &Cluster, db: &str, query: &str) -> Vec<String> {
    let out = sql(c, db, query);
    out.lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn managed_procedure_one_table_through_pub1() {
    let (s, d, db) = pair("sync_pub1");
    sql(s, &db, MANAGED_SCHEMA);
    sql(s, &db, MANAGED_ROWS);
    sql(d, &db, "CREATE TABLE test_table (id INT)");
    sync(s, d, &db, "pub1", &[]).expect_code(0);
    assert_eq!(
        rows(d, &db, "SELECT id FROM test_table ORDER BY id"),
        ["1", "2"]
    );
    // Changes after the copy are streamed; the same command line resumes.
    sql(
        s,
        &db,
        "INSERT INTO test_table VALUES (7); INSERT INTO test_table_2 VALUES (8)",
    );
    let out = sync(s, d, &db, "pub1", &[]).expect_code(0);
    assert_eq!(
        rows(d, &db, "SELECT id FROM test_table ORDER BY id"),
        ["1", "2", "7"]
    );
    assert!(out.stderr.contains("pgsub sync"), "{}", out.stderr);
    // Progress is recorded, without any connection string.
    let progress = rows(
        d,
        &db,
        "SELECT slot, publications::text FROM pgsub.progress",
    );
    assert_eq!(progress, [format!("{db}|{{pub1}}")]);
    assert_eq!(
        rows(d, &db, "SELECT relation, state FROM pgsub.tables"),
        ["public.test_table|ready"]
    );
}

#[test]
fn managed_procedure_all_tables_through_pub_all_tables_with_schema_create() {
    let (s, d, db) = pair("sync_all");
    sql(s, &db, MANAGED_SCHEMA);
    sql(s, &db, MANAGED_ROWS);
    sync(s, d, &db, "pub_all_tables", &["--schema", "create"]).expect_code(0);
    for (table, want) in [
        ("test_table", ["1", "2"]),
        ("test_table_2", ["3", "4"]),
        ("test_table_3", ["5", "6"]),
    ] {
        assert_eq!(
            rows(d, &db, &format!("SELECT id FROM {table} ORDER BY id")),
            want
        );
    }
    sql(s, &db, "INSERT INTO test_table_3 VALUES (60), (61)");
    sync(s, d, &db, "pub_all_tables", &["--schema", "create"]).expect_code(0);
    assert_eq!(
        rows(d, &db, "SELECT id FROM test_table_3 ORDER BY id"),
        ["5", "6", "60", "61"]
    );
}

#[test]
fn schema_verify_names_the_missing_table_and_exits_2() {
    let (s, d, db) = pair("sync_verify");
    sql(s, &db, MANAGED_SCHEMA);
    let out = sync(s, d, &db, "pub1", &[]).expect_code(2);
    assert!(out.stderr.contains("public.test_table"), "{}", out.stderr);
    assert!(out.stderr.contains("--schema create"), "{}", out.stderr);
    // A type that does not read the source's values is refused, both types named (one
    // that does, such as bigint for integer, is taken as the built-in worker takes it).
    sql(d, &db, "CREATE TABLE test_table (id boolean)");
    let out = sync(s, d, &db, "pub1", &[]).expect_code(2);
    assert!(
        out.stderr.contains("integer on the source but boolean"),
        "{}",
        out.stderr
    );
}

#[test]
fn updates_deletes_key_changes_and_truncates_apply_like_the_built_in_worker() {
    let (s, d, db) = pair("sync_apply");
    sql(
        s,
        &db,
        "CREATE TABLE k (id int PRIMARY KEY, v text, n numeric);
         CREATE TABLE f (a int, b text); ALTER TABLE f REPLICA IDENTITY FULL;
         CREATE TABLE seq (id serial PRIMARY KEY, v text);
         CREATE PUBLICATION p FOR ALL TABLES;
         INSERT INTO k VALUES (1, 'one', 1), (2, 'two', 2), (3, 'three', 3);
         INSERT INTO f VALUES (1, 'dup'), (1, 'dup'), (2, 'x');",
    );
    sync(s, d, &db, "p", &["--schema", "create"]).expect_code(0);
    sql(
        s,
        &db,
        "UPDATE k SET v = 'uno' WHERE id = 1;
         UPDATE k SET id = 20 WHERE id = 2;
         DELETE FROM k WHERE id = 3;
         INSERT INTO k SELECT g, 'g' || g, g FROM generate_series(100, 199) g;
         UPDATE k SET n = n * 2 WHERE id >= 100;
         DELETE FROM k WHERE id >= 150;
         UPDATE f SET b = 'one of two' WHERE ctid = (SELECT min(ctid) FROM f WHERE b = 'dup');
         DELETE FROM f WHERE a = 2;
         INSERT INTO seq (v) VALUES ('a'), ('b');
         TRUNCATE seq RESTART IDENTITY;
         INSERT INTO seq (v) VALUES ('c');",
    );
    sync(s, d, &db, "p", &["--schema", "create"]).expect_code(0);
    for q in [
        "SELECT id, v, n FROM k ORDER BY id",
        "SELECT a, b FROM f ORDER BY a, b",
        "SELECT id, v FROM seq ORDER BY id",
    ] {
        assert_eq!(rows(d, &db, q), rows(s, &db, q), "{q}");
    }
    assert_eq!(
        rows(d, &db, "SELECT count(*) FROM f WHERE b = 'dup'"),
        ["1"],
        "one of two duplicates changed"
    );
}

#[test]
fn ordinary_roles_suffice_and_missing_privileges_are_named() {
    let (s, d, db) = pair("sync_roles");
    sql(s, &db, MANAGED_SCHEMA);
    sql(s, &db, MANAGED_ROWS);
    let (src_role, dst_role) = (format!("{db}_src"), format!("{db}_dst"));
    sql(
        s,
        &db,
        &format!(
            "CREATE ROLE {src_role} LOGIN REPLICATION PASSWORD 'src-pw';
             GRANT SELECT ON test_table TO {src_role};"
        ),
    );
    sql(
        d,
        &db,
        &format!(
            "CREATE ROLE {dst_role} LOGIN PASSWORD 'dst-pw';
             GRANT CREATE ON DATABASE {db} TO {dst_role};
             GRANT CREATE ON SCHEMA public TO {dst_role};
             CREATE TABLE test_table_3 (id INT);"
        ),
    );
    let src = s.conninfo_as(&db, &src_role, "src-pw");
    let dst = d.conninfo_as(&db, &dst_role, "dst-pw");
    let go = || {
        run(&[
            "sync",
            "--source",
            &src,
            "--dest",
            &dst,
            "--publication",
            "pub_all_tables",
            "--slot",
            &db,
            "--create-slot",
            "--schema",
            "create",
            "--until",
            "caught-up",
        ])
    };
    // The source role may not read two of the tables the copy needs.
    let out = go().expect_code(2);
    assert!(
        out.stderr
            .contains("may not read public.test_table_2, public.test_table_3"),
        "{}",
        out.stderr
    );
    sql(
        s,
        &db,
        &format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {src_role}"),
    );
    // The destination role may not write the table a superuser made for it.
    let out = go().expect_code(2);
    assert!(
        out.stderr.contains("may not write public.test_table_3"),
        "{}",
        out.stderr
    );
    sql(
        d,
        &db,
        &format!("GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON test_table_3 TO {dst_role}"),
    );
    // Now it works without any superuser, warning that triggers fire.
    let out = go().expect_code(0);
    assert!(
        out.stderr.contains("session_replication_role"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("src-pw") && !out.stderr.contains("dst-pw"));
    for (t, want) in [
        ("test_table", "1,2"),
        ("test_table_2", "3,4"),
        ("test_table_3", "5,6"),
    ] {
        assert_eq!(
            sql(
                d,
                &db,
                &format!("SELECT string_agg(id::text, ',' ORDER BY id) FROM {t}")
            ),
            want
        );
    }
    let stored = sql(d, &db, "SELECT row_to_json(p)::text FROM pgsub.progress p");
    assert!(
        !stored.contains("pw") && !stored.contains("password"),
        "{stored}"
    );
}

#[test]
fn initial_copy_shows_bars_on_a_terminal_and_log_lines_otherwise() {
    let (s, d, db) = pair("sync_bars");
    sql(
        s,
        &db,
        "CREATE TABLE wide (id int PRIMARY KEY, pad text);
         INSERT INTO wide SELECT g, repeat('p', 200) FROM generate_series(1, 20000) g;
         ANALYZE wide;
         CREATE PUBLICATION pw FOR TABLE wide;",
    );
    let (src, dst) = (s.conninfo(&db), d.conninfo(&db));
    // Under a pseudo-terminal (script(1)): a bar per table, rows against the estimate.
    let cmd = format!(
        "{} sync --source '{src}' --dest '{dst}' --publication pw --slot {db} --create-slot --schema create --until caught-up",
        env!("CARGO_BIN_EXE_pgsub")
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .env("TERM", "xterm")
        .env("PGSUB_LOG", "pgsub=info")
        .output()
        .expect("run script(1)");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("public.wide"), "{shown}");
    assert!(
        shown.contains("20,000/20,000 rows"),
        "a finished bar: {shown}"
    );
    assert!(
        !shown.contains("table copied"),
        "no log line under a bar: {shown}"
    );
    assert_eq!(sql(d, &db, "SELECT count(*) FROM wide"), "20000");
    // Without a terminal: the log line.
    sql(d, &db, "DROP TABLE wide; DROP SCHEMA pgsub CASCADE");
    sql(s, &db, &format!("SELECT pg_drop_replication_slot('{db}')"));
    let extra = [
        "--create-slot",
        "--schema",
        "create",
        "--until",
        "caught-up",
    ];
    let out = run_args(&sync_args(&src, &dst, "pw", &db, &extra)).expect_code(0);
    assert!(out.stderr.contains("table copied"), "{}", out.stderr);
    assert!(out.stderr.contains("rows=20000"), "{}", out.stderr);
}

#[test]
fn preflight_warns_of_generated_columns_and_the_last_free_wal_sender() {
    let s = &pgsub_testkit::Cluster::start(pgsub_testkit::ClusterOptions {
        extra_conf: vec!["max_wal_senders = 1".into()],
        ..Default::default()
    })
    .unwrap();
    let d = dest_cluster();
    let db = s.create_database("sync_preflight").unwrap();
    sql(d, "postgres", &format!("CREATE DATABASE {db}"));
    sql(
        s,
        &db,
        "CREATE TABLE g (id int PRIMARY KEY, n int, twice int GENERATED ALWAYS AS (n * 2) STORED);
         INSERT INTO g (id, n) VALUES (1, 21);
         CREATE PUBLICATION pg FOR TABLE g;",
    );
    sql(
        d,
        &db,
        "CREATE TABLE g (id int PRIMARY KEY, n int, twice int GENERATED ALWAYS AS (n * 2) STORED)",
    );
    let (src, dst) = (s.conninfo(&db), d.conninfo(&db));
    let out = run_args(&sync_args(
        &src,
        &dst,
        "pg",
        &db,
        &["--create-slot", "--until", "caught-up"],
    ))
    .expect_code(0);
    assert!(
        out.stderr
            .contains("generated column(s) twice are not carried by the stream"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("last free WAL sender"),
        "{}",
        out.stderr
    );
    assert_eq!(sql(d, &db, "SELECT id, n, twice FROM g"), "1|21|42");
}

#[test]
fn a_column_added_while_the_slot_is_being_created_is_copied_with_its_values() {
    let (s, d, db) = pair("sync_column_race");
    sql(
        s,
        &db,
        "CREATE TABLE r (id int PRIMARY KEY); INSERT INTO r VALUES (1), (2); CREATE PUBLICATION p FOR TABLE r",
    );
    sql(d, &db, "CREATE TABLE r (id int PRIMARY KEY)");
    // A transaction left running holds up the creation of pgsub's slot…
    let src = s.conninfo(&db);
    let holder = std::thread::spawn({
        let (s, db) = (s, db.clone());
        move || {
            sql(
                s,
                &db,
                "BEGIN; SELECT txid_current(); SELECT pg_sleep(3); COMMIT",
            )
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let args = sync_args(
        &src,
        &d.conninfo(&db),
        "p",
        &db,
        &["--create-slot", "--until", "caught-up"],
    );
    let child = start(pgsub().args(&args));
    std::thread::sleep(std::time::Duration::from_millis(500));
    // …while the table gains a column, and rows with values in it.
    sql(d, &db, "ALTER TABLE r ADD COLUMN v text");
    sql(
        s,
        &db,
        "ALTER TABLE r ADD COLUMN v text; UPDATE r SET v = 'x' || id; INSERT INTO r VALUES (3, 'x3')",
    );
    holder.join().expect("the holding transaction");
    wait(child, RUN_LIMIT).expect_code(0);
    assert_eq!(
        rows(d, &db, "SELECT id, v FROM r ORDER BY id"),
        ["1|x1", "2|x2", "3|x3"]
    );
}

#[test]
fn a_version_1_destination_is_upgraded_in_place_and_a_newer_one_is_refused() {
    let (s, d, db) = pair("sync_state_versions");
    // No key: a rerun that did not resume from the stored progress would show duplicates.
    sql(
        s,
        &db,
        "CREATE TABLE t (id int); CREATE PUBLICATION p FOR TABLE t",
    );
    sql(s, &db, "INSERT INTO t VALUES (1), (2)");
    sql(d, &db, "CREATE TABLE t (id int)");
    sync(s, d, &db, "p", &[]).expect_code(0);
    // Back to what the first pgsub made: progress and tables only, no meta, no conflicts,
    // no prepared marks, no copy snapshot.
    sql(
        d,
        &db,
        "DROP TABLE pgsub.meta; DROP TABLE pgsub.conflicts; DROP TABLE pgsub.prepared; \
         ALTER TABLE pgsub.tables DROP COLUMN snapshot",
    );
    sql(s, &db, "INSERT INTO t VALUES (3)");
    let out = sync(s, d, &db, "p", &[]).expect_code(0);
    assert!(
        out.stderr.contains("upgraded pgsub's schema"),
        "{}",
        out.stderr
    );
    assert_eq!(
        rows(d, &db, "SELECT id FROM t ORDER BY id"),
        ["1", "2", "3"]
    );
    assert_eq!(
        rows(
            d,
            &db,
            "SELECT schema_version, to_regclass('pgsub.conflicts') IS NOT NULL, \
                    to_regclass('pgsub.prepared') IS NOT NULL, \
                    pg_get_constraintdef((SELECT oid FROM pg_constraint WHERE conname = 'tables_state_check')) LIKE '%partial%' \
             FROM pgsub.meta"
        ),
        ["4|t|t|t"]
    );
    // A schema written by a newer pgsub is never misread: exit 2, nothing applied.
    sql(d, &db, "UPDATE pgsub.meta SET schema_version = 5");
    sql(s, &db, "INSERT INTO t VALUES (4)");
    let out = sync(s, d, &db, "p", &[]).expect_code(2);
    assert!(
        out.stderr.contains("version 5, newer than this pgsub"),
        "{}",
        out.stderr
    );
    assert_eq!(
        rows(d, &db, "SELECT id FROM t ORDER BY id"),
        ["1", "2", "3"]
    );
}

#[test]
fn sigterm_while_waiting_for_a_held_slot_stops_at_once_and_cleanly() {
    let (s, d, db) = pair("sync_sigterm_wait");
    sql(
        s,
        &db,
        "CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION p FOR TABLE t",
    );
    sql(d, &db, "CREATE TABLE t (id int PRIMARY KEY)");
    create_slot(s, &db, &db);
    // Another consumer holds the slot: sync waits for it (up to --slot-wait).
    let holder = start(pgsub().args([
        "decode",
        "--source",
        &s.conninfo(&db),
        "--publication",
        "p",
        "--slot",
        &db,
    ]));
    eventually("the slot is held", Duration::from_secs(30), || {
        slot_active(s, &db, &db)
    });
    let waiting = start(pgsub().args(sync_args(
        &s.conninfo(&db),
        &d.conninfo(&db),
        "p",
        &db,
        &["--slot-wait", "120"],
    )));
    std::thread::sleep(Duration::from_secs(2));
    terminate(&waiting);
    // Well before --slot-wait runs out (else `wait` gives up and fails the test).
    let out = wait(waiting, Duration::from_secs(20)).expect_code(0);
    assert!(
        out.stderr
            .contains("stopped by a signal before streaming began"),
        "{}",
        out.stderr
    );
    terminate(&holder);
    wait(holder, Duration::from_secs(20));
}

#[test]
fn failover_slots_are_created_or_made_so_on_17_and_later_and_refused_before() {
    let s = major_cluster(18);
    let d = dest_cluster();
    let db = s.create_database("failover18").unwrap();
    sql(d, "postgres", &format!("CREATE DATABASE {db}"));
    sql(
        s,
        &db,
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1); CREATE PUBLICATION p FOR TABLE t",
    );
    sql(d, &db, "CREATE TABLE t (id int PRIMARY KEY)");
    let failover = |slot: &str| {
        sql(
            s,
            &db,
            &format!("SELECT failover FROM pg_replication_slots WHERE slot_name = '{slot}'"),
        )
    };
    let slot = format!("{db}_a");
    run_args(&sync_args(
        &s.conninfo(&db),
        &d.conninfo(&db),
        "p",
        &slot,
        &["--create-slot", "--failover", "--until", "caught-up"],
    ))
    .expect_code(0);
    assert_eq!(failover(&slot), "t");
    assert_eq!(sql(d, &db, "SELECT count(*) FROM t"), "1");
    // `slot list` and `status` say so.
    let list = run(&[
        "slot",
        "list",
        "--source",
        &s.conninfo(&db),
        "--format",
        "json",
    ])
    .expect_code(0);
    let mine: Vec<_> = list
        .json()
        .into_iter()
        .filter(|v| v["slot_name"] == slot.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "{}", list.stdout);
    assert_eq!(mine[0]["failover"], true, "{}", list.stdout);
    let status = run(&["status", "--source", &s.conninfo(&db)]).expect_code(0);
    let line = status
        .stdout
        .lines()
        .find(|l| l.contains(&slot))
        .unwrap_or_default()
        .to_owned();
    assert!(line.contains(" yes "), "{}", status.stdout);
    // A slot made without it becomes one when sync is run with --failover.
    let other = format!("{db}_b");
    create_slot(s, &db, &other);
    assert_eq!(failover(&other), "f");
    run_args(&sync_args(
        &s.conninfo(&db),
        &d.conninfo(&db),
        "p",
        &other,
        &["--failover", "--no-copy-data", "--until", "caught-up"],
    ))
    .expect_code(0);
    assert_eq!(failover(&other), "t");
    // `slot create --failover` too.
    let third = format!("{db}_c");
    run(&[
        "slot",
        "create",
        "--source",
        &s.conninfo(&db),
        "--slot",
        &third,
        "--failover",
    ])
    .expect_code(0);
    assert_eq!(failover(&third), "t");
    run(&[
        "slot",
        "drop",
        "--source",
        &s.conninfo(&db),
        "--slot",
        &third,
    ])
    .expect_code(0);
    // Before 17 there are no failover slots: said at once, exit 2 (the matrix's shared
    // source may be 17 or later: then a 16 stands in).
    let (s15, d15, db15) = pair("failover15");
    let (s15, db15) = if s15.version_num() < 170000 {
        (s15, db15)
    } else {
        let old = major_cluster(16);
        let db = old.create_database("failover16").unwrap();
        sql(d15, "postgres", &format!("CREATE DATABASE {db}"));
        (old, db)
    };
    sql(
        s15,
        &db15,
        "CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION p FOR TABLE t",
    );
    sql(d15, &db15, "CREATE TABLE t (id int PRIMARY KEY)");
    let refused = run_args(&sync_args(
        &s15.conninfo(&db15),
        &d15.conninfo(&db15),
        "p",
        &db15,
        &["--create-slot", "--failover", "--until", "caught-up"],
    ));
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("--failover needs PostgreSQL 17"),
        "{}",
        refused.stderr
    );
}

#[test]
fn two_syncs_replicate_one_table_both_ways_without_sending_changes_back() {
    // 18 with 16, then 17 with 18: every major with origins is on both ends once.
    replicate_both_ways(major_cluster(18), major_cluster(16), "both_ways");
    replicate_both_ways(major_cluster(17), major_cluster(18), "both_ways_17");
}

/// Two pgsub syncs with `--origin none`, `a` to `b` and `b` to `a`, on one table.
fn replicate_both_ways(a: &'static Cluster, b: &'static Cluster, name: &str) {
    let db = a.create_database(name).unwrap();
    sql(b, "postgres", &format!("CREATE DATABASE {db}"));
    for c in [a, b] {
        sql(
            c,
            &db,
            "CREATE TABLE t (id int PRIMARY KEY, v text); CREATE PUBLICATION p FOR TABLE t",
        );
    }
    let one_way = |from: &Cluster, to: &Cluster, slot: &str, extra: &[&str]| {
        let mut all = vec!["--origin", "none", "--until", "caught-up"];
        all.extend_from_slice(extra);
        run_args(&sync_args(
            &from.conninfo(&db),
            &to.conninfo(&db),
            "p",
            slot,
            &all,
        ))
        .expect_code(0)
    };
    let both = || {
        one_way(a, b, "a_to_b", &[]);
        one_way(b, a, "b_to_a", &[]);
        one_way(a, b, "a_to_b", &[]);
        one_way(b, a, "b_to_a", &[]);
    };
    one_way(a, b, "a_to_b", &["--create-slot"]);
    one_way(b, a, "b_to_a", &["--create-slot"]);
    sql(a, &db, "INSERT INTO t VALUES (1, 'made on a')");
    sql(b, &db, "INSERT INTO t VALUES (2, 'made on b')");
    both();
    let rows = "SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM t";
    assert_eq!(sql(a, &db, rows), "1:made on a,2:made on b");
    assert_eq!(sql(b, &db, rows), sql(a, &db, rows));
    // A change to a row that came from the other side goes back there, once.
    sql(a, &db, "UPDATE t SET v = 'changed on a' WHERE id = 2");
    sql(b, &db, "DELETE FROM t WHERE id = 1");
    both();
    assert_eq!(sql(a, &db, rows), "2:changed on a");
    assert_eq!(sql(b, &db, rows), "2:changed on a");
    // Nothing went round: each slot carried only its own side's changes.
    assert_eq!(
        sql(
            b,
            &db,
            &format!(
                "SELECT count(*) FROM pg_replication_origin WHERE roname = 'pgsub_{db}_a_to_b'"
            )
        ),
        "1",
        "pgsub's writes on b carry its origin"
    );
}

#[test]
fn a_publication_named_with_a_backslash_a_quote_and_unicode_is_copied_and_streamed() {
    // The replication grammar has no E'' strings: the publication list of
    // START_REPLICATION must be a standard string even when a name holds a backslash.
    let (s, d, db) = pair("sync_pub_name");
    let publication = r#"pub\n "ü" it's"#;
    let table = r#""Tab\le ""ü""""#;
    let create = format!("CREATE TABLE {table} (id int PRIMARY KEY, v text)");
    sql(s, &db, &create);
    sql(d, &db, &create);
    sql(
        s,
        &db,
        &format!(
            "INSERT INTO {table} VALUES (1, 'a'); CREATE PUBLICATION \"{}\" FOR TABLE {table}",
            publication.replace('"', "\"\"")
        ),
    );
    sync(s, d, &db, publication, &[]).expect_code(0);
    sql(s, &db, &format!("INSERT INTO {table} VALUES (2, 'b\\c')"));
    sync(s, d, &db, publication, &[]).expect_code(0);
    assert_eq!(
        rows(d, &db, &format!("SELECT id, v FROM {table} ORDER BY id")),
        ["1|a", "2|b\\c"]
    );
    assert_eq!(
        rows(d, &db, "SELECT publications[1] FROM pgsub.progress"),
        [publication]
    );
}

#[test]
fn schema_create_builds_the_sources_indexes_after_the_copy_and_before_any_change() {
    let (s, d, db) = pair("indexes");
    sql(
        s,
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, a int, b text, c int, CONSTRAINT t_c_key UNIQUE (c));
         CREATE INDEX t_a_idx ON t (a);
         CREATE INDEX t_lower_b ON t (lower(b)) WHERE a > 10;
         INSERT INTO t SELECT g, g % 50, 'x' || g, g FROM generate_series(1, 1000) g;
         CREATE TABLE u (id int PRIMARY KEY, v int);
         CREATE INDEX u_v_idx ON u (v);
         CREATE INDEX u_v_desc ON u (v DESC);
         CREATE PUBLICATION p FOR TABLE t, u;",
    );
    // A table the operator made, with one of the source's indexes and not the other.
    sql(
        d,
        &db,
        "CREATE TABLE u (id int PRIMARY KEY, v int); CREATE INDEX u_v_idx ON u (v)",
    );
    let out = sync(s, d, &db, "p", &["--schema", "create"]).expect_code(0);
    let indexes = |c: &Cluster| {
        rows(
            c,
            &db,
            "SELECT tablename || ' ' || indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
        )
    };
    assert_eq!(indexes(d), indexes(s), "{}", out.stderr);
    assert_eq!(
        sql(
            d,
            &db,
            "SELECT conname || ' ' || contype::text FROM pg_constraint WHERE conrelid = 't'::regclass AND contype = 'u'"
        ),
        "t_c_key u",
        "the unique constraint is a constraint"
    );
    // Built after the copy, before streaming began.
    let at = |what: &str| {
        out.stderr
            .find(what)
            .unwrap_or_else(|| panic!("no `{what}` in {}", out.stderr))
    };
    assert!(at("initial copy finished") < at("index built"));
    assert!(at("index built") < at("streaming slot="));
    assert_eq!(
        out.stderr.matches("index built").count(),
        4,
        "{}",
        out.stderr
    );
    // The copy is complete and the constraint holds for what streams.
    assert_eq!(sql(d, &db, "SELECT count(*) FROM t"), "1000");
    sql(s, &db, "INSERT INTO t VALUES (1001, 1, 'y', 1001)");
    let again = sync(s, d, &db, "p", &["--schema", "create"]).expect_code(0);
    assert!(!again.stderr.contains("index built"), "{}", again.stderr);
    assert_eq!(sql(d, &db, "SELECT count(*) FROM t"), "1001");
}
