//! Encoding of pgoutput messages: the inverse of [`super::Decoder`].
//!
//! pgsub never sends pgoutput; this exists for round-trip tests, for the benchmarks'
//! generated streams and for the fault-injection server, so that all of them speak the
//! exact layout the decoder reads. An `xid` that is `Some` is written as the stream-block
//! prefix. Counts the wire format cannot hold (more than 32 767 columns, lengths over
//! 2 GiB) panic rather than wrap: this is test and benchmark code.

use bytes::{BufMut, BytesMut};

use super::message::*;
use super::tuple::{Column, TupleData};

/// Appends one column in TupleData form.
pub fn put_column(c: &Column, out: &mut BytesMut) {
    match c {
        Column::Null => out.put_u8(b'n'),
        Column::UnchangedToast => out.put_u8(b'u'),
        Column::Text(v) | Column::Binary(v) => {
            out.put_u8(if matches!(c, Column::Text(_)) {
                b't'
            } else {
                b'b'
            });
            out.put_i32(int32(v.len(), "bytes of a value"));
            out.extend_from_slice(v);
        }
    }
}

fn int16(n: usize, what: &str) -> i16 {
    i16::try_from(n).unwrap_or_else(|_| panic!("{n} {what} do not fit pgoutput's Int16"))
}

fn int32(n: usize, what: &str) -> i32 {
    i32::try_from(n).unwrap_or_else(|_| panic!("{n} {what} do not fit pgoutput's Int32"))
}

fn put_tuple(t: &TupleData, out: &mut BytesMut) {
    out.put_i16(int16(t.len(), "columns"));
    out.extend_from_slice(t.raw());
}

fn put_str(s: &str, out: &mut BytesMut) {
    out.extend_from_slice(s.as_bytes());
    out.put_u8(0);
}

fn put_xid(xid: Option<u32>, out: &mut BytesMut) {
    if let Some(x) = xid {
        out.put_u32(x);
    }
}

fn put_old(old: &OldTuple, out: &mut BytesMut) {
    match old {
        OldTuple::Key(t) => {
            out.put_u8(b'K');
            put_tuple(t, out);
        }
        OldTuple::Old(t) => {
            out.put_u8(b'O');
            put_tuple(t, out);
        }
    }
}

fn put_prepare(p: &Prepare, out: &mut BytesMut) {
    out.put_u8(p.flags);
    out.put_u64(p.prepare_lsn.0);
    out.put_u64(p.end_lsn.0);
    out.put_i64(p.prepare_ts.0);
    out.put_u32(p.xid);
    put_str(&p.gid, out);
}

/// Appends the encoding of `msg` (tag byte first) to `out`.
pub fn encode(msg: &PgOutput, out: &mut BytesMut) {
    out.put_u8(msg.kind().tag());
    match msg {
        PgOutput::Begin(m) => {
            out.put_u64(m.final_lsn.0);
            out.put_i64(m.commit_ts.0);
            out.put_u32(m.xid);
        }
        PgOutput::Commit(m) => {
            out.put_u8(m.flags);
            out.put_u64(m.commit_lsn.0);
            out.put_u64(m.end_lsn.0);
            out.put_i64(m.commit_ts.0);
        }
        PgOutput::Origin(m) => {
            out.put_u64(m.origin_lsn.0);
            put_str(&m.name, out);
        }
        PgOutput::Relation(m) => {
            put_xid(m.xid, out);
            out.put_u32(m.relid);
            put_str(&m.namespace, out);
            put_str(&m.name, out);
            out.put_u8(m.replica_identity.as_byte());
            out.put_i16(int16(m.columns.len(), "columns"));
            for c in &m.columns {
                out.put_u8(c.flags);
                put_str(&c.name, out);
                out.put_u32(c.type_oid);
                out.put_i32(c.type_modifier);
            }
        }
        PgOutput::Type(m) => {
            put_xid(m.xid, out);
            out.put_u32(m.type_oid);
            put_str(&m.namespace, out);
            put_str(&m.name, out);
        }
        PgOutput::Insert(m) => {
            put_xid(m.xid, out);
            out.put_u32(m.relid);
            out.put_u8(b'N');
            put_tuple(&m.new, out);
        }
        PgOutput::Update(m) => {
            put_xid(m.xid, out);
            out.put_u32(m.relid);
            if let Some(old) = &m.old {
                put_old(old, out);
            }
            out.put_u8(b'N');
            put_tuple(&m.new, out);
        }
        PgOutput::Delete(m) => {
            put_xid(m.xid, out);
            out.put_u32(m.relid);
            put_old(&m.old, out);
        }
        PgOutput::Truncate(m) => {
            put_xid(m.xid, out);
            out.put_i32(int32(m.relids.len(), "relations"));
            out.put_u8(m.options);
            for r in &m.relids {
                out.put_u32(*r);
            }
        }
        PgOutput::Message(m) => {
            put_xid(m.xid, out);
            out.put_u8(m.flags);
            out.put_u64(m.lsn.0);
            put_str(&m.prefix, out);
            out.put_i32(int32(m.content.len(), "bytes of message content"));
            out.extend_from_slice(&m.content);
        }
        PgOutput::StreamStart(m) => {
            out.put_u32(m.xid);
            out.put_u8(m.first_segment);
        }
        PgOutput::StreamStop => {}
        PgOutput::StreamCommit(m) => {
            out.put_u32(m.xid);
            out.put_u8(m.flags);
            out.put_u64(m.commit_lsn.0);
            out.put_u64(m.end_lsn.0);
            out.put_i64(m.commit_ts.0);
        }
        PgOutput::StreamAbort(m) => {
            out.put_u32(m.xid);
            out.put_u32(m.subxid);
            if let Some(a) = m.abort {
                out.put_u64(a.abort_lsn.0);
                out.put_i64(a.abort_ts.0);
            }
        }
        PgOutput::BeginPrepare(m) => {
            out.put_u64(m.prepare_lsn.0);
            out.put_u64(m.end_lsn.0);
            out.put_i64(m.prepare_ts.0);
            out.put_u32(m.xid);
            put_str(&m.gid, out);
        }
        PgOutput::Prepare(m) | PgOutput::StreamPrepare(m) => put_prepare(m, out),
        PgOutput::CommitPrepared(m) => {
            out.put_u8(m.flags);
            out.put_u64(m.commit_lsn.0);
            out.put_u64(m.end_lsn.0);
            out.put_i64(m.commit_ts.0);
            out.put_u32(m.xid);
            put_str(&m.gid, out);
        }
        PgOutput::RollbackPrepared(m) => {
            out.put_u8(m.flags);
            out.put_u64(m.prepare_end_lsn.0);
            out.put_u64(m.rollback_end_lsn.0);
            out.put_i64(m.prepare_ts.0);
            out.put_i64(m.rollback_ts.0);
            out.put_u32(m.xid);
            put_str(&m.gid, out);
        }
    }
}
