//! Helpers shared by pgsub's fuzz targets and by the seed builder (`examples/seed.rs`):
//! how one fuzz input is carved into a sequence of messages, a tiny deterministic
//! generator for split points, hand-written samples of every pgoutput message kind,
//! of backend messages and of connection strings, and the reading of the recordings in
//! `proto-fixtures/`. Nothing here is fuzzed itself; it only has to agree between the
//! targets and the seeds, so that a seed means to a target what the seed builder meant.

pub mod sql_lex;
pub mod walsender;

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use pgsub::Lsn;
use pgsub::pgoutput::encode::encode;
use pgsub::pgoutput::*;
use pgsub::protocol::frame::write_frame;
use pgsub::protocol::replication::{
    PrimaryKeepalive, XLogData, write_primary_keepalive, write_xlog_data,
};
use pgsub::protocol::time::PgTimestamp;

/// Separates the messages of one fuzz input (`pgoutput_decoder`, `session`). Chosen to be
/// unlikely inside real pgoutput messages: no length, count, OID or LSN a test server
/// produces has these four bytes in a row. An input without it is one message, so a raw
/// message body is a valid seed by itself.
pub const SEP: &[u8] = b"\xff\xfe\xfd\xfc";

/// The messages of one fuzz input: the input split at every [`SEP`].
pub fn carve(data: &[u8]) -> Vec<&[u8]> {
    // memmem rather than a byte-by-byte search: under the fuzzer every scalar comparison
    // is traced, and a naive search over a 16 KiB input costs more than decoding it.
    let mut parts = Vec::new();
    let mut start = 0;
    for i in memchr::memmem::find_iter(data, SEP) {
        if i >= start {
            parts.push(&data[start..i]);
            start = i + SEP.len();
        }
    }
    parts.push(&data[start..]);
    parts
}

/// The inverse of [`carve`]: one fuzz input holding `parts` in order.
pub fn join<T: AsRef<[u8]>>(parts: &[T]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(SEP);
        }
        out.extend_from_slice(p.as_ref());
    }
    out
}

/// A small deterministic generator (xorshift64*), seeded from the input itself so that a
/// crashing input reproduces exactly and the fuzzer still steers the choices it makes.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from the FNV-1a hash of `data`.
    pub fn from_input(data: &[u8]) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in data {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Rng(h | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// The CopyData payload of an XLogData message carrying `body`.
pub fn xlog_payload(wal_start: u64, body: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    write_xlog_data(
        &XLogData {
            wal_start: Lsn(wal_start),
            wal_end: Lsn(wal_start),
            send_time: PgTimestamp(800_000_000_000_000),
            data: Bytes::copy_from_slice(body),
        },
        &mut out,
    );
    out.freeze()
}

/// The CopyData payload of a primary keepalive.
pub fn keepalive_payload(wal_end: u64, reply_requested: bool) -> Bytes {
    let mut out = BytesMut::new();
    write_primary_keepalive(
        &PrimaryKeepalive {
            wal_end: Lsn(wal_end),
            send_time: PgTimestamp(800_000_000_000_000),
            reply_requested,
        },
        &mut out,
    );
    out.freeze()
}

/// The encoding of one pgoutput message.
pub fn encoded(msg: &PgOutput) -> Bytes {
    let mut out = BytesMut::new();
    encode(msg, &mut out);
    out.freeze()
}

fn text(s: &str) -> Column {
    Column::Text(Bytes::copy_from_slice(s.as_bytes()))
}

/// One pgoutput message of every kind, each with whether it belongs inside a Stream
/// Start … Stream Stop block (where row, Relation, Type, Truncate and Message carry an
/// `xid` prefix). Several kinds appear in more than one layout.
pub fn sample_messages() -> Vec<(bool, PgOutput)> {
    let ts = PgTimestamp(800_000_000_123_456);
    let row = TupleData::from_columns(&[
        text("42"),
        Column::Null,
        Column::UnchangedToast,
        Column::Binary(Bytes::from_static(b"\x00\x01\xff")),
    ]);
    let key = TupleData::from_columns(&[text("42"), Column::Null, Column::Null, Column::Null]);
    let relation = |xid| {
        PgOutput::Relation(Relation {
            xid,
            relid: 16_384,
            namespace: "public".into(),
            name: "test_table".into(),
            replica_identity: ReplicaIdentity::Default,
            columns: vec![
                RelationColumn {
                    flags: 1,
                    name: "id".into(),
                    type_oid: 23,
                    type_modifier: -1,
                },
                RelationColumn {
                    flags: 0,
                    name: "note".into(),
                    type_oid: 25,
                    type_modifier: -1,
                },
                RelationColumn {
                    flags: 0,
                    name: "big".into(),
                    type_oid: 25,
                    type_modifier: -1,
                },
                RelationColumn {
                    flags: 0,
                    name: "raw".into(),
                    type_oid: 17,
                    type_modifier: -1,
                },
            ],
        })
    };
    let prepare = Prepare {
        flags: 0,
        prepare_lsn: Lsn(0x300),
        end_lsn: Lsn(0x330),
        prepare_ts: ts,
        xid: 800,
        gid: "pgsub_gid_1".into(),
    };
    let mut out = vec![
        (
            false,
            PgOutput::Begin(Begin {
                final_lsn: Lsn(0x16B_3748),
                commit_ts: ts,
                xid: 735,
            }),
        ),
        (
            false,
            PgOutput::Commit(Commit {
                flags: 0,
                commit_lsn: Lsn(0x16B_3748),
                end_lsn: Lsn(0x16B_3778),
                commit_ts: ts,
            }),
        ),
        (
            false,
            PgOutput::Origin(Origin {
                origin_lsn: Lsn(0x1000),
                name: "pg_16385".into(),
            }),
        ),
        (false, relation(None)),
        (true, relation(Some(801))),
        (
            false,
            PgOutput::Type(Type {
                xid: None,
                type_oid: 16_390,
                namespace: "public".into(),
                name: "mood".into(),
            }),
        ),
        (
            false,
            PgOutput::Insert(Insert {
                xid: None,
                relid: 16_384,
                new: row.clone(),
            }),
        ),
        (
            true,
            PgOutput::Insert(Insert {
                xid: Some(801),
                relid: 16_384,
                new: row.clone(),
            }),
        ),
        (
            false,
            PgOutput::Update(Update {
                xid: None,
                relid: 16_384,
                old: None,
                new: row.clone(),
            }),
        ),
        (
            false,
            PgOutput::Update(Update {
                xid: None,
                relid: 16_384,
                old: Some(OldTuple::Key(key.clone())),
                new: row.clone(),
            }),
        ),
        (
            true,
            PgOutput::Update(Update {
                xid: Some(801),
                relid: 16_384,
                old: Some(OldTuple::Old(row.clone())),
                new: row.clone(),
            }),
        ),
        (
            false,
            PgOutput::Delete(Delete {
                xid: None,
                relid: 16_384,
                old: OldTuple::Key(key),
            }),
        ),
        (
            true,
            PgOutput::Delete(Delete {
                xid: Some(801),
                relid: 16_384,
                old: OldTuple::Old(row),
            }),
        ),
        (
            false,
            PgOutput::Truncate(Truncate {
                xid: None,
                options: 3,
                relids: vec![16_384, 16_390],
            }),
        ),
        (
            false,
            PgOutput::Message(Message {
                xid: None,
                flags: 0,
                lsn: Lsn(0x2000),
                prefix: "pgsub".into(),
                content: Bytes::from_static(b"hello"),
            }),
        ),
        (
            true,
            PgOutput::Message(Message {
                xid: Some(801),
                flags: 1,
                lsn: Lsn(0x2000),
                prefix: "pgsub".into(),
                content: Bytes::from_static(b"\xff\x00"),
            }),
        ),
        (
            false,
            PgOutput::StreamStart(StreamStart {
                xid: 801,
                first_segment: 1,
            }),
        ),
        (true, PgOutput::StreamStop),
        (
            false,
            PgOutput::StreamCommit(StreamCommit {
                xid: 801,
                flags: 0,
                commit_lsn: Lsn(0x500),
                end_lsn: Lsn(0x530),
                commit_ts: ts,
            }),
        ),
        (
            false,
            PgOutput::StreamAbort(StreamAbort {
                xid: 801,
                subxid: 802,
                abort: None,
            }),
        ),
        (
            false,
            PgOutput::StreamAbort(StreamAbort {
                xid: 801,
                subxid: 801,
                abort: Some(AbortInfo {
                    abort_lsn: Lsn(0x600),
                    abort_ts: ts,
                }),
            }),
        ),
        (
            false,
            PgOutput::BeginPrepare(BeginPrepare {
                prepare_lsn: Lsn(0x300),
                end_lsn: Lsn(0x330),
                prepare_ts: ts,
                xid: 800,
                gid: "pgsub_gid_1".into(),
            }),
        ),
        (false, PgOutput::Prepare(prepare.clone())),
        (
            false,
            PgOutput::CommitPrepared(CommitPrepared {
                flags: 0,
                commit_lsn: Lsn(0x400),
                end_lsn: Lsn(0x430),
                commit_ts: ts,
                xid: 800,
                gid: "pgsub_gid_1".into(),
            }),
        ),
        (
            false,
            PgOutput::RollbackPrepared(RollbackPrepared {
                flags: 0,
                prepare_end_lsn: Lsn(0x330),
                rollback_end_lsn: Lsn(0x460),
                prepare_ts: ts,
                rollback_ts: ts,
                xid: 800,
                gid: "pgsub_gid_1".into(),
            }),
        ),
        (false, PgOutput::StreamPrepare(prepare)),
    ];
    out.sort_by_key(|(_, m)| m.kind());
    out
}

/// A short, valid replication session as CopyData payloads: a regular transaction, a
/// non-transactional message, a streamed transaction in two blocks with a regular
/// transaction between them, a two-phase transaction, keepalives.
pub fn sample_session() -> Vec<Bytes> {
    let ts = PgTimestamp(800_000_000_123_456);
    let rel = |xid| {
        PgOutput::Relation(Relation {
            xid,
            relid: 16_384,
            namespace: "public".into(),
            name: "t".into(),
            replica_identity: ReplicaIdentity::Full,
            columns: vec![RelationColumn {
                flags: 1,
                name: "id".into(),
                type_oid: 23,
                type_modifier: -1,
            }],
        })
    };
    let one = |v: &str| TupleData::from_columns(&[text(v)]);
    let ins = |xid, v: &str| {
        PgOutput::Insert(Insert {
            xid,
            relid: 16_384,
            new: one(v),
        })
    };
    let begin = |lsn, xid| {
        PgOutput::Begin(Begin {
            final_lsn: Lsn(lsn),
            commit_ts: ts,
            xid,
        })
    };
    let commit = |lsn, end| {
        PgOutput::Commit(Commit {
            flags: 0,
            commit_lsn: Lsn(lsn),
            end_lsn: Lsn(end),
            commit_ts: ts,
        })
    };
    let start = |first| {
        PgOutput::StreamStart(StreamStart {
            xid: 900,
            first_segment: first,
        })
    };
    let msgs: Vec<(u64, PgOutput)> = vec![
        (0x100, begin(0x180, 700)),
        (0, rel(None)),
        (0x110, ins(None, "1")),
        (
            0x120,
            PgOutput::Update(Update {
                xid: None,
                relid: 16_384,
                old: Some(OldTuple::Old(one("1"))),
                new: one("2"),
            }),
        ),
        (
            0x130,
            PgOutput::Delete(Delete {
                xid: None,
                relid: 16_384,
                old: OldTuple::Old(one("2")),
            }),
        ),
        (
            0x140,
            PgOutput::Truncate(Truncate {
                xid: None,
                options: 0,
                relids: vec![16_384],
            }),
        ),
        (0x180, commit(0x180, 0x1b0)),
        (
            0x1c0,
            PgOutput::Message(Message {
                xid: None,
                flags: 0,
                lsn: Lsn(0x1c0),
                prefix: "p".into(),
                content: Bytes::from_static(b"x"),
            }),
        ),
        (0x200, start(1)),
        (0, rel(Some(900))),
        (0x210, ins(Some(900), "3")),
        (0x220, PgOutput::StreamStop),
        (0x230, begin(0x260, 701)),
        (0x240, ins(None, "4")),
        (0x260, commit(0x260, 0x290)),
        (0x2a0, start(0)),
        (0x2b0, ins(Some(901), "5")),
        (0x2c0, PgOutput::StreamStop),
        (
            0x2d0,
            PgOutput::StreamAbort(StreamAbort {
                xid: 900,
                subxid: 901,
                abort: None,
            }),
        ),
        (
            0x300,
            PgOutput::StreamCommit(StreamCommit {
                xid: 900,
                flags: 0,
                commit_lsn: Lsn(0x300),
                end_lsn: Lsn(0x330),
                commit_ts: ts,
            }),
        ),
        (
            0x340,
            PgOutput::BeginPrepare(BeginPrepare {
                prepare_lsn: Lsn(0x380),
                end_lsn: Lsn(0x3b0),
                prepare_ts: ts,
                xid: 702,
                gid: "g".into(),
            }),
        ),
        (0x350, ins(None, "6")),
        (
            0x380,
            PgOutput::Prepare(Prepare {
                flags: 0,
                prepare_lsn: Lsn(0x380),
                end_lsn: Lsn(0x3b0),
                prepare_ts: ts,
                xid: 702,
                gid: "g".into(),
            }),
        ),
        (
            0x3c0,
            PgOutput::CommitPrepared(CommitPrepared {
                flags: 0,
                commit_lsn: Lsn(0x3c0),
                end_lsn: Lsn(0x3f0),
                commit_ts: ts,
                xid: 702,
                gid: "g".into(),
            }),
        ),
    ];
    let mut out = vec![keepalive_payload(0x100, false)];
    for (wal_start, msg) in msgs {
        out.push(xlog_payload(wal_start, &encoded(&msg)));
    }
    out.push(keepalive_payload(0x400, true));
    out
}

/// Backend messages of every type a replication connection meets, framed as on the wire.
pub fn sample_backend_frames() -> Vec<Vec<u8>> {
    let bodies: Vec<(u8, Vec<u8>)> = vec![
        (b'R', b"\0\0\0\0".to_vec()),
        (b'R', b"\0\0\0\x03".to_vec()),
        (b'R', b"\0\0\0\x05salt".to_vec()),
        (b'R', b"\0\0\0\x0aSCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0".to_vec()),
        (b'R', b"\0\0\0\x0br=abc,s=c2FsdA==,i=4096".to_vec()),
        (b'R', b"\0\0\0\x0cv=c2lnbmF0dXJl".to_vec()),
        (b'S', b"server_version\x0016.4\0".to_vec()),
        (b'K', b"\0\0\x30\x39\x12\x34\x56\x78".to_vec()),
        (b'Z', b"I".to_vec()),
        (
            b'E',
            b"SERROR\0VERROR\0C42704\0Mreplication slot \"s\" does not exist\0Dd\0Hh\0Ww\0\0"
                .to_vec(),
        ),
        (b'N', b"SNOTICE\0VNOTICE\0C00000\0Mnotice\0\0".to_vec()),
        (
            b'T',
            b"\0\x02systemid\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0timeline\0\0\0\0\0\0\0\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0"
                .to_vec(),
        ),
        (b'D', b"\0\x02\0\0\0\x137300000000000000001\xff\xff\xff\xff".to_vec()),
        (b'C', b"IDENTIFY_SYSTEM\0".to_vec()),
        (b'I', Vec::new()),
        (b'W', b"\0\0\0".to_vec()),
        (b'H', b"\0\0\x01\0\0".to_vec()),
        (b'G', b"\0\0\x01\0\0".to_vec()),
        (b'c', Vec::new()),
        (b'v', b"\0\0\0\x00\0\0\0\0".to_vec()),
        (b'A', b"\0\0\0\x01chan\0payload\0".to_vec()),
    ];
    let mut out: Vec<Vec<u8>> = bodies
        .into_iter()
        .map(|(tag, body)| {
            let mut b = BytesMut::new();
            write_frame(tag, &body, &mut b);
            b.to_vec()
        })
        .collect();
    for payload in sample_session() {
        let mut b = BytesMut::new();
        write_frame(b'd', &payload, &mut b);
        out.push(b.to_vec());
    }
    out
}

/// Connection strings in both libpq forms, with secrets in every place one can hide.
pub fn sample_conninfos() -> Vec<&'static str> {
    vec![
        "host=localhost port=5432 dbname=postgres user=postgres password=SECRETxyz",
        "host=/tmp port=5433 dbname=src user=repl password='SECRET quoted \\' value' sslmode=disable",
        "host=a,b,c port=1,2,3 hostaddr=127.0.0.1,::1,10.0.0.1 target_session_attrs=read-write",
        "password=SECRETabc host=h sslmode=verify-full sslrootcert=/etc/ssl/root.crt sslpassword=SECRETkey",
        "dbname='postgresql://u:SECRETinner@h/db' application_name=x connect_timeout=10",
        "host=h password=SECRETa b c user=u",
        "postgresql://u:SECRETpw@localhost:5432/postgres?sslmode=require&application_name=pgsub",
        "postgres://u@[::1]:5432,h2:5433/db?password=SECRETq&connect_timeout=5",
        "postgresql:///db?host=/var/run/postgresql&user=u&options=-c%20search_path%3Dx",
        "postgresql://%75ser:SECRET%70w@h/d%62",
        "postgresql://",
        "",
        "host='unterminated password=SECRETz",
        "keepalives=1 keepalives_idle=30 channel_binding=require client_encoding=UTF8 replication=database",
    ]
}

/// One recording of `proto-fixtures/`: the whole file and the payloads read from it
/// (those before any damage, when it is damaged).
#[derive(Debug, Clone)]
pub struct Recording {
    /// The file.
    pub path: PathBuf,
    /// Its bytes.
    pub raw: Vec<u8>,
    /// Its CopyData payloads, in order.
    pub payloads: Vec<Bytes>,
}

/// Every `*.pgrec` under `dir` (one level of version folders, as in `proto-fixtures/`,
/// and the folder itself), sorted by path; none when the folder does not exist.
pub fn recordings(dir: &Path) -> Vec<Recording> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                dirs.push(e.path());
            }
        }
    }
    for d in dirs {
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "pgrec") && p.is_file() {
                    files.push(p);
                }
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .filter_map(|path| {
            let raw = std::fs::read(&path).ok()?;
            let payloads = read_payloads(&raw);
            Some(Recording {
                path,
                raw,
                payloads,
            })
        })
        .collect()
}

/// The payloads of a recording, as many as can be read before any damage.
pub fn read_payloads(raw: &[u8]) -> Vec<Bytes> {
    let mut out = Vec::new();
    if let Ok(mut r) = pgsub::record::Reader::new(raw, "recording") {
        while let Ok(Some(p)) = r.next_frame() {
            out.push(p);
        }
    }
    out
}

/// A small recording file holding `payloads`, for a reader seed when `proto-fixtures/`
/// has none.
pub fn sample_recording(payloads: &[Bytes]) -> Vec<u8> {
    let header = pgsub::record::Header {
        pgsub_version: "0.1.0".into(),
        server_version: "16.4".into(),
        server_version_num: 160_004,
        system_id: "7300000000000000001".into(),
        timeline: 1,
        slot: "pgsub".into(),
        start_lsn: "0/100".into(),
        options: "(proto_version '4', streaming 'on', two_phase 'on', messages 'true', publication_names '\"pub1\"')".into(),
        recorded_at: "2026-01-01T00:00:00Z".into(),
        publications: vec!["pub1".into()],
    };
    let mut w = pgsub::record::Writer::new(Vec::new(), "sample", &header)
        .expect("writing to memory cannot fail");
    for p in payloads {
        w.write_frame(p).expect("writing to memory cannot fail");
    }
    w.finish().expect("writing to memory cannot fail")
}
