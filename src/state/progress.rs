//! `pgsub.progress`: how far each subscription has applied, written in the same
//! destination transaction as the data it covers.
//!
//! `applied_lsn` is the Commit `end_lsn` of the last source transaction applied: on start
//! pgsub streams from it and skips every transaction whose `end_lsn` is at or below it,
//! which is what makes a crash at any instant safe.

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::pg::SqlError;

/// The stored progress of one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Source system identifier it was made against.
    pub source_system_id: String,
    /// Slot.
    pub slot: String,
    /// Publications.
    pub publications: Vec<String>,
    /// End of the last applied source transaction.
    pub applied_lsn: Lsn,
}

/// The statement that records progress; run inside the transaction that applies the
/// data. Parameters: name, system id, slot, publications, applied_lsn (text), commit
/// time (text, may be NULL).
pub const UPSERT_SQL: &str = "INSERT INTO pgsub.progress AS p \
    (name, source_system_id, slot, publications, applied_lsn, commit_ts, updated_at) \
    VALUES ($1, $2, $3, $4, $5::text::pg_lsn, $6::text::timestamptz, now()) \
    ON CONFLICT (name) DO UPDATE SET applied_lsn = excluded.applied_lsn, \
    commit_ts = excluded.commit_ts, updated_at = now(), slot = excluded.slot, \
    publications = excluded.publications \
    WHERE p.applied_lsn <= excluded.applied_lsn";

/// [`UPSERT_SQL`] with its values written in as quoted literals, so that it can go in
/// one simple query with the COMMIT after it: one round trip for both, where a
/// parameterised statement costs two before the COMMIT's own (prepare, then execute).
pub fn upsert_literal(
    name: &str,
    system_id: &str,
    slot: &str,
    publications: &[String],
    applied: Lsn,
    commit_ts: &str,
) -> String {
    use crate::pg::ident::literal;
    let publications = if publications.is_empty() {
        "'{}'::text[]".to_owned()
    } else {
        let list: Vec<String> = publications.iter().map(|p| literal(p)).collect();
        format!("ARRAY[{}]::text[]", list.join(", "))
    };
    let values = [
        literal(name),
        literal(system_id),
        literal(slot),
        publications,
        literal(&applied.to_string()),
        literal(commit_ts),
    ];
    // One pass, so that nothing written in is read again as a parameter.
    let mut sql = String::with_capacity(UPSERT_SQL.len() + 128);
    let mut rest = UPSERT_SQL;
    while let Some(at) = rest.find('$') {
        sql.push_str(&rest[..at]);
        let digits = rest[at + 1..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len() - at - 1);
        let n: usize = rest[at + 1..at + 1 + digits].parse().unwrap_or(0);
        sql.push_str(&values[n - 1]);
        rest = &rest[at + 1 + digits..];
    }
    sql.push_str(rest);
    sql
}

/// Records `applied` as the progress of `name` outside any apply transaction (the start
/// of a subscription: nothing was applied before it).
pub async fn record(
    client: &Client,
    name: &str,
    system_id: &str,
    slot: &str,
    publications: &[String],
    applied: Lsn,
) -> Result<()> {
    use tokio_postgres::types::Type;
    let applied = applied.to_string();
    client
        .query_typed(
            UPSERT_SQL,
            &[
                (&name, Type::TEXT),
                (&system_id, Type::TEXT),
                (&slot, Type::TEXT),
                (&publications, Type::TEXT_ARRAY),
                (&applied, Type::TEXT),
                (&None::<String>, Type::TEXT),
            ],
        )
        .await
        .map_err(|e| {
            SqlError::new(
                "recording the start of the subscription in pgsub.progress",
                e,
            )
        })?;
    Ok(())
}

/// Reads the progress of subscription `name`.
pub async fn read(client: &Client, name: &str) -> Result<Option<Progress>> {
    let row = client
        .query_typed(
            "SELECT source_system_id, slot, publications, applied_lsn::text \
             FROM pgsub.progress WHERE name = $1",
            &[(&name, tokio_postgres::types::Type::TEXT)],
        )
        .await
        .map_err(|e| SqlError::new("reading pgsub.progress", e))?
        .into_iter()
        .next();
    row.map(|r| {
        let lsn: String = r.get(3);
        Ok(Progress {
            source_system_id: r.get(0),
            slot: r.get(1),
            publications: r.get(2),
            applied_lsn: stored_lsn(name, &lsn)?,
        })
    })
    .transpose()
}

/// The `applied_lsn` of subscription `name` as stored (the text of a `pg_lsn`): a value
/// that is not a position is refused, never read as 0/0 (which would apply everything
/// again).
pub fn stored_lsn(name: &str, text: &str) -> Result<Lsn> {
    text.parse().map_err(|_| {
        Error::Definite(format!(
            "pgsub.progress of subscription {name:?} holds applied_lsn {text:?}, which is not a position: \
             the row was changed by hand; correct it, or remove the subscription with `pgsub drop`"
        ))
    })
}

/// One row of `pgsub.progress`, for `status` and `verify`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProgressRow {
    /// Subscription name.
    pub name: String,
    /// Source system identifier.
    pub source_system_id: String,
    /// Slot on the source.
    pub slot: String,
    /// Publications.
    pub publications: Vec<String>,
    /// End of the last applied source transaction.
    pub applied_lsn: Lsn,
    /// Its commit time on the source.
    pub commit_ts: Option<String>,
    /// When the row was last written.
    pub updated_at: String,
}

/// Every subscription's progress; none when the `pgsub` schema does not exist or the
/// role may not read it.
pub async fn rows(client: &Client) -> Result<Vec<ProgressRow>> {
    if !super::readable(client).await? {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT name, source_system_id, slot, publications, applied_lsn::text, \
                    commit_ts::text, updated_at::text FROM pgsub.progress ORDER BY name",
            &[],
        )
        .await
        .map_err(|e| SqlError::new("reading pgsub.progress", e))?;
    rows.iter()
        .map(|r| {
            let name: String = r.get(0);
            let lsn: String = r.get(4);
            Ok(ProgressRow {
                applied_lsn: stored_lsn(&name, &lsn)?,
                name,
                source_system_id: r.get(1),
                slot: r.get(2),
                publications: r.get(3),
                commit_ts: r.get(5),
                updated_at: r.get(6),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_written_in_as_literals_quotes_every_value_and_reads_none_again() {
        let sql = upsert_literal(
            "it's",
            "7",
            "slot",
            &["p$1".into(), "q".into()],
            Lsn(0x1_0000_0010),
            "2026-12-04 12:00:00+00",
        );
        assert!(sql.contains("VALUES ('it''s', '7', 'slot', ARRAY['p$1', 'q']::text[], '1/10'::text::pg_lsn, '2026-12-04 12:00:00+00'::text::timestamptz, now())"), "{sql}");
        assert!(!sql.contains("$2"), "{sql}");
        let none = upsert_literal("n", "1", "s", &[], Lsn(1), "x");
        assert!(none.contains("'{}'::text[]"), "{none}");
    }
}
