//! Byte-literal and round-trip tests of the pgoutput decoder.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::lsn::Lsn;
use crate::protocol::reader::{DecodeErrorKind, TagByte};
use crate::protocol::time::PgTimestamp;

fn decode_one(bytes: &'static [u8]) -> Result<PgOutput, crate::protocol::reader::DecodeError> {
    Decoder::new().decode(Bytes::from_static(bytes))
}

fn roundtrip(dec: &mut Decoder, msg: PgOutput) {
    let mut buf = BytesMut::new();
    encode::encode(&msg, &mut buf);
    let got = dec
        .decode(buf.freeze())
        .unwrap_or_else(|e| panic!("{msg:?}: {e}"));
    assert_eq!(got, msg);
}

fn text(s: &'static str) -> Column {
    Column::Text(Bytes::from_static(s.as_bytes()))
}

#[test]
fn begin_from_postgres_bytes() {
    // B, final_lsn 0/16B3748, commit_ts 1, xid 735
    let msg = decode_one(b"B\0\0\0\0\x01\x6b\x37\x48\0\0\0\0\0\0\0\x01\0\0\x02\xdf").unwrap();
    assert_eq!(
        msg,
        PgOutput::Begin(Begin {
            final_lsn: Lsn(0x16B_3748),
            commit_ts: PgTimestamp(1),
            xid: 735
        })
    );
}

#[test]
fn insert_outside_stream_has_no_xid_prefix() {
    let msg = decode_one(b"I\0\0\x40\x00N\0\x01t\0\0\0\x011").unwrap();
    let PgOutput::Insert(ins) = msg else { panic!() };
    assert_eq!(ins.xid, None);
    assert_eq!(ins.relid, 0x4000);
    assert_eq!(ins.new.columns().collect::<Vec<_>>(), vec![text("1")]);
}

#[test]
fn insert_inside_stream_block_reads_the_xid_prefix() {
    let mut d = Decoder::new();
    d.decode(Bytes::from_static(b"S\0\0\x02\xdf\x01")).unwrap();
    assert!(d.in_stream_block());
    let PgOutput::Insert(ins) = d
        .decode(Bytes::from_static(b"I\0\0\x02\xe0\0\0\x40\x00N\0\x01n"))
        .unwrap()
    else {
        panic!()
    };
    assert_eq!((ins.xid, ins.relid), (Some(0x2e0), 0x4000));
    d.decode(Bytes::from_static(b"E")).unwrap();
    assert!(!d.in_stream_block());
    // The same bytes outside the block are a different, invalid message.
    assert!(
        d.decode(Bytes::from_static(b"I\0\0\x02\xe0\0\0\x40\x00N\0\x01n"))
            .is_err()
    );
}

#[test]
fn stream_stop_without_start_is_an_error_and_keeps_state() {
    let mut d = Decoder::new();
    let err = d.decode(Bytes::from_static(b"E")).unwrap_err();
    assert!(matches!(
        err.kind,
        DecodeErrorKind::Invalid {
            what: "stream state",
            ..
        }
    ));
    assert!(!d.in_stream_block());
}

#[test]
fn nested_stream_start_is_an_error() {
    let mut d = Decoder::new();
    d.decode(Bytes::from_static(b"S\0\0\0\x01\x01")).unwrap();
    assert!(d.decode(Bytes::from_static(b"S\0\0\0\x02\x01")).is_err());
    assert!(d.in_stream_block());
}

#[test]
fn update_with_key_tuple_then_new_tuple() {
    let msg = decode_one(b"U\0\0\0\x10K\0\x02t\0\0\0\x011nN\0\x02t\0\0\0\x012u").unwrap();
    let PgOutput::Update(u) = msg else { panic!() };
    let Some(OldTuple::Key(k)) = &u.old else {
        panic!()
    };
    assert_eq!(
        k.columns().collect::<Vec<_>>(),
        vec![text("1"), Column::Null]
    );
    assert_eq!(
        u.new.columns().collect::<Vec<_>>(),
        vec![text("2"), Column::UnchangedToast]
    );
}

#[test]
fn update_with_old_tuple_but_no_new_marker_is_invalid() {
    let err = decode_one(b"U\0\0\0\x10O\0\x01nX\0\x01n").unwrap_err();
    assert_eq!(err.offset, 9);
}

#[test]
fn delete_requires_k_or_o() {
    assert!(decode_one(b"D\0\0\0\x10N\0\x01n").is_err());
    assert!(decode_one(b"D\0\0\0\x10O\0\x01n").is_ok());
}

#[test]
fn relation_with_bad_replica_identity_is_invalid() {
    let err = decode_one(b"R\0\0\0\x10public\0t\0x\0\0").unwrap_err();
    assert!(matches!(
        err.kind,
        DecodeErrorKind::Invalid {
            what: "replica identity",
            ..
        }
    ));
    assert_eq!(err.offset, 14);
}

#[test]
fn relation_column_count_beyond_body_does_not_preallocate() {
    let err = decode_one(b"R\0\0\0\x10public\0t\0d\x7f\xff").unwrap_err();
    assert!(matches!(err.kind, DecodeErrorKind::Truncated { .. }));
}

#[test]
fn truncate_with_huge_relation_count_is_truncated_not_allocated() {
    let err = decode_one(b"T\x7f\xff\xff\xff\x03\0\0\0\x01").unwrap_err();
    assert!(matches!(err.kind, DecodeErrorKind::Truncated { .. }));
}

#[test]
fn truncate_flags_decode() {
    let PgOutput::Truncate(t) = decode_one(b"T\0\0\0\x02\x03\0\0\0\x01\0\0\0\x02").unwrap() else {
        panic!()
    };
    assert!(t.cascade() && t.restart_identity());
    assert_eq!(t.relids, vec![1, 2]);
}

#[test]
fn commit_with_nonzero_flags_is_rejected_like_the_native_worker() {
    let err =
        decode_one(b"C\x01\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x02\0\0\0\0\0\0\0\x03").unwrap_err();
    assert!(matches!(
        err.kind,
        DecodeErrorKind::Invalid { what: "flags", .. }
    ));
}

#[test]
fn stream_abort_both_layouts() {
    let PgOutput::StreamAbort(a) = decode_one(b"A\0\0\0\x05\0\0\0\x06").unwrap() else {
        panic!()
    };
    assert_eq!((a.xid, a.subxid, a.abort), (5, 6, None));
    let PgOutput::StreamAbort(a) =
        decode_one(b"A\0\0\0\x05\0\0\0\x05\0\0\0\0\0\0\0\x09\0\0\0\0\0\0\0\x0a").unwrap()
    else {
        panic!()
    };
    assert_eq!(
        a.abort,
        Some(AbortInfo {
            abort_lsn: Lsn(9),
            abort_ts: PgTimestamp(10)
        })
    );
    // Anything between the two layouts is truncated.
    assert!(decode_one(b"A\0\0\0\x05\0\0\0\x05\0\0\0").is_err());
}

#[test]
fn message_content_length_beyond_body_is_truncated() {
    let err = decode_one(b"M\x01\0\0\0\0\0\0\0\x01pfx\0\0\0\x10\0abc").unwrap_err();
    assert!(matches!(
        err.kind,
        DecodeErrorKind::Truncated {
            what: "message content",
            ..
        }
    ));
}

#[test]
fn trailing_bytes_after_commit_are_rejected() {
    let err =
        decode_one(b"C\0\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x02\0\0\0\0\0\0\0\x03!").unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::TrailingBytes(1));
    assert_eq!(err.offset, 26);
}

#[test]
fn unknown_tag_and_empty_message() {
    assert_eq!(
        decode_one(b"Z").unwrap_err().kind,
        DecodeErrorKind::UnknownTag(TagByte(b'Z'))
    );
    assert_eq!(decode_one(b"").unwrap_err().kind, DecodeErrorKind::Empty);
}

#[test]
fn every_prefix_of_a_valid_message_is_an_error_not_a_panic() {
    let mut buf = BytesMut::new();
    encode::encode(&sample_update(None), &mut buf);
    let full = buf.freeze();
    for n in 0..full.len() {
        assert!(
            Decoder::new().decode(full.slice(..n)).is_err(),
            "prefix {n} decoded"
        );
    }
}

fn sample_update(xid: Option<u32>) -> PgOutput {
    PgOutput::Update(Update {
        xid,
        relid: 16384,
        old: Some(OldTuple::Old(TupleData::from_columns(&[
            text("1"),
            text("old"),
            Column::Null,
        ]))),
        new: TupleData::from_columns(&[
            text("1"),
            Column::UnchangedToast,
            Column::Binary(Bytes::from_static(b"\0\x01")),
        ]),
    })
}

#[test]
fn every_message_kind_round_trips() {
    let mut d = Decoder::new();
    let ts = PgTimestamp(789_000_000);
    let rel = |xid| {
        PgOutput::Relation(Relation {
            xid,
            relid: 16384,
            namespace: "public".into(),
            name: "tëst".into(),
            replica_identity: ReplicaIdentity::Full,
            columns: vec![
                RelationColumn {
                    flags: 1,
                    name: "id".into(),
                    type_oid: 23,
                    type_modifier: -1,
                },
                RelationColumn {
                    flags: 0,
                    name: "v".into(),
                    type_oid: 1043,
                    type_modifier: 14,
                },
            ],
        })
    };
    let plain = vec![
        PgOutput::Begin(Begin {
            final_lsn: Lsn(100),
            commit_ts: ts,
            xid: 7,
        }),
        PgOutput::Origin(Origin {
            origin_lsn: Lsn(5),
            name: "pg_16400".into(),
        }),
        PgOutput::Type(Type {
            xid: None,
            type_oid: 16390,
            namespace: "public".into(),
            name: "mood".into(),
        }),
        rel(None),
        PgOutput::Insert(Insert {
            xid: None,
            relid: 16384,
            new: TupleData::from_columns(&[text("1"), Column::Null]),
        }),
        sample_update(None),
        PgOutput::Update(Update {
            xid: None,
            relid: 16384,
            old: None,
            new: TupleData::from_columns(&[]),
        }),
        PgOutput::Delete(Delete {
            xid: None,
            relid: 16384,
            old: OldTuple::Key(TupleData::from_columns(&[text("1"), Column::Null])),
        }),
        PgOutput::Truncate(Truncate {
            xid: None,
            options: 2,
            relids: vec![16384, 16390],
        }),
        PgOutput::Message(Message {
            xid: None,
            flags: 1,
            lsn: Lsn(99),
            prefix: "pfx".into(),
            content: Bytes::from_static(b"\0bin\xff"),
        }),
        PgOutput::Commit(Commit {
            flags: 0,
            commit_lsn: Lsn(100),
            end_lsn: Lsn(148),
            commit_ts: ts,
        }),
        PgOutput::BeginPrepare(BeginPrepare {
            prepare_lsn: Lsn(200),
            end_lsn: Lsn(260),
            prepare_ts: ts,
            xid: 8,
            gid: "g1".into(),
        }),
        PgOutput::Prepare(Prepare {
            flags: 0,
            prepare_lsn: Lsn(200),
            end_lsn: Lsn(260),
            prepare_ts: ts,
            xid: 8,
            gid: "g1".into(),
        }),
        PgOutput::CommitPrepared(CommitPrepared {
            flags: 0,
            commit_lsn: Lsn(300),
            end_lsn: Lsn(350),
            commit_ts: ts,
            xid: 8,
            gid: "g1".into(),
        }),
        PgOutput::RollbackPrepared(RollbackPrepared {
            flags: 0,
            prepare_end_lsn: Lsn(260),
            rollback_end_lsn: Lsn(400),
            prepare_ts: ts,
            rollback_ts: PgTimestamp(ts.0 + 1),
            xid: 9,
            gid: "g2".into(),
        }),
    ];
    for m in plain {
        roundtrip(&mut d, m);
    }
    let streamed = vec![
        PgOutput::StreamStart(StreamStart {
            xid: 10,
            first_segment: 1,
        }),
        rel(Some(10)),
        PgOutput::Insert(Insert {
            xid: Some(11),
            relid: 16384,
            new: TupleData::from_columns(&[text("2"), text("x")]),
        }),
        sample_update(Some(10)),
        PgOutput::Delete(Delete {
            xid: Some(10),
            relid: 16384,
            old: OldTuple::Old(TupleData::from_columns(&[text("2"), text("x")])),
        }),
        PgOutput::Truncate(Truncate {
            xid: Some(10),
            options: 1,
            relids: vec![16384],
        }),
        PgOutput::Message(Message {
            xid: Some(10),
            flags: 1,
            lsn: Lsn(450),
            prefix: "p".into(),
            content: Bytes::new(),
        }),
        PgOutput::Type(Type {
            xid: Some(10),
            type_oid: 16390,
            namespace: "".into(),
            name: "int4".into(),
        }),
        PgOutput::StreamStop,
        PgOutput::StreamAbort(StreamAbort {
            xid: 10,
            subxid: 11,
            abort: None,
        }),
        PgOutput::StreamAbort(StreamAbort {
            xid: 10,
            subxid: 11,
            abort: Some(AbortInfo {
                abort_lsn: Lsn(470),
                abort_ts: ts,
            }),
        }),
        PgOutput::StreamCommit(StreamCommit {
            xid: 10,
            flags: 0,
            commit_lsn: Lsn(500),
            end_lsn: Lsn(548),
            commit_ts: ts,
        }),
        PgOutput::StreamPrepare(Prepare {
            flags: 0,
            prepare_lsn: Lsn(600),
            end_lsn: Lsn(650),
            prepare_ts: ts,
            xid: 12,
            gid: "g3".into(),
        }),
    ];
    for m in streamed {
        roundtrip(&mut d, m);
    }
}

#[test]
fn message_kinds_have_distinct_tags_and_names() {
    let mut tags: Vec<u8> = MessageKind::ALL.iter().map(|k| k.tag()).collect();
    tags.sort();
    tags.dedup();
    assert_eq!(tags.len(), MessageKind::ALL.len());
    let mut names: Vec<&str> = MessageKind::ALL.iter().map(|k| k.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), MessageKind::ALL.len());
}
