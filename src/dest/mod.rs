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

pub mod origin;
pub mod subscriptions;

use tokio_postgres::Client;

use crate::conninfo::Conninfo;
use crate::error::Result;
use crate::pg::SqlError;
use crate::pg::client::connect_client;

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

/// Connects to the destination and prepares the session for applying changes.
pub async fn connect(info: &Conninfo) -> Result<Dest> {
    let client = connect_client(info, "destination").await?;
    let target = info.host_display();
    let ctx = |what: &str| format!("preparing the destination session ({what})");
    // The settings, the version and the replica role go out together: one round trip.
    // `plan_cache_mode` (12+): apply statements find rows by key. A custom plan for a long
    // run of keys guesses a hash join over a sequential scan of the whole table (the
    // array's length looks like many rows); the generic plan is the index lookup per key
    // that is wanted.
    let settings = client.simple_query(
        "SET datestyle = ISO; SET intervalstyle = postgres; SET extra_float_digits = 3; \
         SET synchronous_commit = off; \
         SELECT pg_catalog.set_config('plan_cache_mode', 'force_generic_plan', false) \
         WHERE pg_catalog.current_setting('server_version_num')::int >= 120000; \
         SHOW server_version_num",
    );
    let (settings, replica_role) = tokio::join!(settings, set_replica_role(&client));
    // The version is the last row: SHOW comes last (the set_config SELECT returns one
    // before it on 12+).
    let version_num = settings
        .map_err(|e| SqlError::new(ctx("settings"), e))?
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0),
            _ => None,
        })
        .last()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let replica_role = replica_role?;
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

/// What an apply session of subscription `name` needs to know of its destination.
#[derive(Debug, Clone, Copy)]
pub struct ApplySetup {
    /// The round trip ([`round_trip`]).
    pub round_trip: std::time::Duration,
    /// The origin id pgsub's writes carry, where the destination tells who last wrote a
    /// row ([`origin::own_origin_id`]).
    pub own_origin: Option<u32>,
}

/// Times the destination's round trip and sets up the session's replication origin for
/// `name`: what every apply session does before its first change.
pub async fn prepare_apply(dest: &Dest, name: &str) -> Result<ApplySetup> {
    let round_trip = round_trip(&dest.client).await?;
    tracing::debug!(round_trip = ?round_trip, "destination round trip");
    let tagged = origin::setup(&dest.client, name).await?;
    let own_origin = origin::own_origin_id(&dest.client, dest.version_num, name, tagged).await?;
    Ok(ApplySetup {
        round_trip,
        own_origin,
    })
}

/// The destination's round trip: the fastest of three trivial queries, sent together
/// (the first reply comes back one round trip after they went out; one round trip in
/// all, not three).
pub async fn round_trip(client: &Client) -> Result<std::time::Duration> {
    let timed = || async {
        let t0 = std::time::Instant::now();
        client
            .simple_query("")
            .await
            .map(|_| t0.elapsed())
            .map_err(|e| SqlError::new("timing a round trip to the destination", e))
    };
    let (a, b, c) = tokio::join!(timed(), timed(), timed());
    Ok(a?.min(b?).min(c?))
}
