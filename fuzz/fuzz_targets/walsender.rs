//! Fuzz target for the session state machine fed as a walsender feeds it: the input
//! draws a session a source server could send (`pgsub_fuzz::walsender`: transactions,
//! streamed transactions in blocks, aborts, two-phase, keepalives that step back), which
//! is framed as CopyData, cut into reads of sizes the input chooses, and taken through
//! `FrameDecoder`, `BackendMessage::parse` and `Session::on_copy_data`, the way pgsub's
//! replication connection reads it. A third of the inputs then damage the session (a
//! byte changed, a payload cut short, dropped, repeated or moved).
//!
//! Checked: nothing panics; an undamaged session is accepted whole, reports exactly the
//! units it holds at exactly their ends, and its byte accounting adds up; positions never
//! go below what was acknowledged and acknowledging what the session calls acknowledgeable is always
//! accepted, damaged or not; what may be acknowledged is never more than what the
//! consumer reported applied, or the `wal_end` of a keepalive that came while nothing was
//! open once everything received before it was applied; units are reported applied at
//! once, late, or never, as the input chooses, and once all are, the last is
//! acknowledgeable.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use pgsub::Lsn;
use pgsub::protocol::backend::BackendMessage;
use pgsub::protocol::frame::FrameDecoder;
use pgsub::stream::{Event, Session, StreamError};
use pgsub_fuzz::walsender::{Choices, frames, session};

/// Where the session starts (the slot's confirmed position).
const START: Lsn = Lsn(0x1_6B37_0000);

fn damage(c: &mut Choices<'_>, payloads: &mut Vec<Bytes>) {
    if payloads.is_empty() {
        return;
    }
    let i = c.pick(payloads.len());
    match c.pick(5) {
        0 => {
            let mut p = payloads[i].to_vec();
            if !p.is_empty() {
                let at = c.pick(p.len());
                p[at] ^= 1 | c.byte();
            }
            payloads[i] = Bytes::from(p);
        }
        1 => {
            let keep = c.pick(payloads[i].len());
            payloads[i].truncate(keep);
        }
        2 => {
            payloads.remove(i);
        }
        3 => {
            let p = payloads[i].clone();
            payloads.insert(c.pick(payloads.len() + 1), p);
        }
        _ => {
            let p = payloads.remove(i);
            payloads.insert(c.pick(payloads.len() + 1), p);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut c = Choices::new(data);
    let script = session(&mut c, 64);
    let mut payloads = script.payloads.clone();
    let damaged = c.pick(3) == 0;
    if damaged {
        damage(&mut c, &mut payloads);
    }
    let wire = frames(&payloads);

    let decoder = FrameDecoder::new(1 << 30);
    let mut session = Session::new(START);
    let mut buf = BytesMut::new();
    let mut pos = 0;
    let mut units = Vec::new();
    let mut pending: Vec<Lsn> = Vec::new();
    let mut rejected = false;
    let mut sent = START;
    let mut idle: Vec<(Lsn, Lsn)> = Vec::new();
    'read: while pos < wire.len() {
        let n = match c.pick(4) {
            0 => 1,
            1 => 1 + c.pick(64),
            _ => wire.len() - pos,
        }
        .min(wire.len() - pos);
        buf.extend_from_slice(&wire[pos..pos + n]);
        pos += n;
        loop {
            let frame = match decoder.decode_frame(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => panic!("CopyData frames pgsub's encoder wrote do not decode: {e}"),
            };
            let wire_len = frame.wire_len();
            let Ok(BackendMessage::CopyData(payload)) = BackendMessage::parse(frame) else {
                panic!("a CopyData frame did not parse as CopyData");
            };
            let len = payload.len();
            let was_open = session.in_transaction();
            match session.on_copy_data(payload, wire_len) {
                Ok(Event::Message { unit_end, .. }) => {
                    if let Some(end) = unit_end {
                        units.push(end);
                        pending.push(end);
                    }
                }
                Ok(Event::Keepalive(k)) => {
                    if !was_open {
                        idle.push((k.wal_end, units.last().copied().unwrap_or(START)));
                    }
                }
                Err(StreamError::Decode { source, .. }) => {
                    assert!(damaged, "an undamaged session refused: {source}");
                    assert!(source.offset <= len, "{source} in {len} bytes");
                    rejected = true;
                }
                Err(e @ StreamError::Invariant { .. }) => {
                    assert!(damaged, "an undamaged session refused: {e}");
                    rejected = true;
                }
            }
            // The consumer reports some of what it received applied, in order.
            let report = c.pick(pending.len() + 1);
            for end in pending.drain(..report) {
                session
                    .on_applied(end)
                    .expect("a unit received whole can be reported applied");
            }
            let ack = session.positions().acknowledgeable();
            let applied = session.positions().applied();
            // It may step back with a keepalive that does (a lower acknowledgement is
            // always safe), never below what was acknowledged.
            assert!(
                ack >= sent,
                "acknowledgeable {ack} below the acknowledged {sent}"
            );
            assert!(ack >= applied, "{ack} acknowledgeable, {applied} applied");
            // Only what was applied, or an idle keepalive's position once everything
            // received before it was applied.
            let bound = idle
                .iter()
                .filter(|(_, prerequisite)| *prerequisite <= applied)
                .map(|(wal_end, _)| *wal_end)
                .fold(applied.max(START).max(sent), Lsn::max);
            assert!(
                ack <= bound,
                "{ack} acknowledgeable, at most {bound} may be"
            );
            if c.pick(2) == 0 {
                session
                    .positions_mut()
                    .on_acknowledged(ack)
                    .expect("acknowledging what is acknowledgeable is accepted");
                sent = ack;
            }
            if rejected {
                // pgsub stops the connection at the first refused payload.
                break 'read;
            }
        }
    }
    if !damaged {
        assert!(buf.is_empty(), "{} bytes left over", buf.len());
        assert_eq!(
            units, script.unit_ends,
            "the units reported are not those sent"
        );
        for end in pending.drain(..) {
            session.on_applied(end).expect("the rest reported applied");
        }
        if let Some(last) = units.last() {
            assert!(
                session.positions().acknowledgeable() >= *last,
                "everything applied, yet {} is not acknowledgeable",
                last
            );
        }
        session
            .accounting()
            .check()
            .expect("the byte accounting adds up");
    }
});
