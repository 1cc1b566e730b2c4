//! Streamed transactions applied at their Stream Commit, from the spool.

use super::*;

impl ApplySink {
    /// Applies a streamed transaction at its Stream Commit, in commit order, as one source
    /// transaction: its spooled messages are read back and decoded one at a time, with
    /// the descriptions they carry (a streamed transaction repeats the Relation message
    /// of every table it changes before its first change).
    pub(super) async fn apply_streamed(&mut self, c: &StreamCommit) -> Result<()> {
        let Some(mut reader) = self.spool.take(c.xid)? else {
            return Err(Error::Definite(format!(
                "Stream Commit of transaction {} whose blocks pgsub did not receive; restart pgsub (the source sends it again)",
                c.xid
            )));
        };
        let mut rels = RelationCache::default();
        self.on_message(
            &rels,
            &PgOutput::Begin(Begin {
                final_lsn: c.commit_lsn,
                commit_ts: c.commit_ts,
                xid: c.xid,
            }),
        )
        .await?;
        let skip = self.txns.skipping_transaction();
        tracing::debug!(
            xid = c.xid,
            messages = reader.records,
            bytes = reader.bytes,
            skip,
            "applying a streamed transaction from its spool file"
        );
        let mut decoder = Decoder::within_stream_block();
        while let Some(bytes) = reader.next_message()? {
            let msg = decoder.decode(bytes).map_err(|e| {
                Error::Definite(format!(
                    "a spooled message of streamed transaction {} does not decode: {e}",
                    c.xid
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
        self.on_message(
            &rels,
            &PgOutput::Commit(Commit {
                flags: 0,
                commit_lsn: c.commit_lsn,
                end_lsn: c.end_lsn,
                commit_ts: c.commit_ts,
            }),
        )
        .await?;
        // Targets resolved from the spooled descriptions may be older than the live
        // stream's: resolve them again next time.
        self.flush_run().await?;
        self.targets.clear();
        self.stmts.clear();
        Ok(())
    }
}
