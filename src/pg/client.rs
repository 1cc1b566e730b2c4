//! Every plain SQL session, to the source or the destination: connecting with
//! `tokio-postgres` (TLS through rustls, the same `sslmode` rules as the replication
//! connection, ISO date and interval styles, every float digit), and reading rows as
//! text ([`text_rows`], [`first_value`]) or typed.

use std::sync::Arc;

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use super::{Row, SqlError};
use crate::conninfo::{Conninfo, SslMode};

/// Why a plain SQL session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting or logging in failed.
    #[error(transparent)]
    Sql(#[from] SqlError),
    /// The TLS settings (`sslrootcert`, `sslcert`, …) are unusable: a setup problem.
    #[error("{0}")]
    Tls(String),
}

/// Runs `sql` (simple query protocol) and returns its rows as text.
pub async fn text_rows(client: &Client, sql: &str, what: &str) -> Result<Vec<Row>, SqlError> {
    let msgs = client
        .simple_query(sql)
        .await
        .map_err(|e| SqlError::new(what.to_owned(), e))?;
    let mut columns: Option<Arc<[String]>> = None;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                let names = columns
                    .get_or_insert_with(|| {
                        r.columns().iter().map(|c| c.name().to_owned()).collect()
                    })
                    .clone();
                Some(Row::new(
                    names,
                    (0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect(),
                ))
            }
            _ => None,
        })
        .collect())
}

/// The first column of the first row of `sql`, as text (`None`: no row, or NULL).
pub async fn first_value(
    client: &Client,
    sql: &str,
    what: &str,
) -> Result<Option<String>, SqlError> {
    Ok(text_rows(client, sql, what)
        .await?
        .into_iter()
        .next()
        .and_then(|r| r.into_values().into_iter().next().flatten()))
}

/// Connects a `tokio-postgres` client (TLS per `sslmode`) and drives its connection in
/// the background.
pub async fn connect_client(info: &Conninfo, what: &str) -> Result<Client, ClientError> {
    let mut config = info.tokio_postgres_config();
    if config.get_application_name().is_none() {
        config.application_name(crate::conn::DEFAULT_APPLICATION_NAME);
    }
    // The text formats pgsub reads and writes values in, whatever the role's settings.
    let formats = "-c datestyle=ISO -c intervalstyle=postgres -c extra_float_digits=3";
    let options = match config.get_options() {
        Some(o) if !o.is_empty() => format!("{o} {formats}"),
        _ => formats.to_owned(),
    };
    config.options(&options);
    let target = info.host_display();
    let fail = |e| {
        ClientError::Sql(SqlError::connecting(
            format!("connecting to the {what} ({target})"),
            e,
        ))
    };
    let tls = crate::conn::tls::client_config(info).map_err(|e| ClientError::Tls(e.to_string()))?;
    let client = match (tls, info.sslmode) {
        (Some(cfg), mode) if mode != SslMode::Disable => {
            let (client, conn) = config
                .connect(super::tls::MakeRustls(cfg))
                .await
                .map_err(fail)?;
            spawn_connection(conn);
            client
        }
        _ => {
            let (client, conn) = config.connect(NoTls).await.map_err(fail)?;
            spawn_connection(conn);
            client
        }
    };
    Ok(client)
}

fn spawn_connection<C>(conn: C)
where
    C: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("connection ended: {e}");
        }
    });
}
