//! `sequences`: logical replication does not carry sequences, so at cutover each
//! destination sequence is set to where the source's is.
//!
//! The sequences are those owned by a published table's column (`serial`, identity) or
//! every sequence of the schemas named. A sequence is moved only forwards (in the
//! direction of its increment): one already past the source's value is reported and left
//! alone, because moving it back would hand out values that may already be used.

use crate::pg::ident::literal as escape_literal;
use serde::Serialize;
use tokio_postgres::Client;

use crate::conn::Connection;
use crate::error::Result;
use crate::pg::SqlError;
use crate::pg::client::{first_value, text_rows};
use crate::pg::ident::qualified;

/// What happened, or would happen, to one sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Set to the source's value.
    Set,
    /// Already at the source's value.
    Unchanged,
    /// Ahead of the source: moving it would go backwards; left alone.
    WouldGoBackwards,
    /// Never used on the source: nothing to carry.
    UnusedOnSource,
    /// The source role may not read it.
    UnreadableOnSource,
    /// No sequence of that name on the destination.
    MissingOnDestination,
}

/// One sequence.
#[derive(Debug, Clone, Serialize)]
pub struct Sequence {
    /// Schema.
    pub schema: String,
    /// Name.
    pub name: String,
    /// The table owning it (`schema.table`), if any.
    pub owner: Option<String>,
    /// The source's `last_value` (`None`: never used, or unreadable).
    pub source_value: Option<i64>,
    /// The destination's last value handed out before (`None`: never used).
    pub dest_value: Option<i64>,
    /// What was done.
    pub action: Action,
}

impl Sequence {
    /// `schema.name`.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

/// Reads the source's sequences: owned by the tables `relids`, or in `schemas`.
pub async fn source_sequences(
    conn: &mut Connection,
    relids: &[u32],
    schemas: &[String],
) -> Result<Vec<(Sequence, i64)>> {
    let mut conds = Vec::new();
    if !relids.is_empty() {
        let ids: Vec<String> = relids.iter().map(u32::to_string).collect();
        conds.push(format!("t.oid IN ({})", ids.join(", ")));
    }
    if !schemas.is_empty() {
        let list: Vec<String> = schemas.iter().map(|s| escape_literal(s)).collect();
        conds.push(format!("n.nspname IN ({})", list.join(", ")));
    }
    if conds.is_empty() {
        return Ok(Vec::new());
    }
    let rows = conn
        .simple_query(&format!(
            "SELECT DISTINCT ON (s.oid) n.nspname, s.relname, tn.nspname || '.' || t.relname AS owner, \
                    CASE WHEN pg_catalog.has_sequence_privilege(s.oid, 'SELECT') THEN 't' ELSE 'f' END AS readable, \
                    ps.last_value, q.seqincrement \
             FROM pg_catalog.pg_class s \
             JOIN pg_catalog.pg_namespace n ON n.oid = s.relnamespace \
             JOIN pg_catalog.pg_sequence q ON q.seqrelid = s.oid \
             LEFT JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::regclass \
                  AND d.objid = s.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.deptype IN ('a', 'i') \
             LEFT JOIN pg_catalog.pg_class t ON t.oid = d.refobjid \
             LEFT JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace \
             LEFT JOIN pg_catalog.pg_sequences ps ON ps.schemaname = n.nspname AND ps.sequencename = s.relname \
             WHERE s.relkind = 'S' AND ({}) ORDER BY s.oid",
            conds.join(" OR ")
        ))
        .await?;
    let mut out: Vec<(Sequence, i64)> = rows
        .iter()
        .map(|r| {
            let readable = r.get("readable") == Some("t");
            let value = r.get("last_value").and_then(|v| v.parse().ok());
            (
                Sequence {
                    schema: r.get("nspname").unwrap_or_default().to_owned(),
                    name: r.get("relname").unwrap_or_default().to_owned(),
                    owner: r.get("owner").map(str::to_owned),
                    source_value: value,
                    dest_value: None,
                    action: match (readable, value) {
                        (false, _) => Action::UnreadableOnSource,
                        (true, None) => Action::UnusedOnSource,
                        (true, Some(_)) => Action::Set,
                    },
                },
                r.get("seqincrement")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1),
            )
        })
        .collect();
    out.sort_by_key(|(s, _)| s.qualified_name());
    Ok(out)
}

/// Compares each sequence with the destination's and, unless `dry_run`, sets those
/// behind to the source's value.
pub async fn carry(
    client: &Client,
    found: Vec<(Sequence, i64)>,
    dry_run: bool,
) -> Result<Vec<Sequence>> {
    let mut done = Vec::new();
    for (mut seq, increment) in found {
        let name = qualified(&seq.schema, &seq.name);
        let exists = first_value(
            client,
            &format!(
                "SELECT pg_catalog.to_regclass({}) IS NOT NULL",
                escape_literal(&name)
            ),
            "looking for the sequence on the destination",
        )
        .await?;
        if exists.as_deref() != Some("t") {
            seq.action = Action::MissingOnDestination;
            done.push(seq);
            continue;
        }
        let rows = text_rows(
            client,
            &format!("SELECT last_value, is_called FROM {name}"),
            &format!(
                "reading the sequence {} on the destination",
                seq.qualified_name()
            ),
        )
        .await?;
        let (last, called) = rows
            .first()
            .map(|r| {
                (
                    r[0].as_deref().and_then(|v| v.parse::<i64>().ok()),
                    r[1].as_deref() == Some("t"),
                )
            })
            .unwrap_or((None, false));
        seq.dest_value = if called { last } else { None };
        let Some(target) = seq.source_value.filter(|_| seq.action == Action::Set) else {
            done.push(seq);
            continue;
        };
        let ahead = |a: i64, b: i64| if increment >= 0 { a > b } else { a < b };
        seq.action = match seq.dest_value {
            Some(v) if v == target => Action::Unchanged,
            Some(v) if ahead(v, target) => Action::WouldGoBackwards,
            _ => Action::Set,
        };
        if seq.action == Action::Set && !dry_run {
            client
                .execute(
                    &format!(
                        "SELECT pg_catalog.setval({}, {target}, true)",
                        escape_literal(&name)
                    ),
                    &[],
                )
                .await
                .map_err(|e| {
                    SqlError::new(
                        format!(
                            "setting the sequence {} on the destination (the role needs UPDATE on it)",
                            seq.qualified_name()
                        ),
                        e,
                    )
                })?;
        }
        done.push(seq);
    }
    Ok(done)
}
