//! Random workloads: each session runs transactions of random operations on random
//! tables — inserts (also bulk ones large enough to be streamed), updates of values, of
//! keys and of UNIQUE columns in collision-free orders, deletes, delete and re-insert of
//! one key, updates of rows inserted in the same transaction, duplicates in keyless
//! tables, TRUNCATE, savepoints rolled back and released, and rows that move between
//! partitions. A transaction the source refuses (a constraint, a deadlock with another
//! session) is rolled back and counted; that is part of the workload too.

use tokio_postgres::Client;

use super::rng::Rng;
use super::schema::{Identity, KeyType, Role, Schema, Table};

/// What a session did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Done {
    /// Transactions committed.
    pub committed: u64,
    /// Transactions the source refused.
    pub refused: u64,
    /// Rows the committed transactions changed (as the source counted them).
    pub rows: u64,
}

impl std::ops::AddAssign for Done {
    fn add_assign(&mut self, o: Done) {
        self.committed += o.committed;
        self.refused += o.refused;
        self.rows += o.rows;
    }
}

/// One session's generator: its own row numbers (`n`), so sessions never pick the same
/// new key.
pub struct Session<'a> {
    schema: &'a Schema,
    rng: Rng,
    next_n: i64,
    id: i64,
    /// Some transactions end in PREPARE TRANSACTION, then COMMIT or ROLLBACK PREPARED.
    two_phase: bool,
    prepared: u64,
}

/// Between a prepared transaction and the statement that finishes it, in what
/// [`Session::transaction`] returns: they run one after the other, as transactions of their
/// own.
pub const THEN: &str = "\n-- then\n";

impl<'a> Session<'a> {
    /// Session `id` (0 is the one that loads the initial rows).
    pub fn new(schema: &'a Schema, id: i64, rng: Rng) -> Self {
        Session {
            schema,
            rng,
            next_n: id * 50_000_000 + 1,
            id,
            two_phase: false,
            prepared: 0,
        }
    }

    /// Ends some transactions in PREPARE TRANSACTION, each finished right after (by the
    /// same session, since what it holds locked could stop its next transaction).
    pub fn with_two_phase(mut self, on: bool) -> Self {
        self.two_phase = on;
        self
    }

    fn table(&mut self) -> usize {
        self.rng.below(self.schema.tables.len() as u64) as usize
    }

    fn q(&self, t: &Table) -> String {
        t.qualified(&self.schema.namespace)
    }

    /// The key columns' values for row number `n`.
    fn key_values(&self, t: &Table, n: i64) -> Vec<String> {
        match t.key_type {
            KeyType::Int | KeyType::IdentityByDefault => vec![n.to_string()],
            KeyType::IdentityAlways => vec![],
            KeyType::Text => vec![format!("'k{n}'")],
            KeyType::Uuid => vec![format!(
                "'{:08x}-0000-4000-8000-{:012x}'",
                n >> 32,
                n & 0xffff_ffff_ffff
            )],
            KeyType::Composite => vec![(n % 97).to_string(), format!("'x{n}'")],
        }
    }

    /// A VALUES row for a new row of `t` (columns of [`Table::insertable`]); `target`
    /// is the relation inserted into (a child has one more column).
    fn row(&mut self, t: &Table, n: i64, child: bool) -> String {
        let keys = self.key_values(t, n);
        let mut vals = Vec::new();
        let mut key_i = 0;
        for c in t.insertable() {
            let keyish = c.role == Role::Key
                || (matches!(t.identity, Identity::FullNoKey | Identity::NoKey)
                    && (c.name == "k" || c.name == "k1" || c.name == "k2"));
            vals.push(if keyish {
                let v = keys.get(key_i).cloned().unwrap_or_else(|| n.to_string());
                key_i += 1;
                v
            } else {
                match &c.role {
                    Role::N => n.to_string(),
                    Role::Unique => (n * 10).to_string(),
                    Role::Ref(parent) => {
                        format!(
                            "(SELECT k FROM \"{}\".\"{parent}\" ORDER BY n DESC LIMIT 1)",
                            self.schema.namespace
                        )
                    }
                    _ if self.rng.percent(15) => "NULL".into(),
                    _ => c.ty.literal(&mut self.rng),
                }
            });
        }
        if child {
            vals.push(if self.rng.percent(50) {
                "NULL".into()
            } else {
                format!("'c{n}'")
            });
        }
        format!("({})", vals.join(", "))
    }

    fn insert_cols(&self, t: &Table, child: bool) -> String {
        let mut cols: Vec<String> = t.insertable().iter().map(|c| c.ident()).collect();
        if child {
            cols.push("extra".into());
        }
        cols.join(", ")
    }

    /// `INSERT` of `count` new rows into `t` (or its inheritance child).
    fn insert(&mut self, ti: usize, count: u64) -> (String, Vec<i64>) {
        let t = self.schema.tables[ti].clone();
        let child = t.child && self.rng.percent(40);
        let target = if child {
            format!("\"{}\".\"{}_c\"", self.schema.namespace, t.name)
        } else {
            self.q(&t)
        };
        let mut rows = Vec::new();
        let mut ns = Vec::new();
        for _ in 0..count {
            // A child row sometimes takes a key its parent already has.
            let n = if child && self.rng.percent(30) {
                self.next_n - 1
            } else {
                self.next_n += 1;
                self.next_n
            };
            ns.push(n);
            rows.push(self.row(&t, n, child));
        }
        (
            format!(
                "INSERT INTO {target} ({}) VALUES {};",
                self.insert_cols(&t, child),
                rows.join(", ")
            ),
            ns,
        )
    }

    /// A predicate picking about one row in `m`.
    fn some_rows(&mut self) -> String {
        let m = self.rng.range(3, 40);
        format!("n % {m} = {}", self.rng.range(0, m - 1))
    }

    /// Random values for random payload columns: (quoted column, value).
    fn assignments(&mut self, t: &Table) -> Option<Vec<(String, String)>> {
        let payload: Vec<_> = t
            .cols
            .iter()
            .filter(|c| c.role == Role::Payload)
            .cloned()
            .collect();
        if payload.is_empty() {
            return None;
        }
        let mut sets = Vec::new();
        for c in &payload {
            if sets.is_empty() || self.rng.percent(40) {
                let v = if self.rng.percent(10) {
                    "NULL".into()
                } else {
                    c.ty.literal(&mut self.rng)
                };
                sets.push((c.ident(), v));
            }
        }
        Some(sets)
    }

    /// `SET` of random values on random payload columns.
    fn set_clause(&mut self, t: &Table) -> Option<String> {
        let sets = self.assignments(t)?;
        Some(
            sets.iter()
                .map(|(c, v)| format!("{c} = {v}"))
                .collect::<Vec<_>>()
                .join(", "),
        )
    }

    /// One operation as SQL, or None when it does not fit the table.
    fn op(&mut self, in_txn: &mut Vec<(usize, i64)>) -> Option<String> {
        let ti = self.table();
        let t = self.schema.tables[ti].clone();
        let q = self.q(&t);
        let only = if t.partitioned.is_some() { "" } else { "ONLY " };
        let roll = self.rng.below(100);
        Some(match roll {
            0..=29 => {
                let count = self.rng.range(1, 5) as u64;
                let (sql, ns) = self.insert(ti, count);
                in_txn.extend(ns.into_iter().map(|n| (ti, n)));
                sql
            }
            30..=31 => {
                // A bulk insert: with logical_decoding_work_mem at 64kB, streamed.
                let count = self.rng.range(300, 1500) as u64;
                let (sql, ns) = self.insert(ti, count);
                in_txn.extend(ns.into_iter().map(|n| (ti, n)));
                sql
            }
            32..=49 if t.changeable() => {
                let set = self.set_clause(&t)?;
                format!("UPDATE {only}{q} SET {set} WHERE {};", self.some_rows())
            }
            50..=54 if t.changeable() => {
                // A row inserted earlier in this transaction, changed again.
                let &(tj, n) = in_txn.iter().rev().find(|(tj, _)| *tj == ti)?;
                let tt = self.schema.tables[tj].clone();
                let set = self.set_clause(&tt)?;
                format!("UPDATE {only}{q} SET {set} WHERE n = {n};")
            }
            55..=61 if t.key_updatable() => {
                let pred = self.some_rows();
                match t.key_type {
                    KeyType::Int | KeyType::IdentityByDefault => format!(
                        "UPDATE {only}{q} SET k = k + 500000000 WHERE {pred} AND k < 1000000000;"
                    ),
                    KeyType::Text => format!(
                        "UPDATE {only}{q} SET k = k || 'x' WHERE {pred} AND length(k) < 20;"
                    ),
                    KeyType::Composite => format!(
                        "UPDATE {only}{q} SET k2 = k2 || 'y' WHERE {pred} AND length(k2) < 20;"
                    ),
                    _ => return None,
                }
            }
            62..=67 if t.col(&Role::Unique).is_some() => {
                if t.deferred_unique && self.rng.percent(50) {
                    // Two rows swap their values: legal under a deferred constraint only.
                    format!(
                        "DO $$DECLARE x record; y record; BEGIN \
                         SELECT n, u INTO x FROM {only}{q} WHERE u IS NOT NULL ORDER BY n LIMIT 1 OFFSET 1; \
                         SELECT n, u INTO y FROM {only}{q} WHERE u IS NOT NULL ORDER BY n DESC LIMIT 1; \
                         IF x.n IS NOT NULL AND y.n IS NOT NULL AND x.n <> y.n THEN \
                         UPDATE {only}{q} SET u = y.u WHERE n = x.n; UPDATE {only}{q} SET u = x.u WHERE n = y.n; \
                         END IF; END$$;"
                    )
                } else {
                    // The lowest values move down one step each, lowest first: free of
                    // collisions in this order, not in any other.
                    format!(
                        "DO $$DECLARE r record; BEGIN FOR r IN SELECT n FROM {only}{q} WHERE u IS NOT NULL ORDER BY u LIMIT {} LOOP \
                         UPDATE {only}{q} SET u = u - 10 WHERE n = r.n; END LOOP; END$$;",
                        self.rng.range(2, 6)
                    )
                }
            }
            68..=79 if t.changeable() => {
                format!("DELETE FROM {only}{q} WHERE {};", self.some_rows())
            }
            80..=84 if t.changeable() && t.identity != Identity::FullNoKey => {
                // Delete one row and insert it again with other values, in one statement.
                let set = self.assignments(&t)?;
                let cols: Vec<String> = t.insertable().iter().map(|c| c.ident()).collect();
                let values: Vec<String> = t
                    .insertable()
                    .iter()
                    .map(|c| {
                        set.iter()
                            .find(|(name, _)| *name == c.ident())
                            .map(|(_, v)| v.clone())
                            .unwrap_or_else(|| format!("d.{}", c.ident()))
                    })
                    .collect();
                format!(
                    "WITH d AS (DELETE FROM {only}{q} WHERE n = (SELECT n FROM {only}{q} WHERE {} LIMIT 1) RETURNING *) \
                     INSERT INTO {q} ({}) SELECT {} FROM d;",
                    self.some_rows(),
                    cols.join(", "),
                    values.join(", ")
                )
            }
            85..=89 if !t.changeable() || t.identity == Identity::FullNoKey => {
                // Exact duplicates, which only a table without a key can hold.
                let cols: Vec<String> = t.insertable().iter().map(|c| c.ident()).collect();
                format!(
                    "INSERT INTO {q} ({}) SELECT {} FROM {only}{q} WHERE {} LIMIT 3;",
                    cols.join(", "),
                    cols.join(", "),
                    self.some_rows()
                )
            }
            90..=91 => {
                // TRUNCATE of a table (through its root, which a publication via the root
                // replicates; never a single partition, which it does not).
                let restart = if self.rng.percent(40) {
                    " RESTART IDENTITY"
                } else {
                    ""
                };
                let cascade = if self
                    .schema
                    .tables
                    .iter()
                    .any(|o| o.cols.iter().any(|c| c.role == Role::Ref(t.name.clone())))
                {
                    " CASCADE"
                } else {
                    ""
                };
                format!("TRUNCATE {q}{restart}{cascade};")
            }
            _ => return None,
        })
    }

    /// One transaction's SQL: `BEGIN; … COMMIT;`, with savepoints now and then; under
    /// two-phase, now and then `BEGIN; … PREPARE TRANSACTION 'g'`, [`THEN`], `COMMIT
    /// PREPARED 'g'` (or ROLLBACK PREPARED).
    pub fn transaction(&mut self) -> String {
        let mut sql = String::from("BEGIN;\n");
        let mut in_txn = Vec::new();
        let ops = self.rng.range(1, 6);
        let mut savepoint = 0;
        for _ in 0..ops {
            let Some(op) = self.op(&mut in_txn) else {
                continue;
            };
            if self.rng.percent(12) {
                savepoint += 1;
                let end = if self.rng.percent(50) {
                    "ROLLBACK TO SAVEPOINT"
                } else {
                    "RELEASE SAVEPOINT"
                };
                sql.push_str(&format!(
                    "SAVEPOINT s{savepoint};\n{op}\n{end} s{savepoint};\n"
                ));
            } else {
                sql.push_str(&op);
                sql.push('\n');
            }
        }
        // Drawn only under two-phase, so that other seeds draw as before.
        if self.two_phase && self.rng.percent(25) {
            self.prepared += 1;
            let gid = format!("pgdiff_{}_{}", self.id, self.prepared);
            let finish = if self.rng.percent(80) {
                "COMMIT"
            } else {
                "ROLLBACK"
            };
            sql.push_str(&format!(
                "PREPARE TRANSACTION '{gid}';{THEN}{finish} PREPARED '{gid}';"
            ));
        } else {
            sql.push_str("COMMIT;");
        }
        sql
    }

    /// The initial rows: up to `max` per table.
    pub fn initial(&mut self, max: u64) -> Vec<String> {
        let mut out = Vec::new();
        for ti in 0..self.schema.tables.len() {
            let count = self.rng.below(max + 1);
            let mut left = count;
            while left > 0 {
                let batch = left.min(200);
                out.push(self.insert(ti, batch).0);
                left -= batch;
            }
        }
        out
    }
}

/// Runs `sql` as one transaction; a refusal is rolled back and counted.
pub async fn run(client: &Client, sql: &str, done: &mut Done) {
    match client.simple_query(sql).await {
        Ok(msgs) => {
            done.committed += 1;
            done.rows += msgs
                .iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
                    _ => None,
                })
                .sum::<u64>();
        }
        Err(e) => {
            done.refused += 1;
            let _ = client.batch_execute("ROLLBACK").await;
            if std::env::var_os("PGSUB_DIFF_VERBOSE").is_some() {
                eprintln!(
                    "refused: {e}: {}",
                    sql.chars().take(300).collect::<String>()
                );
            }
        }
    }
}
