//! `pgsub.tables`: the initial copy's state per table. A table is `copying` from before
//! the slot exists until its data and its `ready` mark commit together; its
//! `snapshot_lsn` is the position of the snapshot it was copied under, and the stream
//! skips that table's changes of transactions committed before it. `snapshot` (v3+) is
//! that snapshot's transactions (`txid_current_snapshot()`): which ones had completed.
//! A transaction prepared before the snapshot and committed after it is not in the copy,
//! though its PREPARE comes before `snapshot_lsn`: under two-phase decoding its changes
//! arrive before its commit position is known, and the snapshot tells (see
//! [`XidSnapshot::completed`]).

use std::collections::HashMap;

use tokio_postgres::Client;
use tokio_postgres::types::Type;

use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::pg::SqlError;

fn err(context: String) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |e| Error::from(SqlError::new(context, e))
}

/// One table's copy state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyState {
    /// The copy committed.
    pub ready: bool,
    /// Copied in chunks, some of which committed: the destination's rows of the table are
    /// pgsub's own partial copy, emptied before the table is copied again.
    pub partial: bool,
    /// The position of the snapshot it was copied under.
    pub snapshot_lsn: Option<Lsn>,
    /// That snapshot's transactions, where recorded.
    pub snapshot: Option<XidSnapshot>,
}

/// A snapshot's transactions as `txid_current_snapshot()` shows them (`xmin:xmax:xip,…`,
/// with epochs): every transaction before `xmin` had completed, none from `xmax` on, and
/// of those between, all but the ones listed (in progress, prepared ones included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XidSnapshot {
    xmin: u64,
    xmax: u64,
    xip: Vec<u64>,
}

impl XidSnapshot {
    /// Reads `xmin:xmax:xip,…`.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let bad = || format!("snapshot {text:?} is not xmin:xmax:xip,…");
        let mut parts = text.splitn(3, ':');
        let mut next = || parts.next().ok_or_else(bad);
        let xmin = next()?.parse().map_err(|_| bad())?;
        let xmax = next()?.parse().map_err(|_| bad())?;
        let xip = next()?
            .split(',')
            .filter(|x| !x.is_empty())
            .map(|x| x.parse().map_err(|_| bad()))
            .collect::<std::result::Result<Vec<u64>, String>>()?;
        // A snapshot exported by a slot's creation may have its xmin past its xmax: read
        // as PostgreSQL reads it (xmin first).
        Ok(XidSnapshot { xmin, xmax, xip })
    }

    /// Whether transaction `xid` (32 bits, as the stream gives it) had completed when the
    /// snapshot was taken. It is read as the full transaction id nearest the snapshot's
    /// `xmax` (within 2³¹ of it, as every transaction still of interest is).
    pub fn completed(&self, xid: u32) -> bool {
        let from_xmax = i64::from(xid.wrapping_sub(self.xmax as u32) as i32);
        let Some(full) = self.xmax.checked_add_signed(from_xmax) else {
            return true;
        };
        full < self.xmin || (full < self.xmax && !self.xip.contains(&full))
    }
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
        .query_typed(
            "INSERT INTO pgsub.tables (name, relation, state) \
             SELECT $1, r, $3 FROM unnest($2::text[]) r \
             ON CONFLICT (name, relation) DO NOTHING",
            &[
                (&name, Type::TEXT),
                (&relations, Type::TEXT_ARRAY),
                (&state, Type::TEXT),
            ],
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
        .query_typed(
            "SELECT relation, state, snapshot_lsn::text, snapshot FROM pgsub.tables WHERE name = $1",
            &[(&name, Type::TEXT)],
        )
        .await
        .map_err(err("reading pgsub.tables".into()))?;
    rows.iter()
        .map(|r| {
            let relation: String = r.get(0);
            let state: String = r.get(1);
            let lsn: Option<String> = r.get(2);
            let snapshot: Option<String> = r.get(3);
            let mut copy = CopyState::decode(&state, lsn.as_deref())
                .map_err(|e| Error::Definite(format!("pgsub.tables row of {relation}: {e}")))?;
            copy.snapshot = snapshot
                .as_deref()
                .map(XidSnapshot::parse)
                .transpose()
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
        let (ready, partial) = match state {
            "ready" => (true, false),
            "copying" => (false, false),
            "partial" => (false, true),
            other => {
                return Err(format!(
                    "state {other:?} is none of copying, partial, ready (written by a newer pgsub, or by hand)"
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
            partial,
            snapshot_lsn,
            snapshot: None,
        })
    }
}

/// Marks `relation` as copied in part: committed before the first chunk of a copy in
/// chunks is, so that a run killed between chunks empties the table before copying it
/// again.
pub async fn mark_partial(client: &Client, name: &str, relation: &str) -> Result<()> {
    client
        .execute(
            "UPDATE pgsub.tables SET state = 'partial', started_at = now() \
             WHERE name = $1 AND relation = $2 AND state <> 'ready'",
            &[&name, &relation],
        )
        .await
        .map_err(err(format!(
            "recording the copy of {relation} in chunks in pgsub.tables"
        )))?;
    Ok(())
}

/// Marks `relation` copied under `snapshot_lsn` (whose transactions were `snapshot`), in
/// the transaction that holds its data.
pub async fn mark_ready(
    client: &Client,
    name: &str,
    relation: &str,
    (snapshot_lsn, snapshot): (Lsn, Option<&str>),
    rows: u64,
    bytes: u64,
) -> Result<()> {
    let lsn = snapshot_lsn.to_string();
    client
        .execute(
            "INSERT INTO pgsub.tables AS t (name, relation, state, snapshot_lsn, snapshot, rows, bytes, started_at, finished_at) \
             VALUES ($1, $2, 'ready', $3::text::pg_lsn, $6, $4, $5, now(), clock_timestamp()) \
             ON CONFLICT (name, relation) DO UPDATE SET state = 'ready', snapshot_lsn = excluded.snapshot_lsn, \
             snapshot = excluded.snapshot, rows = excluded.rows, bytes = excluded.bytes, \
             started_at = excluded.started_at, finished_at = excluded.finished_at",
            &[&name, &relation, &lsn, &(rows as i64), &(bytes as i64), &snapshot],
        )
        .await
        .map_err(err(format!("recording the copy of {relation} in pgsub.tables")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::XidSnapshot;

    #[test]
    fn a_snapshot_tells_which_transactions_had_completed() {
        let s = XidSnapshot::parse("100:110:103,107").unwrap();
        assert!(s.completed(99));
        assert!(s.completed(104));
        assert!(
            !s.completed(103),
            "in progress (or prepared) at the snapshot"
        );
        assert!(!s.completed(107));
        assert!(!s.completed(110), "began after the snapshot");
        assert!(XidSnapshot::parse("5:5:").unwrap().completed(4));
        // As a slot's exported snapshot can be: xmin past xmax.
        let exported = XidSnapshot::parse("1706:1705:").unwrap();
        assert!(exported.completed(1700) && !exported.completed(1706));
        for bad in ["", "1:2", "x:2:", "1:2:a", "-1:2:"] {
            assert!(XidSnapshot::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn thirty_two_bit_xids_are_read_in_the_snapshots_epoch() {
        // Epoch 1: xmax is 2^32 + 10; xid 5 is 2^32 + 5 (completed); xid 4294967290 is
        // from the epoch before (completed, before xmin).
        let base = 1u64 << 32;
        let s = XidSnapshot::parse(&format!("{}:{}:{}", base + 2, base + 10, base + 5)).unwrap();
        assert!(!s.completed(5));
        assert!(s.completed(7));
        assert!(s.completed(4_294_967_290));
        assert!(!s.completed(11));
    }
}
