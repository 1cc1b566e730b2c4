//! The source side of a run: connecting for replication, and the checks made before
//! anything streams (the server's version and `wal_level`, the publications, the slot).
//!
//! Every check that fails produces an [`Error::Config`] whose message says what is wrong
//! and the command that fixes it; `pgsub` exits 2 for those. Nothing here creates or
//! drops anything unless asked: an invalidated slot is reported, never recreated.

pub mod platform;
pub mod slots;
pub mod tables;

use std::time::{Duration, Instant};

use crate::conn::Connection;
use crate::conninfo::Conninfo;
use crate::error::{Error, Result};
use platform::Platform;
use slots::SlotInfo;

/// Oldest server pgsub streams from (logical replication with pgoutput).
pub const MIN_SERVER_VERSION: u32 = 100000;

/// Checks a slot name: `[a-z0-9_]`, 1 to 63 characters, as PostgreSQL requires.
pub fn validate_slot_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "invalid slot name {name:?}: replication slot names may contain only lower-case letters, digits and underscores (at most 63)"
        )))
    }
}

/// Opens a replication connection for the start of a command: any failure is a
/// [`Error::Startup`] (exit 2), with a hint for the usual causes.
pub async fn connect(info: &Conninfo, replication: bool) -> Result<Connection> {
    match Connection::connect(info, replication).await {
        Ok(c) => Ok(c),
        Err(e) if replication && e.code() == Some(crate::pg::sqlstate::INSUFFICIENT_PRIVILEGE) => {
            // The role may log in but not replicate: what to grant depends on the platform,
            // which a plain session can tell.
            let platform = match Connection::connect(info, false).await {
                Ok(mut plain) => {
                    let p = Platform::detect(&mut plain).await;
                    plain.close().await;
                    p
                }
                Err(_) => return Err(Error::Startup(Box::new(e))),
            };
            let user = info.user.as_deref().unwrap_or("the role");
            Err(Error::Config(format!(
                "{e}\nhint: {}",
                platform.replication_role_fix(user)
            )))
        }
        Err(e) => Err(Error::Startup(Box::new(e))),
    }
}

/// The server's system identifier, when the role may read `pg_control_system()`.
pub async fn system_identifier(conn: &mut Connection) -> Option<String> {
    conn.simple_query("SELECT system_identifier::text FROM pg_catalog.pg_control_system()")
        .await
        .ok()
        .and_then(|rows| rows.first().and_then(|r| r.get_idx(0)).map(str::to_owned))
}

/// Server version and `wal_level` checks.
/// `--failover` needs PostgreSQL 17 or later on the source.
pub fn check_failover(conn: &Connection, failover: bool) -> Result<()> {
    let version = conn.server_version_num();
    if failover && version < 170000 {
        return Err(Error::Config(format!(
            "--failover needs PostgreSQL 17 or later on the source ({} runs {}): failover slots (synchronized to standbys with sync_replication_slots) came with 17; run without --failover",
            conn.target(),
            crate::pgoutput::options::version_text(version)
        )));
    }
    Ok(())
}

pub async fn check_server(conn: &mut Connection) -> Result<()> {
    let version = conn.server_version_num();
    if version < MIN_SERVER_VERSION {
        return Err(Error::Config(format!(
            "the source runs PostgreSQL {} ({}); pgsub needs 10 or newer (logical replication with pgoutput)",
            conn.parameter("server_version").unwrap_or("unknown"),
            version
        )));
    }
    let rows = conn.simple_query("SHOW wal_level").await?;
    let level = rows
        .first()
        .and_then(|r| r.get_idx(0))
        .unwrap_or("")
        .to_owned();
    if level != "logical" {
        let platform = Platform::detect(conn).await;
        return Err(Error::Config(format!(
            "wal_level is '{level}' on the source ({}), and logical decoding needs 'logical': {}",
            conn.target(),
            platform.wal_level_fix()
        )));
    }
    Ok(())
}

/// Checks that every publication exists in the connected database.
pub async fn check_publications(conn: &mut Connection, wanted: &[String]) -> Result<()> {
    if wanted.is_empty() {
        return Err(Error::Usage(
            "no publication given: pass --publication NAME (several as a comma-separated list)"
                .into(),
        ));
    }
    let rows = conn
        .simple_query("SELECT pubname FROM pg_catalog.pg_publication ORDER BY 1")
        .await?;
    let existing: Vec<String> = rows
        .iter()
        .filter_map(|r| r.get_idx(0).map(str::to_owned))
        .collect();
    let missing: Vec<&String> = wanted.iter().filter(|p| !existing.contains(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names = missing
        .iter()
        .map(|m| format!("\"{m}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let there = if existing.is_empty() {
        "there is no publication in that database".to_owned()
    } else {
        format!("publications there: {}", existing.join(", "))
    };
    let all_tables = match Platform::detect(conn)
        .await
        .all_tables_publication(missing[0])
    {
        Some(how) => format!(" ({how})"),
        None => String::new(),
    };
    Err(Error::Config(format!(
        "publication {names} does not exist in database \"{}\" on the source ({}); {there}. Create it with CREATE PUBLICATION {} FOR TABLE … (or FOR ALL TABLES{all_tables}), or name an existing one",
        conn.database(),
        conn.target(),
        missing[0]
    )))
}

/// How a command treats the slot it streams from.
#[derive(Debug, Clone)]
pub struct SlotRequest {
    /// Slot name.
    pub name: String,
    /// Create it when missing.
    pub create: bool,
    /// What a slot created here does beyond decoding.
    pub features: crate::conn::replication::SlotFeatures,
    /// How long to wait for an active slot to become free.
    pub wait: Duration,
}

/// Finds the slot and checks that it can be streamed from; creates it when asked and
/// missing; waits for it while another process holds it.
pub async fn prepare_slot(conn: &mut Connection, req: &SlotRequest) -> Result<SlotInfo> {
    validate_slot_name(&req.name)?;
    loop {
        if slots::find(conn, &req.name).await?.is_none() {
            if !req.create {
                return Err(Error::Config(format!(
                    "replication slot \"{}\" does not exist on the source ({}): create it with `pgsub slot create --source … --slot {}`, or pass --create-slot",
                    req.name,
                    conn.target(),
                    req.name
                )));
            }
            conn.create_replication_slot(
                &req.name,
                false,
                crate::conn::replication::SnapshotAction::Nothing,
                req.features,
            )
            .await?;
            tracing::info!(slot = %req.name, "created replication slot");
        }
        // A slot that vanishes while it is waited for was being created by a client
        // that died: create it (when asked) or report it missing.
        if let Some(info) = wait_for_release(conn, &req.name, req.wait).await? {
            return Ok(info);
        }
    }
}

/// Waits, up to `wait`, for slot `name` to be free (the walsender of a client that just
/// died still holding it); `None` when it vanishes meanwhile (a slot whose creation that
/// client did not live to finish is dropped by its walsender).
pub async fn wait_for_release(
    conn: &mut Connection,
    name: &str,
    wait: Duration,
) -> Result<Option<SlotInfo>> {
    let started = Instant::now();
    loop {
        let Some(info) = slots::find(conn, name).await? else {
            return Ok(None);
        };
        info.check_usable(Some(conn.database()))?;
        match info.active_pid {
            Some(pid) if info.active => {
                if started.elapsed() >= wait {
                    return Err(Error::Config(format!(
                        "replication slot \"{name}\" is in use by the process with PID {pid} on the source (another pgsub, pg_recvlogical or a subscription); stop that process, or wait for it to exit: pgsub waited {} s (--slot-wait)",
                        wait.as_secs()
                    )));
                }
                tracing::info!(slot = %name, pid, "slot is active, waiting for it to be released");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            _ => return Ok(Some(info)),
        }
    }
}
