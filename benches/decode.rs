//! Decode throughput: frames + replication messages + pgoutput, on one core.
//!
//! Inputs are byte streams exactly as a walsender sends them (CopyData frames around
//! XLogData payloads): every recording in `proto-fixtures/`, and generated streams of the
//! shape the sync benchmark uses (int8 key, int, ~80 bytes of text) — 100 000 inserts, and
//! 100 000 updates with their old key. Reported per benchmark: time, throughput in bytes of
//! CopyData payload and in messages, and (divan's allocation profiler) allocations per
//! iteration; `one_insert_message` decodes a single Insert per iteration, so its
//! allocation count is the allocations per row message.
//!
//! Run: `cargo bench --bench decode` (figures in docs/benchmarks.md).

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use divan::Bencher;
use divan::counter::{BytesCount, ItemsCount};
use pgsub::Lsn;
use pgsub::pgoutput::{
    self, Begin, Column, ColumnRef, Commit, Decoder, Insert, OldTuple, PgOutput, Relation,
    RelationColumn, ReplicaIdentity, TupleData, Update,
};
use pgsub::protocol::frame::{FrameDecoder, write_copy_data};
use pgsub::protocol::replication::{ReplicationMessage, XLogData, write_xlog_data};
use pgsub::protocol::time::PgTimestamp;
use pgsub::stream::Session;

#[global_allocator]
static ALLOC: divan::AllocProfiler = divan::AllocProfiler::system();

fn main() {
    divan::main();
}

/// A stream of CopyData frames and what it holds.
struct Stream {
    wire: Bytes,
    payload_bytes: u64,
    messages: u64,
}

fn push(wire: &mut BytesMut, lsn: &mut u64, msg: &PgOutput) -> u64 {
    let mut body = BytesMut::new();
    pgoutput::encode::encode(msg, &mut body);
    *lsn += 64;
    let mut payload = BytesMut::new();
    write_xlog_data(
        &XLogData {
            wal_start: Lsn(*lsn),
            wal_end: Lsn(*lsn),
            send_time: PgTimestamp(0),
            data: body.freeze(),
        },
        &mut payload,
    );
    write_copy_data(&payload, wire);
    payload.len() as u64
}

fn relation() -> PgOutput {
    let col = |name: &str, oid, key| RelationColumn {
        flags: u8::from(key),
        name: name.into(),
        type_oid: oid,
        type_modifier: -1,
    };
    PgOutput::Relation(Relation {
        xid: None,
        relid: 16384,
        namespace: "public".into(),
        name: "bench".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![
            col("id", 20, true),
            col("n", 23, false),
            col("body", 25, false),
        ],
    })
}

fn row(i: u64) -> TupleData {
    TupleData::from_columns(&[
        Column::Text(Bytes::from(i.to_string())),
        Column::Text(Bytes::from((i % 1000).to_string())),
        Column::Text(Bytes::from(format!("{i:016x}").repeat(5))),
    ])
}

/// `rows` row messages in transactions of 100.
fn generated(rows: u64, update: bool) -> Stream {
    let mut wire = BytesMut::new();
    let mut lsn = 0x1000_0000u64;
    let mut payload_bytes = push(&mut wire, &mut lsn, &relation());
    let mut messages = 1;
    for t in 0..rows / 100 {
        let final_lsn = Lsn(lsn + 64 * 101);
        payload_bytes += push(
            &mut wire,
            &mut lsn,
            &PgOutput::Begin(Begin {
                final_lsn,
                commit_ts: PgTimestamp(0),
                xid: 1000 + t as u32,
            }),
        );
        for r in 0..100 {
            let i = t * 100 + r;
            let msg = if update {
                PgOutput::Update(Update {
                    xid: None,
                    relid: 16384,
                    old: Some(OldTuple::Key(TupleData::from_columns(&[
                        Column::Text(Bytes::from(i.to_string())),
                        Column::Null,
                        Column::Null,
                    ]))),
                    new: row(i + 1),
                })
            } else {
                PgOutput::Insert(Insert {
                    xid: None,
                    relid: 16384,
                    new: row(i),
                })
            };
            payload_bytes += push(&mut wire, &mut lsn, &msg);
        }
        payload_bytes += push(
            &mut wire,
            &mut lsn,
            &PgOutput::Commit(Commit {
                flags: 0,
                commit_lsn: final_lsn,
                end_lsn: Lsn(final_lsn.0 + 48),
                commit_ts: PgTimestamp(0),
            }),
        );
        messages += 102;
    }
    Stream {
        wire: wire.freeze(),
        payload_bytes,
        messages,
    }
}

/// Every recording, as the CopyData frames the server sent.
fn recordings() -> Vec<(String, Stream)> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir("proto-fixtures") else {
        return out;
    };
    let mut files: Vec<_> = dirs
        .flatten()
        .filter(|d| d.file_name().to_string_lossy().starts_with("pg"))
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "pgrec"))
        .collect();
    files.sort();
    for path in files {
        let file = std::fs::File::open(&path).expect("open recording");
        let mut reader =
            pgsub::record::Reader::new(std::io::BufReader::new(file), &path.display().to_string())
                .expect("a recording");
        let mut wire = BytesMut::new();
        let (mut payload_bytes, mut messages) = (0, 0);
        while let Some(p) = reader.next_frame().expect("an intact recording") {
            payload_bytes += p.len() as u64;
            messages += 1;
            write_copy_data(&p, &mut wire);
        }
        let name = format!(
            "{}/{}",
            path.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy(),
            path.file_stem().unwrap().to_string_lossy()
        );
        out.push((
            name,
            Stream {
                wire: wire.freeze(),
                payload_bytes,
                messages,
            },
        ));
    }
    out
}

/// Frames → replication message → pgoutput, touching every column value.
fn decode_all(mut buf: BytesMut) -> usize {
    let frames = FrameDecoder::default();
    let mut decoder = Decoder::new();
    let mut touched = 0;
    while let Some(frame) = frames.decode_frame(&mut buf).expect("valid frames") {
        match ReplicationMessage::parse(frame.body).expect("valid payload") {
            ReplicationMessage::XLogData(x) => {
                match decoder.decode(x.data).expect("valid pgoutput") {
                    PgOutput::Insert(m) => touched += touch(&m.new),
                    PgOutput::Update(m) => touched += touch(&m.new),
                    PgOutput::Delete(m) => touched += touch(m.old.tuple()),
                    _ => touched += 1,
                }
            }
            ReplicationMessage::PrimaryKeepalive(_) => touched += 1,
        }
    }
    touched
}

fn touch(t: &TupleData) -> usize {
    t.iter()
        .map(|c| match c {
            ColumnRef::Text(b) | ColumnRef::Binary(b) => b.len(),
            _ => 0,
        })
        .sum()
}

/// The whole sans-I/O session: positions, grammar, relation checks, accounting.
fn session_all(mut buf: BytesMut) -> u64 {
    let frames = FrameDecoder::default();
    let mut session = Session::new(Lsn(0));
    while let Some(frame) = frames.decode_frame(&mut buf).expect("valid frames") {
        let len = frame.wire_len();
        session
            .on_copy_data(frame.body, len)
            .expect("a valid stream");
    }
    session.accounting().frames.count
}

fn bench_stream(bencher: Bencher<'_, '_>, s: &Stream, f: fn(BytesMut) -> usize) {
    bencher
        .counter(BytesCount::new(s.payload_bytes))
        .counter(ItemsCount::new(s.messages))
        .with_inputs(|| BytesMut::from(&s.wire[..]))
        .bench_local_values(|buf| black_box(f(buf)));
}

#[divan::bench(sample_count = 20)]
fn insert_stream_100k(bencher: Bencher<'_, '_>) {
    let s = generated(100_000, false);
    bench_stream(bencher, &s, decode_all);
}

#[divan::bench(sample_count = 20)]
fn update_stream_100k(bencher: Bencher<'_, '_>) {
    let s = generated(100_000, true);
    bench_stream(bencher, &s, decode_all);
}

#[divan::bench(sample_count = 20)]
fn insert_stream_100k_full_session(bencher: Bencher<'_, '_>) {
    let s = generated(100_000, false);
    bench_stream(bencher, &s, |b| session_all(b) as usize);
}

#[divan::bench]
fn one_insert_message(bencher: Bencher<'_, '_>) {
    let mut body = BytesMut::new();
    pgoutput::encode::encode(
        &PgOutput::Insert(Insert {
            xid: None,
            relid: 16384,
            new: row(123_456),
        }),
        &mut body,
    );
    let body = body.freeze();
    let mut decoder = Decoder::new();
    bencher
        .counter(BytesCount::new(body.len() as u64))
        .bench_local(|| match decoder.decode(black_box(body.clone())) {
            Ok(PgOutput::Insert(m)) => touch(&m.new),
            _ => 0,
        });
}

#[divan::bench(sample_count = 10)]
fn recordings_all(bencher: Bencher<'_, '_>) {
    let recs = recordings();
    let payload: u64 = recs.iter().map(|(_, s)| s.payload_bytes).sum();
    let messages: u64 = recs.iter().map(|(_, s)| s.messages).sum();
    bencher
        .counter(BytesCount::new(payload))
        .counter(ItemsCount::new(messages))
        .with_inputs(|| {
            recs.iter()
                .map(|(_, s)| BytesMut::from(&s.wire[..]))
                .collect::<Vec<_>>()
        })
        .bench_local_values(|bufs| bufs.into_iter().map(decode_all).sum::<usize>());
}
