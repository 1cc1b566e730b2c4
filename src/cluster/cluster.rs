//! `Cluster`: one throwaway PostgreSQL server: made with `initdb` in a fresh temp
//! directory, configured for logical replication, started with `pg_ctl` on a free loopback
//! port, and stopped and removed when dropped — or, should this process die first, by a
//! detached reaper shell that waits for it to exit. Also the one-per-process [`shared`]
//! cluster for tests.
//!
//! Layout of `$TMPDIR/pgsub-cluster-<pid>-<n>/`: `data/` (the data directory), `sock/` (the
//! unix socket directory) and `server.log`. Stale directories of dead processes are swept
//! at every [`Cluster::start`].

use std::fmt::Write as _;
use std::io::{Read as _, Seek as _, Write as _};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::error::ClusterError;
use super::osuser::{self, OsUser};
use super::pgbin::PgBin;
use super::process;

/// The loopback address every cluster listens on.
const HOST: &str = "127.0.0.1";
/// The superuser `initdb` creates.
const SUPERUSER: &str = "postgres";
/// How many ports [`Cluster::start`] tries before giving up.
const PORT_ATTEMPTS: u32 = 5;
/// Seconds `pg_ctl` waits for the server to start or stop.
const PG_CTL_TIMEOUT: u64 = 60;
/// How many log lines error messages carry.
const LOG_LINES: usize = 30;
/// Prefix of every cluster directory name.
const DIR_PREFIX: &str = "pgsub-cluster-";
/// A file in a cluster directory that [`Cluster::keep`] writes, so sweeps spare it.
const KEPT_MARKER: &str = "KEPT";

/// Numbers the clusters (and their directories) of this process.
static CLUSTER_SEQ: AtomicU32 = AtomicU32::new(0);
/// Numbers the databases made by [`Cluster::create_database`] in this process.
static DATABASE_SEQ: AtomicU32 = AtomicU32::new(0);

/// How to make a [`Cluster`]. `ClusterOptions::default()` is what the tests use.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The server binaries; `None` runs [`PgBin::discover`].
    pub bin: Option<PgBin>,
    /// `wal_level`; default `"logical"`.
    pub wal_level: String,
    /// Lines appended last to `postgresql.conf` (so they override everything else).
    pub extra_conf: Vec<String>,
    /// TLS: the server certificate and its private key, both PEM. Turns `ssl = on`.
    pub ssl: Option<(String, String)>,
    /// `fsync` and `full_page_writes`; default `false` (fast, survives `kill -9` of the
    /// server but not an OS crash, which is all a throwaway cluster needs).
    pub fsync: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            bin: None,
            wal_level: "logical".to_string(),
            extra_conf: Vec::new(),
            ssl: None,
            fsync: false,
        }
    }
}

/// A running throwaway PostgreSQL server, removed with its directory on drop.
///
/// It listens on `127.0.0.1:<port()>` and on a unix socket in [`Cluster::socket_dir`].
/// Authentication (`pg_hba.conf`):
///
/// ```text
/// local all all                     trust
/// host  all postgres        127.0.0.1/32 trust
/// host  all +pgsub_md5      127.0.0.1/32 md5
/// host  all +pgsub_password 127.0.0.1/32 password
/// host  all all             127.0.0.1/32 scram-sha-256
/// host  all all             ::1/128      scram-sha-256
/// ```
///
/// The superuser `postgres` needs no password over TCP. Any other role logs in with a
/// password, by SCRAM unless it is a member of one of the group roles `pgsub_md5` or
/// `pgsub_password` (`NOLOGIN`, created at start), which select `md5` or cleartext
/// `password` authentication: `CREATE ROLE u LOGIN PASSWORD 'p' IN ROLE pgsub_md5`. For an
/// md5 login the password must be stored as md5 (`SET password_encryption = 'md5'` before
/// setting it); `password_encryption` defaults to `scram-sha-256`. `host` lines match TLS
/// and plain connections alike.
///
/// Other settings: `wal_level` as asked (default `logical`), `max_wal_senders = 30`,
/// `max_replication_slots = 30`, `wal_sender_timeout = 10s`, `max_connections = 100`,
/// `max_prepared_transactions = 10` (so two-phase transactions can be prepared),
/// `shared_buffers = 32MB`, `fsync` and `full_page_writes` as asked (default off),
/// `synchronous_commit = on`, `log_min_messages = warning`, time zone UTC, locale C,
/// encoding UTF8.
#[derive(Debug)]
pub struct Cluster {
    bin: PgBin,
    user: Option<OsUser>,
    dir: PathBuf,
    data_dir: PathBuf,
    sock_dir: PathBuf,
    log_path: PathBuf,
    port: u16,
    /// `cluster_name`, which also appears in every server process title.
    name: String,
    /// The detached shell that removes the cluster if this process dies without dropping it.
    reaper: Option<Child>,
    /// Whether drop stops the server and removes the directory (false after `keep`).
    cleanup: bool,
}

impl Cluster {
    /// Makes and starts a new cluster (`initdb`, configuration, `pg_ctl start`, the
    /// `pgsub_md5` and `pgsub_password` group roles). Blocks until the server accepts
    /// connections. When this process is root, the server runs as the user that
    /// [`osuser::server_user`] picks. Directories left behind by dead processes are swept
    /// first.
    pub fn start(opts: ClusterOptions) -> Result<Cluster, ClusterError> {
        let bin = match opts.bin.clone() {
            Some(bin) => bin,
            None => PgBin::discover()?,
        };
        let user = osuser::server_user()?;
        sweep_stale_dirs();
        let base = choose_base(user.as_ref())?;
        let (dir, seq) = make_cluster_dir(&base)?;
        let mut cluster = Cluster {
            bin,
            user,
            data_dir: dir.join("data"),
            sock_dir: dir.join("sock"),
            log_path: dir.join("server.log"),
            dir,
            port: 0,
            name: format!("pgsub-{}-{seq}", std::process::id()),
            reaper: None,
            cleanup: true,
        };
        // From here on, an error drops `cluster`, which removes the directory.
        cluster.reaper = Some(cluster.spawn_reaper()?);
        cluster.init(&opts)?;
        cluster.first_start(&opts)?;
        cluster.psql(
            "postgres",
            "CREATE ROLE pgsub_md5 NOLOGIN;\nCREATE ROLE pgsub_password NOLOGIN;",
        )?;
        tracing::debug!(
            dir = %cluster.dir.display(),
            port = cluster.port,
            version = %cluster.bin.version,
            "throwaway cluster started"
        );
        Ok(cluster)
    }

    /// The TCP port the server listens on (on [`Cluster::host`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address the server listens on: `"127.0.0.1"`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// The directory holding the server's unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> &Path {
        &self.sock_dir
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server version as `server_version_num` spells it, e.g. `150018`.
    pub fn version_num(&self) -> u32 {
        self.bin.version_num
    }

    /// The server binaries this cluster runs.
    pub fn bin(&self) -> &PgBin {
        &self.bin
    }

    /// The superuser: `"postgres"`, which logs in over TCP without a password.
    pub fn superuser(&self) -> &str {
        SUPERUSER
    }

    /// A libpq connection string for the superuser over TCP:
    /// `host=127.0.0.1 port=N user=postgres dbname=X`.
    pub fn conninfo(&self, dbname: &str) -> String {
        format!(
            "host={HOST} port={} user={SUPERUSER} dbname={}",
            self.port,
            conninfo_value(dbname)
        )
    }

    /// A libpq connection string for `user` with `password` over TCP; values are quoted
    /// as libpq requires.
    pub fn conninfo_as(&self, dbname: &str, user: &str, password: &str) -> String {
        format!(
            "host={HOST} port={} user={} password={} dbname={}",
            self.port,
            conninfo_value(user),
            conninfo_value(password),
            conninfo_value(dbname)
        )
    }

    /// Runs `sql` as a psql script (`psql -X -q -At -v ON_ERROR_STOP=1`, statements sent
    /// one by one, so `CREATE DATABASE` and the like work) against `dbname` over TCP as the
    /// superuser, and returns its standard output, trimmed: one line per row, columns
    /// separated by `|`. Fails on the first error, with psql's message.
    pub fn psql(&self, dbname: &str, sql: &str) -> Result<String, ClusterError> {
        let psql = self.bin.psql();
        let mut cmd = Command::new(&psql);
        cmd.args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-f", "-", "-d"])
            .arg(self.conninfo(dbname))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        clear_pg_env(&mut cmd);
        let mut child = cmd.spawn().map_err(ClusterError::io(format!(
            "run {} (install the PostgreSQL client, e.g. `apt-get install postgresql-client`)",
            psql.display()
        )))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let script = sql.to_string();
        // A writer thread, so that a long script cannot deadlock against a long output.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(script.as_bytes());
            let _ = stdin.write_all(b"\n");
        });
        let output = child
            .wait_with_output()
            .map_err(ClusterError::io(format!("wait for {}", psql.display())))?;
        let _ = writer.join();
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
        } else {
            Err(ClusterError::Psql {
                dbname: dbname.to_string(),
                sql: shorten(sql, 500),
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).to_string(),
                log_path: self.log_path.clone(),
            })
        }
    }

    /// Creates a database with a name unique across processes and runs,
    /// `<prefix>_<n>_<random hex>` in lowercase `[a-z0-9_]` (at most 63 bytes; other
    /// characters of `prefix` become `_`), and returns the name.
    pub fn create_database(&self, prefix: &str) -> Result<String, ClusterError> {
        let name = unique_database_name(prefix);
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(name)
    }

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
        process::read_pid_file(&self.data_dir.join("postmaster.pid"))
            .filter(|&pid| process::is_postmaster_of(pid, &self.data_dir))
    }

    /// The server log (`server.log` beside the data directory).
    pub fn log_path(&self) -> PathBuf {
        self.log_path.clone()
    }

    /// The last `lines` lines of the server log, for test failure messages; empty if there
    /// is no log yet.
    pub fn log_tail(&self, lines: usize) -> String {
        let Ok(bytes) = std::fs::read(&self.log_path) else {
            return String::new();
        };
        last_lines(&String::from_utf8_lossy(&bytes), lines)
    }

    /// Keeps the cluster: it is neither stopped nor removed on drop, the reaper is called
    /// off, and a `KEPT` file in the directory tells later sweeps to leave it alone.
    /// Returns its directory and port (for `pgsub demo --keep`); stop it with
    /// `pg_ctl -D <dir>/data stop` and remove the directory by hand.
    pub fn keep(mut self) -> (PathBuf, u16) {
        self.cleanup = false;
        self.stop_reaper();
        let marker = self.dir.join(KEPT_MARKER);
        if let Err(e) = std::fs::write(&marker, "kept by Cluster::keep; remove by hand\n") {
            tracing::warn!(
                path = %marker.display(),
                error = %e,
                "could not mark the cluster as kept; a later sweep may remove it"
            );
        }
        (self.dir.clone(), self.port)
    }

    /// Runs `initdb` and writes the configuration files that do not depend on the port.
    fn init(&self, opts: &ClusterOptions) -> Result<(), ClusterError> {
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
    fn first_start(&mut self, opts: &ClusterOptions) -> Result<(), ClusterError> {
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

    /// What [`Cluster::start`] appends to `postgresql.conf`.
    fn conf_additions(&self, opts: &ClusterOptions) -> String {
        let on_off = |b: bool| if b { "on" } else { "off" };
        let mut conf = String::from("\n# added by pgsub::cluster\n");
        let mut set = |name: &str, value: String| {
            let _ = writeln!(conf, "{name} = {value}");
        };
        set("listen_addresses", conf_string(HOST));
        set("port", self.port.to_string());
        set(
            "unix_socket_directories",
            conf_string(&self.sock_dir.to_string_lossy()),
        );
        set("cluster_name", conf_string(&self.name));
        set("wal_level", conf_string(&opts.wal_level));
        set("max_wal_senders", "30".into());
        set("max_replication_slots", "30".into());
        set("wal_sender_timeout", conf_string("10s"));
        set("max_connections", "100".into());
        set("max_prepared_transactions", "10".into());
        set("shared_buffers", conf_string("32MB"));
        set("fsync", on_off(opts.fsync).into());
        set("full_page_writes", on_off(opts.fsync).into());
        set("synchronous_commit", "on".into());
        set("password_encryption", conf_string("scram-sha-256"));
        set("log_min_messages", "warning".into());
        set("logging_collector", "off".into());
        if opts.ssl.is_some() {
            set("ssl", "on".into());
            let cert = self.data_dir.join("server.crt");
            let key = self.data_dir.join("server.key");
            set("ssl_cert_file", conf_string(&cert.to_string_lossy()));
            set("ssl_key_file", conf_string(&key.to_string_lossy()));
        }
        for line in &opts.extra_conf {
            conf.push_str(line);
            conf.push('\n');
        }
        conf
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
    fn server_command(&self, program: &Path) -> Command {
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

    /// Starts the detached shell that, once this process is gone, stops the server
    /// (SIGQUIT, immediate shutdown) and removes the directory. It runs as the current user
    /// (root may signal the server user's processes) in its own process group, so a Ctrl-C
    /// aimed at the tests does not reach it.
    fn spawn_reaper(&self) -> Result<Child, ClusterError> {
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
    fn stop_reaper(&mut self) {
        if let Some(mut child) = self.reaper.take() {
            let _ = process::signal(-i64::from(child.id()), "KILL");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Cluster {
    /// Stops the server at once (`pg_ctl stop -m immediate -w`) and removes the directory,
    /// ignoring errors; then calls off the reaper, which would have nothing left to do.
    fn drop(&mut self) {
        if self.cleanup {
            if self.data_dir.join("postmaster.pid").exists() {
                let mut cmd = self.server_command(&self.bin.pg_ctl());
                cmd.arg("-D")
                    .arg(&self.data_dir)
                    .args(["-m", "immediate", "-w", "stop"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                let _ = cmd.status();
                if let Some(pid) = self.postmaster_pid() {
                    let _ = process::signal(i64::from(pid), "QUIT");
                    process::wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
                        !process::alive(pid)
                    });
                }
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        self.stop_reaper();
    }
}

/// The cluster of this process, started on first use with default options and never
/// dropped (its reaper removes it when the process exits). For tests: panics with the
/// start error, on every call, if it could not start.
pub fn shared() -> &'static Cluster {
    static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match SHARED
        .get_or_init(|| Cluster::start(ClusterOptions::default()).map_err(|e| e.to_string()))
    {
        Ok(cluster) => cluster,
        Err(message) => panic!("the shared test cluster could not start: {message}"),
    }
}

const HBA: &str = "\
# written by pgsub::cluster
local all all trust
host all postgres 127.0.0.1/32 trust
host all +pgsub_md5 127.0.0.1/32 md5
host all +pgsub_password 127.0.0.1/32 password
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
";

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
fn choose_base(user: Option<&OsUser>) -> Result<PathBuf, ClusterError> {
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
fn make_cluster_dir(base: &Path) -> Result<(PathBuf, u32), ClusterError> {
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
fn sweep_stale_dirs() {
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
            if let Some(pid) = process::read_pid_file(&data.join("postmaster.pid"))
                .filter(|&pid| process::is_postmaster_of(pid, &data))
            {
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
fn clear_pg_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(|k| k.starts_with("PG")) {
            cmd.env_remove(key);
        }
    }
}

/// Writes a new file readable by its owner only (TLS key and certificate).
fn write_private(path: &Path, contents: &[u8]) -> Result<(), ClusterError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(ClusterError::io(format!("create {}", path.display())))?;
    file.write_all(contents)
        .map_err(ClusterError::io(format!("write {}", path.display())))
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

fn last_lines(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `prefix_<n>_<random>`: lowercase `[a-z0-9_]`, starting with a letter or `_`, ≤ 63 bytes.
fn unique_database_name(prefix: &str) -> String {
    use std::hash::{BuildHasher as _, Hasher as _};
    let n = DATABASE_SEQ.fetch_add(1, Ordering::Relaxed);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u32(n);
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(t.as_nanos());
    }
    let random = hasher.finish() as u32;
    let suffix = format!("_{n}_{random:08x}");
    let mut clean: String = prefix
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !clean.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
        clean.insert_str(0, "db");
    }
    clean.truncate(63 - suffix.len());
    clean + &suffix
}

/// A value for a libpq `key=value` connection string, quoted when needed.
fn conninfo_value(value: &str) -> String {
    if !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\' || c == '=')
    {
        return value.to_string();
    }
    let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
    format!("'{escaped}'")
}

/// A single-quoted `postgresql.conf` string.
fn conf_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A single-quoted POSIX shell word.
fn sh_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} … ({} bytes)", &text[..end], text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(conninfo_value("db"), "db");
        assert_eq!(conninfo_value(""), "''");
        assert_eq!(conninfo_value("a b'c\\"), r"'a b\'c\\'");
        assert_eq!(conf_string("it's"), "'it''s'");
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("", 2), "");
    }

    #[test]
    fn database_names_are_safe_identifiers() {
        let name = unique_database_name("My-Test.DB");
        assert!(name.starts_with("my_test_db_"), "{name}");
        let name = unique_database_name("1abc");
        assert!(name.starts_with("db1abc_"), "{name}");
        let name = unique_database_name(&"x".repeat(100));
        assert!(name.len() <= 63, "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
    }

    #[test]
    fn starts_a_cluster_with_logical_wal_level() {
        let cluster = shared();
        let show = |setting: &str| {
            cluster
                .psql("postgres", &format!("SHOW {setting}"))
                .unwrap_or_else(|e| panic!("{e}\n{}", cluster.log_tail(20)))
        };
        assert_eq!(show("wal_level"), "logical");
        assert_eq!(show("wal_sender_timeout"), "10s");
        assert_eq!(show("port"), cluster.port().to_string());
        assert_eq!(
            show("server_version_num"),
            cluster.version_num().to_string()
        );
        assert_eq!(
            cluster
                .psql(
                    "postgres",
                    "SELECT rolname FROM pg_roles WHERE rolname LIKE 'pgsub\\_%' ORDER BY 1"
                )
                .unwrap(),
            "pgsub_md5\npgsub_password"
        );
        assert!(
            cluster
                .socket_dir()
                .join(format!(".s.PGSQL.{}", cluster.port()))
                .exists()
        );
        assert!(cluster.postmaster_pid().is_some());
        let err = cluster.psql("postgres", "SELECT nope").unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn create_database_gives_unique_names() {
        let cluster = shared();
        let a = cluster.create_database("cluster_test").unwrap();
        let b = cluster.create_database("cluster_test").unwrap();
        assert_ne!(a, b);
        let listed = cluster
            .psql(
                "postgres",
                &format!("SELECT count(*) FROM pg_database WHERE datname IN ('{a}', '{b}')"),
            )
            .unwrap();
        assert_eq!(listed, "2");
        assert_eq!(cluster.psql(&b, "SELECT current_database()").unwrap(), b);
    }

    #[test]
    fn drop_removes_the_data_directory() {
        // Also exercises TLS and the password methods chosen by group membership.
        let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cluster = Cluster::start(ClusterOptions {
            ssl: Some((key.cert.pem(), key.signing_key.serialize_pem())),
            ..ClusterOptions::default()
        })
        .unwrap();
        let dir = cluster.data_dir().parent().unwrap().to_path_buf();
        let pid = cluster.postmaster_pid().expect("running");
        assert!(dir.join("server.log").exists());
        assert_eq!(
            cluster
                .psql(
                    "postgres",
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
                )
                .unwrap(),
            "t"
        );
        cluster
            .psql(
                "postgres",
                "CREATE ROLE scram_user LOGIN PASSWORD 'sc''ret';\n\
                 SET password_encryption = 'md5';\n\
                 CREATE ROLE md5_user LOGIN PASSWORD 'secret' IN ROLE pgsub_md5;\n\
                 CREATE ROLE plain_user LOGIN PASSWORD 'secret' IN ROLE pgsub_password;",
            )
            .unwrap();
        let login = |user: &str, password: &str| {
            let mut cmd = Command::new(cluster.bin().psql());
            cmd.args(["-X", "-At", "-c", "SELECT 1", "-d"])
                .arg(cluster.conninfo_as("postgres", user, password))
                .env_remove("PGPASSWORD");
            let out = cmd.output().unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        assert_eq!(login("scram_user", "sc'ret"), (true, String::new()));
        assert_eq!(login("md5_user", "secret"), (true, String::new()));
        assert_eq!(login("plain_user", "secret"), (true, String::new()));
        // Failed logins log the pg_hba.conf line they matched: each user got its method.
        for user in ["scram_user", "md5_user", "plain_user"] {
            let (ok, stderr) = login(user, "wrong");
            assert!(
                !ok && stderr.contains("password authentication failed"),
                "{stderr}"
            );
        }
        let log = cluster.log_tail(100);
        for line in [
            "host all all 127.0.0.1/32 scram-sha-256",
            "host all +pgsub_md5 127.0.0.1/32 md5",
            "host all +pgsub_password 127.0.0.1/32 password",
        ] {
            assert!(log.contains(line), "no login matched {line:?}:\n{log}");
        }
        drop(cluster);
        assert!(!dir.exists(), "{} still exists", dir.display());
        assert!(!process::alive(pid), "postmaster {pid} still runs");
    }

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
