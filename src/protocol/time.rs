//! PostgreSQL timestamps on the wire: microseconds since 2000-01-01 00:00:00 UTC.
//!
//! Used by XLogData `sendTime`, keepalives, standby status updates and the commit,
//! prepare and rollback timestamps of pgoutput. Printing is done here (RFC 3339, UTC)
//! rather than through a date crate: the conversion is a few lines of civil-calendar
//! arithmetic and the wire value is kept exactly.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds from the Unix epoch to the PostgreSQL epoch (2000-01-01 UTC).
pub const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// A timestamp as PostgreSQL sends it.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PgTimestamp(pub i64);

impl PgTimestamp {
    /// The current time.
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// The PostgreSQL timestamp of a system time (saturating far outside the range).
    pub fn from_system_time(t: SystemTime) -> Self {
        let unix = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            Err(e) => i64::try_from(e.duration().as_micros())
                .map(|v| -v)
                .unwrap_or(i64::MIN),
        };
        PgTimestamp(unix.saturating_sub(PG_EPOCH_UNIX_MICROS))
    }

    /// Microseconds since the Unix epoch.
    pub fn unix_micros(self) -> i64 {
        self.0.saturating_add(PG_EPOCH_UNIX_MICROS)
    }
}

/// Gregorian date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl fmt::Display for PgTimestamp {
    /// RFC 3339 in UTC with microseconds, e.g. `2026-11-26T13:03:54.123456Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == i64::MAX {
            return f.write_str("infinity");
        }
        if self.0 == i64::MIN {
            return f.write_str("-infinity");
        }
        let unix = i128::from(self.0) + i128::from(PG_EPOCH_UNIX_MICROS);
        let micros = unix.rem_euclid(1_000_000) as u32;
        let secs = unix.div_euclid(1_000_000);
        let days = secs.div_euclid(86_400) as i64;
        let sod = secs.rem_euclid(86_400) as u32;
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            sod / 3600,
            sod / 60 % 60,
            sod % 60
        )
    }
}

impl fmt::Debug for PgTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgTimestamp({self})")
    }
}

impl serde::Serialize for PgTimestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_epoch_prints_as_2000_01_01() {
        assert_eq!(PgTimestamp(0).to_string(), "2000-01-01T00:00:00.000000Z");
    }

    #[test]
    fn known_instants_print_exactly() {
        // 2024-02-29 12:34:56.789012 UTC, a leap day, from `SELECT extract(epoch ...)`.
        let unix = 1_709_210_096_789_012i64;
        assert_eq!(
            PgTimestamp(unix - PG_EPOCH_UNIX_MICROS).to_string(),
            "2024-02-29T12:34:56.789012Z"
        );
        assert_eq!(PgTimestamp(-1).to_string(), "1999-12-31T23:59:59.999999Z");
    }

    #[test]
    fn extremes_do_not_panic() {
        assert_eq!(PgTimestamp(i64::MAX).to_string(), "infinity");
        assert_eq!(PgTimestamp(i64::MIN).to_string(), "-infinity");
        let _ = PgTimestamp(i64::MAX - 1).to_string();
        let _ = PgTimestamp(i64::MIN + 1).to_string();
    }

    #[test]
    fn now_is_after_2020() {
        assert!(PgTimestamp::now().unix_micros() > 1_577_836_800_000_000);
    }
}
