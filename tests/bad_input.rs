//! Bad input gets a clear error, the documented exit code, and loses nothing: wrong
//! password, unknown user, `wal_level` not logical, missing publication, missing,
//! active or invalidated slot, unusable options, broken connection strings.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use pgsub_testkit::{self as cluster, Cluster, ClusterOptions, PgBin};
use support::*;

fn decode_args<'a>(src: &'a str, slot: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "decode",
        "--source",
        src,
        "--publication",
        "p",
        "--slot",
        slot,
    ];
    v.extend_from_slice(extra);
    v
}

fn setup(prefix: &str) -> (&'static Cluster, String) {
    let c = cluster::shared();
    let db = c.create_database(prefix).unwrap();
    sql(
        c,
        &db,
        "CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION p FOR TABLE t;",
    );
    (c, db)
}

#[test]
fn wrong_password_exits_2_with_the_servers_message_and_no_password() {
    let (c, db) = setup("bad_password");
    let user = format!("{db}_u");
    sql(
        c,
        &db,
        &format!("CREATE ROLE {user} LOGIN REPLICATION PASSWORD 'right-one'"),
    );
    let src = c.conninfo_as(&db, &user, "Wr0ngPa55word");
    let out = run(&decode_args(&src, &db, &[])).expect_code(2);
    assert!(
        out.stderr.contains("password authentication failed"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("28P01"), "{}", out.stderr);
    assert!(!out.stderr.contains("Wr0ngPa55word") && !out.stdout.contains("Wr0ngPa55word"));
    // The same as a URI, with the password in the user info.
    let uri = format!(
        "postgres://{user}:Wr0ngPa55word@{}:{}/{db}",
        c.host(),
        c.port()
    );
    let out = run(&decode_args(&uri, &db, &[])).expect_code(2);
    assert!(!out.stderr.contains("Wr0ngPa55word"), "{}", out.stderr);
}

#[test]
fn unknown_user_exits_2_without_printing_the_password() {
    let (c, db) = setup("bad_user");
    let src = c.conninfo_as(&db, "nobody_here", "s3cr3t-value");
    let out = run(&decode_args(&src, &db, &[])).expect_code(2);
    assert!(out.stderr.contains("nobody_here"), "{}", out.stderr);
    assert!(!out.stderr.contains("s3cr3t-value"));
}

#[test]
fn missing_password_says_where_to_put_one() {
    let (c, db) = setup("bad_nopass");
    let user = format!("{db}_u");
    sql(c, &db, &format!("CREATE ROLE {user} LOGIN PASSWORD 'x'"));
    let src = format!(
        "host={} port={} user={user} dbname={db}",
        c.host(),
        c.port()
    );
    let out = run_with(
        pgsub()
            .args(decode_args(&src, &db, &[]))
            .env("HOME", std::env::temp_dir().join("pgsub-no-home")),
    )
    .expect_code(2);
    assert!(out.stderr.contains("PGPASSWORD"), "{}", out.stderr);
    assert!(out.stderr.contains(".pgpass"), "{}", out.stderr);
}

#[test]
fn wal_level_replica_exits_2_and_says_how_to_fix_it() {
    let c = Cluster::start(ClusterOptions {
        wal_level: "replica".into(),
        ..ClusterOptions::default()
    })
    .unwrap();
    let db = c.create_database("walrep").unwrap();
    let out = run(&decode_args(&c.conninfo(&db), "pgsub", &[])).expect_code(2);
    assert!(
        out.stderr.contains("ALTER SYSTEM SET wal_level = logical"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("restart"), "{}", out.stderr);
    assert!(out.stderr.contains("'replica'"), "{}", out.stderr);
}

/// A managed source refuses ALTER SYSTEM: the advice names the platform's own switch, the
/// platform recognised from the server's settings, roles and functions (here made to look
/// like each one on a real server).
#[test]
fn a_managed_source_gets_its_own_platforms_advice() {
    let c = Cluster::start(ClusterOptions {
        wal_level: "replica".into(),
        ..ClusterOptions::default()
    })
    .unwrap();
    let db = c.create_database("platform").unwrap();
    let src = c.conninfo(&db);
    let expect = |wanted: &str| {
        let out = run(&decode_args(&src, "pgsub", &[])).expect_code(2);
        assert!(out.stderr.contains(wanted), "{wanted}: {}", out.stderr);
        assert!(
            !out.stderr.contains("ALTER SYSTEM SET"),
            "{wanted}: {}",
            out.stderr
        );
    };
    sql(&c, &db, "CREATE ROLE rds_superuser");
    expect("set rds.logical_replication = 1 in the instance's DB parameter group");
    sql(
        &c,
        &db,
        "CREATE FUNCTION public.aurora_version() RETURNS text LANGUAGE sql AS $$SELECT '16'$$",
    );
    expect("rds.logical_replication = 1 in the DB cluster parameter group");
    // A role without REPLICATION is told to take RDS's replication role.
    sql(
        &c,
        &db,
        &format!("CREATE ROLE {db}_norepl LOGIN PASSWORD 'pw-norepl'"),
    );
    let out = run(&decode_args(
        &c.conninfo_as(&db, &format!("{db}_norepl"), "pw-norepl"),
        "pgsub",
        &[],
    ))
    .expect_code(2);
    assert!(
        out.stderr
            .contains(&format!("GRANT rds_replication TO \"{db}_norepl\"")),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("pw-norepl"), "{}", out.stderr);
    sql(
        &c,
        &db,
        "DROP FUNCTION public.aurora_version(); DROP ROLE rds_superuser; CREATE ROLE cloudsqlsuperuser",
    );
    expect("cloudsql.logical_decoding = on");
    sql(
        &c,
        &db,
        "DROP ROLE cloudsqlsuperuser; CREATE ROLE azure_pg_admin",
    );
    expect("az postgres flexible-server parameter set");
    sql(
        &c,
        &db,
        "DROP ROLE azure_pg_admin; CREATE SCHEMA aiven_extras",
    );
    expect("ask Aiven support");
    // Without the schema, an aiven_extras merely available (built into a self-managed
    // server, as it can be) is Aiven only beside the service's admin role.
    sql(&c, &db, "DROP SCHEMA aiven_extras; CREATE ROLE avnadmin");
    let available = sql(
        &c,
        &db,
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'aiven_extras'",
    ) == "1";
    let out = run(&decode_args(&src, "pgsub", &[])).expect_code(2);
    assert_eq!(
        out.stderr.contains("ask Aiven support"),
        available,
        "aiven_extras available: {available}: {}",
        out.stderr
    );
    sql(&c, &db, "DROP ROLE avnadmin");
    let out = run(&decode_args(&src, "pgsub", &[])).expect_code(2);
    assert!(
        out.stderr.contains("ALTER SYSTEM SET wal_level = logical"),
        "{}",
        out.stderr
    );
}

#[test]
fn missing_publication_exits_2_listing_the_existing_ones() {
    let (c, db) = setup("bad_pub");
    sql(c, &db, "CREATE PUBLICATION other_pub FOR TABLE t");
    create_slot(c, &db, &db);
    let src = source(c, &db);
    let out = run(&[
        "decode",
        "--source",
        &src,
        "--publication",
        "nope",
        "--slot",
        &db,
    ])
    .expect_code(2);
    assert!(
        out.stderr.contains("\"nope\" does not exist"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("other_pub, p"), "{}", out.stderr);
    assert!(!out.stderr.contains("aiven_extras"), "{}", out.stderr);
    // On Aiven (recognised by its extension's schema) a publication of all tables is made
    // through aiven_extras.
    sql(c, &db, "CREATE SCHEMA aiven_extras");
    let out = run(&[
        "decode",
        "--source",
        &src,
        "--publication",
        "nope",
        "--slot",
        &db,
    ])
    .expect_code(2);
    assert!(
        out.stderr
            .contains("aiven_extras.pg_create_publication_for_all_tables('nope'"),
        "{}",
        out.stderr
    );
}

#[test]
fn missing_slot_exits_2_and_is_not_created_silently() {
    let (c, db) = setup("bad_noslot");
    let out = run(&decode_args(&source(c, &db), &db, &[])).expect_code(2);
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
    assert!(out.stderr.contains("pgsub slot create"), "{}", out.stderr);
    assert!(out.stderr.contains("--create-slot"), "{}", out.stderr);
    let n = sql(
        c,
        &db,
        &format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{db}'"),
    );
    assert_eq!(n, "0");
}

#[test]
fn active_slot_is_waited_for_then_exits_2_naming_the_pid() {
    let (c, db) = setup("bad_active");
    create_slot(c, &db, &db);
    let src = source(c, &db);
    let holder = start(pgsub().args(decode_args(&src, &db, &[])));
    let deadline = Instant::now() + Duration::from_secs(30);
    let pid = loop {
        let pid = sql(
            c,
            &db,
            &format!(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = '{db}' AND active"
            ),
        );
        if !pid.is_empty() {
            break pid;
        }
        assert!(Instant::now() < deadline, "holder never became active");
        std::thread::sleep(Duration::from_millis(100));
    };
    let started = Instant::now();
    let out = run(&decode_args(&src, &db, &["--slot-wait", "1"])).expect_code(2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "it waited --slot-wait"
    );
    assert!(out.stderr.contains(&format!("PID {pid}")), "{}", out.stderr);
    assert!(out.stderr.contains("--slot-wait"), "{}", out.stderr);
    terminate(&holder);
    wait(holder, RUN_LIMIT).expect_code(0);
}

#[test]
fn released_slot_is_used_after_waiting() {
    let (c, db) = setup("bad_released");
    create_slot(c, &db, &db);
    let src = source(c, &db);
    let holder = pgsub()
        .args(decode_args(&src, &db, &[]))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sql(
        c,
        &db,
        &format!("SELECT active FROM pg_replication_slots WHERE slot_name = '{db}'"),
    ) != "t"
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    }
    let hid = holder.id().to_string();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        std::process::Command::new("kill")
            .args(["-TERM", &hid])
            .status()
            .unwrap();
    });
    sql(c, &db, "INSERT INTO t VALUES (7)");
    let out = run(&decode_args(
        &src,
        &db,
        &["--slot-wait", "30", "--until", "caught-up"],
    ));
    killer.join().unwrap();
    let _ = wait(holder, RUN_LIMIT);
    let out = out.expect_code(0);
    // The holder may have printed and acknowledged the insert before it stopped; either
    // way it appears exactly once across both runs' acknowledgement, never twice here.
    assert!(out.kind("insert").len() <= 1);
}

#[test]
fn invalidated_slot_exits_2_and_is_never_recreated() {
    let bin = PgBin::discover().unwrap();
    if bin.version_num < 130000 {
        // Slots are invalidated by max_slot_wal_keep_size, which PostgreSQL 13 introduced.
        eprintln!(
            "skipped on PostgreSQL {}: no slot invalidation before 13",
            bin.version
        );
        return;
    }
    let c = Cluster::start(ClusterOptions {
        extra_conf: vec![
            "max_slot_wal_keep_size = '1MB'".into(),
            "min_wal_size = '32MB'".into(),
            "max_wal_size = '32MB'".into(),
        ],
        ..ClusterOptions::default()
    })
    .unwrap();
    let db = c.create_database("lost").unwrap();
    sql(
        &c,
        &db,
        "CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION p FOR TABLE t; CREATE TABLE filler (x text);",
    );
    create_slot(&c, &db, "lost_slot");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        sql(
            &c,
            &db,
            "INSERT INTO filler SELECT repeat('z', 1000) FROM generate_series(1, 2000); SELECT pg_switch_wal(); CHECKPOINT;",
        );
        let status = sql(
            &c,
            &db,
            "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'lost_slot'",
        );
        if status == "lost" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slot never invalidated (wal_status {status})"
        );
    }
    let out = run(&decode_args(
        &c.conninfo(&db),
        "lost_slot",
        &["--create-slot"],
    ))
    .expect_code(2);
    assert!(out.stderr.contains("invalidated"), "{}", out.stderr);
    assert!(out.stderr.contains("pgsub slot drop"), "{}", out.stderr);
    assert_eq!(
        sql(
            &c,
            &db,
            "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'lost_slot'"
        ),
        "lost",
        "the slot was left as it was"
    );
}

#[test]
fn unparseable_connection_string_exits_2_naming_the_problem() {
    let out = run(&[
        "decode",
        "--source",
        "host=x bogus_key=1 password=hunter2",
        "--publication",
        "p",
    ])
    .expect_code(2);
    assert!(out.stderr.contains("bogus_key"), "{}", out.stderr);
    assert!(!out.stderr.contains("hunter2"));
}

#[test]
fn nothing_listening_exits_2_saying_it_cannot_connect() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let src = format!("host=127.0.0.1 port={port} user=u dbname=d password=pw sslmode=disable");
    let out = run(&decode_args(&src, "s", &[])).expect_code(2);
    assert!(out.stderr.contains("cannot connect"), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("127.0.0.1:{port}")),
        "{}",
        out.stderr
    );
}

#[test]
fn invalid_slot_name_is_a_usage_error() {
    let out = run(&decode_args("host=127.0.0.1", "Bad-Name", &[])).expect_code(2);
    assert!(out.stderr.contains("lower-case letters"), "{}", out.stderr);
}

#[test]
fn feature_the_server_lacks_exits_2_naming_both_versions() {
    let (c, db) = setup("bad_feature");
    create_slot(c, &db, &db);
    if c.version_num() >= 160000 {
        return; // parallel streaming exists from 16 on.
    }
    let out = run(&decode_args(
        &source(c, &db),
        &db,
        &["--streaming", "parallel"],
    ))
    .expect_code(2);
    assert!(out.stderr.contains("PostgreSQL 16"), "{}", out.stderr);
}

#[test]
fn missing_source_is_a_usage_error() {
    let out = run(&["decode", "--publication", "p"]).expect_code(2);
    assert!(out.stderr.contains("--source"), "{}", out.stderr);
}
