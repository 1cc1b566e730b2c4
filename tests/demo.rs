//! `pgsub demo`, the README's first command: two throwaway clusters, the managed procedure
//! end to end, and a report that ends with the two sides compared.

mod support;

use support::*;

#[test]
fn demo_plays_the_managed_procedure_and_both_sides_match() {
    let out = run(&["demo"]).expect_code(0);
    assert!(
        out.stdout.contains("source and destination match."),
        "{}",
        out.stdout
    );
    // The second comparison shows the changes made after the first catch-up.
    assert!(
        out.stdout.contains("test_table     7,8,20"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("$ pgsub sync --source"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("applied up to"), "{}", out.stdout);
    assert!(!out.stdout.contains("differs"), "{}", out.stdout);
    // The byte and LSN accounting of the catch-up is shown.
    assert!(out.stderr.contains("positions: received"), "{}", out.stderr);
}
