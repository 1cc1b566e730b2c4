//! `pgsub sync` keeps values identical: every common type family through the initial
//! copy and through the stream (under a source role with unusual DateStyle, IntervalStyle
//! and TimeZone), a 1 MB unchanged TOAST value, columns added and dropped on the source
//! mid-stream, and a destination statement slower than the source's
//! `wal_sender_timeout`.

mod support;

use pgsub_testkit::Cluster;
use support::*;

fn sync_as(s: &Cluster, dst: &str, db: &str, source: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "sync",
        "--source",
        source,
        "--dest",
        dst,
        "--publication",
        "p",
        "--slot",
        db,
        "--create-slot",
        "--until",
        "caught-up",
    ];
    args.extend_from_slice(extra);
    let _ = s;
    run(&args)
}

fn sync(s: &Cluster, d: &Cluster, db: &str, extra: &[&str]) -> Run {
    sync_as(s, &d.conninfo(db), db, &s.conninfo(db), extra)
}

const TYPES_SCHEMA: &str = "
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TYPE pair AS (x int, y text, d date);
CREATE TABLE builtin (
    id int PRIMARY KEY, i2 smallint, i4 int, i8 bigint, num numeric, num_p numeric(20,5),
    f4 real, f8 double precision, t text, vc varchar(20), ch char(5), b bytea, bo boolean,
    d date, tm time, tmz timetz, ts timestamp, tsz timestamptz, iv interval, u uuid,
    j json, jb jsonb, ia int[], ta text[], inet_v inet, bits bit varying(8), pt point
);
CREATE TABLE user_types (id int PRIMARY KEY, m mood, p posint, c pair, ms mood[]);
CREATE PUBLICATION p FOR ALL TABLES;
";

const TYPES_ROWS: &str = "
INSERT INTO builtin VALUES
 (1, -32768, -2147483648, -9223372036854775808, 'NaN', 12345.67891, '-Infinity', 1.7976931348623157e308,
  'héllo 👋 wörld', 'short', 'ab', '\\x00ff0a5c', true, '2024-02-29', '23:59:59.999999', '12:00+05:30',
  '1999-12-31 23:59:59.5', '2024-02-29 12:34:56.789+00', '1 year 2 mons 3 days 04:05:06.7', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '{\"k\": [1, 2, null]}', '{\"b\": 2, \"a\": 1}', ARRAY[1, NULL, 3], ARRAY['a,b', NULL, 'c\"d', ''],
  '192.168.1.1/24', B'1010', '(1.5,-2)'),
 (2, 32767, 2147483647, 9223372036854775807, '-123456789012345678901234567890.000000000000000001', NULL,
  'NaN', '-0', E'tab\\there\\nnewline \\\\ backslash', NULL, NULL, '', false, 'infinity', '00:00', NULL,
  '-infinity', 'infinity', '-178000000 years', NULL, 'null', '[]', '{}', '{}', '::1', B'', NULL),
 (3, 0, 0, 0, '0.000000000000000000000000000001', 0, 1.17549435e-38, 5e-324, '', '', '', NULL, NULL,
  '0001-01-01 BC', '24:00', '00:00:00-15:59', '4713-01-01 00:00:00 BC', '294276-12-31 23:59:59.999999+00', '-1 day +00:00:01',
  '00000000-0000-0000-0000-000000000000', '\"\"', '\"\\u00e9\"', ARRAY[[1,2],[3,4]], ARRAY['x'], '10.0.0.0/8', B'11111111', '(0,0)');
INSERT INTO user_types VALUES
 (1, 'happy', 5, ROW(1, 'a b', '2024-01-02'), ARRAY['sad', 'ok']::mood[]),
 (2, NULL, 1, ROW(NULL, NULL, NULL), ARRAY[NULL, 'happy']::mood[]),
 (3, 'sad', 2147483647, ROW(-1, 'quote\" and , comma', 'infinity'), '{}');
";

fn table_text(c: &Cluster, db: &str, table: &str) -> String {
    sql(c, db, &format!("SELECT t::text FROM {table} t ORDER BY id"))
}

#[test]
fn every_common_type_family_round_trips_with_identical_values() {
    every_common_type_family_round_trips("types", false);
}

#[test]
fn every_common_type_family_round_trips_with_identical_values_into_a_far_destination() {
    // Far away, inserts go as pipelined INSERT … SELECT FROM unnest, not COPY.
    every_common_type_family_round_trips("types_far", true);
}

fn every_common_type_family_round_trips(name: &str, far: bool) {
    let (s, d, db) = pair(name);
    let proxy = far.then(|| support::fault_proxy::FaultProxy::far(d.port()));
    let dst = match &proxy {
        Some(p) => p.through(&d.conninfo(&db)),
        None => d.conninfo(&db),
    };
    // A source role whose own settings differ from what pgsub reads values in.
    let role = format!("{db}_r");
    sql(
        s,
        &db,
        &format!(
            "CREATE ROLE {role} LOGIN REPLICATION PASSWORD 'pw';
             ALTER ROLE {role} SET DateStyle = 'SQL, DMY';
             ALTER ROLE {role} SET IntervalStyle = 'sql_standard';
             ALTER ROLE {role} SET TimeZone = 'Asia/Kathmandu';
             ALTER ROLE {role} SET extra_float_digits = -3;"
        ),
    );
    sql(s, &db, TYPES_SCHEMA);
    // (pg_read_all_data is 14+.)
    sql(
        s,
        &db,
        &format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"),
    );
    sql(
        d,
        &db,
        &TYPES_SCHEMA.replace("CREATE PUBLICATION p FOR ALL TABLES;", ""),
    );
    sql(s, &db, TYPES_ROWS);
    let source = s.conninfo_as(&db, &role, "pw");
    // The copy path.
    sync_as(s, &dst, &db, &source, &[]).expect_code(0);
    for table in ["builtin", "user_types"] {
        assert_eq!(
            table_text(d, &db, table),
            table_text(s, &db, table),
            "{table} after the copy"
        );
    }
    // The stream path: the same rows again under other keys, plus updates.
    sql(
        s,
        &db,
        "INSERT INTO builtin SELECT id + 10, i2, i4, i8, num, num_p, f4, f8, t, vc, ch, b, bo, d, tm, tmz, ts, tsz, iv, u, j, jb, ia, ta, inet_v, bits, pt FROM builtin;
         INSERT INTO user_types SELECT id + 10, m, p, c, ms FROM user_types;
         UPDATE builtin SET tsz = tsz + interval '1 hour', iv = iv * 2 WHERE id = 11;
         UPDATE user_types SET c = ROW(9, 'nine', '2000-01-01') WHERE id = 12;",
    );
    sync_as(s, &dst, &db, &source, &[]).expect_code(0);
    for table in ["builtin", "user_types"] {
        assert_eq!(
            table_text(d, &db, table),
            table_text(s, &db, table),
            "{table} after streaming"
        );
    }
    assert_eq!(sql(d, &db, "SELECT count(*) FROM builtin"), "6");
}

#[test]
fn unchanged_toast_value_of_one_megabyte_is_kept_byte_identical() {
    let (s, d, db) = pair("toast");
    sql(
        s,
        &db,
        "CREATE TABLE doc (id int PRIMARY KEY, body text, n int);
         ALTER TABLE doc ALTER COLUMN body SET STORAGE EXTERNAL;
         CREATE TABLE doc_full (id int, body text, n int);
         ALTER TABLE doc_full ALTER COLUMN body SET STORAGE EXTERNAL;
         ALTER TABLE doc_full REPLICA IDENTITY FULL;
         CREATE PUBLICATION p FOR ALL TABLES;",
    );
    sync(s, d, &db, &["--schema", "create"]).expect_code(0);
    sql(
        s,
        &db,
        "INSERT INTO doc SELECT 1, string_agg(md5(g::text), ''), 0 FROM generate_series(1, 32768) g;
         INSERT INTO doc_full SELECT 1, string_agg(md5((g * 7)::text), ''), 0 FROM generate_series(1, 32768) g;",
    );
    sync(s, d, &db, &["--schema", "create"]).expect_code(0);
    // Updates that leave the 1 MB value alone: pgoutput sends it as 'u', unchanged.
    sql(
        s,
        &db,
        "UPDATE doc SET n = n + 1; UPDATE doc_full SET n = n + 1;",
    );
    sync(s, d, &db, &["--schema", "create"]).expect_code(0);
    for table in ["doc", "doc_full"] {
        let q = format!("SELECT n, length(body), md5(body) FROM {table}");
        let dest = sql(d, &db, &q);
        assert_eq!(dest, sql(s, &db, &q), "{table}");
        assert!(dest.starts_with("1|1048576|"), "{table}: {dest}");
    }
}

#[test]
fn columns_added_and_dropped_on_the_source_mid_stream() {
    let (s, d, db) = pair("drift");
    sql(
        s,
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, v text); CREATE PUBLICATION p FOR ALL TABLES;
         INSERT INTO t VALUES (1, 'one');",
    );
    sync(s, d, &db, &["--schema", "create"]).expect_code(0);
    sql(
        s,
        &db,
        "ALTER TABLE t ADD COLUMN extra numeric;
         INSERT INTO t VALUES (2, 'two', 2.5);
         UPDATE t SET extra = 1.5 WHERE id = 1;
         ALTER TABLE t DROP COLUMN v;
         INSERT INTO t VALUES (3, 3.5);",
    );
    sync(s, d, &db, &["--schema", "create"]).expect_code(0);
    assert_eq!(
        sql(d, &db, "SELECT id, v, extra FROM t ORDER BY id"),
        "1|one|1.5\n2|two|2.5\n3||3.5",
        "the added column arrives; the dropped one stays on the destination, unset for new rows"
    );
    // Under the default --schema verify, a new source column stops pgsub with its name.
    sql(
        s,
        &db,
        "ALTER TABLE t ADD COLUMN late int; INSERT INTO t VALUES (4, 4.5, 4);",
    );
    let out = sync(s, d, &db, &[]).expect_code(2);
    assert!(out.stderr.contains("\"late\""), "{}", out.stderr);
    assert_eq!(
        sql(d, &db, "SELECT count(*) FROM t"),
        "3",
        "nothing of the stopped run applied"
    );
}

#[test]
fn a_destination_statement_slower_than_wal_sender_timeout_does_not_time_the_source_out() {
    let (s, d, db) = pair("slow");
    sql(
        s,
        &db,
        "CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION p FOR ALL TABLES;",
    );
    sync(s, d, &db, &["--schema", "create"]).expect_code(0);
    // A trigger that fires even under session_replication_role = replica and sleeps past
    // the source's wal_sender_timeout (10 s in the test clusters).
    sql(
        d,
        &db,
        "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(12); RETURN NEW; END $$;
         CREATE TRIGGER slow BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION slow();
         ALTER TABLE t ENABLE ALWAYS TRIGGER slow;",
    );
    sql(s, &db, "INSERT INTO t VALUES (1)");
    let out = sync(s, d, &db, &["--schema", "create"]).expect_code(0);
    assert_eq!(sql(d, &db, "SELECT count(*) FROM t"), "1");
    assert!(
        !s.log_tail(200).contains("replication timeout"),
        "the source timed pgsub out:\n{}",
        out.stderr
    );
}

#[test]
fn a_source_transaction_far_larger_than_memory_applies_once_with_bounded_memory() {
    let (s, d, db) = pair("bigtxn");
    sql(
        s,
        &db,
        "CREATE TABLE big (id int8 PRIMARY KEY, pad text); CREATE PUBLICATION p FOR ALL TABLES;",
    );
    sync(s, d, &db, &["--schema", "create"]).expect_code(0);
    // One transaction of about 400 MB of row data.
    sql(
        s,
        &db,
        "INSERT INTO big SELECT g, repeat(md5(g::text), 25) FROM generate_series(1, 500000) g",
    );
    let dst = d.conninfo(&db);
    let src = s.conninfo(&db);
    let (ok, peak, stderr) = run_measured(pgsub().args(sync_args(
        &src,
        &dst,
        "p",
        &db,
        &["--until", "caught-up", "--schema", "create"],
    )));
    assert!(ok, "sync failed: {stderr}");
    eprintln!("peak resident memory: {} MB", peak / 1024);
    assert_eq!(
        sql(d, &db, "SELECT count(*), sum(length(pad)) FROM big"),
        "500000|400000000"
    );
    assert!(
        peak < 150 * 1024,
        "pgsub's resident memory peaked at {} MB while applying a 400 MB transaction",
        peak / 1024
    );
}
