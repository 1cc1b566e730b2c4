//! What went wrong on a plain SQL session (the destination, or the source outside the
//! replication connection), with what pgsub was doing, and how the server's error reads.

use super::sqlstate::{self, Class};

/// What went wrong talking to a destination (or a plain SQL session on the source).
#[derive(Debug, thiserror::Error)]
#[error("{context}: {}", describe(.source))]
pub struct SqlError {
    /// What pgsub was doing.
    pub context: String,
    /// The client's error.
    #[source]
    pub source: tokio_postgres::Error,
    /// It happened while connecting.
    pub connecting: bool,
}

/// The server's message with SQLSTATE, detail and hint, or the client's own error.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!(
                "{}: {} (SQLSTATE {})",
                db.severity(),
                db.message(),
                db.code().code()
            );
            if let Some(d) = db.detail() {
                s.push_str(&format!("; DETAIL: {d}"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!("; HINT: {h}"));
            }
            if let Some(w) = db.where_().filter(|w| w.starts_with("COPY ")) {
                s.push_str(&format!("; CONTEXT: {w}"));
            }
            if db.code().code() == sqlstate::DISK_FULL {
                s.push_str(
                    ". The server is out of disk space: free some or grow its volume, then run pgsub again; it resumes after the last transaction it applied, and nothing later was acknowledged",
                );
            }
            s
        }
        None => e.to_string(),
    }
}

impl SqlError {
    /// Wraps `source` with what pgsub was doing.
    pub fn new(context: impl Into<String>, source: tokio_postgres::Error) -> Self {
        SqlError {
            context: context.into(),
            source,
            connecting: false,
        }
    }

    /// A failure to connect.
    pub fn connecting(context: impl Into<String>, source: tokio_postgres::Error) -> Self {
        SqlError {
            connecting: true,
            ..SqlError::new(context, source)
        }
    }

    /// The SQLSTATE, for a server error.
    pub fn code(&self) -> Option<&str> {
        self.source.as_db_error().map(|d| d.code().code())
    }

    /// Its class: a server error by its SQLSTATE; a failure to connect is a setup
    /// problem (what `sync` retries after its first start); a connection lost is
    /// transient.
    pub fn class(&self) -> Class {
        match self.code() {
            Some(c) => match sqlstate::classify(c) {
                Class::Config => Class::Config,
                _ if self.connecting => Class::Config,
                other => other,
            },
            None if self.connecting => Class::Config,
            None if self.source.is_closed() || self.source.as_db_error().is_none() => {
                Class::Transient
            }
            None => Class::Definite,
        }
    }
}
