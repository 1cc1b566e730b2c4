//! `pgsub.tables`: the initial copy's state per table. A table is `copying` from before
//! the slot exists until its data and its `ready` mark commit together; its
//! `snapshot_lsn` is the position of the snapshot it was copied under, and the stream
//! skips that table's changes of transactions committed before it.

use std::collections::HashMap;

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::pg::SqlError;

fn err(context: String) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |e| Error::from(SqlError::new(context, e))
}

/// One table's copy state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyState {
    /// The copy committed.
    pub ready: bool,
    /// The position of the snapshot it was copied under.
    pub snapshot_lsn: Option<Lsn>,
}

/// Records `relations` (`schema.table`) as `copying` unless already known (committed on
/// its own, before the slot is made), so that a run killed before any copy finished
/// still copies them next time.
pub async fn plan(client: &Client, name: &str, relations: &[String]) -> Result<()> {
    record_new(
        client,
        name,
        relations,
        "copying",
        "recording the tables to copy",
    )
    .await
}

/// Records `relations` as `ready` without a copy (no snapshot: every change of theirs is
/// applied), unless already known: the tables a run streams without copying, so that a
/// table joining the publication later is told apart from them.
pub async fn mark_streamed(client: &Client, name: &str, relations: &[String]) -> Result<()> {
    record_new(
        client,
        name,
        relations,
        "ready",
        "recording the streamed tables",
    )
    .await
}

/// Inserts the rows of `relations` not yet known, in `state`.
async fn record_new(
    client: &Client,
    name: &str,
    relations: &[String],
    state: &str,
    what: &str,
) -> Result<()> {
    client
        .execute(
            "INSERT INTO pgsub.tables (name, relation, state) \
             SELECT $1, r, $3 FROM unnest($2::text[]) r \
             ON CONFLICT (name, relation) DO NOTHING",
            &[&name, &relations, &state],
        )
        .await
        .map_err(err(format!("{what} in pgsub.tables")))?;
    Ok(())
}

/// Forgets `relations` (they left the publications): should one join again, it is
/// copied again.
pub async fn forget(client: &Client, name: &str, relations: &[String]) -> Result<()> {
    client
        .execute(
            "DELETE FROM pgsub.tables WHERE name = $1 AND relation = ANY($2::text[])",
            &[&name, &relations],
        )
        .await
        .map_err(err(
            "removing tables that left the publication from pgsub.tables".into(),
        ))?;
    Ok(())
}

/// Copy state per relation (`schema.table`).
pub async fn states(client: &Client, name: &str) -> Result<HashMap<String, CopyState>> {
    let rows = client
        .query(
            "SELECT relation, state, snapshot_lsn::text FROM pgsub.tables WHERE name = $1",
            &[&name],
        )
        .await
        .map_err(err("reading pgsub.tables".into()))?;
    rows.iter()
        .map(|r| {
            let relation: String = r.get(0);
            let state: String = r.get(1);
            let lsn: Option<String> = r.get(2);
            let copy = CopyState::decode(&state, lsn.as_deref())
                .map_err(|e| Error::Definite(format!("pgsub.tables row of {relation}: {e}")))?;
            Ok((relation, copy))
        })
        .collect()
}

impl CopyState {
    /// A row's `state` and `snapshot_lsn` as stored (text). Anything but `copying` or
    /// `ready`, or a snapshot position that is not one, is refused: read as "ready without
    /// a snapshot" it would apply every change of the table again, over its copy.
    pub fn decode(state: &str, snapshot_lsn: Option<&str>) -> std::result::Result<Self, String> {
        let ready = match state {
            "ready" => true,
            "copying" => false,
            other => {
                return Err(format!(
                    "state {other:?} is neither copying nor ready (written by a newer pgsub, or by hand)"
                ));
            }
        };
        let snapshot_lsn = snapshot_lsn
            .map(|l| {
                l.parse::<Lsn>()
                    .map_err(|_| format!("snapshot_lsn {l:?} is not a position"))
            })
            .transpose()?;
        Ok(CopyState {
            ready,
            snapshot_lsn,
        })
    }
}

/// Marks `relation` copied under `snapshot_lsn`, in the transaction that holds its data.
pub async fn mark_ready(
    client: &Client,
    name: &str,
    relation: &str,
    snapshot_lsn: Lsn,
    rows: u64,
    bytes: u64,
) -> Result<()> {
    let lsn = snapshot_lsn.to_string();
    client
        .execute(
            "INSERT INTO pgsub.tables AS t (name, relation, state, snapshot_lsn, rows, bytes, started_at, finished_at) \
             VALUES ($1, $2, 'ready', $3::text::pg_lsn, $4, $5, now(), clock_timestamp()) \
             ON CONFLICT (name, relation) DO UPDATE SET state = 'ready', snapshot_lsn = excluded.snapshot_lsn, \
             rows = excluded.rows, bytes = excluded.bytes, started_at = excluded.started_at, finished_at = excluded.finished_at",
            &[&name, &relation, &lsn, &(rows as i64), &(bytes as i64)],
        )
        .await
        .map_err(err(format!("recording the copy of {relation} in pgsub.tables")))?;
    Ok(())
}
