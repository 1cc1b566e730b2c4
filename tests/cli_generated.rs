//! Shell completions and manual pages are generated from the same clap definitions as
//! `--help`, so they name every command and option that exists.

mod support;

use support::*;

#[test]
fn bash_completion_is_valid_bash_and_completes_sync_options() {
    let out = run(&["completions", "bash"]).expect_code(0);
    for word in [
        "--on-conflict",
        "--create-slot",
        "--publication",
        "verify",
        "handoff",
    ] {
        assert!(out.stdout.contains(word), "{word} missing");
    }
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let script = dir.join("pgsub.bash");
    std::fs::write(&script, &out.stdout).expect("write");
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .expect("bash");
    assert!(check.success(), "bash -n refused the completion script");
    // Every shell clap knows is offered; an unknown one is a usage error.
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        run(&["completions", shell]).expect_code(0);
    }
    let bad = run(&["completions", "tcsh"]).expect_code(2);
    assert!(bad.stderr.contains("possible values"), "{}", bad.stderr);
}

#[test]
fn man_writes_a_page_for_pgsub_and_every_command() {
    let page = run(&["man"]).expect_code(0);
    assert!(page.stdout.contains(".TH pgsub 1"), "{}", page.stdout);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("man1");
    let _ = std::fs::remove_dir_all(&dir);
    run(&["man", "--dir", dir.to_str().expect("utf-8")]).expect_code(0);
    // The commands, as `pgsub --help` lists them.
    let help = run(&["--help"]).expect_code(0).stdout;
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.starts_with("   ")) // a wrapped description
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(
        commands.contains(&"sync") && commands.len() > 8,
        "{commands:?}"
    );
    for c in commands {
        let p = dir.join(format!("pgsub-{c}.1"));
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(
            text.contains(&format!(".TH pgsub-{c} 1")),
            "{}",
            p.display()
        );
    }
    assert!(dir.join("pgsub-slot-create.1").exists());
}
