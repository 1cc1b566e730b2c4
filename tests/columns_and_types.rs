//! Which columns are replicated, and into which destination types: column lists (15+),
//! publications that disagree on them, generated columns published by PostgreSQL 18, and
//! `--schema verify` as tolerant as the built-in worker and no more.

mod support;

use support::oracle::Twin;
use support::*;

#[test]
fn a_column_list_is_copied_applied_and_verified_alone() {
    let mut t = Twin::new("column_list");
    t.everywhere("CREATE TABLE l (id int PRIMARY KEY, shown text, hidden text)");
    t.source(
        "CREATE PUBLICATION p FOR TABLE l (id, shown); \
         INSERT INTO l VALUES (1, 'a', 'secret'), (2, 'b', 'secret')",
    );
    t.subscribe(&["p"], "", &[]).expect_code(0);
    t.source("INSERT INTO l VALUES (3, 'c', 'secret'); UPDATE l SET hidden = 'changed', shown = 'B' WHERE id = 2");
    t.sync_both();
    assert_eq!(
        t.expect_same("SELECT id, shown, hidden FROM l ORDER BY id"),
        "1|a|\n2|B|\n3|c|"
    );
    run(&[
        "verify",
        "--source",
        &t.source_conninfo(),
        "--dest",
        &t.dest_conninfo(),
        "--publication",
        "p",
    ])
    .expect_code(0);
}

#[test]
fn publications_that_give_a_table_different_column_lists_are_refused_before_anything_starts() {
    let mut t = Twin::new("column_lists_differ");
    t.everywhere("CREATE TABLE l (id int PRIMARY KEY, a text, b text)");
    t.source(
        "CREATE PUBLICATION p_a FOR TABLE l (id, a); CREATE PUBLICATION p_b FOR TABLE l (id, b); \
         INSERT INTO l VALUES (1, 'x', 'y')",
    );
    let run = t.subscribe_pgsub_only(&["p_a", "p_b"], &[]).expect_code(2);
    assert!(
        run.stderr.contains("different column lists") && run.stderr.contains("public.l"),
        "{}",
        run.stderr
    );
    // Nothing was started: no slot, no copy.
    assert_eq!(
        t.source(&format!(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}'",
            t.pgsub_db
        )),
        "0"
    );
    // The built-in subscription refuses the same publications.
    let native = t.dst.psql(
        &t.native_db,
        &format!(
            "CREATE SUBSCRIPTION {} CONNECTION '{}' PUBLICATION p_a, p_b",
            t.native_db,
            t.source_conninfo()
        ),
    );
    assert!(
        native.is_err_and(|e| e.to_string().contains("different column lists")),
        "PostgreSQL refuses them too"
    );
}

#[test]
fn schema_verify_takes_what_the_built_in_worker_takes_warns_where_values_can_be_lost_and_refuses_the_rest()
 {
    let mut t = Twin::new("schema_compat");
    t.source(
        "CREATE TABLE c (id int PRIMARY KEY, name varchar(20), note text, qty numeric, flag int); \
         CREATE PUBLICATION p FOR TABLE c; INSERT INTO c VALUES (1, 'abc', 'short', 2, 0)",
    );
    // varchar → text (as PostgreSQL's own tests replicate), text → varchar(5) and
    // numeric → int (values can be rejected or rounded).
    t.dests("CREATE TABLE c (id int PRIMARY KEY, name text, note varchar(5), qty int, flag int)");
    let run = t.subscribe(&["p"], "", &[]).expect_code(0);
    for (column, warned) in [("name", false), ("note", true), ("qty", true)] {
        let line = run
            .stderr
            .lines()
            .any(|l| l.contains("WARN") && l.contains(&format!("column={column}")));
        assert_eq!(line, warned, "{column}:\n{}", run.stderr);
    }
    t.source("INSERT INTO c VALUES (2, 'a longer name', 'tiny', 7, 1)");
    t.sync_both();
    t.expect_same("SELECT id, name, note, qty FROM c ORDER BY id");
    // int → boolean: no such reading; refused with both types named.
    t.pgsub("ALTER TABLE c ALTER COLUMN flag TYPE boolean USING flag <> 0");
    let refused = t.pgsub_sync(&["--until", "caught-up"]).expect_code(2);
    assert!(
        refused.stderr.contains("\"flag\"")
            && refused
                .stderr
                .contains("integer on the source but boolean on the destination"),
        "{}",
        refused.stderr
    );
}

#[test]
fn generated_columns_published_by_postgresql_18_are_written_where_the_destination_does_not_generate_them()
 {
    let s = major_cluster(18);
    let d = dest_cluster();
    let db = s.create_database("gen18").unwrap();
    sql(d, "postgres", &format!("CREATE DATABASE {db}"));
    sql(
        s,
        &db,
        "CREATE TABLE g (a int PRIMARY KEY, twice int GENERATED ALWAYS AS (a * 2) STORED, \
                         thrice int GENERATED ALWAYS AS (a * 3) STORED); \
         CREATE PUBLICATION p FOR TABLE g WITH (publish_generated_columns = stored); \
         INSERT INTO g (a) VALUES (1), (2)",
    );
    // `twice` is an ordinary column here: it takes the source's values; `thrice` is
    // generated here too, by another expression: the destination computes it.
    sql(
        d,
        &db,
        "CREATE TABLE g (a int PRIMARY KEY, twice int, thrice int GENERATED ALWAYS AS (a * 30) STORED)",
    );
    let args = |extra: &[&str]| sync_args(&s.conninfo(&db), &d.conninfo(&db), "p", &db, extra);
    run_args(&args(&["--create-slot", "--until", "caught-up"])).expect_code(0);
    sql(
        s,
        &db,
        "INSERT INTO g (a) VALUES (3); UPDATE g SET a = 10 WHERE a = 1",
    );
    run_args(&args(&["--until", "caught-up"])).expect_code(0);
    assert_eq!(
        sql(d, &db, "SELECT a, twice, thrice FROM g ORDER BY a"),
        "2|4|60\n3|6|90\n10|20|300"
    );
    // A value for a column generated on the destination but not on the source is
    // refused, as the built-in worker refuses it.
    sql(
        s,
        &db,
        "CREATE TABLE h (a int PRIMARY KEY, b int); CREATE PUBLICATION ph FOR TABLE h",
    );
    sql(
        d,
        &db,
        "CREATE TABLE h (a int PRIMARY KEY, b int GENERATED ALWAYS AS (a) STORED)",
    );
    let h = |extra: &[&str]| {
        sync_args(
            &s.conninfo(&db),
            &d.conninfo(&db),
            "ph",
            &format!("{db}_h"),
            extra,
        )
    };
    let refused = run_args(&h(&["--create-slot", "--until", "caught-up"])).expect_code(2);
    assert!(
        refused.stderr.contains("\"b\"")
            && refused
                .stderr
                .contains("generated column on the destination"),
        "{}",
        refused.stderr
    );
}
