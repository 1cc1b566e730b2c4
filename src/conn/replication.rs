//! Replication commands on a `replication=database` connection, and the CopyBoth phase.
//!
//! Command keywords are upper case (the walsender's grammar matches them case-sensitively),
//! slot names are quoted as identifiers, and the syntax follows the server's version:
//! `CREATE_REPLICATION_SLOT … LOGICAL pgoutput (SNAPSHOT 'export')` from PostgreSQL 15, the
//! older keyword form (`EXPORT_SNAPSHOT`) before.
//!
//! In CopyBoth, [`Connection::next_copy_data`] returns each CopyData payload as a zero-copy
//! slice, and the ways the server can end the stream: its own CopyDone, a CommandComplete
//! without CopyDone (what a logical walsender sends at shutdown), or an ErrorResponse.

use crate::protocol::quote::ident as escape_identifier;
use bytes::Bytes;

use super::error::ConnError;
use super::{Connection, unexpected};
use crate::lsn::Lsn;
use crate::pgoutput::options::StreamOptions;
use crate::protocol::backend::BackendMessage;

/// The answer to `IDENTIFY_SYSTEM`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IdentifySystem {
    /// Unique system identifier of the cluster.
    pub systemid: String,
    /// Current timeline.
    pub timeline: u32,
    /// Current WAL flush position.
    pub xlogpos: Lsn,
    /// Database connected to.
    pub dbname: Option<String>,
}

/// What to do with the snapshot of a new slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotAction {
    /// Export it for other sessions (`SET TRANSACTION SNAPSHOT`), valid until the next
    /// command on this connection.
    Export,
    /// Use it in the current transaction of this connection.
    Use,
    /// No snapshot.
    Nothing,
}

/// The answer to `CREATE_REPLICATION_SLOT`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CreatedSlot {
    /// The slot's name.
    pub slot_name: String,
    /// The earliest position streaming can start at; the snapshot sees exactly the
    /// transactions committed before it.
    pub consistent_point: Lsn,
    /// The exported snapshot's name.
    pub snapshot_name: Option<String>,
    /// The output plugin.
    pub output_plugin: Option<String>,
}

/// What a new slot does beyond decoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotFeatures {
    /// Decode prepared transactions at their PREPARE (15+).
    pub two_phase: bool,
    /// Synchronized to standbys (`sync_replication_slots`), so that it survives a failover
    /// of the source (17+).
    pub failover: bool,
}

/// The text of `CREATE_REPLICATION_SLOT` for a server of `server_version_num`.
pub fn create_slot_command(
    server_version_num: u32,
    slot: &str,
    temporary: bool,
    snapshot: SnapshotAction,
    features: SlotFeatures,
) -> String {
    let temp = if temporary { " TEMPORARY" } else { "" };
    let slot = escape_identifier(slot);
    if server_version_num >= 150000 {
        let mut opts = vec![match snapshot {
            SnapshotAction::Export => "SNAPSHOT 'export'",
            SnapshotAction::Use => "SNAPSHOT 'use'",
            SnapshotAction::Nothing => "SNAPSHOT 'nothing'",
        }];
        if features.two_phase {
            opts.push("TWO_PHASE");
        }
        if features.failover && server_version_num >= 170000 {
            opts.push("FAILOVER");
        }
        format!(
            "CREATE_REPLICATION_SLOT {slot}{temp} LOGICAL pgoutput ({})",
            opts.join(", ")
        )
    } else {
        let snap = match snapshot {
            SnapshotAction::Export => "EXPORT_SNAPSHOT",
            SnapshotAction::Use => "USE_SNAPSHOT",
            SnapshotAction::Nothing => "NOEXPORT_SNAPSHOT",
        };
        format!("CREATE_REPLICATION_SLOT {slot}{temp} LOGICAL pgoutput {snap}")
    }
}

/// The text of `START_REPLICATION` for a logical slot.
pub fn start_replication_command(slot: &str, start: Lsn, options: &StreamOptions) -> String {
    format!(
        "START_REPLICATION SLOT {} LOGICAL {start} {}",
        escape_identifier(slot),
        options.to_sql()
    )
}

/// How the server ended the CopyBoth phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// The server sent CopyDone (after ours, or on its own).
    CopyDone,
    /// The server sent CommandComplete without CopyDone: a logical walsender does this
    /// when the server shuts down.
    CommandComplete(String),
}

/// One event of the CopyBoth phase.
#[derive(Debug, Clone)]
pub enum CopyBothEvent {
    /// A CopyData payload and the bytes its frame took on the wire.
    Data {
        /// The payload (`'w'` XLogData or `'k'` keepalive).
        payload: Bytes,
        /// Bytes on the wire, framing included.
        wire_len: usize,
    },
    /// The server ended the stream.
    End(StreamEnd),
}

impl Connection {
    /// `IDENTIFY_SYSTEM`.
    pub async fn identify_system(&mut self) -> Result<IdentifySystem, ConnError> {
        let rows = self.simple_query("IDENTIFY_SYSTEM").await?;
        let row = rows.first().ok_or_else(|| ConnError::Unexpected {
            context: "running IDENTIFY_SYSTEM".into(),
            got: "no row".into(),
        })?;
        let bad = |what: &str| ConnError::Unexpected {
            context: "running IDENTIFY_SYSTEM".into(),
            got: format!("an unreadable {what}"),
        };
        Ok(IdentifySystem {
            systemid: row.get_idx(0).ok_or_else(|| bad("systemid"))?.to_owned(),
            timeline: row
                .get_idx(1)
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| bad("timeline"))?,
            xlogpos: row
                .get_idx(2)
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| bad("xlogpos"))?,
            dbname: row.get_idx(3).map(str::to_owned),
        })
    }

    /// `CREATE_REPLICATION_SLOT … LOGICAL pgoutput`.
    pub async fn create_replication_slot(
        &mut self,
        slot: &str,
        temporary: bool,
        snapshot: SnapshotAction,
        features: SlotFeatures,
    ) -> Result<CreatedSlot, ConnError> {
        let cmd = create_slot_command(
            self.server_version_num(),
            slot,
            temporary,
            snapshot,
            features,
        );
        let rows = self.simple_query(&cmd).await?;
        let row = rows.first().ok_or_else(|| ConnError::Unexpected {
            context: "creating a replication slot".into(),
            got: "no row".into(),
        })?;
        Ok(CreatedSlot {
            slot_name: row.get_idx(0).unwrap_or(slot).to_owned(),
            consistent_point: row.get_idx(1).and_then(|t| t.parse().ok()).ok_or_else(|| {
                ConnError::Unexpected {
                    context: "creating a replication slot".into(),
                    got: "an unreadable consistent_point".into(),
                }
            })?,
            snapshot_name: row.get_idx(2).map(str::to_owned),
            output_plugin: row.get_idx(3).map(str::to_owned),
        })
    }

    /// `DROP_REPLICATION_SLOT name [WAIT]`.
    pub async fn drop_replication_slot(&mut self, slot: &str, wait: bool) -> Result<(), ConnError> {
        let wait = if wait { " WAIT" } else { "" };
        self.execute(&format!(
            "DROP_REPLICATION_SLOT {}{wait}",
            escape_identifier(slot)
        ))
        .await
    }

    /// `START_REPLICATION SLOT … LOGICAL start (options)`; on success the connection is in
    /// CopyBoth mode.
    pub async fn start_replication(
        &mut self,
        slot: &str,
        start: Lsn,
        options: &StreamOptions,
    ) -> Result<(), ConnError> {
        let cmd = start_replication_command(slot, start, options);
        postgres_protocol::message::frontend::query(&cmd, self.wbuf())
            .map_err(|e| ConnError::io("building START_REPLICATION", e))?;
        let context = format!("starting replication from slot \"{slot}\"");
        self.flush(&context).await?;
        match self.read_message(&context).await? {
            BackendMessage::CopyBothResponse => Ok(()),
            BackendMessage::ErrorResponse(error) => {
                // Drain to ReadyForQuery so the caller may still use the connection.
                while !matches!(
                    self.read_message(&context).await?,
                    BackendMessage::ReadyForQuery(_)
                ) {}
                Err(ConnError::Server { context, error })
            }
            other => Err(unexpected(&context, &other)),
        }
    }

    /// The next CopyData payload or the end of the stream. Cancel-safe.
    pub async fn next_copy_data(&mut self) -> Result<CopyBothEvent, ConnError> {
        const CONTEXT: &str = "streaming";
        loop {
            let frame = self.read_frame(CONTEXT).await?;
            if frame.tag == b'd' {
                // The hot path: no parsing beyond the frame.
                let wire_len = frame.wire_len();
                return Ok(CopyBothEvent::Data {
                    payload: frame.body,
                    wire_len,
                });
            }
            let msg = BackendMessage::parse(frame).map_err(|source| ConnError::Protocol {
                context: CONTEXT.into(),
                source,
            })?;
            match msg {
                BackendMessage::CopyDone => return Ok(CopyBothEvent::End(StreamEnd::CopyDone)),
                BackendMessage::CommandComplete(tag) => {
                    return Ok(CopyBothEvent::End(StreamEnd::CommandComplete(tag)));
                }
                BackendMessage::ErrorResponse(error) => {
                    return Err(ConnError::StreamFailed {
                        context: "streaming".into(),
                        error,
                    });
                }
                BackendMessage::NoticeResponse(n) => super::log_notice(&n),
                BackendMessage::ParameterStatus { name, value } => {
                    self.params.insert(name, value);
                }
                other => return Err(unexpected(CONTEXT, &other)),
            }
        }
    }

    /// Sends a CopyData payload (a standby status update) to the server.
    pub async fn send_feedback(&mut self, payload: &[u8]) -> Result<(), ConnError> {
        self.send_copy_data(payload).await
    }

    /// Leaves CopyBoth, however it is ending, and reads up to the point where the server
    /// is ready for a query or gone:
    ///
    /// | `server_end`                 | pgsub sends | then expects                          |
    /// |------------------------------|-------------|---------------------------------------|
    /// | `None` (pgsub stops)         | CopyDone    | CopyDone, CommandComplete, ReadyForQuery |
    /// | `Some(CopyDone)`             | CopyDone    | CommandComplete, ReadyForQuery        |
    /// | `Some(CommandComplete)`      | nothing     | ReadyForQuery, or the socket closing (a walsender at shutdown exits right after CommandComplete) |
    ///
    /// CopyData still in flight is discarded: the caller acknowledged only what it
    /// processed, and the server sends the rest again next time. Once our CopyDone is
    /// sent, the server closing the connection is an orderly end too.
    pub async fn finish_copy_both(
        &mut self,
        server_end: Option<&StreamEnd>,
    ) -> Result<(), ConnError> {
        const CONTEXT: &str = "ending replication";
        let send_done = !matches!(server_end, Some(StreamEnd::CommandComplete(_)));
        if send_done {
            postgres_protocol::message::frontend::copy_done(self.wbuf());
            self.flush(CONTEXT).await?;
        }
        loop {
            let frame = match self.read_frame(CONTEXT).await {
                Ok(f) => f,
                Err(ConnError::Closed { .. }) => return Ok(()),
                Err(e) => return Err(e),
            };
            if frame.tag == b'd' {
                continue;
            }
            match BackendMessage::parse(frame).map_err(|source| ConnError::Protocol {
                context: CONTEXT.into(),
                source,
            })? {
                BackendMessage::CopyDone
                | BackendMessage::CommandComplete(_)
                | BackendMessage::NoticeResponse(_)
                | BackendMessage::ParameterStatus { .. } => {}
                BackendMessage::ReadyForQuery(_) => return Ok(()),
                BackendMessage::ErrorResponse(error) => {
                    return Err(ConnError::Server {
                        context: CONTEXT.into(),
                        error,
                    });
                }
                other => return Err(unexpected(CONTEXT, &other)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgoutput::options::RequestedOptions;

    #[test]
    fn create_slot_uses_parenthesized_options_from_15() {
        assert_eq!(
            create_slot_command(
                150018,
                "pgsub",
                false,
                SnapshotAction::Export,
                SlotFeatures {
                    two_phase: true,
                    failover: false
                }
            ),
            r#"CREATE_REPLICATION_SLOT "pgsub" LOGICAL pgoutput (SNAPSHOT 'export', TWO_PHASE)"#
        );
        assert_eq!(
            create_slot_command(
                180000,
                "s1",
                true,
                SnapshotAction::Nothing,
                SlotFeatures::default()
            ),
            r#"CREATE_REPLICATION_SLOT "s1" TEMPORARY LOGICAL pgoutput (SNAPSHOT 'nothing')"#
        );
    }

    #[test]
    fn failover_is_asked_for_from_17() {
        let failover = SlotFeatures {
            two_phase: false,
            failover: true,
        };
        assert_eq!(
            create_slot_command(170004, "s", false, SnapshotAction::Export, failover),
            r#"CREATE_REPLICATION_SLOT "s" LOGICAL pgoutput (SNAPSHOT 'export', FAILOVER)"#
        );
        assert!(
            !create_slot_command(160008, "s", false, SnapshotAction::Export, failover)
                .contains("FAILOVER"),
            "refused before it is sent, never sent to a server that does not know it"
        );
    }

    #[test]
    fn create_slot_uses_keywords_before_15() {
        assert_eq!(
            create_slot_command(
                140013,
                "pgsub",
                false,
                SnapshotAction::Nothing,
                SlotFeatures {
                    two_phase: false,
                    failover: true
                }
            ),
            r#"CREATE_REPLICATION_SLOT "pgsub" LOGICAL pgoutput NOEXPORT_SNAPSHOT"#
        );
        assert_eq!(
            create_slot_command(
                100023,
                "pgsub",
                true,
                SnapshotAction::Use,
                SlotFeatures::default()
            ),
            r#"CREATE_REPLICATION_SLOT "pgsub" TEMPORARY LOGICAL pgoutput USE_SNAPSHOT"#
        );
    }

    #[test]
    fn start_replication_has_lsn_and_options() {
        let opts = StreamOptions::negotiate(
            150018,
            &RequestedOptions {
                publication_names: vec!["pub1".into()],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            start_replication_command("pgsub", Lsn(0x16B_3748), &opts),
            r#"START_REPLICATION SLOT "pgsub" LOGICAL 0/16B3748 (proto_version '3', publication_names '"pub1"', messages 'true')"#
        );
    }
}
