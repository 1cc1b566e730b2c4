//! Small helpers about other processes, read from `/proc` and acted on with the `kill`
//! program (no libc): is a pid alive, what is its command line, which processes belong to
//! a cluster, send a signal, wait for a condition with a deadline.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::error::ClusterError;

/// Whether `pid` names a live (not zombie) process, judged from `/proc/<pid>/stat`.
pub(crate) fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may contain spaces.
    match stat.rfind(')') {
        Some(i) => !matches!(stat[i + 1..].trim_start().chars().next(), Some('Z' | 'X')),
        None => true,
    }
}

/// The command line of `pid` with its NUL separators turned into spaces, or `None` if it
/// cannot be read (gone, or a zombie with an empty command line).
pub(crate) fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None;
    }
    let text: String = String::from_utf8_lossy(&raw)
        .chars()
        .map(|c| if c == '\0' { ' ' } else { c })
        .collect();
    Some(text.trim_end().to_string())
}

/// All process ids listed in `/proc`.
pub(crate) fn all_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Whether the live process `pid` is a postmaster (or a freshly forked child of one) for
/// `data_dir`: its command line holds `-D <data_dir>`.
pub(crate) fn is_postmaster_of(pid: u32, data_dir: &Path) -> bool {
    let needle = format!("-D {}", data_dir.display());
    alive(pid)
        && cmdline(pid).is_some_and(|c| {
            c.match_indices(&needle)
                .any(|(i, m)| c[i + m.len()..].is_empty() || c[i + m.len()..].starts_with(' '))
        })
}

/// The first line of a `postmaster.pid` file as a pid.
pub(crate) fn read_pid_file(path: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// The pid of the postmaster running for `data_dir`: the first line of its
/// `postmaster.pid`, if that process is alive and is a postmaster for `data_dir`.
pub(crate) fn running_postmaster(data_dir: &Path) -> Option<u32> {
    read_pid_file(&data_dir.join("postmaster.pid")).filter(|&pid| is_postmaster_of(pid, data_dir))
}

/// Sends `signal` (`"KILL"`, `"QUIT"`, …) to `pid` with the `kill` program; a negative
/// target names a process group.
pub(crate) fn signal(target: i64, signal: &str) -> Result<(), ClusterError> {
    let output = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(target.to_string())
        .stdin(Stdio::null())
        .output()
        .map_err(ClusterError::io(format!(
            "run `kill -{signal} {target}` (is the `kill` program on PATH?)"
        )))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(ClusterError::Io {
            what: format!("send SIG{signal} to {target}"),
            source: std::io::Error::other(
                String::from_utf8_lossy(&output.stderr).trim().to_string(),
            ),
        })
    }
}

/// Polls `done` every `step` until it is true or `timeout` passes; returns whether it
/// became true.
pub(crate) fn wait_for(timeout: Duration, step: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(step);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_itself() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(cmdline(me).is_some());
        assert!(all_pids().contains(&me));
        assert!(!alive(u32::MAX));
    }
}
