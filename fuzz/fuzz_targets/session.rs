//! Fuzz target for the whole sans-I/O pipeline: the input is a sequence of CopyData
//! payloads separated by `pgsub_fuzz::SEP`, handed in order to one
//! `Session::on_copy_data`, which parses the replication message, decodes pgoutput,
//! checks the transaction grammar and the relation cache, moves the positions and counts
//! the bytes. Every call must return Ok or Err, never panic; a decode error must name an
//! offset inside its payload. Units are reported applied (at once, or never, as the
//! input decides), and acknowledging what the session calls acknowledgeable must always
//! be accepted. Every event is rendered as `pgsub decode` would print it. When every
//! payload was accepted, the byte accounting must add up.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use pgsub::Lsn;
use pgsub::stream::{Event, Session, StreamError};
use pgsub_fuzz::{Rng, carve};

fuzz_target!(|data: &[u8]| {
    let mut rng = Rng::from_input(data);
    let apply = rng.below(2) == 0;
    let mut session = Session::new(Lsn::ZERO);
    let mut all_ok = true;
    for part in carve(data) {
        let payload = Bytes::copy_from_slice(part);
        match session.on_copy_data(payload, part.len() + 5) {
            Ok(Event::Message {
                header,
                msg,
                unit_end,
            }) => {
                let line = pgsub::output::json::message(&header, &msg, session.relations());
                let _ = line.to_string();
                if let (true, Some(end)) = (apply, unit_end) {
                    session
                        .on_applied(end)
                        .expect("a unit just received whole can be applied");
                }
            }
            Ok(Event::Keepalive(k)) => {
                let _ = k.send_time.to_string();
            }
            Err(StreamError::Decode { source, .. }) => {
                all_ok = false;
                assert!(
                    source.offset <= part.len(),
                    "{source} in {} bytes",
                    part.len()
                );
            }
            Err(StreamError::Invariant { .. }) => all_ok = false,
        }
        let ack = session.positions().acknowledgeable();
        session
            .positions_mut()
            .on_acknowledged(ack)
            .expect("acknowledging what is acknowledgeable is accepted");
    }
    if all_ok {
        session
            .accounting()
            .check()
            .expect("the byte accounting adds up");
        let _ = session.accounting().summary();
    }
});
