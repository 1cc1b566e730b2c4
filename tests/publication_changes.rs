//! Publications that change while a replication runs: a table that joins (ALTER PUBLICATION
//! … ADD TABLE, a new table under FOR ALL TABLES or TABLES IN SCHEMA) is copied, then streamed, as the built-in
//! subscription does after ALTER SUBSCRIPTION … REFRESH PUBLICATION — pgsub without anyone
//! asking, between runs, at the joining table's first change, or at the next
//! `--refresh-interval`; a table that leaves stops being applied and keeps its rows.

mod support;

use std::time::Duration;

use support::oracle::{self, Twin};
use support::*;

const TABLES: &str = "CREATE TABLE a (id int PRIMARY KEY, v text); \
     CREATE TABLE b (id int PRIMARY KEY, v text); \
     CREATE TABLE c (id int, v text); ALTER TABLE c REPLICA IDENTITY FULL";

fn refresh_native(t: &Twin) {
    t.native(&format!(
        "ALTER SUBSCRIPTION {} REFRESH PUBLICATION",
        t.native_db
    ));
}

#[test]
fn a_table_added_between_runs_is_copied_then_streamed_as_refresh_publication_does() {
    let mut t = Twin::new("pubchg_between");
    t.everywhere(TABLES);
    t.source(
        "INSERT INTO a SELECT g, 'a' || g FROM generate_series(1, 50) g; \
         INSERT INTO b SELECT g, 'b' || g FROM generate_series(1, 70) g; \
         CREATE PUBLICATION p FOR TABLE a",
    );
    t.subscribe(&["p"], "", &[]).expect_code(0);
    t.sync_both();
    // b joins with the rows it already holds, and changes after joining.
    t.source(
        "ALTER PUBLICATION p ADD TABLE b; \
         UPDATE b SET v = 'changed' WHERE id <= 10; DELETE FROM b WHERE id > 60; \
         INSERT INTO b VALUES (100, 'new'); INSERT INTO a VALUES (51, 'a51')",
    );
    refresh_native(&t);
    let run = t.sync_both();
    assert!(
        run.stderr.contains("joined the publications: copying it"),
        "{}",
        run.stderr
    );
    t.expect_all("SELECT count(*), sum(id), string_agg(v, ',' ORDER BY id) FROM b");
    t.expect_all("SELECT count(*), sum(id) FROM a");
    // Once copied, it streams like the others, and a rerun copies nothing again.
    t.source("UPDATE b SET v = 'again' WHERE id = 1");
    let run = t.sync_both();
    assert!(!run.stderr.contains("initial copy"), "{}", run.stderr);
    t.expect_all("SELECT count(*), string_agg(v, ',' ORDER BY id) FROM b");
}

#[test]
fn tables_that_join_while_pgsub_streams_are_copied_at_their_first_change_or_by_the_refresh() {
    let mut t = Twin::new("pubchg_live");
    t.everywhere(TABLES);
    t.source(
        "INSERT INTO a SELECT g, 'a' || g FROM generate_series(1, 20) g; \
         INSERT INTO b SELECT g, 'b' || g FROM generate_series(1, 30) g; \
         INSERT INTO c SELECT g % 5, 'c' FROM generate_series(1, 40) g; \
         CREATE PUBLICATION p FOR TABLE a",
    );
    t.set_publications(&["p"], &[]);
    t.subscribe_native("");
    let child = t.start_pgsub(&["--create-slot", "--refresh-interval", "1"]);
    eventually("pgsub copied a", Duration::from_secs(60), || {
        t.pgsub("SELECT count(*) FROM a") == "20"
    });
    // b changes right after joining: found at its first change. c never changes again
    // (keyless: a double application would show as duplicates): found by the refresh.
    t.source("ALTER PUBLICATION p ADD TABLE b, c");
    t.source("UPDATE b SET v = 'changed' WHERE id <= 5; INSERT INTO b VALUES (31, 'b31')");
    t.source("INSERT INTO a VALUES (21, 'a21')");
    let want_b = t.source("SELECT count(*), string_agg(v, ',' ORDER BY id) FROM b");
    let want_c = t.source("SELECT count(*), string_agg(v || id, ',' ORDER BY id, v) FROM c");
    eventually(
        "pgsub copied and streamed b and c",
        Duration::from_secs(60),
        || {
            t.pgsub("SELECT count(*), string_agg(v, ',' ORDER BY id) FROM b") == want_b
                && t.pgsub("SELECT count(*), string_agg(v || id, ',' ORDER BY id, v) FROM c")
                    == want_c
                && t.pgsub("SELECT count(*) FROM a") == "21"
        },
    );
    // It keeps streaming all three.
    t.source("INSERT INTO c VALUES (9, 'later'); UPDATE a SET v = 'x' WHERE id = 1");
    eventually(
        "pgsub streams c after its copy",
        Duration::from_secs(30),
        || {
            t.pgsub("SELECT count(*) FROM c WHERE v = 'later'") == "1"
                && t.pgsub("SELECT v FROM a WHERE id = 1") == "x"
        },
    );
    let run = oracle::stop(child).expect_code(0);
    assert!(
        run.stderr.contains("table=public.b") && run.stderr.contains("table=public.c"),
        "{}",
        run.stderr
    );
    refresh_native(&t);
    t.sync_both();
    for q in [
        "SELECT count(*), string_agg(v, ',' ORDER BY id) FROM a",
        "SELECT count(*), string_agg(v, ',' ORDER BY id) FROM b",
        "SELECT count(*), string_agg(v || id, ',' ORDER BY id, v) FROM c",
    ] {
        t.expect_all(q);
    }
}

#[test]
fn a_table_joining_without_refresh_interval_is_found_at_its_first_change() {
    let mut t = Twin::new("pubchg_relation");
    t.everywhere(TABLES);
    t.source(
        "INSERT INTO b SELECT g, 'b' || g FROM generate_series(1, 30) g; \
         CREATE PUBLICATION p FOR TABLE a",
    );
    t.set_publications(&["p"], &[]);
    let child = t.start_pgsub(&["--create-slot", "--refresh-interval", "0"]);
    eventually("pgsub streams", Duration::from_secs(60), || {
        slot_active(t.src, &t.db, &t.pgsub_db)
    });
    t.source("ALTER PUBLICATION p ADD TABLE b");
    t.source("INSERT INTO b VALUES (31, 'b31')");
    eventually("pgsub copied b", Duration::from_secs(60), || {
        t.pgsub("SELECT count(*) FROM b") == "31"
    });
    oracle::stop(child).expect_code(0);
}

#[test]
fn a_new_table_under_for_all_tables_is_created_and_copied_with_schema_create() {
    let mut t = Twin::new("pubchg_alltables");
    t.everywhere("CREATE TABLE a (id int PRIMARY KEY)");
    t.source("INSERT INTO a VALUES (1); CREATE PUBLICATION p FOR ALL TABLES");
    t.subscribe_pgsub_only(&["p"], &["--schema", "create"])
        .expect_code(0);
    t.source(
        "CREATE TABLE born_later (id bigint PRIMARY KEY, note text NOT NULL); \
         INSERT INTO born_later SELECT g, 'n' || g FROM generate_series(1, 25) g",
    );
    t.pgsub_sync(&["--until", "caught-up"]).expect_code(0);
    assert_eq!(
        t.pgsub("SELECT count(*), sum(id) FROM born_later"),
        t.source("SELECT count(*), sum(id) FROM born_later")
    );
}

#[test]
fn a_new_table_under_tables_in_schema_is_created_and_copied_and_one_outside_is_not() {
    let mut t = Twin::new("pubchg_schema");
    if t.src.version_num() < 150000 {
        eprintln!("FOR TABLES IN SCHEMA needs a PostgreSQL 15 source");
        return;
    }
    t.everywhere("CREATE SCHEMA sales; CREATE TABLE sales.a (id int PRIMARY KEY)");
    t.source("INSERT INTO sales.a VALUES (1); CREATE PUBLICATION p FOR TABLES IN SCHEMA sales");
    t.subscribe_pgsub_only(&["p"], &["--schema", "create"])
        .expect_code(0);
    t.source(
        "CREATE TABLE sales.born_later (id bigint PRIMARY KEY, note text NOT NULL); \
         INSERT INTO sales.born_later SELECT g, 'n' || g FROM generate_series(1, 25) g; \
         CREATE TABLE public.outside (id int PRIMARY KEY); INSERT INTO public.outside VALUES (1)",
    );
    let run = t.pgsub_sync(&["--until", "caught-up"]).expect_code(0);
    assert!(
        run.stderr.contains("joined the publications: copying it"),
        "{}",
        run.stderr
    );
    t.source("UPDATE sales.born_later SET note = 'later' WHERE id = 3");
    t.pgsub_sync(&["--until", "caught-up"]).expect_code(0);
    assert_eq!(
        t.pgsub(
            "SELECT count(*), sum(id), string_agg(note, ',' ORDER BY id) FROM sales.born_later"
        ),
        t.source(
            "SELECT count(*), sum(id), string_agg(note, ',' ORDER BY id) FROM sales.born_later"
        )
    );
    assert_eq!(
        t.pgsub("SELECT count(*) FROM pg_tables WHERE tablename = 'outside'"),
        "0",
        "a table outside the published schema is not created"
    );
}

#[test]
fn a_table_that_leaves_the_publication_keeps_its_rows_and_is_reported() {
    let mut t = Twin::new("pubchg_leave");
    t.everywhere(TABLES);
    t.source(
        "INSERT INTO a VALUES (1, 'a'); INSERT INTO b VALUES (1, 'b'); \
         CREATE PUBLICATION p FOR TABLE a, b",
    );
    t.subscribe(&["p"], "", &[]).expect_code(0);
    t.sync_both();
    t.source("ALTER PUBLICATION p DROP TABLE b");
    t.source("INSERT INTO b VALUES (2, 'not replicated'); INSERT INTO a VALUES (2, 'a')");
    refresh_native(&t);
    let run = t.sync_both();
    assert!(
        run.stderr.contains("left the publications"),
        "{}",
        run.stderr
    );
    // Both keep what b held, neither applies what came after; a streams on.
    t.expect_both("SELECT string_agg(id || v, ',' ORDER BY id) FROM b", "1b");
    t.expect_all("SELECT count(*) FROM a");
    // Joining again, it is copied again: pgsub refuses to copy over the old rows (it
    // would double them) and says what to do.
    t.source("ALTER PUBLICATION p ADD TABLE b");
    let run = t.pgsub_sync(&["--until", "caught-up"]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("public.b is not empty")
            && run.stderr.contains("--truncate-before-copy"),
        "{}",
        run.stderr
    );
    t.pgsub_sync(&["--until", "caught-up", "--truncate-before-copy"])
        .expect_code(0);
    assert_eq!(
        t.pgsub("SELECT string_agg(id || v, ',' ORDER BY id) FROM b"),
        t.source("SELECT string_agg(id || v, ',' ORDER BY id) FROM b")
    );
}

#[test]
fn a_truncate_naming_a_table_copied_after_it_empties_the_others_despite_their_foreign_key() {
    let mut t = Twin::new("pubchg_truncate_fk");
    t.everywhere(
        "CREATE TABLE parent (id serial PRIMARY KEY, v text); \
         CREATE TABLE child (id int PRIMARY KEY, parent int REFERENCES parent)",
    );
    t.source(
        "INSERT INTO parent (v) SELECT 'p' || g FROM generate_series(1, 10) g; \
         INSERT INTO child SELECT g, g FROM generate_series(1, 10) g; \
         CREATE PUBLICATION p FOR TABLE parent",
    );
    t.subscribe_pgsub_only(&["p"], &[]).expect_code(0);
    t.pgsub("SELECT setval('parent_id_seq', 50)");
    // child joins and both are truncated in one message: child's copy comes later than the
    // TRUNCATE, so pgsub leaves child out of it, and the destination refuses TRUNCATE ONLY
    // parent for child's foreign key (as it refuses the built-in worker, which gets there
    // by failing until child is ready).
    t.source(
        "ALTER PUBLICATION p ADD TABLE child; \
         TRUNCATE parent, child RESTART IDENTITY; \
         INSERT INTO parent (v) SELECT 'q' || g FROM generate_series(1, 3) g; \
         INSERT INTO child VALUES (100, 1), (101, 3)",
    );
    let run = t.pgsub_sync(&["--until", "caught-up"]);
    run.expect_code(0);
    for q in [
        "SELECT string_agg(id || v, ',' ORDER BY id) FROM parent",
        "SELECT string_agg(id || ':' || parent, ',' ORDER BY id) FROM child",
    ] {
        assert_eq!(t.pgsub(q), t.source(q), "{q}");
    }
    // RESTART IDENTITY restarted the sequence parent owns on the destination too.
    assert_eq!(t.pgsub("SELECT nextval('parent_id_seq')"), "1");
}
