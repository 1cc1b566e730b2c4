//! The OS user a throwaway server runs as. PostgreSQL refuses to run as root, so when this
//! process has effective uid 0, `initdb`, `pg_ctl` and `postgres` run as an unprivileged
//! user instead: `$PGSUB_TEST_OS_USER` if set, else `postgres` if it is in `/etc/passwd`,
//! else `nobody`. This module finds that user (parsing `/etc/passwd`, no libc), applies it to
//! a [`Command`], and hands it the directories the server writes to. When the process is
//! not root, everything runs as the current user and [`server_user`] is `None`.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use super::error::ClusterError;

/// An OS user, as listed in `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsUser {
    /// The login name.
    pub name: String,
    /// The user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
}

/// Whether this process runs with effective uid 0 (the owner of `/proc/self` is the
/// effective uid). `false` when `/proc` is not available.
pub fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// The user to run server programs as: `None` when this process is not root (run as
/// yourself), otherwise `$PGSUB_TEST_OS_USER`, else `postgres` if it exists, else `nobody`.
/// Fails when the chosen user is not in `/etc/passwd`, or is itself root.
pub fn server_user() -> Result<Option<OsUser>, ClusterError> {
    if !running_as_root() {
        return Ok(None);
    }
    let (name, origin) = match std::env::var("PGSUB_TEST_OS_USER") {
        Ok(name) if !name.is_empty() => (name, "from PGSUB_TEST_OS_USER"),
        _ if lookup("postgres").is_some() => ("postgres".to_string(), "the default"),
        _ => (
            "nobody".to_string(),
            "the fallback, as there is no `postgres` user",
        ),
    };
    match lookup(&name) {
        Some(user) if user.uid != 0 => Ok(Some(user)),
        _ => Err(ClusterError::UnknownOsUser { name, origin }),
    }
}

/// Looks a user up by name in `/etc/passwd`.
pub fn lookup(name: &str) -> Option<OsUser> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    parse_passwd(&passwd, name)
}

fn parse_passwd(passwd: &str, name: &str) -> Option<OsUser> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let user = fields.next()?;
        if user != name || line.starts_with('#') {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some(OsUser {
            name: user.to_string(),
            uid,
            gid,
        })
    })
}

impl OsUser {
    /// Makes `cmd` run as this user (uid and primary gid; std drops supplementary groups
    /// when switching away from root).
    pub fn apply(&self, cmd: &mut Command) {
        cmd.uid(self.uid).gid(self.gid);
    }

    /// Gives `path` and everything below it to this user (symlinks themselves, not their
    /// targets).
    pub fn chown_tree(&self, path: &Path) -> Result<(), ClusterError> {
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid)).map_err(
            ClusterError::io(format!("chown {} to {}", path.display(), self.name)),
        )?;
        let meta = std::fs::symlink_metadata(path)
            .map_err(ClusterError::io(format!("stat {}", path.display())))?;
        if meta.is_dir() {
            let entries = std::fs::read_dir(path)
                .map_err(ClusterError::io(format!("list {}", path.display())))?;
            for entry in entries {
                let entry = entry.map_err(ClusterError::io(format!("list {}", path.display())))?;
                self.chown_tree(&entry.path())?;
            }
        }
        Ok(())
    }

    /// Whether this user may traverse (search) every directory from `/` down to `dir`,
    /// judged by owner, group (primary group only) and mode bits.
    pub fn can_traverse(&self, dir: &Path) -> bool {
        dir.ancestors().all(|d| match std::fs::metadata(d) {
            Ok(m) => {
                let mode = m.mode();
                if m.uid() == self.uid {
                    mode & 0o100 != 0
                } else if m.gid() == self.gid {
                    mode & 0o010 != 0
                } else {
                    mode & 0o001 != 0
                }
            }
            Err(_) => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_lines() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
                      postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n";
        assert_eq!(
            parse_passwd(passwd, "postgres"),
            Some(OsUser {
                name: "postgres".into(),
                uid: 101,
                gid: 104
            })
        );
        assert_eq!(parse_passwd(passwd, "nobody").map(|u| u.uid), Some(65534));
        assert_eq!(parse_passwd(passwd, "post"), None);
    }

    #[test]
    fn server_user_is_unprivileged_when_root() {
        let user = server_user().expect("server user");
        assert_eq!(user.is_some(), running_as_root());
        if let Some(user) = user {
            assert_ne!(user.uid, 0);
        }
    }
}
