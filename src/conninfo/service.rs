//! The connection service file (`pg_service.conf`), read as libpq reads it: `service=NAME`
//! (or `PGSERVICE`) names a `[NAME]` section whose `keyword=value` lines fill the settings
//! the connection string left unset, before the `PG*` variables do.
//!
//! Where libpq looks: the per-user file first — `servicefile=` (PostgreSQL 18), else
//! `PGSERVICEFILE`, else `~/.pg_service.conf` — and, when the service is not there, the
//! system-wide `pg_service.conf` in `PGSYSCONFDIR`, else in the directory distributions build
//! libpq with (`/etc/postgresql-common` on Debian and Ubuntu, `/usr/local/pgsql/etc` from
//! source). A file that does not exist is skipped; a service found in neither is an error.
//!
//! The format: leading and trailing white space is ignored, as are empty lines and lines
//! starting with `#`; `[NAME]` starts a section; in the section asked for, each line is
//! `keyword=value`, split at the first `=` with nothing trimmed around it. A keyword that is
//! not libpq's, a line without `=`, or a nested `service=` is an error naming the file and
//! line — never the value, which may be a password. The first value of a keyword wins.
//!
//! Source: PostgreSQL `src/interfaces/libpq/fe-connect.c` (`parseServiceInfo`,
//! `parseServiceFile`) and the libpq documentation, "The Connection Service File".

use std::path::{Path, PathBuf};

use super::ConninfoError;
use super::keywords::{Parsed, keyword};

/// The system-wide directories tried when `PGSYSCONFDIR` is not set.
const SYSCONF_DIRS: [&str; 2] = ["/etc/postgresql-common", "/usr/local/pgsql/etc"];

/// One `keyword=value` line of a service's section.
#[derive(Debug, PartialEq, Eq)]
struct Line<'a> {
    number: usize,
    key: &'a str,
    value: &'a str,
}

/// The lines of section `[service]` in `contents`, or `None` when it has no such section.
/// Lines of other sections are not looked at, as libpq does not.
fn find_section<'a>(
    contents: &'a str,
    service: &str,
    path: &Path,
) -> Result<Option<Vec<Line<'a>>>, ConninfoError> {
    let mut found: Option<Vec<Line<'a>>> = None;
    for (i, raw) in contents.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            if found.is_some() {
                break; // the next section: the service's ends here
            }
            if rest.strip_suffix(']') == Some(service) {
                found = Some(Vec::new());
            }
            continue;
        }
        let Some(lines) = found.as_mut() else {
            continue;
        };
        let syntax = |reason: &'static str| ConninfoError::ServiceFile {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let Some((key, value)) = line.split_once('=') else {
            return Err(syntax("expected keyword=value"));
        };
        if key == "service" {
            return Err(syntax("nested service specifications are not supported"));
        }
        if keyword(key).is_none() {
            return Err(syntax("not a libpq connection keyword"));
        }
        lines.push(Line {
            number: i + 1,
            key,
            value,
        });
    }
    Ok(found)
}

impl Parsed {
    /// Applies the service named by `service=` or `PGSERVICE`, if any: its settings fill
    /// the keywords still unset.
    pub(super) fn apply_service(
        &mut self,
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConninfoError> {
        let Some(service) = self
            .info
            .other
            .get("service")
            .cloned()
            .or_else(|| get("PGSERVICE"))
            .filter(|s| !s.is_empty())
        else {
            return Ok(());
        };
        let files = self.service_files(get);
        for path in &files {
            let contents = match std::fs::read_to_string(path) {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(ConninfoError::ServiceFileRead {
                        path: path.clone(),
                        reason: e.to_string(),
                    });
                }
            };
            let Some(lines) = find_section(&contents, &service, path)? else {
                continue;
            };
            for l in lines {
                if self.is_unset(l.key) {
                    self.set(l.key, l.value)
                        .map_err(|e| ConninfoError::ServiceFileValue {
                            path: path.clone(),
                            line: l.number,
                            error: Box::new(e),
                        })?;
                }
            }
            return Ok(());
        }
        Err(ConninfoError::ServiceNotFound {
            service,
            looked_in: files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// The files to look in, in order: the per-user one, then the system-wide one(s).
    fn service_files(&self, get: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
        let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
        let user = nonempty(self.info.other.get("servicefile").cloned())
            .or_else(|| nonempty(get("PGSERVICEFILE")))
            .map(PathBuf::from)
            .or_else(|| super::env::home_from(get).map(|h| h.join(".pg_service.conf")));
        let system: Vec<PathBuf> = match nonempty(get("PGSYSCONFDIR")) {
            Some(dir) => vec![Path::new(&dir).join("pg_service.conf")],
            None => SYSCONF_DIRS
                .iter()
                .map(|d| Path::new(d).join("pg_service.conf"))
                .collect(),
        };
        user.into_iter().chain(system).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conninfo::pgpass::tests::TempDir;
    use crate::conninfo::tests::env;
    use crate::conninfo::{Conninfo, Host};

    const FILE: &str = "\
# production
[prod]
host=db1.example.com
  port=6543
dbname=app
user=repl
password=s3cret

[other]
host=elsewhere
";

    fn resolve(s: &str, vars: &[(&str, &str)]) -> Result<Conninfo, ConninfoError> {
        super::super::resolve::resolve_with_env(s, &env(vars))
    }

    #[test]
    fn a_service_fills_what_the_connection_string_leaves_unset() {
        let dir = TempDir::new("service-fill");
        let file = dir.file("svc.conf", FILE, 0o600);
        let f = file.to_str().expect("utf-8");
        let info = resolve("service=prod user=admin", &[("PGSERVICEFILE", f)]).expect("resolves");
        assert_eq!(info.hosts, vec![Host::Tcp("db1.example.com".into())]);
        assert_eq!(info.ports, vec![6543]);
        assert_eq!(info.dbname.as_deref(), Some("app"));
        // The connection string wins over the service file.
        assert_eq!(info.user.as_deref(), Some("admin"));
        assert_eq!(info.password.as_deref(), Some("s3cret"));
        // The service file wins over the environment.
        let info = resolve(
            "service=prod",
            &[
                ("PGSERVICEFILE", f),
                ("PGHOST", "from-env"),
                ("PGSSLMODE", "require"),
            ],
        )
        .expect("resolves");
        assert_eq!(info.hosts, vec![Host::Tcp("db1.example.com".into())]);
        assert_eq!(info.sslmode, crate::conninfo::SslMode::Require);
    }

    #[test]
    fn pgservice_names_the_service_and_servicefile_beats_pgservicefile() {
        let dir = TempDir::new("service-env");
        let a = dir.file("a.conf", "[prod]\nhost=from-a\n", 0o600);
        let b = dir.file("b.conf", "[prod]\nhost=from-b\n", 0o600);
        let (a, b) = (a.to_str().expect("utf-8"), b.to_str().expect("utf-8"));
        let info = resolve("", &[("PGSERVICE", "prod"), ("PGSERVICEFILE", a)]).expect("ok");
        assert_eq!(info.hosts, vec![Host::Tcp("from-a".into())]);
        let info = resolve(
            &format!("service=prod servicefile={b}"),
            &[("PGSERVICEFILE", a)],
        )
        .expect("ok");
        assert_eq!(info.hosts, vec![Host::Tcp("from-b".into())]);
    }

    #[test]
    fn the_user_file_comes_before_the_system_file_and_home_is_the_default() {
        let home = TempDir::new("service-home");
        home.file(".pg_service.conf", "[prod]\nhost=from-home\n", 0o600);
        let sys = TempDir::new("service-sys");
        sys.file(
            "pg_service.conf",
            "[prod]\nhost=from-sys\n[only-sys]\nhost=sys2\n",
            0o644,
        );
        let vars = [
            ("HOME", home.0.to_str().expect("utf-8")),
            ("PGSYSCONFDIR", sys.0.to_str().expect("utf-8")),
        ];
        let info = resolve("service=prod", &vars).expect("ok");
        assert_eq!(info.hosts, vec![Host::Tcp("from-home".into())]);
        let info = resolve("service=only-sys", &vars).expect("ok");
        assert_eq!(info.hosts, vec![Host::Tcp("sys2".into())]);
    }

    #[test]
    fn an_unknown_service_names_where_it_looked() {
        let dir = TempDir::new("service-missing");
        let file = dir.file("svc.conf", FILE, 0o600);
        let err = resolve(
            "service=nope",
            &[
                ("PGSERVICEFILE", file.to_str().expect("utf-8")),
                ("PGSYSCONFDIR", "/nonexistent"),
            ],
        )
        .expect_err("no such service");
        let msg = err.to_string();
        assert!(
            msg.contains("\"nope\"") && msg.contains("svc.conf"),
            "{msg}"
        );
        assert!(msg.contains("/nonexistent/pg_service.conf"), "{msg}");
    }

    #[test]
    fn bad_lines_name_the_file_and_line_never_the_value() {
        let dir = TempDir::new("service-bad");
        for (contents, line, reason) in [
            ("[prod]\nhost=a\npassword s3cret\n", 3, "keyword=value"),
            ("[prod]\nservice=other\n", 2, "nested"),
            ("[prod]\npasswd=s3cret\n", 2, "not a libpq"),
            ("[prod]\nport=s3cret\n", 2, "port"),
        ] {
            let file = dir.file("bad.conf", contents, 0o600);
            let err = resolve(
                "service=prod",
                &[("PGSERVICEFILE", file.to_str().expect("utf-8"))],
            )
            .expect_err(contents);
            let msg = err.to_string();
            assert!(msg.contains(&format!("line {line}")), "{msg}");
            assert!(msg.contains(reason), "{msg}");
            if !contents.contains("port=") {
                assert!(!msg.contains("s3cret"), "{msg}");
            }
        }
        // Lines of other sections are not checked.
        let file = dir.file("ok.conf", "[other]\nnonsense\n[prod]\nhost=a\n", 0o600);
        resolve(
            "service=prod",
            &[("PGSERVICEFILE", file.to_str().expect("utf-8"))],
        )
        .expect("only the service's section is read");
    }

    #[test]
    fn the_first_value_of_a_keyword_wins_and_spaces_around_equals_are_not_trimmed() {
        let dir = TempDir::new("service-first");
        let file = dir.file("svc.conf", "[prod]\nhost=first\nhost=second\n", 0o600);
        let info = resolve(
            "service=prod",
            &[("PGSERVICEFILE", file.to_str().expect("utf-8"))],
        )
        .expect("ok");
        assert_eq!(info.hosts, vec![Host::Tcp("first".into())]);
        let file = dir.file("sp.conf", "[prod]\nhost = spaced\n", 0o600);
        let err = resolve(
            "service=prod",
            &[("PGSERVICEFILE", file.to_str().expect("utf-8"))],
        )
        .expect_err("`host ` is not a keyword");
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
