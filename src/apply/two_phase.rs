//! Two-phase transactions (`sync --two-phase`): a source transaction prepared for
//! two-phase commit becomes a prepared transaction on the destination, finished when the
//! source finishes it, each step exactly once across restarts (the marks that make this
//! so are [`crate::state::prepared`]'s).
//!
//! ```text
//!  Begin Prepare ─► commit the open group ─► the destination holds it already? skip
//!                   : BEGIN (a destination transaction of its own)
//!  changes       ─► as in any transaction (the copy rule asks the snapshot's xids)
//!  Prepare       ─► mark in pgsub.prepared (+ conflict counts) ─► PREPARE TRANSACTION gid
//!                   (flushed: durable at once, acknowledgeable)
//!  Commit / Rollback Prepared ─► commit the open group ─► COMMIT / ROLLBACK PREPARED gid
//!                   unless done before a restart ─► BEGIN; remove the mark; progress =
//!                   its end; COMMIT (as a group)
//! ```
//!
//! A prepared transaction never writes `pgsub.progress`: its row locks last until it is
//! finished, and the transactions the source commits meanwhile write that row.

use super::*;
use crate::pgoutput::{BeginPrepare, CommitPrepared, Prepare, RollbackPrepared};
use crate::state::prepared::{self as marks, Held};

impl ApplySink {
    /// The destination's GID for source transaction `xid`.
    fn gid(&self, xid: u32) -> String {
        let sub = self.durability.subscription();
        marks::gid(&sub.name, &sub.system_id, xid)
    }

    /// Begin Prepare (or the start of a streamed transaction's Stream Prepare).
    pub(super) async fn begin_prepare(&mut self, b: &BeginPrepare) -> Result<()> {
        self.commit_group().await?;
        let gid = self.gid(b.xid);
        let name = self.durability.subscription().name.clone();
        let held = marks::find(&self.dest.client, &name, &gid).await? != Held::Nothing;
        if held {
            tracing::debug!(%gid, "the destination holds this prepared transaction already: its changes are not applied again");
        }
        if self
            .txns
            .begin_prepared(b.prepare_lsn, b.xid, held, self.sent_whole)
            == Begun::Open
        {
            self.exec.simple("BEGIN").await?;
        }
        Ok(())
    }

    /// Prepare (or Stream Prepare, once its changes are applied).
    pub(super) async fn prepare(&mut self, p: &Prepare) -> Result<()> {
        if self.txns.skipping_transaction() {
            self.txns.prepared();
            self.stats.skipped_transactions += 1;
            self.durability.skipped(p.end_lsn);
            return Ok(());
        }
        self.flush_run().await?;
        self.settle().await?;
        let gid = self.gid(p.xid);
        let name = self.durability.subscription().name.clone();
        let client = &self.dest.client;
        marks::mark(client, &name, &gid, p.prepare_lsn).await?;
        let unsaved = self.conflicts.take_unsaved();
        if let Err(e) = crate::state::conflicts::add(client, &name, &unsaved).await {
            self.conflicts.unsave(unsaved);
            return Err(e);
        }
        if let Err(e) = client
            .batch_execute(&format!(
                "PREPARE TRANSACTION {}",
                crate::pg::ident::literal(&gid)
            ))
            .await
        {
            self.conflicts.unsave(unsaved);
            return Err(sql_err(format!(
                "preparing transaction {gid} on the destination"
            ))(e));
        }
        crate::failpoint::hit(crate::failpoint::AFTER_DEST_PREPARE);
        self.txns.prepared();
        self.mark = None;
        self.stats.transactions += 1;
        self.stats.groups += 1;
        self.durability.prepared(p.end_lsn);
        tracing::debug!(%gid, prepare_lsn = %p.prepare_lsn, "prepared on the destination");
        Ok(())
    }

    /// Commit Prepared.
    pub(super) async fn commit_prepared(&mut self, c: &CommitPrepared) -> Result<()> {
        self.finish_prepared(c.xid, c.end_lsn, &c.commit_ts.to_string(), true)
            .await
    }

    /// Rollback Prepared.
    pub(super) async fn rollback_prepared(&mut self, r: &RollbackPrepared) -> Result<()> {
        self.finish_prepared(r.xid, r.rollback_end_lsn, &r.rollback_ts.to_string(), false)
            .await
    }

    /// COMMIT or ROLLBACK PREPARED of source transaction `xid`, ending at `end`: done on
    /// the destination unless done before a restart, then its position recorded.
    async fn finish_prepared(&mut self, xid: u32, end: Lsn, ts: &str, commit: bool) -> Result<()> {
        self.commit_group().await?;
        if self.txns.applied_before(end) {
            self.stats.skipped_transactions += 1;
            self.durability.skipped(end);
            return Ok(());
        }
        let gid = self.gid(xid);
        let name = self.durability.subscription().name.clone();
        let client = self.dest.client.clone();
        let verb = if commit { "COMMIT" } else { "ROLLBACK" };
        match (marks::find(&client, &name, &gid).await?, commit) {
            (Held::Prepared, _) => {
                client
                    .batch_execute(&format!(
                        "{verb} PREPARED {}",
                        crate::pg::ident::literal(&gid)
                    ))
                    .await
                    .map_err(sql_err(format!("{verb} PREPARED {gid} on the destination")))?;
                crate::failpoint::hit(crate::failpoint::AFTER_DEST_COMMIT_PREPARED);
            }
            // Done before a restart, its position not yet recorded.
            (Held::Committed, true) | (Held::Nothing, false) => {}
            (Held::Committed, false) => {
                return Err(Error::Definite(format!(
                    "the source rolled back prepared transaction {xid}, which the destination committed as {gid}: something outside pgsub committed it; the destination holds changes the source does not"
                )));
            }
            (Held::Nothing, true) => {
                return Err(Error::Definite(format!(
                    "the source committed prepared transaction {xid}, which the destination never prepared (no {gid} in pg_prepared_xacts, no mark in pgsub.prepared): something outside pgsub rolled it back, or the slot was made two-phase after it was prepared and is read by another client; its changes are missing on the destination"
                )));
            }
        }
        client
            .batch_execute("BEGIN")
            .await
            .map_err(sql_err("recording a finished prepared transaction"))?;
        marks::forget(&client, &name, &gid).await?;
        self.durability
            .commit(
                &client,
                end,
                ts,
                &mut self.conflicts,
                durable::GroupCommit::Asynchronous,
            )
            .await?;
        tracing::debug!(%gid, %end, "{verb} PREPARED on the destination");
        Ok(())
    }
}
