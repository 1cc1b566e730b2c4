//! The operator's commands against real servers: `status` (a native subscription and a
//! pgsub sync side by side, lag in bytes, the inactive-slot warning, no password shown),
//! `drop` (refuses an active slot unless --force) and `sequences`.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

const PASSWORD: &str = "Sup3rSecretPw";

fn status_json(src: &str, dst: &str) -> (Value, Run) {
    let out = run(&["status", "--source", src, "--dest", dst, "--format", "json"]).expect_code(0);
    (out.kind("status")[0].clone(), out)
}

fn sub<'a>(status: &'a Value, kind: &str, name: &str) -> &'a Value {
    status["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == kind && s["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} subscription {name} in {status}"))
}

#[test]
fn status_shows_a_native_subscription_and_a_pgsub_sync_with_their_lag_and_no_password() {
    let (s, d, db) = pair("status");
    let role = format!("{db}_repl");
    sql(
        s,
        &db,
        &format!(
            "CREATE ROLE {role} LOGIN REPLICATION PASSWORD '{PASSWORD}';
             CREATE TABLE a (id int PRIMARY KEY, pad text);
             CREATE TABLE b (id int PRIMARY KEY, pad text);
             GRANT SELECT ON a, b TO {role};
             CREATE PUBLICATION pub_a FOR TABLE a;
             CREATE PUBLICATION pub_b FOR TABLE b;
             INSERT INTO a VALUES (1, 'x'); INSERT INTO b VALUES (1, 'y');
             SELECT pg_create_logical_replication_slot('{db}_idle', 'pgoutput');"
        ),
    );
    let src = s.conninfo_as(&db, &role, PASSWORD);
    sql(
        d,
        &db,
        &format!(
            "CREATE TABLE a (id int PRIMARY KEY, pad text);
             CREATE TABLE b (id int PRIMARY KEY, pad text);
             CREATE SUBSCRIPTION native_a CONNECTION '{src}' PUBLICATION pub_a WITH (slot_name = '{db}_native');"
        ),
    );
    let dst = d.conninfo(&db);
    run_args(&sync_args(
        &src,
        &dst,
        "pub_b",
        &db,
        &["--create-slot", "--until", "caught-up"],
    ))
    .expect_code(0);
    // Wait for the native subscription to have copied and caught up.
    let target = current_wal(s, &db);
    eventually(
        "the native subscription did not copy",
        Duration::from_secs(60),
        || native_caught_up(d, &db, target),
    );

    // The native subscription stops; 2 MB are written to its table only.
    sql(d, &db, "ALTER SUBSCRIPTION native_a DISABLE");
    // DISABLE does not wait for the apply worker to exit: until its walsender is gone it
    // may still apply (and confirm) what is written next.
    let native_slot = format!("{db}_native");
    eventually(
        "the native subscription's worker did not stop",
        Duration::from_secs(60),
        || !slot_active(s, &db, &native_slot),
    );
    let before = current_wal(s, &db);
    sql(
        s,
        &db,
        "INSERT INTO a SELECT g, repeat('z', 1000) FROM generate_series(2, 2001) g",
    );
    let after = current_wal(s, &db);
    let written = after.bytes_since(before);
    assert!(written > 2_000_000, "{written}");
    // pgsub catches up: its slot confirms past WAL its publication does not carry.
    run_args(&sync_args(
        &src,
        &dst,
        "pub_b",
        &db,
        &["--until", "caught-up"],
    ))
    .expect_code(0);

    let (st, out) = status_json(&src, &dst);
    let native = sub(&st, "native", "native_a");
    assert_eq!(native["enabled"], false);
    assert_eq!(native["slot"], format!("{db}_native"));
    assert!(
        native["applied_lsn"].is_string(),
        "the origin's position: {native}"
    );
    assert!(
        native["lag_bytes"].as_u64().unwrap() >= written,
        "the native subscription is behind by at least what was written: {native}"
    );
    let mine = sub(&st, "pgsub", &db);
    // Other tests write to the same source cluster meanwhile, so lags are compared with
    // each other: pgsub's slot confirmed past the 2 MB, the native one did not.
    let (native_lag, my_lag) = (
        native["lag_bytes"].as_u64().unwrap(),
        mine["lag_bytes"].as_u64().unwrap(),
    );
    assert!(
        native_lag >= my_lag + written,
        "pgsub caught up past what was written, the native subscription did not: {mine} {native}"
    );
    let my_slot = st["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["slot_name"] == db.as_str())
        .unwrap();
    let confirmed: pgsub::Lsn = my_slot["confirmed_flush_lsn"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(confirmed >= after, "{my_slot}");
    let current: pgsub::Lsn = st["source_lsn"].as_str().unwrap().parse().unwrap();
    let applied: pgsub::Lsn = mine["applied_lsn"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        my_lag,
        current.bytes_since(confirmed.max(applied)),
        "lag = source position - what was applied or confirmed"
    );
    assert_eq!(mine["running"], false);
    // The conninfo is shown, redacted.
    assert!(
        native["conninfo"].as_str().unwrap().contains("********"),
        "{native}"
    );
    // The idle slot and the stopped native one are flagged.
    let warnings = st["warnings"].to_string();
    assert!(
        warnings.contains(&format!("\\\"{db}_idle\\\" is inactive")),
        "{warnings}"
    );
    assert!(
        warnings.contains(&format!("\\\"{db}_native\\\" is inactive")),
        "{warnings}"
    );
    let slot = st["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["slot_name"] == format!("{db}_native"))
        .unwrap();
    assert!(
        slot["retained_bytes"].as_u64().unwrap() >= written,
        "{slot}"
    );
    assert!(!out.stdout.contains(PASSWORD) && !out.stderr.contains(PASSWORD));

    // Running again: the worker shows, and the lag goes.
    sql(d, &db, "ALTER SUBSCRIPTION native_a ENABLE");
    eventually(
        "the native subscription did not catch up",
        Duration::from_secs(60),
        || {
            let (st, _) = status_json(&src, &dst);
            let native = sub(&st, "native", "native_a");
            native["running"] == true
                && native["lag_bytes"].as_u64().unwrap() < written
                && st["senders"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x["slot"] == format!("{db}_native"))
        },
    );
    let text = run(&["status", "--source", &src, "--dest", &dst]).expect_code(0);
    assert!(
        text.stdout.contains("native_a") && text.stdout.contains(&db),
        "{}",
        text.stdout
    );
    assert!(!text.stdout.contains(PASSWORD) && !text.stderr.contains(PASSWORD));
    sql(d, &db, "DROP SUBSCRIPTION native_a");
    sql(
        s,
        &db,
        &format!("SELECT pg_drop_replication_slot('{db}_idle')"),
    );
}

#[test]
fn drop_refuses_an_active_slot_unless_forced_and_removes_slot_and_progress() {
    let (s, d, db) = pair("dropcmd");
    sql(s, &db, MANAGED_SCHEMA);
    sql(s, &db, MANAGED_ROWS);
    let (src, dst) = (s.conninfo(&db), d.conninfo(&db));
    let sync = |extra: &[&str]| {
        let mut all = vec!["--schema", "create"];
        all.extend_from_slice(extra);
        sync_args(&src, &dst, "pub_all_tables", &db, &all)
    };
    run_args(&sync(&["--create-slot", "--until", "caught-up"])).expect_code(0);
    let mut running = start(pgsub().args(sync(&[])));
    eventually(
        "the sync did not start streaming",
        Duration::from_secs(30),
        || slot_active(s, &db, &db),
    );
    let out = run(&["drop", "--source", &src, "--dest", &dst, "--slot", &db]).expect_code(2);
    assert!(
        out.stderr.contains("is in use by the process with PID"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
    assert_eq!(sql(d, &db, "SELECT count(*) FROM pgsub.progress"), "1");
    let origins = || {
        sql(
            d,
            &db,
            &format!("SELECT count(*) FROM pg_replication_origin WHERE roname = 'pgsub_{db}_{db}'"),
        )
    };
    assert_eq!(origins(), "1", "the sync's writes carry its origin");

    let out = run(&[
        "drop", "--source", &src, "--dest", &dst, "--slot", &db, "--force",
    ])
    .expect_code(0);
    assert!(
        out.stdout
            .contains(&format!("dropped replication slot \"{db}\"")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("removed the progress"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("removed 3 row(s)"), "{}", out.stdout);
    assert_eq!(
        sql(
            s,
            &db,
            &format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{db}'")
        ),
        "0"
    );
    assert_eq!(sql(d, &db, "SELECT count(*) FROM pgsub.progress"), "0");
    assert_eq!(sql(d, &db, "SELECT count(*) FROM pgsub.tables"), "0");
    // The replicated tables are left alone.
    assert_eq!(sql(d, &db, "SELECT count(*) FROM test_table"), "2");
    let _ = running.kill();
    let _ = running.wait();
    // Again: nothing left, and it says so.
    let out = run(&["drop", "--source", &src, "--dest", &dst, "--slot", &db]).expect_code(0);
    assert!(out.stdout.contains("nothing to drop"), "{}", out.stdout);
    // The origin, held by the sync until it ended, is gone with one drop or the other:
    // it no longer takes one of the destination's origin states.
    assert_eq!(origins(), "0", "{}", out.stdout);
}

#[test]
fn sequences_end_at_least_at_the_source_values_and_never_go_backwards() {
    let (s, d, db) = pair("seqs");
    let schema = "
        CREATE TABLE s1 (id serial PRIMARY KEY, v text);
        CREATE TABLE s2 (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text);
        CREATE TABLE s3 (id bigserial PRIMARY KEY);
        CREATE SEQUENCE loose;";
    sql(s, &db, schema);
    sql(s, &db, "CREATE PUBLICATION pub FOR TABLE s1, s2, s3");
    sql(d, &db, schema);
    sql(
        s,
        &db,
        "INSERT INTO s1 (v) SELECT 'x' FROM generate_series(1, 50);
         INSERT INTO s2 (v) SELECT 'x' FROM generate_series(1, 70);
         SELECT nextval('loose') FROM generate_series(1, 5);",
    );
    sql(d, &db, "SELECT setval('s3_id_seq', 1000)");
    let (src, dst) = (s.conninfo(&db), d.conninfo(&db));
    let out = run(&[
        "sequences",
        "--source",
        &src,
        "--dest",
        &dst,
        "--publication",
        "pub",
        "--dry-run",
    ])
    .expect_code(0);
    assert!(
        out.stdout
            .contains("public.s1_id_seq (owned by public.s1): would be set to 50"),
        "{}",
        out.stdout
    );
    assert_eq!(sql(d, &db, "SELECT last_value FROM s1_id_seq"), "1");

    let out = run(&[
        "sequences",
        "--source",
        &src,
        "--dest",
        &dst,
        "--publication",
        "pub",
        "--format",
        "json",
    ])
    .expect_code(0);
    let by_name = |n: &str| {
        out.kind("sequence")
            .into_iter()
            .find(|x| x["name"] == n)
            .unwrap_or_else(|| panic!("{n}: {}", out.stdout))
    };
    assert_eq!(by_name("s1_id_seq")["action"], "set");
    assert_eq!(by_name("s2_id_seq")["action"], "set");
    assert_eq!(by_name("s3_id_seq")["action"], "unused_on_source");
    assert!(
        out.stdout.lines().all(|l| !l.contains("loose")),
        "not owned by a published table"
    );
    let next: i64 = sql(d, &db, "INSERT INTO s1 (v) VALUES ('after') RETURNING id")
        .parse()
        .unwrap();
    assert_eq!(next, 51);
    let next: i64 = sql(d, &db, "INSERT INTO s2 (v) VALUES ('after') RETURNING id")
        .parse()
        .unwrap();
    assert_eq!(next, 71);

    // A destination sequence ahead of the source's is reported and left alone.
    sql(
        s,
        &db,
        "INSERT INTO s3 SELECT nextval('s3_id_seq') FROM generate_series(1, 10)",
    );
    let out = run(&[
        "sequences",
        "--source",
        &src,
        "--dest",
        &dst,
        "--schema",
        "public",
    ])
    .expect_code(0);
    assert!(out.stdout.contains("public.s3_id_seq (owned by public.s3): NOT set: the destination is at 1000, ahead of the source's 10"), "{}", out.stdout);
    assert!(
        out.stdout.contains("public.loose: set to 5"),
        "{}",
        out.stdout
    );
    assert_eq!(sql(d, &db, "SELECT last_value FROM s3_id_seq"), "1000");
}

#[test]
fn status_on_a_managed_destination_reads_subscriptions_through_aiven_extras() {
    // A destination of its own: pg_subscription is closed to ordinary roles there, as on
    // a managed service, and an aiven_extras stand-in lists the subscriptions.
    let d = &pgsub_testkit::Cluster::start(pgsub_testkit::ClusterOptions::default()).unwrap();
    let s = pgsub_testkit::shared();
    let db = s.create_database("status_aiven").unwrap();
    let role = format!("{db}_repl");
    sql(
        s,
        &db,
        &format!(
            "CREATE ROLE {role} LOGIN REPLICATION PASSWORD '{PASSWORD}';
             CREATE TABLE a (id int PRIMARY KEY); GRANT SELECT ON a TO {role};
             CREATE PUBLICATION pub_a FOR TABLE a;"
        ),
    );
    let src = s.conninfo_as(&db, &role, PASSWORD);
    sql(d, "postgres", "CREATE DATABASE defaultdb");
    support::aiven_extras::install(d, "defaultdb", "avnadmin", &format!("dest-{PASSWORD}"));
    sql(
        d,
        "defaultdb",
        &format!(
            "CREATE TABLE a (id int PRIMARY KEY);
             CREATE SUBSCRIPTION managed CONNECTION '{src}' PUBLICATION pub_a WITH (slot_name = '{db}_managed');"
        ),
    );
    let dst = d.conninfo_as("defaultdb", "avnadmin", &format!("dest-{PASSWORD}"));
    let (st, out) = status_json(&src, &dst);
    let managed = sub(&st, "native", "managed");
    assert_eq!(managed["via"], "aiven_extras", "{managed}");
    assert_eq!(managed["slot"], format!("{db}_managed"));
    assert_eq!(managed["publications"], serde_json::json!(["pub_a"]));
    let conninfo = managed["conninfo"].as_str().unwrap();
    assert!(conninfo.contains("password=********"), "{conninfo}");
    // Without the origin's position, the lag comes from the slot's confirmed position.
    assert!(managed["applied_lsn"].is_null(), "{managed}");
    assert!(managed["lag_bytes"].is_u64(), "{managed}");
    let text = run(&["status", "--source", &src, "--dest", &dst]).expect_code(0);
    for o in [&out, &text] {
        assert!(
            !o.stdout.contains(PASSWORD) && !o.stderr.contains(PASSWORD),
            "{}{}",
            o.stdout,
            o.stderr
        );
    }
    assert!(text.stdout.contains("managed"), "{}", text.stdout);
    sql(d, "defaultdb", "DROP SUBSCRIPTION managed");
}
