//! The streaming-replication messages carried inside CopyData once `START_REPLICATION`
//! has switched the connection to CopyBoth (protocol docs, "Streaming Replication
//! Protocol").
//!
//! ```text
//!  server → client                         client → server
//!  'w' XLogData: wal_start wal_end          'r' Standby status update:
//!      send_time, then one pgoutput msg         write flush apply client_time reply
//!  'k' Primary keepalive: wal_end
//!      send_time reply_requested
//! ```
//!
//! Parsing takes the whole CopyData payload as [`Bytes`] and returns the XLogData
//! payload as a slice of it: no copy.

use bytes::{BufMut, Bytes, BytesMut};

use super::reader::{DecodeError, DecodeErrorKind, Reader, TagByte};
use super::time::PgTimestamp;
use crate::lsn::Lsn;

/// Type byte of XLogData.
pub const XLOG_DATA_TAG: u8 = b'w';
/// Type byte of a primary keepalive.
pub const PRIMARY_KEEPALIVE_TAG: u8 = b'k';
/// Type byte of a standby status update.
pub const STANDBY_STATUS_UPDATE_TAG: u8 = b'r';
/// Bytes before the payload of an XLogData message: tag, two LSNs, a timestamp.
pub const XLOG_DATA_HEADER_LEN: usize = 1 + 8 + 8 + 8;
/// Length of a standby status update.
pub const STANDBY_STATUS_UPDATE_LEN: usize = 1 + 8 + 8 + 8 + 8 + 1;

/// `'w'`: a piece of WAL data; for logical replication, exactly one output-plugin message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XLogData {
    /// Position of the data in the WAL; `0/0` for messages not tied to a WAL record
    /// (pgoutput's Relation, Type, and Begin when an Origin follows).
    pub wal_start: Lsn,
    /// The server's current end of WAL as far as this message is concerned; for logical
    /// replication the same value as `wal_start`.
    pub wal_end: Lsn,
    /// When the server sent it.
    pub send_time: PgTimestamp,
    /// The output plugin's message.
    pub data: Bytes,
}

/// `'k'`: the server's heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrimaryKeepalive {
    /// The end of WAL the walsender has processed (`sentPtr`).
    pub wal_end: Lsn,
    /// When the server sent it.
    pub send_time: PgTimestamp,
    /// The server asks for a status update now, or it will time the client out.
    pub reply_requested: bool,
}

/// One CopyData payload from the server during streaming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationMessage {
    /// `'w'`
    XLogData(XLogData),
    /// `'k'`
    PrimaryKeepalive(PrimaryKeepalive),
}

impl ReplicationMessage {
    /// Parses one CopyData payload.
    pub fn parse(payload: Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(payload);
        if r.remaining() == 0 {
            return Err(r.error(DecodeErrorKind::Empty));
        }
        match r.u8("message type")? {
            XLOG_DATA_TAG => {
                let wal_start = r.lsn("XLogData wal_start")?;
                let wal_end = r.lsn("XLogData wal_end")?;
                let send_time = PgTimestamp(r.i64("XLogData send_time")?);
                Ok(ReplicationMessage::XLogData(XLogData {
                    wal_start,
                    wal_end,
                    send_time,
                    data: r.take_rest(),
                }))
            }
            PRIMARY_KEEPALIVE_TAG => {
                let wal_end = r.lsn("keepalive wal_end")?;
                let send_time = PgTimestamp(r.i64("keepalive send_time")?);
                let reply = r.u8("keepalive reply_requested")?;
                if reply > 1 {
                    return Err(r.invalid("keepalive reply_requested", format!("{reply}")));
                }
                r.finish()?;
                Ok(ReplicationMessage::PrimaryKeepalive(PrimaryKeepalive {
                    wal_end,
                    send_time,
                    reply_requested: reply == 1,
                }))
            }
            other => Err(DecodeError {
                offset: 0,
                kind: DecodeErrorKind::UnknownTag(TagByte(other)),
            }),
        }
    }
}

/// `'r'`: what the client tells the server about its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandbyStatusUpdate {
    /// Highest position received.
    pub write: Lsn,
    /// Position up to which everything is durably processed; this is what moves the
    /// slot's `confirmed_flush_lsn`. `0/0` confirms nothing.
    pub flush: Lsn,
    /// Position up to which everything is applied.
    pub apply: Lsn,
    /// When the client sent it.
    pub client_time: PgTimestamp,
    /// Ask the server to answer with a keepalive at once.
    pub reply_requested: bool,
}

impl StandbyStatusUpdate {
    /// Appends the CopyData payload (not the CopyData framing) to `out`.
    pub fn write_payload(&self, out: &mut BytesMut) {
        out.reserve(STANDBY_STATUS_UPDATE_LEN);
        out.put_u8(STANDBY_STATUS_UPDATE_TAG);
        out.put_u64(self.write.0);
        out.put_u64(self.flush.0);
        out.put_u64(self.apply.0);
        out.put_i64(self.client_time.0);
        out.put_u8(u8::from(self.reply_requested));
    }

    /// Parses a standby status update payload (used by the fault-injection server in tests
    /// and by recordings' own checks).
    pub fn parse(payload: Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(payload);
        let tag = r.u8("message type")?;
        if tag != STANDBY_STATUS_UPDATE_TAG {
            return Err(DecodeError {
                offset: 0,
                kind: DecodeErrorKind::UnknownTag(TagByte(tag)),
            });
        }
        let update = StandbyStatusUpdate {
            write: r.lsn("write")?,
            flush: r.lsn("flush")?,
            apply: r.lsn("apply")?,
            client_time: PgTimestamp(r.i64("client_time")?),
            reply_requested: r.u8("reply_requested")? != 0,
        };
        r.finish()?;
        Ok(update)
    }
}

/// Encodes an XLogData payload (for tests, benchmarks and the fault server).
pub fn write_xlog_data(msg: &XLogData, out: &mut BytesMut) {
    out.reserve(XLOG_DATA_HEADER_LEN + msg.data.len());
    out.put_u8(XLOG_DATA_TAG);
    out.put_u64(msg.wal_start.0);
    out.put_u64(msg.wal_end.0);
    out.put_i64(msg.send_time.0);
    out.extend_from_slice(&msg.data);
}

/// Encodes a primary keepalive payload (for tests and the fault server).
pub fn write_primary_keepalive(msg: &PrimaryKeepalive, out: &mut BytesMut) {
    out.put_u8(PRIMARY_KEEPALIVE_TAG);
    out.put_u64(msg.wal_end.0);
    out.put_i64(msg.send_time.0);
    out.put_u8(u8::from(msg.reply_requested));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xlog_data_payload_is_a_slice_of_the_frame() {
        let frame =
            Bytes::from_static(b"w\0\0\0\x01\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\0\0\0\0\x07BEGIN!");
        let ReplicationMessage::XLogData(x) = ReplicationMessage::parse(frame.clone()).unwrap()
        else {
            panic!("not xlogdata")
        };
        assert_eq!(x.wal_start, Lsn(0x1_0000_0000));
        assert_eq!(x.wal_end, Lsn(0x1_0000_0000));
        assert_eq!(x.send_time, PgTimestamp(7));
        assert_eq!(&x.data[..], b"BEGIN!");
        assert_eq!(x.data.as_ptr(), frame[XLOG_DATA_HEADER_LEN..].as_ptr());
    }

    #[test]
    fn keepalive_with_reply_requested_parses() {
        let ka = PrimaryKeepalive {
            wal_end: Lsn(0x16B_3748),
            send_time: PgTimestamp(42),
            reply_requested: true,
        };
        let mut buf = BytesMut::new();
        write_primary_keepalive(&ka, &mut buf);
        assert_eq!(
            ReplicationMessage::parse(buf.freeze()).unwrap(),
            ReplicationMessage::PrimaryKeepalive(ka)
        );
    }

    #[test]
    fn keepalive_with_trailing_byte_is_rejected() {
        let mut buf = BytesMut::new();
        write_primary_keepalive(
            &PrimaryKeepalive {
                wal_end: Lsn(1),
                send_time: PgTimestamp(1),
                reply_requested: false,
            },
            &mut buf,
        );
        buf.put_u8(0);
        let err = ReplicationMessage::parse(buf.freeze()).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::TrailingBytes(1));
        assert_eq!(err.offset, 18);
    }

    #[test]
    fn truncated_xlog_header_names_the_field() {
        let err =
            ReplicationMessage::parse(Bytes::from_static(b"w\0\0\0\0\0\0\0\0\0\0")).unwrap_err();
        assert!(matches!(
            err.kind,
            DecodeErrorKind::Truncated {
                what: "XLogData wal_end",
                ..
            }
        ));
    }

    #[test]
    fn unknown_copy_data_type_is_an_error() {
        let err = ReplicationMessage::parse(Bytes::from_static(b"s\0\0")).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::UnknownTag(TagByte(b's')));
        assert_eq!(
            ReplicationMessage::parse(Bytes::new()).unwrap_err().kind,
            DecodeErrorKind::Empty
        );
    }

    #[test]
    fn standby_status_update_layout_is_34_bytes_big_endian() {
        let u = StandbyStatusUpdate {
            write: Lsn(0x0102_0304_0506_0708),
            flush: Lsn(2),
            apply: Lsn(3),
            client_time: PgTimestamp(-1),
            reply_requested: true,
        };
        let mut buf = BytesMut::new();
        u.write_payload(&mut buf);
        assert_eq!(buf.len(), STANDBY_STATUS_UPDATE_LEN);
        assert_eq!(&buf[..9], b"r\x01\x02\x03\x04\x05\x06\x07\x08");
        assert_eq!(buf[33], 1);
        assert_eq!(StandbyStatusUpdate::parse(buf.freeze()).unwrap(), u);
    }
}
