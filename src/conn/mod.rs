//! pgsub's own connection to a PostgreSQL server: the I/O edge of the protocol core.
//!
//! ```text
//!  open transport ──► StartupMessage ──► authentication ──► ParameterStatus… ReadyForQuery
//!  (TCP/Unix, TLS)    replication=database   trust / password / md5 /        │
//!                     datestyle=ISO …        SCRAM-SHA-256(-PLUS)            ▼
//!                                                           simple query ◄──► ready
//!                                                                │ START_REPLICATION
//!                                                                ▼
//!                                              CopyBoth: CopyData both ways ──► CopyDone /
//!                                              CommandComplete / ErrorResponse ──► ready
//! ```
//!
//! `tokio-postgres` cannot open a replication connection (no `replication` startup
//! parameter, no CopyBoth), so this module speaks the protocol itself on top of
//! [`crate::protocol`], with `postgres-protocol` for the frontend messages and SCRAM.
//! The startup packet carries the settings the built-in walreceiver uses, so text values
//! are produced in the formats pgsub expects: `client_encoding=UTF8`, `datestyle=ISO`,
//! `intervalstyle=postgres`, `extra_float_digits=3`.
//!
//! Replication commands live in [`replication`]; the byte pipe in [`transport`].

mod auth;
pub mod error;
pub mod replication;
pub mod tls;
pub mod transport;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use error::{ConnError, ErrorClass};

use crate::conninfo::Conninfo;
use crate::protocol::backend::{BackendMessage, ServerError};
use crate::protocol::frame::{Frame, FrameDecoder};
use transport::Transport;

/// Default `application_name` (what `pg_stat_replication` shows).
pub const DEFAULT_APPLICATION_NAME: &str = "pgsub";

/// How much to read from the socket at a time.
const READ_CHUNK: usize = 256 * 1024;

pub use crate::protocol::row::Row;

/// A connection using the simple query protocol, optionally a replication connection.
#[derive(Debug)]
pub struct Connection {
    transport: Transport,
    target: String,
    rbuf: BytesMut,
    wbuf: BytesMut,
    frames: FrameDecoder,
    params: HashMap<String, String>,
    process_id: i32,
    bytes_read: u64,
    database: String,
}

impl Connection {
    /// Connects and authenticates; with `replication`, as a logical walsender
    /// (`replication=database`).
    pub async fn connect(info: &Conninfo, replication: bool) -> Result<Self, ConnError> {
        let (transport, target) = transport::open(info).await?;
        let mut conn = Connection {
            transport,
            target,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::new(),
            frames: FrameDecoder::default(),
            params: HashMap::new(),
            process_id: 0,
            bytes_read: 0,
            database: String::new(),
        };
        conn.startup(info, replication).await?;
        Ok(conn)
    }

    async fn startup(&mut self, info: &Conninfo, replication: bool) -> Result<(), ConnError> {
        let user = info.user.clone().unwrap_or_default();
        let dbname = info.dbname.clone().unwrap_or_else(|| user.clone());
        self.database = dbname.clone();
        let app = info
            .application_name
            .clone()
            .unwrap_or_else(|| DEFAULT_APPLICATION_NAME.to_owned());
        let mut params: Vec<(&str, &str)> = vec![
            ("user", &user),
            ("database", &dbname),
            ("application_name", &app),
            ("client_encoding", "UTF8"),
            ("datestyle", "ISO"),
            ("intervalstyle", "postgres"),
            ("extra_float_digits", "3"),
        ];
        if replication {
            params.push(("replication", "database"));
        }
        if let Some(opts) = info.options.as_deref() {
            params.push(("options", opts));
        }
        postgres_protocol::message::frontend::startup_message(
            params.iter().copied(),
            &mut self.wbuf,
        )
        .map_err(|e| ConnError::io("building the startup message", e))?;
        self.flush("sending the startup message").await?;
        auth::authenticate(self, info, &user).await?;
        loop {
            match self.read_message("starting up").await? {
                BackendMessage::BackendKeyData { process_id } => self.process_id = process_id,
                BackendMessage::ReadyForQuery(_) => return Ok(()),
                BackendMessage::ErrorResponse(error) => {
                    return Err(ConnError::Server {
                        context: format!("starting a session on {}", self.target),
                        error,
                    });
                }
                BackendMessage::NegotiateProtocolVersion { .. } => {}
                other => return Err(unexpected("starting up", &other)),
            }
        }
    }

    /// Where this connection goes (`host:port` or the socket path); never has secrets.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// True when the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.transport.is_tls()
    }

    /// The database connected to.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The backend's process ID.
    pub fn process_id(&self) -> i32 {
        self.process_id
    }

    /// A run-time parameter the server reported (`server_version`, `TimeZone` …).
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// The server's version as `server_version_num` spells it (150018 for 15.18).
    pub fn server_version_num(&self) -> u32 {
        self.parameter("server_version")
            .map(parse_server_version)
            .unwrap_or(0)
    }

    /// Bytes read from the socket so far (framing and TLS records' payload included).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    pub(crate) fn tls_server_end_point(&self) -> Option<Vec<u8>> {
        self.transport.tls_server_end_point()
    }

    pub(crate) fn wbuf(&mut self) -> &mut BytesMut {
        &mut self.wbuf
    }

    /// Writes out everything buffered.
    pub(crate) async fn flush(&mut self, context: &str) -> Result<(), ConnError> {
        if !self.wbuf.is_empty() {
            let buf = self.wbuf.split();
            self.transport
                .write_all(&buf)
                .await
                .map_err(|e| ConnError::io(context, e))?;
        }
        self.transport
            .flush()
            .await
            .map_err(|e| ConnError::io(context, e))
    }

    /// The next frame. Cancel-safe: a partial frame stays buffered.
    pub(crate) async fn read_frame(&mut self, context: &str) -> Result<Frame, ConnError> {
        loop {
            if let Some(frame) =
                self.frames
                    .decode_frame(&mut self.rbuf)
                    .map_err(|source| ConnError::Protocol {
                        context: context.to_owned(),
                        source,
                    })?
            {
                return Ok(frame);
            }
            if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
                self.rbuf.reserve(READ_CHUNK);
            }
            let n = self
                .transport
                .read_buf(&mut self.rbuf)
                .await
                .map_err(|e| ConnError::io(context, e))?;
            if n == 0 {
                return Err(ConnError::Closed {
                    context: context.to_owned(),
                });
            }
            self.bytes_read += n as u64;
        }
    }

    /// The next message other than ParameterStatus and NoticeResponse, which are
    /// recorded and logged on the way.
    pub(crate) async fn read_message(
        &mut self,
        context: &str,
    ) -> Result<BackendMessage, ConnError> {
        loop {
            let frame = self.read_frame(context).await?;
            let msg = BackendMessage::parse(frame).map_err(|source| ConnError::Protocol {
                context: context.to_owned(),
                source,
            })?;
            match msg {
                BackendMessage::ParameterStatus { name, value } => {
                    self.params.insert(name, value);
                }
                BackendMessage::NoticeResponse(n) => log_notice(&n),
                BackendMessage::NotificationResponse => {}
                other => return Ok(other),
            }
        }
    }

    /// Runs one or more statements with the simple query protocol and returns the rows
    /// of all of them. A server error is returned after the server is ready again, so
    /// the connection stays usable.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<Row>, ConnError> {
        postgres_protocol::message::frontend::query(sql, &mut self.wbuf)
            .map_err(|e| ConnError::io("building a query", e))?;
        let context = query_context(sql);
        self.flush(&context).await?;
        let mut rows = Vec::new();
        let mut columns: Arc<[String]> = Arc::from(Vec::new());
        let mut error = None;
        loop {
            match self.read_message(&context).await? {
                BackendMessage::RowDescription(fields) => {
                    columns = fields.into_iter().map(|f| f.name).collect();
                }
                BackendMessage::DataRow(values) => rows.push(Row::new(
                    columns.clone(),
                    values
                        .into_iter()
                        .map(|v| v.map(|b| String::from_utf8_lossy(&b).into_owned()))
                        .collect(),
                )),
                BackendMessage::CommandComplete(_) | BackendMessage::EmptyQueryResponse => {}
                BackendMessage::ErrorResponse(e) => error = Some(e),
                BackendMessage::ReadyForQuery(_) => break,
                BackendMessage::CopyBothResponse
                | BackendMessage::CopyOutResponse
                | BackendMessage::CopyInResponse => {
                    return Err(ConnError::Unexpected {
                        context,
                        got: "a COPY response to a simple query".into(),
                    });
                }
                other => return Err(unexpected(&context, &other)),
            }
        }
        match error {
            Some(error) => Err(ConnError::Server { context, error }),
            None => Ok(rows),
        }
    }

    /// Runs statements, discarding any rows.
    pub async fn execute(&mut self, sql: &str) -> Result<(), ConnError> {
        self.simple_query(sql).await.map(|_| ())
    }

    /// Sends a Terminate and closes the socket.
    pub async fn close(mut self) {
        self.close_in_place().await;
    }

    /// Sends a Terminate and closes the socket, for a connection the caller cannot give
    /// up ownership of; it must not be used afterwards.
    pub async fn close_in_place(&mut self) {
        postgres_protocol::message::frontend::terminate(&mut self.wbuf);
        let _ = self.flush("closing").await;
        let _ = self.transport.shutdown().await;
    }

    /// Reads whatever the server still sends, for tests of server-side endings.
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = self.transport.read_to_end(&mut out).await;
        out
    }

    /// Sends CopyData with `payload` (CopyBoth mode).
    pub(crate) async fn send_copy_data(&mut self, payload: &[u8]) -> Result<(), ConnError> {
        crate::protocol::frame::write_copy_data(payload, &mut self.wbuf);
        self.flush("sending a standby status update").await
    }
}

fn query_context(sql: &str) -> String {
    let first_line: String = sql
        .trim()
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(80)
        .collect();
    format!("running `{first_line}`")
}

pub(crate) fn unexpected(context: &str, msg: &BackendMessage) -> ConnError {
    let got = match msg {
        BackendMessage::DataRow(_) => "DataRow".to_owned(),
        BackendMessage::CopyData(b) => format!("CopyData of {} bytes", b.len()),
        other => format!("{other:?}").chars().take(80).collect(),
    };
    ConnError::Unexpected {
        context: context.to_owned(),
        got,
    }
}

fn log_notice(n: &ServerError) {
    match n.severity.as_str() {
        "WARNING" => tracing::warn!(code = %n.code, "server: {}", n.message),
        _ => tracing::debug!(code = %n.code, "server: {}", n.message),
    }
}

/// `server_version` text (`15.18 (Debian …)`, `16beta1`, `9.6.24`) as a number like
/// `server_version_num`.
pub fn parse_server_version(v: &str) -> u32 {
    let digits_then = |s: &str| -> (u32, usize) {
        let n: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
        (n.parse().unwrap_or(0), n.len())
    };
    let (major, used) = digits_then(v);
    let rest = &v[used..];
    let minor_text = rest.strip_prefix('.').unwrap_or("");
    let (minor, used2) = digits_then(minor_text);
    if major >= 10 {
        return major * 10000 + if used2 > 0 { minor } else { 0 };
    }
    // 9.x.y
    let patch_text = minor_text[used2..].strip_prefix('.').unwrap_or("");
    let (patch, _) = digits_then(patch_text);
    major * 10000 + minor * 100 + patch
}

/// Data of one CopyData frame with the bytes it took on the wire.
#[derive(Debug, Clone)]
pub struct CopyData {
    /// The payload.
    pub payload: Bytes,
    /// Bytes on the wire: 5 of framing plus the payload.
    pub wire_len: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions_parse_like_server_version_num() {
        assert_eq!(
            parse_server_version("15.18 (Debian 15.18-0+deb12u1)"),
            150018
        );
        assert_eq!(parse_server_version("10.23"), 100023);
        assert_eq!(parse_server_version("16beta1"), 160000);
        assert_eq!(parse_server_version("18.4"), 180004);
        assert_eq!(parse_server_version("9.6.24"), 90624);
        assert_eq!(parse_server_version("garbage"), 0);
    }
}
