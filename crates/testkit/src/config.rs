//! The configuration files a [`Cluster`] writes into its data directory: what it appends
//! to the `postgresql.conf` that `initdb` generated, its `pg_hba.conf`, and the TLS
//! certificate and key files.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::cluster::{Cluster, ClusterOptions, HOST};
use super::error::ClusterError;
use super::text::conf_string;

impl Cluster {
    /// What [`Cluster::start`] appends to `postgresql.conf`.
    pub(super) fn conf_additions(&self, opts: &ClusterOptions) -> String {
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
}

pub(super) const HBA: &str = "\
# written by pgsub::cluster
local all all trust
host all postgres 127.0.0.1/32 trust
host all +pgsub_md5 127.0.0.1/32 md5
host all +pgsub_password 127.0.0.1/32 password
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
";

/// Writes a new file readable by its owner only (TLS key and certificate).
pub(super) fn write_private(path: &Path, contents: &[u8]) -> Result<(), ClusterError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(ClusterError::io(format!("create {}", path.display())))?;
    file.write_all(contents)
        .map_err(ClusterError::io(format!("write {}", path.display())))
}
