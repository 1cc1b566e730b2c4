//! `PgBin`: where the PostgreSQL server programs (`initdb`, `pg_ctl`, `postgres`, `psql`)
//! live and which server version they are. [`PgBin::discover`] searches, in order,
//! `$PGSUB_PGBIN`, the directory of `initdb` on `PATH` (symlinks resolved, so
//! `/usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb` gives the real directory),
//! `pg_config --bindir`, and `/usr/lib/postgresql/*/bin` (highest version first).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::error::ClusterError;

/// The programs every server directory must hold.
const REQUIRED: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// A directory of PostgreSQL server binaries and the version they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBin {
    /// The directory holding `initdb`, `pg_ctl` and `postgres`.
    pub dir: PathBuf,
    /// The server version as `server_version_num` spells it, e.g. `150018` for 15.18.
    pub version_num: u32,
    /// The server version as printed by `postgres --version`, e.g. `"15.18"`.
    pub version: String,
}

impl PgBin {
    /// Finds the server binaries: `$PGSUB_PGBIN` (an error if it is set but unusable), then
    /// the directory of `initdb` on `PATH` with symlinks resolved, then `pg_config --bindir`
    /// (if it holds `initdb`), then the highest `/usr/lib/postgresql/*/bin`.
    pub fn discover() -> Result<PgBin, ClusterError> {
        if let Some(dir) = std::env::var_os("PGSUB_PGBIN").filter(|d| !d.is_empty()) {
            return PgBin::from_dir_with_origin(Path::new(&dir), "$PGSUB_PGBIN");
        }
        let candidates = initdb_on_path()
            .into_iter()
            .chain(pg_config_bindir())
            .chain(usr_lib_postgresql());
        for dir in candidates {
            if has_required(&dir) {
                return PgBin::from_dir_with_origin(&dir, "discovery");
            }
        }
        Err(ClusterError::NoBinaries)
    }

    /// Uses the binaries in `dir`, which must hold `initdb`, `pg_ctl` and `postgres`; runs
    /// `postgres --version` to learn the version.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<PgBin, ClusterError> {
        PgBin::from_dir_with_origin(dir.as_ref(), "PgBin::from_dir")
    }

    fn from_dir_with_origin(dir: &Path, origin: &str) -> Result<PgBin, ClusterError> {
        for program in REQUIRED {
            if !is_executable(&dir.join(program)) {
                return Err(ClusterError::MissingProgram {
                    dir: dir.to_path_buf(),
                    origin: origin.to_string(),
                    program,
                });
            }
        }
        let postgres = dir.join("postgres");
        let output = Command::new(&postgres)
            .arg("--version")
            .output()
            .map_err(|e| ClusterError::Version {
                program: postgres.clone(),
                detail: e.to_string(),
            })?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(ClusterError::Version {
                program: postgres,
                detail: format!(
                    "exit {}: {}{}",
                    output.status,
                    stdout.trim(),
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            });
        }
        let (version, version_num) =
            parse_version(&stdout).ok_or_else(|| ClusterError::Version {
                program: postgres.clone(),
                detail: format!("unexpected output {:?}", stdout.trim()),
            })?;
        Ok(PgBin {
            dir: dir.to_path_buf(),
            version_num,
            version,
        })
    }

    /// The path of `initdb`.
    pub fn initdb(&self) -> PathBuf {
        self.dir.join("initdb")
    }

    /// The path of `pg_ctl`.
    pub fn pg_ctl(&self) -> PathBuf {
        self.dir.join("pg_ctl")
    }

    /// The path of `postgres`.
    pub fn postgres(&self) -> PathBuf {
        self.dir.join("postgres")
    }

    /// The path of `psql`: the one in [`PgBin::dir`] if present, else plain `psql`, found
    /// on `PATH` when run.
    pub fn psql(&self) -> PathBuf {
        let own = self.dir.join("psql");
        if is_executable(&own) {
            own
        } else {
            PathBuf::from("psql")
        }
    }
}

/// Parses `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` into `("15.18", 150018)`.
/// Also handles `9.6.24` (90624), `16beta1` (160000), `17devel` (170000), `15rc2` (150000).
fn parse_version(output: &str) -> Option<(String, u32)> {
    let line = output.lines().next()?;
    let rest = match line.find("(PostgreSQL)") {
        Some(i) => &line[i + "(PostgreSQL)".len()..],
        None => line.rsplit_once(' ')?.1,
    };
    let version = rest.split_whitespace().next()?.to_string();
    let mut parts = version.split('.').map(leading_number);
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let num = if major >= 10 {
        major * 10000 + minor
    } else {
        let patch = parts.next().flatten().unwrap_or(0);
        major * 10000 + minor * 100 + patch
    };
    Some((version, num))
}

fn leading_number(s: &str) -> Option<u32> {
    let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn has_required(dir: &Path) -> bool {
    REQUIRED.iter().all(|p| is_executable(&dir.join(p)))
}

/// The real directory of the first `initdb` on `PATH`.
fn initdb_on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("initdb"))
        .find(|p| is_executable(p))
        .and_then(|p| std::fs::canonicalize(p).ok())
        .and_then(|p| p.parent().map(Path::to_path_buf))
}

/// `pg_config --bindir`, if `pg_config` is on `PATH` and answers.
fn pg_config_bindir() -> Option<PathBuf> {
    let output = Command::new("pg_config").arg("--bindir").output().ok()?;
    if !output.status.success() {
        return None;
    }
    let dir = String::from_utf8(output.stdout).ok()?;
    let dir = dir.trim();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

/// `/usr/lib/postgresql/*/bin`, highest version first.
fn usr_lib_postgresql() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name();
            let key = version_key(&name)?;
            Some((key, e.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// `"15"` → `[15]`, `"9.6"` → `[9, 6]`; `None` for names that are not versions.
fn version_key(name: &OsStr) -> Option<Vec<u32>> {
    name.to_str()?.split('.').map(|p| p.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        let v = parse_version;
        assert_eq!(
            v("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"),
            Some(("15.18".to_string(), 150018))
        );
        assert_eq!(
            v("postgres (PostgreSQL) 9.6.24"),
            Some(("9.6.24".into(), 90624))
        );
        assert_eq!(
            v("postgres (PostgreSQL) 16beta1"),
            Some(("16beta1".into(), 160000))
        );
        assert_eq!(
            v("postgres (PostgreSQL) 17devel"),
            Some(("17devel".into(), 170000))
        );
        assert_eq!(v("garbage"), None);
        assert_eq!(version_key(OsStr::new("9.6")), Some(vec![9, 6]));
        assert_eq!(version_key(OsStr::new("common")), None);
    }

    #[test]
    fn discover_finds_binaries_and_version() {
        let bin = PgBin::discover().expect("discover");
        assert!(bin.initdb().is_file(), "{bin:?}");
        assert!(bin.pg_ctl().is_file(), "{bin:?}");
        assert!(bin.postgres().is_file(), "{bin:?}");
        assert!(bin.version_num >= 100000, "{bin:?}");
        let major = bin.version_num / 10000;
        assert!(bin.version.starts_with(&major.to_string()), "{bin:?}");
        if std::env::var_os("PGSUB_PGBIN").is_none() {
            // Symlinks are resolved: the directory holds the real binaries.
            assert_eq!(std::fs::canonicalize(&bin.dir).unwrap(), bin.dir);
        }
        assert_eq!(PgBin::from_dir(&bin.dir).unwrap(), bin);
        let err = PgBin::from_dir("/nonexistent-pgsub-dir").unwrap_err();
        assert!(err.to_string().contains("PGSUB_PGBIN"), "{err}");
    }
}
