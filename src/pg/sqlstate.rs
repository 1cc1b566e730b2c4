//! The one classification of SQLSTATEs, for the source and the destination alike: which
//! errors are worth retrying from the stored progress, which say the servers are set up
//! wrong, and which are definite.

/// What an SQLSTATE means for pgsub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Retrying later may succeed: a lost connection, a server shutting down or in
    /// recovery, a deadlock, a serialization failure, a lock or statement timeout, too
    /// many connections, a read-only server during a failover.
    Transient,
    /// The servers, roles or command line are set up wrong: authentication, privileges,
    /// a missing database.
    Configuration,
    /// Anything else: the same statement fails the same way again.
    Definite,
}

/// The class of `code`.
pub fn classify(code: &str) -> Class {
    match code {
        // connection_exception, admin_shutdown, crash_shutdown, cannot_connect_now
        c if c.starts_with("08") || c.starts_with("57P") => Class::Transient,
        "40P01" | "40001" | "55P03" | "57014" | "53300" | "25006" => Class::Transient,
        // invalid_authorization_specification, invalid_password
        c if c.starts_with("28") => Class::Configuration,
        "3D000" | "42501" => Class::Configuration,
        _ => Class::Definite,
    }
}

/// `unique_violation`.
pub const UNIQUE_VIOLATION: &str = "23505";
/// `exclusion_violation`.
pub const EXCLUSION_VIOLATION: &str = "23P01";
/// `in_failed_sql_transaction`: a statement after one that failed.
pub const IN_FAILED_TRANSACTION: &str = "25P02";

/// Whether `code` says a value did not fit its column: too long, out of range, a bit
/// string of the wrong length, a date or time out of range.
pub fn is_value_too_wide(code: &str) -> bool {
    matches!(code, "22001" | "22003" | "22026" | "22008")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_states_are_transient_and_constraint_violations_definite() {
        for c in [
            "08006", "57P01", "57P03", "40P01", "40001", "55P03", "57014", "53300", "25006",
        ] {
            assert_eq!(classify(c), Class::Transient, "{c}");
        }
        for c in ["28P01", "28000", "3D000", "42501"] {
            assert_eq!(classify(c), Class::Configuration, "{c}");
        }
        for c in ["23505", "22001", "42P01", "XX000"] {
            assert_eq!(classify(c), Class::Definite, "{c}");
        }
    }
}
