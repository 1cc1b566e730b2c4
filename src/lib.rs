//! pgsub: a standalone PostgreSQL logical-replication subscriber.
//!
//! pgsub opens its own replication connection to a source server, decodes the `pgoutput`
//! stream itself and keeps byte-level account of every message and position. The layers,
//! top to bottom as data flows:
//!
//! ```text
//!   conninfo   connection strings, PG* variables, ~/.pgpass, redaction
//!   conn       socket, TLS, startup, authentication, simple query, CopyBoth   (I/O)
//!   protocol   frames, backend messages, XLogData / keepalive / status update (no I/O)
//!   pgoutput   Begin, Relation, Insert, … Stream*, *Prepare, protocol 1–4    (no I/O)
//!   stream     received / applied / acknowledged positions, byte accounting  (no I/O)
//!   record     recording files of raw replication streams
//!   verify     row-by-row comparison of source and destination
//!   bench      decode and apply throughput (`pgsub bench`)
//!   cli        the `pgsub` commands
//! ```
//!
//! See `docs/design.md` for the command-line contract and the rules on
//! positions; [`lsn`] explains why only certain positions may be acknowledged.

mod apply;
mod bench;
pub mod cli;
pub mod conn;
pub mod conninfo;
mod dest;
pub mod error;
pub mod failpoint;
mod handoff;
pub mod lsn;
pub mod output;
mod pg;
pub mod pgoutput;
pub mod protocol;
pub mod record;
mod replicate;
mod sequences;
mod source;
mod state;
mod status;
pub mod stream;
mod sync;
mod verify;

pub use lsn::Lsn;

/// What the fuzz targets (`fuzz/`) reach beyond the public API; not part of it, and built
/// only with the `fuzzing` feature.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::apply::sql;
    pub use crate::apply::target::Col;
    pub use crate::state::progress::stored_lsn;
    pub use crate::state::tables::CopyState;
    pub use crate::state::{VERSION, found_version, upgrade_steps};
}
