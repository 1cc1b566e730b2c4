//! [`Conninfo::resolve`]: everything libpq does before connecting — the connection
//! string, then the service file (`service=`), then the `PG*` variables, then the defaults, the checks on list lengths,
//! `sslrootcert=system`, and the password file when no password is given.

use std::path::Path;

use super::env::process_env;
use super::{Conninfo, ConninfoError, DEFAULT_SOCKET_DIRS, Host, SslMode, parse_tracked, pgpass};

impl Conninfo {
    /// Everything libpq does before connecting: parses `s`, fills unset settings from the
    /// environment and then the defaults, checks that hosts, hostaddrs and ports match up,
    /// applies `sslrootcert=system` (default sslmode `verify-full`, weaker ones refused), and
    /// when no password is given looks one up in the password file (`passfile`, else
    /// `PGPASSFILE`, else `~/.pgpass`). An invalid `PG*` variable is an error here.
    pub fn resolve(s: &str) -> Result<Conninfo, ConninfoError> {
        resolve_from(s, &process_env, &|path: &Path| path.exists())
    }

    /// The host names to look up in the password file for target `index`, in order. libpq
    /// matches a socket in the default directory as `localhost` and any other socket by its
    /// directory; pgsub also tries `localhost` for the latter.
    fn pgpass_hosts(&self, index: usize) -> Vec<String> {
        match self.hosts.get(index) {
            Some(Host::Tcp(name)) => vec![name.clone()],
            Some(Host::Unix(dir)) => {
                let dir = dir.to_string_lossy().into_owned();
                let default =
                    DEFAULT_SOCKET_DIRS.contains(&dir.as_str()) || dir == "/run/postgresql";
                if default {
                    vec!["localhost".to_owned()]
                } else {
                    vec![dir, "localhost".to_owned()]
                }
            }
            None => match self.hostaddrs().get(index) {
                Some(addr) => vec![(*addr).to_owned()],
                None => vec!["localhost".to_owned()],
            },
        }
    }

    /// The password from the password file for the first target that has one.
    fn password_from_file(&self, get: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        let path = self
            .passfile
            .clone()
            .or_else(|| pgpass::default_path_from(get))?;
        let user = self.user.as_deref()?;
        let dbname = self.dbname.as_deref()?;
        let contents = match pgpass::load(&path) {
            Ok(contents) => contents?,
            Err(error) => {
                tracing::warn!("ignoring the password file: {error}");
                return None;
            }
        };
        let targets = self.hosts.len().max(self.hostaddrs().len()).max(1);
        (0..targets).find_map(|i| {
            let port = self.port_for(i);
            self.pgpass_hosts(i).iter().find_map(|host| {
                pgpass::find_in(&contents, host, port, dbname, user).filter(|pw| !pw.is_empty())
            })
        })
    }
}

/// [`resolve_from`] with no socket directories, for tests.
#[cfg(test)]
pub(super) fn resolve_with_env(
    s: &str,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Conninfo, ConninfoError> {
    resolve_from(s, get, &|_: &Path| false)
}

fn resolve_from(
    s: &str,
    get: &dyn Fn(&str) -> Option<String>,
    exists: &dyn Fn(&Path) -> bool,
) -> Result<Conninfo, ConninfoError> {
    let mut parsed = parse_tracked(s)?;
    parsed.apply_service(get)?;
    let (parsed, errors) = parsed.apply_env(get);
    if let Some(error) = errors.into_iter().next() {
        return Err(error);
    }
    let seen = parsed.seen;
    let mut info = parsed.info.with_defaults_from(get, exists);
    info.check_counts()?;
    if info.sslrootcert.as_deref() == Some("system") {
        if !seen.sslmode {
            info.sslmode = SslMode::VerifyFull;
        } else if info.sslmode != SslMode::VerifyFull {
            return Err(ConninfoError::WeakSslmodeWithSystemRoot {
                sslmode: info.sslmode,
            });
        }
    }
    if info.password.is_none() {
        info.password = info.password_from_file(get);
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::conninfo::keywords::SSLMODE_EXPECTED;
    use crate::conninfo::pgpass::tests::TempDir;
    use crate::conninfo::tests::{env, invalid};

    /// `resolve` with a fake environment and no socket directories.
    fn resolve_with(s: &str, vars: &[(&str, &str)]) -> Result<Conninfo, ConninfoError> {
        resolve_from(s, &env(vars), &|_: &Path| false)
    }

    #[test]
    fn sslrootcert_system_defaults_to_verify_full_and_refuses_weaker_modes() {
        let vars = [("USER", "u"), ("PGPASSFILE", "/nonexistent/pgpass")];
        let info = resolve_with("host=h sslrootcert=system", &vars).expect("valid");
        assert_eq!(info.sslmode, SslMode::VerifyFull);
        assert_eq!(
            resolve_with("host=h sslrootcert=system sslmode=prefer", &vars),
            Err(ConninfoError::WeakSslmodeWithSystemRoot {
                sslmode: SslMode::Prefer
            })
        );
        let vars = [
            ("USER", "u"),
            ("PGSSLMODE", "require"),
            ("PGSSLROOTCERT", "system"),
        ];
        assert_eq!(
            resolve_with("host=h passfile=/nonexistent", &vars),
            Err(ConninfoError::WeakSslmodeWithSystemRoot {
                sslmode: SslMode::Require
            })
        );
    }

    #[test]
    fn resolve_refuses_invalid_env_and_keeps_explicit_prefer() {
        let vars = [("USER", "u"), ("PGSSLMODE", "bogus")];
        assert_eq!(
            resolve_with("host=h passfile=/nonexistent", &vars),
            Err(invalid("PGSSLMODE", "bogus", SSLMODE_EXPECTED))
        );
        let vars = [("USER", "u"), ("PGSSLMODE", "require")];
        let info =
            resolve_with("host=h sslmode=prefer passfile=/nonexistent", &vars).expect("valid");
        assert_eq!(info.sslmode, SslMode::Prefer);
        let vars = [("USER", "u"), ("PGHOST", "a,b"), ("PGPORT", "1,2,3")];
        assert_eq!(
            resolve_with("passfile=/nonexistent", &vars),
            Err(ConninfoError::PortCountMismatch { ports: 3, hosts: 2 })
        );
    }

    #[test]
    fn resolve_reads_password_from_pgpass() {
        let dir = TempDir::new("resolve-pgpass");
        let path = dir.file("pgpass", "db.example.com:5433:app:alice:from-file\n", 0o600);
        let path = path.to_str().expect("utf-8 temp path");
        let vars = [("PGPASSFILE", path), ("USER", "nobody")];
        let resolved = |s: &str| resolve_with(s, &vars).expect("valid").password;

        assert_eq!(
            resolved("postgresql://alice@db.example.com:5433/app").as_deref(),
            Some("from-file")
        );
        assert_eq!(
            resolved("postgresql://alice:given@db.example.com:5433/app").as_deref(),
            Some("given")
        );
        assert_eq!(
            resolved("host=other,db.example.com port=5432,5433 user=alice dbname=app").as_deref(),
            Some("from-file")
        );
        assert_eq!(resolved("host=db.example.com port=5433 user=alice"), None);

        let other_vars = [("PGPASSFILE", "/nonexistent"), ("USER", "alice")];
        let info = resolve_with(
            &format!("host=db.example.com port=5433 dbname=app passfile={path}"),
            &other_vars,
        )
        .expect("valid");
        assert_eq!(info.password.as_deref(), Some("from-file"));

        dir.file("pgpass", "db.example.com:5433:app:alice:from-file\n", 0o644);
        assert_eq!(resolved("postgresql://alice@db.example.com:5433/app"), None);
    }

    #[test]
    fn unix_socket_host_matches_localhost_entry() {
        let dir = TempDir::new("pgpass-socket");
        let path = dir.file("pgpass", "localhost:5432:app:alice:socket-pw\n", 0o600);
        let path = path.to_str().expect("utf-8 temp path");
        let vars = [("PGPASSFILE", path)];
        let resolved = |s: &str| resolve_with(s, &vars).expect("valid").password;
        assert_eq!(
            resolved("host=/var/run/postgresql user=alice dbname=app").as_deref(),
            Some("socket-pw")
        );
        assert_eq!(
            resolved("host=/tmp/custom user=alice dbname=app").as_deref(),
            Some("socket-pw")
        );
        dir.file(
            "pgpass",
            "/tmp/custom:5432:app:alice:dir-pw\nlocalhost:5432:app:alice:socket-pw\n",
            0o600,
        );
        assert_eq!(
            resolved("host=/tmp/custom user=alice dbname=app").as_deref(),
            Some("dir-pw")
        );
        assert_eq!(
            resolved("host=/tmp user=alice dbname=app").as_deref(),
            Some("socket-pw")
        );
    }
}
