//! The cluster directories, `pgsub-cluster-<pid>-<n>/` under the temp directory: where they
//! may go (a path short enough for the unix socket, that the server user can traverse),
//! how they are made, and the sweep that removes those of dead processes — stopping their
//! server first — unless [`Cluster::keep`](super::Cluster::keep) marked them as kept.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::error::ClusterError;
use super::osuser::OsUser;
use super::process;

/// Prefix of every cluster directory name.
const DIR_PREFIX: &str = "pgsub-cluster-";
/// A file in a cluster directory that [`Cluster::keep`](super::Cluster::keep) writes, so
/// sweeps spare it.
pub(super) const KEPT_MARKER: &str = "KEPT";

/// Numbers the clusters (and their directories) of this process.
static CLUSTER_SEQ: AtomicU32 = AtomicU32::new(0);

/// Where cluster directories may go: `std::env::temp_dir()`, then `/tmp`, with symlinks
/// resolved (the server's command line shows the resolved path, which sweeps match on).
fn base_candidates() -> Vec<PathBuf> {
    let mut bases: Vec<PathBuf> = Vec::new();
    for base in [std::env::temp_dir(), PathBuf::from("/tmp")] {
        let base = std::fs::canonicalize(&base).unwrap_or(base);
        if !bases.contains(&base) {
            bases.push(base);
        }
    }
    bases
}

/// The first candidate directory that exists, leaves room for the unix socket path
/// (at most 107 bytes) and that the server user can traverse.
pub(super) fn choose_base(user: Option<&OsUser>) -> Result<PathBuf, ClusterError> {
    // "/pgsub-cluster-<pid>-<n>/sock/.s.PGSQL.<port>" is at most 50 bytes.
    const ROOM: usize = 107 - 50;
    let mut refused = Vec::new();
    for base in base_candidates() {
        let shown = base.display();
        if !base.is_dir() {
            refused.push(format!("{shown} is not a directory"));
        } else if base.as_os_str().len() > ROOM {
            refused.push(format!(
                "{shown} is too long for a unix socket path (at most {ROOM} bytes)"
            ));
        } else if let Some(user) = user.filter(|u| !u.can_traverse(&base)) {
            refused.push(format!(
                "the server user `{}` cannot traverse {shown}",
                user.name
            ));
        } else {
            return Ok(base);
        }
    }
    Err(ClusterError::NoTempDir {
        detail: refused.join("; "),
    })
}

/// Creates `base/pgsub-cluster-<pid>-<n>` (mode 0700) with the next free `n`.
pub(super) fn make_cluster_dir(base: &Path) -> Result<(PathBuf, u32), ClusterError> {
    loop {
        let seq = CLUSTER_SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("{DIR_PREFIX}{}-{seq}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok((dir, seq)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(ClusterError::Io {
                    what: format!("create {}", dir.display()),
                    source: e,
                });
            }
        }
    }
}

/// Removes `pgsub-cluster-<pid>-*` directories whose process is gone, stopping their
/// server first (SIGQUIT) if it still runs. Errors are ignored: this is housekeeping.
pub(super) fn sweep_stale_dirs() {
    if !Path::new("/proc/self").exists() {
        return; // Cannot tell live owners from dead ones.
    }
    for base in base_candidates() {
        let Ok(entries) = std::fs::read_dir(&base) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            let Some(owner) = name
                .to_str()
                .and_then(|n| n.strip_prefix(DIR_PREFIX))
                .and_then(|rest| rest.split_once('-'))
                .and_then(|(pid, _)| pid.parse::<u32>().ok())
            else {
                continue;
            };
            let dir = entry.path();
            if Path::new(&format!("/proc/{owner}")).exists() || dir.join(KEPT_MARKER).exists() {
                continue;
            }
            let data = dir.join("data");
            if let Some(pid) = process::running_postmaster(&data) {
                let _ = process::signal(i64::from(pid), "QUIT");
                process::wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
                    !process::alive(pid)
                });
            }
            tracing::debug!(dir = %dir.display(), "removing stale throwaway cluster");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
