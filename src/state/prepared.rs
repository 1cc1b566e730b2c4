//! `pgsub.prepared`: the marks of two-phase transactions (`sync --two-phase`).
//!
//! A source transaction prepared for two-phase commit becomes a prepared transaction on
//! the destination under a GID of pgsub's own ([`gid`]: the subscription, the source's
//! system identifier and the transaction's xid, so it collides with nobody's). Inside it,
//! before `PREPARE TRANSACTION`, pgsub inserts its mark here; the mark becomes visible with
//! `COMMIT PREPARED` and vanishes with `ROLLBACK PREPARED`, and is removed in the
//! transaction that records the COMMIT PREPARED's position as progress. So after any
//! crash one query tells what the destination holds of a source transaction
//! ([`find`]):
//!
//! | `pg_prepared_xacts` has the GID | mark visible | the destination holds it |
//! |---|---|---|
//! | yes | – | prepared: its body is not applied again; COMMIT/ROLLBACK PREPARED finishes it |
//! | no  | yes | committed, its position not yet recorded: nothing to do but record it |
//! | no  | no  | nothing: not prepared yet, or rolled back |
//!
//! A prepared transaction never writes `pgsub.progress`: it holds the row locks of what
//! it wrote until it is finished, and the source's later transactions, applied meanwhile,
//! write that row.

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::pg::SqlError;

/// Longest GID PostgreSQL takes (`GIDSIZE` less its terminator).
const MAX_GID: usize = 199;

/// What the destination holds of a prepared source transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Prepared, not yet finished.
    Prepared,
    /// Committed (its mark is visible), its position perhaps not yet recorded.
    Committed,
    /// Nothing: never prepared here, or rolled back.
    Nothing,
}

/// The destination's GID for source transaction `xid` of subscription `name` from source
/// system `system_id`.
pub fn gid(name: &str, system_id: &str, xid: u32) -> String {
    let head = format!("pgsub_{system_id}_{xid}_");
    if head.len() + name.len() <= MAX_GID {
        return format!("{head}{name}");
    }
    // A long name is stood for by its FNV-1a hash.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{head}{h:016x}")
}

fn err(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |e| Error::from(SqlError::new(what, e))
}

/// What the destination holds of `gid`.
pub async fn find(client: &Client, name: &str, gid: &str) -> Result<Held> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_prepared_xacts \
                            WHERE gid = $2 AND database = pg_catalog.current_database()), \
                    EXISTS (SELECT FROM pgsub.prepared WHERE name = $1 AND gid = $2)",
            &[&name, &gid],
        )
        .await
        .map_err(err("looking up a prepared transaction on the destination"))?;
    Ok(match (row.get::<_, bool>(0), row.get::<_, bool>(1)) {
        (true, _) => Held::Prepared,
        (false, true) => Held::Committed,
        (false, false) => Held::Nothing,
    })
}

/// The statement that leaves the mark, inside the transaction to be prepared.
pub async fn mark(client: &Client, name: &str, gid: &str, prepare_lsn: Lsn) -> Result<()> {
    client
        .execute(
            "INSERT INTO pgsub.prepared (name, gid, prepare_lsn) VALUES ($1, $2, $3::text::pg_lsn) \
             ON CONFLICT (name, gid) DO UPDATE SET prepare_lsn = excluded.prepare_lsn, prepared_at = now()",
            &[&name, &gid, &prepare_lsn.to_string()],
        )
        .await
        .map_err(err("marking a prepared transaction in pgsub.prepared"))?;
    Ok(())
}

/// Removes the mark of `gid` (in the transaction that records its COMMIT PREPARED).
pub async fn forget(client: &Client, name: &str, gid: &str) -> Result<()> {
    client
        .execute(
            "DELETE FROM pgsub.prepared WHERE name = $1 AND gid = $2",
            &[&name, &gid],
        )
        .await
        .map_err(err("removing a prepared transaction's mark"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gid_names_the_subscription_the_source_and_the_transaction_and_fits() {
        assert_eq!(gid("sub", "7301", 42), "pgsub_7301_42_sub");
        let long = "n".repeat(300);
        let g = gid(&long, "7301234567890123456", u32::MAX);
        assert!(g.len() <= MAX_GID, "{}", g.len());
        assert!(g.starts_with("pgsub_7301234567890123456_4294967295_"));
        assert_ne!(g, gid(&"m".repeat(300), "7301234567890123456", u32::MAX));
    }
}
