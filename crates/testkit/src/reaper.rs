//! The reaper: a detached shell each [`Cluster`] starts, which waits for this process to
//! exit and then stops the server and removes the cluster directory — the cleanup that
//! drop does, for a process that dies without dropping its clusters (or, as with
//! [`shared`](super::shared), never drops them).

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use super::cluster::Cluster;
use super::error::ClusterError;
use super::process;
use super::text::sh_quote;

impl Cluster {
    /// Starts the detached shell that, once this process is gone, stops the server
    /// (SIGQUIT, immediate shutdown) and removes the directory. It runs as the current user
    /// (root may signal the server user's processes) in its own process group, so a Ctrl-C
    /// aimed at the tests does not reach it.
    pub(super) fn spawn_reaper(&self) -> Result<Child, ClusterError> {
        let script = format!(
            r#"owner={owner}; data={data}; dir={dir}
while kill -0 "$owner" 2>/dev/null; do sleep 1; done
pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null)
if [ -n "$pid" ] && grep -qF -- "$data" "/proc/$pid/cmdline" 2>/dev/null; then
  kill -QUIT "$pid" 2>/dev/null
  i=0
  while [ $i -lt 30 ] && kill -0 "$pid" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; do
    sleep 1; i=$((i+1))
  done
fi
rm -rf -- "$dir""#,
            owner = std::process::id(),
            data = sh_quote(&self.data_dir.to_string_lossy()),
            dir = sh_quote(&self.dir.to_string_lossy()),
        );
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        cmd.spawn()
            .map_err(ClusterError::io("start the cleanup shell (`sh`)"))
    }

    /// Ends the reaper and everything in its process group, and collects it.
    pub(super) fn stop_reaper(&mut self) {
        if let Some(mut child) = self.reaper.take() {
            let _ = process::signal(-i64::from(child.id()), "KILL");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
