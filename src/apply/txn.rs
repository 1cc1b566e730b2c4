//! Which source transactions and changes are applied, and how they are grouped into
//! destination transactions. Pure bookkeeping, no I/O.
//!
//! - A transaction whose commit starts before the stored progress (`final_lsn <
//!   applied`, equivalently `end_lsn ≤ applied`) was applied before a restart: skipped.
//! - A change to a table copied under a snapshot at `snapshot_lsn` is skipped when its
//!   transaction committed before that snapshot (`final_lsn < snapshot_lsn`): the copy
//!   holds it already, as the built-in table sync's rule says.
//!   A transaction prepared for two-phase commit (`sync --two-phase`) arrives before its
//!   commit position is known: when its PREPARE came before the snapshot, the snapshot's
//!   own list of completed transactions tells whether the copy holds it.
//! - Several small source transactions share one destination transaction (a group),
//!   closed after so many changes, bytes or milliseconds, and always between source
//!   transactions, never inside one. A prepared transaction has a destination
//!   transaction of its own, since PREPARE TRANSACTION prepares all of it.

use std::time::{Duration, Instant};

use crate::lsn::Lsn;
pub use crate::state::tables::XidSnapshot;
use crate::stream::relations::OidMap;

/// The snapshot a table was copied under: its position, and its transactions where known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySnapshot {
    /// `snapshot_lsn`.
    pub lsn: Lsn,
    /// Which transactions had completed.
    pub xids: Option<XidSnapshot>,
}

impl From<Lsn> for CopySnapshot {
    fn from(lsn: Lsn) -> Self {
        CopySnapshot { lsn, xids: None }
    }
}

/// Bounds of one destination transaction holding several source transactions.
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    /// Most source changes.
    pub changes: u64,
    /// Most bytes of values.
    pub bytes: u64,
    /// Longest time a group stays open.
    pub age: Duration,
}

impl Default for GroupLimits {
    fn default() -> Self {
        GroupLimits {
            changes: 20_000,
            bytes: 32 << 20,
            age: Duration::from_millis(200),
        }
    }
}

impl GroupLimits {
    /// Half the bounds (not below a floor of 16 changes, 64 KiB and 10 ms):
    /// after the destination connection was lost with a group open, so that on a network
    /// that keeps cutting connections a group still commits before the next cut.
    pub fn shrunk(self) -> Self {
        GroupLimits {
            changes: (self.changes / 2).max(16),
            bytes: (self.bytes / 2).max(64 << 10),
            age: (self.age / 2).max(Duration::from_millis(10)),
        }
    }

    /// Twice the bounds, at most the defaults: after a run that did not lose its group.
    pub fn grown(self) -> Self {
        let d = GroupLimits::default();
        GroupLimits {
            changes: (self.changes * 2).min(d.changes),
            bytes: (self.bytes * 2).min(d.bytes),
            age: (self.age * 2).min(d.age),
        }
    }
}

/// The source transaction being received.
#[derive(Debug, Clone, Copy)]
struct SourceTxn {
    final_lsn: Lsn,
    skip: bool,
    /// Prepared for two-phase commit: its xid (`final_lsn` is its PREPARE's).
    prepared_xid: Option<u32>,
}

/// The open destination transaction.
#[derive(Debug, Clone)]
struct Group {
    opened: Instant,
    changes: u64,
    bytes: u64,
    /// End of the last source transaction completed in the group, and its commit time.
    last_end: Option<(Lsn, String)>,
    /// The group's savepoint: the end (and commit time) of the last source transaction
    /// before it, the group's changes when it was taken, and when.
    savepoint: Option<((Lsn, String), u64, Instant)>,
}

/// A savepoint is taken at a source transaction's Begin, inside a group that holds a
/// complete one, at most this often…
const SAVEPOINT_EVERY: Duration = Duration::from_millis(10);
/// … or after this many changes: with the group's age and change bounds, at most about
/// 60 savepoints per group, below the 64 subtransactions a backend tracks without
/// overflowing (beyond that, every snapshot on the destination would look subtransactions
/// up in `pg_subtrans`).
const SAVEPOINT_CHANGES: u64 = 500;
/// A destination this close (round trip) keeps the savepoints' spacing as it is.
const NEAR: Duration = Duration::from_micros(500);
/// The most the savepoints' spacing grows for a far destination.
const MAX_SAVEPOINT_SCALE: u32 = 20;

/// How many times farther apart the things that cost a destination round trip are spaced
/// for a destination `round_trip` away: 1 up to [`NEAR`], growing with it beyond, at most
/// [`MAX_SAVEPOINT_SCALE`].
fn far_scale(round_trip: Duration) -> u32 {
    let scale = round_trip.as_micros() / NEAR.as_micros();
    u32::try_from(scale)
        .unwrap_or(u32::MAX)
        .clamp(1, MAX_SAVEPOINT_SCALE)
}

/// Whether a destination `round_trip` away is far: beyond [`NEAR`], where what waits
/// for a round trip is done another way when one exists (inserts as a pipelined
/// statement instead of COPY, which waits for the server's CopyInResponse).
pub fn is_far(round_trip: Duration) -> bool {
    round_trip > NEAR
}

/// The shortest time between status updates sent for progress, for a destination
/// `round_trip` away. Each one makes the sink durable first: it commits the open group
/// and asks the destination how far its WAL is flushed, four round trips that stop the
/// stream. Near, `default` (100 ms: the slot follows the applied position closely); far,
/// spaced as the savepoints are (5 ms away: every second), so that a backlog is applied in
/// larger groups and the stream stops less often, at the price of acknowledging, and
/// showing the rows of a trickle, up to that much later.
pub fn progress_gap(round_trip: Duration, default: Duration) -> Duration {
    default * far_scale(round_trip)
}

/// What a Begin means for the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begun {
    /// Already applied: skip it.
    Skip,
    /// Apply it in the open group.
    Continue,
    /// Apply it in a new group: open a destination transaction first.
    Open,
}

/// Skipping and grouping.
#[derive(Debug)]
pub struct Transactions {
    skip_before: Lsn,
    table_snapshots: OidMap<CopySnapshot>,
    limits: GroupLimits,
    /// Savepoints are spaced this many times [`SAVEPOINT_EVERY`] and
    /// [`SAVEPOINT_CHANGES`] apart, and groups bounded by this many times their
    /// [`GroupLimits`] (see [`Transactions::space_for`]).
    far_scale: u32,
    txn: Option<SourceTxn>,
    group: Option<Group>,
}

impl Transactions {
    /// Skipping what committed before `applied`, and per table before its snapshot.
    pub fn new(applied: Lsn, table_snapshots: OidMap<CopySnapshot>, limits: GroupLimits) -> Self {
        Transactions {
            skip_before: applied,
            table_snapshots,
            limits,
            far_scale: 1,
            txn: None,
            group: None,
        }
    }

    /// Spaces the group's savepoints, and bounds its groups, for a destination
    /// `round_trip` away. A savepoint ends the run of changes before it, and each group's
    /// commit leaves the destination idle for about two round trips (the statements
    /// before it drain, then the COMMIT goes and its reply comes back before the next
    /// group's statements are sent). Near (up to [`NEAR`]) both keep their spacing;
    /// farther, both grow with the round trip (at most [`MAX_SAVEPOINT_SCALE`] times), so
    /// that their cost stays a small part of the apply, at the price of more work given up
    /// on a source fault and of committing (and acknowledging) later. Both grow by the
    /// same factor, so a group holds no more savepoints than near.
    pub fn space_for(&mut self, round_trip: Duration) {
        self.far_scale = far_scale(round_trip);
    }

    /// A source transaction begins.
    pub fn begin(&mut self, final_lsn: Lsn) -> Begun {
        self.begin_txn(final_lsn, None, false)
    }

    /// A source transaction to be prepared for two-phase commit begins, its PREPARE at
    /// `prepare_lsn`; `held`: the destination holds it already (prepared or committed
    /// before a restart), so it is skipped. `sent_whole`: it comes whole at its COMMIT
    /// PREPARED, behind the stream (prepared before the slot decoded at PREPARE), so its
    /// PREPARE's position says nothing of whether it was applied: only `held` does.
    /// Otherwise a PREPARE before the stored progress was applied before (a recording
    /// replayed again sends it). No group may be open: its destination transaction is its
    /// own.
    pub fn begin_prepared(
        &mut self,
        prepare_lsn: Lsn,
        xid: u32,
        held: bool,
        sent_whole: bool,
    ) -> Begun {
        debug_assert!(
            self.group.is_none(),
            "a prepared transaction shares no group"
        );
        let skip = held || (!sent_whole && prepare_lsn < self.skip_before);
        self.begin_txn(prepare_lsn, Some(xid), skip)
    }

    /// Whether what ended at `end` was applied before a restart (its end at or before
    /// the stored progress).
    pub fn applied_before(&self, end: Lsn) -> bool {
        end <= self.skip_before
    }

    fn begin_txn(&mut self, final_lsn: Lsn, prepared_xid: Option<u32>, skip: bool) -> Begun {
        let skip = skip || (prepared_xid.is_none() && final_lsn < self.skip_before);
        self.txn = Some(SourceTxn {
            final_lsn,
            skip,
            prepared_xid,
        });
        if skip {
            Begun::Skip
        } else if self.group.is_some() {
            Begun::Continue
        } else {
            self.group = Some(Group {
                opened: Instant::now(),
                changes: 0,
                bytes: 0,
                last_end: None,
                savepoint: None,
            });
            Begun::Open
        }
    }

    /// The source transaction commits at `end` (at `commit_ts`); returns whether it was
    /// skipped.
    pub fn commit(&mut self, end: Lsn, commit_ts: String) -> bool {
        let txn = self.txn.take();
        if txn.is_some_and(|t| t.skip) {
            return true;
        }
        if let Some(g) = self.group.as_mut() {
            g.last_end = Some((end, commit_ts));
        }
        false
    }

    /// Whether a source transaction is open.
    pub fn in_transaction(&self) -> bool {
        self.txn.is_some()
    }

    /// Whether the open source transaction is being skipped.
    pub fn skipping_transaction(&self) -> bool {
        self.txn.is_some_and(|t| t.skip)
    }

    /// Changes of `relid` in transactions committed before `snapshot` (its copy's) are
    /// skipped from now on.
    pub fn table_snapshot(&mut self, relid: u32, snapshot: CopySnapshot) {
        self.table_snapshots.insert(relid, snapshot);
    }

    /// Whether the current transaction's changes to `relid` are skipped: it committed
    /// before the table's copy snapshot (for a prepared transaction whose PREPARE came
    /// before the snapshot: the snapshot lists it as completed).
    pub fn skipping(&self, relid: u32) -> bool {
        match &self.txn {
            None => true,
            Some(t) if t.skip => true,
            Some(t) => match (self.table_snapshots.get(&relid), t.prepared_xid) {
                (None, _) => false,
                (Some(snap), _) if t.final_lsn >= snap.lsn => false,
                (Some(_), None) => true,
                (Some(snap), Some(xid)) => snap.xids.as_ref().is_none_or(|x| x.completed(xid)),
            },
        }
    }

    /// Whether the current transaction is a prepared one whose PREPARE came before the
    /// copy snapshot of `relid`, a snapshot whose transactions were not recorded (a copy
    /// made by an older pgsub): whether the copy holds it cannot be told.
    pub fn unplaceable(&self, relid: u32) -> bool {
        self.txn.is_some_and(|t| {
            !t.skip
                && t.prepared_xid.is_some()
                && self
                    .table_snapshots
                    .get(&relid)
                    .is_some_and(|snap| t.final_lsn < snap.lsn && snap.xids.is_none())
        })
    }

    /// The open prepared transaction was prepared on the destination: its destination
    /// transaction is no longer this session's. Returns whether it was skipped.
    pub fn prepared(&mut self) -> bool {
        let skipped = self.txn.take().is_some_and(|t| t.skip);
        self.group = None;
        skipped
    }

    /// Counts a change of `bytes` in the open group; returns the number of changes
    /// before it.
    pub fn count(&mut self, bytes: u64) -> u64 {
        match self.group.as_mut() {
            Some(g) => {
                g.changes += 1;
                g.bytes += bytes;
                g.changes - 1
            }
            None => 0,
        }
    }

    /// Whether a destination transaction is open.
    pub fn group_open(&self) -> bool {
        self.group.is_some()
    }

    /// Whether the open group holds a complete source transaction to commit.
    pub fn group_committable(&self) -> bool {
        self.group.as_ref().is_some_and(|g| g.last_end.is_some())
    }

    /// Whether the open group has reached a bound (its [`GroupLimits`], times the far
    /// scale of [`Transactions::space_for`]).
    pub fn group_full(&self) -> bool {
        let scale = u64::from(self.far_scale);
        self.group.as_ref().is_some_and(|g| {
            g.changes >= self.limits.changes.saturating_mul(scale)
                || g.bytes >= self.limits.bytes.saturating_mul(scale)
                || g.opened.elapsed() >= self.limits.age * self.far_scale
        })
    }

    /// Closes the group for committing when no source transaction is open in it: the
    /// end and commit time of its last source transaction. Otherwise (or with nothing
    /// complete in it) the group stays open and `None` is returned.
    pub fn close_group(&mut self) -> Option<(Lsn, String)> {
        if self.txn.as_ref().is_some_and(|t| !t.skip) {
            return None;
        }
        let last = self.group.as_ref()?.last_end.clone()?;
        self.group = None;
        Some(last)
    }

    /// At the Begin of a source transaction in an open group: whether to take a
    /// savepoint before it, so that a fault in the middle of what follows can keep the
    /// group's complete source transactions (see [`Transactions::rewind`]). Taken at the
    /// first such Begin, then every [`SAVEPOINT_EVERY`] or [`SAVEPOINT_CHANGES`]; returns
    /// `Some(replaces)` (whether it replaces an earlier savepoint) when one is due, and
    /// records it as taken.
    pub fn savepoint_due(&mut self) -> Option<bool> {
        if self.txn.is_some_and(|t| t.skip) {
            return None;
        }
        let g = self.group.as_mut()?;
        let last = g.last_end.clone()?;
        let due = match &g.savepoint {
            None => true,
            Some((_, changes, at)) => {
                g.changes - changes >= SAVEPOINT_CHANGES * u64::from(self.far_scale)
                    || at.elapsed() >= SAVEPOINT_EVERY * self.far_scale
            }
        };
        if !due {
            return None;
        }
        let replaces = g.savepoint.is_some();
        g.savepoint = Some((last, g.changes, Instant::now()));
        Some(replaces)
    }

    /// The source transaction in progress is given up (its source failed, or pgsub was
    /// told to stop) and the destination rolled back to the group's savepoint: the group
    /// now ends with the source transaction before the savepoint, and can be committed.
    /// Returns `false` (and changes nothing) when the group has no savepoint.
    pub fn rewind(&mut self) -> bool {
        let Some(g) = self.group.as_mut() else {
            return false;
        };
        let Some((last, _, _)) = g.savepoint.take() else {
            return false;
        };
        g.last_end = Some(last);
        self.txn = None;
        true
    }

    /// Forgets the open group and source transaction (rolled back).
    pub fn abandon(&mut self) -> bool {
        self.txn = None;
        self.group.take().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txns(applied: u64) -> Transactions {
        let mut snaps = OidMap::default();
        snaps.insert(7, Lsn(500).into());
        Transactions::new(Lsn(applied), snaps, GroupLimits::default())
    }

    #[test]
    fn a_prepared_transaction_is_placed_against_a_copy_by_the_snapshots_transactions() {
        let mut snaps = OidMap::default();
        snaps.insert(
            7,
            CopySnapshot {
                lsn: Lsn(500),
                xids: Some(XidSnapshot::parse("90:100:95").unwrap()),
            },
        );
        snaps.insert(8, Lsn(500).into());
        let mut t = Transactions::new(Lsn(10), snaps, GroupLimits::default());
        // Prepared before the snapshot, still prepared when it was taken: not in the copy.
        assert_eq!(t.begin_prepared(Lsn(400), 95, false, false), Begun::Open);
        assert!(!t.skipping(7));
        assert!(!t.skipping(9), "a table without a copy takes every change");
        // Without the snapshot's transactions, nothing can be told.
        assert!(t.unplaceable(8));
        assert!(!t.unplaceable(7));
        assert!(!t.prepared());
        assert!(!t.group_open() && !t.in_transaction());
        // Prepared and committed before the snapshot: the copy holds it.
        t.begin_prepared(Lsn(410), 92, false, false);
        assert!(t.skipping(7));
        t.prepared();
        // Prepared after the snapshot: applied, whatever the snapshot lists.
        t.begin_prepared(Lsn(600), 92, false, false);
        assert!(!t.skipping(7) && !t.skipping(8) && !t.unplaceable(8));
        t.prepared();
        // Before the stored progress: applied before (sent again by a replay), skipped…
        t.begin_prepared(Lsn(5), 95, false, false);
        assert!(t.skipping_transaction());
        assert!(t.prepared());
        // … unless sent whole at its COMMIT PREPARED, never applied: applied (PREPARE at
        // 5, before the snapshot at 500: placed by the snapshot's transactions, 95 in
        // progress there).
        t.begin_prepared(Lsn(5), 95, false, true);
        assert!(!t.skipping_transaction() && !t.skipping(7));
        assert!(!t.prepared());
        // Held by the destination already: skipped as a whole.
        assert_eq!(t.begin_prepared(Lsn(700), 96, true, false), Begun::Skip);
        assert!(t.skipping(9) && t.prepared());
        assert!(t.applied_before(Lsn(10)) && !t.applied_before(Lsn(11)));
    }

    #[test]
    fn a_transaction_that_committed_before_the_progress_is_skipped() {
        let mut t = txns(100);
        assert_eq!(t.begin(Lsn(99)), Begun::Skip);
        assert!(t.skipping(1));
        assert!(t.commit(Lsn(100), String::new()));
        assert!(!t.group_open());
        // end_lsn = 100 = progress: its commit record starts before it.
        assert_eq!(t.begin(Lsn(100)), Begun::Open);
        assert!(!t.skipping(1));
    }

    #[test]
    fn a_table_copied_later_skips_changes_its_copy_holds() {
        let mut t = txns(0);
        t.begin(Lsn(499));
        assert!(t.skipping(7));
        assert!(!t.skipping(8));
        t.commit(Lsn(520), String::new());
        t.begin(Lsn(500));
        assert!(!t.skipping(7));
    }

    #[test]
    fn a_group_closes_only_between_source_transactions() {
        let mut t = txns(0);
        assert_eq!(t.begin(Lsn(10)), Begun::Open);
        assert_eq!(t.close_group(), None, "nothing complete yet");
        t.commit(Lsn(20), "ts1".into());
        assert_eq!(t.begin(Lsn(30)), Begun::Continue);
        assert_eq!(t.close_group(), None, "inside a source transaction");
        t.commit(Lsn(40), "ts2".into());
        assert_eq!(t.close_group(), Some((Lsn(40), "ts2".into())));
        assert!(!t.group_open());
    }

    #[test]
    fn a_group_rewinds_to_its_savepoint_before_a_half_received_transaction() {
        let mut t = txns(0);
        assert_eq!(t.begin(Lsn(10)), Begun::Open);
        assert_eq!(t.savepoint_due(), None, "nothing complete to keep yet");
        assert!(!t.rewind());
        t.commit(Lsn(20), "ts1".into());
        assert_eq!(t.begin(Lsn(30)), Begun::Continue);
        assert_eq!(
            t.savepoint_due(),
            Some(false),
            "the group's first savepoint"
        );
        assert_eq!(t.savepoint_due(), None, "not again at once");
        t.commit(Lsn(40), "ts2".into());
        assert_eq!(t.begin(Lsn(50)), Begun::Continue);
        for _ in 0..SAVEPOINT_CHANGES {
            t.count(1);
        }
        assert_eq!(
            t.savepoint_due(),
            Some(true),
            "replaced after enough changes"
        );
        // The source fails inside the transaction at 50: the group ends at 40.
        assert!(t.rewind());
        assert!(!t.in_transaction());
        assert_eq!(t.close_group(), Some((Lsn(40), "ts2".into())));
    }

    #[test]
    fn savepoints_are_spaced_farther_for_a_far_destination() {
        // Changes since the group's first savepoint before the next one is due (time
        // aside: the test runs well within SAVEPOINT_EVERY).
        let spacing = |round_trip: Duration| {
            let mut t = txns(0);
            t.space_for(round_trip);
            t.begin(Lsn(10));
            t.commit(Lsn(20), "ts".into());
            t.begin(Lsn(30));
            assert_eq!(t.savepoint_due(), Some(false));
            let mut n = 0;
            while t.savepoint_due().is_none() {
                t.count(1);
                n += 1;
            }
            n
        };
        assert_eq!(spacing(Duration::from_micros(80)), SAVEPOINT_CHANGES);
        assert_eq!(spacing(Duration::from_millis(5)), 10 * SAVEPOINT_CHANGES);
        assert_eq!(
            spacing(Duration::from_secs(1)),
            u64::from(MAX_SAVEPOINT_SCALE) * SAVEPOINT_CHANGES
        );
    }

    #[test]
    fn a_far_destination_gets_status_updates_for_progress_less_often() {
        let d = Duration::from_millis(100);
        assert_eq!(progress_gap(Duration::from_micros(80), d), d);
        assert_eq!(
            progress_gap(Duration::from_millis(5), d),
            Duration::from_secs(1)
        );
        assert_eq!(
            progress_gap(Duration::from_secs(3), d),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn group_bounds_shrink_to_a_floor_and_grow_back_to_the_defaults() {
        let mut l = GroupLimits::default();
        for _ in 0..20 {
            l = l.shrunk();
        }
        assert_eq!(
            (l.changes, l.bytes, l.age),
            (16, 64 << 10, Duration::from_millis(10))
        );
        for _ in 0..20 {
            l = l.grown();
        }
        let d = GroupLimits::default();
        assert_eq!((l.changes, l.bytes, l.age), (d.changes, d.bytes, d.age));
    }

    #[test]
    fn a_group_is_full_at_its_change_bound() {
        let mut t = Transactions::new(
            Lsn(0),
            OidMap::default(),
            GroupLimits {
                changes: 2,
                bytes: u64::MAX,
                age: Duration::from_secs(3600),
            },
        );
        t.begin(Lsn(1));
        t.count(10);
        assert!(!t.group_full());
        t.count(10);
        assert!(t.group_full());
    }

    #[test]
    fn a_far_destination_gets_groups_as_many_times_larger_as_its_savepoints_are_spaced() {
        let full_after = |round_trip: Duration| {
            let mut t = Transactions::new(
                Lsn(0),
                OidMap::default(),
                GroupLimits {
                    changes: 100,
                    bytes: u64::MAX,
                    age: Duration::from_secs(3600),
                },
            );
            t.space_for(round_trip);
            t.begin(Lsn(1));
            let mut n = 0;
            while !t.group_full() {
                t.count(1);
                n += 1;
            }
            n
        };
        assert_eq!(full_after(Duration::from_micros(80)), 100);
        assert_eq!(full_after(Duration::from_millis(5)), 1000);
        assert_eq!(
            full_after(Duration::from_secs(1)),
            100 * u64::from(MAX_SAVEPOINT_SCALE)
        );
    }
}
