//! The JSON form of decoded messages: one object per message, as `pgsub decode` prints.
//!
//! Every object has `kind` and the XLogData `wal_start`; then the message's own fields,
//! named as in the protocol documentation, LSNs as `X/Y` strings and timestamps in
//! RFC 3339 UTC. Row messages name their relation as `"schema.table"` and carry row
//! images as objects from column name to value:
//!
//! | wire      | JSON                          |
//! |-----------|-------------------------------|
//! | `'t'`     | the text, as a string         |
//! | `'b'`     | `{"binary": "<hex>"}`         |
//! | `'n'`     | `null`                        |
//! | `'u'`     | `{"unchanged_toast": true}`   |
//!
//! A `'K'` key tuple becomes `key` holding only the replica-identity columns: its other
//! columns are placeholders, not NULLs, and are left out so nobody mistakes them for data.
//! An `'O'` tuple becomes `old`.

use serde_json::{Map, Value, json};

use crate::pgoutput::{Column, ColumnRef, OldTuple, PgOutput, Relation, TupleData};
use crate::stream::XLogHeader;
use crate::stream::relations::RelationCache;

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// The JSON value of one column.
pub fn column_value(c: &Column) -> Value {
    match c {
        Column::Null => Value::Null,
        Column::UnchangedToast => json!({ "unchanged_toast": true }),
        Column::Text(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
        Column::Binary(b) => json!({ "binary": hex(b) }),
    }
}

/// A row image as an object; with `keys_only`, only replica-identity columns.
fn tuple_object(rel: Option<&Relation>, t: &TupleData, keys_only: bool) -> Value {
    let mut obj = Map::new();
    for (i, col) in t.columns().enumerate() {
        let meta = rel.and_then(|r| r.columns.get(i));
        if keys_only && !meta.is_some_and(|m| m.is_key()) {
            continue;
        }
        let name = meta.map_or_else(|| format!("${}", i + 1), |m| m.name.clone());
        obj.insert(name, column_value(&col));
    }
    Value::Object(obj)
}

fn old_tuple(obj: &mut Map<String, Value>, rel: Option<&Relation>, old: &OldTuple) {
    match old {
        OldTuple::Key(t) => obj.insert("key".into(), tuple_object(rel, t, true)),
        OldTuple::Old(t) => obj.insert("old".into(), tuple_object(rel, t, false)),
    };
}

/// Text, or `{"binary": hex}` when the content is not UTF-8.
fn content_value(b: &[u8]) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => Value::String(s.to_owned()),
        Err(_) => json!({ "binary": hex(b) }),
    }
}

/// The JSON object of one message. `relations` must already include the message (the
/// session updates it before returning the event), so a Relation names itself.
pub fn message(header: &XLogHeader, msg: &PgOutput, relations: &RelationCache) -> Value {
    let mut o = Map::new();
    o.insert("kind".into(), json!(msg.kind().as_str()));
    o.insert("wal_start".into(), json!(header.wal_start));
    let xid = |o: &mut Map<String, Value>, xid: Option<u32>| {
        if let Some(x) = xid {
            o.insert("xid".into(), json!(x));
        }
    };
    let relation = |o: &mut Map<String, Value>, relid: u32| {
        o.insert("relid".into(), json!(relid));
        o.insert(
            "relation".into(),
            relations
                .qualified_name(relid)
                .map_or(Value::Null, Value::String),
        );
        relations.get(relid)
    };
    match msg {
        PgOutput::Begin(m) => {
            o.insert("xid".into(), json!(m.xid));
            o.insert("final_lsn".into(), json!(m.final_lsn));
            o.insert("commit_ts".into(), json!(m.commit_ts));
        }
        PgOutput::Commit(m) => {
            o.insert("commit_lsn".into(), json!(m.commit_lsn));
            o.insert("end_lsn".into(), json!(m.end_lsn));
            o.insert("commit_ts".into(), json!(m.commit_ts));
        }
        PgOutput::Origin(m) => {
            o.insert("origin_lsn".into(), json!(m.origin_lsn));
            o.insert("name".into(), json!(m.name));
        }
        PgOutput::Relation(m) => {
            xid(&mut o, m.xid);
            o.insert("relid".into(), json!(m.relid));
            o.insert("relation".into(), json!(m.qualified_name()));
            o.insert("replica_identity".into(), json!(m.replica_identity));
            let cols: Vec<Value> = m
                .columns
                .iter()
                .map(|c| {
                    let mut col = json!({
                        "name": c.name,
                        "type_oid": c.type_oid,
                        "type_modifier": c.type_modifier,
                        "key": c.is_key(),
                    });
                    if let Some(t) = relations.get_type(c.type_oid) {
                        let ns = if t.namespace.is_empty() {
                            "pg_catalog"
                        } else {
                            &t.namespace
                        };
                        col["type"] = json!(format!("{ns}.{}", t.name));
                    }
                    col
                })
                .collect();
            o.insert("columns".into(), Value::Array(cols));
        }
        PgOutput::Type(m) => {
            xid(&mut o, m.xid);
            o.insert("type_oid".into(), json!(m.type_oid));
            o.insert("namespace".into(), json!(m.namespace));
            o.insert("name".into(), json!(m.name));
        }
        PgOutput::Insert(m) => {
            xid(&mut o, m.xid);
            let rel = relation(&mut o, m.relid);
            o.insert("new".into(), tuple_object(rel, &m.new, false));
        }
        PgOutput::Update(m) => {
            xid(&mut o, m.xid);
            let rel = relation(&mut o, m.relid);
            if let Some(old) = &m.old {
                old_tuple(&mut o, rel, old);
            }
            o.insert("new".into(), tuple_object(rel, &m.new, false));
        }
        PgOutput::Delete(m) => {
            xid(&mut o, m.xid);
            let rel = relation(&mut o, m.relid);
            old_tuple(&mut o, rel, &m.old);
        }
        PgOutput::Truncate(m) => {
            xid(&mut o, m.xid);
            o.insert("relids".into(), json!(m.relids));
            let names: Vec<Value> = m
                .relids
                .iter()
                .map(|r| {
                    relations
                        .qualified_name(*r)
                        .map_or(Value::Null, Value::String)
                })
                .collect();
            o.insert("relations".into(), Value::Array(names));
            o.insert("cascade".into(), json!(m.cascade()));
            o.insert("restart_identity".into(), json!(m.restart_identity()));
        }
        PgOutput::Message(m) => {
            xid(&mut o, m.xid);
            o.insert("transactional".into(), json!(m.transactional()));
            o.insert("lsn".into(), json!(m.lsn));
            o.insert("prefix".into(), json!(m.prefix));
            o.insert("content".into(), content_value(&m.content));
        }
        PgOutput::StreamStart(m) => {
            o.insert("xid".into(), json!(m.xid));
            o.insert("first_segment".into(), json!(m.first_segment == 1));
        }
        PgOutput::StreamStop => {}
        PgOutput::StreamCommit(m) => {
            o.insert("xid".into(), json!(m.xid));
            o.insert("commit_lsn".into(), json!(m.commit_lsn));
            o.insert("end_lsn".into(), json!(m.end_lsn));
            o.insert("commit_ts".into(), json!(m.commit_ts));
        }
        PgOutput::StreamAbort(m) => {
            o.insert("xid".into(), json!(m.xid));
            o.insert("subxid".into(), json!(m.subxid));
            if let Some(a) = m.abort {
                o.insert("abort_lsn".into(), json!(a.abort_lsn));
                o.insert("abort_ts".into(), json!(a.abort_ts));
            }
        }
        PgOutput::BeginPrepare(m) => {
            o.insert("xid".into(), json!(m.xid));
            o.insert("gid".into(), json!(m.gid));
            o.insert("prepare_lsn".into(), json!(m.prepare_lsn));
            o.insert("end_lsn".into(), json!(m.end_lsn));
            o.insert("prepare_ts".into(), json!(m.prepare_ts));
        }
        PgOutput::Prepare(m) | PgOutput::StreamPrepare(m) => {
            o.insert("xid".into(), json!(m.xid));
            o.insert("gid".into(), json!(m.gid));
            o.insert("prepare_lsn".into(), json!(m.prepare_lsn));
            o.insert("end_lsn".into(), json!(m.end_lsn));
            o.insert("prepare_ts".into(), json!(m.prepare_ts));
        }
        PgOutput::CommitPrepared(m) => {
            o.insert("xid".into(), json!(m.xid));
            o.insert("gid".into(), json!(m.gid));
            o.insert("commit_lsn".into(), json!(m.commit_lsn));
            o.insert("end_lsn".into(), json!(m.end_lsn));
            o.insert("commit_ts".into(), json!(m.commit_ts));
        }
        PgOutput::RollbackPrepared(m) => {
            o.insert("xid".into(), json!(m.xid));
            o.insert("gid".into(), json!(m.gid));
            o.insert("prepare_end_lsn".into(), json!(m.prepare_end_lsn));
            o.insert("rollback_end_lsn".into(), json!(m.rollback_end_lsn));
            o.insert("prepare_ts".into(), json!(m.prepare_ts));
            o.insert("rollback_ts".into(), json!(m.rollback_ts));
        }
    }
    Value::Object(o)
}

/// Writes the JSON line of a row message (Insert, Update, Delete) straight to `out`,
/// byte for byte what serializing [`message`] writes, without building the value (most of
/// a stream is row messages: this is what `decode` spends its time on). Returns `false`,
/// writing nothing, for any other message, or a row of a relation whose columns are not
/// all known (those take [`message`]).
pub fn write_row_message<W: std::io::Write>(
    out: &mut W,
    header: &XLogHeader,
    msg: &PgOutput,
    relations: &RelationCache,
) -> std::io::Result<bool> {
    let (xid, relid, old, new) = match msg {
        PgOutput::Insert(m) => (m.xid, m.relid, None, Some(&m.new)),
        PgOutput::Update(m) => (m.xid, m.relid, m.old.as_ref(), Some(&m.new)),
        PgOutput::Delete(m) => (m.xid, m.relid, Some(&m.old), None),
        _ => return Ok(false),
    };
    let Some(rel) = relations.get(relid) else {
        return Ok(false);
    };
    let fits = |t: &TupleData| t.len() <= rel.columns.len();
    if !new.is_none_or(fits) || !old.is_none_or(|o| fits(o.tuple())) {
        return Ok(false);
    }
    write!(
        out,
        "{{\"kind\":\"{}\",\"wal_start\":\"{}\"",
        msg.kind().as_str(),
        header.wal_start
    )?;
    if let Some(x) = xid {
        write!(out, ",\"xid\":{x}")?;
    }
    write!(out, ",\"relid\":{relid},\"relation\":")?;
    serde_json::to_writer(&mut *out, &rel.qualified_name())?;
    match old {
        Some(OldTuple::Key(t)) => {
            out.write_all(b",\"key\":")?;
            write_tuple(out, rel, t, true)?;
        }
        Some(OldTuple::Old(t)) => {
            out.write_all(b",\"old\":")?;
            write_tuple(out, rel, t, false)?;
        }
        None => {}
    }
    if let Some(t) = new {
        out.write_all(b",\"new\":")?;
        write_tuple(out, rel, t, false)?;
    }
    out.write_all(b"}")?;
    Ok(true)
}

/// A row image as [`tuple_object`] serializes it; every column's name is known.
fn write_tuple<W: std::io::Write>(
    out: &mut W,
    rel: &Relation,
    t: &TupleData,
    keys_only: bool,
) -> std::io::Result<()> {
    out.write_all(b"{")?;
    let mut first = true;
    for (col, meta) in t.iter().zip(&rel.columns) {
        if keys_only && !meta.is_key() {
            continue;
        }
        if !first {
            out.write_all(b",")?;
        }
        first = false;
        serde_json::to_writer(&mut *out, &meta.name)?;
        out.write_all(b":")?;
        match col {
            ColumnRef::Null => out.write_all(b"null")?,
            ColumnRef::UnchangedToast => out.write_all(b"{\"unchanged_toast\":true}")?,
            ColumnRef::Text(b) => match std::str::from_utf8(b) {
                Ok(text) => serde_json::to_writer(&mut *out, text)?,
                Err(_) => serde_json::to_writer(&mut *out, &String::from_utf8_lossy(b))?,
            },
            ColumnRef::Binary(b) => write!(out, "{{\"binary\":\"{}\"}}", hex(b))?,
        }
    }
    out.write_all(b"}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsn::Lsn;
    use crate::pgoutput::*;
    use crate::protocol::time::PgTimestamp;
    use bytes::Bytes;

    fn header() -> XLogHeader {
        XLogHeader {
            wal_start: Lsn(0x16B_3748),
            wal_end: Lsn(0x16B_3748),
            send_time: PgTimestamp(0),
        }
    }

    fn cache() -> RelationCache {
        let mut c = RelationCache::default();
        c.on_message(&PgOutput::Relation(Relation {
            xid: None,
            relid: 16384,
            namespace: "public".into(),
            name: "t".into(),
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
                    name: "body".into(),
                    type_oid: 25,
                    type_modifier: -1,
                },
            ],
        }))
        .unwrap();
        c
    }

    #[test]
    fn update_with_key_tuple_shows_only_key_columns_and_markers() {
        let msg = PgOutput::Update(Update {
            xid: None,
            relid: 16384,
            old: Some(OldTuple::Key(TupleData::from_columns(&[
                Column::Text(Bytes::from_static(b"1")),
                Column::Null,
            ]))),
            new: TupleData::from_columns(&[
                Column::Text(Bytes::from_static(b"2")),
                Column::UnchangedToast,
            ]),
        });
        let v = message(&header(), &msg, &cache());
        assert_eq!(
            v,
            json!({
                "kind": "update", "wal_start": "0/16B3748", "relid": 16384, "relation": "public.t",
                "key": {"id": "1"},
                "new": {"id": "2", "body": {"unchanged_toast": true}}
            })
        );
    }

    #[test]
    fn binary_values_and_nulls() {
        let msg = PgOutput::Insert(Insert {
            xid: Some(9),
            relid: 16384,
            new: TupleData::from_columns(&[
                Column::Binary(Bytes::from_static(b"\x00\x01\xff")),
                Column::Null,
            ]),
        });
        let v = message(&header(), &msg, &cache());
        assert_eq!(v["new"], json!({"id": {"binary": "0001ff"}, "body": null}));
        assert_eq!(v["xid"], json!(9));
    }

    #[test]
    fn unknown_relation_is_null_and_columns_are_numbered() {
        let msg = PgOutput::Insert(Insert {
            xid: None,
            relid: 1,
            new: TupleData::from_columns(&[Column::Null]),
        });
        let v = message(&header(), &msg, &RelationCache::default());
        assert_eq!(v["relation"], Value::Null);
        assert_eq!(v["new"], json!({"$1": null}));
    }

    /// The direct writer's bytes for `msg`, and `message`'s serialized.
    fn both(msg: &PgOutput, rels: &RelationCache) -> (Option<String>, String) {
        let mut fast = Vec::new();
        let written = write_row_message(&mut fast, &header(), msg, rels).unwrap();
        let slow = serde_json::to_string(&message(&header(), msg, rels)).unwrap();
        (written.then(|| String::from_utf8(fast).unwrap()), slow)
    }

    #[test]
    fn row_messages_written_directly_are_byte_for_byte_what_the_value_serializes() {
        let text = |s: &'static [u8]| Column::Text(Bytes::from_static(s));
        let msgs = [
            PgOutput::Insert(Insert {
                xid: Some(7),
                relid: 16384,
                new: TupleData::from_columns(&[
                    text(b"1"),
                    text(b"a \"quoted\" \\ line\nbreak \x01 \xc3\xa9"),
                ]),
            }),
            PgOutput::Insert(Insert {
                xid: None,
                relid: 16384,
                new: TupleData::from_columns(&[
                    Column::Binary(Bytes::from_static(b"\x00\xff")),
                    Column::Null,
                ]),
            }),
            PgOutput::Update(Update {
                xid: None,
                relid: 16384,
                old: Some(OldTuple::Key(TupleData::from_columns(&[
                    text(b"1"),
                    Column::Null,
                ]))),
                new: TupleData::from_columns(&[text(b"2"), Column::UnchangedToast]),
            }),
            PgOutput::Update(Update {
                xid: None,
                relid: 16384,
                old: Some(OldTuple::Old(TupleData::from_columns(&[
                    text(b"1"),
                    text(b"\xff not utf-8"),
                ]))),
                new: TupleData::from_columns(&[text(b"2")]),
            }),
            PgOutput::Update(Update {
                xid: Some(1),
                relid: 16384,
                old: None,
                new: TupleData::from_columns(&[text(b"3"), text(b"")]),
            }),
            PgOutput::Delete(Delete {
                xid: None,
                relid: 16384,
                old: OldTuple::Key(TupleData::from_columns(&[text(b"9"), Column::Null])),
            }),
        ];
        for m in &msgs {
            let (fast, slow) = both(m, &cache());
            assert_eq!(fast.as_deref(), Some(slow.as_str()));
        }
        // Not a row, an unknown relation, more columns than the relation names: the value.
        let begin = PgOutput::Begin(Begin {
            final_lsn: Lsn(1),
            commit_ts: PgTimestamp(0),
            xid: 1,
        });
        assert_eq!(both(&begin, &cache()).0, None);
        assert_eq!(both(&msgs[0], &RelationCache::default()).0, None);
        let wide = PgOutput::Insert(Insert {
            xid: None,
            relid: 16384,
            new: TupleData::from_columns(&[text(b"1"), text(b"2"), text(b"3")]),
        });
        assert_eq!(both(&wide, &cache()).0, None);
    }

    #[test]
    fn non_utf8_message_content_is_hex() {
        let msg = PgOutput::Message(Message {
            xid: None,
            flags: 0,
            lsn: Lsn(1),
            prefix: "p".into(),
            content: Bytes::from_static(b"\xff\xfe"),
        });
        let v = message(&header(), &msg, &RelationCache::default());
        assert_eq!(v["content"], json!({"binary": "fffe"}));
        assert_eq!(v["transactional"], json!(false));
    }
}
