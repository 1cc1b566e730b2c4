//! Byte-level accounting of a replication stream: every byte received, by frame, by
//! message kind, by relation and by transaction, and the WAL span it covered.
//!
//! The counters answer "where did the bytes go" exactly: `wire_bytes` is the sum of all
//! CopyData frames as received (5 bytes of framing each, plus the payload);
//! `xlog_data.bytes + keepalives.bytes` is the sum of payloads; the pgoutput kinds add
//! up to the XLogData payloads minus their 25-byte headers. [`Accounting::check`] asserts
//! these identities, so a counting bug cannot go unnoticed.

use serde::Serialize;

use super::positions::InvariantViolation;
use super::relations::OidMap;
use crate::lsn::Lsn;
use crate::pgoutput::{MessageKind, PgOutput};
use crate::protocol::replication::XLOG_DATA_HEADER_LEN;

/// A count and a byte total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counter {
    /// Number of items.
    pub count: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl Counter {
    fn add(&mut self, bytes: usize) {
        self.count += 1;
        self.bytes += bytes as u64;
    }
}

/// Row traffic of one relation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RelationCounters {
    /// `schema.table`, once a Relation message named it.
    pub name: String,
    /// Insert messages.
    pub inserts: u64,
    /// Update messages.
    pub updates: u64,
    /// Delete messages.
    pub deletes: u64,
    /// Truncates naming it.
    pub truncates: u64,
    /// pgoutput bytes of its row messages.
    pub bytes: u64,
}

/// Sizes of the transactions seen whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TransactionStats {
    /// Units completed (commits, prepares, stream commits, commit/rollback prepared).
    pub count: u64,
    /// pgoutput bytes in them (Begin to Commit, stream blocks included).
    pub bytes: u64,
    /// Messages in the largest.
    pub largest_messages: u64,
    /// Bytes of the largest.
    pub largest_bytes: u64,
}

/// All counters of one session.
#[derive(Debug, Clone, Default)]
pub struct Accounting {
    /// CopyData frames, bytes on the wire including framing.
    pub frames: Counter,
    /// XLogData payloads (header included).
    pub xlog_data: Counter,
    /// Keepalive payloads.
    pub keepalives: Counter,
    by_kind: [Counter; MessageKind::ALL.len()],
    relations: OidMap<RelationCounters>,
    /// Completed transactions.
    pub transactions: TransactionStats,
    current_bytes: u64,
    current_messages: u64,
    /// Lowest non-zero XLogData `wal_start` seen.
    pub first_wal: Option<Lsn>,
    /// Highest XLogData `wal_start` seen.
    pub last_wal: Option<Lsn>,
    /// Highest keepalive `wal_end` seen.
    pub last_keepalive_wal_end: Option<Lsn>,
}

fn kind_index(kind: MessageKind) -> usize {
    MessageKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or_default()
}

impl Accounting {
    /// Counts one CopyData frame of `wire_len` bytes.
    pub fn on_frame(&mut self, wire_len: usize) {
        self.frames.add(wire_len);
    }

    /// Counts a keepalive payload.
    pub fn on_keepalive(&mut self, payload_len: usize, wal_end: Lsn) {
        self.keepalives.add(payload_len);
        self.last_keepalive_wal_end =
            Some(self.last_keepalive_wal_end.unwrap_or_default().max(wal_end));
    }

    /// Counts one XLogData with its decoded message; `payload_len` is the whole CopyData
    /// payload, header included. `in_transaction` is false for messages outside any
    /// transaction (non-transactional logical messages), which no transaction is charged for.
    pub fn on_message(
        &mut self,
        wal_start: Lsn,
        payload_len: usize,
        msg: &PgOutput,
        in_transaction: bool,
    ) {
        self.xlog_data.add(payload_len);
        if !wal_start.is_zero() {
            self.first_wal = Some(self.first_wal.map_or(wal_start, |f| f.min(wal_start)));
            self.last_wal = Some(self.last_wal.map_or(wal_start, |l| l.max(wal_start)));
        }
        let body = payload_len.saturating_sub(XLOG_DATA_HEADER_LEN);
        self.by_kind[kind_index(msg.kind())].add(body);
        if in_transaction {
            self.current_bytes += body as u64;
            self.current_messages += 1;
        }
        match msg {
            PgOutput::Relation(r) => {
                let e = self.relations.entry(r.relid).or_default();
                e.name = r.qualified_name();
            }
            PgOutput::Insert(m) => self.row(m.relid, body).inserts += 1,
            PgOutput::Update(m) => self.row(m.relid, body).updates += 1,
            PgOutput::Delete(m) => self.row(m.relid, body).deletes += 1,
            PgOutput::Truncate(t) => {
                for relid in &t.relids {
                    self.relations.entry(*relid).or_default().truncates += 1;
                }
            }
            _ => {}
        }
    }

    fn row(&mut self, relid: u32, bytes: usize) -> &mut RelationCounters {
        let e = self.relations.entry(relid).or_default();
        e.bytes += bytes as u64;
        e
    }

    /// A unit (transaction) ended with the message just counted.
    pub fn on_unit_end(&mut self) {
        let t = &mut self.transactions;
        t.count += 1;
        t.bytes += self.current_bytes;
        if self.current_bytes > t.largest_bytes {
            t.largest_bytes = self.current_bytes;
            t.largest_messages = self.current_messages;
        }
        self.current_bytes = 0;
        self.current_messages = 0;
    }

    /// Messages and payload bytes of one pgoutput kind.
    pub fn kind(&self, kind: MessageKind) -> Counter {
        self.by_kind[kind_index(kind)]
    }

    /// Counters per relation OID.
    pub fn relations(&self) -> &OidMap<RelationCounters> {
        &self.relations
    }

    /// Checks that the counters add up.
    pub fn check(&self) -> Result<(), InvariantViolation> {
        let payload = self.xlog_data.bytes + self.keepalives.bytes;
        let frames = self.xlog_data.count + self.keepalives.count;
        if self.frames.count != frames || self.frames.bytes != payload + 5 * frames {
            return Err(InvariantViolation(format!(
                "{} frames of {} bytes do not match {} XLogData and {} keepalives of {} payload bytes",
                self.frames.count,
                self.frames.bytes,
                self.xlog_data.count,
                self.keepalives.count,
                payload
            )));
        }
        let kinds: u64 = self.by_kind.iter().map(|c| c.bytes).sum();
        let count: u64 = self.by_kind.iter().map(|c| c.count).sum();
        let expected = self
            .xlog_data
            .bytes
            .saturating_sub(XLOG_DATA_HEADER_LEN as u64 * self.xlog_data.count);
        if count != self.xlog_data.count || kinds != expected {
            return Err(InvariantViolation(format!(
                "pgoutput messages ({count}, {kinds} bytes) do not add up to XLogData ({}, {expected} bytes after headers)",
                self.xlog_data.count
            )));
        }
        Ok(())
    }

    /// A serialisable summary.
    pub fn summary(&self) -> AccountingSummary {
        let mut relations: Vec<_> = self
            .relations
            .iter()
            .map(|(relid, c)| RelationSummary {
                relid: *relid,
                counters: c.clone(),
            })
            .collect();
        relations.sort_by(|a, b| {
            a.counters
                .name
                .cmp(&b.counters.name)
                .then(a.relid.cmp(&b.relid))
        });
        AccountingSummary {
            frames: self.frames,
            xlog_data: self.xlog_data,
            keepalives: self.keepalives,
            messages: MessageKind::ALL
                .iter()
                .filter(|k| self.kind(**k).count > 0)
                .map(|k| KindSummary {
                    kind: k.as_str(),
                    count: self.kind(*k).count,
                    bytes: self.kind(*k).bytes,
                })
                .collect(),
            relations,
            transactions: self.transactions,
            first_wal: self.first_wal,
            last_wal: self.last_wal,
            last_keepalive_wal_end: self.last_keepalive_wal_end,
        }
    }
}

/// One kind's line of the summary.
#[derive(Debug, Clone, Serialize)]
pub struct KindSummary {
    /// Kind name.
    pub kind: &'static str,
    /// Messages.
    pub count: u64,
    /// pgoutput bytes.
    pub bytes: u64,
}

/// One relation's line of the summary.
#[derive(Debug, Clone, Serialize)]
pub struct RelationSummary {
    /// Relation OID on the source.
    pub relid: u32,
    /// Its counters.
    #[serde(flatten)]
    pub counters: RelationCounters,
}

/// The accounting as reported at the end of a run.
#[derive(Debug, Clone, Serialize)]
pub struct AccountingSummary {
    /// CopyData frames.
    pub frames: Counter,
    /// XLogData payloads.
    pub xlog_data: Counter,
    /// Keepalive payloads.
    pub keepalives: Counter,
    /// Per pgoutput kind.
    pub messages: Vec<KindSummary>,
    /// Per relation.
    pub relations: Vec<RelationSummary>,
    /// Transactions.
    pub transactions: TransactionStats,
    /// Lowest XLogData position.
    pub first_wal: Option<Lsn>,
    /// Highest XLogData position.
    pub last_wal: Option<Lsn>,
    /// Highest keepalive wal_end.
    pub last_keepalive_wal_end: Option<Lsn>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgoutput::{Insert, TupleData};

    #[test]
    fn counters_add_up_and_check_passes() {
        let mut a = Accounting::default();
        let ins = PgOutput::Insert(Insert {
            xid: None,
            relid: 7,
            new: TupleData::from_columns(&[]),
        });
        a.on_frame(5 + 25 + 8);
        a.on_message(Lsn(100), 25 + 8, &ins, true);
        a.on_frame(5 + 18);
        a.on_keepalive(18, Lsn(200));
        a.check().unwrap();
        assert_eq!(a.kind(MessageKind::Insert), Counter { count: 1, bytes: 8 });
        assert_eq!(a.relations()[&7].inserts, 1);
        assert_eq!(a.first_wal, Some(Lsn(100)));
    }

    #[test]
    fn check_catches_a_frame_counted_without_its_payload() {
        let mut a = Accounting::default();
        a.on_frame(23);
        assert!(a.check().is_err());
    }

    #[test]
    fn largest_transaction_is_tracked() {
        let mut a = Accounting::default();
        let ins = PgOutput::Insert(Insert {
            xid: None,
            relid: 7,
            new: TupleData::from_columns(&[]),
        });
        a.on_message(Lsn(1), 35, &ins, true);
        a.on_unit_end();
        a.on_message(Lsn(2), 35, &ins, true);
        a.on_message(Lsn(3), 45, &ins, true);
        a.on_message(Lsn(4), 99, &ins, false);
        a.on_unit_end();
        assert_eq!(a.transactions.count, 2);
        assert_eq!(a.transactions.largest_messages, 2);
        assert_eq!(a.transactions.largest_bytes, 30);
        assert_eq!(a.transactions.bytes, 40);
    }
}
