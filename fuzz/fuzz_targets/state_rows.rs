//! Fuzz target for the reading of pgsub's own rows on the destination, of every schema
//! version: which version a destination holds (`found_version` from what exists there),
//! the upgrade steps from it (`upgrade_steps`), a `pgsub.progress` row's applied position
//! (`stored_lsn`) and a `pgsub.tables` row's copy state (`CopyState::decode`). The fields
//! come from the input as text, the way the rows are read; half of the inputs are first
//! made into a row pgsub itself would write. Nothing may panic; a row pgsub wrote must
//! read back to what it wrote; anything else is read exactly or refused with a message
//! that names what is wrong, never taken for a default (0/0, or "ready" without a
//! snapshot, would apply changes twice).

#![no_main]

use libfuzzer_sys::fuzz_target;
use pgsub::Lsn;
use pgsub::fuzzing::{CopyState, VERSION, found_version, stored_lsn, upgrade_steps};
use pgsub_fuzz::{Rng, carve};

fuzz_target!(|data: &[u8]| {
    let mut rng = Rng::from_input(data);
    let parts = carve(data);
    let field =
        |i: usize| String::from_utf8_lossy(parts.get(i).copied().unwrap_or_default()).into_owned();

    // The version found, and the steps from it.
    let meta = rng.below(2) == 0;
    let progress = rng.below(2) == 0;
    let recorded = match rng.below(4) {
        0 => None,
        1 => Some(rng.below(VERSION as usize + 1) as i32),
        _ => Some(rng.next_u64() as i32),
    };
    let found = found_version(meta, progress, recorded);
    match upgrade_steps(found) {
        Ok(steps) => {
            assert!((0..=VERSION).contains(&found), "version {found} accepted");
            assert_eq!(
                steps.len(),
                (VERSION - found) as usize,
                "from version {found}"
            );
            if found == 0 {
                assert!(steps[0].contains("CREATE TABLE IF NOT EXISTS pgsub.progress"));
            }
        }
        Err(e) => {
            assert!(
                !(0..=VERSION).contains(&found),
                "version {found} refused: {e}"
            );
            assert!(e.to_string().contains(&found.to_string()), "{e}");
        }
    }
    if !meta {
        assert!(found <= 1, "no pgsub.meta read as version {found}");
    }

    // pgsub.progress.applied_lsn.
    let written = Lsn(rng.next_u64());
    let text = if rng.below(2) == 0 {
        written.to_string()
    } else {
        field(0)
    };
    match stored_lsn("sub", &text) {
        Ok(lsn) => {
            assert_eq!(lsn.to_string().parse::<Lsn>(), Ok(lsn));
            if text == written.to_string() {
                assert_eq!(lsn, written, "{text} read back as {lsn}");
            }
            let (hi, lo) = text
                .trim()
                .split_once('/')
                .expect("an accepted position has a /");
            assert_eq!(
                lsn.0,
                u64::from_str_radix(hi, 16).unwrap() << 32 | u64::from_str_radix(lo, 16).unwrap()
            );
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains("pgsub.progress") && message.contains("\"sub\""),
                "{message}"
            );
        }
    }

    // pgsub.tables.state and snapshot_lsn.
    let state = match rng.below(3) {
        0 => "copying".to_owned(),
        1 => "ready".to_owned(),
        _ => field(1),
    };
    let snapshot = match rng.below(3) {
        0 => None,
        1 => Some(written.to_string()),
        _ => Some(field(2)),
    };
    match CopyState::decode(&state, snapshot.as_deref()) {
        Ok(copy) => {
            assert_eq!(copy.ready, state == "ready");
            assert!(
                state == "ready" || state == "copying",
                "state {state:?} accepted"
            );
            assert_eq!(copy.snapshot_lsn.is_some(), snapshot.is_some());
            if snapshot.as_deref() == Some(written.to_string().as_str()) {
                assert_eq!(copy.snapshot_lsn, Some(written));
            }
        }
        Err(e) => assert!(e.contains("state") || e.contains("snapshot_lsn"), "{e}"),
    }
});
