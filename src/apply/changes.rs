//! Each change turned into rows of a run, or a statement of its own: inserts, updates
//! and deletes found by key (set-based where order cannot be observed) or by the whole
//! row, truncates.

use super::*;

impl ApplySink {
    /// Adds a row to the run, flushing the current run first if the row cannot join it.
    pub(super) async fn push(
        &mut self,
        target: &Target,
        relid: u32,
        kind: RunKind,
        params: &[usize],
        keys: &[u64],
    ) -> Result<&mut Run> {
        if !self
            .run
            .as_ref()
            .is_some_and(|r| r.accepts(relid, &kind, keys))
        {
            self.flush_run().await?;
            let one_at_a_time = match kind {
                RunKind::Insert => target.row_triggers,
                _ => target.order_sensitive,
            };
            let max = if one_at_a_time { 1 } else { MAX_RUN_ROWS };
            let types: Vec<u32> = params.iter().map(|&p| target.cols[p].type_oid).collect();
            self.run = Some(Run::new(relid, kind, target.format, &types, max));
        }
        Ok(self.run.as_mut().expect("a run was just made"))
    }

    pub(super) fn count(&mut self, tuple: &TupleData) {
        if self.txns.count(tuple.raw().len() as u64) == 100 {
            crate::failpoint::hit(crate::failpoint::MID_TRANSACTION);
        }
    }

    pub(super) async fn insert(
        &mut self,
        rels: &RelationCache,
        relid: u32,
        new: &TupleData,
    ) -> Result<()> {
        let target = self.target(rels, relid).await?;
        let cols: Vec<ColumnRef<'_>> = new.iter().collect();
        let written = target.written();
        let values = rows::values(&cols, &written, &target)?;
        if txn::is_far(self.opts.dest_round_trip) {
            // Far away, one array per written column for a pipelined INSERT (a COPY
            // costs round trips of its own: see `sql::insert_rows`).
            let run = self
                .push(&target, relid, RunKind::Insert, &written, &[])
                .await?;
            run.push_params(values.into_iter(), &[]);
        } else {
            let run = self.push(&target, relid, RunKind::Insert, &[], &[]).await?;
            run.push_copy_row(values.into_iter());
        }
        self.count(new);
        Ok(())
    }

    /// An update or delete of a row found by every column (REPLICA IDENTITY FULL without
    /// a usable destination key): one statement for the one row.
    pub(super) async fn by_whole_row(
        &mut self,
        target: &Target,
        relid: u32,
        old: &[ColumnRef<'_>],
        new: Option<(&[ColumnRef<'_>], &[usize])>,
    ) -> Result<()> {
        if !target.no_equality.is_empty() {
            return Err(Error::Config(format!(
                "{} has REPLICA IDENTITY FULL on the source and no primary key or replica-identity index on the destination, so a row is found by comparing every column; but column(s) {} have a type without an equality operator (the built-in worker refuses this too): give the destination table a primary key or a replica-identity index",
                target.name,
                target.no_equality.join(", ")
            )));
        }
        let written = target.written();
        let old_values = rows::values(old, &written, target)?;
        let nulls: Vec<bool> = old_values.iter().map(Option::is_none).collect();
        let param = |v: Option<&[u8]>| Param {
            value: v.map(<[u8]>::to_vec),
            format: target.format,
        };
        let mut params: Vec<Param> = old_values
            .iter()
            .flatten()
            .map(|v| param(Some(v)))
            .collect();
        let names: Vec<&str> = written
            .iter()
            .map(|&i| target.cols[i].name.as_str())
            .collect();
        let shown: Vec<String> = written
            .iter()
            .zip(&old_values)
            .map(|(&i, v)| values::show(*v, target.format, target.cols[i].type_oid))
            .collect();
        let desc = conflicts::describe_key(&names, &shown);
        self.flush_run().await?;
        self.stats.statements += 1;
        let all = target.cols_at(&written);
        let (stmt, kind) = match new {
            Some((new_cols, set)) => {
                for &i in set {
                    params.push(param(rows::value(new_cols[i], target)?));
                }
                let set = set.to_vec();
                let s = self
                    .statement(
                        StmtKey::UpdateFull(relid, nulls.clone(), set.clone()),
                        || {
                            sql::update_full(
                                &target.table,
                                target.only,
                                &all,
                                &nulls,
                                &target.cols_at(&set),
                            )
                        },
                    )
                    .await?;
                (s, Kind::Update)
            }
            None => {
                let s = self
                    .statement(StmtKey::DeleteFull(relid, nulls.clone()), || {
                        sql::delete_full(&target.table, target.only, &all, &nulls)
                    })
                    .await?;
                (s, Kind::Delete)
            }
        };
        let o = Outcome::new(kind, relid, &target.name, 1);
        self.exec
            .execute(stmt, Params::Row(params), o, Check::Row(desc))
            .await
    }

    pub(super) async fn update(
        &mut self,
        rels: &RelationCache,
        relid: u32,
        old: Option<&OldTuple>,
        new: &TupleData,
    ) -> Result<()> {
        let target = self.target(rels, relid).await?;
        let what = target.name.as_str();
        let image = UpdateImage::new(old, new, &target.updatable());
        check_identity_unchanged(&target, &image)?;
        let Some(key) = target.match_key(image.full).map(<[usize]>::to_vec) else {
            self.by_whole_row(&target, relid, &image.old, Some((&image.new, &image.set)))
                .await?;
            self.count(new);
            return Ok(());
        };
        if key.is_empty() {
            return Err(Error::Config(format!(
                "an update of {what} arrived without a replica identity to find the row by; give the table a primary key or REPLICA IDENTITY on the source"
            )));
        }
        let old_key = rows::values(&image.old, &key, &target)?;
        let mut new_key = Vec::with_capacity(key.len());
        for &i in &key {
            new_key.push(image.new_key_value(i, &target)?);
        }
        let mut values = Vec::with_capacity(image.set.len());
        for &i in &image.set {
            values.push(rows::value(image.new[i], &target)?);
        }
        let params: Vec<usize> = key.iter().chain(&image.set).copied().collect();
        let keys = [fingerprint(&old_key), fingerprint(&new_key)];
        let keys = if keys[0] == keys[1] {
            &keys[..1]
        } else {
            &keys[..]
        };
        let run = self
            .push(
                &target,
                relid,
                RunKind::Update(key, image.set.clone()),
                &params,
                keys,
            )
            .await?;
        run.push_params(old_key.iter().chain(&values).copied(), keys);
        self.count(new);
        Ok(())
    }

    pub(super) async fn delete(
        &mut self,
        rels: &RelationCache,
        relid: u32,
        old: &OldTuple,
    ) -> Result<()> {
        let target = self.target(rels, relid).await?;
        let cols: Vec<ColumnRef<'_>> = old.tuple().iter().collect();
        let full = matches!(old, OldTuple::Old(_));
        let Some(key) = target.match_key(full).map(<[usize]>::to_vec) else {
            self.by_whole_row(&target, relid, &cols, None).await?;
            self.count(old.tuple());
            return Ok(());
        };
        let values = rows::values(&cols, &key, &target)?;
        let fp = [fingerprint(&values)];
        let params = key.clone();
        let run = self
            .push(&target, relid, RunKind::Delete(key), &params, &fp)
            .await?;
        run.push_params(values.iter().copied(), &fp);
        self.count(old.tuple());
        Ok(())
    }

    pub(super) async fn truncate(
        &mut self,
        rels: &RelationCache,
        relids: &[u32],
        restart: bool,
    ) -> Result<()> {
        let mut tables = Vec::new();
        let mut left_out = false;
        for &relid in relids {
            if self.txns.skipping(relid) {
                left_out = true;
                continue;
            }
            let t = self.target(rels, relid).await?;
            tables.push((t.table.clone(), t.only));
        }
        if tables.is_empty() {
            return Ok(());
        }
        self.flush_run().await?;
        let statement = if left_out {
            sql::truncate_or_delete(&tables, restart)
        } else {
            sql::truncate(&tables, restart)
        };
        self.exec.simple(statement).await?;
        self.stats.truncates += 1;
        Ok(())
    }
}

/// An UPDATE cannot set a `GENERATED ALWAYS AS IDENTITY` column: where the old value is
/// known (a key column, or every column under REPLICA IDENTITY FULL) and changed, stop
/// with what to do, rather than leave the old value silently.
fn check_identity_unchanged(target: &Target, image: &UpdateImage<'_>) -> Result<()> {
    for (i, c) in target.cols.iter().enumerate() {
        if !c.identity_always || !(image.full || target.key.contains(&i)) {
            continue;
        }
        let old = rows::value(image.old[i], target)?;
        let new = image.new_key_value(i, target)?;
        if old != new {
            return Err(Error::Config(format!(
                "the source changed column \"{}\" of {}, which is GENERATED ALWAYS AS IDENTITY on the destination and so cannot be set by an UPDATE: make it GENERATED BY DEFAULT on the destination (ALTER TABLE {} ALTER COLUMN {} SET GENERATED BY DEFAULT)",
                c.name,
                target.name,
                target.table,
                c.ident()
            )));
        }
    }
    Ok(())
}
