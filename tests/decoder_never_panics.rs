//! The decoder never panics on any bytes. Random byte strings, valid messages of every
//! kind (made with `encode::encode`) and then damaged — bytes flipped, cut at every
//! length, bytes inserted and removed, length and count fields overwritten at every
//! offset, two messages spliced — and every payload of every recording in
//! `proto-fixtures/` damaged the same way, are fed to every entry point of the sans-I/O
//! core: `Decoder::decode` inside and outside a stream block, `ReplicationMessage::parse`,
//! `Session::on_copy_data`, `FrameDecoder::decode_frame` and `BackendMessage::parse`.
//! Each must return Ok or Err, and an Err must name an offset inside its input. Valid
//! messages generated for every kind must survive encode then decode unchanged, and
//! recorded streams must play through a session and re-encode byte for byte. The case
//! count defaults to a few hundred per property (the file runs in seconds in a debug
//! build); set `PROPTEST_CASES` to run more.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use pgsub::Lsn;
use pgsub::pgoutput::encode::encode;
use pgsub::pgoutput::*;
use pgsub::protocol::backend::BackendMessage;
use pgsub::protocol::frame::{Frame, FrameDecoder, write_frame};
use pgsub::protocol::replication::{
    ReplicationMessage, XLOG_DATA_HEADER_LEN, XLogData, write_xlog_data,
};
use pgsub::protocol::time::PgTimestamp;
use pgsub::stream::{Session, StreamError};
use proptest::prelude::*;
use proptest::sample::Index;

// ---------------------------------------------------------------------------------------
// Feeding bytes to every entry point.

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `f`, turning a panic into one that names the entry point and the input in hex.
fn guard(entry: &str, input: &[u8], f: impl FnOnce()) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(f)) {
        let msg = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        panic!("{entry} panicked on input {}: {msg}", hex(input));
    }
}

/// The CopyData payload of an XLogData carrying `body`.
fn xlog_payload(body: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    write_xlog_data(
        &XLogData {
            wal_start: Lsn(0x100),
            wal_end: Lsn(0x100),
            send_time: PgTimestamp(800_000_000_000_000),
            data: Bytes::copy_from_slice(body),
        },
        &mut out,
    );
    out.freeze()
}

fn encoded(msg: &PgOutput) -> Bytes {
    let mut out = BytesMut::new();
    encode(msg, &mut out);
    out.freeze()
}

fn stream_start() -> PgOutput {
    PgOutput::StreamStart(StreamStart {
        xid: 801,
        first_segment: 1,
    })
}

/// A decoder outside (`false`) or inside (`true`) a stream block.
fn decoder_in(in_stream: bool) -> Decoder {
    let mut d = Decoder::new();
    if in_stream {
        d.decode(encoded(&stream_start()))
            .expect("Stream Start decodes");
    }
    d
}

/// A session that has just opened a stream block, or a fresh one.
fn session_in(in_stream: bool) -> Session {
    let mut s = Session::new(Lsn::ZERO);
    if in_stream {
        let p = xlog_payload(&encoded(&stream_start()));
        s.on_copy_data(p.clone(), p.len() + 5)
            .expect("Stream Start is accepted");
    }
    s
}

/// Decodes `bytes` as pgoutput; an error must be inside the input and leave the state.
fn decode_checked(dec: &mut Decoder, bytes: &Bytes) -> Option<PgOutput> {
    let before = dec.in_stream_block();
    match dec.decode(bytes.clone()) {
        Ok(msg) => Some(msg),
        Err(e) => {
            assert!(e.offset <= bytes.len(), "{e} in {} bytes", bytes.len());
            assert_eq!(
                dec.in_stream_block(),
                before,
                "a failed decode moved the state"
            );
            None
        }
    }
}

fn replication_checked(payload: &Bytes) {
    if let Err(e) = ReplicationMessage::parse(payload.clone()) {
        assert!(e.offset <= payload.len(), "{e} in {} bytes", payload.len());
    }
}

fn session_checked(session: &mut Session, payload: &Bytes) {
    if let Err(StreamError::Decode { source, .. }) =
        session.on_copy_data(payload.clone(), payload.len() + 5)
    {
        assert!(
            source.offset <= payload.len(),
            "{source} in {} bytes",
            payload.len()
        );
    }
}

fn backend_checked(frame: Frame) {
    let len = frame.body.len();
    if let Err(e) = BackendMessage::parse(frame) {
        assert!(e.offset <= len, "{e} in {len} bytes");
    }
}

/// Cuts `stream` into frames with `dec` and parses each.
fn frames_checked(dec: &FrameDecoder, stream: &[u8]) {
    let mut buf = BytesMut::from(stream);
    let mut used = 0;
    loop {
        match dec.decode_frame(&mut buf) {
            Ok(Some(frame)) => {
                used += frame.wire_len();
                assert!(used <= stream.len(), "frames longer than the input");
                backend_checked(frame);
            }
            Ok(None) => {
                assert_eq!(buf.len(), stream.len() - used, "buffered bytes lost");
                break;
            }
            Err(e) => {
                assert!(e.offset < 5, "a header error at byte {}", e.offset);
                break;
            }
        }
    }
}

fn copy_data_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    write_frame(b'd', payload, &mut out);
    out.to_vec()
}

/// Feeds `input` to every entry point, in every reading of it that makes sense: a
/// pgoutput message in and out of a stream block, a CopyData payload and the body of an
/// XLogData (to the replication parser and to sessions in and out of a block), a backend
/// byte stream and a framed CopyData (to the frame decoder with the production cap and a
/// small one), and one backend message whose type is its first byte.
fn feed_everything(input: &[u8]) {
    let bytes = Bytes::copy_from_slice(input);
    for in_stream in [false, true] {
        decode_checked(&mut decoder_in(in_stream), &bytes);
    }
    let xlog = xlog_payload(input);
    for payload in [&bytes, &xlog] {
        replication_checked(payload);
        for in_stream in [false, true] {
            session_checked(&mut session_in(in_stream), payload);
        }
    }
    let framed = copy_data_frame(input);
    for dec in [FrameDecoder::default(), FrameDecoder::new(64)] {
        frames_checked(&dec, input);
        frames_checked(&dec, &framed);
    }
    if let Some((&tag, body)) = input.split_first() {
        backend_checked(Frame {
            tag,
            body: Bytes::copy_from_slice(body),
        });
    }
}

/// The cheap part of [`feed_everything`], for loops over every offset of an input: the
/// decoder in the given state, and a session in that state given it as an XLogData body.
fn feed_decoder(input: &[u8], in_stream: bool) {
    decode_checked(&mut decoder_in(in_stream), &Bytes::copy_from_slice(input));
    session_checked(&mut session_in(in_stream), &xlog_payload(input));
}

// ---------------------------------------------------------------------------------------
// Strategies: valid messages of every kind.

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn lsn() -> impl Strategy<Value = Lsn> {
    any::<u64>().prop_map(Lsn)
}

fn ts() -> impl Strategy<Value = PgTimestamp> {
    any::<i64>().prop_map(PgTimestamp)
}

/// A NUL-terminated string's content: any text without NUL.
fn cstr() -> impl Strategy<Value = String> {
    "[^\\x00]{0,12}"
}

fn value() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn column() -> impl Strategy<Value = Column> {
    prop_oneof![
        Just(Column::Null),
        Just(Column::UnchangedToast),
        value().prop_map(Column::Text),
        value().prop_map(Column::Binary),
    ]
}

fn tuple() -> impl Strategy<Value = TupleData> {
    prop::collection::vec(column(), 0..6).prop_map(|cols| TupleData::from_columns(&cols))
}

fn old_tuple() -> impl Strategy<Value = OldTuple> {
    prop_oneof![
        tuple().prop_map(OldTuple::Key),
        tuple().prop_map(OldTuple::Old)
    ]
}

fn replica_identity() -> impl Strategy<Value = ReplicaIdentity> {
    prop_oneof![
        Just(ReplicaIdentity::Default),
        Just(ReplicaIdentity::Nothing),
        Just(ReplicaIdentity::Full),
        Just(ReplicaIdentity::Index),
    ]
}

fn relation_column() -> impl Strategy<Value = RelationColumn> {
    (any::<u8>(), cstr(), any::<u32>(), any::<i32>()).prop_map(
        |(flags, name, type_oid, type_modifier)| RelationColumn {
            flags,
            name,
            type_oid,
            type_modifier,
        },
    )
}

fn prepare() -> impl Strategy<Value = Prepare> {
    (lsn(), lsn(), ts(), any::<u32>(), cstr()).prop_map(
        |(prepare_lsn, end_lsn, prepare_ts, xid, gid)| Prepare {
            flags: 0,
            prepare_lsn,
            end_lsn,
            prepare_ts,
            xid,
            gid,
        },
    )
}

/// A valid message for a decoder outside (`false`) or inside (`true`) a stream block:
/// the `xid` prefixes are present exactly inside one, Stream Start only outside and
/// Stream Stop only inside, and flags that must be zero are zero.
fn message(in_stream: bool) -> BoxedStrategy<PgOutput> {
    let xid = move || {
        if in_stream {
            any::<u32>().prop_map(Some).boxed()
        } else {
            Just(None).boxed()
        }
    };
    let common = prop_oneof![
        (lsn(), ts(), any::<u32>()).prop_map(|(final_lsn, commit_ts, xid)| {
            PgOutput::Begin(Begin {
                final_lsn,
                commit_ts,
                xid,
            })
        }),
        (lsn(), lsn(), ts()).prop_map(|(commit_lsn, end_lsn, commit_ts)| {
            PgOutput::Commit(Commit {
                flags: 0,
                commit_lsn,
                end_lsn,
                commit_ts,
            })
        }),
        (lsn(), cstr())
            .prop_map(|(origin_lsn, name)| PgOutput::Origin(Origin { origin_lsn, name })),
        (
            xid(),
            any::<u32>(),
            cstr(),
            cstr(),
            replica_identity(),
            prop::collection::vec(relation_column(), 0..5)
        )
            .prop_map(|(xid, relid, namespace, name, replica_identity, columns)| {
                PgOutput::Relation(Relation {
                    xid,
                    relid,
                    namespace,
                    name,
                    replica_identity,
                    columns,
                })
            }),
        (xid(), any::<u32>(), cstr(), cstr()).prop_map(|(xid, type_oid, namespace, name)| {
            PgOutput::Type(Type {
                xid,
                type_oid,
                namespace,
                name,
            })
        }),
        (xid(), any::<u32>(), tuple()).prop_map(|(xid, relid, new)| PgOutput::Insert(Insert {
            xid,
            relid,
            new
        })),
        (xid(), any::<u32>(), prop::option::of(old_tuple()), tuple()).prop_map(
            |(xid, relid, old, new)| PgOutput::Update(Update {
                xid,
                relid,
                old,
                new,
            })
        ),
        (xid(), any::<u32>(), old_tuple()).prop_map(|(xid, relid, old)| PgOutput::Delete(Delete {
            xid,
            relid,
            old
        })),
        (
            xid(),
            any::<u8>(),
            prop::collection::vec(any::<u32>(), 0..6)
        )
            .prop_map(|(xid, options, relids)| PgOutput::Truncate(Truncate {
                xid,
                options,
                relids,
            })),
        (xid(), any::<u8>(), lsn(), cstr(), value()).prop_map(
            |(xid, flags, lsn, prefix, content)| PgOutput::Message(Message {
                xid,
                flags,
                lsn,
                prefix,
                content,
            })
        ),
        (any::<u32>(), lsn(), lsn(), ts()).prop_map(|(xid, commit_lsn, end_lsn, commit_ts)| {
            PgOutput::StreamCommit(StreamCommit {
                xid,
                flags: 0,
                commit_lsn,
                end_lsn,
                commit_ts,
            })
        }),
        (any::<u32>(), any::<u32>(), prop::option::of((lsn(), ts()))).prop_map(
            |(xid, subxid, abort)| PgOutput::StreamAbort(StreamAbort {
                xid,
                subxid,
                abort: abort.map(|(abort_lsn, abort_ts)| AbortInfo {
                    abort_lsn,
                    abort_ts,
                }),
            })
        ),
        (lsn(), lsn(), ts(), any::<u32>(), cstr()).prop_map(
            |(prepare_lsn, end_lsn, prepare_ts, xid, gid)| {
                PgOutput::BeginPrepare(BeginPrepare {
                    prepare_lsn,
                    end_lsn,
                    prepare_ts,
                    xid,
                    gid,
                })
            }
        ),
        prepare().prop_map(PgOutput::Prepare),
        prepare().prop_map(PgOutput::StreamPrepare),
        (lsn(), lsn(), ts(), any::<u32>(), cstr()).prop_map(
            |(commit_lsn, end_lsn, commit_ts, xid, gid)| {
                PgOutput::CommitPrepared(CommitPrepared {
                    flags: 0,
                    commit_lsn,
                    end_lsn,
                    commit_ts,
                    xid,
                    gid,
                })
            }
        ),
        (lsn(), lsn(), ts(), ts(), any::<u32>(), cstr()).prop_map(
            |(prepare_end_lsn, rollback_end_lsn, prepare_ts, rollback_ts, xid, gid)| {
                PgOutput::RollbackPrepared(RollbackPrepared {
                    flags: 0,
                    prepare_end_lsn,
                    rollback_end_lsn,
                    prepare_ts,
                    rollback_ts,
                    xid,
                    gid,
                })
            }
        ),
    ];
    if in_stream {
        prop_oneof![18 => common, 1 => Just(PgOutput::StreamStop)].boxed()
    } else {
        let start = (any::<u32>(), 0..=1u8).prop_map(|(xid, first_segment)| {
            PgOutput::StreamStart(StreamStart { xid, first_segment })
        });
        prop_oneof![18 => common, 1 => start].boxed()
    }
}

/// A stream state and a valid message for it.
fn stated_message() -> impl Strategy<Value = (bool, PgOutput)> {
    any::<bool>().prop_flat_map(|s| (Just(s), message(s)))
}

// ---------------------------------------------------------------------------------------
// Mutations.

/// Values that make length and count fields interesting.
const EDGES: [u64; 12] = [
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0x8000,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
];

#[derive(Debug, Clone)]
enum Mutation {
    /// XOR one byte.
    Flip(Index, u8),
    /// Keep only a prefix.
    Truncate(Index),
    /// Insert bytes.
    Insert(Index, Vec<u8>),
    /// Remove up to `n` bytes.
    Remove(Index, usize),
    /// Overwrite a big-endian field of 1, 2, 4 or 8 bytes (a length, a count).
    Field(Index, usize, u64),
    /// Keep a prefix and continue with the tail of another valid message.
    Splice(Index, Vec<u8>, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let field_value = prop_oneof![prop::sample::select(EDGES.to_vec()), any::<u64>()];
    prop_oneof![
        (any::<Index>(), 1..=255u8).prop_map(|(i, m)| Mutation::Flip(i, m)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), 1..8usize).prop_map(|(i, n)| Mutation::Remove(i, n)),
        (
            any::<Index>(),
            prop::sample::select(vec![1usize, 2, 4, 8]),
            field_value
        )
            .prop_map(|(i, w, v)| Mutation::Field(i, w, v)),
        (any::<Index>(), stated_message(), any::<Index>())
            .prop_map(|(i, (_, m), j)| Mutation::Splice(i, encoded(&m).to_vec(), j)),
    ]
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..4)
}

/// A position in `0..=len`.
fn at(i: &Index, len: usize) -> usize {
    i.index(len + 1)
}

fn apply(mutations: &[Mutation], input: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for m in mutations {
        match m {
            Mutation::Flip(i, mask) if !b.is_empty() => {
                let p = i.index(b.len());
                b[p] ^= mask;
            }
            Mutation::Flip(..) => {}
            Mutation::Truncate(i) => b.truncate(at(i, b.len())),
            Mutation::Insert(i, bytes) => {
                let p = at(i, b.len());
                b.splice(p..p, bytes.iter().copied());
            }
            Mutation::Remove(i, n) => {
                let p = at(i, b.len());
                let end = (p + n).min(b.len());
                b.drain(p..end);
            }
            Mutation::Field(i, width, v) => {
                let width = (*width).min(b.len());
                let p = at(i, b.len() - width);
                let be = v.to_be_bytes();
                b[p..p + width].copy_from_slice(&be[8 - width..]);
            }
            Mutation::Splice(i, other, j) => {
                b.truncate(at(i, b.len()));
                b.extend_from_slice(&other[at(j, other.len())..]);
            }
        }
    }
    b
}

// ---------------------------------------------------------------------------------------
// Recordings.

/// The payloads of every recording in `proto-fixtures/`, with the recording's name and
/// start position; empty when there are none.
struct Recorded {
    name: String,
    start: Lsn,
    payloads: Vec<Bytes>,
}

fn recordings() -> &'static [Recorded] {
    static RECORDINGS: OnceLock<Vec<Recorded>> = OnceLock::new();
    RECORDINGS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto-fixtures");
        let mut files = Vec::new();
        for dir in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            for f in std::fs::read_dir(dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if f.path().extension().is_some_and(|e| e == "pgrec") {
                    files.push(f.path());
                }
            }
        }
        files.sort();
        files
            .into_iter()
            .filter_map(|path| {
                let name = path
                    .strip_prefix(&root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                // A file that cannot be read or has no readable header (one being
                // written right now) is left out; a recording cut short still has its
                // frames before the damage.
                let raw = std::fs::read(&path).ok()?;
                let mut reader = pgsub::record::Reader::new(&raw[..], &name).ok()?;
                let start = reader.header().start();
                let mut payloads = Vec::new();
                while let Ok(Some(p)) = reader.next_frame() {
                    payloads.push(p);
                }
                Some(Recorded {
                    name,
                    start,
                    payloads,
                })
            })
            .collect()
    })
}

fn all_recorded_payloads() -> &'static [Bytes] {
    static ALL: OnceLock<Vec<Bytes>> = OnceLock::new();
    ALL.get_or_init(|| {
        recordings()
            .iter()
            .flat_map(|r| r.payloads.iter().cloned())
            .collect()
    })
}

/// The pgoutput body of an XLogData payload.
fn body(payload: &Bytes) -> Option<Bytes> {
    (payload.first() == Some(&b'w') && payload.len() >= XLOG_DATA_HEADER_LEN)
        .then(|| payload.slice(XLOG_DATA_HEADER_LEN..))
}

/// Checks every prefix of `payload` shorter than itself, with the pgoutput decoder in
/// the state `dec` is in: each must be an error, not a panic and not a message, except
/// one case the protocol itself makes ambiguous (see below). Framed as CopyData, each
/// prefix must make the frame decoder wait for more.
fn check_truncations(payload: &Bytes, dec: &Decoder, lengths: impl Iterator<Item = usize>) {
    let framed = copy_data_frame(payload);
    let frame_dec = FrameDecoder::default();
    for n in lengths.filter(|&n| n < payload.len()) {
        let cut = payload.slice(..n);
        guard("truncated payload", &cut, || {
            match ReplicationMessage::parse(cut.clone()) {
                Err(e) => assert!(e.offset <= n, "{e} in {n} bytes"),
                Ok(ReplicationMessage::XLogData(_)) => {
                    assert!(n >= XLOG_DATA_HEADER_LEN, "an XLogData without its header")
                }
                Ok(other) => panic!("a cut keepalive parsed: {other:?}"),
            }
            if let (Some(whole), Some(cut_body)) = (body(payload), body(&cut))
                && let Some(msg) = decode_checked(&mut dec.clone(), &cut_body)
            {
                // A Stream Abort sent with `streaming = parallel` carries abort_lsn and
                // abort_ts; cut right before them it is a valid Stream Abort of the
                // other layout. The decoder tells the two apart by length.
                assert!(
                    whole.first() == Some(&b'A') && whole.len() == 25 && cut_body.len() == 9,
                    "a truncated message decoded: {msg:?}"
                );
                assert!(matches!(
                    msg,
                    PgOutput::StreamAbort(StreamAbort { abort: None, .. })
                ));
            }
            session_checked(&mut session_in(dec.in_stream_block()), &cut);
            let mut buf = BytesMut::from(&framed[..n + 5]);
            assert_eq!(
                frame_dec.decode_frame(&mut buf),
                Ok(None),
                "a cut frame is not complete"
            );
        });
    }
}

// ---------------------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn random_bytes_never_panic_any_entry_point(
        bytes in prop::collection::vec(any::<u8>(), 0..128),
    ) {
        feed_everything(&bytes);
    }

    #[test]
    fn random_bodies_after_a_valid_type_byte_never_panic_any_entry_point(
        tag in prop::sample::select(b"BCORYIUDTMSEcAbPKrpwkdERSKZTDWHGcvA".to_vec()),
        body in prop::collection::vec(any::<u8>(), 0..96),
    ) {
        let mut input = vec![tag];
        input.extend_from_slice(&body);
        feed_everything(&input);
    }

    #[test]
    fn mutated_valid_messages_never_panic_the_decoder(
        (in_stream, msg) in stated_message(),
        muts in mutations(),
    ) {
        let damaged = apply(&muts, &encoded(&msg));
        decode_checked(&mut decoder_in(in_stream), &Bytes::from(damaged.clone()));
        feed_everything(&damaged);
    }

    #[test]
    fn generated_messages_round_trip_through_encode_and_decode(
        (in_stream, msg) in stated_message(),
    ) {
        let bytes = encoded(&msg);
        let mut dec = decoder_in(in_stream);
        let decoded = dec.decode(bytes.clone());
        prop_assert_eq!(decoded.as_ref(), Ok(&msg), "bytes {}", hex(&bytes));
        let expect_in_stream = match msg {
            PgOutput::StreamStart(_) => true,
            PgOutput::StreamStop => false,
            _ => in_stream,
        };
        prop_assert_eq!(dec.in_stream_block(), expect_in_stream);
        prop_assert_eq!(encoded(&decoded.unwrap()), bytes);
    }
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn every_truncation_of_a_generated_message_is_an_error_not_a_panic(
        (in_stream, msg) in stated_message(),
    ) {
        let bytes = encoded(&msg);
        let payload = xlog_payload(&bytes);
        check_truncations(&payload, &decoder_in(in_stream), 0..payload.len());
        for n in 0..bytes.len() {
            feed_everything(&bytes[..n]);
        }
    }

    #[test]
    fn length_and_count_fields_corrupted_at_every_offset_never_panic(
        (in_stream, msg) in stated_message(),
    ) {
        let bytes = encoded(&msg);
        for width in [2usize, 4] {
            for p in 0..bytes.len().saturating_sub(width - 1) {
                for v in EDGES {
                    let mut b = bytes.to_vec();
                    b[p..p + width].copy_from_slice(&v.to_be_bytes()[8 - width..]);
                    guard("corrupted field", &b, || feed_decoder(&b, in_stream));
                }
            }
        }
    }

    #[test]
    fn spliced_messages_never_panic_the_decoder(
        (in_stream, first) in stated_message(),
        (_, second) in stated_message(),
    ) {
        let (a, b) = (encoded(&first), encoded(&second));
        for i in 0..=a.len() {
            let mut spliced = a[..i].to_vec();
            spliced.extend_from_slice(&b[b.len().min(1 + i % 7)..]);
            guard("spliced messages", &spliced, || feed_decoder(&spliced, in_stream));
        }
        let mut both = a.to_vec();
        both.extend_from_slice(&b);
        feed_everything(&both);
    }
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn mutated_recorded_payloads_never_panic_any_entry_point(
        pick in any::<Index>(),
        muts in mutations(),
    ) {
        let all = all_recorded_payloads();
        if all.is_empty() {
            return Ok(());
        }
        let payload = &all[pick.index(all.len())];
        feed_everything(&apply(&muts, payload));
        if let Some(body) = body(payload) {
            feed_everything(&apply(&muts, &body));
        }
    }
}

/// Every recorded stream is accepted whole by a session, and every pgoutput message in
/// it re-encodes to exactly the bytes the server sent.
#[test]
fn recorded_streams_play_through_a_session_and_re_encode_byte_for_byte() {
    for rec in recordings() {
        let mut session = Session::new(rec.start);
        let mut dec = Decoder::new();
        for (i, p) in rec.payloads.iter().enumerate() {
            if let Err(e) = session.on_copy_data(p.clone(), p.len() + 5) {
                panic!("{} frame {}: {e}\npayload {}", rec.name, i + 1, hex(p));
            }
            if let Some(body) = body(p) {
                let msg = dec
                    .decode(body.clone())
                    .unwrap_or_else(|e| panic!("{} frame {}: {e}", rec.name, i + 1));
                assert_eq!(
                    encoded(&msg),
                    body,
                    "{} frame {}: {msg:?} re-encodes differently",
                    rec.name,
                    i + 1
                );
            }
        }
        session
            .accounting()
            .check()
            .unwrap_or_else(|e| panic!("{}: {e}", rec.name));
    }
}

/// Every recorded payload cut at every length is an error (or, framed, an incomplete
/// frame), never a panic. Payloads of the same type, pgoutput type, stream state and
/// length are cut at every length once; the others at the edges (header and body
/// boundaries, half, one byte short), which keeps the run in seconds while thousands of
/// nearly identical Inserts of a streamed transaction are recorded.
#[test]
fn every_truncation_of_every_recorded_payload_is_an_error_not_a_panic() {
    let mut seen = HashSet::new();
    for rec in recordings() {
        let mut dec = Decoder::new();
        for p in &rec.payloads {
            let shape = (
                p.first().copied(),
                body(p).and_then(|b| b.first().copied()),
                dec.in_stream_block(),
                p.len(),
            );
            if seen.insert(shape) {
                check_truncations(p, &dec, 0..p.len());
            } else {
                let len = p.len();
                let edges = [0, 1, 17, 18, 24, 25, 26, 30, len / 2, len.saturating_sub(1)];
                check_truncations(p, &dec, edges.into_iter());
            }
            if let Some(body) = body(p) {
                let _ = dec.decode(body);
            }
        }
    }
}
