//! Streaming from a source: the one start-up path every streaming command takes
//! ([`start`]: validate, connect, check server and publications, negotiate the pgoutput
//! options, identify the system, `START_REPLICATION`) and the loop that feeds a [`Sink`]
//! and acknowledges what it made durable ([`run`]).
//!
//! ```text
//!  decode ─┐                                            ┌─► JSON lines on stdout
//!  record ─┼─► start::connect ─► (slot, copy: sync) ─► start::Prepared::start ─► run::run ─┼─► recording file
//!  sync   ─┘                                            └─► apply::ApplySink
//! ```

pub mod offline;
pub mod run;
pub mod start;
