//! `Cluster`: one throwaway PostgreSQL server: made with `initdb` in a fresh temp
//! directory, configured for logical replication, started with `pg_ctl` on a free loopback
//! port, and stopped and removed when dropped — or, should this process die first, by a
//! detached reaper shell that waits for it to exit. Also the one-per-process [`shared`]
//! cluster for tests.
//!
//! Layout of `$TMPDIR/pgsub-cluster-<pid>-<n>/`: `data/` (the data directory), `sock/` (the
//! unix socket directory) and `server.log`. Stale directories of dead processes are swept
//! at every [`Cluster::start`].
//!
//! This file owns the type, its options, [`Cluster::start`], the accessors, [`Cluster::keep`]
//! and what drop does; the rest of `Cluster` is spread by concern over `server.rs` (`initdb`
//! and `pg_ctl`), `config.rs` (the configuration files), `psql.rs` (client access),
//! `dirs.rs` (the directories and the sweep) and `reaper.rs` (the reaper shell).

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::dirs::{KEPT_MARKER, choose_base, make_cluster_dir, sweep_stale_dirs};
use super::error::ClusterError;
use super::osuser::{self, OsUser};
use super::pgbin::PgBin;
use super::process;
use super::text::last_lines;

/// The loopback address every cluster listens on.
pub(super) const HOST: &str = "127.0.0.1";
/// The superuser `initdb` creates.
pub(super) const SUPERUSER: &str = "postgres";

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
    pub(super) bin: PgBin,
    pub(super) user: Option<OsUser>,
    pub(super) dir: PathBuf,
    pub(super) data_dir: PathBuf,
    pub(super) sock_dir: PathBuf,
    pub(super) log_path: PathBuf,
    pub(super) port: u16,
    /// `cluster_name`, which also appears in every server process title.
    pub(super) name: String,
    /// The detached shell that removes the cluster if this process dies without dropping it.
    pub(super) reaper: Option<Child>,
    /// Whether drop stops the server and removes the directory (false after `keep`).
    pub(super) cleanup: bool,
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

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

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
}
