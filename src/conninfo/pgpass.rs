//! The password file (`~/.pgpass`, `PGPASSFILE`, `passfile=`), read as libpq reads it.
//!
//! This module owns finding a password for a host, port, database and user in a file of
//! `hostname:port:database:username:password` lines: `*` matches anything in the first four
//! fields, `\:` and `\\` stand for `:` and `\`, lines starting with `#` are comments, and the
//! first matching line wins. As libpq, a missing file is no password, and a file readable or
//! writable by group or others is ignored with a warning. The caller decides which host name
//! a Unix socket is looked up as (libpq: `localhost` for the default socket directory).
//!
//! Source: PostgreSQL `src/interfaces/libpq/fe-connect.c` (`passwordFromFile`,
//! `pwdfMatchesString`) and the libpq documentation, "The Password File".

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why the password file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PgpassError {
    /// The file exists but could not be read.
    #[error("could not read password file \"{}\": {source}", .path.display())]
    Read {
        /// The password file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The file is not UTF-8 text.
    #[error("password file \"{}\" is not valid UTF-8: pgsub reads it as UTF-8 text", .path.display())]
    NotUtf8 {
        /// The password file.
        path: PathBuf,
    },
}

/// The password for `host`, `port`, `dbname` and `user` in the password file at `path`, or
/// `None` when the file is missing, insecure (group or world access: ignored with a warning,
/// as libpq does), not a plain file, or has no matching line.
pub fn lookup(
    path: &Path,
    host: &str,
    port: u16,
    dbname: &str,
    user: &str,
) -> Result<Option<String>, PgpassError> {
    Ok(load(path)?.and_then(|contents| find_in(&contents, host, port, dbname, user)))
}

/// `$HOME/.pgpass`, where libpq looks when neither `passfile` nor `PGPASSFILE` is given
/// (the home directory comes from `/etc/passwd` when `HOME` is unset).
pub fn default_path() -> Option<PathBuf> {
    default_path_from(&|name: &str| std::env::var(name).ok())
}

/// [`default_path`] reading the environment through `get`.
pub(super) fn default_path_from(get: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    Some(super::env::home_from(get)?.join(".pgpass"))
}

/// The contents of the password file, or `None` when libpq would not read it.
pub(super) fn load(path: &Path) -> Result<Option<String>, PgpassError> {
    let read_error = |source| PgpassError::Read {
        path: path.to_path_buf(),
        source,
    };
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_error(e)),
    };
    if !metadata.is_file() {
        tracing::warn!(
            "password file \"{}\" is not a plain file; ignoring it",
            path.display()
        );
        return Ok(None);
    }
    if metadata.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "password file \"{}\" has group or world access; permissions should be u=rw (0600) or less",
            path.display()
        );
        return Ok(None);
    }
    let bytes = std::fs::read(path).map_err(read_error)?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| PgpassError::NotUtf8 {
            path: path.to_path_buf(),
        })
}

/// The password of the first line of `contents` matching `host`, `port`, `dbname` and `user`.
pub(super) fn find_in(
    contents: &str,
    host: &str,
    port: u16,
    dbname: &str,
    user: &str,
) -> Option<String> {
    let port = port.to_string();
    contents
        .split('\n')
        .filter(|line| !line.starts_with('#'))
        .map(|line| line.trim_end_matches(['\r', '\n']))
        .filter(|line| !line.is_empty())
        .find_map(|line| {
            let rest = match_field(line, host)?;
            let rest = match_field(rest, &port)?;
            let rest = match_field(rest, dbname)?;
            let rest = match_field(rest, user)?;
            Some(unescape_password(rest))
        })
}

/// Matches the field at the start of `line` against `token` (libpq's `pwdfMatchesString`):
/// a field of just `*` matches anything; otherwise it must equal `token` once `\:` and `\\`
/// are unescaped. Returns what follows the field's `:`.
fn match_field<'a>(line: &'a str, token: &str) -> Option<&'a str> {
    if let Some(rest) = line.strip_prefix("*:") {
        return Some(rest);
    }
    let mut wanted = token.chars();
    let mut chars = line.char_indices();
    while let Some((i, c)) = chars.next() {
        let (c, escaped) = match c {
            '\\' => (chars.next()?.1, true),
            c => (c, false),
        };
        let token_done = wanted.as_str().is_empty();
        if c == ':' && !escaped && token_done {
            return line.get(i + 1..);
        }
        if token_done || wanted.next() != Some(c) {
            return None;
        }
    }
    None
}

/// The password field: up to the next unescaped `:`, with `\x` standing for `x`.
fn unescape_password(field: &str) -> String {
    let mut password = String::with_capacity(field.len());
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ':' => break,
            '\\' => match chars.next() {
                Some(next) => password.push(next),
                None => password.push('\\'),
            },
            c => password.push(c),
        }
    }
    password
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::fs;

    /// A directory under the system temp dir, removed when dropped.
    pub(crate) struct TempDir(pub(crate) PathBuf);

    impl TempDir {
        pub(crate) fn new(name: &str) -> TempDir {
            let dir =
                std::env::temp_dir().join(format!("pgsub-conninfo-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }

        /// Writes `contents` to `name` in this directory with permissions `mode`.
        pub(crate) fn file(&self, name: &str, contents: &str, mode: u32) -> PathBuf {
            let path = self.0.join(name);
            fs::write(&path, contents).expect("write temp file");
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const FILE: &str = "\
# comment line: *:*:*:*:never
db.example.com:5432:app:alice:first
db.example.com:5432:app:alice:second
*:5433:*:bob:star-host\\:with\\\\escapes
\\*:*:*:*:literal-star
fe80\\:\\:1:*:*:*:v6
localhost:*:*:carol:socket
*:*:*:dave:trailing:field:ignored
*:*:*:erin:
";

    fn find(host: &str, port: u16, dbname: &str, user: &str) -> Option<String> {
        find_in(FILE, host, port, dbname, user)
    }

    #[test]
    fn pgpass_wildcards_escapes_and_first_match_wins() {
        assert_eq!(
            find("db.example.com", 5432, "app", "alice").as_deref(),
            Some("first")
        );
        assert_eq!(
            find("anything", 5433, "any", "bob").as_deref(),
            Some("star-host:with\\escapes")
        );
        assert_eq!(find("anything", 5432, "any", "bob"), None);
        assert_eq!(find("*", 1, "x", "y").as_deref(), Some("literal-star"));
        assert_eq!(find("other", 1, "x", "y"), None);
        assert_eq!(find("fe80::1", 5432, "x", "zed").as_deref(), Some("v6"));
        assert_eq!(find("h", 5432, "d", "dave").as_deref(), Some("trailing"));
        assert_eq!(find("h", 5432, "d", "erin").as_deref(), Some(""));
    }

    #[test]
    fn pgpass_comment_lines_and_crlf_are_handled() {
        assert_eq!(find("h", 5432, "d", "never"), None);
        let crlf = "h:5432:d:u:pw\r\n";
        assert_eq!(find_in(crlf, "h", 5432, "d", "u").as_deref(), Some("pw"));
        assert_eq!(find_in("", "h", 5432, "d", "u"), None);
        assert_eq!(find_in("h:5432:d", "h", 5432, "d", "u"), None);
        assert_eq!(find_in("h:5432:d:u", "h", 5432, "d", "u"), None);
    }

    #[test]
    fn pgpass_field_must_match_whole_token() {
        assert_eq!(find_in("hos:5432:d:u:pw", "host", 5432, "d", "u"), None);
        assert_eq!(find_in("hostx:5432:d:u:pw", "host", 5432, "d", "u"), None);
        assert_eq!(find_in("h:54320:d:u:pw", "h", 5432, "d", "u"), None);
        assert_eq!(find_in("h*:5432:d:u:pw", "h", 5432, "d", "u"), None);
        assert_eq!(find_in("h\\", "h", 5432, "d", "u"), None);
    }

    #[test]
    fn pgpass_lookup_reads_a_private_file() {
        let dir = TempDir::new("pgpass-private");
        let path = dir.file("pgpass", "h:5432:d:u:secret\n", 0o600);
        assert_eq!(
            lookup(&path, "h", 5432, "d", "u")
                .expect("readable")
                .as_deref(),
            Some("secret")
        );
        assert_eq!(lookup(&path, "h", 5433, "d", "u").expect("readable"), None);
    }

    #[test]
    fn pgpass_with_group_access_is_ignored() {
        let dir = TempDir::new("pgpass-group");
        for mode in [0o640, 0o604, 0o660, 0o644] {
            let path = dir.file("pgpass", "*:*:*:*:secret\n", mode);
            assert_eq!(lookup(&path, "h", 5432, "d", "u").expect("no error"), None);
        }
        let path = dir.file("pgpass", "*:*:*:*:secret\n", 0o400);
        assert_eq!(
            lookup(&path, "h", 5432, "d", "u")
                .expect("no error")
                .as_deref(),
            Some("secret")
        );
    }

    #[test]
    fn pgpass_missing_file_or_directory_is_no_password() {
        let dir = TempDir::new("pgpass-missing");
        let missing = dir.0.join("nope");
        assert_eq!(
            lookup(&missing, "h", 5432, "d", "u").expect("no error"),
            None
        );
        assert_eq!(lookup(&dir.0, "h", 5432, "d", "u").expect("no error"), None);
    }

    #[test]
    fn pgpass_default_path_is_in_home() {
        let get = |name: &str| (name == "HOME").then(|| "/home/alice".to_owned());
        assert_eq!(
            default_path_from(&get),
            Some(PathBuf::from("/home/alice/.pgpass"))
        );
    }
}
