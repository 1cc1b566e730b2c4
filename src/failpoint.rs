//! Crash injection for tests: built with the `failpoints` feature (the test command,
//! `cargo test --features failpoints`, enables it), `PGSUB_FAILPOINT=<name>` makes the
//! process abort — as abruptly as `kill -9` — the first time execution reaches the named
//! point, so tests can prove that a crash exactly there loses and repeats nothing. Unset,
//! a failpoint costs one cached comparison; without the feature (release builds), nothing.

#[cfg(feature = "failpoints")]
use std::sync::OnceLock;

/// After a destination transaction holding applied changes and progress committed, before
/// the source is told.
pub const AFTER_DEST_COMMIT: &str = "apply.after-dest-commit";
/// After a two-phase transaction was prepared on the destination (`sync --two-phase`),
/// before its COMMIT PREPARED arrives.
pub const AFTER_DEST_PREPARE: &str = "apply.after-dest-prepare";
/// After the destination's COMMIT PREPARED, before its position is recorded.
pub const AFTER_DEST_COMMIT_PREPARED: &str = "apply.after-dest-commit-prepared";
/// In the middle of a table's initial copy, after some data was sent.
pub const MID_TABLE_COPY: &str = "copy.mid-table";
/// After one chunk of a table copied in chunks committed on the destination, before the
/// table is ready.
pub const AFTER_COPY_CHUNK: &str = "copy.after-chunk";
/// In the middle of a source transaction's changes being applied.
pub const MID_TRANSACTION: &str = "apply.mid-transaction";

/// Whether failpoints are compiled in.
pub const ENABLED: bool = cfg!(feature = "failpoints");

#[cfg(feature = "failpoints")]
fn configured() -> Option<&'static str> {
    static NAME: OnceLock<Option<String>> = OnceLock::new();
    NAME.get_or_init(|| std::env::var("PGSUB_FAILPOINT").ok())
        .as_deref()
}

/// Aborts the process if `name` is the configured failpoint.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    if configured() == Some(name) {
        eprintln!("pgsub: failpoint {name} reached: aborting");
        std::process::abort();
    }
}

/// Without the `failpoints` feature, nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}
