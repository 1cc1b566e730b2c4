//! The error every command returns, its kind, and the exit code the kind decides.
//!
//! Every error has a [`ErrorKind`], set where it is made (a server error by its SQLSTATE,
//! through [`crate::pg::sqlstate`]); the exit code and whether `sync` retries follow the
//! kind, never the message text.
//!
//! | kind          | exit | meaning                                                        |
//! |---------------|------|----------------------------------------------------------------|
//! | —             | 0    | done                                                           |
//! | `Transient`   | 1    | worth retrying: a connection lost, a server restarting, a deadlock (sync retries these) |
//! | `Definite`    | 1    | a runtime failure that would repeat: a damaged stream or file, a conflict, a value the destination refuses |
//! | `Usage`       | 2    | the command line is wrong                                      |
//! | `Config`      | 2    | the servers are set up wrong: bad conninfo, first connection impossible, authentication failed, missing publication or slot, wal_level … |
//! | `Differences` | 3    | verify found differences                                       |
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
    /// A runtime failure that would happen again the same way (the message says what).
    #[error("{0}")]
    Definite(String),
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
    Sql(Box<crate::pg::SqlError>),
    /// A recording file is unusable or damaged.
    #[error(transparent)]
    Record(Box<RecordError>),
    /// A change did not fit the destination's rows (an existing key, or with
    /// `--on-conflict error` a missing row); the message names the table, kind and key.
    #[error("{0}")]
    Conflict(String),
    /// A table joined the publications while `sync` streamed: the run stops, and the next
    /// copies it before streaming on (`sync` does so at once).
    #[error(
        "table {0} joined the publications while pgsub streamed: it must be copied before its changes are applied (run sync again, which copies it)"
    )]
    PublicationChanged(String),
    /// A column cannot travel in binary format (`sync --binary`): under `auto` the run
    /// starts again with a text stream; under `on`, or replaying a binary recording, it
    /// is a setup error.
    #[error(
        "column {column} cannot be applied in binary format: {why}; run sync with --binary auto (binary where every column allows it, text otherwise) or --binary off"
    )]
    BinaryRefused {
        /// `"c" of table s.t`.
        column: String,
        /// Why not.
        why: String,
    },
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

impl From<crate::pg::SqlError> for Error {
    fn from(e: crate::pg::SqlError) -> Self {
        Error::Sql(Box::new(e))
    }
}

impl From<crate::pg::client::ClientError> for Error {
    fn from(e: crate::pg::client::ClientError) -> Self {
        match e {
            crate::pg::client::ClientError::Sql(e) => Error::Sql(Box::new(e)),
            crate::pg::client::ClientError::Tls(e) => Error::Config(e),
        }
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
    /// What kind of error this is: it decides the exit code and whether to retry.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Usage(_) => ErrorKind::Usage,
            Error::Config(_) | Error::Startup(_) | Error::BinaryRefused { .. } => ErrorKind::Config,
            Error::Differences(_) => ErrorKind::Differences,
            Error::PublicationChanged(_) => ErrorKind::Transient,
            Error::Conn(e) => ErrorKind::from(e.class()),
            Error::Sql(e) => ErrorKind::from(e.class()),
            Error::Record(e) if e.is_unusable_file() => ErrorKind::Config,
            Error::Definite(_)
            | Error::Conflict(_)
            | Error::Stream(_)
            | Error::Invariant(_)
            | Error::Record(_)
            | Error::Io { .. } => ErrorKind::Definite,
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        self.kind().exit_code()
    }

    /// Worth retrying from the stored progress.
    pub fn is_transient(&self) -> bool {
        self.kind() == ErrorKind::Transient
    }

    /// A failure to connect (as opposed to one on a connection already made): at the
    /// very start, a setup problem to report.
    pub fn is_connecting(&self) -> bool {
        match self {
            Error::Startup(_) => true,
            Error::Sql(s) => s.connecting,
            _ => false,
        }
    }

    /// Worth retrying once a run has started: transient, or a failure to connect to a
    /// server that was reachable before (refused, reset, starting up), but not one that
    /// says the setup changed (authentication, a database gone).
    pub fn is_retryable_once_started(&self) -> bool {
        match self {
            Error::Startup(c) => c.class() == ErrorClass::Transient,
            Error::Sql(s) if s.connecting => s
                .code()
                .is_none_or(|c| crate::pg::sqlstate::classify(c) == ErrorClass::Transient),
            _ => self.is_transient(),
        }
    }

    /// A first connection that reached the server and was told to come back later: it is
    /// starting up or shutting down (57P03), or has no connection slot free (53300). Worth
    /// retrying even at the very start, unlike a server that cannot be reached at all
    /// (more likely a wrong address).
    pub fn is_server_busy(&self) -> bool {
        let code = match self {
            Error::Startup(c) => c.code(),
            Error::Sql(s) if s.connecting => s.code(),
            _ => None,
        };
        matches!(
            code,
            Some(
                crate::pg::sqlstate::CANNOT_CONNECT_NOW | crate::pg::sqlstate::TOO_MANY_CONNECTIONS
            )
        )
    }

    /// The destination connection failed while in use (no server error: the connection
    /// was cut, reset or closed).
    pub fn is_destination_lost(&self) -> bool {
        matches!(self, Error::Sql(s) if !s.connecting && s.code().is_none())
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

/// What kind of error, whatever its variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The command line is wrong.
    Usage,
    /// The servers or roles are set up wrong.
    Config,
    /// Retrying later may succeed.
    Transient,
    /// Retrying would fail the same way.
    Definite,
    /// `verify` found differences.
    Differences,
}

impl ErrorKind {
    /// The process exit code of an error of this kind.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Transient | ErrorKind::Definite => 1,
            ErrorKind::Usage | ErrorKind::Config => 2,
            ErrorKind::Differences => 3,
        }
    }
}

impl From<ErrorClass> for ErrorKind {
    fn from(c: ErrorClass) -> Self {
        match c {
            ErrorClass::Config => ErrorKind::Config,
            ErrorClass::Transient => ErrorKind::Transient,
            ErrorClass::Definite => ErrorKind::Definite,
        }
    }
}

/// Result of a command.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_decides_the_exit_code() {
        assert_eq!(Error::Usage("x".into()).exit_code(), 2);
        assert_eq!(Error::Config("x".into()).exit_code(), 2);
        assert_eq!(Error::Definite("x".into()).exit_code(), 1);
        assert_eq!(Error::Conflict("x".into()).kind(), ErrorKind::Definite);
        assert_eq!(Error::Differences("x".into()).exit_code(), 3);
        let closed = Error::from(ConnError::Closed {
            context: "streaming".into(),
        });
        assert!(closed.is_transient());
        assert!(closed.is_retryable_once_started());
        assert_eq!(closed.exit_code(), 1);
        assert!(!Error::Definite("x".into()).is_retryable_once_started());
    }
}
