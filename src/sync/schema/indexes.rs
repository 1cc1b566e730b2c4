//! Indexes after the data (`--schema create`): a table pgsub creates has its key and
//! nothing else while it is copied; once every copy is done, and before any change is
//! applied, the source's other indexes and its unique and exclusion constraints are built
//! on the destination, several at once (`--copy-jobs` sessions, each with a larger
//! `maintenance_work_mem`). Building an index once over the data is faster than keeping
//! it up to date row by row during the copy.
//!
//! What exists is found by name in the table's schema, so that a run killed before or
//! while the indexes were built builds the missing ones next time, and a table the
//! operator made keeps what it has (and gains what the source has and it lacks, as it
//! gains missing columns). The key (primary key or replica-identity index) is made with
//! the table, before the copy: changes are found by it from the first one. Indexes that
//! are partitions of a partitioned index come with their parent's; one the destination
//! cannot build (a function or operator class it lacks) is logged with its statement and
//! the destination's error, and the rest go on: the rows are right without it.

use tokio_postgres::Client;

use crate::conn::Connection;
use crate::conninfo::Conninfo;
use crate::error::Result;
use crate::pg::SqlError;
use crate::source::tables::PublishedTable;

/// An index (or the constraint it backs) of a published table on the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceIndex {
    /// Schema of the table (and so of the index).
    pub schema: String,
    /// `schema.table`, for messages.
    pub table: String,
    /// Name of the index, or of the constraint.
    pub name: String,
    /// The statement that makes it: `CREATE [UNIQUE] INDEX …` or `ALTER TABLE … ADD
    /// CONSTRAINT …`.
    pub sql: String,
}

/// Session settings of a building session.
const BUILD_SETTINGS: &str = "SET maintenance_work_mem = '256MB'";

/// The indexes of `tables` other than their keys, with the statements that make them.
pub async fn read(conn: &mut Connection, tables: &[PublishedTable]) -> Result<Vec<SourceIndex>> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let relids = tables
        .iter()
        .map(|t| t.relid.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let rows = conn
        .simple_query(&format!(
            "SELECT n.nspname, c.relname, coalesce(con.conname, i.relname), \
                    CASE WHEN con.oid IS NOT NULL \
                         THEN 'ALTER TABLE ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) \
                              || ' ADD CONSTRAINT ' || pg_catalog.quote_ident(con.conname) || ' ' || pg_catalog.pg_get_constraintdef(con.oid) \
                         ELSE pg_catalog.pg_get_indexdef(x.indexrelid) END \
             FROM pg_catalog.pg_index x \
             JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid \
             JOIN pg_catalog.pg_class c ON c.oid = x.indrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_catalog.pg_constraint con ON con.conindid = x.indexrelid AND con.conrelid = x.indrelid \
                  AND con.contype IN ('u', 'x') \
             WHERE x.indrelid IN ({relids}) AND NOT x.indisprimary AND NOT x.indisreplident \
               AND NOT i.relispartition \
             ORDER BY n.nspname, c.relname, 3"
        ))
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let schema = r.get_idx(0).unwrap_or_default().to_owned();
            let table = format!("{schema}.{}", r.get_idx(1).unwrap_or_default());
            SourceIndex {
                schema,
                table,
                name: r.get_idx(2).unwrap_or_default().to_owned(),
                sql: r.get_idx(3).unwrap_or_default().to_owned(),
            }
        })
        .collect())
}

/// Which of `indexes` the destination lacks (no relation, nor constraint, of that name in
/// the schema), in one query.
pub async fn missing(client: &Client, indexes: Vec<SourceIndex>) -> Result<Vec<SourceIndex>> {
    if indexes.is_empty() {
        return Ok(indexes);
    }
    let schemas: Vec<&str> = indexes.iter().map(|ix| ix.schema.as_str()).collect();
    let names: Vec<&str> = indexes.iter().map(|ix| ix.name.as_str()).collect();
    let exists: Vec<bool> = client
        .query(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n \
             ON n.oid = c.relnamespace WHERE n.nspname = u.s AND c.relname = u.n) \
             OR EXISTS (SELECT FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_namespace n \
             ON n.oid = k.connamespace WHERE n.nspname = u.s AND k.conname = u.n) \
             FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(s, n, o) ORDER BY u.o",
            &[&schemas, &names],
        )
        .await
        .map_err(|e| SqlError::new("looking for the destination's indexes", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(indexes
        .into_iter()
        .zip(exists)
        .filter_map(|(ix, exists)| (!exists).then_some(ix))
        .collect())
}

/// How many indexes were built, and how many could not be.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Built {
    /// Built.
    pub built: usize,
    /// Refused by the destination (logged).
    pub failed: usize,
}

/// Builds `indexes` on the destination, `jobs` at a time, each session with a larger
/// `maintenance_work_mem`.
pub async fn build(dest: &Conninfo, indexes: Vec<SourceIndex>, jobs: usize) -> Result<Built> {
    if indexes.is_empty() {
        return Ok(Built::default());
    }
    let started = std::time::Instant::now();
    let total = indexes.len();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(indexes));
    let mut sessions = tokio::task::JoinSet::new();
    for _ in 0..jobs.clamp(1, total) {
        let dest = crate::dest::connect(dest).await?;
        dest.client
            .batch_execute(BUILD_SETTINGS)
            .await
            .map_err(|e| SqlError::new("preparing an index-building session", e))?;
        let queue = queue.clone();
        sessions.spawn(async move {
            let mut done = Built::default();
            loop {
                let next = queue.lock().map(|mut q| q.pop()).unwrap_or_default();
                let Some(ix) = next else {
                    break;
                };
                let t0 = std::time::Instant::now();
                match dest.client.batch_execute(&ix.sql).await {
                    Ok(()) => {
                        done.built += 1;
                        tracing::info!(table = %ix.table, index = %ix.name, seconds = %format!("{:.2}", t0.elapsed().as_secs_f64()), "index built");
                    }
                    Err(e) => {
                        done.failed += 1;
                        tracing::warn!(
                            table = %ix.table,
                            index = %ix.name,
                            "the destination could not build `{}` ({}): the rows are replicated all the same, without this index; create it by hand once its cause is fixed",
                            ix.sql,
                            crate::pg::describe(&e)
                        );
                    }
                }
            }
            done
        });
    }
    let mut all = Built::default();
    while let Some(done) = sessions.join_next().await {
        let done = done.unwrap_or_else(|e| {
            tracing::warn!("an index-building session ended early: {e}");
            Built::default()
        });
        all.built += done.built;
        all.failed += done.failed;
    }
    tracing::info!(
        built = all.built,
        failed = all.failed,
        seconds = %format!("{:.2}", started.elapsed().as_secs_f64()),
        "indexes built after the copy"
    );
    Ok(all)
}
