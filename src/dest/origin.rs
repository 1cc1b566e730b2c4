//! Origin-tagged writes: the destination session that applies the stream is set up with
//! a replication origin named after the subscription (`pgsub_<name>`), as the built-in
//! apply worker is with `pg_<subscription oid>`. Every transaction it commits then carries
//! that origin in the destination's WAL, so that a subscription (native, or another pgsub)
//! reading the destination with `origin = none` leaves those changes out: two replications
//! between the same two servers, one each way, do not send each other's changes back.
//!
//! Setting up a session origin takes a superuser or a role granted EXECUTE on
//! `pg_replication_origin_session_setup` (and on `pg_replication_origin_create`, for the
//! first run). Without it the session is not tagged, and pgsub says what that means.
//! An origin is held by one session at a time: the session of a pgsub that just died may
//! still hold it for a moment (55006, retried).

use tokio_postgres::Client;

use crate::error::Result;
use crate::pg::SqlError;
use crate::pg::sqlstate;

/// The origin name of subscription `name` in database `database` (origins are shared by
/// the destination's databases; subscription names are per database).
pub fn origin_name(database: &str, name: &str) -> String {
    format!("pgsub_{database}_{name}")
}

/// The origin name of subscription `name` in the connected database.
async fn origin_of(client: &Client, name: &str) -> Result<String> {
    let database: String = client
        .query_typed("SELECT pg_catalog.current_database()::text", &[])
        .await
        .map_err(|e| SqlError::new("reading the destination's database name", e))?
        .first()
        .map(|r| r.get(0))
        .unwrap_or_default();
    Ok(origin_name(&database, name))
}

/// Whether the session was tagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tagged {
    /// Its commits carry the origin.
    Yes,
    /// The role may not set up an origin: its commits carry none.
    NotPermitted,
}

/// Sets the session's replication origin to the subscription's, creating the origin the
/// first time.
pub async fn setup(client: &Client, name: &str) -> Result<Tagged> {
    let origin = origin_of(client, name).await?;
    let mut in_use = 0;
    loop {
        match try_setup(client, &origin).await {
            Ok(()) => {
                tracing::debug!(origin = %origin, "destination transactions carry the replication origin");
                return Ok(Tagged::Yes);
            }
            Err(e) => match e.code().map(|c| c.code()) {
                Some(sqlstate::INSUFFICIENT_PRIVILEGE | sqlstate::CONFIGURATION_LIMIT_EXCEEDED) => {
                    tracing::info!(
                        origin = %origin,
                        "pgsub's writes on the destination carry no replication origin ({}): a subscription reading the destination with origin = none would send them back (setting one needs a superuser or EXECUTE on pg_replication_origin_create and pg_replication_origin_session_setup, and a free origin slot)",
                        crate::pg::describe(&e)
                    );
                    return Ok(Tagged::NotPermitted);
                }
                // Still held by the session of a pgsub that just died.
                Some(sqlstate::OBJECT_IN_USE) if in_use < 50 => {
                    in_use += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                _ => {
                    return Err(SqlError::new(
                        format!("setting up the replication origin {origin} on the destination (is another pgsub with the same --name writing into this database?)"),
                        e,
                    )
                    .into());
                }
            },
        }
    }
}

async fn try_setup(
    client: &Client,
    origin: &str,
) -> std::result::Result<(), tokio_postgres::Error> {
    // One round trip for both (a far destination pays each one).
    let origin = crate::pg::ident::literal(origin);
    client
        .batch_execute(&format!(
            "SELECT pg_catalog.pg_replication_origin_create({origin}) \
             WHERE pg_catalog.pg_replication_origin_oid({origin}) IS NULL; \
             SELECT pg_catalog.pg_replication_origin_session_setup({origin})"
        ))
        .await?;
    Ok(())
}

/// The origin id a row last written by this session carries (0 when `tagged` is
/// [`Tagged::NotPermitted`]), where the destination can tell who last wrote a row:
/// `track_commit_timestamp` on, and PostgreSQL 14 or later. `None` where it cannot.
pub async fn own_origin_id(
    client: &Client,
    version_num: u32,
    name: &str,
    tagged: Tagged,
) -> Result<Option<u32>> {
    if version_num < 140000 {
        return Ok(None);
    }
    let on: bool = client
        .query_typed(
            "SELECT pg_catalog.current_setting('track_commit_timestamp')::bool",
            &[],
        )
        .await
        .map_err(|e| SqlError::new("reading the destination's track_commit_timestamp", e))?
        .first()
        .is_some_and(|r| r.get(0));
    if !on {
        return Ok(None);
    }
    if tagged == Tagged::NotPermitted {
        return Ok(Some(0));
    }
    let id: i64 = client
        .query_one(
            "SELECT pg_catalog.pg_replication_origin_oid($1)::int8",
            &[&origin_of(client, name).await?],
        )
        .await
        .map_err(|e| SqlError::new("reading the replication origin's id", e))?
        .get(0);
    Ok(Some(id as u32))
}

/// What became of a subscription's origin when it was asked to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Dropped: its replication-state slot (one of `max_replication_slots`) is free.
    Yes,
    /// There was none.
    NotThere,
    /// The role may not drop origins (a superuser, or EXECUTE on
    /// `pg_replication_origin_drop`, may).
    NotPermitted,
    /// A session holds it: a pgsub with this name is still running.
    InUse,
}

/// Drops the origin of subscription `name` in the connected database, if there is one.
pub async fn drop(client: &Client, name: &str) -> Result<Dropped> {
    let origin = origin_of(client, name).await?;
    let found = client
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_replication_origin WHERE roname = $1)",
            &[&origin],
        )
        .await;
    match found {
        Ok(row) if !row.get::<_, bool>(0) => return Ok(Dropped::NotThere),
        Ok(_) => {}
        Err(e) if e.code().map(|c| c.code()) == Some(sqlstate::INSUFFICIENT_PRIVILEGE) => {
            return Ok(Dropped::NotPermitted);
        }
        Err(e) => return Err(SqlError::new("looking for pgsub's replication origin", e).into()),
    }
    match client
        .execute(
            "SELECT pg_catalog.pg_replication_origin_drop($1)",
            &[&origin],
        )
        .await
    {
        Ok(_) => Ok(Dropped::Yes),
        Err(e) => match e.code().map(|c| c.code()) {
            Some(sqlstate::INSUFFICIENT_PRIVILEGE) => Ok(Dropped::NotPermitted),
            Some(sqlstate::OBJECT_IN_USE) => Ok(Dropped::InUse),
            _ => Err(SqlError::new(format!("dropping the replication origin {origin}"), e).into()),
        },
    }
}
