//! The behaviour of PostgreSQL's own subscription tests (`src/test/subscription/t/` in the
//! PostgreSQL source: 002_types, 003_constraints, 008_diff_schema, 010_truncate,
//! 011_generated, 013_partition, 028_row_filter, 031_column_list, 100_bugs), written
//! anew for pgsub: each scenario runs through the built-in subscription and through
//! `pgsub sync` from the same source, and both must end as PostgreSQL's tests expect.

mod support;

use support::oracle::Twin;

/// The summary line of a `pgsub sync` run.
fn summary(run: &support::Run) -> String {
    run.stderr
        .lines()
        .find(|l| l.starts_with("pgsub sync: applied"))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn types_002_arrays_enums_composites_ranges_hstore_and_a_domain_checked_by_a_query() {
    let mut t = Twin::new("pg002");
    t.everywhere(
        "CREATE EXTENSION hstore; \
         CREATE TYPE tst_enum AS ENUM ('a', 'b', 'c', 'd', 'e'); \
         CREATE TYPE tst_comp_t AS (a float8, b text, c int); \
         CREATE TYPE tst_comp_enum_t AS (a float8, b tst_enum, c int); \
         CREATE TYPE tst_comp_mix_t AS (a tst_comp_t, b tst_comp_t[], c tst_enum, d tst_enum[]); \
         CREATE TABLE tst_arrays (a int[] PRIMARY KEY, b text[], c float8[], d interval[]); \
         CREATE TABLE tst_enums (a tst_enum PRIMARY KEY, b tst_enum[]); \
         CREATE TABLE tst_comps (a tst_comp_t PRIMARY KEY, b tst_comp_t[]); \
         CREATE TABLE tst_comp_enum (a int PRIMARY KEY, b tst_comp_enum_t); \
         CREATE TABLE tst_comp_mix (a tst_comp_mix_t PRIMARY KEY, b tst_comp_mix_t[]); \
         CREATE TABLE tst_range (a int PRIMARY KEY, b int4range, c tstzrange, d int8range[]); \
         CREATE TABLE tst_hstore (a int PRIMARY KEY, b hstore); \
         CREATE TABLE tst_dom_constr (a int); \
         CREATE FUNCTION monot_incr(int) RETURNS bool LANGUAGE sql AS 'SELECT $1 > coalesce(max(a), 0) FROM public.tst_dom_constr'; \
         CREATE DOMAIN monot_int AS int CHECK (monot_incr(VALUE)); \
         ALTER TABLE tst_dom_constr ALTER COLUMN a TYPE monot_int",
    );
    t.source("CREATE PUBLICATION p FOR ALL TABLES");
    t.subscribe(&["p"], "", &[]).expect_code(0);
    t.source(
        "INSERT INTO tst_arrays VALUES ('{1,2,3}', '{a,b,c}', '{1.1,2.2,3.3}', '{1 day,2 days,3 days}'), \
           ('{2,3,1}', '{b,c,a}', '{2.2,3.3,1.1}', '{2 minutes,3 minutes,1 minute}'), \
           ('{3,1,2}', '{c,a,b}', '{3.3,1.1,2.2}', '{\"3 years\",\"1 year\",\"2 years\"}'), \
           ('{4,1,2}', '{d,a,b}', '{4.4,1.1,2.2}', '{4 years,1 year,2 years}'), \
           ('{5,NULL,3}', '{e,NULL,b}', '{5.5,1.1,NULL}', '{5 years,NULL,NULL}'); \
         INSERT INTO tst_enums VALUES ('a', '{b, c}'), ('b', '{c, a}'), ('c', '{b, a}'), ('d', '{d, NULL}'), ('e', NULL); \
         INSERT INTO tst_comps VALUES (ROW(1.0, 'a', 1), ARRAY[ROW(1, 'a', 1)::tst_comp_t]), \
           (ROW(2.0, 'b', 2), ARRAY[ROW(2, 'b', 2)::tst_comp_t]), (ROW(3.0, 'c', 3), ARRAY[ROW(3, 'c', 3)::tst_comp_t]), \
           (ROW(5.0, NULL, NULL), ARRAY[NULL, ROW(5, NULL, 5)::tst_comp_t]); \
         INSERT INTO tst_comp_enum VALUES (1, ROW(1.0, 'a', 1)), (2, ROW(2.0, 'b', 2)), (5, ROW(NULL, NULL, 5)); \
         INSERT INTO tst_comp_mix VALUES (ROW(ROW(1, 'a', 1), ARRAY[ROW(1, 'a', 1)::tst_comp_t, NULL], 'a', '{a,b,NULL,c}'), \
           ARRAY[ROW(ROW(1, 'a', 1), ARRAY[ROW(1, 'a', 1)::tst_comp_t, NULL], 'a', '{a,b,NULL,c}')::tst_comp_mix_t]); \
         INSERT INTO tst_range VALUES (1, '[1, 10]', '[\"2014-08-04 00:00:00+02\",infinity]', '{\"[1,3)\",\"[10,21)\"}'), \
           (2, '[2, 20]', '[\"2014-08-02 00:00:00+02\",\"2014-08-04 00:00:00+02\")', NULL), (5, NULL, NULL, NULL); \
         INSERT INTO tst_hstore VALUES (1, '\"a\"=>\"1\"'), (2, '\"zzz\"=>\"foo\"'), (3, '\"123\"=>\"321\"'), (4, '\"yellow horse\"=>\"moaned\"'); \
         INSERT INTO tst_dom_constr VALUES (10)",
    );
    t.sync_both();
    t.source(
        "UPDATE tst_arrays SET b = '{\"1a\", \"2b\", \"3c\"}', c = '{1.0, 2.0, 3.0}', d = '{\"1 day 1 second\", \"2 days 2 seconds\", \"3 days 3 second\"}' WHERE a = '{1, 2, 3}'; \
         UPDATE tst_arrays SET b[1] = '42', c = NULL WHERE a[1] > 3; \
         UPDATE tst_enums SET b = '{e, NULL}' WHERE a = 'a'; UPDATE tst_enums SET a = 'e' WHERE a = 'b' AND FALSE; \
         UPDATE tst_comps SET b = ARRAY[ROW(9, 'x', -1)::tst_comp_t] WHERE (a).a > 3.9; \
         UPDATE tst_comp_enum SET b = (ROW(1.0, 'e', NULL)) WHERE (b).b = 'a'; \
         UPDATE tst_range SET b = '[100, 1000]', d = '{\"[2,4)\"}' WHERE a = 1; \
         UPDATE tst_hstore SET b = '\"updated\"=>\"value\"' WHERE a < 3; \
         INSERT INTO tst_dom_constr VALUES (11)",
    );
    t.sync_both();
    t.source(
        "DELETE FROM tst_arrays WHERE a = '{1, 2, 3}'; DELETE FROM tst_enums WHERE a = 'a'; \
         DELETE FROM tst_comps WHERE (a).b = 'a'; DELETE FROM tst_comp_enum WHERE (b).a < 2; \
         DELETE FROM tst_range WHERE a = 1; DELETE FROM tst_range WHERE b && '[5, 15]'; \
         DELETE FROM tst_hstore WHERE b = '\"zzz\"=>\"foo\"'",
    );
    t.sync_both();
    for table in [
        "tst_arrays",
        "tst_enums",
        "tst_comps",
        "tst_comp_enum",
        "tst_comp_mix",
        "tst_range",
        "tst_hstore",
        "tst_dom_constr",
    ] {
        t.expect_all(&format!(
            "SET timezone = '+2'; SELECT * FROM {table} ORDER BY 1::text"
        ));
    }
    assert_eq!(t.pgsub("SELECT sum(a) FROM tst_dom_constr"), "21");
}

#[test]
fn constraints_003_foreign_keys_are_not_checked_and_replica_triggers_filter_changes() {
    let mut t = Twin::new("pg003");
    t.source(
        "CREATE TABLE tab_fk (bid int PRIMARY KEY); \
         CREATE TABLE tab_fk_ref (id int PRIMARY KEY, junk text, bid int REFERENCES tab_fk (bid)); \
         CREATE PUBLICATION p FOR ALL TABLES",
    );
    // Another column order on the destination.
    t.dests(
        "CREATE TABLE tab_fk (bid int PRIMARY KEY); \
         CREATE TABLE tab_fk_ref (id int PRIMARY KEY, bid int REFERENCES tab_fk (bid), junk text)",
    );
    t.subscribe(&["p"], "", &["--no-copy-data"]).expect_code(0);
    t.source("INSERT INTO tab_fk VALUES (1); INSERT INTO tab_fk_ref VALUES (1, repeat(pi()::text, 20000), 1)");
    t.sync_both();
    t.expect_all("SELECT count(*), sum(length(junk)) FROM tab_fk_ref");
    // The source drops the parent; the destination keeps its foreign key, unchecked.
    t.source("DROP TABLE tab_fk CASCADE; INSERT INTO tab_fk_ref VALUES (2, 'b', 2)");
    t.sync_both();
    assert_eq!(
        t.expect_same("SELECT id, bid FROM tab_fk_ref ORDER BY id"),
        "1|1\n2|2"
    );
    // A replica trigger keeps ids below 10 on insert and drops every update of bid.
    t.dests(
        "CREATE FUNCTION filter_basic_dml_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF (TG_OP = 'INSERT') THEN IF (NEW.id < 10) THEN RETURN NEW; ELSE RETURN NULL; END IF; \
           ELSIF (TG_OP = 'UPDATE') THEN RETURN NULL; END IF; RETURN NULL; END $$; \
         CREATE TRIGGER filter_basic_dml_trg BEFORE INSERT OR UPDATE OF bid ON tab_fk_ref \
           FOR EACH ROW EXECUTE PROCEDURE filter_basic_dml_fn(); \
         ALTER TABLE tab_fk_ref ENABLE REPLICA TRIGGER filter_basic_dml_trg",
    );
    t.source("INSERT INTO tab_fk_ref VALUES (10, 'x', 10); UPDATE tab_fk_ref SET bid = 2 WHERE bid = 1; UPDATE tab_fk_ref SET id = 6 WHERE id = 1");
    let run = t.sync_both();
    assert_eq!(
        t.expect_same("SELECT id, bid FROM tab_fk_ref ORDER BY id"),
        "1|1\n2|2"
    );
    // Rows a trigger kept are not conflicts.
    assert!(!summary(&run).contains("conflicts"), "{}", run.stderr);
}

#[test]
fn diff_schema_008_destination_only_columns_take_their_defaults_and_keep_their_values() {
    let mut t = Twin::new("pg008");
    t.source(
        "CREATE TABLE test_tab (a int PRIMARY KEY, b varchar); INSERT INTO test_tab VALUES (1, 'foo'), (2, 'bar'); \
         CREATE TABLE test_tab2 (a int); CREATE PUBLICATION p FOR ALL TABLES",
    );
    t.dests(
        "CREATE TABLE test_tab (a int PRIMARY KEY, b text, c timestamptz DEFAULT now(), d bigint DEFAULT 999, \
           e int GENERATED BY DEFAULT AS IDENTITY); \
         CREATE TABLE test_tab2 (a int, b serial PRIMARY KEY)",
    );
    t.subscribe(&["p"], "", &[]).expect_code(0);
    t.sync_both();
    assert_eq!(
        t.expect_same("SELECT count(*), count(c), count(d = 999), count(e) FROM test_tab"),
        "2|2|2|2"
    );
    t.dests("UPDATE test_tab SET c = 'epoch'::timestamptz + 987654321 * interval '1s'");
    t.source("UPDATE test_tab SET b = md5(b); INSERT INTO test_tab VALUES (3, 'baz'); INSERT INTO test_tab2 VALUES (1)");
    t.sync_both();
    assert_eq!(
        t.expect_same(
            "SELECT count(*), count(c), count(d = 999), count(e), \
             count(*) FILTER (WHERE c = 'epoch'::timestamptz + 987654321 * interval '1s') FROM test_tab"
        ),
        "3|3|3|3|2"
    );
    t.expect_all("SELECT a, b FROM test_tab ORDER BY a");
    assert_eq!(t.expect_same("SELECT a, b FROM test_tab2"), "1|1");
}

#[test]
fn truncate_010_restarts_destination_sequences_keeps_foreign_keys_and_follows_publish() {
    let mut t = Twin::new("pg010");
    t.everywhere(
        "CREATE TABLE tab1 (a int PRIMARY KEY); CREATE TABLE tab2 (a int PRIMARY KEY); \
         CREATE TABLE tab3 (a int PRIMARY KEY); CREATE TABLE tab4 (x int PRIMARY KEY, y int REFERENCES tab3)",
    );
    t.dests("CREATE SEQUENCE seq1 OWNED BY tab1.a; ALTER SEQUENCE seq1 START 101");
    t.source(
        "CREATE PUBLICATION p1 FOR TABLE tab1; CREATE PUBLICATION p2 FOR TABLE tab2 WITH (publish = 'insert'); \
         CREATE PUBLICATION p3 FOR TABLE tab3, tab4",
    );
    t.subscribe(&["p1", "p2", "p3"], "", &[]).expect_code(0);
    // The native copy runs in the background: it ends before the destinations are touched.
    t.sync_both();
    t.dests(
        "INSERT INTO tab1 VALUES (1), (2), (3); SELECT nextval('seq1'); INSERT INTO tab2 VALUES (1), (2), (3); \
         INSERT INTO tab3 VALUES (1), (2), (3); INSERT INTO tab4 VALUES (11, 1), (111, 1), (22, 2)",
    );
    t.source("TRUNCATE tab1");
    t.sync_both();
    assert_eq!(t.expect_same("SELECT count(*) FROM tab1"), "0");
    assert_eq!(t.expect_same("SELECT nextval('seq1')"), "2");
    t.source("TRUNCATE tab1 RESTART IDENTITY");
    t.sync_both();
    assert_eq!(t.expect_same("SELECT nextval('seq1')"), "101");
    // Not published for p2: the destination keeps its rows.
    t.source("TRUNCATE tab2");
    t.sync_both();
    assert_eq!(t.expect_same("SELECT count(*) FROM tab2"), "3");
    // Two tables with a foreign key between them, truncated in one message.
    t.source("TRUNCATE tab3, tab4");
    t.sync_both();
    assert_eq!(
        t.expect_same("SELECT (SELECT count(*) FROM tab3) + (SELECT count(*) FROM tab4)"),
        "0"
    );
}

#[test]
fn generated_011_the_destination_computes_its_own_after_replica_triggers_ran() {
    let mut t = Twin::new("pg011");
    t.source(
        "CREATE TABLE tab1 (a int PRIMARY KEY, b int GENERATED ALWAYS AS (a * 2) STORED); \
         INSERT INTO tab1 (a) VALUES (1), (2), (3); CREATE PUBLICATION p FOR ALL TABLES",
    );
    t.dests(
        "CREATE TABLE tab1 (a int PRIMARY KEY, b int GENERATED ALWAYS AS (a * 22) STORED, c int)",
    );
    t.subscribe(&["p"], "", &[]).expect_code(0);
    t.sync_both();
    assert_eq!(
        t.expect_same("SELECT a, b FROM tab1 ORDER BY a"),
        "1|22\n2|44\n3|66"
    );
    t.source("INSERT INTO tab1 VALUES (4), (5); UPDATE tab1 SET a = 6 WHERE a = 5");
    t.sync_both();
    assert_eq!(
        t.expect_same("SELECT * FROM tab1 WHERE a > 3 ORDER BY a"),
        "4|88|\n6|132|"
    );
    t.dests(
        "CREATE FUNCTION tab1_trigger_func() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.c := NEW.a + 10; RETURN NEW; END $$; \
         CREATE TRIGGER test1 BEFORE INSERT OR UPDATE ON tab1 FOR EACH ROW EXECUTE PROCEDURE tab1_trigger_func(); \
         ALTER TABLE tab1 ENABLE REPLICA TRIGGER test1",
    );
    t.source("INSERT INTO tab1 VALUES (7), (8); UPDATE tab1 SET a = 9 WHERE a = 7");
    t.sync_both();
    assert_eq!(
        t.expect_same("SELECT * FROM tab1 WHERE a > 6 ORDER BY a"),
        "8|176|18\n9|198|19"
    );
}

#[test]
fn partition_013_leaf_changes_into_a_destination_partitioned_otherwise_and_plain_tables() {
    let mut t = Twin::new("pg013a");
    t.source(
        "CREATE TABLE tab1 (a int PRIMARY KEY, b text) PARTITION BY LIST (a); \
         CREATE TABLE tab1_1 (b text, a int NOT NULL); ALTER TABLE tab1 ATTACH PARTITION tab1_1 FOR VALUES IN (1, 2, 3); \
         CREATE TABLE tab1_2 PARTITION OF tab1 FOR VALUES IN (4, 5, 6); \
         CREATE TABLE tab1_def PARTITION OF tab1 DEFAULT; \
         CREATE PUBLICATION p FOR TABLE tab1, tab1_1",
    );
    // Sub-partitioned otherwise, with a column of its own and another column order.
    t.dests(
        "CREATE TABLE tab1 (c text DEFAULT 'sub1_tab1', a int PRIMARY KEY, b text) PARTITION BY LIST (a); \
         CREATE TABLE tab1_1 (b text, c text DEFAULT 'sub1_tab1', a int NOT NULL); \
         ALTER TABLE tab1 ATTACH PARTITION tab1_1 FOR VALUES IN (1, 2, 3); \
         CREATE TABLE tab1_2 PARTITION OF tab1 (c DEFAULT 'sub1_tab1') FOR VALUES IN (4, 5, 6) PARTITION BY LIST (a); \
         CREATE TABLE tab1_2_1 (c text DEFAULT 'sub1_tab1', b text, a int NOT NULL); \
         ALTER TABLE tab1_2 ATTACH PARTITION tab1_2_1 FOR VALUES IN (5); \
         CREATE TABLE tab1_2_2 PARTITION OF tab1_2 FOR VALUES IN (4, 6); \
         CREATE TABLE tab1_def PARTITION OF tab1 (c DEFAULT 'sub1_tab1') DEFAULT",
    );
    t.subscribe(&["p"], "", &[]).expect_code(0);
    t.source("INSERT INTO tab1 VALUES (1); INSERT INTO tab1_1 (a) VALUES (3); INSERT INTO tab1_2 VALUES (5); INSERT INTO tab1 VALUES (0)");
    t.sync_both();
    assert_eq!(
        t.expect_same("SELECT c, a FROM tab1 ORDER BY 1, 2"),
        "sub1_tab1|0\nsub1_tab1|1\nsub1_tab1|3\nsub1_tab1|5"
    );
    assert_eq!(t.expect_same("SELECT a FROM tab1_2_1"), "5");
    // Within a source partition, across the destination's.
    t.source("UPDATE tab1 SET a = 2 WHERE a = 1; UPDATE tab1 SET a = 6 WHERE a = 5; UPDATE tab1 SET a = 4 WHERE a = 6; UPDATE tab1 SET a = 6 WHERE a = 4");
    t.sync_both();
    assert_eq!(t.expect_same("SELECT a FROM tab1 ORDER BY 1"), "0\n2\n3\n6");
    assert_eq!(t.expect_same("SELECT a FROM tab1_2_2"), "6");
    // Across the source's partitions (a delete and an insert on the source's leaves).
    t.source("UPDATE tab1 SET a = 1 WHERE a = 0; UPDATE tab1 SET a = 4 WHERE a = 1");
    t.sync_both();
    assert_eq!(t.expect_same("SELECT a FROM tab1 ORDER BY 1"), "2\n3\n4\n6");
    // A destination that lost its rows: the built-in worker skips, pgsub counts.
    t.dests("DELETE FROM tab1");
    t.source("UPDATE tab1 SET b = 'quux' WHERE a = 4; DELETE FROM tab1");
    let run = t.sync_both();
    assert!(
        summary(&run).contains("update_missing") && summary(&run).contains("delete_missing"),
        "{}",
        run.stderr
    );
    // Truncating a source partition empties the destination's rows of it.
    t.source("INSERT INTO tab1 VALUES (1), (2), (5)");
    t.sync_both();
    t.source("TRUNCATE tab1_2");
    t.sync_both();
    assert_eq!(t.expect_same("SELECT a FROM tab1 ORDER BY 1"), "1\n2");
    t.source("TRUNCATE tab1");
    t.sync_both();
    assert_eq!(t.expect_same("SELECT count(*) FROM tab1"), "0");
}

#[test]
fn partition_013_root_changes_into_hash_partitioned_and_plain_destinations() {
    let mut t = Twin::new("pg013b");
    t.source(
        "CREATE TABLE tab2 (a int PRIMARY KEY, b text) PARTITION BY LIST (a); \
         CREATE TABLE tab2_1 (b text, a int NOT NULL); ALTER TABLE tab2 ATTACH PARTITION tab2_1 FOR VALUES IN (0, 1, 2, 3); \
         CREATE TABLE tab2_2 PARTITION OF tab2 FOR VALUES IN (5, 6); \
         CREATE TABLE tab3 (a int PRIMARY KEY, b text) PARTITION BY LIST (a); \
         CREATE TABLE tab3_1 PARTITION OF tab3 FOR VALUES IN (0, 1, 2, 3, 5, 6); \
         INSERT INTO tab2 VALUES (1); \
         CREATE PUBLICATION p FOR TABLE tab2, tab2_1, tab3_1 WITH (publish_via_partition_root = true)",
    );
    t.dests(
        "CREATE TABLE tab2 (a int PRIMARY KEY, c text DEFAULT 'sub_tab2', b text) PARTITION BY HASH (a); \
         CREATE TABLE tab2_h0 PARTITION OF tab2 FOR VALUES WITH (MODULUS 2, REMAINDER 0); \
         CREATE TABLE tab2_h1 PARTITION OF tab2 FOR VALUES WITH (MODULUS 2, REMAINDER 1); \
         CREATE TABLE tab3_1 (c text DEFAULT 'sub_tab3_1', b text, a int PRIMARY KEY)",
    );
    t.subscribe(&["p"], "", &[]).expect_code(0);
    t.sync_both();
    assert_eq!(
        t.expect_same("SELECT c, a FROM tab2 ORDER BY 1, 2"),
        "sub_tab2|1"
    );
    t.source("INSERT INTO tab2 VALUES (0), (3), (5); INSERT INTO tab3 VALUES (1), (0), (3), (5)");
    t.sync_both();
    assert_eq!(t.expect_same("SELECT a FROM tab2 ORDER BY 1"), "0\n1\n3\n5");
    assert_eq!(
        t.expect_same("SELECT c, a FROM tab3_1 ORDER BY 1, 2"),
        "sub_tab3_1|0\nsub_tab3_1|1\nsub_tab3_1|3\nsub_tab3_1|5"
    );
    // Within a source partition, then across them (a delete and an insert via the root).
    t.source("UPDATE tab2 SET a = 6 WHERE a = 5; UPDATE tab3 SET a = 6 WHERE a = 5; UPDATE tab2 SET a = 2 WHERE a = 6; UPDATE tab3 SET a = 2 WHERE a = 6");
    t.sync_both();
    assert_eq!(t.expect_same("SELECT a FROM tab2 ORDER BY 1"), "0\n1\n2\n3");
    assert_eq!(
        t.expect_same("SELECT a FROM tab3_1 ORDER BY 1"),
        "0\n1\n2\n3"
    );
    // A partition truncated on its own is not replicated through the root; the root is.
    t.source("TRUNCATE tab2_1");
    t.sync_both();
    assert_eq!(t.expect_same("SELECT count(*) FROM tab2"), "4");
    // A column dropped and added again on the source changes the root's column order.
    t.source("ALTER TABLE tab2 DROP b, ADD c text DEFAULT 'pub_tab2', ADD b text; INSERT INTO tab2 (a, b) VALUES (5, 'zzz'); TRUNCATE tab2, tab3");
    t.source("INSERT INTO tab2 (a, b) VALUES (6, 'aaa'), (1, 'xxx')");
    t.sync_both();
    assert_eq!(
        t.expect_same("SELECT a, b, c FROM tab2 ORDER BY 1"),
        "1|xxx|pub_tab2\n6|aaa|pub_tab2"
    );
}

#[test]
fn row_filter_028_ored_filters_a_publication_without_one_and_updates_that_enter_or_leave_the_filter()
 {
    let mut t = Twin::new("pg028a");
    t.everywhere(
        "CREATE TABLE tab_rowfilter_1 (a int PRIMARY KEY, b text); \
         CREATE TABLE tab_rowfilter_2 (c int PRIMARY KEY); \
         CREATE TABLE tab_rowfilter_4 (c int PRIMARY KEY)",
    );
    t.source(
        "ALTER TABLE tab_rowfilter_1 REPLICA IDENTITY FULL; \
         INSERT INTO tab_rowfilter_1 VALUES (1, 'not replicated'), (1500, 'filtered'), (1980, 'not filtered'); \
         INSERT INTO tab_rowfilter_1 SELECT g, 'test ' || g FROM generate_series(990, 1002) g; \
         INSERT INTO tab_rowfilter_2 SELECT generate_series(1, 20); INSERT INTO tab_rowfilter_4 SELECT generate_series(1, 10); \
         CREATE PUBLICATION p_1 FOR TABLE tab_rowfilter_1 WHERE (a > 1000 AND b <> 'filtered'), tab_rowfilter_2 WHERE (c % 2 = 0); \
         CREATE PUBLICATION p_2 FOR TABLE tab_rowfilter_2 WHERE (c % 3 = 0); \
         CREATE PUBLICATION p_4a FOR TABLE tab_rowfilter_4 WHERE (c % 2 = 0); CREATE PUBLICATION p_4b FOR TABLE tab_rowfilter_4",
    );
    let pubs = ["p_1", "p_2", "p_4a", "p_4b"];
    t.subscribe(&pubs, "", &[]).expect_code(0);
    t.sync_both();
    assert_eq!(
        t.expect_same("SELECT string_agg(a::text, ',' ORDER BY a) FROM tab_rowfilter_1"),
        "1001,1002,1980"
    );
    assert_eq!(
        t.expect_same("SELECT count(*), min(c), max(c) FROM tab_rowfilter_2"),
        "13|2|20"
    );
    assert_eq!(t.expect_same("SELECT count(*) FROM tab_rowfilter_4"), "10");
    t.source(
        "INSERT INTO tab_rowfilter_1 VALUES (800, 'test 800'), (1600, 'test 1600'), (1601, 'test 1601'), \
           (1602, 'filtered'), (1700, 'test 1700'); \
         UPDATE tab_rowfilter_1 SET b = NULL WHERE a = 1600; \
         UPDATE tab_rowfilter_1 SET b = 'test 1601 updated' WHERE a = 1601; \
         UPDATE tab_rowfilter_1 SET b = 'test 1602 updated' WHERE a = 1602; \
         DELETE FROM tab_rowfilter_1 WHERE a = 1700; \
         INSERT INTO tab_rowfilter_2 SELECT generate_series(21, 25); INSERT INTO tab_rowfilter_4 VALUES (0), (11), (12)",
    );
    let run = t.sync_both();
    assert_eq!(
        t.expect_same("SELECT a, b FROM tab_rowfilter_1 ORDER BY a"),
        "1001|test 1001\n1002|test 1002\n1601|test 1601 updated\n1602|test 1602 updated\n1980|not filtered"
    );
    assert_eq!(
        t.expect_same("SELECT count(*), max(c) FROM tab_rowfilter_2"),
        "16|24"
    );
    assert_eq!(
        t.expect_same("SELECT count(*), min(c), max(c) FROM tab_rowfilter_4"),
        "13|0|12"
    );
    assert!(!summary(&run).contains("conflicts"), "{}", run.stderr);
}

#[test]
fn row_filter_028_partitioned_and_inherited_tables_use_the_filter_of_what_publishes_them() {
    let mut t = Twin::new("pg028b");
    t.everywhere(
        "CREATE TABLE tab_rowfilter_partitioned (a int PRIMARY KEY, b int) PARTITION BY RANGE (a); \
         CREATE TABLE tab_rowfilter_less_10k PARTITION OF tab_rowfilter_partitioned FOR VALUES FROM (MINVALUE) TO (10000); \
         CREATE TABLE tab_rowfilter_greater_10k PARTITION OF tab_rowfilter_partitioned FOR VALUES FROM (10000) TO (MAXVALUE); \
         CREATE TABLE tab_rowfilter_inherited (a int); CREATE TABLE tab_rowfilter_child (b text) INHERITS (tab_rowfilter_inherited); \
         CREATE TABLE tab_rowfilter_viaroot_part (a int) PARTITION BY RANGE (a); \
         CREATE TABLE tab_rowfilter_viaroot_part_1 PARTITION OF tab_rowfilter_viaroot_part FOR VALUES FROM (1) TO (20)",
    );
    t.source(
        "INSERT INTO tab_rowfilter_partitioned VALUES (1, 100), (7000, 101), (15000, 102), (5500, 300), (2, 200), (6005, 201), (16000, 103); \
         INSERT INTO tab_rowfilter_inherited VALUES (10), (20); INSERT INTO tab_rowfilter_child VALUES (0, '0'), (30, '30'), (40, '40'); \
         CREATE PUBLICATION p_3 FOR TABLE tab_rowfilter_partitioned, tab_rowfilter_less_10k WHERE (a < 6000); \
         CREATE PUBLICATION p_inh FOR TABLE tab_rowfilter_inherited WHERE (a > 15); \
         CREATE PUBLICATION p_vr1 FOR TABLE tab_rowfilter_viaroot_part WHERE (a > 15) WITH (publish_via_partition_root); \
         CREATE PUBLICATION p_vr2 FOR TABLE ONLY tab_rowfilter_viaroot_part_1 WHERE (a < 15) WITH (publish_via_partition_root)",
    );
    t.subscribe(&["p_3", "p_inh", "p_vr2", "p_vr1"], "", &[])
        .expect_code(0);
    t.sync_both();
    // Without publish_via_partition_root the leaf's own filter applies, and the leaf
    // reached only through the root has none.
    assert_eq!(
        t.expect_same("SELECT a FROM tab_rowfilter_less_10k ORDER BY 1"),
        "1\n2\n5500"
    );
    assert_eq!(
        t.expect_same("SELECT a FROM tab_rowfilter_greater_10k ORDER BY 1"),
        "15000\n16000"
    );
    // The parent's filter applies to its children.
    assert_eq!(
        t.expect_same("SELECT a FROM tab_rowfilter_inherited ORDER BY 1"),
        "20\n30\n40"
    );
    t.source(
        "INSERT INTO tab_rowfilter_inherited VALUES (14), (16); INSERT INTO tab_rowfilter_child VALUES (13, '13'), (17, '17'); \
         INSERT INTO tab_rowfilter_viaroot_part VALUES (14), (15), (16)",
    );
    t.sync_both();
    assert_eq!(
        t.expect_same("SELECT a FROM tab_rowfilter_inherited ORDER BY 1"),
        "16\n17\n20\n30\n40"
    );
    // Through the root, the top-most published ancestor's filter alone.
    assert_eq!(
        t.expect_same("SELECT a FROM ONLY tab_rowfilter_viaroot_part_1"),
        "16"
    );
}

#[test]
fn column_list_031_quoted_names_missing_destination_columns_and_lists_through_the_root() {
    let mut t = Twin::new("pg031");
    t.source(
        "CREATE TABLE tab1 (a int PRIMARY KEY, \"B\" int, c int); \
         CREATE TABLE tab3 (\"a'\" int PRIMARY KEY, \"B\" varchar, \"c'\" int); \
         CREATE TABLE test_part (a int PRIMARY KEY, b text, c timestamptz) PARTITION BY LIST (a); \
         CREATE TABLE test_part_1_1 PARTITION OF test_part FOR VALUES IN (1, 2, 3, 4, 5, 6); \
         CREATE TABLE tab5 (a int PRIMARY KEY, b int, c int, d int); \
         CREATE PUBLICATION p1 FOR TABLE tab1 (a, \"B\"), tab3 (\"a'\", \"c'\"), test_part (a, b) WITH (publish_via_partition_root = true); \
         CREATE PUBLICATION p2 FOR TABLE tab5 (a, b); CREATE PUBLICATION p3 FOR TABLE tab5 (a, b); \
         INSERT INTO tab1 VALUES (1, 2, 3), (4, 5, 6); INSERT INTO tab3 VALUES (1, 2, 3), (4, 5, 6); \
         INSERT INTO test_part VALUES (1, 'abc', '2021-07-04 12:00:00'), (2, 'bcd', '2021-07-03 11:12:13'); \
         INSERT INTO tab5 VALUES (1, 11, 111, 1111), (2, 22, 222, 2222)",
    );
    // The destination lacks the columns the lists leave out.
    t.dests(
        "CREATE TABLE tab1 (a int PRIMARY KEY, \"B\" int, c int); CREATE TABLE tab3 (\"a'\" int PRIMARY KEY, \"c'\" int); \
         CREATE TABLE test_part (a int PRIMARY KEY, b text) PARTITION BY LIST (a); \
         CREATE TABLE test_part_1_1 PARTITION OF test_part FOR VALUES IN (1, 2, 3, 4, 5, 6); \
         CREATE TABLE tab5 (a int PRIMARY KEY, b int, d int)",
    );
    t.subscribe(&["p1", "p2", "p3"], "", &[]).expect_code(0);
    t.source(
        "INSERT INTO tab1 VALUES (2, 3, 4), (5, 6, 7); INSERT INTO tab3 VALUES (2, 3, 4), (5, 6, 7); \
         INSERT INTO test_part VALUES (3, 'xxx', '2022-02-01 10:00:00'), (4, 'yyy', '2022-03-02 15:12:13'); \
         INSERT INTO tab5 VALUES (3, 33, 333, 3333); \
         UPDATE tab1 SET \"B\" = 2 * \"B\" WHERE a = 1; UPDATE tab1 SET c = 2 * c WHERE a = 4; \
         UPDATE tab3 SET \"B\" = '2' WHERE \"a'\" = 1; UPDATE tab3 SET \"c'\" = 2 * \"c'\" WHERE \"a'\" = 1",
    );
    t.sync_both();
    assert_eq!(
        t.expect_same("SELECT * FROM tab1 ORDER BY a"),
        "1|4|\n2|3|\n4|5|\n5|6|"
    );
    assert_eq!(
        t.expect_same("SELECT * FROM tab3 ORDER BY \"a'\""),
        "1|6\n2|4\n4|6\n5|7"
    );
    assert_eq!(
        t.expect_same("SELECT * FROM test_part ORDER BY a"),
        "1|abc\n2|bcd\n3|xxx\n4|yyy"
    );
    assert_eq!(
        t.expect_same("SELECT * FROM tab5 ORDER BY a"),
        "1|11|\n2|22|\n3|33|"
    );
}

#[test]
fn bugs_100_partial_index_identity_index_that_differs_dropped_and_defaulted_columns() {
    let mut t = Twin::new("pg100");
    t.everywhere(
        "CREATE FUNCTION public.double(x int) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT 2 * $1'; \
         CREATE TABLE tab1 (a int PRIMARY KEY, b int); CREATE INDEX ON tab1 (b) WHERE a > public.double(1); \
         CREATE TABLE tab_replidentity_index (a int NOT NULL, b int NOT NULL); \
         CREATE UNIQUE INDEX idx_a ON tab_replidentity_index (a); CREATE UNIQUE INDEX idx_b ON tab_replidentity_index (b); \
         CREATE TABLE dropped_cols (a int, b_drop int, c int); \
         CREATE TABLE tab_default (a int)",
    );
    t.source(
        "ALTER TABLE tab_replidentity_index REPLICA IDENTITY USING INDEX idx_a; \
         ALTER TABLE dropped_cols REPLICA IDENTITY FULL; ALTER TABLE tab_default REPLICA IDENTITY FULL; \
         INSERT INTO tab_replidentity_index VALUES (1, 1), (2, 2); INSERT INTO dropped_cols VALUES (1, 1, 1); \
         INSERT INTO tab_default VALUES (1); \
         ALTER TABLE tab_default ADD COLUMN b bool DEFAULT false NOT NULL; INSERT INTO tab_default VALUES (2, true); \
         CREATE PUBLICATION p FOR ALL TABLES",
    );
    // The destination finds rows by another index.
    t.dests("ALTER TABLE tab_replidentity_index REPLICA IDENTITY USING INDEX idx_b; ALTER TABLE tab_default ADD COLUMN b bool");
    t.subscribe(&["p"], "", &[]).expect_code(0);
    t.source("INSERT INTO tab1 VALUES (1, 2)");
    t.sync_both();
    assert_eq!(t.expect_same("SELECT * FROM tab1"), "1|2");
    t.source("ALTER TABLE tab_replidentity_index REPLICA IDENTITY USING INDEX idx_b; UPDATE tab_replidentity_index SET a = -a WHERE a = 1; DELETE FROM tab_replidentity_index WHERE a = 2");
    t.sync_both();
    assert_eq!(
        t.expect_same("SELECT * FROM tab_replidentity_index"),
        "-1|1"
    );
    // A column dropped on both sides after the copy.
    t.everywhere("ALTER TABLE dropped_cols DROP COLUMN b_drop");
    t.source("UPDATE dropped_cols SET a = 100 WHERE a = 1");
    t.sync_both();
    assert_eq!(
        t.expect_same("SELECT count(*) FROM dropped_cols WHERE a = 100"),
        "1"
    );
    // A column added with a default on the source: its older rows hold it without having
    // been rewritten, and the old image must carry it to find them.
    assert_eq!(
        t.expect_same("SELECT a, b FROM tab_default ORDER BY a"),
        "1|f\n2|t"
    );
    t.source("UPDATE tab_default SET a = a + 1");
    let run = t.sync_both();
    assert_eq!(
        t.expect_same("SELECT a, b FROM tab_default ORDER BY a"),
        "2|f\n3|t"
    );
    assert!(!summary(&run).contains("conflicts"), "{}", run.stderr);
}
