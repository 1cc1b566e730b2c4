//! Streamed transactions applied at their Stream Commit (or prepared at their Stream
//! Prepare, under two-phase decoding), from the spool.

use super::*;
use crate::pgoutput::{BeginPrepare, Prepare};

impl ApplySink {
    /// Applies a streamed transaction at its Stream Commit, in commit order, as one source
    /// transaction: its spooled messages are read back and decoded one at a time, with
    /// the descriptions they carry (a streamed transaction repeats the Relation message
    /// of every table it changes before its first change).
    pub(super) async fn apply_streamed(&mut self, c: &StreamCommit) -> Result<()> {
        let begin = PgOutput::Begin(Begin {
            final_lsn: c.commit_lsn,
            commit_ts: c.commit_ts,
            xid: c.xid,
        });
        let end = PgOutput::Commit(Commit {
            flags: 0,
            commit_lsn: c.commit_lsn,
            end_lsn: c.end_lsn,
            commit_ts: c.commit_ts,
        });
        self.replay_spooled(c.xid, "Stream Commit", &begin, &end)
            .await
    }

    /// Prepares a streamed transaction at its Stream Prepare, as a Begin Prepare … Prepare.
    pub(super) async fn apply_stream_prepared(&mut self, p: &Prepare) -> Result<()> {
        let begin = PgOutput::BeginPrepare(BeginPrepare {
            prepare_lsn: p.prepare_lsn,
            end_lsn: p.end_lsn,
            prepare_ts: p.prepare_ts,
            xid: p.xid,
            gid: p.gid.clone(),
        });
        self.replay_spooled(
            p.xid,
            "Stream Prepare",
            &begin,
            &PgOutput::Prepare(p.clone()),
        )
        .await
    }

    /// Applies the spooled messages of streamed transaction `xid` between `begin` and
    /// `end` (the message that completes it, named `what`).
    async fn replay_spooled(
        &mut self,
        xid: u32,
        what: &str,
        begin: &PgOutput,
        end: &PgOutput,
    ) -> Result<()> {
        let Some(mut reader) = self.spool.take(xid)? else {
            return Err(Error::Definite(format!(
                "{what} of transaction {xid} whose blocks pgsub did not receive; restart pgsub (the source sends it again)"
            )));
        };
        let mut rels = RelationCache::default();
        self.on_message(&rels, begin).await?;
        let skip = self.txns.skipping_transaction();
        tracing::debug!(
            xid,
            messages = reader.records,
            bytes = reader.bytes,
            skip,
            "applying a streamed transaction from its spool file"
        );
        let mut decoder = Decoder::within_stream_block();
        while let Some(bytes) = reader.next_message()? {
            let msg = decoder.decode(bytes).map_err(|e| {
                Error::Definite(format!(
                    "a spooled message of streamed transaction {xid} does not decode: {e}"
                ))
            })?;
            rels.on_message(&msg)?;
            if !skip {
                self.on_message(&rels, &msg).await?;
            }
        }
        if !skip {
            self.stats.streamed_transactions += 1;
        }
        self.on_message(&rels, end).await?;
        // Targets resolved from the spooled descriptions may be older than the live
        // stream's: resolve them again next time.
        self.flush_run().await?;
        self.targets.clear();
        self.stmts.clear();
        Ok(())
    }
}
