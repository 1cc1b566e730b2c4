//! Client access to a [`Cluster`]: connection strings for the superuser and for other
//! roles, psql scripts, and databases with names unique across processes and runs.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use super::cluster::{Cluster, HOST, SUPERUSER};
use super::error::ClusterError;
use super::server::clear_pg_env;
use super::text::{conninfo_value, shorten};

/// Numbers the databases made by [`Cluster::create_database`] in this process.
static DATABASE_SEQ: AtomicU32 = AtomicU32::new(0);

impl Cluster {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared;

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
}
