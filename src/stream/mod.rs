//! The state of one replication session, without I/O: CopyData payloads in, decoded
//! events out, with positions, transaction grammar and byte accounting kept on the way.
//!
//! ```text
//!   CopyData payload ──► ReplicationMessage ──► XLogData ──► pgoutput::Decoder ──► Event
//!        │                     │ keepalive          │               │
//!        ▼                     ▼                    ▼               ▼
//!   Accounting::on_frame   Positions::on_keepalive  TransactionTracker  RelationCache
//!                                                   └─► unit end ─► Positions::on_unit_end
//! ```
//!
//! The caller (the `decode`/`record` loop, later the apply loop) hands each payload to
//! [`Session::on_copy_data`], does its work with the [`Event`], reports what is durable
//! with [`Session::on_applied`], and asks [`feedback::FeedbackPolicy`] when to send a
//! status update carrying [`positions::Positions::acknowledgeable`].

pub mod accounting;
pub mod feedback;
pub mod positions;
pub mod relations;
pub mod transactions;

use bytes::Bytes;

use crate::lsn::Lsn;
use crate::pgoutput::{Decoder, PgOutput};
use crate::protocol::reader::DecodeError;
use crate::protocol::replication::{PrimaryKeepalive, ReplicationMessage};
use crate::protocol::time::PgTimestamp;
use accounting::Accounting;
use positions::{InvariantViolation, Positions};
use relations::RelationCache;
use transactions::{Boundary, TransactionTracker};

/// The XLogData header of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XLogHeader {
    /// `dataStart`.
    pub wal_start: Lsn,
    /// `walEnd`.
    pub wal_end: Lsn,
    /// `sendTime`.
    pub send_time: PgTimestamp,
}

/// What one CopyData payload meant.
#[derive(Debug, Clone)]
pub enum Event {
    /// A pgoutput message.
    Message {
        /// Its XLogData header.
        header: XLogHeader,
        /// The message.
        msg: PgOutput,
        /// Set when the message completes a unit that can be acknowledged once applied.
        unit_end: Option<Lsn>,
    },
    /// A primary keepalive.
    Keepalive(PrimaryKeepalive),
}

/// A payload that cannot be processed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StreamError {
    /// The bytes are not a valid message.
    #[error("cannot decode CopyData message #{frame} (WAL position {wal_start}): {source}")]
    Decode {
        /// 1-based number of the CopyData message in this session.
        frame: u64,
        /// The XLogData `wal_start`, or `0/0` when not known.
        wal_start: Lsn,
        /// What was wrong.
        source: DecodeError,
    },
    /// The message breaks the stream's rules.
    #[error("CopyData message #{frame} (WAL position {wal_start}): {source}")]
    Invariant {
        /// 1-based number of the CopyData message in this session.
        frame: u64,
        /// The XLogData `wal_start`, or `0/0`.
        wal_start: Lsn,
        /// The broken rule.
        source: InvariantViolation,
    },
}

/// One replication session's state.
#[derive(Debug, Clone)]
pub struct Session {
    decoder: Decoder,
    tracker: TransactionTracker,
    positions: Positions,
    accounting: Accounting,
    relations: RelationCache,
}

impl Session {
    /// A session streaming from `start`.
    pub fn new(start: Lsn) -> Self {
        Session {
            decoder: Decoder::new(),
            tracker: TransactionTracker::new(),
            positions: Positions::new(start),
            accounting: Accounting::default(),
            relations: RelationCache::default(),
        }
    }

    /// Processes one CopyData payload that took `wire_len` bytes on the wire.
    pub fn on_copy_data(&mut self, payload: Bytes, wire_len: usize) -> Result<Event, StreamError> {
        let payload_len = payload.len();
        self.accounting.on_frame(wire_len);
        let frame = self.accounting.frames.count;
        let decode_err = |wal_start, source| StreamError::Decode {
            frame,
            wal_start,
            source,
        };
        let invariant = |wal_start, source| StreamError::Invariant {
            frame,
            wal_start,
            source,
        };
        match ReplicationMessage::parse(payload).map_err(|e| decode_err(Lsn::ZERO, e))? {
            ReplicationMessage::PrimaryKeepalive(k) => {
                self.accounting.on_keepalive(payload_len, k.wal_end);
                self.positions
                    .on_keepalive(k.wal_end)
                    .map_err(|e| invariant(Lsn::ZERO, e))?;
                Ok(Event::Keepalive(k))
            }
            ReplicationMessage::XLogData(x) => {
                let header = XLogHeader {
                    wal_start: x.wal_start,
                    wal_end: x.wal_end,
                    send_time: x.send_time,
                };
                let msg = self
                    .decoder
                    .decode(x.data)
                    .map_err(|e| decode_err(x.wal_start, e.shifted(25)))?;
                let boundary = self
                    .tracker
                    .on_message(&msg)
                    .map_err(|e| invariant(x.wal_start, e))?;
                self.relations
                    .on_message(&msg)
                    .map_err(|e| invariant(x.wal_start, e))?;
                let in_transaction =
                    self.tracker.is_open() || matches!(boundary, Boundary::UnitEnd { .. });
                self.accounting
                    .on_message(x.wal_start, payload_len, &msg, in_transaction);
                self.positions.on_xlog_data(x.wal_start, x.wal_end);
                let unit_end = match boundary {
                    // A transaction prepared before the slot began to decode at PREPARE
                    // (its two_phase_at) is sent whole at its COMMIT PREPARED, as Begin
                    // Prepare … Prepare with its PREPARE's positions, behind the stream's,
                    // then Commit Prepared: the unit ends there, forward again.
                    Boundary::UnitEnd { end_lsn }
                        if end_lsn < self.positions.completed()
                            && matches!(msg, PgOutput::Prepare(_) | PgOutput::StreamPrepare(_)) =>
                    {
                        self.accounting.on_unit_end();
                        None
                    }
                    Boundary::UnitEnd { end_lsn } => {
                        self.positions
                            .on_unit_end(end_lsn)
                            .map_err(|e| invariant(x.wal_start, e))?;
                        self.accounting.on_unit_end();
                        Some(end_lsn)
                    }
                    Boundary::None => None,
                };
                self.positions.set_open(self.tracker.is_open());
                Ok(Event::Message {
                    header,
                    msg,
                    unit_end,
                })
            }
        }
    }

    /// The consumer has durably applied everything up to `end_lsn`.
    pub fn on_applied(&mut self, end_lsn: Lsn) -> Result<(), InvariantViolation> {
        self.positions.on_applied(end_lsn)
    }

    /// Positions.
    pub fn positions(&self) -> &Positions {
        &self.positions
    }

    /// Positions, for recording what was acknowledged.
    pub fn positions_mut(&mut self) -> &mut Positions {
        &mut self.positions
    }

    /// Byte counters.
    pub fn accounting(&self) -> &Accounting {
        &self.accounting
    }

    /// Relations described so far.
    pub fn relations(&self) -> &RelationCache {
        &self.relations
    }

    /// True while a transaction is open.
    pub fn in_transaction(&self) -> bool {
        self.tracker.is_open()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xlog(at: u64, msg: &[u8]) -> Bytes {
        let mut p = vec![b'w'];
        p.extend_from_slice(&at.to_be_bytes());
        p.extend_from_slice(&at.to_be_bytes());
        p.extend_from_slice(&0u64.to_be_bytes());
        p.extend_from_slice(msg);
        Bytes::from(p)
    }

    /// `tag [flags] lsn end ts xid gid`: Begin Prepare (no flags), Prepare, Commit Prepared.
    fn two_phase(tag: u8, lsn: u64, end: u64) -> Vec<u8> {
        let mut m = vec![tag];
        if tag != b'b' {
            m.push(0);
        }
        m.extend_from_slice(&lsn.to_be_bytes());
        m.extend_from_slice(&end.to_be_bytes());
        m.extend_from_slice(&0u64.to_be_bytes());
        m.extend_from_slice(&7u32.to_be_bytes());
        m.extend_from_slice(b"g\0");
        m
    }

    fn unit_end(s: &mut Session, at: u64, msg: &[u8]) -> Result<Option<Lsn>, StreamError> {
        match s.on_copy_data(xlog(at, msg), msg.len() + 30)? {
            Event::Message { unit_end, .. } => Ok(unit_end),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_transaction_prepared_before_two_phase_decoding_began_comes_whole_at_its_commit_prepared() {
        // The stream starts at 1000; the transaction was prepared at 500 and is sent at
        // its COMMIT PREPARED (1100): its Prepare's end is behind, its unit ends forward.
        let mut s = Session::new(Lsn(1000));
        assert_eq!(
            unit_end(&mut s, 1100, &two_phase(b'b', 500, 600)).unwrap(),
            None
        );
        assert_eq!(
            unit_end(&mut s, 1100, &two_phase(b'P', 500, 600)).unwrap(),
            None
        );
        assert_eq!(
            unit_end(&mut s, 1100, &two_phase(b'K', 1100, 1200)).unwrap(),
            Some(Lsn(1200))
        );
        assert_eq!(s.positions.completed(), Lsn(1200));
        // Any other unit whose end goes back is still a broken stream.
        let e = unit_end(&mut s, 1300, &two_phase(b'K', 1000, 1100)).unwrap_err();
        assert!(e.to_string().contains("went backwards"), "{e}");
    }
}
