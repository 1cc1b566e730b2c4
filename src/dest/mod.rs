//! The destination server: connecting with `tokio-postgres` (TLS through rustls, the same
//! `sslmode` rules as the source), and preparing a session to apply changes the way the
//! built-in apply worker does.
//!
//! Session settings:
//! - `datestyle=ISO`, `intervalstyle=postgres`, `extra_float_digits=3`: the formats the
//!   source's text values come in, so values read back compare equal;
//! - `synchronous_commit=off`, as the apply worker runs: pgsub then acknowledges a source
//!   transaction only once the destination's WAL is flushed past its commit;
//! - `plan_cache_mode=force_generic_plan` (12+): the prepared apply statements look rows up
//!   by key, one index probe per row, however long the run;
//! - `session_replication_role=replica` when the role may set it (superuser, a granted
//!   `SET` privilege, or `aiven_extras.session_replication_role`), so triggers and
//!   foreign keys behave as under a native subscription; otherwise a warning.

pub mod subscriptions;
pub mod tls;

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::conninfo::{Conninfo, SslMode};
use crate::error::{Error, ErrorKind, Result};

/// A connected destination session.
pub struct Dest {
    /// The client (shared with the task that runs the apply statements).
    pub client: std::sync::Arc<Client>,
    /// `host:port` or socket, for messages.
    pub target: String,
    /// `server_version_num`.
    pub version_num: u32,
    /// `session_replication_role = replica` is in effect.
    pub replica_role: bool,
}

impl std::fmt::Debug for Dest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dest")
            .field("target", &self.target)
            .field("version_num", &self.version_num)
            .field("replica_role", &self.replica_role)
            .finish()
    }
}

/// What went wrong talking to a destination (or a plain SQL session on the source).
#[derive(Debug, thiserror::Error)]
#[error("{context}: {}", describe(.source))]
pub struct SqlError {
    /// What pgsub was doing.
    pub context: String,
    /// The client's error.
    #[source]
    pub source: tokio_postgres::Error,
    /// It happened while connecting.
    pub connecting: bool,
}

/// The server's message with SQLSTATE, detail and hint, or the client's own error.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!(
                "{}: {} (SQLSTATE {})",
                db.severity(),
                db.message(),
                db.code().code()
            );
            if let Some(d) = db.detail() {
                s.push_str(&format!("; DETAIL: {d}"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!("; HINT: {h}"));
            }
            if let Some(w) = db.where_().filter(|w| w.starts_with("COPY ")) {
                s.push_str(&format!("; CONTEXT: {w}"));
            }
            s
        }
        None => e.to_string(),
    }
}

impl SqlError {
    /// Wraps `source` with what pgsub was doing.
    pub fn new(context: impl Into<String>, source: tokio_postgres::Error) -> Self {
        SqlError {
            context: context.into(),
            source,
            connecting: false,
        }
    }

    /// A failure to connect.
    pub fn connecting(context: impl Into<String>, source: tokio_postgres::Error) -> Self {
        SqlError {
            connecting: true,
            ..SqlError::new(context, source)
        }
    }

    /// The SQLSTATE, for a server error.
    pub fn code(&self) -> Option<&str> {
        self.source.as_db_error().map(|d| d.code().code())
    }

    /// Its kind: a server error by its SQLSTATE; a failure to connect is a setup
    /// problem (what `sync` retries after its first start); a connection lost is
    /// transient.
    pub fn kind(&self) -> ErrorKind {
        match self.code() {
            Some(c) => match crate::pg::sqlstate::classify(c) {
                crate::pg::sqlstate::Class::Config => ErrorKind::Config,
                _ if self.connecting => ErrorKind::Config,
                crate::pg::sqlstate::Class::Transient => ErrorKind::Transient,
                crate::pg::sqlstate::Class::Definite => ErrorKind::Definite,
            },
            None if self.connecting => ErrorKind::Config,
            None if self.source.is_closed() || self.source.as_db_error().is_none() => {
                ErrorKind::Transient
            }
            None => ErrorKind::Definite,
        }
    }
}

/// Runs `sql` and returns its rows as text.
pub async fn text_rows(client: &Client, sql: &str, what: &str) -> Result<Vec<Vec<Option<String>>>> {
    let msgs = client
        .simple_query(sql)
        .await
        .map_err(|e| SqlError::new(what.to_owned(), e))?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect())
}

/// The first column of the first row of `sql`, as text (`None`: no row, or NULL).
pub async fn first_value(client: &Client, sql: &str, what: &str) -> Result<Option<String>> {
    Ok(text_rows(client, sql, what)
        .await?
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten()))
}

/// Connects a `tokio-postgres` client (TLS per `sslmode`) and drives its connection in
/// the background.
pub async fn connect_client(info: &Conninfo, what: &str) -> Result<Client> {
    let mut config = info.tokio_postgres_config();
    if config.get_application_name().is_none() {
        config.application_name(crate::conn::DEFAULT_APPLICATION_NAME);
    }
    // The text formats pgsub reads and writes values in, whatever the role's settings.
    let formats = "-c datestyle=ISO -c intervalstyle=postgres -c extra_float_digits=3";
    let options = match config.get_options() {
        Some(o) if !o.is_empty() => format!("{o} {formats}"),
        _ => formats.to_owned(),
    };
    config.options(&options);
    let target = info.host_display();
    let fail = |e| {
        Error::from(SqlError::connecting(
            format!("connecting to the {what} ({target})"),
            e,
        ))
    };
    let tls = crate::conn::tls::client_config(info).map_err(|e| Error::Config(e.to_string()))?;
    let client = match (tls, info.sslmode) {
        (Some(cfg), mode) if mode != SslMode::Disable => {
            let (client, conn) = config.connect(tls::MakeRustls(cfg)).await.map_err(fail)?;
            spawn_connection(conn);
            client
        }
        _ => {
            let (client, conn) = config.connect(NoTls).await.map_err(fail)?;
            spawn_connection(conn);
            client
        }
    };
    Ok(client)
}

fn spawn_connection<C>(conn: C)
where
    C: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("connection ended: {e}");
        }
    });
}

/// Connects to the destination and prepares the session for applying changes.
pub async fn connect(info: &Conninfo) -> Result<Dest> {
    let client = connect_client(info, "destination").await?;
    let target = info.host_display();
    let ctx = |what: &str| format!("preparing the destination session ({what})");
    client
        .batch_execute(
            "SET datestyle = ISO; SET intervalstyle = postgres; SET extra_float_digits = 3; \
             SET synchronous_commit = off",
        )
        .await
        .map_err(|e| SqlError::new(ctx("settings"), e))?;
    let version_num = client
        .query_one("SHOW server_version_num", &[])
        .await
        .map_err(|e| SqlError::new(ctx("version"), e))?
        .get::<_, String>(0)
        .parse()
        .unwrap_or(0);
    if version_num >= 120000 {
        // Apply statements find rows by key. A custom plan for a long run of keys guesses
        // a hash join over a sequential scan of the whole table (the array's length looks
        // like many rows); the generic plan is the index lookup per key that is wanted.
        client
            .batch_execute("SET plan_cache_mode = force_generic_plan")
            .await
            .map_err(|e| SqlError::new(ctx("plan_cache_mode"), e))?;
    }
    let replica_role = set_replica_role(&client).await?;
    if !replica_role {
        tracing::warn!(
            "cannot set session_replication_role = replica on the destination (it needs a superuser, a role granted SET on it, or the aiven_extras extension): triggers and foreign keys on the destination fire while changes are applied"
        );
    }
    Ok(Dest {
        client: std::sync::Arc::new(client),
        target,
        version_num,
        replica_role,
    })
}

/// `session_replication_role = replica`, directly or through `aiven_extras`: triggers
/// and foreign keys then behave as under a native subscription (also for the initial
/// copy, whose tables arrive in any order). Returns whether it is in effect.
pub async fn set_replica_role(client: &Client) -> Result<bool> {
    if client
        .batch_execute("SET session_replication_role = replica")
        .await
        .is_ok()
    {
        return Ok(true);
    }
    let has_extras = client
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'aiven_extras'",
            &[],
        )
        .await
        .map_err(|e| SqlError::new("looking for the aiven_extras extension", e))?
        .is_some();
    if has_extras
        && client
            .batch_execute("SELECT aiven_extras.session_replication_role('replica')")
            .await
            .is_ok()
    {
        return Ok(true);
    }
    Ok(false)
}
