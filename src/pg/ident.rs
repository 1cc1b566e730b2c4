//! Quoting of names and values in SQL text ([`crate::protocol::quote`], where the rules
//! live beside the replication protocol's own).

pub use crate::protocol::quote::{ident, literal, qualified};
