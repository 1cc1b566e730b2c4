//! Received, applied and acknowledged positions, and the rule for what may be
//! acknowledged (see [`crate::lsn`] for why).
//!
//! ```text
//!   received      every position seen: XLogData, keepalive wal_end, commit end_lsn
//!   completed     end_lsn of the last unit received whole (Commit, Prepare, Stream Commit,
//!                 Commit/Rollback Prepared, Stream Prepare)
//!   applied       end_lsn of the last unit the consumer reports durable
//!   acknowledged  the flush position last sent
//!
//!   acknowledgeable = max(applied, idle keepalive wal_end whose prerequisites are applied,
//!                         start floor, acknowledged)
//! ```
//!
//! A keepalive counts only if it arrived while no transaction was open (no Begin,
//! Begin Prepare or stream block without its end, no streamed transaction without its
//! commit or abort), and only once everything completed before it is applied. The
//! invariants `acknowledged ≤ acknowledgeable ≤ received` and "positions never go
//! backwards" are checked on every step; a violation is an error, never silently fixed.
//! (A keepalive's `wal_end` is the server's to move back at a stream's start, and is
//! taken as sent: see [`Positions::on_keepalive`].)

use crate::lsn::Lsn;

/// A broken rule of the stream or of the accounting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("replication stream invariant violated: {0}")]
pub struct InvariantViolation(pub String);

/// The positions of one replication session.
#[derive(Debug, Clone, Default)]
pub struct Positions {
    received: Lsn,
    completed: Lsn,
    applied: Lsn,
    acknowledged: Lsn,
    floor: Lsn,
    last_keepalive: Lsn,
    idle_keepalive: Option<(Lsn, Lsn)>,
    open: bool,
}

impl Positions {
    /// Positions of a session started at `start` (the slot's `confirmed_flush_lsn` or
    /// the requested start, whichever is higher): nothing below it is ever reported.
    pub fn new(start: Lsn) -> Self {
        Positions {
            floor: start,
            received: start,
            completed: start,
            applied: start,
            ..Default::default()
        }
    }

    /// Highest position received.
    pub fn received(&self) -> Lsn {
        self.received
    }

    /// End of the last unit received whole.
    pub fn completed(&self) -> Lsn {
        self.completed
    }

    /// End of the last unit durably applied.
    pub fn applied(&self) -> Lsn {
        self.applied
    }

    /// The flush position last sent to the server.
    pub fn acknowledged(&self) -> Lsn {
        self.acknowledged
    }

    /// The last keepalive `wal_end`.
    pub fn last_keepalive(&self) -> Lsn {
        self.last_keepalive
    }

    /// True when a transaction is open (set by the transaction tracker).
    pub fn set_open(&mut self, open: bool) {
        self.open = open;
    }

    /// Records a position seen in an XLogData header.
    pub fn on_xlog_data(&mut self, wal_start: Lsn, wal_end: Lsn) {
        self.received = self.received.max(wal_start).max(wal_end);
    }

    /// Records a keepalive. Its `wal_end` becomes a candidate for acknowledgement when
    /// no transaction is open.
    ///
    /// A keepalive's `wal_end` may go backwards at the start of a stream: a logical
    /// walsender's `sentPtr` starts at the slot's `confirmed_flush`, and its first
    /// keepalive says so, but decoding starts again at the slot's `restart_lsn`, further
    /// back, and `sentPtr` follows the records read from there (seen after a source
    /// restart). That is the server's way, not a broken stream: the lower value is taken
    /// as it is (what was acknowledged never moves back).
    pub fn on_keepalive(&mut self, wal_end: Lsn) -> Result<(), InvariantViolation> {
        if wal_end < self.last_keepalive {
            tracing::debug!(from = %self.last_keepalive, to = %wal_end, "keepalive wal_end went back (decoding restarted from the slot's restart_lsn)");
        }
        self.last_keepalive = wal_end;
        self.received = self.received.max(wal_end);
        if !self.open {
            self.idle_keepalive = Some((wal_end, self.completed));
        }
        Ok(())
    }

    /// Records the end of a unit (a commit, prepare, stream commit …) received whole.
    pub fn on_unit_end(&mut self, end_lsn: Lsn) -> Result<(), InvariantViolation> {
        if end_lsn < self.completed {
            return Err(InvariantViolation(format!(
                "transaction end_lsn went backwards from {} to {end_lsn}",
                self.completed
            )));
        }
        self.completed = end_lsn;
        self.received = self.received.max(end_lsn);
        Ok(())
    }

    /// The consumer reports everything up to `end_lsn` durably applied.
    pub fn on_applied(&mut self, end_lsn: Lsn) -> Result<(), InvariantViolation> {
        if end_lsn > self.completed {
            return Err(InvariantViolation(format!(
                "applied position {end_lsn} is beyond the last transaction received whole ({})",
                self.completed
            )));
        }
        self.applied = self.applied.max(end_lsn);
        Ok(())
    }

    /// The highest position that may be reported as flushed now.
    pub fn acknowledgeable(&self) -> Lsn {
        let mut ack = self.applied.max(self.floor).max(self.acknowledged);
        if let Some((wal_end, needs)) = self.idle_keepalive
            && self.applied >= needs
        {
            ack = ack.max(wal_end);
        }
        ack
    }

    /// Records that `flush` was sent, checking it against the rules.
    pub fn on_acknowledged(&mut self, flush: Lsn) -> Result<(), InvariantViolation> {
        if flush.is_zero() {
            return Ok(());
        }
        if flush < self.acknowledged {
            return Err(InvariantViolation(format!(
                "acknowledged position went backwards from {} to {flush}",
                self.acknowledged
            )));
        }
        if flush > self.acknowledgeable() {
            return Err(InvariantViolation(format!(
                "acknowledging {flush} beyond what is durably applied ({})",
                self.acknowledgeable()
            )));
        }
        if flush > self.received {
            return Err(InvariantViolation(format!(
                "acknowledging {flush} beyond what was received ({})",
                self.received
            )));
        }
        self.acknowledged = flush;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_end_lsn_is_acknowledged_only_once_applied() {
        let mut p = Positions::new(Lsn(100));
        p.set_open(true);
        p.on_xlog_data(Lsn(150), Lsn(150));
        p.set_open(false);
        p.on_unit_end(Lsn(200)).unwrap();
        assert_eq!(p.acknowledgeable(), Lsn(100));
        p.on_applied(Lsn(200)).unwrap();
        assert_eq!(p.acknowledgeable(), Lsn(200));
    }

    #[test]
    fn keepalive_inside_open_transaction_is_not_acknowledged() {
        let mut p = Positions::new(Lsn(100));
        p.set_open(true);
        p.on_keepalive(Lsn(500)).unwrap();
        assert_eq!(p.acknowledgeable(), Lsn(100));
        p.set_open(false);
        p.on_unit_end(Lsn(600)).unwrap();
        // The keepalive seen while open must not count, even after the commit is applied.
        p.on_applied(Lsn(600)).unwrap();
        assert_eq!(p.acknowledgeable(), Lsn(600));
    }

    #[test]
    fn idle_keepalive_waits_for_earlier_transactions_to_be_applied() {
        let mut p = Positions::new(Lsn(100));
        p.on_unit_end(Lsn(200)).unwrap();
        p.on_keepalive(Lsn(900)).unwrap();
        assert_eq!(p.acknowledgeable(), Lsn(100), "commit 200 not applied yet");
        p.on_applied(Lsn(200)).unwrap();
        assert_eq!(p.acknowledgeable(), Lsn(900));
    }

    #[test]
    fn idle_source_advances_on_keepalives_alone() {
        let mut p = Positions::new(Lsn(100));
        p.on_keepalive(Lsn(5000)).unwrap();
        assert_eq!(p.acknowledgeable(), Lsn(5000));
        p.on_acknowledged(Lsn(5000)).unwrap();
        p.on_keepalive(Lsn(9000)).unwrap();
        assert_eq!(p.acknowledgeable(), Lsn(9000));
    }

    #[test]
    fn acknowledging_beyond_applied_is_refused() {
        let mut p = Positions::new(Lsn(100));
        p.on_unit_end(Lsn(200)).unwrap();
        assert!(p.on_acknowledged(Lsn(200)).is_err());
        p.on_applied(Lsn(200)).unwrap();
        p.on_acknowledged(Lsn(200)).unwrap();
        assert!(p.on_acknowledged(Lsn(150)).is_err(), "backwards");
    }

    #[test]
    fn applied_beyond_received_is_refused() {
        let mut p = Positions::new(Lsn(100));
        assert!(p.on_applied(Lsn(300)).is_err());
    }

    #[test]
    fn commit_positions_must_not_go_backwards() {
        let mut p = Positions::new(Lsn(0));
        p.on_unit_end(Lsn(600)).unwrap();
        assert!(p.on_unit_end(Lsn(550)).is_err());
    }

    #[test]
    fn a_keepalive_behind_an_earlier_one_at_a_streams_start_is_taken_and_nothing_moves_back() {
        // The walsender's first keepalive carries the slot's confirmed_flush (500), the
        // next ones the records it reads again from the slot's restart_lsn (400).
        let mut p = Positions::new(Lsn(500));
        p.on_keepalive(Lsn(500)).unwrap();
        p.on_acknowledged(Lsn(500)).unwrap();
        p.on_keepalive(Lsn(400)).unwrap();
        assert_eq!(p.last_keepalive(), Lsn(400));
        assert_eq!(
            p.acknowledgeable(),
            Lsn(500),
            "never below what was acknowledged"
        );
        p.on_keepalive(Lsn(700)).unwrap();
        assert_eq!(p.acknowledgeable(), Lsn(700));
    }

    #[test]
    fn nothing_below_the_start_floor_is_reported() {
        let p = Positions::new(Lsn(1000));
        assert_eq!(p.acknowledgeable(), Lsn(1000));
    }
}
