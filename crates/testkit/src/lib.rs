//! Throwaway PostgreSQL clusters for the integration tests, the benchmarks and `pgsub demo`.
//!
//! [`Cluster::start`] finds the server binaries ([`PgBin::discover`]), runs `initdb` in a
//! fresh `$TMPDIR/pgsub-cluster-<pid>-<n>/`, configures the server for logical replication
//! (`wal_level = logical`, `wal_sender_timeout = 10s`, …), and starts it with `pg_ctl` on a
//! free port of 127.0.0.1 and a unix socket in that directory. Dropping the [`Cluster`]
//! stops the server and removes the directory; a detached reaper shell does the same if the
//! process dies first (and [`shared`], the one cluster per test process, is never dropped).
//!
//! When the process runs as root, which PostgreSQL refuses, the server programs run as an
//! unprivileged user ([`osuser::server_user`]: `$PGSUB_TEST_OS_USER`, else `postgres`,
//! else `nobody`) that owns the cluster directory; `psql` keeps running as root over TCP.
//!
//! Authentication, so that tests can exercise each method: the superuser `postgres` is
//! trusted over TCP and the unix socket; every other role needs a password, checked by
//! SCRAM unless the role is a member of the group role `pgsub_md5` (md5) or
//! `pgsub_password` (cleartext password). Both group roles are created at start:
//!
//! ```sql
//! SET password_encryption = 'md5';
//! CREATE ROLE alice LOGIN PASSWORD 'secret' IN ROLE pgsub_md5;
//! ```
//!
//! The API is synchronous and blocking: it runs `initdb`, `pg_ctl` and `psql` with
//! [`std::process::Command`].
//!
//! Files: `cluster.rs` (the [`Cluster`] type, its options, start, accessors and drop),
//! `server.rs` (`initdb`, `pg_ctl` start and stop, kill -9), `config.rs` (`postgresql.conf`,
//! `pg_hba.conf`, TLS files), `psql.rs` (connection strings, psql, databases), `dirs.rs`
//! (where cluster directories go, and the sweep of stale ones), `reaper.rs` (the detached
//! reaper shell), `text.rs` (quoting), and `pgbin.rs`, `osuser.rs`, `process.rs`, `error.rs`.

mod cluster;
mod config;
mod dirs;
mod error;
pub mod install;
pub mod osuser;
mod pgbin;
mod process;
mod psql;
mod reaper;
mod server;
mod text;

pub use cluster::{Cluster, ClusterOptions, shared};
pub use error::ClusterError;
pub use osuser::{OsUser, running_as_root, server_user};
pub use pgbin::PgBin;
