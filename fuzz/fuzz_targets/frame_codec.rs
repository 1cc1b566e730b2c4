//! Fuzz target for the frame codec: the input is a byte stream as a server could send
//! it. It is cut into frames by `FrameDecoder::decode_frame` twice, once whole and once
//! fed in pieces split at points chosen from the input, with the production cap and with
//! a small one; both ways must give the same frames and stop the same way, every frame
//! must be exactly the bytes it claims (never longer than the input), and every frame is
//! then parsed with `BackendMessage::parse` (and a CopyData payload further with
//! `ReplicationMessage::parse` and the pgoutput `Decoder`). Nothing may panic, and every
//! error must carry an offset inside the bytes it was about.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use pgsub::pgoutput::Decoder;
use pgsub::protocol::DecodeError;
use pgsub::protocol::backend::BackendMessage;
use pgsub::protocol::frame::{Frame, FrameDecoder};
use pgsub::protocol::replication::ReplicationMessage;
use pgsub_fuzz::Rng;

/// How cutting a stream into frames ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// More bytes are needed; this many are buffered.
    NeedMore(usize),
    /// The stream is broken.
    Error(DecodeError),
}

fn one_shot(dec: &FrameDecoder, data: &[u8]) -> (Vec<Frame>, End) {
    let mut buf = BytesMut::from(data);
    let mut frames = Vec::new();
    loop {
        match dec.decode_frame(&mut buf) {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => return (frames, End::NeedMore(buf.len())),
            Err(e) => return (frames, End::Error(e)),
        }
    }
}

fn chunked(dec: &FrameDecoder, data: &[u8], rng: &mut Rng) -> (Vec<Frame>, End) {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let left = data.len() - pos;
        let n = match rng.below(4) {
            0 => 1,
            1 => 1 + rng.below(left.min(8)),
            2 => 1 + rng.below(left.min(512)),
            _ => left,
        };
        buf.extend_from_slice(&data[pos..pos + n]);
        pos += n;
        loop {
            match dec.decode_frame(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, End::Error(e)),
            }
        }
    }
    (frames, End::NeedMore(buf.len()))
}

fn check(dec: &FrameDecoder, data: &[u8], rng: &mut Rng) {
    let (frames, end) = one_shot(dec, data);
    // Every frame is exactly the bytes at its place in the input.
    let mut pos = 0;
    for f in &frames {
        assert!(
            f.wire_len() <= data.len() - pos,
            "frame of {} bytes at {pos} in {} bytes of input",
            f.wire_len(),
            data.len()
        );
        assert_eq!(f.tag, data[pos]);
        let announced =
            u32::from_be_bytes([data[pos + 1], data[pos + 2], data[pos + 3], data[pos + 4]])
                as usize;
        assert_eq!(announced, f.body.len() + 4);
        assert_eq!(&f.body[..], &data[pos + 5..pos + f.wire_len()]);
        pos += f.wire_len();
    }
    match &end {
        End::NeedMore(left) => assert_eq!(*left, data.len() - pos, "unconsumed bytes lost"),
        End::Error(e) => assert!(e.offset < 5, "a header error at byte {}", e.offset),
    }
    // Pieces of any size give the same frames and the same end.
    let (again, end_again) = chunked(dec, data, rng);
    assert_eq!(frames, again, "frames depend on how the input was split");
    assert_eq!(end, end_again, "the end depends on how the input was split");

    for f in frames {
        let body = f.body.clone();
        match BackendMessage::parse(f.clone()) {
            Ok(BackendMessage::CopyData(payload)) => {
                assert_eq!(payload, body);
                replication(payload);
            }
            Ok(_) => {}
            Err(e) => assert!(e.offset <= body.len(), "{e} in {} bytes", body.len()),
        }
    }
}

fn replication(payload: Bytes) {
    let len = payload.len();
    match ReplicationMessage::parse(payload) {
        Ok(ReplicationMessage::XLogData(x)) => {
            let data_len = x.data.len();
            if let Err(e) = Decoder::new().decode(x.data) {
                assert!(e.offset <= data_len, "{e} in {data_len} bytes");
            }
        }
        Ok(ReplicationMessage::PrimaryKeepalive(_)) => {}
        Err(e) => assert!(e.offset <= len, "{e} in {len} bytes"),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut rng = Rng::from_input(data);
    // The production decoder: its 1 GiB cap is never reached by an input, so it only
    // ever reserves (at most the cap) and waits.
    check(&FrameDecoder::default(), data, &mut rng);
    // A small cap, so refusals happen at every size.
    let cap = [0, 1, 21, 34, 4096][rng.below(5)];
    check(&FrameDecoder::new(cap), data, &mut rng);
});
