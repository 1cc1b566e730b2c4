//! Running the server programs of a [`Cluster`]: `initdb`, the first `pg_ctl start` on a
//! free loopback port (another port if that one was taken meanwhile), `pg_ctl stop`, start
//! again, restart, and the simulated crash (`kill -9` of the postmaster). Every server
//! program runs through [`Cluster::server_command`]: as the server user when root, without
//! this process's `PG*` variables; a failure carries its output and the last lines of the
//! server log.

use std::io::{Read as _, Seek as _};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::cluster::{Cluster, ClusterOptions, HOST, SUPERUSER};
use super::config::{HBA, write_private};
use super::error::ClusterError;
use super::process;

/// How many ports [`Cluster::start`] tries before giving up.
const PORT_ATTEMPTS: u32 = 5;
/// Seconds `pg_ctl` waits for the server to start or stop.
const PG_CTL_TIMEOUT: u64 = 60;
/// How many log lines error messages carry.
const LOG_LINES: usize = 30;

impl Cluster {
    /// Stops the server: `pg_ctl stop -m fast -w`. [`Cluster::start_again`] starts it again.
    pub fn stop(&self) -> Result<(), ClusterError> {
        let mut cmd = self.server_command(&self.bin.pg_ctl());
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "fast", "-w", "-t"])
            .arg(PG_CTL_TIMEOUT.to_string())
            .arg("stop");
        self.run("pg_ctl stop", cmd)?;
        Ok(())
    }

    /// Starts the stopped (or crashed) server again on the same port and directory:
    /// `pg_ctl start -w`. After a crash the server runs recovery first.
    pub fn start_again(&self) -> Result<(), ClusterError> {
        self.pg_ctl_start()
    }

    /// Stops the server (fast) and starts it again.
    pub fn restart(&self) -> Result<(), ClusterError> {
        self.stop()?;
        self.start_again()
    }

    /// Simulates a crash: sends SIGKILL to the postmaster, then waits until it and all its
    /// children are gone and the port is free, so that [`Cluster::start_again`] works
    /// (and runs crash recovery).
    pub fn kill9_postmaster(&self) -> Result<(), ClusterError> {
        let pid = self
            .postmaster_pid()
            .ok_or_else(|| ClusterError::NotRunning {
                data_dir: self.data_dir.clone(),
            })?;
        process::signal(i64::from(pid), "KILL")?;
        let title = format!("postgres: {}: ", self.name);
        let gone = process::wait_for(
            Duration::from_secs(PG_CTL_TIMEOUT),
            Duration::from_millis(20),
            || {
                !process::alive(pid)
                    && !process::all_pids().into_iter().any(|p| {
                        p != std::process::id()
                            && (process::cmdline(p).is_some_and(|c| c.starts_with(&title))
                                || process::is_postmaster_of(p, &self.data_dir))
                    })
                    && port_is_free(self.port)
            },
        );
        if gone {
            // The killed postmaster may linger as a zombie until whoever inherited it reaps
            // it (some container inits never do). PostgreSQL's lock-file check (`kill(pid,
            // 0)`) counts a zombie as alive and would refuse to start, so remove the lock
            // files that name it; the shared memory check does not depend on them.
            for lock in [
                self.data_dir.join("postmaster.pid"),
                self.sock_dir.join(format!(".s.PGSQL.{}.lock", self.port)),
            ] {
                if process::read_pid_file(&lock) == Some(pid) {
                    let _ = std::fs::remove_file(&lock);
                }
            }
            Ok(())
        } else {
            Err(ClusterError::Timeout {
                what: format!(
                    "the killed postmaster {pid}, its children (`{title}…`) and port {} to go away",
                    self.port
                ),
                seconds: PG_CTL_TIMEOUT,
                log: self.log_section(),
            })
        }
    }

    /// The pid of the running postmaster (first line of `data_dir/postmaster.pid`), or
    /// `None` if the server is not running.
    pub fn postmaster_pid(&self) -> Option<u32> {
        process::running_postmaster(&self.data_dir)
    }

    /// Runs `initdb` and writes the configuration files that do not depend on the port.
    pub(super) fn init(&self, opts: &ClusterOptions) -> Result<(), ClusterError> {
        std::fs::create_dir(&self.sock_dir).map_err(ClusterError::io(format!(
            "create {}",
            self.sock_dir.display()
        )))?;
        if let Some(user) = &self.user {
            user.chown_tree(&self.dir)?;
        }
        let mut cmd = self.server_command(&self.bin.initdb());
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync")
            .env("TZ", "UTC");
        self.run("initdb", cmd)?;

        let hba = self.data_dir.join("pg_hba.conf");
        std::fs::write(&hba, HBA).map_err(ClusterError::io(format!("write {}", hba.display())))?;
        if let Some((cert, key)) = &opts.ssl {
            for (file, pem) in [("server.crt", cert), ("server.key", key)] {
                let path = self.data_dir.join(file);
                write_private(&path, pem.as_bytes())?;
            }
        }
        if let Some(user) = &self.user {
            user.chown_tree(&self.dir)?;
        }
        Ok(())
    }

    /// Picks a free port, writes the configuration, and starts; tries another port if the
    /// one picked was taken in the meantime.
    pub(super) fn first_start(&mut self, opts: &ClusterOptions) -> Result<(), ClusterError> {
        let conf_path = self.data_dir.join("postgresql.conf");
        let generated = std::fs::read_to_string(&conf_path)
            .map_err(ClusterError::io(format!("read {}", conf_path.display())))?;
        for _ in 0..PORT_ATTEMPTS {
            self.port = free_port()?;
            let conf = format!("{generated}\n{}", self.conf_additions(opts));
            // Overwriting keeps the owner (the server user) and mode of the file.
            std::fs::write(&conf_path, conf)
                .map_err(ClusterError::io(format!("write {}", conf_path.display())))?;
            let log_offset = std::fs::metadata(&self.log_path).map_or(0, |m| m.len());
            match self.pg_ctl_start() {
                Ok(()) => return Ok(()),
                Err(error) => {
                    // What this attempt wrote to the log.
                    let log = read_from(&self.log_path, log_offset);
                    if log.contains("Address already in use")
                        || log.contains("could not create any TCP/IP sockets")
                    {
                        tracing::debug!(port = self.port, "port taken, trying another");
                        continue;
                    }
                    return Err(error);
                }
            }
        }
        Err(ClusterError::PortsBusy {
            attempts: PORT_ATTEMPTS,
            log: self.log_section(),
        })
    }

    /// `pg_ctl start -w`.
    fn pg_ctl_start(&self) -> Result<(), ClusterError> {
        let mut cmd = self.server_command(&self.bin.pg_ctl());
        cmd.arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_path)
            .args(["-w", "-t"])
            .arg(PG_CTL_TIMEOUT.to_string())
            .arg("start");
        self.run("pg_ctl start", cmd).map(|_| ())
    }

    /// A command for a server program: runs as the server user (when root), in the cluster
    /// directory, with `HOME` there and no `PG*` variables of this process.
    pub(super) fn server_command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.dir)
            .env("HOME", &self.dir)
            .stdin(Stdio::null());
        clear_pg_env(&mut cmd);
        if let Some(user) = &self.user {
            user.apply(&mut cmd);
            cmd.env("USER", &user.name).env("LOGNAME", &user.name);
        }
        cmd
    }

    /// Runs a server program to completion; an error carries its output and the log tail.
    fn run(&self, what: &str, mut cmd: Command) -> Result<Output, ClusterError> {
        let output = cmd.output().map_err(ClusterError::io(format!(
            "run {what} ({:?})",
            cmd.get_program()
        )))?;
        if output.status.success() {
            return Ok(output);
        }
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        Err(ClusterError::Command {
            what: what.to_string(),
            status: output.status.to_string(),
            output: text,
            log: self.log_section(),
            data_dir: self.data_dir.clone(),
        })
    }

    /// The last lines of the log with a header, for error messages; empty without a log.
    fn log_section(&self) -> String {
        let tail = self.log_tail(LOG_LINES);
        if tail.is_empty() {
            String::new()
        } else {
            format!(
                "\n--- last lines of {} ---\n{tail}\n---",
                self.log_path.display()
            )
        }
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> Result<u16, ClusterError> {
    let listener = std::net::TcpListener::bind((HOST, 0))
        .map_err(ClusterError::io("bind 127.0.0.1:0 to find a free port"))?;
    let port = listener
        .local_addr()
        .map_err(ClusterError::io("read the address of a bound socket"))?
        .port();
    Ok(port)
}

fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind((HOST, port)).is_ok()
}

/// Removes the libpq `PG*` variables of this process from `cmd`'s environment, so that a
/// test's `PGHOST`, `PGSSLMODE`, `PGOPTIONS` … cannot change what the cluster runs.
pub(super) fn clear_pg_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(|k| k.starts_with("PG")) {
            cmd.env_remove(key);
        }
    }
}

/// The text of `path` from byte `offset` on (empty if unreadable).
fn read_from(path: &Path, offset: u64) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut file) = std::fs::File::open(path)
        && file.seek(std::io::SeekFrom::Start(offset)).is_ok()
    {
        let _ = file.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill9_postmaster_then_start_again_recovers() {
        let cluster = Cluster::start(ClusterOptions::default()).unwrap();
        cluster
            .psql(
                "postgres",
                "CREATE TABLE survivor (id int PRIMARY KEY, note text);\n\
                 INSERT INTO survivor VALUES (1, 'committed before the crash');",
            )
            .unwrap();
        let pid = cluster.postmaster_pid().expect("running");
        cluster.kill9_postmaster().unwrap();
        assert!(!process::alive(pid));
        assert_eq!(cluster.postmaster_pid(), None);
        cluster
            .start_again()
            .unwrap_or_else(|e| panic!("{e}\n{}", cluster.log_tail(20)));
        assert_ne!(cluster.postmaster_pid(), Some(pid));
        assert_eq!(
            cluster
                .psql("postgres", "SELECT note FROM survivor WHERE id = 1")
                .unwrap(),
            "committed before the crash"
        );
        cluster.restart().unwrap();
        assert_eq!(
            cluster
                .psql("postgres", "SELECT count(*) FROM survivor")
                .unwrap(),
            "1"
        );

        // keep(): the cluster outlives the handle; stop and remove it by hand.
        let data_dir = cluster.data_dir().to_path_buf();
        let pg_ctl = cluster.bin().pg_ctl();
        let mut stop = cluster.server_command(&pg_ctl);
        stop.arg("-D")
            .arg(&data_dir)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null());
        let (dir, _port) = cluster.keep();
        assert!(data_dir.join("postmaster.pid").exists());
        assert!(stop.status().unwrap().success());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
