//! The `Lsn` type: a position in the source's write-ahead log, and the rules for
//! which positions pgsub may report back to the server.
//!
//! Every position pgsub handles is an [`Lsn`], never a bare `u64`. It prints and parses
//! as PostgreSQL does (`X/Y`, two hexadecimal halves, no zero padding on output, padded or
//! not on input).
//!
//! # Progress tracking
//!
//! The server keeps, per logical slot, a `confirmed_flush_lsn`: the position up to which
//! the client has said it has durably processed the stream. When the client reconnects,
//! decoding restarts at `max(requested start, confirmed_flush_lsn)`, and a transaction is
//! sent again only if the *start* of its commit record is not below that point
//! (`SnapBuildXactNeedsSkip`: `ptr < start_decoding_at` skips). From that follow the rules
//! implemented in [`crate::stream::positions`]:
//!
//! 1. After a transaction is durably applied, the position to report is its Commit
//!    `end_lsn` (the byte after the commit record). `commit_lsn` would make the server
//!    send it again; anything past `end_lsn` may skip a transaction whose commit record
//!    starts exactly at `end_lsn`. The XLogData `wal_start` of a message, or
//!    `wal_start + len`, is never a position to acknowledge.
//! 2. A primary keepalive's `wal_end` is the end of the last WAL record the walsender has
//!    processed; every transaction committed before it has already been sent (or skipped
//!    as empty, or filtered out). It may be acknowledged only while no transaction is
//!    open and everything received before it is durably applied. On an idle source, or
//!    one whose writes go to other databases, that is the only way the slot advances.
//! 3. Reported positions never go backwards: older servers store a lower flush position
//!    as given, which would make them resend acknowledged data.
//! 4. The slot's position is not crash-safe on the source (it is written to disk only at
//!    checkpoints and when the slot's horizons move), so the authority on what was
//!    applied is the destination's own progress record, written in the same transaction
//!    as the data; transactions whose `end_lsn` is at or below it are skipped on replay.
//!
//! Sources: PostgreSQL `src/backend/replication/logical/snapbuild.c`
//! (`SnapBuildXactNeedsSkip`), `walsender.c` (`XLogSendLogical`, `sentPtr`),
//! `logical/worker.c` (`get_flush_position`, `send_feedback`), and the client bugs listed
//! in `docs/protocol.md` § Positions.

use std::fmt;
use std::str::FromStr;

/// A write-ahead log position (`pg_lsn`).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `0/0`: "no position". A standby status update with flush `0/0` confirms nothing.
    pub const ZERO: Lsn = Lsn(0);

    /// The position as a plain number, for arithmetic on byte distances.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// True for `0/0`.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Bytes of WAL from `earlier` to `self`; zero when `earlier` is ahead.
    pub fn bytes_since(self, earlier: Lsn) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// This position moved forward by `bytes`, or `None` past the end of the address space.
    pub fn checked_add(self, bytes: u64) -> Option<Lsn> {
        self.0.checked_add(bytes).map(Lsn)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl fmt::Debug for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lsn({self})")
    }
}

/// An `X/Y` text that is not a WAL position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a WAL position: expected two hexadecimal numbers separated by `/`, such as 0/16B3748"
)]
pub struct ParseLsnError(pub String);

impl FromStr for Lsn {
    type Err = ParseLsnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseLsnError(s.to_owned());
        let (hi, lo) = s.trim().split_once('/').ok_or_else(err)?;
        let half = |h: &str| {
            if h.is_empty() || h.len() > 8 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u32::from_str_radix(h, 16).ok()
        };
        let hi = half(hi).ok_or_else(err)?;
        let lo = half(lo).ok_or_else(err)?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

impl serde::Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_matches_postgres_formatting() {
        assert_eq!(Lsn(0).to_string(), "0/0");
        assert_eq!(Lsn(0x16B_3748).to_string(), "0/16B3748");
        assert_eq!(Lsn(0x1_0000_00AB).to_string(), "1/AB");
        assert_eq!(Lsn(u64::MAX).to_string(), "FFFFFFFF/FFFFFFFF");
    }

    #[test]
    fn parse_accepts_padded_and_lowercase_forms() {
        assert_eq!("0/16B3748".parse::<Lsn>().unwrap(), Lsn(0x16B_3748));
        assert_eq!("00000000/016b3748".parse::<Lsn>().unwrap(), Lsn(0x16B_3748));
        assert_eq!("1/0".parse::<Lsn>().unwrap(), Lsn(1 << 32));
    }

    #[test]
    fn parse_rejects_what_is_not_a_position() {
        for bad in [
            "",
            "/",
            "0/",
            "/0",
            "0-0",
            "g/0",
            "0/123456789",
            "+1/0",
            "0/0/0",
            "１/0",
        ] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn parse_error_names_the_input_and_the_expected_form() {
        let msg = "bogus".parse::<Lsn>().unwrap_err().to_string();
        assert!(
            msg.contains("`bogus`") && msg.contains("0/16B3748"),
            "{msg}"
        );
    }

    #[test]
    fn text_round_trips_for_edge_values() {
        for v in [
            0u64,
            1,
            0xFFFF_FFFF,
            1 << 32,
            u64::MAX,
            0xDEAD_BEEF_0000_0001,
        ] {
            assert_eq!(Lsn(v).to_string().parse::<Lsn>().unwrap(), Lsn(v));
        }
    }

    #[test]
    fn bytes_since_saturates_when_behind() {
        assert_eq!(Lsn(100).bytes_since(Lsn(40)), 60);
        assert_eq!(Lsn(40).bytes_since(Lsn(100)), 0);
    }
}
