//! [`Decoder`]: pgoutput bytes in, [`PgOutput`] out, never a panic.
//!
//! The only state is whether a Stream Start … Stream Stop block is open: inside one, the
//! server prefixes Relation, Type, Insert, Update, Delete, Truncate and Message with the
//! (sub)transaction id, and nowhere else (`proto.c`: the xid is written only when it is
//! valid, and pgoutput passes one only while streaming). A decoder that guessed the
//! prefix from the protocol version would misread every row of a streamed transaction.
//!
//! The Stream Abort message carries its abort position and time only when the stream was
//! started with `streaming = parallel`; both layouts are recognised by their length.

use bytes::Bytes;

use super::message::*;
use super::tuple::TupleData;
use crate::protocol::reader::{DecodeError, DecodeErrorKind, Reader, TagByte};
use crate::protocol::time::PgTimestamp;

/// Decodes a sequence of pgoutput messages of one replication stream.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    in_stream: bool,
}

impl Decoder {
    /// A decoder at the start of a stream (no stream block open).
    pub fn new() -> Self {
        Decoder::default()
    }

    /// A decoder inside a stream block: messages carry their transaction's xid (for
    /// reading back the messages of a streamed transaction).
    pub fn within_stream_block() -> Self {
        Decoder { in_stream: true }
    }

    /// True between Stream Start and Stream Stop.
    pub fn in_stream_block(&self) -> bool {
        self.in_stream
    }

    /// Decodes one message (the payload of one XLogData). On error the decoder's state is
    /// unchanged.
    pub fn decode(&mut self, data: Bytes) -> Result<PgOutput, DecodeError> {
        let mut r = Reader::new(data);
        if r.remaining() == 0 {
            return Err(r.error(DecodeErrorKind::Empty));
        }
        let tag = r.u8("message type")?;
        let msg = self.decode_body(tag, &mut r)?;
        r.finish()?;
        match &msg {
            PgOutput::StreamStart(_) => self.in_stream = true,
            PgOutput::StreamStop => self.in_stream = false,
            _ => {}
        }
        Ok(msg)
    }

    fn xid(&self, r: &mut Reader) -> Result<Option<u32>, DecodeError> {
        if self.in_stream {
            Ok(Some(r.u32("xid")?))
        } else {
            Ok(None)
        }
    }

    fn decode_body(&self, tag: u8, r: &mut Reader) -> Result<PgOutput, DecodeError> {
        Ok(match tag {
            b'B' => PgOutput::Begin(Begin {
                final_lsn: r.lsn("final_lsn")?,
                commit_ts: ts(r, "commit_ts")?,
                xid: r.u32("xid")?,
            }),
            b'C' => PgOutput::Commit(Commit {
                flags: zero_flags(r)?,
                commit_lsn: r.lsn("commit_lsn")?,
                end_lsn: r.lsn("end_lsn")?,
                commit_ts: ts(r, "commit_ts")?,
            }),
            b'O' => PgOutput::Origin(Origin {
                origin_lsn: r.lsn("origin_lsn")?,
                name: r.cstr("origin name")?,
            }),
            b'R' => PgOutput::Relation(relation(self.xid(r)?, r)?),
            b'Y' => PgOutput::Type(Type {
                xid: self.xid(r)?,
                type_oid: r.u32("type oid")?,
                namespace: r.cstr("type namespace")?,
                name: r.cstr("type name")?,
            }),
            b'I' => {
                let xid = self.xid(r)?;
                let relid = r.u32("relid")?;
                expect_byte(r, b'N', "new tuple marker")?;
                PgOutput::Insert(Insert {
                    xid,
                    relid,
                    new: TupleData::decode_last(r)?,
                })
            }
            b'U' => {
                let xid = self.xid(r)?;
                let relid = r.u32("relid")?;
                let old = match r.u8("tuple marker")? {
                    b'K' => Some(OldTuple::Key(TupleData::decode(r)?)),
                    b'O' => Some(OldTuple::Old(TupleData::decode(r)?)),
                    b'N' => None,
                    other => return Err(bad_marker(r, other, "'K', 'O' or 'N'")),
                };
                if old.is_some() {
                    expect_byte(r, b'N', "new tuple marker")?;
                }
                PgOutput::Update(Update {
                    xid,
                    relid,
                    old,
                    new: TupleData::decode_last(r)?,
                })
            }
            b'D' => {
                let xid = self.xid(r)?;
                let relid = r.u32("relid")?;
                let old = match r.u8("tuple marker")? {
                    b'K' => OldTuple::Key(TupleData::decode_last(r)?),
                    b'O' => OldTuple::Old(TupleData::decode_last(r)?),
                    other => return Err(bad_marker(r, other, "'K' or 'O'")),
                };
                PgOutput::Delete(Delete { xid, relid, old })
            }
            b'T' => {
                let xid = self.xid(r)?;
                let nrels = r.i32("relation count")?;
                if nrels < 0 {
                    return Err(r.invalid("relation count", nrels.to_string()));
                }
                let options = r.u8("truncate options")?;
                let nrels = nrels as usize;
                if r.remaining() < nrels.saturating_mul(4) {
                    return Err(r.error(DecodeErrorKind::Truncated {
                        what: "truncated relation ids",
                        needed: nrels.saturating_mul(4),
                        remaining: r.remaining(),
                    }));
                }
                let mut relids = Vec::with_capacity(nrels);
                for _ in 0..nrels {
                    relids.push(r.u32("relid")?);
                }
                PgOutput::Truncate(Truncate {
                    xid,
                    options,
                    relids,
                })
            }
            b'M' => {
                let xid = self.xid(r)?;
                let flags = r.u8("message flags")?;
                let lsn = r.lsn("message lsn")?;
                let prefix = r.cstr("message prefix")?;
                let len = r.i32("message length")?;
                if len < 0 {
                    return Err(r.invalid("message length", len.to_string()));
                }
                PgOutput::Message(Message {
                    xid,
                    flags,
                    lsn,
                    prefix,
                    content: r.bytes(len as usize, "message content")?,
                })
            }
            b'S' => {
                if self.in_stream {
                    return Err(r.invalid(
                        "stream state",
                        "Stream Start while a stream block is already open",
                    ));
                }
                let xid = r.u32("xid")?;
                let first_segment = r.u8("first_segment")?;
                if first_segment > 1 {
                    return Err(r.invalid("first_segment", first_segment.to_string()));
                }
                PgOutput::StreamStart(StreamStart { xid, first_segment })
            }
            b'E' => {
                if !self.in_stream {
                    return Err(
                        r.invalid("stream state", "Stream Stop without an open stream block")
                    );
                }
                PgOutput::StreamStop
            }
            b'c' => PgOutput::StreamCommit(StreamCommit {
                xid: r.u32("xid")?,
                flags: zero_flags(r)?,
                commit_lsn: r.lsn("commit_lsn")?,
                end_lsn: r.lsn("end_lsn")?,
                commit_ts: ts(r, "commit_ts")?,
            }),
            b'A' => {
                let xid = r.u32("xid")?;
                let subxid = r.u32("subxid")?;
                let abort = match r.remaining() {
                    0 => None,
                    _ => Some(AbortInfo {
                        abort_lsn: r.lsn("abort_lsn")?,
                        abort_ts: ts(r, "abort_ts")?,
                    }),
                };
                PgOutput::StreamAbort(StreamAbort { xid, subxid, abort })
            }
            b'b' => PgOutput::BeginPrepare(BeginPrepare {
                prepare_lsn: r.lsn("prepare_lsn")?,
                end_lsn: r.lsn("end_lsn")?,
                prepare_ts: ts(r, "prepare_ts")?,
                xid: r.u32("xid")?,
                gid: r.cstr("gid")?,
            }),
            b'P' => PgOutput::Prepare(prepare(r)?),
            b'p' => PgOutput::StreamPrepare(prepare(r)?),
            b'K' => PgOutput::CommitPrepared(CommitPrepared {
                flags: zero_flags(r)?,
                commit_lsn: r.lsn("commit_lsn")?,
                end_lsn: r.lsn("end_lsn")?,
                commit_ts: ts(r, "commit_ts")?,
                xid: r.u32("xid")?,
                gid: r.cstr("gid")?,
            }),
            b'r' => PgOutput::RollbackPrepared(RollbackPrepared {
                flags: zero_flags(r)?,
                prepare_end_lsn: r.lsn("prepare_end_lsn")?,
                rollback_end_lsn: r.lsn("rollback_end_lsn")?,
                prepare_ts: ts(r, "prepare_ts")?,
                rollback_ts: ts(r, "rollback_ts")?,
                xid: r.u32("xid")?,
                gid: r.cstr("gid")?,
            }),
            other => {
                return Err(DecodeError {
                    offset: 0,
                    kind: DecodeErrorKind::UnknownTag(TagByte(other)),
                });
            }
        })
    }
}

fn ts(r: &mut Reader, what: &'static str) -> Result<PgTimestamp, DecodeError> {
    Ok(PgTimestamp(r.i64(what)?))
}

/// Commit-like messages carry a flags byte that must be 0, as the built-in apply worker
/// insists ("unrecognized flags … in commit message").
fn zero_flags(r: &mut Reader) -> Result<u8, DecodeError> {
    let flags = r.u8("flags")?;
    if flags != 0 {
        return Err(r.invalid("flags", format!("{flags} (expected 0)")));
    }
    Ok(flags)
}

fn expect_byte(r: &mut Reader, want: u8, what: &'static str) -> Result<(), DecodeError> {
    let got = r.u8(what)?;
    if got != want {
        return Err(bad_marker(r, got, &format!("{:?}", want as char)));
    }
    Ok(())
}

fn bad_marker(r: &Reader, got: u8, expected: &str) -> DecodeError {
    DecodeError {
        offset: r.offset() - 1,
        kind: DecodeErrorKind::Invalid {
            what: "tuple marker",
            detail: format!("{:?} (expected {expected})", got as char),
        },
    }
}

fn relation(xid: Option<u32>, r: &mut Reader) -> Result<Relation, DecodeError> {
    let relid = r.u32("relid")?;
    let namespace = r.cstr("relation namespace")?;
    let name = r.cstr("relation name")?;
    let ident = r.u8("replica identity")?;
    let replica_identity = ReplicaIdentity::from_byte(ident).ok_or_else(|| DecodeError {
        offset: r.offset() - 1,
        kind: DecodeErrorKind::Invalid {
            what: "replica identity",
            detail: format!("{:?} (expected 'd', 'n', 'f' or 'i')", ident as char),
        },
    })?;
    let ncols = r.i16("column count")?;
    if ncols < 0 {
        return Err(r.invalid("column count", ncols.to_string()));
    }
    // A column takes at least 10 bytes (flags, empty name, type oid, modifier).
    let mut columns = Vec::with_capacity((ncols as usize).min(r.remaining() / 10));
    for _ in 0..ncols {
        columns.push(RelationColumn {
            flags: r.u8("column flags")?,
            name: r.cstr("column name")?,
            type_oid: r.u32("column type oid")?,
            type_modifier: r.i32("column type modifier")?,
        });
    }
    Ok(Relation {
        xid,
        relid,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

fn prepare(r: &mut Reader) -> Result<Prepare, DecodeError> {
    Ok(Prepare {
        flags: zero_flags(r)?,
        prepare_lsn: r.lsn("prepare_lsn")?,
        end_lsn: r.lsn("end_lsn")?,
        prepare_ts: ts(r, "prepare_ts")?,
        xid: r.u32("xid")?,
        gid: r.cstr("gid")?,
    })
}
