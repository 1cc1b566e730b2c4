//! [`ConnError`]: everything that can go wrong on a connection, classed by consequence.
//!
//! *Transient* errors (the socket broke, the server restarted, the slot is still held by
//! a walsender that has not noticed its client died) are worth reconnecting for, from
//! the last confirmed position. *Definite* errors (wrong password, missing slot, invalid
//! options, a malformed stream) will happen again: pgsub stops and says what to do.
//! *Configuration* errors are definite errors that the operator fixes in the command
//! line or on the server; the CLI exits 2 for them.

use crate::conninfo::ConninfoError;
use crate::protocol::backend::ServerError;
use crate::protocol::reader::DecodeError;

use super::tls::TlsConfigError;

/// SQLSTATE codes pgsub reacts to (the one list is [`crate::protocol::sqlstate`]).
pub use crate::protocol::sqlstate;
pub use crate::protocol::sqlstate::Class as ErrorClass;

/// A failure on a connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnError {
    /// The connection string is wrong.
    #[error(transparent)]
    Conninfo(#[from] ConninfoError),
    /// The TLS settings cannot be used.
    #[error(transparent)]
    TlsConfig(#[from] TlsConfigError),
    /// No connection could be made to any host.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// Host and port, as tried.
        target: String,
        /// The system's answer.
        source: std::io::Error,
    },
    /// The connection attempt took longer than `connect_timeout`.
    #[error("connecting to {target} timed out after {seconds} s (connect_timeout)")]
    ConnectTimeout {
        /// Host and port.
        target: String,
        /// The timeout.
        seconds: u64,
    },
    /// TLS was required and the server does not offer it.
    #[error(
        "the server at {target} does not accept TLS connections, and sslmode={sslmode} requires TLS: enable ssl on the server or use sslmode=prefer"
    )]
    TlsRefused {
        /// Host and port.
        target: String,
        /// The sslmode.
        sslmode: String,
    },
    /// The TLS handshake failed (certificate checks included).
    #[error("TLS handshake with {target} failed: {source}")]
    TlsHandshake {
        /// Host and port.
        target: String,
        /// rustls' reason.
        source: std::io::Error,
    },
    /// The server asks for something pgsub cannot give during authentication.
    #[error("authentication as user \"{user}\" failed: {reason}")]
    Auth {
        /// The user.
        user: String,
        /// What is missing and what to do.
        reason: String,
    },
    /// The server answered with an ErrorResponse.
    #[error("{context}: {error}")]
    Server {
        /// What pgsub was doing.
        context: String,
        /// The server's error.
        error: ServerError,
    },
    /// The walsender failed while streaming (an ErrorResponse in CopyBoth). The built-in
    /// worker restarts on these, and a fresh walsender may decode what this one could
    /// not (a stale relation map after DDL, say): transient, unless the SQLSTATE says the
    /// setup is wrong (a publication dropped, a slot invalidated).
    #[error("{context}: {error}")]
    StreamFailed {
        /// What pgsub was doing.
        context: String,
        /// The server's error.
        error: ServerError,
    },
    /// Reading or writing the socket failed after the connection was made.
    #[error("connection to the server lost while {context}: {source}")]
    Io {
        /// What pgsub was doing.
        context: String,
        /// The system's answer.
        source: std::io::Error,
    },
    /// The server closed the connection.
    #[error("the server closed the connection while {context}")]
    Closed {
        /// What pgsub was doing.
        context: String,
    },
    /// The server sent bytes that are not a valid message.
    #[error("the server sent a malformed message while {context}: {source}")]
    Protocol {
        /// What pgsub was doing.
        context: String,
        /// The decoding failure.
        source: DecodeError,
    },
    /// The server sent a valid message pgsub did not expect at that point.
    #[error("unexpected {got} from the server while {context}")]
    Unexpected {
        /// What pgsub was doing.
        context: String,
        /// What arrived.
        got: String,
    },
}

impl ConnError {
    /// The SQLSTATE of a server error.
    pub fn code(&self) -> Option<&str> {
        match self {
            ConnError::Server { error, .. } | ConnError::StreamFailed { error, .. } => {
                Some(&error.code)
            }
            _ => None,
        }
    }

    /// The server's error, if this is one.
    pub fn server_error(&self) -> Option<&ServerError> {
        match self {
            ConnError::Server { error, .. } | ConnError::StreamFailed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The same error with `context` naming what pgsub was doing, for errors that carry one.
    pub fn with_context(mut self, new: impl Into<String>) -> Self {
        match &mut self {
            ConnError::Server { context, .. }
            | ConnError::StreamFailed { context, .. }
            | ConnError::Io { context, .. }
            | ConnError::Closed { context }
            | ConnError::Protocol { context, .. }
            | ConnError::Unexpected { context, .. } => *context = new.into(),
            _ => {}
        }
        self
    }

    /// How to react.
    pub fn class(&self) -> ErrorClass {
        match self {
            ConnError::Conninfo(_) | ConnError::TlsConfig(_) | ConnError::Auth { .. } => {
                ErrorClass::Config
            }
            ConnError::TlsRefused { .. } => ErrorClass::Config,
            ConnError::Connect { .. }
            | ConnError::ConnectTimeout { .. }
            | ConnError::TlsHandshake { .. }
            | ConnError::Io { .. }
            | ConnError::Closed { .. } => ErrorClass::Transient,
            ConnError::Protocol { .. } | ConnError::Unexpected { .. } => ErrorClass::Definite,
            ConnError::Server { error, .. } => classify_sqlstate(&error.code),
            ConnError::StreamFailed { error, .. } => match classify_sqlstate(&error.code) {
                ErrorClass::Config => ErrorClass::Config,
                _ => ErrorClass::Transient,
            },
        }
    }

    /// True when reconnecting may help.
    pub fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        let context = context.into();
        if matches!(
            source.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
        ) {
            return ConnError::Closed { context };
        }
        ConnError::Io { context, source }
    }
}

/// The class of a server error by SQLSTATE.
pub fn classify_sqlstate(code: &str) -> ErrorClass {
    sqlstate::classify(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_and_missing_objects_are_configuration_errors() {
        assert_eq!(classify_sqlstate("28P01"), ErrorClass::Config);
        assert_eq!(classify_sqlstate("42704"), ErrorClass::Config);
        assert_eq!(classify_sqlstate("55000"), ErrorClass::Config);
    }

    #[test]
    fn shutdown_and_active_slot_are_transient() {
        assert_eq!(classify_sqlstate("57P01"), ErrorClass::Transient);
        assert_eq!(classify_sqlstate("55006"), ErrorClass::Transient);
        assert_eq!(classify_sqlstate("08006"), ErrorClass::Transient);
    }

    #[test]
    fn eof_becomes_closed() {
        let e = ConnError::io(
            "streaming",
            std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
        );
        assert!(matches!(e, ConnError::Closed { .. }));
        assert!(e.is_transient());
    }
}
