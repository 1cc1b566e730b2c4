//! Installing the PostgreSQL server packages on a machine that has none, for `pgsub demo`
//! (the README's first command must work on a fresh machine).
//!
//! [`plan`] decides from what the machine has: a package manager pgsub knows (`apt-get`,
//! then `dnf`, then `brew`) and the right to use it (running as root, or `sudo` without a
//! password prompt). The plan is either a command line to run, shown before it runs, or the
//! exact command the user should run, when pgsub may not run it itself. The same packages
//! as `.ci/run` installs: the server and the client.

use std::process::Command;

/// What the machine offers for an installation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Host {
    /// The process runs as root.
    pub root: bool,
    /// `sudo -n true` succeeds: sudo without a password prompt.
    pub sudo: bool,
    /// `apt-get` is on `PATH` (Debian, Ubuntu).
    pub apt_get: bool,
    /// `dnf` is on `PATH` (Fedora, RHEL).
    pub dnf: bool,
    /// `brew` is on `PATH` (macOS, Linuxbrew; never needs root).
    pub brew: bool,
}

impl Host {
    /// Looks at this machine.
    pub fn probe() -> Host {
        let root = crate::running_as_root();
        Host {
            root,
            sudo: !root
                && on_path("sudo")
                && Command::new("sudo")
                    .args(["-n", "true"])
                    .output()
                    .is_ok_and(|o| o.status.success()),
            apt_get: on_path("apt-get"),
            dnf: on_path("dnf"),
            brew: on_path("brew"),
        }
    }
}

/// How PostgreSQL gets installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// pgsub may run these commands itself, one after the other (each a program and its
    /// arguments), as shown.
    Run(Vec<Vec<String>>),
    /// pgsub may not (no known package manager, or no right to use it): the user should run
    /// this.
    Tell(String),
}

impl Plan {
    /// The commands as a user would type them.
    pub fn shown(&self) -> String {
        match self {
            Plan::Run(cmds) => cmds
                .iter()
                .map(|c| c.join(" "))
                .collect::<Vec<_>>()
                .join(" && "),
            Plan::Tell(s) => s.clone(),
        }
    }
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

/// The plan for `host`.
pub fn plan(host: Host) -> Plan {
    let (cmds, needs_root): (&[&str], bool) = if host.apt_get {
        (
            &[
                "apt-get update -qq",
                "apt-get install -y -qq --no-install-recommends postgresql postgresql-client",
            ],
            true,
        )
    } else if host.dnf {
        (
            &["dnf install -y postgresql-server postgresql-contrib postgresql"],
            true,
        )
    } else if host.brew {
        (&["brew install postgresql@17"], false)
    } else {
        return Plan::Tell(
            "install the PostgreSQL server packages with your system's package manager (they \
             hold initdb, pg_ctl and postgres), or download them from \
             https://www.postgresql.org/download/, then run the demo again; or set PGSUB_PGBIN \
             to a directory holding those programs"
                .to_owned(),
        );
    };
    let sudo = needs_root && !host.root;
    let cmds: Vec<Vec<String>> = cmds
        .iter()
        .map(|c| {
            let mut w = words(c);
            if sudo {
                w.insert(0, "sudo".to_owned());
            }
            w
        })
        .collect();
    if sudo && !host.sudo {
        // sudo would ask for a password: the user runs it.
        return Plan::Tell(format!(
            "run `{}`, then the demo again",
            Plan::Run(cmds).shown()
        ));
    }
    Plan::Run(cmds)
}

/// Runs a [`Plan::Run`]'s commands with their output shown; the first that fails is named.
pub fn run(cmds: &[Vec<String>]) -> Result<(), String> {
    for c in cmds {
        let Some((program, args)) = c.split_first() else {
            continue;
        };
        let mut cmd = Command::new(program);
        cmd.args(args);
        if c.iter().any(|w| w == "apt-get") {
            cmd.env("DEBIAN_FRONTEND", "noninteractive");
        }
        match cmd.status() {
            Ok(s) if s.success() => {}
            Ok(s) => return Err(format!("`{}` failed ({s})", c.join(" "))),
            Err(e) => return Err(format!("`{}` could not be started: {e}", c.join(" "))),
        }
    }
    Ok(())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_with_apt_get_runs_what_ci_runs() {
        let p = plan(Host {
            root: true,
            apt_get: true,
            ..Host::default()
        });
        assert_eq!(
            p.shown(),
            "apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql postgresql-client"
        );
        assert!(matches!(p, Plan::Run(_)));
    }

    #[test]
    fn a_user_with_passwordless_sudo_runs_it_through_sudo() {
        let p = plan(Host {
            sudo: true,
            apt_get: true,
            ..Host::default()
        });
        let Plan::Run(cmds) = p else { panic!("{p:?}") };
        assert!(cmds.iter().all(|c| c[0] == "sudo"), "{cmds:?}");
    }

    #[test]
    fn a_user_without_sudo_is_told_the_exact_command() {
        let p = plan(Host {
            apt_get: true,
            ..Host::default()
        });
        assert_eq!(
            p,
            Plan::Tell(
                "run `sudo apt-get update -qq && sudo apt-get install -y -qq --no-install-recommends postgresql postgresql-client`, then the demo again".to_owned()
            )
        );
    }

    #[test]
    fn apt_get_is_preferred_to_dnf_and_brew_needs_no_root() {
        let both = plan(Host {
            root: true,
            apt_get: true,
            dnf: true,
            ..Host::default()
        });
        assert!(both.shown().starts_with("apt-get"), "{both:?}");
        let brew = plan(Host {
            brew: true,
            ..Host::default()
        });
        assert_eq!(brew, Plan::Run(vec![words("brew install postgresql@17")]));
    }

    #[test]
    fn no_known_package_manager_names_the_download_and_pgsub_pgbin() {
        let p = plan(Host {
            root: true,
            ..Host::default()
        });
        let Plan::Tell(s) = p else { panic!("{p:?}") };
        assert!(
            s.contains("PGSUB_PGBIN") && s.contains("postgresql.org"),
            "{s}"
        );
    }
}
