//! What every connection to PostgreSQL shares: plain SQL sessions ([`client`]), rows
//! in text form ([`Row`]), errors ([`SqlError`]), quoting of names and values
//! ([`ident`]), the classification of SQLSTATEs ([`sqlstate`]), and TLS for
//! `tokio-postgres` ([`tls`]).

pub mod client;
mod error;
pub mod ident;
mod row;
pub mod sqlstate;
pub mod tls;

pub use error::{SqlError, describe};
pub use row::Row;
