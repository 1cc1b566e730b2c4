//! `pgsub decode` against a scripted fake walsender that injects faults a real server
//! cannot produce on demand: the connection dropped inside a transaction, a keepalive
//! that demands an immediate reply, frames split into single bytes, impossible frame
//! lengths, an ErrorResponse or a CommandComplete in the middle of the stream, the
//! server's own CopyDone, a truncated pgoutput message and a Commit without its Begin.
//!
//! Each test runs the real `pgsub` binary against a [`FakeWalsender`] playing one script,
//! then checks pgsub's exit code, stdout and stderr, and the fake's log of every standby
//! status update pgsub sent: above all, that no flush position ever covers something
//! pgsub did not completely process, and that positions never go backwards. Everything
//! the fake waits for is a condition with a timeout, never a sleep.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pgsub::Lsn;
use pgsub::pgoutput::encode::encode;
use pgsub::pgoutput::{
    Begin, Column, Commit, Insert, PgOutput, Relation, RelationColumn, ReplicaIdentity, TupleData,
};
use pgsub::protocol::replication::XLOG_DATA_HEADER_LEN;
use pgsub::protocol::time::PgTimestamp;
use serde_json::Value;
use support::fake_walsender::{Await, Event, FakeConfig, FakeWalsender, Log, Step};
use support::{Run, pgsub, wait};

/// Longest a pgsub run may take here; every scenario normally ends within a second or two.
const RUN_LIMIT: Duration = Duration::from_secs(20);

/// The OID of the one table the scripts publish.
const RELID: u32 = 16_384;

/// Commit timestamp of the scripted transactions (2024-01-01 00:00:00 UTC).
const COMMIT_TS: PgTimestamp = PgTimestamp(757_382_400_000_000);

/// The slot's `confirmed_flush_lsn` in [`FakeConfig::new`]: the floor pgsub reports.
const SLOT_CONFIRMED: Lsn = Lsn(0x0100_0000);

/// One scripted source transaction and its positions.
#[derive(Debug, Clone, Copy)]
struct Txn {
    xid: u32,
    /// `wal_start` of the Begin: the transaction's first change.
    first_lsn: Lsn,
    /// Start of the commit record (`Begin.final_lsn`, `Commit.commit_lsn`).
    commit_lsn: Lsn,
    /// The byte after the commit record: what pgsub may acknowledge once it is processed.
    end_lsn: Lsn,
}

const T1: Txn = Txn {
    xid: 700,
    first_lsn: Lsn(0x0100_0028),
    commit_lsn: Lsn(0x0100_0100),
    end_lsn: Lsn(0x0100_0130),
};

const T2: Txn = Txn {
    xid: 701,
    first_lsn: Lsn(0x0100_0200),
    commit_lsn: Lsn(0x0100_0300),
    end_lsn: Lsn(0x0100_0330),
};

fn relation() -> Step {
    let column = |flags, name: &str, type_oid| RelationColumn {
        flags,
        name: name.to_owned(),
        type_oid,
        type_modifier: -1,
    };
    // pgoutput sends Relation with XLogData position 0/0.
    Step::xlog(
        Lsn::ZERO,
        PgOutput::Relation(Relation {
            xid: None,
            relid: RELID,
            namespace: "public".to_owned(),
            name: "items".to_owned(),
            replica_identity: ReplicaIdentity::Default,
            columns: vec![column(1, "id", 23), column(0, "note", 25)],
        }),
    )
}

fn begin(t: Txn) -> Step {
    Step::xlog(
        t.first_lsn,
        PgOutput::Begin(Begin {
            final_lsn: t.commit_lsn,
            commit_ts: COMMIT_TS,
            xid: t.xid,
        }),
    )
}

fn insert_message(id: u32, note: &str) -> PgOutput {
    PgOutput::Insert(Insert {
        xid: None,
        relid: RELID,
        new: TupleData::from_columns(&[
            Column::Text(Bytes::from(id.to_string())),
            Column::Text(Bytes::from(note.to_owned())),
        ]),
    })
}

/// The `n`th insert of `t` (its XLogData position lies between Begin and Commit).
fn insert(t: Txn, n: u64, id: u32, note: &str) -> Step {
    Step::xlog(
        Lsn(t.first_lsn.0 + 0x10 * (n + 1)),
        insert_message(id, note),
    )
}

fn commit(t: Txn) -> Step {
    // A logical walsender writes the Commit at the transaction's end_lsn.
    Step::xlog(
        t.end_lsn,
        PgOutput::Commit(Commit {
            flags: 0,
            commit_lsn: t.commit_lsn,
            end_lsn: t.end_lsn,
            commit_ts: COMMIT_TS,
        }),
    )
}

/// Begin, (Relation,) one Insert per row, Commit.
fn transaction(t: Txn, with_relation: bool, rows: &[(u32, &str)]) -> Vec<Step> {
    let mut steps = vec![begin(t)];
    if with_relation {
        steps.push(relation());
    }
    for (n, (id, note)) in rows.iter().enumerate() {
        steps.push(insert(t, n as u64, *id, note));
    }
    steps.push(commit(t));
    steps
}

/// The server ends the stream without CopyDone: CommandComplete, then ReadyForQuery. (A
/// real walsender at shutdown exits right after the CommandComplete instead; see
/// `source_shutdown_command_complete_then_disconnect_ends_the_stream_cleanly`.)
fn server_ends_stream() -> Vec<Step> {
    vec![
        Step::CommandComplete("COPY 0".to_owned()),
        Step::ReadyForQuery,
    ]
}

/// A `pgsub decode` command streaming from `fake`.
fn decode_command(cmd: &mut Command, fake: &FakeWalsender, extra: &[&str]) {
    cmd.args([
        "decode",
        "--source",
        &fake.conninfo(),
        "--publication",
        "p",
        "--slot",
        "s",
        "--slot-wait",
        "1",
    ])
    .args(extra)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
}

fn run_command(mut cmd: Command) -> Run {
    let child = cmd.spawn().expect("start pgsub");
    wait(child, RUN_LIMIT)
}

/// Runs `pgsub decode … extra` against a fake playing `script`; returns the run and the
/// fake's complete log.
fn scenario(script: Vec<Step>, extra: &[&str]) -> (Run, Log) {
    let fake = FakeWalsender::start(FakeConfig::new(script));
    let mut cmd = pgsub();
    decode_command(&mut cmd, &fake, extra);
    let run = run_command(cmd);
    (run, fake.finish())
}

/// Panics with everything known about a run.
fn explain(run: &Run, log: &Log) -> String {
    format!(
        "exit {}\n--- stdout\n{}\n--- stderr\n{}\n--- fake walsender log\n{}",
        run.code,
        run.stdout,
        run.stderr,
        log.render()
    )
}

/// Checks that flush and write positions never decrease from one update to the next.
fn assert_positions_never_go_backwards(run: &Run, log: &Log) {
    let updates = log.status_updates();
    for pair in updates.windows(2) {
        let (before, after) = (pair[0].2, pair[1].2);
        assert!(
            after.flush >= before.flush && after.write >= before.write,
            "a status update went backwards: {before:?} then {after:?}\n{}",
            explain(run, log)
        );
    }
}

/// Checks that every flush position lies between the slot's confirmed position and
/// `limit`, and that one reached `limit` exactly.
fn assert_acknowledged_exactly(run: &Run, log: &Log, limit: Lsn) {
    let flushes = log.flushes();
    assert!(
        flushes.iter().all(|f| *f <= limit),
        "pgsub acknowledged beyond {limit} (flushes {flushes:?})\n{}",
        explain(run, log)
    );
    assert!(
        flushes.iter().all(|f| *f >= SLOT_CONFIRMED),
        "pgsub reported a flush below the slot's confirmed_flush_lsn {SLOT_CONFIRMED} (flushes {flushes:?})\n{}",
        explain(run, log)
    );
    assert!(
        flushes.contains(&limit),
        "pgsub never acknowledged {limit} (flushes {flushes:?})\n{}",
        explain(run, log)
    );
}

fn lines_of_kind<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|v| v["kind"] == kind).collect()
}

/// Checks that stdout holds T1 completely: its Begin, its one row and its Commit.
fn assert_first_transaction_printed(run: &Run, log: &Log) {
    let lines = run.json();
    let begins = lines_of_kind(&lines, "begin");
    let commits = lines_of_kind(&lines, "commit");
    let inserts = lines_of_kind(&lines, "insert");
    assert!(
        begins.first().is_some_and(|b| b["xid"] == T1.xid)
            && commits
                .first()
                .is_some_and(|c| c["end_lsn"] == T1.end_lsn.to_string())
            && inserts
                .first()
                .is_some_and(|i| i["relation"] == "public.items" && i["new"]["id"] == "1"),
        "the first transaction is not on stdout\n{}",
        explain(run, log)
    );
}

#[test]
fn server_gone_mid_transaction_is_a_transient_error_and_nothing_unhandled_is_acknowledged() {
    let mut script = transaction(T1, true, &[(1, "first")]);
    // pgsub reports T1's end_lsn about 100 ms after processing it.
    script.push(Step::Await(Await::Flush(T1.end_lsn)));
    script.extend([begin(T2), insert(T2, 0, 2, "never committed")]);
    script.push(Step::Close);
    let (run, log) = scenario(script, &[]);

    log.assert_no_problems();
    assert_eq!(run.code, 1, "{}", explain(&run, &log));
    assert!(
        run.stderr.contains("closed the connection") && run.stderr.contains("streaming"),
        "stderr does not say the server closed the connection while streaming\n{}",
        explain(&run, &log)
    );
    assert!(
        run.stderr.contains("slot \"s\"") && run.stderr.contains("worth retrying"),
        "stderr names neither the slot nor what to do\n{}",
        explain(&run, &log)
    );
    assert_first_transaction_printed(&run, &log);
    assert_acknowledged_exactly(&run, &log, T1.end_lsn);
    assert_positions_never_go_backwards(&run, &log);
}

#[test]
fn keepalive_with_reply_requested_is_answered_at_once() {
    let wal_end = Lsn(0x0100_0400);
    let mut script = vec![
        // The first, unsolicited update at stream start.
        Step::Await(Await::StatusUpdates(1)),
        Step::keepalive(wal_end, true),
        Step::Await(Await::ReplyToLastSend),
    ];
    script.extend(server_ends_stream());
    // With an hour between periodic updates, any update after the keepalive is a reply.
    let (run, log) = scenario(script, &["--status-interval", "3600"]);

    log.assert_no_problems();
    assert_eq!(run.code, 0, "{}", explain(&run, &log));
    let keepalive_at = log
        .sent_index("keepalive")
        .unwrap_or_else(|| panic!("the keepalive was not sent\n{}", explain(&run, &log)));
    let keepalive_time = log.entries[keepalive_at].at;
    let (reply_at, reply_time, reply) = log
        .status_updates()
        .into_iter()
        .find(|(i, _, _)| *i > keepalive_at)
        .unwrap_or_else(|| panic!("no reply to the keepalive\n{}", explain(&run, &log)));
    let sent_between = log.entries[keepalive_at + 1..reply_at]
        .iter()
        .any(|e| matches!(e.event, Event::Sent(_)));
    assert!(
        !sent_between,
        "the fake sent something before the reply arrived\n{}",
        explain(&run, &log)
    );
    let delay = reply_time.duration_since(keepalive_time);
    assert!(
        delay < Duration::from_secs(5),
        "the reply took {delay:?}\n{}",
        explain(&run, &log)
    );
    // Nothing is open and nothing is unprocessed, so the keepalive's wal_end is the
    // position to confirm (an idle source must still let its slot advance).
    assert_eq!(
        (reply.write, reply.flush),
        (wal_end, wal_end),
        "{}",
        explain(&run, &log)
    );
    assert_positions_never_go_backwards(&run, &log);
}

#[test]
fn frame_split_across_reads_decodes_once() {
    let whole: Vec<Step> = [
        transaction(T1, true, &[(1, "first"), (2, "second")]),
        vec![Step::keepalive(Lsn(0x0100_0180), false)],
        transaction(T2, false, &[(3, "third")]),
    ]
    .concat();
    let ending = |steps: Vec<Step>| {
        let mut steps = steps;
        steps.push(Step::Await(Await::Flush(T2.end_lsn)));
        steps.extend(server_ends_stream());
        steps
    };
    let split: Vec<Step> = whole.iter().cloned().map(Step::byte_by_byte).collect();

    let (run_whole, log_whole) = scenario(ending(whole), &[]);
    log_whole.assert_no_problems();
    assert_eq!(run_whole.code, 0, "{}", explain(&run_whole, &log_whole));
    let (run_split, log_split) = scenario(ending(split), &[]);
    log_split.assert_no_problems();
    assert_eq!(run_split.code, 0, "{}", explain(&run_split, &log_split));

    let lines = run_split.json();
    let kinds: Vec<&str> = lines.iter().filter_map(|v| v["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "begin", "relation", "insert", "insert", "commit", "begin", "insert", "commit"
        ],
        "{}",
        explain(&run_split, &log_split)
    );
    assert_eq!(
        lines,
        run_whole.json(),
        "split frames decode differently from whole ones"
    );
    assert_acknowledged_exactly(&run_split, &log_split, T2.end_lsn);
}

#[test]
fn oversized_frame_length_is_refused_without_allocating() {
    let script = vec![
        Step::Await(Await::StatusUpdates(1)),
        // CopyData announcing 4 GiB - 16 bytes of body; nothing follows.
        Step::Raw(Bytes::from_static(b"d\xff\xff\xff\xf0")),
    ];
    let fake = FakeWalsender::start(FakeConfig::new(script));
    // Under a 3 GiB address-space limit, reserving a buffer for the announced length
    // aborts pgsub (killed by a signal) instead of passing unnoticed on an
    // overcommitting machine.
    let base = pgsub();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("ulimit -v 3145728 && exec \"$0\" \"$@\"")
        .arg(base.get_program());
    for (key, value) in base.get_envs() {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    decode_command(&mut cmd, &fake, &[]);
    let run = run_command(cmd);
    let log = fake.finish();

    log.assert_no_problems();
    assert_eq!(run.code, 1, "{}", explain(&run, &log));
    assert!(
        run.stderr.contains("malformed message") && run.stderr.contains("exceeds the limit"),
        "stderr does not name the oversized frame\n{}",
        explain(&run, &log)
    );
}

#[test]
fn frame_length_below_four_is_a_protocol_error() {
    let script = vec![
        Step::Await(Await::StatusUpdates(1)),
        // A length word must count itself: 3 is impossible.
        Step::Raw(Bytes::from_static(b"d\x00\x00\x00\x03")),
    ];
    let (run, log) = scenario(script, &[]);

    log.assert_no_problems();
    assert_eq!(run.code, 1, "{}", explain(&run, &log));
    assert!(
        run.stderr.contains("malformed message")
            && run.stderr.contains("message length")
            && run.stderr.contains("below the minimum of 4"),
        "stderr does not name the bad length\n{}",
        explain(&run, &log)
    );
}

#[test]
fn error_response_mid_stream_is_reported_with_the_servers_message() {
    let mut script = transaction(T1, true, &[(1, "first")]);
    script.push(Step::Await(Await::Flush(T1.end_lsn)));
    script.extend([
        Step::error("ERROR", "XX000", "something broke"),
        Step::ReadyForQuery,
    ]);
    let (run, log) = scenario(script, &[]);

    log.assert_no_problems();
    assert_eq!(run.code, 1, "{}", explain(&run, &log));
    assert!(
        run.stderr.contains("something broke") && run.stderr.contains("XX000"),
        "stderr does not carry the server's message and SQLSTATE\n{}",
        explain(&run, &log)
    );
    assert_first_transaction_printed(&run, &log);
    assert_acknowledged_exactly(&run, &log, T1.end_lsn);
}

#[test]
fn command_complete_without_copy_done_ends_the_stream_cleanly() {
    let mut script = transaction(T1, true, &[(1, "first")]);
    // A walsender ends the stream at shutdown only once the client confirmed everything.
    script.push(Step::Await(Await::Flush(T1.end_lsn)));
    script.extend(server_ends_stream());
    let (run, log) = scenario(script, &[]);

    log.assert_no_problems();
    assert_eq!(run.code, 0, "{}", explain(&run, &log));
    assert_first_transaction_printed(&run, &log);
    assert_acknowledged_exactly(&run, &log, T1.end_lsn);
    let updates = log.status_updates();
    let last = updates.last().map(|(_, _, u)| u.flush);
    assert_eq!(last, Some(T1.end_lsn), "{}", explain(&run, &log));
    // After CommandComplete the server has left COPY mode: a status update or a CopyDone
    // would be a protocol violation. pgsub should just say goodbye.
    let ended_at = log
        .sent_index("CommandComplete")
        .unwrap_or_else(|| panic!("CommandComplete not sent\n{}", explain(&run, &log)));
    let after_end = &log.entries[ended_at..];
    assert!(
        !after_end
            .iter()
            .any(|e| matches!(e.event, Event::StatusUpdate(_) | Event::CopyDone)),
        "pgsub sent CopyData or CopyDone after the server ended COPY\n{}",
        explain(&run, &log)
    );
    assert!(
        after_end
            .iter()
            .any(|e| matches!(e.event, Event::Terminate)),
        "pgsub did not close the connection with Terminate\n{}",
        explain(&run, &log)
    );
}

#[test]
fn truncated_pgoutput_message_names_the_frame_and_offset() {
    let mut script = transaction(T1, true, &[(1, "first")]);
    script.push(Step::Await(Await::Flush(T1.end_lsn)));
    script.push(begin(T2));
    // An Insert whose last value ("hello") is cut after two of its five bytes.
    let mut full = BytesMut::new();
    encode(&insert_message(2, "hello"), &mut full);
    let value_offset = full.len() - "hello".len();
    let truncated = full.freeze().slice(..value_offset + 2);
    script.push(Step::XLogDataBytes {
        wal_start: Lsn(T2.first_lsn.0 + 0x10),
        data: truncated,
    });
    let frame_number = script.iter().filter(|s| s.is_copy_data()).count();
    // Offsets count from the first byte of the CopyData payload: the XLogData header, then
    // the pgoutput message.
    let offset = XLOG_DATA_HEADER_LEN + value_offset;
    let (run, log) = scenario(script, &[]);

    log.assert_no_problems();
    assert_eq!(run.code, 1, "{}", explain(&run, &log));
    let frame = format!("CopyData message #{frame_number} ");
    let at = format!("(at byte {offset})");
    assert!(
        run.stderr.contains(&frame) && run.stderr.contains(&at),
        "stderr does not name {frame:?} and {at:?}\n{}",
        explain(&run, &log)
    );
    assert_first_transaction_printed(&run, &log);
    assert_acknowledged_exactly(&run, &log, T1.end_lsn);
}

#[test]
fn invariant_violation_commit_without_begin_stops_pgsub() {
    let mut script = transaction(T1, true, &[(1, "first")]);
    script.push(Step::Await(Await::Flush(T1.end_lsn)));
    script.push(commit(T2));
    let frame_number = script.iter().filter(|s| s.is_copy_data()).count();
    let (run, log) = scenario(script, &[]);

    log.assert_no_problems();
    assert_eq!(run.code, 1, "{}", explain(&run, &log));
    assert!(
        run.stderr.contains("invariant violated")
            && run.stderr.contains("without a Begin")
            && run
                .stderr
                .contains(&format!("CopyData message #{frame_number} ")),
        "stderr does not explain the broken invariant\n{}",
        explain(&run, &log)
    );
    // The stray Commit's end_lsn must never be confirmed.
    assert_acknowledged_exactly(&run, &log, T1.end_lsn);
}

#[test]
fn standby_status_updates_never_go_backwards_and_respect_no_ack() {
    let first_keepalive = Lsn(0x0100_0180);
    let second_keepalive = Lsn(0x0100_0380);
    let mut script = vec![Step::Await(Await::StatusUpdates(1))];
    script.extend(transaction(T1, true, &[(1, "first")]));
    script.extend([
        Step::keepalive(first_keepalive, true),
        Step::Await(Await::ReplyToLastSend),
    ]);
    script.extend(transaction(T2, false, &[(2, "second")]));
    script.extend([
        Step::keepalive(second_keepalive, true),
        Step::Await(Await::ReplyToLastSend),
    ]);
    script.extend(server_ends_stream());
    let (run, log) = scenario(script, &["--no-ack"]);

    log.assert_no_problems();
    assert_eq!(run.code, 0, "{}", explain(&run, &log));
    let updates = log.status_updates();
    assert!(updates.len() >= 3, "{}", explain(&run, &log));
    for (_, _, u) in &updates {
        assert!(
            u.flush.is_zero() && u.apply.is_zero() && !u.write.is_zero(),
            "with --no-ack flush and apply must be 0/0 and write the received position: {u:?}\n{}",
            explain(&run, &log)
        );
    }
    let last_write = updates.last().map(|(_, _, u)| u.write);
    assert_eq!(
        last_write,
        Some(second_keepalive),
        "{}",
        explain(&run, &log)
    );
    assert_positions_never_go_backwards(&run, &log);
    assert_eq!(run.kind("commit").len(), 2, "{}", explain(&run, &log));
}

#[test]
fn source_shutdown_command_complete_then_disconnect_ends_the_stream_cleanly() {
    // What walsender.c WalSndDone really does at source shutdown: ask for a reply until
    // the client's flush equals what was sent, then CommandComplete "COPY 0", pq_flush and
    // proc_exit — no ReadyForQuery, the connection just closes.
    let sent_ptr = Lsn(0x0100_0180);
    let mut script = transaction(T1, true, &[(1, "first")]);
    script.extend([
        Step::keepalive(sent_ptr, true),
        Step::Await(Await::Flush(sent_ptr)),
        Step::CommandComplete("COPY 0".to_owned()),
        Step::Close,
    ]);
    let (run, log) = scenario(script, &[]);

    log.assert_no_problems();
    assert_eq!(run.code, 0, "{}", explain(&run, &log));
    assert_first_transaction_printed(&run, &log);
    assert_acknowledged_exactly(&run, &log, sent_ptr);
}

#[test]
fn server_copy_done_is_answered_and_the_stream_ends_cleanly() {
    // The protocol lets either side end COPY first; the client answers the server's
    // CopyDone with its own, then reads CommandComplete and ReadyForQuery (the fake sends
    // those once it sees pgsub's CopyDone).
    let mut script = transaction(T1, true, &[(1, "first")]);
    script.extend([Step::Await(Await::Flush(T1.end_lsn)), Step::CopyDone]);
    let (run, log) = scenario(script, &[]);

    log.assert_no_problems();
    assert_eq!(run.code, 0, "{}", explain(&run, &log));
    assert!(
        log.has(|e| matches!(e, Event::CopyDone)),
        "pgsub did not answer the server's CopyDone\n{}",
        explain(&run, &log)
    );
    assert_first_transaction_printed(&run, &log);
    assert_acknowledged_exactly(&run, &log, T1.end_lsn);
}
