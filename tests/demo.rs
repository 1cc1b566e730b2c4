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

/// Runs `pgsub demo EXTRA…` as on a machine without PostgreSQL: in a mount namespace of its
/// own where `/usr/lib/postgresql` is empty, with `PATH` holding only `bin` (`sh` and what
/// the test puts there; so neither `initdb` nor `pg_config`). `None` where the namespace cannot be made (not root).
fn demo_without_postgresql(bin: &std::path::Path, extra: &[&str]) -> Option<Run> {
    let can = std::process::Command::new("unshare")
        .args(["-m", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !can {
        eprintln!("skipped: `unshare -m` is not permitted here (the test needs root)");
        return None;
    }
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["-m", "/bin/sh", "-c"])
        .arg(
            "for d in /usr/lib/postgresql /usr/local/pgsql; do [ -d $d ] && mount -t tmpfs none $d; done; \
             PATH=$0 exec \"$@\"",
        )
        .arg(bin)
        .arg(env!("CARGO_BIN_EXE_pgsub"))
        .arg("demo")
        .args(extra)
        .env_remove("PGSUB_PGBIN");
    for (k, _) in std::env::vars() {
        if k.starts_with("PG") {
            cmd.env_remove(k);
        }
    }
    Some(run_with(&mut cmd))
}

/// A directory of this test's own under cargo's temporary directory.
/// It holds `sh`, which the cluster's reaper needs on any machine.
fn empty_dir(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a directory");
    std::os::unix::fs::symlink("/bin/sh", dir.join("sh")).expect("sh");
    dir
}

/// A directory holding a stand-in `apt-get` that records its arguments and fails.
fn fake_apt_get(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = empty_dir(name);
    let log = dir.join("apt-get.log");
    let script = dir.join("apt-get");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" >> {}\nexit 100\n", log.display()),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (dir, log)
}

#[test]
fn demo_on_a_machine_without_postgresql_shows_and_runs_the_installation() {
    let (dir, log) = fake_apt_get("demo_install");
    let Some(out) = demo_without_postgresql(&dir, &[]) else {
        return;
    };
    let out = out.expect_code(2);
    assert!(
        out.stderr.contains(
            "installing them with:\n  apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql postgresql-client"
        ),
        "{}",
        out.stderr
    );
    // It ran the first command, and names the one that failed.
    assert_eq!(std::fs::read_to_string(&log).expect("log"), "update -qq\n");
    assert!(
        out.stderr.contains("`apt-get update -qq` failed"),
        "{}",
        out.stderr
    );
}

#[test]
fn demo_with_no_install_prints_the_command_and_runs_nothing() {
    let (dir, log) = fake_apt_get("demo_no_install");
    let Some(out) = demo_without_postgresql(&dir, &["--no-install"]) else {
        return;
    };
    let out = out.expect_code(2);
    assert!(
        out.stderr
            .contains("To install them: `apt-get update -qq && apt-get install"),
        "{}",
        out.stderr
    );
    assert!(!log.exists(), "apt-get ran");
}

#[test]
fn demo_without_a_known_package_manager_says_where_to_get_postgresql() {
    let dir = empty_dir("demo_no_package_manager");
    let Some(out) = demo_without_postgresql(&dir, &[]) else {
        return;
    };
    let out = out.expect_code(2);
    assert!(
        out.stderr.contains("https://www.postgresql.org/download/")
            && out.stderr.contains("PGSUB_PGBIN"),
        "{}",
        out.stderr
    );
}
