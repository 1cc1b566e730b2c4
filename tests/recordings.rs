//! The recordings of real servers in `proto-fixtures/`: every one decodes to its expected
//! output, agrees with the server's own `test_decoding` view of the same changes, and the
//! set of them exercises every message kind each server version produces. Damaged
//! recordings are refused with the frame named. `record` then `decode --input` gives
//! what a live `decode` gives.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use pgsub_testkit as cluster;
use support::crosscheck::{self, Change};
use support::*;

fn recordings() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir("proto-fixtures").unwrap() {
        let dir = dir.unwrap().path();
        if !dir.file_name().unwrap().to_string_lossy().starts_with("pg") {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "pgrec") {
                out.push(f);
            }
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no recordings in proto-fixtures/");
    out
}

fn decode_input(path: &Path) -> Run {
    run(&["decode", "--input", path.to_str().unwrap(), "-q"])
}

#[test]
fn every_recording_decodes_to_its_expected_output() {
    for rec in recordings() {
        let expected = std::fs::read_to_string(rec.with_extension("jsonl")).unwrap();
        let out = decode_input(&rec).expect_code(0);
        assert!(
            out.stdout == expected,
            "{} decodes differently from {}",
            rec.display(),
            rec.with_extension("jsonl").display()
        );
        assert!(
            out.stdout.lines().count() > 3,
            "{}: almost empty",
            rec.display()
        );
    }
}

#[test]
fn decoded_changes_agree_with_the_servers_test_decoding_output() {
    for rec in recordings() {
        let td = std::fs::read_to_string(rec.with_extension("test_decoding")).unwrap();
        let lines = json_lines(&std::fs::read_to_string(rec.with_extension("jsonl")).unwrap());
        let header = std::fs::read(&rec).unwrap();
        let messages_on =
            String::from_utf8_lossy(&header[..header.len().min(4096)]).contains("messages 'true'");
        let mut theirs = crosscheck::from_test_decoding(&td);
        if !messages_on {
            // Without the `messages` option pgoutput does not send them; test_decoding does.
            for u in &mut theirs {
                u.retain(|c| !matches!(c, Change::Message { .. }));
            }
        }
        // Empty transactions carry nothing to compare; servers before 15 send them.
        theirs.retain(|u| !u.is_empty());
        let mut ours = crosscheck::from_json_lines(&lines);
        ours.retain(|u| !u.is_empty());
        assert_eq!(
            ours.len(),
            theirs.len(),
            "{}: {} committed units decoded, test_decoding shows {}",
            rec.display(),
            ours.len(),
            theirs.len()
        );
        let mut rows = 0;
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert_eq!(
                a.len(),
                b.len(),
                "{} unit {i}: {a:?}\nvs\n{b:?}",
                rec.display()
            );
            for (x, y) in a.iter().zip(b) {
                assert!(
                    x.matches(y),
                    "{} unit {i}:\n  pgsub: {x:?}\n  test_decoding: {y:?}",
                    rec.display()
                );
                rows += 1;
            }
        }
        assert!(rows > 0, "{}: nothing compared", rec.display());
    }
}

/// Message kinds every recording set of a major version must contain.
fn expected_kinds(major: u32) -> Vec<&'static str> {
    let mut k = vec![
        "begin", "commit", "relation", "type", "insert", "update", "delete", "truncate", "origin",
    ];
    if major >= 14 {
        k.extend([
            "message",
            "stream_start",
            "stream_stop",
            "stream_commit",
            "stream_abort",
        ]);
    }
    if major >= 15 {
        k.extend([
            "begin_prepare",
            "prepare",
            "commit_prepared",
            "rollback_prepared",
            "stream_prepare",
        ]);
    }
    k
}

#[test]
fn recordings_cover_every_message_kind_each_server_produces() {
    let mut by_version: std::collections::BTreeMap<u32, (BTreeSet<String>, bool)> =
        Default::default();
    for rec in recordings() {
        let dir = rec
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let major: u32 = dir.trim_start_matches("pg").parse().unwrap();
        let entry = by_version.entry(major).or_default();
        for v in json_lines(&std::fs::read_to_string(rec.with_extension("jsonl")).unwrap()) {
            entry.0.insert(v["kind"].as_str().unwrap().to_owned());
            if v["kind"] == "stream_abort" && v.get("abort_lsn").is_some() {
                entry.1 = true;
            }
            if v["kind"] == "insert"
                && v["new"]
                    .as_object()
                    .unwrap()
                    .values()
                    .any(|c| c.get("binary").is_some())
            {
                entry.0.insert("binary column".into());
            }
            if v["kind"] == "update"
                && v["new"]
                    .as_object()
                    .unwrap()
                    .values()
                    .any(|c| c.get("unchanged_toast").is_some())
            {
                entry.0.insert("unchanged toast".into());
            }
        }
    }
    assert!(
        by_version.contains_key(&15),
        "the local server's recordings are missing"
    );
    for (major, (kinds, abort_info)) in by_version {
        let mut want: Vec<&str> = expected_kinds(major);
        want.push("unchanged toast");
        if major >= 14 {
            want.push("binary column");
        }
        for k in want {
            assert!(
                kinds.contains(k),
                "PostgreSQL {major} recordings lack {k}: {kinds:?}"
            );
        }
        if major >= 16 {
            assert!(
                abort_info,
                "PostgreSQL {major}: no Stream Abort with abort_lsn (streaming=parallel)"
            );
        }
    }
}

fn damaged_copy(name: &str, f: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let src = recordings()
        .into_iter()
        .find(|p| p.ends_with("pg15/basic.pgrec"))
        .unwrap();
    let mut bytes = std::fs::read(src).unwrap();
    f(&mut bytes);
    let path = std::env::temp_dir().join(format!("pgsub-{name}-{}.pgrec", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn truncated_recording_names_the_incomplete_frame_after_decoding_the_whole_ones() {
    let path = damaged_copy("truncated", |b| b.truncate(b.len() - 40));
    let out = decode_input(&path).expect_code(1);
    assert!(out.stderr.contains("is truncated"), "{}", out.stderr);
    assert!(out.stderr.contains("frame "), "{}", out.stderr);
    assert!(
        out.kind("begin").len() > 5,
        "whole frames before the damage are decoded"
    );
}

#[test]
fn corrupt_byte_is_caught_by_the_crc_and_the_frame_named() {
    let path = damaged_copy("corrupt", |b| {
        let n = b.len();
        b[n / 2] ^= 0x55;
    });
    let out = decode_input(&path).expect_code(1);
    assert!(out.stderr.contains("is corrupt: CRC-32"), "{}", out.stderr);
    assert!(out.stderr.contains("frame "), "{}", out.stderr);
}

#[test]
fn recording_without_end_marker_is_reported_as_cut_short() {
    let path = damaged_copy("nomarker", |b| b.truncate(b.len() - 16));
    let out = decode_input(&path).expect_code(1);
    assert!(
        out.stderr.contains("without its end marker"),
        "{}",
        out.stderr
    );
}

#[test]
fn file_that_is_not_a_recording_exits_2() {
    let path = std::env::temp_dir().join(format!("pgsub-notrec-{}.txt", std::process::id()));
    std::fs::write(&path, "just some text\n").unwrap();
    let out = decode_input(&path).expect_code(2);
    assert!(
        out.stderr.contains("not a pgsub recording"),
        "{}",
        out.stderr
    );
    let out = run(&["decode", "--input", "/nonexistent/x.pgrec"]).expect_code(2);
    assert!(
        out.stderr.contains("/nonexistent/x.pgrec"),
        "{}",
        out.stderr
    );
}

#[test]
fn record_then_decode_input_gives_what_live_decode_gives() {
    let c = cluster::shared();
    let db = c.create_database("record_replay").unwrap();
    sql(
        c,
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, v text); CREATE PUBLICATION p FOR TABLE t;",
    );
    create_slot(c, &db, &db);
    sql(
        c,
        &db,
        "INSERT INTO t VALUES (1, 'a'), (2, 'b'); UPDATE t SET v = 'c' WHERE id = 1; DELETE FROM t WHERE id = 2;",
    );
    let src = source(c, &db);
    let live = decode(&src, "p", &db, &["--until", "caught-up", "--no-ack"]).expect_code(0);
    let file = std::env::temp_dir().join(format!("pgsub-{db}.pgrec"));
    let rec = record(&src, "p", &db, &file, &[]);
    assert!(rec.stderr.contains("pgsub record"), "{}", rec.stderr);
    let replay = decode_input(&file).expect_code(0);
    // The live stream may carry keepalives at other moments; the decoded messages match.
    assert_eq!(live.stdout, replay.stdout);
    assert_eq!(live.kind("insert").len(), 2);
    // record acknowledged what it synced to disk: nothing is sent again.
    let again = decode(&src, "p", &db, &["--until", "caught-up"]).expect_code(0);
    assert!(again.kind("insert").is_empty());
}
