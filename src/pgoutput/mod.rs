//! The `pgoutput` logical decoding protocol, versions 1 to 4, without I/O.
//!
//! ```text
//!   XLogData payload ──► Decoder::decode ──► PgOutput::{Begin, Relation, Insert, …}
//!                           │ state: inside a Stream Start … Stream Stop block?
//! ```
//!
//! Transaction grammar the server follows (checked one layer up, in
//! [`crate::stream`]): `B (O)? (R|Y|I|U|D|T|M)* C`; two-phase `b … P`, later `K` or `r`;
//! streamed `S(xid, first) …[xid]… E`, blocks of several transactions interleaved, ended
//! by `c`, `A` or `p`. Non-transactional `M` may appear outside any transaction.
//!
//! Layouts come from PostgreSQL's `src/backend/replication/logical/proto.c` and the
//! protocol documentation, "Logical Replication Message Formats"; see
//! `docs/protocol.md` § pgoutput for what this module relies on.

mod decode;
pub mod encode;
mod message;
pub mod options;
mod tuple;

pub use decode::Decoder;
pub use message::*;
pub use tuple::{Column, ColumnRef, ColumnRefs, Columns, TupleData};

#[cfg(test)]
mod tests;
