//! The `PG*` environment variables and libpq's defaults (`conninfo_add_defaults`): which
//! variable fills which keyword, the default host (a Unix socket directory, else
//! `localhost`), port and user, and the OS user, read from `$USER`, `$LOGNAME` or
//! `/etc/passwd`.

use std::path::{Path, PathBuf};

use super::keywords::{Parsed, Seen};
use super::{Conninfo, ConninfoError, DEFAULT_PORT, DEFAULT_SOCKET_DIRS, Host};

/// The environment variables libpq reads, and the keyword each one fills.
const ENV_VARS: [(&str, &str); 16] = [
    ("PGHOST", "host"),
    ("PGHOSTADDR", "hostaddr"),
    ("PGPORT", "port"),
    ("PGDATABASE", "dbname"),
    ("PGUSER", "user"),
    ("PGPASSWORD", "password"),
    ("PGPASSFILE", "passfile"),
    ("PGSSLMODE", "sslmode"),
    ("PGSSLROOTCERT", "sslrootcert"),
    ("PGSSLCERT", "sslcert"),
    ("PGSSLKEY", "sslkey"),
    ("PGAPPNAME", "application_name"),
    ("PGCONNECT_TIMEOUT", "connect_timeout"),
    ("PGOPTIONS", "options"),
    ("PGCHANNELBINDING", "channel_binding"),
    ("PGTARGETSESSIONATTRS", "target_session_attrs"),
];

/// The process environment, as a lookup function.
pub(super) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Parsed {
    /// True when `key` was not given, so that its service-file line or environment
    /// variable applies.
    pub(super) fn is_unset(&self, key: &str) -> bool {
        let info = &self.info;
        match key {
            "host" => info.hosts.is_empty(),
            "hostaddr" => info.hostaddr.is_none(),
            "port" => info.ports.is_empty(),
            "dbname" => info.dbname.is_none(),
            "user" => info.user.is_none(),
            "password" => info.password.is_none(),
            "passfile" => info.passfile.is_none(),
            "sslmode" => !self.seen.sslmode,
            "sslrootcert" => info.sslrootcert.is_none(),
            "sslcert" => info.sslcert.is_none(),
            "sslkey" => info.sslkey.is_none(),
            "application_name" => info.application_name.is_none(),
            "connect_timeout" => info.connect_timeout.is_none(),
            "options" => info.options.is_none(),
            "channel_binding" => !self.seen.channel_binding,
            "target_session_attrs" => info.target_session_attrs.is_none(),
            "replication" => info.replication.is_none(),
            _ => !info.other.contains_key(key),
        }
    }

    /// Fills unset keywords from the environment (libpq's `conninfo_add_defaults`); an empty
    /// variable counts as unset. Invalid values are skipped and returned as errors.
    pub(super) fn apply_env(
        mut self,
        get: &dyn Fn(&str) -> Option<String>,
    ) -> (Parsed, Vec<ConninfoError>) {
        let mut errors = Vec::new();
        for (var, key) in ENV_VARS {
            if !self.is_unset(key) {
                continue;
            }
            let Some(value) = get(var).filter(|v| !v.is_empty()) else {
                continue;
            };
            if let Err(e) = self.set(key, &value) {
                errors.push(e.about_env_var(var));
            }
        }
        (self, errors)
    }
}

/// One line of `/etc/passwd`, the parts pgsub uses.
pub(super) struct PasswdEntry {
    pub(super) name: String,
    pub(super) home: PathBuf,
}

/// The entry for `uid` in the contents of an `/etc/passwd` file.
fn passwd_entry(contents: &str, uid: u32) -> Option<PasswdEntry> {
    contents.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        let id: u32 = fields.next()?.parse().ok()?;
        let _gid = fields.next()?;
        let _gecos = fields.next()?;
        let home = fields.next()?;
        (id == uid && !name.is_empty() && !name.starts_with('#')).then(|| PasswdEntry {
            name: name.to_owned(),
            home: PathBuf::from(home),
        })
    })
}

/// The home directory: `$HOME`, else the effective user's `/etc/passwd` entry.
pub(super) fn home_from(get: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    get("HOME")
        .filter(|home| !home.is_empty())
        .map(PathBuf::from)
        .or_else(|| current_passwd_entry().map(|entry| entry.home))
}

/// The `/etc/passwd` entry of this process's effective user: `/proc/self` is owned by it.
pub(super) fn current_passwd_entry() -> Option<PasswdEntry> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let contents = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd_entry(&contents, uid)
}

/// The OS user name: `$USER`, else `$LOGNAME`, else the effective user's `/etc/passwd` entry.
fn os_user(get: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|var| get(var).filter(|v| !v.is_empty()))
        .or_else(|| current_passwd_entry().map(|e| e.name))
}

/// The default host: the first of [`DEFAULT_SOCKET_DIRS`] holding the socket for `port`,
/// else the first that exists, else `localhost` over TCP.
fn default_host(port: u16, exists: &dyn Fn(&Path) -> bool) -> Host {
    let socket = format!(".s.PGSQL.{port}");
    let dirs = DEFAULT_SOCKET_DIRS.iter().map(Path::new);
    dirs.clone()
        .find(|dir| exists(&dir.join(&socket)))
        .or_else(|| dirs.clone().find(|dir| exists(dir)))
        .map_or_else(
            || Host::Tcp("localhost".to_owned()),
            |dir| Host::Unix(dir.to_path_buf()),
        )
}

impl Conninfo {
    /// Fills unset settings from the `PG*` environment variables (`PGHOST`, `PGHOSTADDR`,
    /// `PGPORT`, `PGDATABASE`, `PGUSER`, `PGPASSWORD`, `PGPASSFILE`, `PGSSLMODE`,
    /// `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`, `PGAPPNAME`, `PGCONNECT_TIMEOUT`,
    /// `PGOPTIONS`, `PGCHANNELBINDING`, `PGTARGETSESSIONATTRS`). Invalid values are skipped
    /// with a warning; [`Conninfo::resolve`] refuses them instead.
    pub fn with_env(self) -> Self {
        self.with_env_from(process_env)
    }

    /// [`Conninfo::with_env`] reading variables through `get`. `sslmode` and
    /// `channel_binding` count as unset when they hold their default, `prefer`.
    pub fn with_env_from(self, get: impl Fn(&str) -> Option<String>) -> Self {
        let seen = Seen::inferred(&self);
        let (parsed, errors) = Parsed { info: self, seen }.apply_env(&get);
        for error in errors {
            tracing::warn!("ignoring environment variable: {error}");
        }
        parsed.info
    }

    /// Fills what is still unset with libpq's defaults: port 5432; host the default Unix
    /// socket directory (see [`DEFAULT_SOCKET_DIRS`]) or `localhost`, unless `hostaddr` is
    /// given; user the OS user; dbname the user.
    pub fn with_defaults(self) -> Self {
        self.with_defaults_from(&process_env, &|path: &Path| path.exists())
    }

    pub(super) fn with_defaults_from(
        mut self,
        get: &dyn Fn(&str) -> Option<String>,
        exists: &dyn Fn(&Path) -> bool,
    ) -> Self {
        if self.ports.is_empty() {
            self.ports = vec![DEFAULT_PORT];
        }
        if self.hosts.is_empty() && self.hostaddr.is_none() {
            self.hosts = vec![default_host(self.port_for(0), exists)];
        }
        if self.user.is_none() {
            self.user = os_user(get);
        }
        if self.dbname.is_none() {
            self.dbname = self.user.clone();
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::*;
    use crate::conninfo::tests::{env, parse, tcp, unix};
    use crate::conninfo::{ChannelBindingMode, SslMode};

    #[test]
    fn env_fills_only_missing_fields() {
        let vars = [
            ("PGHOST", "envhost"),
            ("PGHOSTADDR", "10.0.0.1"),
            ("PGPORT", "6543"),
            ("PGDATABASE", "envdb"),
            ("PGUSER", "envuser"),
            ("PGPASSWORD", "envpw"),
            ("PGPASSFILE", "/env/pgpass"),
            ("PGSSLMODE", "require"),
            ("PGSSLROOTCERT", "/env/root.crt"),
            ("PGSSLCERT", "/env/c.crt"),
            ("PGSSLKEY", "/env/c.key"),
            ("PGAPPNAME", "envapp"),
            ("PGCONNECT_TIMEOUT", "7"),
            ("PGOPTIONS", "-c x=1"),
            ("PGCHANNELBINDING", "disable"),
            ("PGTARGETSESSIONATTRS", "read-only"),
        ];
        let info = parse("host=given user=givenuser sslmode=verify-full").with_env_from(env(&vars));
        assert_eq!(info.hosts, vec![tcp("given")]);
        assert_eq!(info.hostaddr.as_deref(), Some("10.0.0.1"));
        assert_eq!(info.ports, vec![6543]);
        assert_eq!(info.user.as_deref(), Some("givenuser"));
        assert_eq!(info.dbname.as_deref(), Some("envdb"));
        assert_eq!(info.password.as_deref(), Some("envpw"));
        assert_eq!(info.passfile, Some(PathBuf::from("/env/pgpass")));
        assert_eq!(info.sslmode, SslMode::VerifyFull);
        assert_eq!(info.sslrootcert.as_deref(), Some("/env/root.crt"));
        assert_eq!(info.sslcert.as_deref(), Some("/env/c.crt"));
        assert_eq!(info.sslkey.as_deref(), Some("/env/c.key"));
        assert_eq!(info.application_name.as_deref(), Some("envapp"));
        assert_eq!(info.connect_timeout, Some(Duration::from_secs(7)));
        assert_eq!(info.options.as_deref(), Some("-c x=1"));
        assert_eq!(info.channel_binding, ChannelBindingMode::Disable);
        assert_eq!(info.target_session_attrs.as_deref(), Some("read-only"));

        let info = parse("").with_env_from(env(&[("PGHOST", "/tmp"), ("PGSSLMODE", "require")]));
        assert_eq!(info.hosts, vec![unix("/tmp")]);
        assert_eq!(info.sslmode, SslMode::Require);
        assert_eq!(
            parse("").with_env_from(env(&[("PGHOST", "")])).hosts,
            vec![]
        );
        let ignored = parse("").with_env_from(env(&[("PGSSLMODE", "bogus"), ("PGPORT", "x")]));
        assert_eq!(ignored, Conninfo::default());
    }

    #[test]
    fn defaults_fill_socket_port_user_and_dbname() {
        let alice = env(&[("USER", "alice"), ("LOGNAME", "other")]);
        let socket_in_tmp = |p: &Path| p == Path::new("/tmp/.s.PGSQL.5432");
        let info = Conninfo::default().with_defaults_from(&alice, &socket_in_tmp);
        assert_eq!(info.hosts, vec![unix("/tmp")]);
        assert_eq!(info.ports, vec![5432]);
        assert_eq!(info.user.as_deref(), Some("alice"));
        assert_eq!(info.dbname.as_deref(), Some("alice"));

        let debian_dir = |p: &Path| p == Path::new("/var/run/postgresql");
        let info = Conninfo::default().with_defaults_from(&alice, &debian_dir);
        assert_eq!(info.hosts, vec![unix("/var/run/postgresql")]);

        let logname = env(&[("LOGNAME", "bob")]);
        let info = parse("port=6000").with_defaults_from(&logname, &|_: &Path| false);
        assert_eq!(info.hosts, vec![tcp("localhost")]);
        assert_eq!(info.ports, vec![6000]);
        assert_eq!(info.user.as_deref(), Some("bob"));

        let info =
            parse("hostaddr=10.0.0.1 user=u dbname=d").with_defaults_from(&alice, &socket_in_tmp);
        assert_eq!(info.hosts, vec![]);
        assert_eq!(info.user.as_deref(), Some("u"));
        assert_eq!(info.dbname.as_deref(), Some("d"));
    }

    #[test]
    fn passwd_entry_finds_the_effective_user() {
        let contents = "root:x:0:0:root:/root:/bin/bash\n#x:x:1000:1:c:/h:/s\nbroken line\nalice:x:1000:1000:Alice,,,:/home/alice:/bin/sh\n";
        let entry = passwd_entry(contents, 1000).expect("alice");
        assert_eq!(entry.name, "alice");
        assert_eq!(entry.home, PathBuf::from("/home/alice"));
        assert!(passwd_entry(contents, 5).is_none());
    }
}
