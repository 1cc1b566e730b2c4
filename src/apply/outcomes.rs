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
            let (kind, differs) = match o.kind {
                Kind::Savepoint => {
                    self.mark = Some((self.stats.clone(), self.conflicts.clone()));
                    continue;
                }
                Kind::Insert => {
                    self.stats.inserted += o.affected;
                    continue;
                }
                Kind::Update => {
                    self.stats.updated += o.affected;
                    self.stats.update_missing += missing;
                    (
                        ConflictKind::UpdateMissing,
                        ConflictKind::UpdateOriginDiffers,
                    )
                }
                Kind::Delete => {
                    self.stats.deleted += o.affected;
                    self.stats.delete_missing += missing;
                    (
                        ConflictKind::DeleteMissing,
                        ConflictKind::DeleteOriginDiffers,
                    )
                }
                Kind::Other => continue,
            };
            let differing = o.origin_differs.len() as u64;
            for (kind, n, keys, exact) in [
                (differs, differing, &o.origin_differs, true),
                (kind, missing, &o.missing, o.exact),
            ] {
                if n == 0 {
                    continue;
                }
                self.conflicts.record(kind, &o.table, n, keys, !exact);
                if self.opts.on_conflict == OnConflict::Error {
                    let what = if kind == differs {
                        "found a row on the destination that something other than this replication wrote last"
                    } else {
                        "found no row on the destination"
                    };
                    let msg = format!(
                        "{} on {}: {n} change(s) {what} ({}); --on-conflict error stops here, and nothing of this transaction is applied: make the destination's rows match the source, or run without --on-conflict error to {} as the built-in worker does",
                        kind.name(),
                        o.table,
                        keys.first().map_or("key not known", String::as_str),
                        if kind == differs {
                            "apply them"
                        } else {
                            "skip them"
                        }
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
                let multiple = match (&target, &f.copy, &f.params) {
                    (Some(t), Some(data), _) if f.kind == Kind::Insert => {
                        self.unique_indexes_hit(t, Hit::Copied(data)).await >= 2
                    }
                    (Some(t), None, Some((Params::Arrays(arrays), None)))
                        if f.kind == Kind::Insert =>
                    {
                        self.unique_indexes_hit(t, Hit::Inserted(arrays)).await >= 2
                    }
                    (
                        Some(t),
                        _,
                        Some((Params::Arrays(arrays), Some(UpdateLayout { key, set }))),
                    ) if f.kind == Kind::Update => {
                        self.unique_indexes_hit(t, Hit::Updated(arrays, key, set))
                            .await
                            >= 2
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

    /// How many unique indexes of `target` the row a failed statement stopped at hits
    /// among the destination's other rows, asked after rolling the failed transaction
    /// back; 0 when that cannot be told (logged).
    async fn unique_indexes_hit(&mut self, target: &Target, hit: Hit<'_>) -> u64 {
        let _ = self.dest.client.batch_execute("ROLLBACK").await;
        // An insert's COPY names the written columns; an update's layout, every column.
        let written = target.written();
        let cols = match hit {
            Hit::Copied(_) | Hit::Inserted(_) => target.cols_at(&written),
            Hit::Updated(..) => target.cols.iter().collect(),
        };
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
        // Each index as positions among the columns; one on a column pgsub does not
        // write cannot be hit by the values it wrote.
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
        let result = match hit {
            Hit::Inserted(values) => {
                let query = sql::unique_conflicts(&target.table, target.only, &cols, &indexes);
                let params = executor::sql_params(values);
                self.dest.client.query_one(&query, &params).await
            }
            Hit::Copied(data) => {
                let mut values: Vec<ValueArray> = cols
                    .iter()
                    .map(|c| ValueArray::new(target.format, c.type_oid))
                    .collect();
                match target.format {
                    ValueFormat::Text => sql::copy_text_columns(data, &mut values),
                    ValueFormat::Binary => values::copy_binary_columns(data, &mut values),
                }
                let query = sql::unique_conflicts(&target.table, target.only, &cols, &indexes);
                let params = executor::sql_params(&values);
                self.dest.client.query_one(&query, &params).await
            }
            Hit::Updated(arrays, key, set) => {
                let query = sql::update_unique_conflicts(
                    &target.table,
                    target.only,
                    &cols,
                    key,
                    set,
                    &indexes,
                );
                let params = executor::sql_params(arrays);
                self.dest.client.query_one(&query, &params).await
            }
        };
        match result {
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

/// The row whose unique indexes are counted: that of a failed COPY, of a failed insert
/// run (its arrays: a far destination's), or of a failed update run (its parameters,
/// and the positions of its key and set columns).
#[derive(Clone, Copy)]
enum Hit<'a> {
    Copied(&'a Bytes),
    Inserted(&'a [ValueArray]),
    Updated(&'a [ValueArray], &'a [usize], &'a [usize]),
}
