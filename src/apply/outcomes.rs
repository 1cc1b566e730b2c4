//! What the queued statements did, booked when the executor drains: rows counted,
//! conflicts recorded (and, under `--on-conflict error`, stopped at), a failed statement
//! turned into the error that says what it was about.

use super::*;

impl ApplySink {
    /// Waits for the queued statements and books what they did: counts, and conflicts.
    pub(super) async fn settle(&mut self) -> Result<()> {
        let outcomes = match self.exec.barrier().await? {
            Ok(o) => o,
            Err(f) => return Err(self.failed(f).await),
        };
        self.book(outcomes).await
    }

    /// Books what the statements did, in the order they ran. At the group's savepoint,
    /// the counters as they stand are kept, to go back to should the group be rolled
    /// back to it.
    pub(super) async fn book(&mut self, outcomes: Vec<Outcome>) -> Result<()> {
        for o in outcomes {
            let missing = o.missing_count;
            let kind = match o.kind {
                Kind::Savepoint => {
                    self.mark = Some((self.stats.clone(), self.conflicts.clone()));
                    None
                }
                Kind::Insert => {
                    self.stats.inserted += o.affected;
                    None
                }
                Kind::Update => {
                    self.stats.updated += o.affected;
                    self.stats.update_missing += missing;
                    Some(ConflictKind::UpdateMissing)
                }
                Kind::Delete => {
                    self.stats.deleted += o.affected;
                    self.stats.delete_missing += missing;
                    Some(ConflictKind::DeleteMissing)
                }
                Kind::Other => None,
            };
            if let Some(kind) = kind.filter(|_| missing > 0) {
                self.conflicts
                    .record(kind, &o.table, missing, &o.missing, !o.exact);
                if self.opts.on_conflict == OnConflict::Error {
                    let msg = format!(
                        "{} on {}: {missing} change(s) found no row on the destination ({}); --on-conflict error stops here, and nothing of this transaction is applied: make the destination's rows match the source, or run without --on-conflict error to skip them as the built-in worker does",
                        kind.name(),
                        o.table,
                        o.missing.first().map_or("key not known", String::as_str)
                    );
                    return Err(self.stop(Error::Conflict(msg)).await);
                }
            }
        }
        Ok(())
    }

    /// A queued statement failed: the destination transaction is lost. Conflicts are
    /// recorded on their own, and the error says what it was about.
    pub(super) async fn failed(&mut self, f: Failed) -> Error {
        let code = f.error.code().map(str::to_owned);
        let target = self.targets.get(&f.relid).cloned();
        let table = target.as_ref().map_or("?".to_owned(), |t| t.name.clone());
        match code.as_deref() {
            Some(sqlstate::UNIQUE_VIOLATION | sqlstate::EXCLUSION_VIOLATION) => {
                let multiple = match (&target, &f.copy) {
                    (Some(t), Some(data)) if f.kind == Kind::Insert => {
                        self.unique_indexes_hit(t, data).await >= 2
                    }
                    _ => false,
                };
                let kind = match f.kind {
                    _ if multiple => ConflictKind::MultipleUniqueConflicts,
                    Kind::Insert => ConflictKind::InsertExists,
                    _ => ConflictKind::UpdateExists,
                };
                let detail = f.error.source.as_db_error().and_then(|d| d.detail());
                let key = conflicts::key_of_violation(detail);
                self.conflicts
                    .record(kind, &table, 1, key.as_slice(), false);
                let (exists, rows) = if multiple {
                    (
                        "and the key of another unique index of the row already exist",
                        "rows",
                    )
                } else {
                    ("already exists", "row")
                };
                let msg = format!(
                    "{} on {table}: {} {exists} on the destination ({}); the built-in worker stops here too. Nothing of this transaction is applied or acknowledged: remove or change the destination's conflicting {rows}, then run pgsub again",
                    kind.name(),
                    key.as_deref().unwrap_or("a key"),
                    crate::pg::describe(&f.error.source)
                );
                self.stop(Error::Conflict(msg)).await
            }
            Some(c) if sqlstate::is_value_too_wide(c) => {
                let narrower = target.map_or_else(String::new, |t| t.narrower_columns());
                let msg = format!(
                    "a value of {table} does not fit its destination column ({}): {narrower}. pgsub never cuts a value; widen the destination column (ALTER TABLE … ALTER COLUMN … TYPE …) and run pgsub again",
                    crate::pg::describe(&f.error.source)
                );
                self.stop(Error::Config(msg)).await
            }
            _ => Error::from(f.error),
        }
    }

    /// How many unique indexes of `target` the row a failed COPY (`data`) stopped at
    /// hits among the destination's rows, asked after rolling the failed transaction
    /// back; 0 when that cannot be told (logged).
    async fn unique_indexes_hit(&mut self, target: &Target, data: &Bytes) -> u64 {
        let _ = self.dest.client.batch_execute("ROLLBACK").await;
        let written = target.written();
        let cols = target.cols_at(&written);
        let indexes = match self
            .dest
            .client
            .query(
                "SELECT array_agg(a.attname::text ORDER BY k.n) FROM pg_catalog.pg_index i \
                 CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n) \
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                 WHERE i.indrelid = $1::text::regclass AND i.indisunique AND i.indimmediate \
                 AND i.indpred IS NULL AND i.indexprs IS NULL GROUP BY i.indexrelid",
                &[&target.table],
            )
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(table = %target.name, "could not read the unique indexes to classify a conflict: {e}");
                return 0;
            }
        };
        // Each index as positions among the written columns; one on a column pgsub does
        // not write cannot be hit by the copied values.
        let indexes: Vec<Vec<usize>> = indexes
            .iter()
            .filter_map(|r| {
                let names: Vec<String> = r.get(0);
                names
                    .iter()
                    .map(|n| cols.iter().position(|c| &c.name == n))
                    .collect()
            })
            .collect();
        if indexes.len() < 2 {
            return indexes.len() as u64;
        }
        let values = sql::copy_text_columns(data, cols.len());
        let query = sql::unique_conflicts(&target.table, target.only, &cols, &indexes);
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
            .iter()
            .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        match self.dest.client.query_one(&query, &params).await {
            Ok(row) => row.get::<_, i32>(0).max(0) as u64,
            Err(e) => {
                tracing::warn!(table = %target.name, "could not count the unique indexes a conflict hit: {e}");
                0
            }
        }
    }

    /// Rolls the open destination transaction back and writes the conflict counts on
    /// their own, before stopping with `e`.
    pub(super) async fn stop(&mut self, e: Error) -> Error {
        self.run = None;
        self.txns.abandon();
        let _ = self.exec.barrier().await;
        let _ = self.dest.client.batch_execute("ROLLBACK").await;
        let unsaved = self.conflicts.take_unsaved();
        let name = self.durability.subscription().name.clone();
        if let Err(w) = crate::state::conflicts::add(&self.dest.client, &name, &unsaved).await {
            tracing::warn!("could not record the conflict in pgsub.conflicts: {w}");
        }
        e
    }
}
