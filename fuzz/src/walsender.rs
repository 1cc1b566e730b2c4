//! A walsender's side of a replication session, generated from fuzz input, for the
//! `walsender` target: what a source server sends after `START_REPLICATION` (the same
//! CopyData stream `tests/support/fake_walsender.rs` scripts by hand), drawn from a
//! grammar that only makes sessions a server could send — transactions with Relation
//! messages before the rows that need them, streamed transactions in several blocks
//! between other transactions, aborted, committed or prepared, two-phase transactions
//! committed or rolled back later, keepalives (whose `wal_end` may go back, as a real
//! one's does at a stream's start), non-transactional messages — with positions that
//! only move forward. The input is read as a stream of choices (one byte each), so that
//! the fuzzer's mutations of it stay meaningful; an input that runs out chooses 0.

use bytes::{Bytes, BytesMut};
use pgsub::Lsn;
use pgsub::pgoutput::*;
use pgsub::protocol::frame::write_copy_data;
use pgsub::protocol::replication::{
    PrimaryKeepalive, XLogData, write_primary_keepalive, write_xlog_data,
};
use pgsub::protocol::time::PgTimestamp;

/// The input read as a stream of choices.
#[derive(Debug)]
pub struct Choices<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Choices<'a> {
    /// Choices read from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Choices { data, pos: 0 }
    }

    /// A value in `0..n` (0 when `n` ≤ 1 or the input is used up).
    pub fn pick(&mut self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        usize::from(b) % n
    }

    /// A byte of the input as it is.
    pub fn byte(&mut self) -> u8 {
        self.pick(256) as u8
    }

    /// Whether the input is used up.
    pub fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
}

const TS: PgTimestamp = PgTimestamp(850_000_000_000_000);
const RELIDS: [u32; 4] = [16_384, 16_390, 16_401, 24_576];

/// The end of a unit whose closing record is at `at` (a commit record's size, about).
fn end_of(at: Lsn) -> Lsn {
    Lsn(at.0 + 0x28)
}

/// One generated session: its CopyData payloads, and the `end_lsn` of every unit in
/// them, in order.
#[derive(Debug, Default)]
pub struct Script {
    /// The payloads, as the walsender sends them.
    pub payloads: Vec<Bytes>,
    /// Where each unit (transaction, prepare, commit/rollback prepared, stream
    /// commit/prepare) ends.
    pub unit_ends: Vec<Lsn>,
}

struct Gen<'c, 'a> {
    c: &'c mut Choices<'a>,
    lsn: u64,
    next_xid: u32,
    /// Columns of each relation the session has described, by index in [`RELIDS`].
    described: [Option<usize>; 4],
    /// Streamed transactions neither committed nor aborted.
    streaming: Vec<u32>,
    /// Prepared transactions not yet committed or rolled back: xid, gid, prepare end.
    prepared: Vec<(u32, String, Lsn)>,
    script: Script,
}

impl Gen<'_, '_> {
    fn advance(&mut self) -> Lsn {
        self.lsn += 0x10 + self.c.pick(4) as u64 * 0x100;
        Lsn(self.lsn)
    }

    fn send(&mut self, wal_start: Lsn, msg: &PgOutput) {
        let mut body = BytesMut::new();
        encode::encode(msg, &mut body);
        let mut out = BytesMut::new();
        write_xlog_data(
            &XLogData {
                wal_start,
                wal_end: Lsn(self.lsn),
                send_time: TS,
                data: body.freeze(),
            },
            &mut out,
        );
        self.script.payloads.push(out.freeze());
    }

    fn keepalive(&mut self) {
        let back = self.c.pick(3) as u64 * 0x8;
        let mut out = BytesMut::new();
        write_primary_keepalive(
            &PrimaryKeepalive {
                wal_end: Lsn(self.lsn.saturating_sub(back)),
                send_time: TS,
                reply_requested: self.c.pick(2) == 1,
            },
            &mut out,
        );
        self.script.payloads.push(out.freeze());
    }

    fn tuple(&mut self, ncols: usize) -> TupleData {
        let cols: Vec<Column> = (0..ncols)
            .map(|i| match self.c.pick(6) {
                0 => Column::Null,
                1 => Column::UnchangedToast,
                2 => Column::Binary(Bytes::from(vec![self.c.byte(); self.c.pick(5)])),
                _ => Column::Text(Bytes::from(format!("{i}:{}", self.c.byte()))),
            })
            .collect();
        TupleData::from_columns(&cols)
    }

    /// The rows of one transaction or block (`xid` inside a stream block), Relation
    /// messages first where the relation is new or described again.
    fn changes(&mut self, xid: Option<u32>) {
        for _ in 0..self.c.pick(5) {
            let r = self.c.pick(RELIDS.len());
            let relid = RELIDS[r];
            if self.described[r].is_none() || self.c.pick(8) == 0 {
                let ncols = 1 + self.c.pick(4);
                let columns = (0..ncols)
                    .map(|i| RelationColumn {
                        flags: u8::from(i == 0),
                        name: format!("c{i}"),
                        type_oid: [23, 25, 16, 1184][self.c.pick(4)],
                        type_modifier: -1,
                    })
                    .collect();
                let namespace = ["public", "", "s ü"][self.c.pick(3)].into();
                let replica_identity = [
                    ReplicaIdentity::Default,
                    ReplicaIdentity::Full,
                    ReplicaIdentity::Index,
                    ReplicaIdentity::Nothing,
                ][self.c.pick(4)];
                let msg = PgOutput::Relation(Relation {
                    xid,
                    relid,
                    namespace,
                    name: format!("t{r}"),
                    replica_identity,
                    columns,
                });
                self.send(Lsn(self.lsn), &msg);
                self.described[r] = Some(ncols);
            }
            let ncols = self.described[r].unwrap_or(1);
            let msg = match self.c.pick(6) {
                0 | 1 => PgOutput::Insert(Insert {
                    xid,
                    relid,
                    new: self.tuple(ncols),
                }),
                2 => PgOutput::Update(Update {
                    xid,
                    relid,
                    old: match self.c.pick(3) {
                        0 => None,
                        1 => Some(OldTuple::Key(self.tuple(ncols))),
                        _ => Some(OldTuple::Old(self.tuple(ncols))),
                    },
                    new: self.tuple(ncols),
                }),
                3 => PgOutput::Delete(Delete {
                    xid,
                    relid,
                    old: OldTuple::Key(self.tuple(ncols)),
                }),
                4 => PgOutput::Truncate(Truncate {
                    xid,
                    options: self.c.pick(4) as u8,
                    relids: RELIDS
                        .iter()
                        .zip(self.described)
                        .filter(|(_, d)| d.is_some())
                        .map(|(id, _)| *id)
                        .collect(),
                }),
                _ => PgOutput::Message(Message {
                    xid,
                    flags: 1,
                    lsn: Lsn(self.lsn),
                    prefix: "p".into(),
                    content: Bytes::from(vec![self.c.byte(); self.c.pick(9)]),
                }),
            };
            let at = self.advance();
            self.send(at, &msg);
        }
    }

    fn unit_end(&mut self, end: Lsn) {
        self.script.unit_ends.push(end);
    }

    /// A transaction around rows of its own: `open` (given the closing record's position
    /// and the unit's end) sent at the first position, an Origin message after it when
    /// `origin` and the input say so, the rows, then `close` at its position. The opening
    /// message names the closing position, which comes after the rows: they are
    /// generated into a scratch script first. Returns the unit's end.
    fn framed(
        &mut self,
        origin: bool,
        open: impl FnOnce(Lsn, Lsn) -> PgOutput,
        close: impl FnOnce(Lsn, Lsn) -> PgOutput,
    ) -> Lsn {
        let first = self.advance();
        let mark = self.script.payloads.len();
        self.changes(None);
        let rows = self.script.payloads.split_off(mark);
        let closing = self.advance();
        let end = end_of(closing);
        self.send(first, &open(closing, end));
        if origin && self.c.pick(4) == 0 {
            self.send(
                first,
                &PgOutput::Origin(Origin {
                    origin_lsn: Lsn(0x1_0000),
                    name: "pg_16400".into(),
                }),
            );
        }
        self.script.payloads.extend(rows);
        self.lsn = end.0;
        self.send(closing, &close(closing, end));
        self.unit_end(end);
        end
    }

    fn regular(&mut self) {
        let xid = self.xid();
        self.framed(
            true,
            |final_lsn, _| {
                PgOutput::Begin(Begin {
                    final_lsn,
                    commit_ts: TS,
                    xid,
                })
            },
            |commit_lsn, end_lsn| {
                PgOutput::Commit(Commit {
                    flags: 0,
                    commit_lsn,
                    end_lsn,
                    commit_ts: TS,
                })
            },
        );
    }

    fn xid(&mut self) -> u32 {
        self.next_xid += 1;
        self.next_xid
    }

    fn stream_block(&mut self) {
        let (xid, first) = match self.c.pick(2) {
            0 if !self.streaming.is_empty() => {
                (self.streaming[self.c.pick(self.streaming.len())], 0)
            }
            _ if self.streaming.len() < 3 => {
                let xid = self.xid();
                self.streaming.push(xid);
                (xid, 1)
            }
            _ => (self.streaming[0], 0),
        };
        let at = self.advance();
        self.send(
            at,
            &PgOutput::StreamStart(StreamStart {
                xid,
                first_segment: first,
            }),
        );
        self.changes(Some(xid));
        let at = self.advance();
        self.send(at, &PgOutput::StreamStop);
    }

    fn stream_end(&mut self) {
        if self.streaming.is_empty() {
            return self.stream_block();
        }
        let xid = self.streaming[self.c.pick(self.streaming.len())];
        let at = self.advance();
        let end = end_of(at);
        match self.c.pick(4) {
            0 => {
                self.streaming.retain(|x| *x != xid);
                self.lsn = end.0;
                self.send(
                    at,
                    &PgOutput::StreamCommit(StreamCommit {
                        xid,
                        flags: 0,
                        commit_lsn: at,
                        end_lsn: end,
                        commit_ts: TS,
                    }),
                );
                self.unit_end(end);
            }
            1 => {
                self.streaming.retain(|x| *x != xid);
                let gid = format!("pgsub_g{xid}");
                self.lsn = end.0;
                self.send(
                    at,
                    &PgOutput::StreamPrepare(Prepare {
                        flags: 0,
                        prepare_lsn: at,
                        end_lsn: end,
                        prepare_ts: TS,
                        xid,
                        gid: gid.clone(),
                    }),
                );
                self.unit_end(end);
                self.prepared.push((xid, gid, end));
            }
            k => {
                // A whole transaction, or one of its subtransactions.
                let subxid = if k == 2 { xid } else { self.xid() };
                if subxid == xid {
                    self.streaming.retain(|x| *x != xid);
                }
                let abort = (self.c.pick(2) == 0).then_some(AbortInfo {
                    abort_lsn: at,
                    abort_ts: TS,
                });
                self.send(
                    at,
                    &PgOutput::StreamAbort(StreamAbort { xid, subxid, abort }),
                );
            }
        }
    }

    fn two_phase(&mut self) {
        let xid = self.xid();
        let gid = format!("g{xid}'\"ü");
        let end = self.framed(
            false,
            |prepare_lsn, end_lsn| {
                PgOutput::BeginPrepare(BeginPrepare {
                    prepare_lsn,
                    end_lsn,
                    prepare_ts: TS,
                    xid,
                    gid: gid.clone(),
                })
            },
            |prepare_lsn, end_lsn| {
                PgOutput::Prepare(Prepare {
                    flags: 0,
                    prepare_lsn,
                    end_lsn,
                    prepare_ts: TS,
                    xid,
                    gid: gid.clone(),
                })
            },
        );
        self.prepared.push((xid, gid, end));
    }

    fn finish_prepared(&mut self) {
        if self.prepared.is_empty() {
            return self.two_phase();
        }
        let (xid, gid, prepare_end) = self.prepared.remove(self.c.pick(self.prepared.len()));
        let at = self.advance();
        let end = end_of(at);
        self.lsn = end.0;
        let msg = if self.c.pick(2) == 0 {
            PgOutput::CommitPrepared(CommitPrepared {
                flags: 0,
                commit_lsn: at,
                end_lsn: end,
                commit_ts: TS,
                xid,
                gid,
            })
        } else {
            PgOutput::RollbackPrepared(RollbackPrepared {
                flags: 0,
                prepare_end_lsn: prepare_end,
                rollback_end_lsn: end,
                prepare_ts: TS,
                rollback_ts: TS,
                xid,
                gid,
            })
        };
        self.send(at, &msg);
        self.unit_end(end);
    }

    fn message(&mut self) {
        let at = self.advance();
        self.send(
            at,
            &PgOutput::Message(Message {
                xid: None,
                flags: 0,
                lsn: at,
                prefix: "pgsub.test".into(),
                content: Bytes::from_static(b"hello"),
            }),
        );
    }
}

/// A session a server could send, drawn from `c`, of at most `steps` steps.
pub fn session(c: &mut Choices<'_>, steps: usize) -> Script {
    let mut g = Gen {
        c,
        lsn: 0x1_6B37_4000,
        next_xid: 700,
        described: [None; 4],
        streaming: Vec::new(),
        prepared: Vec::new(),
        script: Script::default(),
    };
    g.keepalive();
    for _ in 0..steps {
        if g.c.done() {
            break;
        }
        match g.c.pick(8) {
            0 => g.keepalive(),
            1 | 2 => g.regular(),
            3 => g.stream_block(),
            4 => g.stream_end(),
            5 => g.two_phase(),
            6 => g.finish_prepared(),
            _ => g.message(),
        }
    }
    g.script
}

/// The payloads as the backend byte stream carries them: CopyData frames, back to back.
pub fn frames(payloads: &[Bytes]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for p in payloads {
        write_copy_data(p, &mut out);
    }
    out.to_vec()
}
