//! Fuzz target for the pgoutput `Decoder`: the input is a sequence of messages
//! separated by `pgsub_fuzz::SEP` (an input without it is one message), decoded in order
//! by one decoder, so that Stream Start and Stream Stop move it in and out of a stream
//! block and the `xid` prefixes that depend on it are exercised; each message is also
//! decoded by a second decoder in the opposite state. Decoding must return, never panic;
//! an error must name an offset inside the message and leave the decoder's state as it
//! was; and anything that decodes must re-encode with `encode::encode` to exactly the
//! bytes it came from, with its row images iterating to exactly their column count.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use pgsub::pgoutput::encode::encode;
use pgsub::pgoutput::{Decoder, PgOutput, TupleData};
use pgsub_fuzz::carve;

/// A decoder inside a stream block.
fn in_stream() -> Decoder {
    let mut d = Decoder::new();
    d.decode(Bytes::from_static(b"S\0\0\x03\x21\x01"))
        .expect("a Stream Start decodes");
    d
}

fn check_tuple(t: &TupleData) {
    let cols: Vec<_> = t.columns().collect();
    assert_eq!(cols.len(), t.len(), "a validated tuple lost columns");
    assert_eq!(&TupleData::from_columns(&cols), t);
}

/// The `xid` prefix of a message that has one, as `Some(Some(xid))`, or `Some(None)`.
fn xid_prefix(msg: &PgOutput) -> Option<Option<u32>> {
    Some(match msg {
        PgOutput::Relation(m) => m.xid,
        PgOutput::Type(m) => m.xid,
        PgOutput::Insert(m) => m.xid,
        PgOutput::Update(m) => m.xid,
        PgOutput::Delete(m) => m.xid,
        PgOutput::Truncate(m) => m.xid,
        PgOutput::Message(m) => m.xid,
        _ => return None,
    })
}

fn check(dec: &mut Decoder, data: Bytes) {
    let before = dec.in_stream_block();
    match dec.decode(data.clone()) {
        Ok(msg) => {
            let after = dec.in_stream_block();
            match msg {
                PgOutput::StreamStart(_) => assert!(!before && after),
                PgOutput::StreamStop => assert!(before && !after),
                _ => assert_eq!(before, after, "{msg:?} changed the stream state"),
            }
            if let Some(xid) = xid_prefix(&msg) {
                assert_eq!(xid.is_some(), before, "xid prefix outside/inside a block");
            }
            match &msg {
                PgOutput::Insert(m) => check_tuple(&m.new),
                PgOutput::Update(m) => {
                    if let Some(old) = &m.old {
                        check_tuple(old.tuple());
                    }
                    check_tuple(&m.new);
                }
                PgOutput::Delete(m) => check_tuple(m.old.tuple()),
                _ => {}
            }
            let mut out = BytesMut::new();
            encode(&msg, &mut out);
            assert_eq!(
                &out[..],
                &data[..],
                "{msg:?} does not re-encode to the bytes it was decoded from"
            );
        }
        Err(e) => {
            assert!(e.offset <= data.len(), "{e} in {} bytes", data.len());
            assert_eq!(
                before,
                dec.in_stream_block(),
                "a failed decode moved the state"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut dec = Decoder::new();
    for part in carve(data) {
        let bytes = Bytes::copy_from_slice(part);
        let mut other = if dec.in_stream_block() {
            Decoder::new()
        } else {
            in_stream()
        };
        check(&mut other, bytes.clone());
        check(&mut dec, bytes);
    }
});
