//! `ClusterError`: everything that can go wrong while finding PostgreSQL binaries, choosing
//! the OS user to run the server as, and starting, stopping or querying a throwaway cluster.
//! Every message names what failed and what to do about it; failures of the server itself
//! carry the last lines of its log.

use std::path::PathBuf;

/// A failure of the throwaway-cluster machinery.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No directory with `initdb`, `pg_ctl` and `postgres` was found anywhere.
    #[error(
        "no PostgreSQL server binaries found (looked in $PGSUB_PGBIN, PATH, `pg_config --bindir`, \
         /usr/lib/postgresql/*/bin); install them with `apt-get install postgresql` or set \
         PGSUB_PGBIN to a directory holding initdb, pg_ctl and postgres"
    )]
    NoBinaries,

    /// A directory given as the PostgreSQL binary directory lacks a program.
    #[error(
        "{dir} (from {origin}) does not hold `{program}`; set PGSUB_PGBIN to a directory holding \
         initdb, pg_ctl and postgres (for example /usr/lib/postgresql/15/bin)"
    )]
    MissingProgram {
        /// The directory that was examined.
        dir: PathBuf,
        /// Where the directory came from (`PGSUB_PGBIN`, `PgBin::from_dir`, …).
        origin: String,
        /// The program that is missing.
        program: &'static str,
    },

    /// `postgres --version` failed or printed something unexpected.
    #[error(
        "could not read the server version from `{program} --version`: {detail}; check that the \
         binary runs, or point PGSUB_PGBIN at a working PostgreSQL installation"
    )]
    Version {
        /// The `postgres` binary that was run.
        program: PathBuf,
        /// What went wrong (the output, or the I/O error).
        detail: String,
    },

    /// The OS user chosen to run the server does not exist.
    #[error(
        "OS user `{name}` ({origin}) is not an unprivileged user in /etc/passwd; PostgreSQL refuses to run as root, so \
         the server runs as an unprivileged user: create it (`useradd --system postgres`) or set \
         PGSUB_TEST_OS_USER to an existing user"
    )]
    UnknownOsUser {
        /// The user name that was looked up.
        name: String,
        /// Why this name was chosen.
        origin: &'static str,
    },

    /// No temporary directory is usable by the server user.
    #[error(
        "no usable directory for a throwaway cluster: {detail}; set TMPDIR to a short directory \
         that the server user can traverse and write, such as /tmp"
    )]
    NoTempDir {
        /// Which candidates were tried and why each was refused.
        detail: String,
    },

    /// An I/O operation failed.
    #[error("could not {what}: {source}")]
    Io {
        /// What was being done, as a verb phrase ("create directory /tmp/x").
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A server program (`initdb`, `pg_ctl`) exited with an error.
    #[error(
        "{what} failed ({status}):\n{output}{log}\nthe data directory is {data_dir}; the output \
         and log above say why (a bad `extra_conf` line, permissions, shared memory, …): fix \
         that and run again"
    )]
    Command {
        /// What was being done ("initdb", "pg_ctl start").
        what: String,
        /// The exit status, as printed.
        status: String,
        /// The program's stdout and stderr.
        output: String,
        /// The last lines of the server log, prefixed with a header, or empty.
        log: String,
        /// The data directory concerned.
        data_dir: PathBuf,
    },

    /// Every attempt to start the server found its port already taken.
    #[error(
        "could not start PostgreSQL: the port was taken by another process on each of {attempts} \
         attempts; free some loopback ports or run fewer clusters at once{log}"
    )]
    PortsBusy {
        /// How many ports were tried.
        attempts: u32,
        /// The last lines of the server log, prefixed with a header.
        log: String,
    },

    /// `psql` exited with an error.
    #[error(
        "psql on database `{dbname}` failed ({status}) running:\n{sql}\n{stderr}check the SQL, and \
         that the cluster is running (server log: {log_path})"
    )]
    Psql {
        /// The database connected to.
        dbname: String,
        /// The SQL that was sent (shortened if long).
        sql: String,
        /// The exit status, as printed.
        status: String,
        /// What psql printed on stderr.
        stderr: String,
        /// The server log, for further details.
        log_path: PathBuf,
    },

    /// There is no postmaster to act on.
    #[error(
        "no PostgreSQL server is running in {data_dir} (no live postmaster.pid); start it with \
         `start_again()` first"
    )]
    NotRunning {
        /// The data directory.
        data_dir: PathBuf,
    },

    /// Waiting for something took too long.
    #[error("timed out after {seconds} s waiting for {what}{log}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long it waited.
        seconds: u64,
        /// The last lines of the server log, prefixed with a header, or empty.
        log: String,
    },
}

impl ClusterError {
    /// Builds an [`ClusterError::Io`] from a description of what was being done.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
        let what = what.into();
        move |source| ClusterError::Io { what, source }
    }
}
