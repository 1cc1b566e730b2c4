//! When to send a standby status update, and with which positions.
//!
//! Rules (PostgreSQL's own walreceiver and apply worker behave the same way):
//! - at once when the server sets `reply_requested` in a keepalive;
//! - at least every `interval` (10 s by default), whatever else is going on, so that
//!   `wal_sender_timeout` never fires while a long apply runs;
//! - soon after the acknowledgeable position advances (rate-limited to `min_gap`), so the
//!   slot follows the applied position closely.
//!
//! The update reports `write` = received, `flush` = `apply` = acknowledgeable; with
//! acknowledgement disabled (`decode --no-ack`) flush and apply are `0/0`, which the
//! server reads as "no confirmation": the slot does not move.

use std::time::{Duration, Instant};

use crate::lsn::Lsn;
use crate::protocol::replication::StandbyStatusUpdate;
use crate::protocol::time::PgTimestamp;

/// Default maximum time between status updates.
pub const DEFAULT_STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// Default shortest time between updates sent because the position advanced.
pub const DEFAULT_PROGRESS_GAP: Duration = Duration::from_millis(100);

/// Decides when status updates are due.
#[derive(Debug, Clone)]
pub struct FeedbackPolicy {
    interval: Duration,
    min_gap: Duration,
    acknowledge: bool,
    last_sent_at: Option<Instant>,
    last_flush: Lsn,
    reply_pending: bool,
}

impl FeedbackPolicy {
    /// A policy sending at least every `interval`; `acknowledge = false` never confirms.
    pub fn new(interval: Duration, acknowledge: bool) -> Self {
        Self::with_progress_gap(interval, DEFAULT_PROGRESS_GAP, acknowledge)
    }

    /// As [`FeedbackPolicy::new`], with updates for progress at most every `gap` (each one
    /// makes the consumer durable first, which may cost an fsync).
    pub fn with_progress_gap(interval: Duration, gap: Duration, acknowledge: bool) -> Self {
        FeedbackPolicy {
            interval,
            min_gap: gap.min(interval),
            acknowledge,
            last_sent_at: None,
            last_flush: Lsn::ZERO,
            reply_pending: false,
        }
    }

    /// The server asked for a reply.
    pub fn reply_requested(&mut self) {
        self.reply_pending = true;
    }

    /// Whether an update is due at `now`, given the position that could be acknowledged.
    pub fn due(&self, now: Instant, acknowledgeable: Lsn) -> bool {
        let Some(last) = self.last_sent_at else {
            return true;
        };
        let since = now.saturating_duration_since(last);
        self.reply_pending
            || since >= self.interval
            || (self.acknowledge && acknowledgeable > self.last_flush && since >= self.min_gap)
    }

    /// When the next update will be due if nothing else happens.
    pub fn next_due(&self, acknowledgeable: Lsn) -> Option<Instant> {
        let last = self.last_sent_at?;
        if self.reply_pending {
            return Some(last);
        }
        if self.acknowledge && acknowledgeable > self.last_flush {
            return Some(last + self.min_gap);
        }
        Some(last + self.interval)
    }

    /// Builds the update to send now and records it as sent.
    pub fn build(
        &mut self,
        now: Instant,
        received: Lsn,
        acknowledgeable: Lsn,
        reply_requested: bool,
    ) -> StandbyStatusUpdate {
        let flush = if self.acknowledge {
            acknowledgeable.max(self.last_flush)
        } else {
            Lsn::ZERO
        };
        self.last_sent_at = Some(now);
        self.last_flush = flush;
        self.reply_pending = false;
        StandbyStatusUpdate {
            write: received.max(flush),
            flush,
            apply: flush,
            client_time: PgTimestamp::now(),
            reply_requested,
        }
    }

    /// The flush position last sent.
    pub fn last_flush(&self) -> Lsn {
        self.last_flush
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_update_is_due_immediately() {
        let p = FeedbackPolicy::new(DEFAULT_STATUS_INTERVAL, true);
        assert!(p.due(Instant::now(), Lsn(0)));
    }

    #[test]
    fn reply_requested_makes_an_update_due_at_once() {
        let mut p = FeedbackPolicy::new(DEFAULT_STATUS_INTERVAL, true);
        let t0 = Instant::now();
        p.build(t0, Lsn(10), Lsn(10), false);
        assert!(!p.due(t0, Lsn(10)));
        p.reply_requested();
        assert!(p.due(t0, Lsn(10)));
    }

    #[test]
    fn interval_bounds_the_silence() {
        let mut p = FeedbackPolicy::new(Duration::from_secs(10), true);
        let t0 = Instant::now();
        p.build(t0, Lsn(10), Lsn(10), false);
        assert!(!p.due(t0 + Duration::from_secs(9), Lsn(10)));
        assert!(p.due(t0 + Duration::from_secs(10), Lsn(10)));
        assert_eq!(p.next_due(Lsn(10)), Some(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn advancing_position_is_sent_soon_but_rate_limited() {
        let mut p = FeedbackPolicy::new(Duration::from_secs(10), true);
        let t0 = Instant::now();
        p.build(t0, Lsn(10), Lsn(10), false);
        assert!(!p.due(t0 + Duration::from_millis(50), Lsn(20)));
        assert!(p.due(t0 + Duration::from_millis(100), Lsn(20)));
    }

    #[test]
    fn no_ack_reports_zero_flush_and_is_not_hurried_by_progress() {
        let mut p = FeedbackPolicy::new(Duration::from_secs(10), false);
        let t0 = Instant::now();
        let u = p.build(t0, Lsn(500), Lsn(400), false);
        assert_eq!((u.write, u.flush, u.apply), (Lsn(500), Lsn(0), Lsn(0)));
        assert!(!p.due(t0 + Duration::from_secs(1), Lsn(900)));
    }

    #[test]
    fn flush_never_goes_backwards() {
        let mut p = FeedbackPolicy::new(Duration::from_secs(10), true);
        let t0 = Instant::now();
        p.build(t0, Lsn(500), Lsn(400), false);
        let u = p.build(t0, Lsn(500), Lsn(300), false);
        assert_eq!(u.flush, Lsn(400));
    }
}
