//! The prepared statements of the apply session, one per shape, and the queueing of a
//! run as its statement (with what tells which of its rows found nothing).

use super::*;

/// A prepared statement's shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum StmtKey {
    /// Update by the key at these positions, setting those (returning the rows that
    /// found nothing).
    Update(u32, Vec<usize>, Vec<usize>, bool),
    /// Delete by the key at these positions (returning the rows that found nothing).
    Delete(u32, Vec<usize>, bool),
    /// Update of one row equal to the old one (these columns NULL), setting those.
    UpdateFull(u32, Vec<bool>, Vec<usize>),
    /// Delete of one row equal to the old one (these columns NULL).
    DeleteFull(u32, Vec<bool>),
    /// COPY of these columns.
    Copy(u32, Vec<usize>),
    /// INSERT of rows given as one array per column, of these columns.
    Insert(u32, Vec<usize>),
}

impl StmtKey {
    pub(super) fn relid(&self) -> u32 {
        match self {
            StmtKey::Update(id, ..)
            | StmtKey::Delete(id, ..)
            | StmtKey::UpdateFull(id, ..)
            | StmtKey::DeleteFull(id, ..)
            | StmtKey::Copy(id, ..)
            | StmtKey::Insert(id, ..) => *id,
        }
    }
}

impl ApplySink {
    pub(super) async fn statement(
        &mut self,
        key: StmtKey,
        sql: impl FnOnce() -> String,
    ) -> Result<Statement> {
        if let Some(s) = self.stmts.get(&key) {
            return Ok(s.clone());
        }
        let text = sql();
        let stmt = match self.dest.client.prepare(&text).await {
            Ok(s) => s,
            Err(e) => {
                // A queued statement that failed aborted the transaction: its error is
                // the one to report, not this statement's.
                if e.code().map(|c| c.code()) == Some(sqlstate::IN_FAILED_TRANSACTION) {
                    self.settle().await?;
                }
                return Err(sql_err(format!(
                    "preparing `{}`",
                    text.chars().take(120).collect::<String>()
                ))(e));
            }
        };
        self.stmts.insert(key, stmt.clone());
        Ok(stmt)
    }

    /// Queues the pending run, if any, on the executor.
    pub(super) async fn flush_run(&mut self) -> Result<()> {
        let Some(run) = self.run.take() else {
            return Ok(());
        };
        let target = self.targets[&run.relid].clone();
        let rows = run.rows as u64;
        self.stats.statements += 1;
        match &run.kind {
            RunKind::Insert if !run.params.is_empty() => {
                let written = target.written();
                let stmt = self
                    .statement(StmtKey::Insert(run.relid, written.clone()), || {
                        sql::insert_rows(&target.table, &target.cols_at(&written))
                    })
                    .await?;
                let o = Outcome::new(Kind::Insert, run.relid, &target.name, rows);
                self.exec
                    .execute(stmt, Params::Arrays(run.params), o, Check::None)
                    .await?;
            }
            RunKind::Insert => {
                let written = target.written();
                let stmt = self
                    .statement(StmtKey::Copy(run.relid, written.clone()), || {
                        sql::copy_in(&target.table, &target.cols_at(&written), target.format)
                    })
                    .await?;
                let o = Outcome::new(Kind::Insert, run.relid, &target.name, rows);
                self.exec
                    .copy(stmt, Bytes::from(run.copy_data()), o)
                    .await?;
            }
            RunKind::Update(key, set) => {
                let (key, set) = (key.clone(), set.clone());
                let returned = self.returns_missing(&target);
                let stmt = self
                    .statement(
                        StmtKey::Update(run.relid, key.clone(), set.clone(), returned),
                        || {
                            let (keys, sets) = (target.cols_at(&key), target.cols_at(&set));
                            if returned {
                                sql::update_by_key_missing(&target.table, target.only, &keys, &sets)
                            } else {
                                sql::update_by_key(&target.table, target.only, &keys, &sets)
                            }
                        },
                    )
                    .await?;
                let params: Vec<usize> = key.iter().chain(&set).copied().collect();
                let check = self.run_check(&target, &key, &params, returned, || {
                    // The probe finds the new key of each row among the parameters.
                    let new_key: Vec<usize> = key
                        .iter()
                        .enumerate()
                        .map(|(j, k)| {
                            set.iter()
                                .position(|s| s == k)
                                .map_or(j + 1, |p| key.len() + p + 1)
                        })
                        .collect();
                    Probe::Missing(sql::probe(
                        &target.table,
                        target.only,
                        &target.cols_at(&key),
                        &target.cols_at(&params),
                        &[(1..=key.len()).collect(), new_key],
                        false,
                    ))
                });
                let mut o = Outcome::new(Kind::Update, run.relid, &target.name, rows);
                o.update = Some(UpdateLayout { key, set });
                self.exec
                    .execute(stmt, Params::Arrays(run.params), o, check)
                    .await?;
            }
            RunKind::Delete(key) => {
                let key = key.clone();
                let returned = self.returns_missing(&target);
                let stmt = self
                    .statement(StmtKey::Delete(run.relid, key.clone(), returned), || {
                        let keys = target.cols_at(&key);
                        if returned {
                            sql::delete_by_key_missing(&target.table, target.only, &keys)
                        } else {
                            sql::delete_by_key(&target.table, target.only, &keys)
                        }
                    })
                    .await?;
                let check = self.run_check(&target, &key, &key, returned, || {
                    Probe::Kept(sql::probe(
                        &target.table,
                        target.only,
                        &target.cols_at(&key),
                        &target.cols_at(&key),
                        &[(1..=key.len()).collect()],
                        true,
                    ))
                });
                let o = Outcome::new(Kind::Delete, run.relid, &target.name, rows);
                self.exec
                    .execute(stmt, Params::Arrays(run.params), o, check)
                    .await?;
            }
        }
        Ok(())
    }

    /// What tells which rows of a run by `key` (its old values first among the
    /// parameters, which hold the columns at `params`) found nothing: the statement itself where it returns them
    /// (`returned`), else `probe` afterwards, with the rows' origins asked first where
    /// the destination tells them.
    fn run_check(
        &self,
        target: &Target,
        key: &[usize],
        params: &[usize],
        returned: bool,
        probe: impl FnOnce() -> Probe,
    ) -> Check {
        let key_names = target.names_at(key);
        let key_params = (0..key.len()).collect();
        if returned {
            return Check::Returned {
                key_names,
                key_params,
            };
        }
        Check::Run {
            key_names,
            key_params,
            probe: probe(),
            origins: self.origins_probe(target, key, params),
        }
    }

    /// Whether a run's statement returns the rows that found nothing (and so can be
    /// pipelined): where no row trigger can keep a row (a row not changed is then a row
    /// not found), and no query about the rows' origins has to come first.
    fn returns_missing(&self, target: &Target) -> bool {
        !target.row_triggers && self.opts.own_origin.is_none()
    }

    /// Where the destination tells who last wrote a row: the query that finds the rows
    /// of a run by key (the key's old values first among the parameters, which hold the
    /// columns at `params`) another origin wrote last.
    fn origins_probe(&self, target: &Target, key: &[usize], params: &[usize]) -> Option<String> {
        let own = self.opts.own_origin?;
        Some(sql::origin_differs(
            &target.table,
            target.only,
            &target.cols_at(key),
            &target.cols_at(params),
            &(1..=key.len()).collect::<Vec<_>>(),
            own,
        ))
    }
}
