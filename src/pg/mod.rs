//! What every connection to PostgreSQL shares: quoting of names and values, and the
//! classification of SQLSTATEs.

pub mod ident;
pub mod sqlstate;
