//! Destination work off the receive path: one task runs the statements of the open
//! destination transaction strictly in the order they were queued, while the stream
//! loop goes on reading, decoding and batching the next changes.
//!
//! Without it, every statement's round trip and execution would stop pgsub reading the
//! source, the walsender would block on a full socket, and the source's decoding and the
//! destination's applying would take turns instead of running at the same time.
//!
//! The queue is bounded (backpressure). The first failure is kept and every later job is
//! skipped; [`Executor::barrier`] waits for the queue to drain and returns what was done,
//! or that failure. Anything that must see the queued work done — recording progress and
//! committing, reading the catalog, rolling back — goes through a barrier first.

use bytes::Bytes;
use futures_util::SinkExt;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use crate::dest::SqlError;
use crate::error::{Error, Result};

/// Parameters of a statement: one text array per column (a run), or one row of text.
#[derive(Debug)]
pub enum Params {
    /// `text[]` parameters.
    Arrays(Vec<super::batch::TextArray>),
    /// `text` parameters.
    Row(Vec<Option<String>>),
}

/// What a job did, for the counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Rows inserted.
    Insert,
    /// Rows updated.
    Update,
    /// Rows deleted.
    Delete,
    /// Anything else.
    Other,
}

/// The result of one job.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What it was.
    pub kind: Kind,
    /// `schema.table`.
    pub table: String,
    /// Rows it was meant to change.
    pub expected: u64,
    /// Rows it changed.
    pub affected: u64,
}

enum Job {
    Execute {
        stmt: Statement,
        params: Params,
        outcome: Outcome,
    },
    Copy {
        sql: String,
        data: Bytes,
        outcome: Outcome,
    },
    Simple {
        sql: String,
    },
    Barrier(oneshot::Sender<std::result::Result<Vec<Outcome>, SqlError>>),
}

/// The queue of destination work and the task draining it.
#[derive(Debug)]
pub struct Executor {
    tx: mpsc::Sender<Job>,
}

/// Jobs waiting at most: with runs of up to 8 MiB, this bounds queued data to 32 MiB.
const QUEUE: usize = 4;

impl Executor {
    /// Starts the task on `client`.
    pub fn start(client: Arc<Client>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(client, rx));
        Executor { tx }
    }

    async fn push(&self, job: Job) -> Result<()> {
        self.tx
            .send(job)
            .await
            .map_err(|_| Error::Config("the destination executor stopped".into()))
    }

    /// Queues a prepared statement.
    pub async fn execute(&self, stmt: Statement, params: Params, outcome: Outcome) -> Result<()> {
        self.push(Job::Execute {
            stmt,
            params,
            outcome,
        })
        .await
    }

    /// Queues a COPY … FROM STDIN with its data.
    pub async fn copy(&self, sql: String, data: Bytes, outcome: Outcome) -> Result<()> {
        self.push(Job::Copy { sql, data, outcome }).await
    }

    /// Queues statements without parameters or results.
    pub async fn simple(&self, sql: impl Into<String>) -> Result<()> {
        self.push(Job::Simple { sql: sql.into() }).await
    }

    /// Waits until everything queued is done; returns what it did since the last
    /// barrier, or the first failure.
    pub async fn barrier(&self) -> Result<Vec<Outcome>> {
        let (tx, rx) = oneshot::channel();
        self.push(Job::Barrier(tx)).await?;
        match rx.await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(Error::Config("the destination executor stopped".into())),
        }
    }
}

async fn run(client: Arc<Client>, mut rx: mpsc::Receiver<Job>) {
    let mut done = Vec::new();
    let mut failed: Option<SqlError> = None;
    while let Some(job) = rx.recv().await {
        if let Job::Barrier(reply) = job {
            let result = match failed.take() {
                Some(e) => Err(e),
                None => Ok(std::mem::take(&mut done)),
            };
            done.clear();
            let _ = reply.send(result);
            continue;
        }
        if failed.is_some() {
            continue;
        }
        match perform(&client, job).await {
            Ok(Some(o)) => done.push(o),
            Ok(None) => {}
            Err(e) => failed = Some(e),
        }
    }
}

async fn perform(client: &Client, job: Job) -> std::result::Result<Option<Outcome>, SqlError> {
    match job {
        Job::Execute {
            stmt,
            params,
            mut outcome,
        } => {
            let context = || format!("applying changes to {}", outcome.table);
            let affected = match &params {
                Params::Arrays(p) => {
                    let refs: Vec<&(dyn ToSql + Sync)> =
                        p.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
                    client.execute(&stmt, &refs).await
                }
                Params::Row(p) => {
                    let refs: Vec<&(dyn ToSql + Sync)> =
                        p.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
                    client.execute(&stmt, &refs).await
                }
            }
            .map_err(|e| SqlError::new(context(), e))?;
            outcome.affected = affected;
            Ok(Some(outcome))
        }
        Job::Copy {
            sql,
            data,
            mut outcome,
        } => {
            let context = || format!("inserting into {}", outcome.table);
            let sink = client
                .copy_in::<_, Bytes>(&sql)
                .await
                .map_err(|e| SqlError::new(context(), e))?;
            let mut sink = std::pin::pin!(sink);
            sink.send(data)
                .await
                .map_err(|e| SqlError::new(context(), e))?;
            outcome.affected = sink
                .finish()
                .await
                .map_err(|e| SqlError::new(context(), e))?;
            Ok(Some(outcome))
        }
        Job::Simple { sql } => {
            client.batch_execute(&sql).await.map_err(|e| {
                SqlError::new(
                    format!("running `{}`", sql.chars().take(120).collect::<String>()),
                    e,
                )
            })?;
            Ok(None)
        }
        Job::Barrier(_) => Ok(None),
    }
}
