//! What every connection to PostgreSQL shares: plain SQL sessions ([`client`]), rows
//! in text form ([`Row`]), errors ([`SqlError`]), quoting of names and values
//! ([`ident`]), the classification of SQLSTATEs ([`sqlstate`]), and TLS for
//! `tokio-postgres` ([`tls`]). Rows, SQLSTATEs and quoting live in the protocol core
//! (`crate::protocol`), so that the replication connection below uses them without
//! depending on this layer; they are re-exported here.

pub mod client;
mod error;
pub mod ident;
pub mod tls;

pub use crate::protocol::row::Row;
pub use crate::protocol::sqlstate;
pub use error::{SqlError, describe};
