//! The one classification of SQLSTATEs, for the source and the destination alike: which
//! errors are worth retrying from the stored progress, which say the servers are set up
//! wrong, and which are definite. Every error pgsub gets from a server is classed here.

/// What an SQLSTATE means for pgsub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The servers, roles or command line are set up wrong: fix them; exit 2.
    Config,
    /// Retrying later may succeed: reconnect and resume from the stored progress.
    Transient,
    /// Anything else: the same statement fails the same way again; stop and report.
    Definite,
}

/// invalid_password
pub const INVALID_PASSWORD: &str = "28P01";
/// invalid_authorization_specification (no pg_hba entry, unknown user with trust …)
pub const INVALID_AUTHORIZATION: &str = "28000";
/// invalid_catalog_name (database does not exist)
pub const INVALID_CATALOG_NAME: &str = "3D000";
/// undefined_object (replication slot does not exist)
pub const UNDEFINED_OBJECT: &str = "42704";
/// duplicate_object (replication slot exists)
pub const DUPLICATE_OBJECT: &str = "42710";
/// object_in_use (replication slot is active)
pub const OBJECT_IN_USE: &str = "55006";
/// object_not_in_prerequisite_state (slot invalidated, wal_level too low …)
pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
/// insufficient_privilege
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
/// too_many_connections
pub const TOO_MANY_CONNECTIONS: &str = "53300";
/// The server is starting up, shutting down or in recovery: `cannot_connect_now`.
pub const CANNOT_CONNECT_NOW: &str = "57P03";
/// feature_not_supported
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
/// configuration_limit_exceeded (max_replication_slots reached)
pub const CONFIGURATION_LIMIT_EXCEEDED: &str = "53400";
/// `disk_full`: a server could not extend a file.
pub const DISK_FULL: &str = "53100";
/// undefined_file (slot file missing …)
pub const UNDEFINED_FILE: &str = "58P01";
/// `unique_violation`.
pub const UNIQUE_VIOLATION: &str = "23505";
/// `exclusion_violation`.
pub const EXCLUSION_VIOLATION: &str = "23P01";
/// `in_failed_sql_transaction`: a statement after one that failed.
pub const IN_FAILED_TRANSACTION: &str = "25P02";

/// The class of `code`.
///
/// Transient: connection exceptions (08…), a server shutting down, crashed or starting
/// (57P01–57P03), a deadlock (40P01), a serialization failure (40001), a lock not
/// available (55P03), a statement timeout (57014, say from `statement_timeout` on the
/// role), too many connections (53300), a read-only server during a failover (25006),
/// and a slot still held by a walsender that has not yet noticed its client left (55006).
pub fn classify(code: &str) -> Class {
    match code {
        c if c.starts_with("08") || c.starts_with("57P") => Class::Transient,
        "40P01" | "40001" | "55P03" | "57014" | TOO_MANY_CONNECTIONS | "25006" | OBJECT_IN_USE => {
            Class::Transient
        }
        c if c.starts_with("28") => Class::Config,
        INVALID_CATALOG_NAME
        | UNDEFINED_OBJECT
        | DUPLICATE_OBJECT
        | INSUFFICIENT_PRIVILEGE
        | FEATURE_NOT_SUPPORTED
        | CONFIGURATION_LIMIT_EXCEEDED
        | OBJECT_NOT_IN_PREREQUISITE_STATE => Class::Config,
        _ => Class::Definite,
    }
}

/// Whether `code` says a value did not fit its column: too long, out of range, a bit
/// string of the wrong length, a date or time out of range.
pub fn is_value_too_wide(code: &str) -> bool {
    matches!(code, "22001" | "22003" | "22026" | "22008")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_states_are_transient_setup_states_config_and_the_rest_definite() {
        for c in [
            "08006", "57P01", "57P02", "57P03", "40P01", "40001", "55P03", "57014", "53300",
            "25006", "55006",
        ] {
            assert_eq!(classify(c), Class::Transient, "{c}");
        }
        for c in [
            "28P01", "28000", "3D000", "42501", "42704", "42710", "0A000", "53400", "55000",
        ] {
            assert_eq!(classify(c), Class::Config, "{c}");
        }
        for c in ["23505", "22001", "42P01", "XX000", "42804"] {
            assert_eq!(classify(c), Class::Definite, "{c}");
        }
    }
}
