//! One struct per pgoutput message, with the field names of the PostgreSQL protocol
//! documentation ("Logical Replication Message Formats").
//!
//! `xid` fields of row, Relation, Type, Truncate and Message messages are `Some` only
//! inside a Stream Start … Stream Stop block, where the server prefixes them with the
//! (sub)transaction id; elsewhere the server does not send one.

use bytes::Bytes;

use super::tuple::TupleData;
use crate::lsn::Lsn;
use crate::protocol::time::PgTimestamp;

/// Every pgoutput message of protocol versions 1 to 4.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PgOutput {
    /// `B`
    Begin(Begin),
    /// `C`
    Commit(Commit),
    /// `O`
    Origin(Origin),
    /// `R`
    Relation(Relation),
    /// `Y`
    Type(Type),
    /// `I`
    Insert(Insert),
    /// `U`
    Update(Update),
    /// `D`
    Delete(Delete),
    /// `T`
    Truncate(Truncate),
    /// `M`
    Message(Message),
    /// `S`
    StreamStart(StreamStart),
    /// `E`
    StreamStop,
    /// `c`
    StreamCommit(StreamCommit),
    /// `A`
    StreamAbort(StreamAbort),
    /// `b`
    BeginPrepare(BeginPrepare),
    /// `P`
    Prepare(Prepare),
    /// `K`
    CommitPrepared(CommitPrepared),
    /// `r`
    RollbackPrepared(RollbackPrepared),
    /// `p`
    StreamPrepare(Prepare),
}

/// The kinds of message, in the spelling pgsub uses in its output and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum MessageKind {
    Begin,
    Commit,
    Origin,
    Relation,
    Type,
    Insert,
    Update,
    Delete,
    Truncate,
    Message,
    StreamStart,
    StreamStop,
    StreamCommit,
    StreamAbort,
    BeginPrepare,
    Prepare,
    CommitPrepared,
    RollbackPrepared,
    StreamPrepare,
}

impl MessageKind {
    /// Every kind, in protocol-document order.
    pub const ALL: [MessageKind; 19] = [
        MessageKind::Begin,
        MessageKind::Commit,
        MessageKind::Origin,
        MessageKind::Relation,
        MessageKind::Type,
        MessageKind::Insert,
        MessageKind::Update,
        MessageKind::Delete,
        MessageKind::Truncate,
        MessageKind::Message,
        MessageKind::StreamStart,
        MessageKind::StreamStop,
        MessageKind::StreamCommit,
        MessageKind::StreamAbort,
        MessageKind::BeginPrepare,
        MessageKind::Prepare,
        MessageKind::CommitPrepared,
        MessageKind::RollbackPrepared,
        MessageKind::StreamPrepare,
    ];

    /// The snake_case name, as in `decode` output (`stream_commit`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Begin => "begin",
            MessageKind::Commit => "commit",
            MessageKind::Origin => "origin",
            MessageKind::Relation => "relation",
            MessageKind::Type => "type",
            MessageKind::Insert => "insert",
            MessageKind::Update => "update",
            MessageKind::Delete => "delete",
            MessageKind::Truncate => "truncate",
            MessageKind::Message => "message",
            MessageKind::StreamStart => "stream_start",
            MessageKind::StreamStop => "stream_stop",
            MessageKind::StreamCommit => "stream_commit",
            MessageKind::StreamAbort => "stream_abort",
            MessageKind::BeginPrepare => "begin_prepare",
            MessageKind::Prepare => "prepare",
            MessageKind::CommitPrepared => "commit_prepared",
            MessageKind::RollbackPrepared => "rollback_prepared",
            MessageKind::StreamPrepare => "stream_prepare",
        }
    }

    /// The message type byte.
    pub fn tag(self) -> u8 {
        match self {
            MessageKind::Begin => b'B',
            MessageKind::Commit => b'C',
            MessageKind::Origin => b'O',
            MessageKind::Relation => b'R',
            MessageKind::Type => b'Y',
            MessageKind::Insert => b'I',
            MessageKind::Update => b'U',
            MessageKind::Delete => b'D',
            MessageKind::Truncate => b'T',
            MessageKind::Message => b'M',
            MessageKind::StreamStart => b'S',
            MessageKind::StreamStop => b'E',
            MessageKind::StreamCommit => b'c',
            MessageKind::StreamAbort => b'A',
            MessageKind::BeginPrepare => b'b',
            MessageKind::Prepare => b'P',
            MessageKind::CommitPrepared => b'K',
            MessageKind::RollbackPrepared => b'r',
            MessageKind::StreamPrepare => b'p',
        }
    }
}

impl std::fmt::Display for MessageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PgOutput {
    /// The kind of this message.
    pub fn kind(&self) -> MessageKind {
        match self {
            PgOutput::Begin(_) => MessageKind::Begin,
            PgOutput::Commit(_) => MessageKind::Commit,
            PgOutput::Origin(_) => MessageKind::Origin,
            PgOutput::Relation(_) => MessageKind::Relation,
            PgOutput::Type(_) => MessageKind::Type,
            PgOutput::Insert(_) => MessageKind::Insert,
            PgOutput::Update(_) => MessageKind::Update,
            PgOutput::Delete(_) => MessageKind::Delete,
            PgOutput::Truncate(_) => MessageKind::Truncate,
            PgOutput::Message(_) => MessageKind::Message,
            PgOutput::StreamStart(_) => MessageKind::StreamStart,
            PgOutput::StreamStop => MessageKind::StreamStop,
            PgOutput::StreamCommit(_) => MessageKind::StreamCommit,
            PgOutput::StreamAbort(_) => MessageKind::StreamAbort,
            PgOutput::BeginPrepare(_) => MessageKind::BeginPrepare,
            PgOutput::Prepare(_) => MessageKind::Prepare,
            PgOutput::CommitPrepared(_) => MessageKind::CommitPrepared,
            PgOutput::RollbackPrepared(_) => MessageKind::RollbackPrepared,
            PgOutput::StreamPrepare(_) => MessageKind::StreamPrepare,
        }
    }

    /// The relation a row or Relation message is about.
    pub fn relid(&self) -> Option<u32> {
        match self {
            PgOutput::Relation(m) => Some(m.relid),
            PgOutput::Insert(m) => Some(m.relid),
            PgOutput::Update(m) => Some(m.relid),
            PgOutput::Delete(m) => Some(m.relid),
            _ => None,
        }
    }

    /// The (sub)transaction id a message carries inside a stream block.
    pub fn xid(&self) -> Option<u32> {
        match self {
            PgOutput::Relation(m) => m.xid,
            PgOutput::Type(m) => m.xid,
            PgOutput::Insert(m) => m.xid,
            PgOutput::Update(m) => m.xid,
            PgOutput::Delete(m) => m.xid,
            PgOutput::Truncate(m) => m.xid,
            PgOutput::Message(m) => m.xid,
            _ => None,
        }
    }
}

/// `B`: a transaction starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begin {
    /// Position of the transaction's commit record (equals the Commit's `commit_lsn`).
    pub final_lsn: Lsn,
    /// Commit timestamp.
    pub commit_ts: PgTimestamp,
    /// Transaction id.
    pub xid: u32,
}

/// `C`: a transaction committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Flags (always 0).
    pub flags: u8,
    /// Position of the commit record.
    pub commit_lsn: Lsn,
    /// The byte after the commit record: the position to acknowledge once applied.
    pub end_lsn: Lsn,
    /// Commit timestamp.
    pub commit_ts: PgTimestamp,
}

/// `O`: the transaction was replicated into the source from a replication origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The commit position on the origin server.
    pub origin_lsn: Lsn,
    /// Origin name.
    pub name: String,
}

/// Replica identity setting of a relation (`pg_class.relreplident`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaIdentity {
    /// `d`: the primary key.
    Default,
    /// `n`: nothing; UPDATE and DELETE cannot be published.
    Nothing,
    /// `f`: all columns.
    Full,
    /// `i`: a chosen unique index.
    Index,
}

impl ReplicaIdentity {
    /// From the wire byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'd' => ReplicaIdentity::Default,
            b'n' => ReplicaIdentity::Nothing,
            b'f' => ReplicaIdentity::Full,
            b'i' => ReplicaIdentity::Index,
            _ => return None,
        })
    }

    /// The wire byte.
    pub fn as_byte(self) -> u8 {
        match self {
            ReplicaIdentity::Default => b'd',
            ReplicaIdentity::Nothing => b'n',
            ReplicaIdentity::Full => b'f',
            ReplicaIdentity::Index => b'i',
        }
    }
}

/// One column of a Relation message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Flags: 1 when the column is part of the replica identity key.
    pub flags: u8,
    /// Column name.
    pub name: String,
    /// Type OID on the source.
    pub type_oid: u32,
    /// Type modifier (`atttypmod`).
    pub type_modifier: i32,
}

impl RelationColumn {
    /// True when the column is part of the replica identity.
    pub fn is_key(&self) -> bool {
        self.flags & 1 == 1
    }
}

/// `R`: a relation's published shape; sent before its first row message and again after
/// any change to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Subtransaction id, inside stream blocks only.
    pub xid: Option<u32>,
    /// Relation OID on the source.
    pub relid: u32,
    /// Schema name (`pg_catalog` arrives as the empty string).
    pub namespace: String,
    /// Relation name.
    pub name: String,
    /// Replica identity.
    pub replica_identity: ReplicaIdentity,
    /// Published columns, in order.
    pub columns: Vec<RelationColumn>,
}

impl Relation {
    /// Schema name as SQL sees it (`pg_catalog` for the empty wire name).
    pub fn schema(&self) -> &str {
        if self.namespace.is_empty() {
            "pg_catalog"
        } else {
            &self.namespace
        }
    }

    /// `schema.table`, the schema as SQL sees it.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema(), self.name)
    }
}

/// `Y`: a user-defined type a following Relation uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Type {
    /// Subtransaction id, inside stream blocks only.
    pub xid: Option<u32>,
    /// Type OID on the source.
    pub type_oid: u32,
    /// Schema name (`pg_catalog` arrives as the empty string).
    pub namespace: String,
    /// Type name (for a domain, its base type's name).
    pub name: String,
}

/// `I`: a row was inserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    /// Subtransaction id, inside stream blocks only.
    pub xid: Option<u32>,
    /// Relation OID.
    pub relid: u32,
    /// The new row.
    pub new: TupleData,
}

/// The old row image of an Update or Delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple {
    /// `K`: the replica identity key columns; other columns are `'n'` placeholders.
    Key(TupleData),
    /// `O`: the whole old row (REPLICA IDENTITY FULL).
    Old(TupleData),
}

impl OldTuple {
    /// The tuple whichever its kind.
    pub fn tuple(&self) -> &TupleData {
        match self {
            OldTuple::Key(t) | OldTuple::Old(t) => t,
        }
    }
}

/// `U`: a row was updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// Subtransaction id, inside stream blocks only.
    pub xid: Option<u32>,
    /// Relation OID.
    pub relid: u32,
    /// The old key (when it changed) or the old row (REPLICA IDENTITY FULL).
    pub old: Option<OldTuple>,
    /// The new row; may hold unchanged-TOAST markers.
    pub new: TupleData,
}

/// `D`: a row was deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// Subtransaction id, inside stream blocks only.
    pub xid: Option<u32>,
    /// Relation OID.
    pub relid: u32,
    /// The old key or old row.
    pub old: OldTuple,
}

/// `T`: relations were truncated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    /// Subtransaction id, inside stream blocks only.
    pub xid: Option<u32>,
    /// Option bits: 1 CASCADE, 2 RESTART IDENTITY.
    pub options: u8,
    /// The truncated relations.
    pub relids: Vec<u32>,
}

impl Truncate {
    /// `TRUNCATE … CASCADE` was used on the source.
    pub fn cascade(&self) -> bool {
        self.options & 1 != 0
    }

    /// `TRUNCATE … RESTART IDENTITY` was used on the source.
    pub fn restart_identity(&self) -> bool {
        self.options & 2 != 0
    }
}

/// `M`: a logical decoding message (`pg_logical_emit_message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Subtransaction id, inside stream blocks only.
    pub xid: Option<u32>,
    /// Flags: 1 when transactional.
    pub flags: u8,
    /// Position of the message.
    pub lsn: Lsn,
    /// Prefix given by the emitter.
    pub prefix: String,
    /// Content.
    pub content: Bytes,
}

impl Message {
    /// True for a transactional message (part of a transaction, sent at its commit).
    pub fn transactional(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// `S`: a block of a large in-progress transaction follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStart {
    /// Top-level transaction id.
    pub xid: u32,
    /// 1 for the first block of that transaction.
    pub first_segment: u8,
}

/// `c`: a streamed transaction committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCommit {
    /// Top-level transaction id.
    pub xid: u32,
    /// Flags (always 0).
    pub flags: u8,
    /// Position of the commit record.
    pub commit_lsn: Lsn,
    /// The byte after the commit record.
    pub end_lsn: Lsn,
    /// Commit timestamp.
    pub commit_ts: PgTimestamp,
}

/// `A`: a streamed (sub)transaction aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAbort {
    /// Top-level transaction id.
    pub xid: u32,
    /// The aborted subtransaction, or `xid` itself when the whole transaction aborted.
    pub subxid: u32,
    /// Where and when it aborted: sent only with `streaming = parallel`.
    pub abort: Option<AbortInfo>,
}

/// The abort position and time a Stream Abort carries under `streaming = parallel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortInfo {
    /// Position of the abort record.
    pub abort_lsn: Lsn,
    /// Abort timestamp.
    pub abort_ts: PgTimestamp,
}

/// `b`: a transaction to be prepared for two-phase commit starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeginPrepare {
    /// Position of the PREPARE record.
    pub prepare_lsn: Lsn,
    /// The byte after the PREPARE record.
    pub end_lsn: Lsn,
    /// Prepare timestamp.
    pub prepare_ts: PgTimestamp,
    /// Transaction id.
    pub xid: u32,
    /// Global transaction identifier.
    pub gid: String,
}

/// `P` (and `p`, Stream Prepare): a transaction was prepared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepare {
    /// Flags (always 0).
    pub flags: u8,
    /// Position of the PREPARE record.
    pub prepare_lsn: Lsn,
    /// The byte after the PREPARE record.
    pub end_lsn: Lsn,
    /// Prepare timestamp.
    pub prepare_ts: PgTimestamp,
    /// Transaction id.
    pub xid: u32,
    /// Global transaction identifier.
    pub gid: String,
}

/// `K`: a prepared transaction was committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPrepared {
    /// Flags (always 0).
    pub flags: u8,
    /// Position of the COMMIT PREPARED record.
    pub commit_lsn: Lsn,
    /// The byte after it.
    pub end_lsn: Lsn,
    /// Commit timestamp.
    pub commit_ts: PgTimestamp,
    /// Transaction id.
    pub xid: u32,
    /// Global transaction identifier.
    pub gid: String,
}

/// `r`: a prepared transaction was rolled back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackPrepared {
    /// Flags (always 0).
    pub flags: u8,
    /// The byte after the PREPARE record.
    pub prepare_end_lsn: Lsn,
    /// The byte after the ROLLBACK PREPARED record.
    pub rollback_end_lsn: Lsn,
    /// Prepare timestamp.
    pub prepare_ts: PgTimestamp,
    /// Rollback timestamp.
    pub rollback_ts: PgTimestamp,
    /// Transaction id.
    pub xid: u32,
    /// Global transaction identifier.
    pub gid: String,
}
