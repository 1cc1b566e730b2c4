//! The error every command returns, and its exit code.
//!
//! | exit | meaning                                                                |
//! |------|------------------------------------------------------------------------|
//! | 0    | done                                                                   |
//! | 1    | runtime failure (connection lost mid-run, a damaged stream or file …) |
//! | 2    | usage or configuration: bad conninfo, first connection impossible,     |
//! |      | authentication failed, missing publication or slot, wal_level …        |
//! | 3    | verify found differences                                               |
//!
//! Each variant's message names what failed and what to do about it.

use crate::conn::{ConnError, ErrorClass};
use crate::record::RecordError;
use crate::stream::StreamError;
use crate::stream::positions::InvariantViolation;

/// A command's failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The command line is wrong.
    #[error("{0}")]
    Usage(String),
    /// The servers are not set up as the command needs; the message says how to fix it.
    #[error("{0}")]
    Config(String),
    /// Connecting at the start failed: nothing was done.
    #[error("{0}{hint}", hint = startup_hint(.0))]
    Startup(Box<ConnError>),
    /// A connection failed.
    #[error("{0}{hint}", hint = retry_hint(.0))]
    Conn(Box<ConnError>),
    /// The replication stream could not be processed.
    #[error(transparent)]
    Stream(Box<StreamError>),
    /// An invariant of the positions or the accounting broke.
    #[error(transparent)]
    Invariant(#[from] InvariantViolation),
    /// The destination (or a plain SQL session) failed.
    #[error("{0}")]
    Sql(Box<crate::dest::SqlError>),
    /// A recording file is unusable or damaged.
    #[error(transparent)]
    Record(Box<RecordError>),
    /// A change did not fit the destination's rows (an existing key, or with
    /// `--on-conflict error` a missing row); the message names the table, kind and key.
    #[error("{0}")]
    Conflict(String),
    /// `verify` found differences (the report says which).
    #[error("{0}")]
    Differences(String),
    /// Local I/O (stdout, a file) failed.
    #[error("{context}: {source}")]
    Io {
        /// What pgsub was doing.
        context: String,
        /// The system's answer.
        source: std::io::Error,
    },
}

impl From<ConnError> for Error {
    fn from(e: ConnError) -> Self {
        Error::Conn(Box::new(e))
    }
}

impl From<crate::dest::SqlError> for Error {
    fn from(e: crate::dest::SqlError) -> Self {
        Error::Sql(Box::new(e))
    }
}

impl From<StreamError> for Error {
    fn from(e: StreamError) -> Self {
        Error::Stream(Box::new(e))
    }
}

impl From<RecordError> for Error {
    fn from(e: RecordError) -> Self {
        Error::Record(Box::new(e))
    }
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Differences(_) => 3,
            Error::Usage(_) | Error::Config(_) | Error::Startup(_) => 2,
            Error::Conn(e) if e.class() == ErrorClass::Config => 2,
            Error::Record(e) if e.is_unusable_file() => 2,
            Error::Sql(e) if e.context.starts_with("connecting") => 2,
            Error::Sql(e)
                if e.code()
                    .is_some_and(|c| c.starts_with("28") || c == "3D000") =>
            {
                2
            }
            _ => 1,
        }
    }

    /// Wraps a local I/O error.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// What to do about the usual reasons a first connection fails.
fn startup_hint(e: &ConnError) -> String {
    use crate::conn::error::sqlstate;
    let hint = match (e, e.code()) {
        (_, Some(sqlstate::INSUFFICIENT_PRIVILEGE)) => {
            "the role needs the REPLICATION attribute (ALTER ROLE … REPLICATION) to open a replication connection, and SELECT on the published tables"
        }
        (_, Some(sqlstate::INVALID_PASSWORD)) => {
            "check the password given with password=, PGPASSWORD or ~/.pgpass"
        }
        (_, Some(sqlstate::INVALID_AUTHORIZATION)) => {
            "the server's pg_hba.conf has no line allowing this user, database and address; add one (for logical replication the database column names the database, not `replication`) and reload the server"
        }
        (_, Some(sqlstate::INVALID_CATALOG_NAME)) => "check dbname= in the connection string",
        (_, Some(sqlstate::TOO_MANY_CONNECTIONS)) => {
            "the server has no free connection or WAL sender slot: raise max_connections / max_wal_senders or stop an idle client"
        }
        (ConnError::Connect { .. } | ConnError::ConnectTimeout { .. }, _) => {
            "is the server running, and listening on that address and port (listen_addresses, port)?"
        }
        _ => return String::new(),
    };
    format!("\nhint: {hint}")
}

fn retry_hint(e: &ConnError) -> &'static str {
    if e.is_transient() {
        "\nhint: this is worth retrying: run the same command again; it resumes from the slot's confirmed position, so nothing acknowledged is lost and nothing unacknowledged is skipped"
    } else {
        ""
    }
}

/// Result of a command.
pub type Result<T, E = Error> = std::result::Result<T, E>;
