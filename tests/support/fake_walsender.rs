//! A scripted fake walsender for fault injection: it plays the source server for one
//! `pgsub` replication connection and, once `START_REPLICATION` has switched the
//! connection to CopyBoth, sends exactly the bytes a test script lists — including ones a
//! real server never produces (frames split into single bytes, impossible lengths, a
//! truncated pgoutput message, a socket closed in the middle of a transaction).
//!
//! ```text
//!  test thread                      fake thread (tokio, current-thread runtime)
//!  FakeWalsender::start ──────────► accept one connection
//!  spawn pgsub (std::process)       StartupMessage ─► AuthenticationOk, ParameterStatus…
//!                                   SHOW wal_level, pg_publication, pg_replication_slots,
//!                                   IDENTIFY_SYSTEM ─► canned answers
//!                                   START_REPLICATION ─► CopyBothResponse, then
//!                                     script task: Step… (XLogData, keepalive, raw bytes,
//!                                                  awaits on what pgsub sent, close …)
//!                                     reader task: every CopyData 'r' / CopyDone /
//!                                                  Terminate pgsub sends, timestamped
//!  fake.finish() ─► Log  ◄──────────  shared, ordered log of both directions
//! ```
//!
//! Real-server behaviour is tested against real servers elsewhere; this fake exists only
//! for faults. The startup and query phase uses `pgwire`'s message layer (frontend
//! decoding, backend encoding); the CopyBoth phase writes raw bytes built with pgsub's own
//! encoders, so that byte-level damage is easy to script. Anything the fake did not expect
//! (an unknown query, a missing startup parameter, an await that timed out) is recorded
//! as [`Event::Problem`], which [`Log::assert_no_problems`] turns into a test failure.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use pgwire::messages::copy::{CopyBothResponse, CopyDone};
use pgwire::messages::data::{DataRow, FieldDescription, RowDescription};
use pgwire::messages::response::{
    CommandComplete, ErrorResponse, ReadyForQuery, TransactionStatus,
};
use pgwire::messages::startup::{Authentication, BackendKeyData, ParameterStatus, SecretKey};
use pgwire::messages::{
    DecodeContext, PgWireBackendMessage, PgWireFrontendMessage, ProtocolVersion,
    SslNegotiationMetaMessage,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{oneshot, watch};

use pgsub::Lsn;
use pgsub::pgoutput::PgOutput;
use pgsub::pgoutput::encode::encode;
use pgsub::protocol::frame::write_copy_data;
use pgsub::protocol::replication::{
    PrimaryKeepalive, STANDBY_STATUS_UPDATE_TAG, StandbyStatusUpdate, XLogData,
    write_primary_keepalive, write_xlog_data,
};
use pgsub::protocol::time::PgTimestamp;

/// `server_version` the fake reports (the query pgsub builds depends on it).
pub const SERVER_VERSION: &str = "15.18";

/// The `sendTime` of every XLogData and keepalive: fixed, so two runs of the same script
/// produce identical bytes (2024-01-01 00:00:00 UTC).
pub const SEND_TIME: PgTimestamp = PgTimestamp(757_382_400_000_000);

/// How long the fake waits for pgsub to connect before giving up.
const ACCEPT_LIMIT: Duration = Duration::from_secs(30);

/// Pause between the single-byte writes of [`Step::ByteByByte`], long enough that pgsub
/// reads the frame in many pieces.
const TRICKLE_GAP: Duration = Duration::from_millis(1);

/// What the fake waits for in a [`Step::Await`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Await {
    /// At least this many standby status updates, counted from the start of the stream.
    StatusUpdates(usize),
    /// A standby status update received after the last thing the fake sent.
    ReplyToLastSend,
    /// A standby status update whose flush position is at least this.
    Flush(Lsn),
}

impl Await {
    fn is_met(&self, entries: &[Entry]) -> bool {
        let mut updates = entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match &e.event {
                Event::StatusUpdate(u) => Some((i, u)),
                _ => None,
            });
        match self {
            Await::StatusUpdates(n) => updates.count() >= *n,
            Await::Flush(lsn) => updates.any(|(_, u)| u.flush >= *lsn),
            Await::ReplyToLastSend => {
                let last_sent = entries
                    .iter()
                    .rposition(|e| matches!(e.event, Event::Sent(_)));
                updates.any(|(i, _)| last_sent.is_none_or(|s| i > s))
            }
        }
    }
}

/// One step of a script, played in order once the stream has started.
#[derive(Debug, Clone)]
pub enum Step {
    /// CopyData with XLogData carrying one pgoutput message; `wal_start` = `wal_end`, as a
    /// logical walsender writes them.
    XLogData {
        /// `dataStart` and `walEnd`.
        wal_start: Lsn,
        /// The message, encoded with `pgsub::pgoutput::encode`.
        message: PgOutput,
    },
    /// CopyData with XLogData carrying arbitrary (typically malformed) pgoutput bytes.
    XLogDataBytes {
        /// `dataStart` and `walEnd`.
        wal_start: Lsn,
        /// The bytes after the XLogData header.
        data: Bytes,
    },
    /// CopyData with a primary keepalive.
    Keepalive {
        /// `walEnd`.
        wal_end: Lsn,
        /// Ask for a status update now.
        reply_requested: bool,
    },
    /// Bytes written exactly as given (bogus frame headers and the like).
    Raw(Bytes),
    /// The bytes of another sending step, written one byte per write, each flushed.
    ByteByByte(Box<Step>),
    /// An ErrorResponse (`S`, `V`, `C`, `M` fields).
    ErrorResponse {
        /// `ERROR`, `FATAL` …
        severity: String,
        /// SQLSTATE.
        code: String,
        /// The primary message.
        message: String,
    },
    /// CommandComplete with this tag (`COPY 0` ends the stream without CopyDone).
    CommandComplete(String),
    /// ReadyForQuery, idle.
    ReadyForQuery,
    /// The server's CopyDone.
    CopyDone,
    /// Sleep; only for shaping traffic, never as synchronisation.
    Pause(Duration),
    /// Wait (up to the configured limit) until pgsub has sent what is described.
    Await(Await),
    /// Close the connection at once: no CopyDone, no CommandComplete, nothing after.
    Close,
}

impl Step {
    /// XLogData with `message` at `wal_start`.
    pub fn xlog(wal_start: Lsn, message: PgOutput) -> Step {
        Step::XLogData { wal_start, message }
    }

    /// A primary keepalive.
    pub fn keepalive(wal_end: Lsn, reply_requested: bool) -> Step {
        Step::Keepalive {
            wal_end,
            reply_requested,
        }
    }

    /// An ErrorResponse.
    pub fn error(severity: &str, code: &str, message: &str) -> Step {
        Step::ErrorResponse {
            severity: severity.to_owned(),
            code: code.to_owned(),
            message: message.to_owned(),
        }
    }

    /// The same step, written one byte at a time.
    pub fn byte_by_byte(self) -> Step {
        Step::ByteByByte(Box::new(self))
    }

    /// True for steps that put one CopyData message on the wire (what pgsub numbers in
    /// its error messages).
    pub fn is_copy_data(&self) -> bool {
        match self {
            Step::XLogData { .. } | Step::XLogDataBytes { .. } | Step::Keepalive { .. } => true,
            Step::ByteByByte(inner) => inner.is_copy_data(),
            _ => false,
        }
    }

    /// A short description for the log.
    pub fn describe(&self) -> String {
        match self {
            Step::XLogData { wal_start, message } => {
                format!("XLogData {} at {wal_start}", message.kind().as_str())
            }
            Step::XLogDataBytes { wal_start, data } => {
                format!("XLogData of {} raw bytes at {wal_start}", data.len())
            }
            Step::Keepalive {
                wal_end,
                reply_requested,
            } => format!("keepalive wal_end {wal_end} reply_requested {reply_requested}"),
            Step::Raw(b) => format!("raw bytes {b:02x?}"),
            Step::ByteByByte(inner) => format!("byte by byte: {}", inner.describe()),
            Step::ErrorResponse {
                severity,
                code,
                message,
            } => format!("ErrorResponse {severity} {code} {message}"),
            Step::CommandComplete(tag) => format!("CommandComplete {tag}"),
            Step::ReadyForQuery => "ReadyForQuery".to_owned(),
            Step::CopyDone => "CopyDone".to_owned(),
            Step::Pause(d) => format!("pause {d:?}"),
            Step::Await(a) => format!("await {a:?}"),
            Step::Close => "close".to_owned(),
        }
    }

    /// The bytes a sending step puts on the wire; `None` for the others.
    pub fn wire_bytes(&self) -> Option<Bytes> {
        let mut out = BytesMut::new();
        match self {
            Step::XLogData { wal_start, message } => {
                let mut data = BytesMut::new();
                encode(message, &mut data);
                copy_data_xlog(*wal_start, data.freeze(), &mut out);
            }
            Step::XLogDataBytes { wal_start, data } => {
                copy_data_xlog(*wal_start, data.clone(), &mut out);
            }
            Step::Keepalive {
                wal_end,
                reply_requested,
            } => {
                let mut payload = BytesMut::new();
                write_primary_keepalive(
                    &PrimaryKeepalive {
                        wal_end: *wal_end,
                        send_time: SEND_TIME,
                        reply_requested: *reply_requested,
                    },
                    &mut payload,
                );
                write_copy_data(&payload, &mut out);
            }
            Step::Raw(b) => out.extend_from_slice(b),
            Step::ByteByByte(inner) => return inner.wire_bytes(),
            Step::ErrorResponse {
                severity,
                code,
                message,
            } => put(
                &mut out,
                PgWireBackendMessage::ErrorResponse(ErrorResponse::new(vec![
                    (b'S', severity.clone()),
                    (b'V', severity.clone()),
                    (b'C', code.clone()),
                    (b'M', message.clone()),
                ])),
            ),
            Step::CommandComplete(tag) => put(
                &mut out,
                PgWireBackendMessage::CommandComplete(CommandComplete::new(tag.clone())),
            ),
            Step::ReadyForQuery => put(&mut out, ready_for_query()),
            Step::CopyDone => put(&mut out, PgWireBackendMessage::CopyDone(CopyDone::new())),
            Step::Pause(_) | Step::Await(_) | Step::Close => return None,
        }
        Some(out.freeze())
    }
}

fn copy_data_xlog(wal_start: Lsn, data: Bytes, out: &mut BytesMut) {
    let mut payload = BytesMut::new();
    write_xlog_data(
        &XLogData {
            wal_start,
            wal_end: wal_start,
            send_time: SEND_TIME,
            data,
        },
        &mut payload,
    );
    write_copy_data(&payload, out);
}

/// The fake's settings: what the catalog queries answer, and the script.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Publications that exist.
    pub publications: Vec<String>,
    /// The slot's `confirmed_flush_lsn` (pgsub's floor: it never reports less).
    pub confirmed_flush_lsn: Lsn,
    /// `IDENTIFY_SYSTEM` `xlogpos`.
    pub xlogpos: Lsn,
    /// `IDENTIFY_SYSTEM` `systemid`.
    pub systemid: String,
    /// Longest a [`Step::Await`] waits before the fake records a problem and hangs up.
    pub await_limit: Duration,
    /// What to send once streaming has started.
    pub script: Vec<Step>,
}

impl FakeConfig {
    /// Publication `p`, slot confirmed at 0/1000000, and `script`.
    pub fn new(script: Vec<Step>) -> Self {
        FakeConfig {
            publications: vec!["p".to_owned()],
            confirmed_flush_lsn: Lsn(0x0100_0000),
            xlogpos: Lsn(0x0200_0000),
            systemid: "7000000000000000001".to_owned(),
            await_limit: Duration::from_secs(5),
            script,
        }
    }
}

/// Something that happened on the connection, in the order it happened.
#[derive(Debug, Clone)]
pub enum Event {
    /// pgsub connected.
    Connected,
    /// The StartupMessage parameters.
    Startup(BTreeMap<String, String>),
    /// A simple query.
    Query(String),
    /// The fake is about to write this (logged before the first byte goes out, so that
    /// anything pgsub sends in answer comes after it in the log).
    Sent(String),
    /// Writing failed (pgsub is gone); the script stops.
    SendFailed(String),
    /// A standby status update.
    StatusUpdate(StandbyStatusUpdate),
    /// A CopyData payload that is not a standby status update.
    OtherCopyData(Bytes),
    /// The client's CopyDone.
    CopyDone,
    /// The client's Terminate.
    Terminate,
    /// The client closed the connection (with the read error, if any).
    ClientClosed(Option<String>),
    /// Something the fake did not expect; fails the test.
    Problem(String),
}

/// One log entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// When it happened.
    pub at: Instant,
    /// What happened.
    pub event: Event,
}

/// The ordered record of a connection.
#[derive(Debug, Clone, Default)]
pub struct Log {
    /// Entries in order.
    pub entries: Vec<Entry>,
}

impl Log {
    /// The standby status updates with their log index and arrival time.
    pub fn status_updates(&self) -> Vec<(usize, Instant, StandbyStatusUpdate)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match &e.event {
                Event::StatusUpdate(u) => Some((i, e.at, *u)),
                _ => None,
            })
            .collect()
    }

    /// The flush positions pgsub reported, in order.
    pub fn flushes(&self) -> Vec<Lsn> {
        self.status_updates()
            .into_iter()
            .map(|(_, _, u)| u.flush)
            .collect()
    }

    /// Index of the first `Sent` entry whose description contains `needle`.
    pub fn sent_index(&self, needle: &str) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| matches!(&e.event, Event::Sent(s) if s.contains(needle)))
    }

    /// The problems recorded.
    pub fn problems(&self) -> Vec<&str> {
        self.entries
            .iter()
            .filter_map(|e| match &e.event {
                Event::Problem(p) => Some(p.as_str()),
                _ => None,
            })
            .collect()
    }

    /// True when some entry matches.
    pub fn has(&self, pred: impl Fn(&Event) -> bool) -> bool {
        self.entries.iter().any(|e| pred(&e.event))
    }

    /// Panics, showing the whole log, when the fake recorded a problem.
    pub fn assert_no_problems(&self) {
        assert!(
            self.problems().is_empty(),
            "the fake walsender recorded problems:\n{}",
            self.render()
        );
    }

    /// The log as text, one entry a line, with milliseconds since the first entry.
    pub fn render(&self) -> String {
        let start = self.entries.first().map(|e| e.at);
        let mut s = String::new();
        for (i, e) in self.entries.iter().enumerate() {
            let ms = start.map_or(0, |t| e.at.duration_since(t).as_millis());
            let _ = writeln!(s, "{i:3} +{ms:5} ms  {:?}", e.event);
        }
        s
    }
}

/// The log shared by the fake's tasks and the test: a watch channel, so that script
/// steps can wait for a condition on it without polling.
#[derive(Debug, Clone)]
struct Recorder {
    log: Arc<watch::Sender<Vec<Entry>>>,
}

impl Recorder {
    fn new() -> Self {
        Recorder {
            log: Arc::new(watch::Sender::new(Vec::new())),
        }
    }

    fn push(&self, event: Event) {
        self.log.send_modify(|entries| {
            entries.push(Entry {
                at: Instant::now(),
                event,
            });
        });
    }

    fn problem(&self, what: impl Into<String>) {
        self.push(Event::Problem(what.into()));
    }

    fn snapshot(&self) -> Log {
        Log {
            entries: self.log.borrow().clone(),
        }
    }

    /// Waits until `pred` holds for the log; `false` when `limit` passed first.
    async fn wait_until(&self, limit: Duration, pred: impl FnMut(&Vec<Entry>) -> bool) -> bool {
        let mut rx = self.log.subscribe();
        let waited =
            tokio::time::timeout(
                limit,
                async move { rx.wait_for(pred).await.map(|_| ()).is_ok() },
            )
            .await;
        waited.unwrap_or(false)
    }
}

/// A running fake walsender; dropping it stops it.
#[derive(Debug)]
pub struct FakeWalsender {
    port: u16,
    recorder: Recorder,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeWalsender {
    /// Binds 127.0.0.1 on a free port and serves one connection on a background thread.
    pub fn start(config: FakeConfig) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("the fake walsender cannot bind a loopback port");
        let port = listener
            .local_addr()
            .expect("the fake walsender's listening address")
            .port();
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener for tokio");
        let recorder = Recorder::new();
        let (stop, stopped) = oneshot::channel::<()>();
        let rec = recorder.clone();
        let thread = std::thread::Builder::new()
            .name("fake-walsender".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime for the fake walsender");
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => return rec.problem(format!("cannot use the listener: {e}")),
                    };
                    tokio::select! {
                        _ = stopped => {}
                        () = serve(listener, config, rec.clone()) => {}
                    }
                });
            })
            .expect("spawn the fake walsender thread");
        FakeWalsender {
            port,
            recorder,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection string for pgsub (no TLS: the fake does not answer SSLRequest).
    pub fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=u dbname=d sslmode=disable",
            self.port
        )
    }

    /// What happened so far.
    pub fn log(&self) -> Log {
        self.recorder.snapshot()
    }

    /// Stops the fake and returns the complete log.
    pub fn finish(mut self) -> Log {
        self.shut_down();
        self.recorder.snapshot()
    }

    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
            && !std::thread::panicking()
        {
            panic!("the fake walsender thread panicked");
        }
    }
}

impl Drop for FakeWalsender {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn put(out: &mut BytesMut, msg: PgWireBackendMessage) {
    if let Err(e) = msg.encode(out) {
        panic!("the fake walsender cannot encode {msg:?}: {e}");
    }
}

fn ready_for_query() -> PgWireBackendMessage {
    PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(TransactionStatus::Idle))
}

/// A complete simple-query result: RowDescription (all text), DataRows, CommandComplete,
/// ReadyForQuery.
fn query_result(columns: &[&str], rows: &[Vec<Option<String>>], tag: &str, out: &mut BytesMut) {
    let fields = columns
        .iter()
        .map(|name| FieldDescription::new((*name).to_owned(), 0, 0, 25, -1, -1, 0))
        .collect();
    put(
        out,
        PgWireBackendMessage::RowDescription(RowDescription::new(fields)),
    );
    for row in rows {
        let mut data = BytesMut::new();
        for value in row {
            match value {
                Some(v) => {
                    data.put_i32(v.len() as i32);
                    data.extend_from_slice(v.as_bytes());
                }
                None => data.put_i32(-1),
            }
        }
        put(
            out,
            PgWireBackendMessage::DataRow(DataRow::new(data, row.len() as i16)),
        );
    }
    put(
        out,
        PgWireBackendMessage::CommandComplete(CommandComplete::new(tag.to_owned())),
    );
    put(out, ready_for_query());
}

/// The output column names of a `SELECT a, b::text, f(x, y) AS c FROM …` list.
fn selected_columns(sql: &str) -> Vec<String> {
    let list = sql
        .trim_start()
        .strip_prefix("SELECT ")
        .and_then(|rest| rest.split(" FROM ").next())
        .unwrap_or("");
    let mut items = Vec::new();
    let mut depth = 0i32;
    let mut current = String::new();
    for c in list.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    items.push(current);
    items
        .iter()
        .map(|item| {
            let item = item.trim();
            let name = match item.rsplit_once(" AS ") {
                Some((_, alias)) => alias,
                None => item.split("::").next().unwrap_or(item),
            };
            name.trim().to_owned()
        })
        .collect()
}

/// The string literal after `WHERE slot_name = ` ('s', or E'…' when escaped).
fn requested_slot(sql: &str) -> Option<String> {
    let rest = sql.split("WHERE slot_name = ").nth(1)?.trim();
    let rest = rest.strip_prefix('E').unwrap_or(rest);
    let inner = rest.strip_prefix('\'')?;
    let end = inner.find('\'')?;
    Some(inner[..end].to_owned())
}

/// The connection, from the fake's side.
struct Session {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    rbuf: BytesMut,
    ctx: DecodeContext,
    rec: Recorder,
    config: FakeConfig,
    database: String,
}

/// Reads the next frontend message; `Ok(None)` when the client closed the connection.
async fn read_message(
    rd: &mut OwnedReadHalf,
    rbuf: &mut BytesMut,
    ctx: &DecodeContext,
) -> Result<Option<PgWireFrontendMessage>, String> {
    loop {
        match PgWireFrontendMessage::decode(rbuf, ctx) {
            Ok(Some(msg)) => return Ok(Some(msg)),
            Ok(None) => {}
            Err(e) => return Err(format!("undecodable message from pgsub: {e}")),
        }
        match rd.read_buf(rbuf).await {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(format!("reading from pgsub failed: {e}")),
        }
    }
}

async fn serve(listener: TcpListener, config: FakeConfig, rec: Recorder) {
    let stream = match tokio::time::timeout(ACCEPT_LIMIT, listener.accept()).await {
        Ok(Ok((stream, _))) => stream,
        Ok(Err(e)) => return rec.problem(format!("accept failed: {e}")),
        Err(_) => return rec.problem(format!("pgsub did not connect within {ACCEPT_LIMIT:?}")),
    };
    rec.push(Event::Connected);
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let mut session = Session {
        rd,
        wr,
        rbuf: BytesMut::new(),
        ctx: DecodeContext::new(ProtocolVersion::PROTOCOL3_0),
        rec: rec.clone(),
        config,
        database: String::new(),
    };
    match session.handshake_and_queries().await {
        Ok(true) => session.stream().await,
        Ok(false) => {}
        Err(e) => rec.problem(e),
    }
}

impl Session {
    async fn write(&mut self, bytes: &[u8], context: &str) -> Result<(), String> {
        self.wr
            .write_all(bytes)
            .await
            .map_err(|e| format!("writing {context} failed: {e}"))
    }

    /// Startup, then queries until START_REPLICATION: `Ok(true)` when streaming starts,
    /// `Ok(false)` when the client left first.
    async fn handshake_and_queries(&mut self) -> Result<bool, String> {
        loop {
            let msg = read_message(&mut self.rd, &mut self.rbuf, &self.ctx).await?;
            let Some(msg) = msg else {
                self.rec.push(Event::ClientClosed(None));
                return Ok(false);
            };
            match msg {
                PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::None) => {
                    self.ctx.awaiting_frontend_ssl = false;
                }
                PgWireFrontendMessage::SslNegotiation(other) => {
                    self.rec.problem(format!(
                        "pgsub asked for encryption ({other:?}) although sslmode=disable"
                    ));
                    self.write(b"N", "the answer to SSLRequest").await?;
                }
                PgWireFrontendMessage::Startup(startup) => {
                    self.ctx.awaiting_frontend_ssl = false;
                    self.ctx.awaiting_frontend_startup = false;
                    self.on_startup(startup.parameters).await?;
                }
                PgWireFrontendMessage::Query(q) => {
                    self.rec.push(Event::Query(q.query.clone()));
                    if self.on_query(&q.query).await? {
                        return Ok(true);
                    }
                }
                PgWireFrontendMessage::Terminate(_) => {
                    self.rec.push(Event::Terminate);
                    return Ok(false);
                }
                other => {
                    return Err(format!("unexpected message before streaming: {other:?}"));
                }
            }
        }
    }

    async fn on_startup(&mut self, params: BTreeMap<String, String>) -> Result<(), String> {
        self.rec.push(Event::Startup(params.clone()));
        for (name, want) in [
            ("replication", "database"),
            ("client_encoding", "UTF8"),
            ("datestyle", "ISO"),
        ] {
            let got = params.get(name).map(String::as_str);
            if got != Some(want) {
                self.rec.problem(format!(
                    "startup parameter {name} is {got:?}, expected {want:?}"
                ));
            }
        }
        self.database = params
            .get("database")
            .or_else(|| params.get("user"))
            .cloned()
            .unwrap_or_default();
        let mut out = BytesMut::new();
        put(
            &mut out,
            PgWireBackendMessage::Authentication(Authentication::Ok),
        );
        for (name, value) in [
            ("server_version", SERVER_VERSION),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            ("integer_datetimes", "on"),
        ] {
            put(
                &mut out,
                PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                    name.to_owned(),
                    value.to_owned(),
                )),
            );
        }
        put(
            &mut out,
            PgWireBackendMessage::BackendKeyData(BackendKeyData::new(4242, SecretKey::I32(0x5eed))),
        );
        put(&mut out, ready_for_query());
        self.write(&out, "the startup answer").await
    }

    /// Answers one query; `Ok(true)` once CopyBoth has started.
    async fn on_query(&mut self, sql: &str) -> Result<bool, String> {
        let sql = sql.trim();
        let mut out = BytesMut::new();
        let mut streaming = false;
        if sql.starts_with("SHOW wal_level") {
            query_result(
                &["wal_level"],
                &[vec![Some("logical".into())]],
                "SHOW",
                &mut out,
            );
        } else if sql.starts_with("SELECT") && sql.contains("pg_catalog.pg_publication ") {
            let rows: Vec<_> = self
                .config
                .publications
                .iter()
                .map(|p| vec![Some(p.clone())])
                .collect();
            let tag = format!("SELECT {}", rows.len());
            query_result(&["pubname"], &rows, &tag, &mut out);
        } else if sql.starts_with("SELECT")
            && sql.contains("pg_replication_slots")
            && sql.contains("WHERE slot_name = ")
        {
            self.slot_row(sql, &mut out);
        } else if sql.starts_with("IDENTIFY_SYSTEM") {
            let c = &self.config;
            query_result(
                &["systemid", "timeline", "xlogpos", "dbname"],
                &[vec![
                    Some(c.systemid.clone()),
                    Some("1".into()),
                    Some(c.xlogpos.to_string()),
                    Some(self.database.clone()),
                ]],
                "IDENTIFY_SYSTEM",
                &mut out,
            );
        } else if sql.starts_with("START_REPLICATION SLOT ") && sql.contains(" LOGICAL ") {
            for publication in &self.config.publications {
                if !sql.contains(&format!("\"{publication}\"")) {
                    self.rec.problem(format!(
                        "START_REPLICATION does not name publication {publication}: {sql}"
                    ));
                }
            }
            put(
                &mut out,
                PgWireBackendMessage::CopyBothResponse(CopyBothResponse::new(0, 0, vec![])),
            );
            streaming = true;
        } else {
            self.rec
                .problem(format!("unexpected query from pgsub: {sql}"));
            put(
                &mut out,
                PgWireBackendMessage::ErrorResponse(ErrorResponse::new(vec![
                    (b'S', "ERROR".into()),
                    (b'V', "ERROR".into()),
                    (b'C', "XX000".into()),
                    (b'M', format!("the fake walsender has no answer to: {sql}")),
                ])),
            );
            put(&mut out, ready_for_query());
        }
        self.write(&out, "a query result").await?;
        Ok(streaming)
    }

    /// The slot row, with exactly the columns the query selects.
    fn slot_row(&self, sql: &str, out: &mut BytesMut) {
        let confirmed = self.config.confirmed_flush_lsn;
        let slot = requested_slot(sql).unwrap_or_default();
        let columns = selected_columns(sql);
        let row = columns
            .iter()
            .map(|column| match column.as_str() {
                "slot_name" => Some(slot.clone()),
                "plugin" => Some("pgoutput".to_owned()),
                "slot_type" => Some("logical".to_owned()),
                "database" => Some(self.database.clone()),
                "active" => Some("false".to_owned()),
                "restart_lsn" => Some(Lsn(confirmed.0.saturating_sub(0x100)).to_string()),
                "confirmed_flush_lsn" => Some(confirmed.to_string()),
                "wal_status" => Some("reserved".to_owned()),
                "two_phase" => Some("false".to_owned()),
                "retained_bytes" => Some("256".to_owned()),
                _ => None,
            })
            .collect();
        let names: Vec<&str> = columns.iter().map(String::as_str).collect();
        query_result(&names, &[row], "SELECT 1", out);
    }

    /// CopyBoth: a reader task records what pgsub sends while the script plays.
    async fn stream(self) {
        let Session {
            rd,
            mut wr,
            rbuf,
            ctx,
            rec,
            config,
            ..
        } = self;
        let reader = tokio::spawn(read_client(rd, rbuf, ctx, rec.clone()));
        let closed = play(&mut wr, &rec, &config).await;
        if closed {
            let _ = wr.shutdown().await;
            drop(wr);
        } else {
            answer_until_client_leaves(&mut wr, &rec).await;
        }
        let _ = reader.await;
    }
}

/// Records everything the client sends during CopyBoth, until it closes.
async fn read_client(mut rd: OwnedReadHalf, mut rbuf: BytesMut, ctx: DecodeContext, rec: Recorder) {
    loop {
        match read_message(&mut rd, &mut rbuf, &ctx).await {
            Ok(Some(PgWireFrontendMessage::CopyData(d))) => {
                if d.data.first() == Some(&STANDBY_STATUS_UPDATE_TAG) {
                    match StandbyStatusUpdate::parse(d.data.clone()) {
                        Ok(u) => rec.push(Event::StatusUpdate(u)),
                        Err(e) => rec.problem(format!("malformed standby status update: {e}")),
                    }
                } else {
                    rec.push(Event::OtherCopyData(d.data));
                }
            }
            Ok(Some(PgWireFrontendMessage::CopyDone(_))) => rec.push(Event::CopyDone),
            Ok(Some(PgWireFrontendMessage::Terminate(_))) => rec.push(Event::Terminate),
            Ok(Some(PgWireFrontendMessage::Query(q))) => {
                rec.problem(format!("query during or after streaming: {}", q.query));
            }
            Ok(Some(other)) => {
                rec.problem(format!("unexpected message while streaming: {other:?}"))
            }
            Ok(None) => return rec.push(Event::ClientClosed(None)),
            Err(e) => return rec.push(Event::ClientClosed(Some(e))),
        }
    }
}

/// Plays the script; `true` when it ended by closing the connection (a [`Step::Close`],
/// a failed await or a failed write).
async fn play(wr: &mut OwnedWriteHalf, rec: &Recorder, config: &FakeConfig) -> bool {
    for step in &config.script {
        match step {
            Step::Pause(d) => tokio::time::sleep(*d).await,
            Step::Await(what) => {
                let met = rec
                    .wait_until(config.await_limit, |entries| what.is_met(entries))
                    .await;
                if !met {
                    rec.problem(format!(
                        "timed out after {:?} waiting for {what:?}; hanging up",
                        config.await_limit
                    ));
                    return true;
                }
            }
            Step::Close => {
                rec.push(Event::Sent("close".to_owned()));
                return true;
            }
            Step::ByteByByte(_) => {
                let bytes = step.wire_bytes().unwrap_or_default();
                rec.push(Event::Sent(step.describe()));
                for b in bytes.iter() {
                    let written = match wr.write_all(&[*b]).await {
                        Ok(()) => wr.flush().await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = written {
                        rec.push(Event::SendFailed(format!("{}: {e}", step.describe())));
                        return true;
                    }
                    tokio::time::sleep(TRICKLE_GAP).await;
                }
            }
            sending => {
                let bytes = sending.wire_bytes().unwrap_or_default();
                rec.push(Event::Sent(sending.describe()));
                if let Err(e) = wr.write_all(&bytes).await {
                    rec.push(Event::SendFailed(format!("{}: {e}", sending.describe())));
                    return true;
                }
            }
        }
    }
    false
}

/// After the script: answers a client CopyDone the way a walsender does (its own CopyDone
/// unless already sent, CommandComplete, ReadyForQuery) and waits for the client to close
/// the connection.
async fn answer_until_client_leaves(wr: &mut OwnedWriteHalf, rec: &Recorder) {
    let mut answered = 0;
    loop {
        let mut copy_dones = 0;
        let mut closed = false;
        rec.wait_until(Duration::MAX, |entries| {
            copy_dones = entries
                .iter()
                .filter(|e| matches!(e.event, Event::CopyDone))
                .count();
            closed = entries
                .iter()
                .any(|e| matches!(e.event, Event::ClientClosed(_)));
            closed || copy_dones > answered
        })
        .await;
        if closed {
            return;
        }
        answered = copy_dones;
        // The server's own CopyDone goes out only if the script did not already send it.
        let server_sent_copy_done = rec
            .snapshot()
            .entries
            .iter()
            .any(|e| matches!(&e.event, Event::Sent(s) if s == "CopyDone"));
        let mut out = BytesMut::new();
        if !server_sent_copy_done {
            put(&mut out, PgWireBackendMessage::CopyDone(CopyDone::new()));
        }
        for tag in ["COPY 0", "START_REPLICATION"] {
            put(
                &mut out,
                PgWireBackendMessage::CommandComplete(CommandComplete::new(tag.to_owned())),
            );
        }
        put(&mut out, ready_for_query());
        rec.push(Event::Sent(
            "CopyDone, CommandComplete, ReadyForQuery (answer to the client's CopyDone)".into(),
        ));
        if let Err(e) = wr.write_all(&out).await {
            rec.push(Event::SendFailed(format!("answering CopyDone: {e}")));
            return;
        }
    }
}
