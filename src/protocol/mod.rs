//! The PostgreSQL wire protocol as pgsub speaks it, without I/O.
//!
//! ```text
//!   socket bytes ──► frame::FrameDecoder ──► Frame{tag, body} ──► backend::BackendMessage
//!                                                   │ CopyData payload
//!                                                   ▼
//!                                  replication::ReplicationMessage {XLogData, PrimaryKeepalive}
//!                                                   │ XLogData.data
//!                                                   ▼
//!                                         crate::pgoutput::Decoder
//! ```
//!
//! Beside the frames: [`row::Row`], a query result's row in text form, [`sqlstate`], the
//! one classification of server errors, and [`quote`], the quoting of names and values.
//!
//! Everything here takes `Bytes` and returns typed values or a [`reader::DecodeError`];
//! nothing reads a socket, nothing panics, nothing allocates from an unchecked length.

pub mod backend;
pub mod frame;
pub mod quote;
pub mod reader;
pub mod replication;
pub mod row;
pub mod sqlstate;
pub mod time;

pub use reader::{DecodeError, DecodeErrorKind};
