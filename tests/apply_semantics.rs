//! Apply semantics that the built-in subscription gets right, each run through both the
//! native subscription (the oracle) and `pgsub sync` on the same source: rows found by
//! value under REPLICA IDENTITY FULL, changes in source order where order is observable,
//! row filters of several publications, partitions and inheritance on the destination,
//! values too wide for their column, and conflicts that are counted, never hidden.

mod support;

use pgsub_testkit::{Cluster, ClusterOptions};
use support::oracle::{Native, Twin};
use support::*;

/// The summary line of a `pgsub sync` run.
fn summary(run: &Run) -> String {
    run.stderr
        .lines()
        .find(|l| l.starts_with("pgsub sync: applied"))
        .unwrap_or_else(|| panic!("no summary line:\n{}", run.stderr))
        .to_owned()
}

/// The number of statements a run's summary says it sent.
fn statements(run: &Run) -> u64 {
    let s = summary(run);
    let before = s.split(" statements").next().unwrap_or_default();
    before
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no statement count in {s}"))
}

#[test]
fn replica_identity_full_finds_rows_by_value_whatever_their_text() {
    let mut t = Twin::new("full_value");
    // Types whose text on the source differs from `col::text` on the destination, or
    // that compare equal with another text: bool (t / true), char(n) (padding), inet (a
    // host gets /32), timestamptz (the destination session's TimeZone), numeric (1.50 =
    // 1.5), floats (NaN, -0), arrays with NULLs, jsonb.
    t.everywhere(
        "CREATE TABLE f (b boolean, c character(5), i inet, ts timestamptz, n numeric, x float8, a int[], j jsonb, v text)",
    );
    t.dests(&format!(
        "ALTER DATABASE {} SET timezone = 'Pacific/Chatham'; ALTER DATABASE {} SET timezone = 'Pacific/Chatham'",
        t.native_db, t.pgsub_db
    ));
    t.source("ALTER TABLE f REPLICA IDENTITY FULL; CREATE PUBLICATION p FOR TABLE f");
    t.source(
        "INSERT INTO f VALUES \
           (true, 'ab', '10.1.2.3', '2024-01-01 10:00+05', 1.50, 'NaN', '{1,NULL}', '{\"a\": 1}', 'one'), \
           (false, 'x', '2001:db8::1', '1999-12-31 23:59:59.5-08', 0, '-0', '{}', '[1, 2]', 'two'), \
           (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'three')",
    );
    t.subscribe(&["p"], "", &[]).expect_code(0);
    t.source(
        "UPDATE f SET v = v || ' changed'; DELETE FROM f WHERE v = 'two changed'; \
         UPDATE f SET x = 1 WHERE v = 'three changed'",
    );
    let run = t.sync_both();
    assert!(!summary(&run).contains("conflicts"), "{}", run.stderr);
    let q = "SET timezone = 'UTC'; SELECT v, b, c, i, ts, n, x, a, j FROM f ORDER BY v";
    let rows = t.expect_all(q);
    assert_eq!(rows.lines().count(), 2, "{rows}");
}

#[test]
fn replica_identity_full_with_a_type_without_equality_is_named_before_anything_is_copied() {
    let mut t = Twin::new("full_json");
    t.everywhere("CREATE TABLE j (id int, doc json)");
    t.source("ALTER TABLE j REPLICA IDENTITY FULL; CREATE PUBLICATION p FOR TABLE j; INSERT INTO j VALUES (1, '{}')");
    let run = t.subscribe_pgsub_only(&["p"], &[]).expect_code(2);
    assert!(
        run.stderr.contains("\"doc\" (json)") && run.stderr.contains("no equality operator"),
        "{}",
        run.stderr
    );
    assert_eq!(t.pgsub("SELECT count(*) FROM j"), "0");
    // With a key on the destination, rows are found by it, as the built-in worker does.
    t.pgsub("ALTER TABLE j ADD PRIMARY KEY (id)");
    t.subscribe_pgsub_only(&["p"], &[]).expect_code(0);
    t.source("UPDATE j SET doc = '{\"a\": 2}'");
    t.pgsub_sync(&["--until", "caught-up"]).expect_code(0);
    assert_eq!(t.pgsub("SELECT doc FROM j"), "{\"a\": 2}");
}

#[test]
fn a_unique_column_shifted_row_by_row_is_applied_in_source_order() {
    let mut t = Twin::new("unique_shift");
    t.everywhere("CREATE TABLE s (id int PRIMARY KEY, u int UNIQUE, v text)");
    t.source(
        "CREATE PUBLICATION p FOR TABLE s; \
         INSERT INTO s SELECT g, g * 10, 'r' || g FROM generate_series(1, 50) g",
    );
    t.subscribe(&["p"], "", &[]).expect_code(0);
    // Lowest first, each value moves into the one just freed: no collision in this order,
    // one in almost any other.
    t.source(
        "DO $$ DECLARE r record; BEGIN \
           FOR r IN SELECT id FROM s ORDER BY u LOOP UPDATE s SET u = u - 10 WHERE id = r.id; END LOOP; \
         END $$",
    );
    let run = t.sync_both();
    t.expect_all("SELECT id, u FROM s ORDER BY id");
    assert!(
        statements(&run) >= 50,
        "one statement per row: {}",
        summary(&run)
    );
}

#[test]
fn the_set_based_fast_path_is_kept_where_order_cannot_be_observed() {
    // The shape of the apply benchmark: a primary key and nothing else.
    let mut t = Twin::new("fast_path");
    t.everywhere("CREATE TABLE b (id int8 PRIMARY KEY, n int, body text)");
    t.source(
        "CREATE PUBLICATION p FOR TABLE b; \
         INSERT INTO b SELECT g, g, repeat('x', 80) FROM generate_series(1, 2000) g",
    );
    t.subscribe(&["p"], "", &[]).expect_code(0);
    t.source(
        "BEGIN; UPDATE b SET n = n + 1 WHERE id <= 1000; DELETE FROM b WHERE id > 1500; \
         INSERT INTO b SELECT g, g, 'y' FROM generate_series(3001, 4000) g; COMMIT",
    );
    let run = t.sync_both();
    t.expect_all("SELECT count(*), sum(n), max(id) FROM b");
    assert!(
        statements(&run) <= 6,
        "runs of many rows: {}",
        summary(&run)
    );
}

#[test]
fn a_destination_row_trigger_sees_changes_in_source_order() {
    let mut t = Twin::new("trigger_order");
    t.everywhere("CREATE TABLE o (id int PRIMARY KEY, v int)");
    t.dests(
        "CREATE TABLE seen (seq serial, op text, id int, total bigint); \
         CREATE FUNCTION note() RETURNS trigger LANGUAGE plpgsql AS $$ \
           BEGIN INSERT INTO public.seen (op, id, total) VALUES (TG_OP, CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END, \
             (SELECT sum(v) FROM public.o)); RETURN NULL; END $$; \
         CREATE TRIGGER note AFTER INSERT OR UPDATE OR DELETE ON o FOR EACH ROW EXECUTE FUNCTION note(); \
         ALTER TABLE o ENABLE ALWAYS TRIGGER note",
    );
    t.source(
        "CREATE PUBLICATION p FOR TABLE o; INSERT INTO o SELECT g, g FROM generate_series(1, 30) g",
    );
    t.subscribe(&["p"], "", &[]).expect_code(0);
    // The native copy runs in the background: it ends before the destinations are touched.
    t.sync_both();
    t.dests("TRUNCATE seen");
    t.source(
        "DO $$ DECLARE i int; BEGIN FOR i IN REVERSE 30..1 LOOP UPDATE o SET v = v + 1 WHERE id = i; END LOOP; END $$; \
         DO $$ DECLARE i int; BEGIN FOR i IN 1..30 BY 7 LOOP DELETE FROM o WHERE id = i; END LOOP; END $$",
    );
    t.sync_both();
    // Each change is seen as it happens, the table as it is then: not the whole run's
    // changes at once at the end of one statement.
    let order =
        t.expect_same("SELECT string_agg(op || id || '=' || total, ' ' ORDER BY seq) FROM seen");
    assert!(order.starts_with("UPDATE30=466 UPDATE29=467"), "{order}");
}

#[test]
fn row_filters_of_several_publications_are_ored_in_the_copy_the_stream_and_verify() {
    let mut t = Twin::new("filters_or");
    t.everywhere("CREATE TABLE r (id int PRIMARY KEY, v text)");
    t.source(
        "CREATE PUBLICATION p_low FOR TABLE r WHERE (id < 10); \
         CREATE PUBLICATION p_high FOR TABLE r WHERE (id > 90); \
         INSERT INTO r SELECT g, 'v' || g FROM generate_series(1, 100) g",
    );
    t.subscribe(&["p_low", "p_high"], "", &[]).expect_code(0);
    t.source("INSERT INTO r VALUES (0, 'low'), (101, 'high'); UPDATE r SET v = 'filtered out' WHERE id = 50");
    t.sync_both();
    let q = "SELECT string_agg(id::text, ',' ORDER BY id) FROM r";
    let rows = t.expect_same(q);
    assert_eq!(
        rows,
        "0,1,2,3,4,5,6,7,8,9,91,92,93,94,95,96,97,98,99,100,101"
    );
    let verify = |t: &Twin| {
        run(&[
            "verify",
            "--source",
            &t.source_conninfo(),
            "--dest",
            &t.dest_conninfo(),
            "--publication",
            "p_low,p_high",
            "--settle",
            "1",
        ])
    };
    verify(&t).expect_code(0);
    // A row only the second publication's filter lets through, missing on the destination.
    t.pgsub("DELETE FROM r WHERE id = 95");
    let out = verify(&t).expect_code(3);
    assert!(out.stdout.contains("(id)=(95)"), "{}", out.stdout);
}

#[test]
fn a_whole_row_change_on_a_partitioned_destination_touches_one_row_of_one_partition() {
    let mut t = Twin::new("full_partitioned");
    t.source("CREATE TABLE w (k int, v text); ALTER TABLE w REPLICA IDENTITY FULL; CREATE PUBLICATION p FOR TABLE w");
    // Each partition's first row sits at ctid (0,1).
    t.dests(
        "CREATE TABLE w (k int, v text) PARTITION BY LIST (k); \
         CREATE TABLE w1 PARTITION OF w FOR VALUES IN (1); CREATE TABLE w2 PARTITION OF w FOR VALUES IN (2)",
    );
    t.source("INSERT INTO w VALUES (1, 'a'), (2, 'a')");
    t.subscribe(&["p"], "", &[]).expect_code(0);
    t.source("DELETE FROM w WHERE k = 2; UPDATE w SET v = 'b' WHERE k = 1");
    t.sync_both();
    assert_eq!(t.expect_all("SELECT k, v FROM w ORDER BY k"), "1|b");
}

#[test]
fn changes_to_a_parent_never_reach_its_inheritance_children() {
    let mut t = Twin::new("inheritance");
    t.everywhere(
        "CREATE TABLE parent (k int PRIMARY KEY, v text); \
         CREATE TABLE child (extra text, PRIMARY KEY (k)) INHERITS (parent)",
    );
    t.source("CREATE PUBLICATION p FOR TABLE parent; INSERT INTO parent VALUES (1, 'p'), (2, 'p'); INSERT INTO child VALUES (1, 'c', 'x'), (2, 'c', 'y')");
    t.subscribe(&["p"], "", &[]).expect_code(0);
    t.source("UPDATE ONLY parent SET v = 'changed' WHERE k = 1; DELETE FROM ONLY parent WHERE k = 2; TRUNCATE ONLY parent");
    t.source("INSERT INTO parent VALUES (3, 'new')");
    t.sync_both();
    assert_eq!(
        t.expect_all("SELECT k, v FROM ONLY parent ORDER BY k"),
        "3|new"
    );
    assert_eq!(
        t.expect_all("SELECT k, v, extra FROM child ORDER BY k"),
        "1|c|x\n2|c|y"
    );
}

#[test]
fn a_partitioned_root_published_through_itself_is_truncated_copied_and_routed() {
    let mut t = Twin::new("partition_root");
    t.source(
        "CREATE TABLE m (k int PRIMARY KEY, v text) PARTITION BY RANGE (k); \
         CREATE TABLE m_low PARTITION OF m FOR VALUES FROM (MINVALUE) TO (100); \
         CREATE TABLE m_high PARTITION OF m FOR VALUES FROM (100) TO (MAXVALUE); \
         CREATE PUBLICATION p FOR TABLE m WITH (publish_via_partition_root = true); \
         INSERT INTO m SELECT g, 'v' || g FROM generate_series(1, 150, 10) g",
    );
    // Partitioned otherwise on the destination: by hash.
    t.dests(
        "CREATE TABLE m (k int PRIMARY KEY, v text) PARTITION BY HASH (k); \
         CREATE TABLE m0 PARTITION OF m FOR VALUES WITH (MODULUS 2, REMAINDER 0); \
         CREATE TABLE m1 PARTITION OF m FOR VALUES WITH (MODULUS 2, REMAINDER 1)",
    );
    // A row already in a partition: the copy's emptiness check sees it.
    t.pgsub("INSERT INTO m VALUES (999, 'stale')");
    let refused = t.subscribe(&["p"], "", &[]).expect_code(2);
    assert!(refused.stderr.contains("not empty"), "{}", refused.stderr);
    t.pgsub_sync(&[
        "--create-slot",
        "--until",
        "caught-up",
        "--truncate-before-copy",
    ])
    .expect_code(0);
    t.sync_both();
    t.expect_all("SELECT k, v FROM m ORDER BY k");
    // A row moves between the source's partitions; then the root is truncated.
    t.source("UPDATE m SET k = k + 1000 WHERE k = 1; INSERT INTO m VALUES (5, 'five')");
    t.sync_both();
    t.expect_all("SELECT k, v FROM m ORDER BY k");
    t.source("TRUNCATE m; INSERT INTO m VALUES (7, 'after')");
    t.sync_both();
    assert_eq!(t.expect_all("SELECT k, v FROM m ORDER BY k"), "7|after");
}

#[test]
fn a_partition_published_beside_its_root_is_copied_once() {
    let mut t = Twin::new("partition_twice");
    t.everywhere(
        "CREATE TABLE q (k int PRIMARY KEY, v text) PARTITION BY RANGE (k); \
         CREATE TABLE q1 PARTITION OF q FOR VALUES FROM (0) TO (100); \
         CREATE TABLE q2 PARTITION OF q FOR VALUES FROM (100) TO (200)",
    );
    t.source(
        "CREATE PUBLICATION p_root FOR TABLE q WITH (publish_via_partition_root = true); \
         CREATE PUBLICATION p_leaf FOR TABLE q1; \
         INSERT INTO q SELECT g, 'v' FROM generate_series(1, 199, 7) g",
    );
    // PostgreSQL 15's own subscription copies q1 twice here (fixed in 16); pgsub
    // copies each row once.
    t.subscribe_pgsub_only(&["p_root", "p_leaf"], &[])
        .expect_code(0);
    t.source("INSERT INTO q VALUES (3, 'new'), (150, 'new')");
    t.pgsub_sync(&["--until", "caught-up"]).expect_code(0);
    let want = t.source("SELECT k, v FROM q ORDER BY k");
    assert_eq!(t.pgsub("SELECT k, v FROM q ORDER BY k"), want);
}

#[test]
fn a_value_too_wide_for_its_destination_column_stops_pgsub_naming_the_column() {
    let mut t = Twin::new("typmod");
    t.source("CREATE TABLE n (id int PRIMARY KEY, v varchar(10)); CREATE PUBLICATION p FOR TABLE n; INSERT INTO n VALUES (1, 'abc')");
    t.dests("CREATE TABLE n (id int PRIMARY KEY, v varchar(5))");
    let first = t.subscribe(&["p"], "", &[]).expect_code(0);
    assert!(
        first.stderr.contains("narrower") && first.stderr.contains("character varying(5)"),
        "the preflight warns: {}",
        first.stderr
    );
    for change in [
        "UPDATE n SET v = 'abcdefgh' WHERE id = 1",
        "INSERT INTO n VALUES (2, 'abcdefgh')",
    ] {
        t.source(change);
        let (native, run) = t.catch_up();
        assert!(
            matches!(native, Native::Failed(_)),
            "the built-in worker stops too"
        );
        assert_ne!(run.code, 0, "{}", run.stderr);
        assert!(
            run.stderr.contains("public.n")
                && run.stderr.contains("\"v\" is character varying(10) on the source and character varying(5) on the destination"),
            "{}",
            run.stderr
        );
        // Nothing was cut to fit.
        assert_eq!(t.pgsub("SELECT count(*) FROM n WHERE v = 'abcde'"), "0");
        // Widened, the destination takes the value; narrowed again for the next case.
        t.pgsub("ALTER TABLE n ALTER COLUMN v TYPE varchar(10)");
        t.pgsub_sync(&["--until", "caught-up"]).expect_code(0);
        assert_eq!(t.pgsub("SELECT count(*) FROM n WHERE v = 'abcdefgh'"), "1");
        t.source("UPDATE n SET v = 'ok'");
        t.pgsub_sync(&["--until", "caught-up"]).expect_code(0);
        t.pgsub("ALTER TABLE n ALTER COLUMN v TYPE varchar(5)");
    }
}

#[test]
fn conflicts_are_counted_logged_shown_and_stop_pgsub_where_the_built_in_worker_stops() {
    let mut t = Twin::new("conflicts");
    t.everywhere("CREATE TABLE c (k int PRIMARY KEY, v text)");
    t.source("CREATE PUBLICATION p FOR TABLE c; INSERT INTO c SELECT g, 'v' FROM generate_series(1, 10) g");
    t.subscribe(&["p"], "", &[]).expect_code(0);
    // The native copy runs in the background: it ends before the destinations are touched.
    t.sync_both();
    // The destinations lose rows behind the replication's back.
    t.dests("DELETE FROM c WHERE k IN (3, 4)");
    t.source("UPDATE c SET v = 'w' WHERE k = 3; DELETE FROM c WHERE k = 4; UPDATE c SET v = 'w' WHERE k = 5");
    let run = t.sync_both();
    assert!(
        summary(&run).contains("conflicts: 1 update_missing, 1 delete_missing"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("(k)=(3)") && run.stderr.contains("(k)=(4)"),
        "{}",
        run.stderr
    );
    assert_eq!(
        t.pgsub("SELECT relation, kind, count, last_key FROM pgsub.conflicts ORDER BY kind"),
        "public.c|delete_missing|1|(k)=(4)\npublic.c|update_missing|1|(k)=(3)"
    );
    let status = run_args(&[
        "status".into(),
        "--source".into(),
        t.source_conninfo(),
        "--dest".into(),
        t.dest_conninfo(),
    ])
    .expect_code(0);
    assert!(
        status.stdout.contains("update_missing") && status.stdout.contains("(k)=(3)"),
        "{}",
        status.stdout
    );
    // An insert of a key the destination has: the built-in worker stops, so does pgsub.
    t.dests("INSERT INTO c VALUES (42, 'local')");
    t.source("INSERT INTO c VALUES (42, 'remote')");
    let (native, stopped) = t.catch_up();
    assert!(matches!(native, Native::Failed(_)));
    assert_eq!(stopped.code, 1, "{}", stopped.stderr);
    assert!(
        stopped.stderr.contains("insert_exists") && stopped.stderr.contains("(k)=(42)"),
        "{}",
        stopped.stderr
    );
    assert_eq!(
        t.pgsub("SELECT count FROM pgsub.conflicts WHERE kind = 'insert_exists'"),
        "1"
    );
    t.dests("DELETE FROM c WHERE k = 42");
    t.sync_both();
    // --on-conflict error: a missing row stops pgsub, and nothing of its transaction is
    // applied.
    t.pgsub("DELETE FROM c WHERE k = 6");
    t.source("BEGIN; INSERT INTO c VALUES (50, 'x'); UPDATE c SET v = 'z' WHERE k = 6; COMMIT");
    let strict = t.pgsub_sync(&["--until", "caught-up", "--on-conflict", "error"]);
    assert_eq!(strict.code, 1, "{}", strict.stderr);
    assert!(
        strict.stderr.contains("update_missing on public.c"),
        "{}",
        strict.stderr
    );
    assert_eq!(t.pgsub("SELECT count(*) FROM c WHERE k = 50"), "0");
    // Without it, the same transaction applies, and the conflict is counted once more.
    t.pgsub_sync(&["--until", "caught-up"]).expect_code(0);
    assert_eq!(t.pgsub("SELECT count(*) FROM c WHERE k = 50"), "1");
    assert_eq!(
        t.pgsub("SELECT count FROM pgsub.conflicts WHERE kind = 'update_missing'"),
        "3"
    );
}

#[test]
fn an_insert_or_update_hitting_two_unique_indexes_is_a_multiple_unique_conflict_as_postgresql_18_counts_it()
 {
    multiple_unique_conflicts_as_postgresql_18_counts_them("conflicts_multi", false);
}

#[test]
fn a_far_destination_tells_multiple_unique_conflicts_from_insert_exists_as_postgresql_18_does() {
    // Far away the inserts are a pipelined INSERT of arrays, not a COPY: the row that
    // failed is found among the arrays.
    multiple_unique_conflicts_as_postgresql_18_counts_them("conflicts_multi_far", true);
}

fn multiple_unique_conflicts_as_postgresql_18_counts_them(name: &str, far: bool) {
    // The oracle is PostgreSQL 18's own worker, which names the kind and counts it in
    // pg_stat_subscription_stats; source and destinations share one PostgreSQL 18 cluster.
    let c = major_cluster(18);
    let db = c.create_database(name).unwrap();
    let (native, mine) = (format!("{db}_n"), format!("{db}_p"));
    let table = "CREATE TABLE c (k int PRIMARY KEY, u int UNIQUE, v text)";
    sql(
        c,
        &db,
        &format!("{table}; CREATE PUBLICATION p FOR TABLE c"),
    );
    for d in [&native, &mine] {
        sql(c, "postgres", &format!("CREATE DATABASE {d}"));
        sql(c, d, table);
    }
    sql(
        c,
        &db,
        &format!("SELECT 1 FROM pg_create_logical_replication_slot('{native}', 'pgoutput')"),
    );
    sql(
        c,
        &native,
        &format!(
            "CREATE SUBSCRIPTION {native} CONNECTION '{}' PUBLICATION p \
             WITH (create_slot = false, slot_name = '{native}', copy_data = false)",
            c.conninfo(&db)
        ),
    );
    let proxy = far.then(|| support::fault_proxy::FaultProxy::far(c.port()));
    let dest = match &proxy {
        Some(p) => p.through(&c.conninfo(&mine)),
        None => c.conninfo(&mine),
    };
    let args = |extra: &[&str]| sync_args(&c.conninfo(&db), &dest, "p", &mine, extra);
    run_args(&args(&["--create-slot", "--until", "caught-up"])).expect_code(0);
    // The incoming row (42, 7) meets one local row by its key and another by `u`.
    for d in [&native, &mine] {
        sql(
            c,
            d,
            "INSERT INTO c VALUES (42, 1, 'local'), (43, 7, 'local')",
        );
    }
    sql(
        c,
        &db,
        "INSERT INTO c VALUES (1, 100, 'fine'), (42, 7, 'remote')",
    );
    let stats = |kind: &str| {
        sql(
            c,
            &native,
            &format!(
                "SELECT confl_{kind} FROM pg_stat_subscription_stats WHERE subname = '{native}'"
            ),
        )
    };
    let both = |q: &str| {
        for d in [&native, &mine] {
            sql(c, d, q);
        }
    };
    let meets = |what: &str, kind: &str, n: &str| {
        eventually(what, std::time::Duration::from_secs(60), || {
            stats(kind) == n
        })
    };
    // pgsub stops where the built-in worker does; what it counted so far, by kind.
    let stops = |kind: &str| {
        let stopped = run_args(&args(&["--until", "caught-up"]));
        assert_eq!(stopped.code, 1, "{}", stopped.stderr);
        assert!(stopped.stderr.contains(kind), "{}", stopped.stderr);
        sql(
            c,
            &mine,
            "SELECT kind, count FROM pgsub.conflicts ORDER BY kind",
        )
    };
    meets(
        "the built-in worker meets the conflict",
        "multiple_unique_conflicts",
        "1",
    );
    assert_eq!(stats("insert_exists"), "0");
    assert_eq!(
        stops("multiple_unique_conflicts"),
        "multiple_unique_conflicts|1"
    );
    assert_eq!(
        sql(c, &mine, "SELECT count(*) FROM c WHERE v = 'fine'"),
        "0"
    );
    // With one of the two local rows gone, it is an insert_exists, for both.
    both("DELETE FROM c WHERE k = 43");
    meets(
        "the built-in worker meets the other conflict",
        "insert_exists",
        "1",
    );
    assert_eq!(
        stops("insert_exists"),
        "insert_exists|1\nmultiple_unique_conflicts|1"
    );

    // Updates too: with the local row 42 gone the inserts apply; then the update of row
    // 1 to (60, 61) meets one local row by its key and another by `u`.
    both("DELETE FROM c WHERE k = 42");
    run_args(&args(&["--until", "caught-up"])).expect_code(0);
    both("INSERT INTO c VALUES (60, 60, 'local'), (61, 61, 'local')");
    eventually(
        "the built-in worker applies the inserts",
        std::time::Duration::from_secs(60),
        || sql(c, &native, "SELECT count(*) FROM c WHERE v = 'fine'") == "1",
    );
    sql(c, &db, "UPDATE c SET k = 60, u = 61 WHERE k = 1");
    meets(
        "the built-in worker meets the update's conflict",
        "multiple_unique_conflicts",
        "2",
    );
    assert_eq!(stats("update_exists"), "0");
    assert_eq!(
        stops("multiple_unique_conflicts"),
        "insert_exists|1\nmultiple_unique_conflicts|2"
    );
    // With only the row holding u = 61 left, it is an update_exists, for both.
    both("DELETE FROM c WHERE k = 60");
    meets(
        "the built-in worker meets the update's other conflict",
        "update_exists",
        "1",
    );
    assert_eq!(
        stops("update_exists"),
        "insert_exists|1\nmultiple_unique_conflicts|2\nupdate_exists|1"
    );
    sql(c, &native, &format!("ALTER SUBSCRIPTION {native} DISABLE"));
}

#[test]
fn updates_and_deletes_of_rows_another_origin_wrote_last_are_counted_as_postgresql_18_counts_them()
{
    // PostgreSQL 18's worker, with track_commit_timestamp on, compares the origin of the
    // row it updates or deletes with its own: a row written locally, or by the initial
    // copy (its table sync writes under an origin of its own, pgsub's copy under none),
    // is an update_origin_differs or delete_origin_differs, applied all the same.
    let c = Cluster::start(ClusterOptions {
        bin: Some(pg_major(18)),
        extra_conf: vec!["track_commit_timestamp = on".into()],
        ..ClusterOptions::default()
    })
    .expect("a PostgreSQL 18 cluster");
    let db = c.create_database("origins").unwrap();
    let (native, mine) = (format!("{db}_n"), format!("{db}_p"));
    let table = "CREATE TABLE o (k int PRIMARY KEY, v text)";
    sql(
        &c,
        &db,
        &format!(
            "{table}; CREATE PUBLICATION p FOR TABLE o; \
             INSERT INTO o SELECT g, 'copied' FROM generate_series(1, 3) g"
        ),
    );
    for d in [&native, &mine] {
        sql(&c, "postgres", &format!("CREATE DATABASE {d}"));
        sql(&c, d, table);
    }
    sql(
        &c,
        &db,
        &format!("SELECT 1 FROM pg_create_logical_replication_slot('{native}', 'pgoutput')"),
    );
    sql(
        &c,
        &native,
        &format!(
            "CREATE SUBSCRIPTION s CONNECTION '{}' PUBLICATION p \
             WITH (create_slot = false, slot_name = '{native}')",
            c.conninfo(&db)
        ),
    );
    let args = |extra: &[&str]| sync_args(&c.conninfo(&db), &c.conninfo(&mine), "p", &mine, extra);
    run_args(&args(&["--create-slot", "--until", "caught-up"])).expect_code(0);
    sql(
        &c,
        &db,
        "INSERT INTO o VALUES (10, 'streamed'), (11, 'streamed'), (12, 'streamed')",
    );
    run_args(&args(&["--until", "caught-up"])).expect_code(0);
    let rows = |d: &str| {
        sql(
            &c,
            d,
            "SELECT string_agg(k || ':' || v, ',' ORDER BY k) FROM o",
        )
    };
    eventually(
        "the built-in subscription copies and streams",
        std::time::Duration::from_secs(60),
        || rows(&native) == rows(&db),
    );
    // Rows 2 and 11 written locally; then one source transaction updates a copied, a
    // copied-and-local, a streamed and a streamed-and-local row, and deletes a copied and
    // a streamed one.
    for d in [&native, &mine] {
        sql(&c, d, "UPDATE o SET v = 'local' WHERE k IN (2, 11)");
    }
    sql(
        &c,
        &db,
        "UPDATE o SET v = 'remote' WHERE k IN (1, 2, 10, 11); DELETE FROM o WHERE k IN (3, 12)",
    );
    let stats = || {
        sql(
            &c,
            &native,
            "SELECT confl_update_origin_differs || '|' || confl_delete_origin_differs \
             FROM pg_stat_subscription_stats WHERE subname = 's'",
        )
    };
    eventually(
        "the built-in worker applies and counts",
        std::time::Duration::from_secs(60),
        || rows(&native) == rows(&db) && stats() != "0|0",
    );
    let oracle = stats();
    assert_eq!(oracle, "3|1", "the oracle as observed on PostgreSQL 18");
    let out = run_args(&args(&["--until", "caught-up"])).expect_code(0);
    assert!(
        out.stderr.contains("update_origin_differs"),
        "logged: {}",
        out.stderr
    );
    assert_eq!(rows(&mine), rows(&db), "applied all the same");
    let counted = |kind: &str| {
        sql(
            &c,
            &mine,
            &format!("SELECT coalesce(sum(count), 0) FROM pgsub.conflicts WHERE kind = '{kind}'"),
        )
    };
    assert_eq!(
        format!(
            "{}|{}",
            counted("update_origin_differs"),
            counted("delete_origin_differs")
        ),
        oracle
    );
    // Rows pgsub wrote itself are not counted again; under --on-conflict error a local
    // write under the next change stops pgsub, and nothing of it is applied.
    sql(&c, &db, "UPDATE o SET v = 'again' WHERE k IN (10, 11)");
    run_args(&args(&["--until", "caught-up"])).expect_code(0);
    assert_eq!(counted("update_origin_differs"), "3");
    sql(&c, &mine, "UPDATE o SET v = 'local' WHERE k = 1");
    sql(&c, &db, "UPDATE o SET v = 'last' WHERE k IN (1, 10)");
    let stopped = run_args(&args(&["--until", "caught-up", "--on-conflict", "error"]));
    assert_eq!(stopped.code, 1, "{}", stopped.stderr);
    assert!(
        stopped.stderr.contains("update_origin_differs on public.o"),
        "{}",
        stopped.stderr
    );
    assert_eq!(sql(&c, &mine, "SELECT v FROM o WHERE k = 10"), "again");
    sql(&c, &native, "ALTER SUBSCRIPTION s DISABLE");
}
