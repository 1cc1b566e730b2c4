//! `--metrics-addr`: a running `sync` (and `decode`) answers `GET /metrics` with every
//! documented metric, and the values follow the work done.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use support::*;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// The value of one series (`name{labels}`), when present.
fn value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn wait_for(port: u16, what: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    eventually("metrics never showed it", Duration::from_secs(60), || {
        last = scrape(port).unwrap_or_default();
        what(&last)
    });
    last
}

#[test]
fn sync_serves_every_documented_metric_and_they_follow_the_work() {
    let (s, d, db) = pair("metrics_sync");
    sql(s, &db, MANAGED_SCHEMA);
    sql(s, &db, MANAGED_ROWS);
    let (src, dst) = (s.conninfo(&db), d.conninfo(&db));
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = start(pgsub().args(sync_args(
        &src,
        &dst,
        "pub_all_tables",
        &db,
        &[
            "--create-slot",
            "--schema",
            "create",
            "--metrics-addr",
            &addr,
        ],
    )));
    let body = wait_for(port, |b| b.contains("pgsub_copy_tables_remaining 0"));
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(
        body.contains("Content-Type: text/plain; version=0.0.4"),
        "{body}"
    );
    assert_eq!(
        value(&body, "pgsub_copy_rows{table=\"public.test_table\"}"),
        Some(2.0),
        "{body}"
    );

    sql(
        s,
        &db,
        "ALTER TABLE test_table_2 REPLICA IDENTITY FULL; ALTER TABLE test_table_3 REPLICA IDENTITY FULL",
    );
    sql(
        s,
        &db,
        "INSERT INTO test_table SELECT generate_series(10, 109); UPDATE test_table_2 SET id = id + 1; DELETE FROM test_table_3",
    );
    let body = wait_for(port, |b| {
        value(b, "pgsub_applied_rows_total{op=\"insert\"}") == Some(100.0)
            && value(b, "pgsub_applied_rows_total{op=\"delete\"}") == Some(2.0)
    });
    for m in pgsub::output::metrics::ALL {
        assert!(
            body.contains(&format!("# TYPE {} ", m.name)),
            "{} missing:\n{body}",
            m.name
        );
    }
    assert_eq!(
        value(&body, "pgsub_applied_rows_total{op=\"update\"}"),
        Some(2.0)
    );
    assert_eq!(
        value(
            &body,
            "pgsub_rows_total{table=\"public.test_table\",op=\"insert\"}"
        ),
        Some(100.0)
    );
    assert_eq!(
        value(&body, "pgsub_messages_total{kind=\"insert\"}"),
        Some(100.0)
    );
    assert_eq!(value(&body, "pgsub_reconnects_total"), Some(0.0));
    let received = value(&body, "pgsub_received_lsn").unwrap();
    let acked = value(&body, "pgsub_acknowledged_lsn").unwrap();
    assert!(received > 0.0 && acked <= received, "{body}");
    // Unknown paths are answered, not hung up on.
    let mut s404 = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s404.write_all(b"GET /nothing HTTP/1.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s404.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
    terminate(&child);
    assert!(child.wait().unwrap().success());
}

#[test]
fn decode_serves_metrics_and_a_busy_port_is_a_clear_error() {
    let c = pgsub_testkit::shared();
    let db = c.create_database("metrics_decode").unwrap();
    sql(c, &db, MANAGED_SCHEMA);
    let src = c.conninfo(&db);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let child = start(pgsub().args([
        "decode",
        "--source",
        &src,
        "--publication",
        "pub1",
        "--slot",
        &db,
        "--create-slot",
        "--metrics-addr",
        &addr,
        "--log-format",
        "json",
    ]));
    let _ = wait_for(port, |b| b.contains("pgsub_received_lsn"));
    sql(c, &db, MANAGED_ROWS);
    let body = wait_for(port, |b| {
        value(b, "pgsub_messages_total{kind=\"insert\"}") == Some(2.0)
    });
    assert!(
        value(&body, "pgsub_transactions_total").unwrap() >= 1.0,
        "{body}"
    );
    // The port is taken now: a second run says so and exits 2.
    let out = run(&[
        "decode",
        "--source",
        &src,
        "--publication",
        "pub1",
        "--slot",
        "other",
        "--metrics-addr",
        &addr,
    ])
    .expect_code(2);
    assert!(
        out.stderr.contains("--metrics-addr") && out.stderr.contains("cannot listen"),
        "{}",
        out.stderr
    );
    terminate(&child);
    let done = wait(child, RUN_LIMIT).expect_code(0);
    // --log-format json: every log line on stderr is a JSON object.
    let logs = json_lines(&done.stderr);
    assert!(
        logs.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("http://{addr}/metrics")))),
        "{}",
        done.stderr
    );
}

#[test]
fn every_declared_metric_is_documented_in_the_readme() {
    let readme = include_str!("../README.md");
    for m in pgsub::output::metrics::ALL {
        assert!(
            readme.contains(&format!("`{}", m.name)),
            "{} is not in README.md",
            m.name
        );
    }
}
