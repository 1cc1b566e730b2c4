//! The transaction grammar of a pgoutput stream, checked message by message.
//!
//! ```text
//!   B (O)? (R|Y|I|U|D|T|M)* C                       a transaction
//!   b (O)? …                P                       a prepared transaction; K or r later
//!   S(xid) …[xid]… E  (other messages)  S(xid) … E  blocks of a streamed transaction,
//!                                        then c | p | A(xid, xid)
//! ```
//!
//! [`TransactionTracker::on_message`] says whether a message ends a *unit*: something
//! with an `end_lsn` that, once applied, may be acknowledged. It also knows whether any
//! transaction is open, which decides whether a keepalive's `wal_end` may be
//! acknowledged. A stray Stream Abort for a transaction never streamed is accepted and
//! ignored: PostgreSQL 18 sends those in some cases (estuary/connectors#5228).

use std::collections::BTreeSet;

use super::positions::InvariantViolation;
use crate::lsn::Lsn;
use crate::pgoutput::PgOutput;

/// What kind of transaction is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    /// Between Begin and Commit; the Begin's `final_lsn`.
    Regular { final_lsn: Lsn, xid: u32 },
    /// Between Begin Prepare and Prepare.
    Prepare { xid: u32 },
}

/// Tracks open transactions and stream blocks.
#[derive(Debug, Clone, Default)]
pub struct TransactionTracker {
    open: Option<Open>,
    stream_block: Option<u32>,
    streamed: BTreeSet<u32>,
}

/// What a message means for the transaction structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    /// Nothing ends here.
    None,
    /// A unit ends; `end_lsn` may be acknowledged once it is applied.
    UnitEnd {
        /// The position after the unit's last record.
        end_lsn: Lsn,
    },
}

impl TransactionTracker {
    /// A tracker with nothing open.
    pub fn new() -> Self {
        TransactionTracker::default()
    }

    /// True while any transaction or stream block is open, or a streamed transaction
    /// has neither committed nor aborted.
    pub fn is_open(&self) -> bool {
        self.open.is_some() || self.stream_block.is_some() || !self.streamed.is_empty()
    }

    /// The xid of the open regular or prepared transaction.
    pub fn open_xid(&self) -> Option<u32> {
        match self.open {
            Some(Open::Regular { xid, .. } | Open::Prepare { xid }) => Some(xid),
            None => None,
        }
    }

    /// Checks `msg` against the grammar and updates the state. On error the state is
    /// unchanged.
    pub fn on_message(&mut self, msg: &PgOutput) -> Result<Boundary, InvariantViolation> {
        let fail = |what: String| Err(InvariantViolation(what));
        match msg {
            PgOutput::Begin(b) => {
                if self.open.is_some() || self.stream_block.is_some() {
                    return fail(format!(
                        "Begin of xid {} while a transaction is open",
                        b.xid
                    ));
                }
                self.open = Some(Open::Regular {
                    final_lsn: b.final_lsn,
                    xid: b.xid,
                });
            }
            PgOutput::Commit(c) => match self.open {
                Some(Open::Regular { final_lsn, .. }) if final_lsn == c.commit_lsn => {
                    self.open = None;
                    return Ok(Boundary::UnitEnd { end_lsn: c.end_lsn });
                }
                Some(Open::Regular { final_lsn, xid }) => {
                    return fail(format!(
                        "Commit at {} does not match the Begin of xid {xid}, whose final_lsn is {final_lsn}",
                        c.commit_lsn
                    ));
                }
                _ => return fail(format!("Commit at {} without a Begin", c.commit_lsn)),
            },
            PgOutput::BeginPrepare(b) => {
                if self.open.is_some() || self.stream_block.is_some() {
                    return fail(format!(
                        "Begin Prepare of xid {} while a transaction is open",
                        b.xid
                    ));
                }
                self.open = Some(Open::Prepare { xid: b.xid });
            }
            PgOutput::Prepare(p) => match self.open {
                Some(Open::Prepare { xid }) if xid == p.xid => {
                    self.open = None;
                    return Ok(Boundary::UnitEnd { end_lsn: p.end_lsn });
                }
                _ => {
                    return fail(format!(
                        "Prepare of xid {} without its Begin Prepare",
                        p.xid
                    ));
                }
            },
            PgOutput::CommitPrepared(k) => {
                self.expect_closed("Commit Prepared")?;
                return Ok(Boundary::UnitEnd { end_lsn: k.end_lsn });
            }
            PgOutput::RollbackPrepared(r) => {
                self.expect_closed("Rollback Prepared")?;
                return Ok(Boundary::UnitEnd {
                    end_lsn: r.rollback_end_lsn,
                });
            }
            PgOutput::StreamStart(s) => {
                if self.open.is_some() || self.stream_block.is_some() {
                    return fail(format!(
                        "Stream Start of xid {} while a transaction or block is open",
                        s.xid
                    ));
                }
                self.stream_block = Some(s.xid);
                self.streamed.insert(s.xid);
            }
            PgOutput::StreamStop => {
                if self.stream_block.take().is_none() {
                    return fail("Stream Stop without Stream Start".into());
                }
            }
            PgOutput::StreamCommit(c) => {
                self.expect_closed("Stream Commit")?;
                if !self.streamed.remove(&c.xid) {
                    return fail(format!(
                        "Stream Commit of xid {} that was never streamed",
                        c.xid
                    ));
                }
                return Ok(Boundary::UnitEnd { end_lsn: c.end_lsn });
            }
            PgOutput::StreamPrepare(p) => {
                self.expect_closed("Stream Prepare")?;
                if !self.streamed.remove(&p.xid) {
                    return fail(format!(
                        "Stream Prepare of xid {} that was never streamed",
                        p.xid
                    ));
                }
                return Ok(Boundary::UnitEnd { end_lsn: p.end_lsn });
            }
            PgOutput::StreamAbort(a) => {
                self.expect_closed("Stream Abort")?;
                if a.subxid == a.xid {
                    self.streamed.remove(&a.xid);
                }
            }
            PgOutput::Insert(_)
            | PgOutput::Update(_)
            | PgOutput::Delete(_)
            | PgOutput::Truncate(_)
            | PgOutput::Origin(_) => {
                if self.open.is_none() && self.stream_block.is_none() {
                    return fail(format!("{} outside any transaction", msg.kind()));
                }
            }
            PgOutput::Message(m) => {
                if m.transactional() && self.open.is_none() && self.stream_block.is_none() {
                    return fail("transactional Message outside any transaction".into());
                }
            }
            PgOutput::Relation(_) | PgOutput::Type(_) => {}
        }
        Ok(Boundary::None)
    }

    fn expect_closed(&self, what: &str) -> Result<(), InvariantViolation> {
        if self.open.is_some() || self.stream_block.is_some() {
            return Err(InvariantViolation(format!(
                "{what} while a transaction or stream block is open"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgoutput::*;
    use crate::protocol::time::PgTimestamp;

    fn begin(final_lsn: u64, xid: u32) -> PgOutput {
        PgOutput::Begin(Begin {
            final_lsn: Lsn(final_lsn),
            commit_ts: PgTimestamp(0),
            xid,
        })
    }

    fn commit(commit_lsn: u64, end_lsn: u64) -> PgOutput {
        PgOutput::Commit(Commit {
            flags: 0,
            commit_lsn: Lsn(commit_lsn),
            end_lsn: Lsn(end_lsn),
            commit_ts: PgTimestamp(0),
        })
    }

    fn insert() -> PgOutput {
        PgOutput::Insert(Insert {
            xid: None,
            relid: 1,
            new: TupleData::from_columns(&[]),
        })
    }

    #[test]
    fn regular_transaction_ends_a_unit_at_end_lsn() {
        let mut t = TransactionTracker::new();
        assert_eq!(t.on_message(&begin(100, 7)).unwrap(), Boundary::None);
        assert!(t.is_open());
        t.on_message(&insert()).unwrap();
        assert_eq!(
            t.on_message(&commit(100, 148)).unwrap(),
            Boundary::UnitEnd { end_lsn: Lsn(148) }
        );
        assert!(!t.is_open());
    }

    #[test]
    fn commit_lsn_must_match_begin_final_lsn() {
        let mut t = TransactionTracker::new();
        t.on_message(&begin(100, 7)).unwrap();
        assert!(t.on_message(&commit(101, 148)).is_err());
    }

    #[test]
    fn row_outside_transaction_is_a_violation() {
        assert!(TransactionTracker::new().on_message(&insert()).is_err());
    }

    #[test]
    fn nested_begin_is_a_violation() {
        let mut t = TransactionTracker::new();
        t.on_message(&begin(100, 7)).unwrap();
        assert!(t.on_message(&begin(200, 8)).is_err());
    }

    #[test]
    fn streamed_transaction_stays_open_between_blocks_until_commit() {
        let mut t = TransactionTracker::new();
        let start = |first| {
            PgOutput::StreamStart(StreamStart {
                xid: 9,
                first_segment: first,
            })
        };
        t.on_message(&start(1)).unwrap();
        t.on_message(&PgOutput::StreamStop).unwrap();
        assert!(t.is_open(), "streamed xid 9 has not committed");
        // A regular transaction may run between blocks.
        t.on_message(&begin(100, 7)).unwrap();
        t.on_message(&commit(100, 148)).unwrap();
        t.on_message(&start(0)).unwrap();
        t.on_message(&PgOutput::StreamStop).unwrap();
        let end = t
            .on_message(&PgOutput::StreamCommit(StreamCommit {
                xid: 9,
                flags: 0,
                commit_lsn: Lsn(300),
                end_lsn: Lsn(348),
                commit_ts: PgTimestamp(0),
            }))
            .unwrap();
        assert_eq!(end, Boundary::UnitEnd { end_lsn: Lsn(348) });
        assert!(!t.is_open());
    }

    #[test]
    fn subtransaction_abort_keeps_the_streamed_transaction_open() {
        let mut t = TransactionTracker::new();
        t.on_message(&PgOutput::StreamStart(StreamStart {
            xid: 9,
            first_segment: 1,
        }))
        .unwrap();
        t.on_message(&PgOutput::StreamStop).unwrap();
        let abort = |subxid| {
            PgOutput::StreamAbort(StreamAbort {
                xid: 9,
                subxid,
                abort: None,
            })
        };
        t.on_message(&abort(10)).unwrap();
        assert!(t.is_open());
        t.on_message(&abort(9)).unwrap();
        assert!(!t.is_open());
    }

    #[test]
    fn stray_stream_abort_is_ignored() {
        let mut t = TransactionTracker::new();
        t.on_message(&PgOutput::StreamAbort(StreamAbort {
            xid: 42,
            subxid: 42,
            abort: None,
        }))
        .unwrap();
        assert!(!t.is_open());
    }

    #[test]
    fn two_phase_units() {
        let mut t = TransactionTracker::new();
        let ts = PgTimestamp(0);
        t.on_message(&PgOutput::BeginPrepare(BeginPrepare {
            prepare_lsn: Lsn(100),
            end_lsn: Lsn(150),
            prepare_ts: ts,
            xid: 5,
            gid: "g".into(),
        }))
        .unwrap();
        assert!(t.is_open());
        let p = Prepare {
            flags: 0,
            prepare_lsn: Lsn(100),
            end_lsn: Lsn(150),
            prepare_ts: ts,
            xid: 5,
            gid: "g".into(),
        };
        assert_eq!(
            t.on_message(&PgOutput::Prepare(p)).unwrap(),
            Boundary::UnitEnd { end_lsn: Lsn(150) }
        );
        assert_eq!(
            t.on_message(&PgOutput::CommitPrepared(CommitPrepared {
                flags: 0,
                commit_lsn: Lsn(200),
                end_lsn: Lsn(250),
                commit_ts: ts,
                xid: 5,
                gid: "g".into(),
            }))
            .unwrap(),
            Boundary::UnitEnd { end_lsn: Lsn(250) }
        );
    }
}
