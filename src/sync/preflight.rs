//! The checks `sync` makes before it changes anything: what the stream cannot carry
//! faithfully (warned about), the progress already stored against this source and slot,
//! the roles' privileges on both sides, a free replication slot.

use crate::conn::Connection;
use crate::error::{Error, Result};
use crate::source::tables::PublishedTable;
use crate::state::progress::Progress;

/// Warnings about what the stream cannot carry faithfully, printed before anything starts.
/// `changes_published`: the publications publish UPDATE or DELETE.
pub fn lossiness_report(tables: &[PublishedTable], changes_published: bool) {
    for t in tables {
        let name = t.qualified_name();
        match t.replica_identity.as_str() {
            _ if !changes_published => {}
            "n" => tracing::warn!(
                table = %name,
                "REPLICA IDENTITY NOTHING: UPDATE and DELETE on this table will fail on the source while it is published; set a primary key or REPLICA IDENTITY FULL"
            ),
            "d" if t.key_columns.is_empty() => tracing::warn!(
                table = %name,
                "no primary key and REPLICA IDENTITY DEFAULT: UPDATE and DELETE on this table will fail on the source while it is published; add a primary key or set REPLICA IDENTITY FULL"
            ),
            "f" if t.key_columns.is_empty() => tracing::warn!(
                table = %name,
                "REPLICA IDENTITY FULL without a key: each update or delete scans the destination table for one equal row"
            ),
            _ => {}
        }
        if t.partitioned {
            tracing::warn!(table = %name, "partitioned table published through its root (publish_via_partition_root)");
        }
        let unsent: Vec<&str> = t
            .generated_columns
            .iter()
            .filter(|g| !t.columns.iter().any(|c| &c.name == *g))
            .map(String::as_str)
            .collect();
        if !unsent.is_empty() {
            tracing::warn!(
                table = %name,
                "generated column(s) {} are not carried by the stream (PostgreSQL 18 publishes stored ones with publish_generated_columns = stored): the destination computes its own from its own generation expression, or leaves them NULL",
                unsent.join(", ")
            );
        }
    }
}

/// The source role must read the tables it copies; the destination role must write the
/// tables it applies to.
pub async fn check_privileges(
    conn: &mut Connection,
    dest: &tokio_postgres::Client,
    tables: &[PublishedTable],
    to_copy: &[PublishedTable],
) -> Result<()> {
    let mut unreadable = Vec::new();
    for t in to_copy {
        let rows = conn
            .simple_query(&format!(
                "SELECT pg_catalog.has_table_privilege({}, 'SELECT')::text",
                t.relid
            ))
            .await?;
        if rows.first().and_then(|r| r.get_idx(0)) != Some("true") {
            unreadable.push(t.qualified_name());
        }
    }
    if !unreadable.is_empty() {
        return Err(Error::Config(format!(
            "the source role may not read {list}, which the initial copy needs: GRANT SELECT ON {list} TO <role> on the source",
            list = unreadable.join(", ")
        )));
    }
    // Every table in one query (one round trip, however many tables); a table that does
    // not exist yet (--schema skip) has nothing to check.
    let quoted: Vec<String> = tables
        .iter()
        .map(|t| crate::pg::ident::qualified(&t.schema, &t.name))
        .collect();
    let denied = dest
        .query_typed(
            "SELECT o FROM unnest($1::text[]) WITH ORDINALITY AS q(t, o) \
             WHERE pg_catalog.to_regclass(t) IS NOT NULL \
             AND EXISTS (SELECT FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) p \
                         WHERE NOT pg_catalog.has_table_privilege(t, p)) ORDER BY o",
            &[(&quoted, tokio_postgres::types::Type::TEXT_ARRAY)],
        )
        .await
        .map_err(|e| crate::pg::SqlError::new("checking the destination role's privileges", e))?;
    let unwritable: Vec<String> = denied
        .iter()
        .filter_map(|r| tables.get(usize::try_from(r.get::<_, i64>(0)).ok()?.checked_sub(1)?))
        .map(PublishedTable::qualified_name)
        .collect();
    if !unwritable.is_empty() {
        return Err(Error::Config(format!(
            "the destination role may not write {list}: GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON {list} TO <role> on the destination",
            list = unwritable.join(", ")
        )));
    }
    Ok(())
}

/// A new slot needs a free one of `max_replication_slots`.
pub async fn check_free_slot(conn: &mut Connection) -> Result<()> {
    let rows = conn
        .simple_query(
            "SELECT current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_catalog.pg_replication_slots), \
                    current_setting('max_replication_slots')",
        )
        .await?;
    let free: i64 = rows
        .first()
        .and_then(|r| r.get_idx(0))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let senders = conn
        .simple_query(
            "SELECT current_setting('max_wal_senders')::int - (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type = 'walsender'), \
                    current_setting('max_wal_senders')",
        )
        .await?;
    let free_senders: i64 = senders
        .first()
        .and_then(|r| r.get_idx(0))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    if free_senders <= 0 {
        tracing::warn!(
            "this pgsub holds the last free WAL sender of the source (max_wal_senders = {}): after a crash its restart waits until the old WAL sender exits, and an interrupted table copy cannot take the temporary slot it needs; raise max_wal_senders",
            senders.first().and_then(|r| r.get_idx(1)).unwrap_or("?")
        );
    }
    if free <= 0 {
        let max = rows
            .first()
            .and_then(|r| r.get_idx(1))
            .unwrap_or("?")
            .to_owned();
        return Err(Error::Config(format!(
            "the source has no free replication slot (max_replication_slots = {max}, all in use): drop one nobody streams from (`pgsub slot list` shows them), or raise max_replication_slots and restart the source"
        )));
    }
    Ok(())
}

/// Two-phase transactions. With `--two-phase` the destination must be able to prepare
/// transactions; an existing slot without two-phase decoding gets it at this start (the
/// server turns it on when START_REPLICATION asks for two_phase). Without it, a slot that
/// decodes them is refused: its prepared transactions would arrive when they are
/// prepared, not when they commit.
pub async fn check_two_phase(
    dest: &tokio_postgres::Client,
    existing: Option<&crate::source::slots::SlotInfo>,
    two_phase: bool,
) -> Result<()> {
    let slot_decodes = existing.and_then(|s| s.two_phase);
    if !two_phase {
        if slot_decodes == Some(true) {
            return Err(Error::Config(format!(
                "slot \"{}\" decodes two-phase transactions (it was created with two_phase), so a prepared transaction arrives when it is prepared, not when it commits: pass --two-phase (the destination then holds it as a prepared transaction until the source finishes it), or use a slot without two-phase decoding",
                existing.map_or("", |s| s.slot_name.as_str())
            )));
        }
        return Ok(());
    }
    check_destination_prepares(dest).await?;
    if let Some(slot) = existing.filter(|s| s.two_phase == Some(false)) {
        // Asking for two_phase at START_REPLICATION turns it on for the slot from that
        // start on, as the built-in apply worker does: a transaction prepared before the
        // start arrives whole at its COMMIT PREPARED. (ALTER_REPLICATION_SLOT … TWO_PHASE
        // on 18 is not used: a transaction prepared before it and finished after comes as
        // a COMMIT PREPARED alone, its changes never sent.)
        tracing::info!(slot = %slot.slot_name, "the slot decodes two-phase transactions from this start on; transactions prepared before it arrive whole when they commit");
    }
    Ok(())
}

/// Two-phase transactions are prepared on the destination: its
/// `max_prepared_transactions` must be above 0.
pub async fn check_destination_prepares(dest: &tokio_postgres::Client) -> Result<()> {
    let max: String = dest
        .query_one(
            "SELECT pg_catalog.current_setting('max_prepared_transactions')",
            &[],
        )
        .await
        .map_err(|e| {
            Error::from(crate::pg::SqlError::new(
                "reading the destination's max_prepared_transactions",
                e,
            ))
        })?
        .get(0);
    if max.trim() == "0" {
        return Err(Error::Config(
            "two-phase transactions (--two-phase) are prepared on the destination, and its max_prepared_transactions is 0 (the default): set it above 0 — at least the number of transactions the source keeps prepared at once — (ALTER SYSTEM SET max_prepared_transactions = 10 as a superuser, or the service's parameter group or flags) and restart the destination server, or run without --two-phase".into(),
        ));
    }
    Ok(())
}

/// The progress stored under `name` must have been made against this source and slot.
pub fn check_stored(
    stored: &Option<Progress>,
    system_id: &str,
    slot: &str,
    name: &str,
) -> Result<()> {
    let Some(p) = stored else { return Ok(()) };
    if p.source_system_id != system_id {
        return Err(Error::Config(format!(
            "the destination's progress for \"{name}\" was recorded against another source (system id {}), but this source is {system_id}: pass another --name, or remove the old progress with `pgsub drop`",
            p.source_system_id
        )));
    }
    if p.slot != slot {
        return Err(Error::Config(format!(
            "the destination's progress for \"{name}\" belongs to slot \"{}\", not \"{slot}\": pass --slot {} or another --name",
            p.slot, p.slot
        )));
    }
    Ok(())
}
