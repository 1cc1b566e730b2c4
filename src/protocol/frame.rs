//! Framing of backend messages: a type byte, an `Int32` length that counts itself, a body.
//!
//! [`FrameDecoder`] cuts a byte stream into [`Frame`]s. It checks the announced length
//! against a cap *before* reserving or waiting for anything, so a hostile or broken
//! server cannot make pgsub allocate gigabytes from four bytes. Bodies are split off the
//! read buffer without copying. The frontend side writes the few messages pgsub sends
//! that `postgres-protocol` does not (CopyData with a borrowed payload).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::reader::{DecodeError, DecodeErrorKind};

/// Default cap on one backend message: 1 GiB, PostgreSQL's own limit on a field value,
/// plus room for the framing of a CopyData message carrying it.
pub const DEFAULT_MAX_FRAME_LEN: usize = (1 << 30) + 64;

/// Most reserved at once for a frame still arriving; the buffer grows with the bytes.
const RESERVE_STEP: usize = 8 << 20;

/// One backend message: type byte and body (without the length word).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The message type byte.
    pub tag: u8,
    /// The body, a zero-copy slice of the read buffer.
    pub body: Bytes,
}

impl Frame {
    /// Bytes this message took on the wire (type byte, length word, body).
    pub fn wire_len(&self) -> usize {
        5 + self.body.len()
    }
}

/// Splits backend messages off a read buffer.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_len: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl FrameDecoder {
    /// A decoder refusing messages with a body longer than `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        FrameDecoder { max_len }
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or an error for a
    /// length that is impossible or over the cap. Bytes of an incomplete frame stay in
    /// `buf`; when a frame is returned, exactly its bytes are removed.
    pub fn decode_frame(&self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        if buf.len() < 5 {
            return Ok(None);
        }
        let tag = buf[0];
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if len < 4 {
            return Err(DecodeError {
                offset: 1,
                kind: DecodeErrorKind::Invalid {
                    what: "message length",
                    detail: format!("{len} is below the minimum of 4"),
                },
            });
        }
        let body_len = len - 4;
        if body_len > self.max_len {
            return Err(DecodeError {
                offset: 1,
                kind: DecodeErrorKind::FrameTooLarge {
                    len: body_len,
                    max: self.max_len,
                },
            });
        }
        if buf.len() < 5 + body_len {
            // Reserve what is still missing, after the cap was checked, and at most a
            // chunk at a time: a header alone never makes pgsub take a gigabyte.
            buf.reserve((5 + body_len - buf.len()).min(RESERVE_STEP));
            return Ok(None);
        }
        buf.advance(5);
        let body = buf.split_to(body_len).freeze();
        Ok(Some(Frame { tag, body }))
    }
}

/// Appends a CopyData message carrying `payload`.
pub fn write_copy_data(payload: &[u8], out: &mut BytesMut) {
    out.reserve(5 + payload.len());
    out.put_u8(b'd');
    out.put_u32((payload.len() + 4) as u32);
    out.extend_from_slice(payload);
}

/// Appends a message of any type with `body` (used by tests and the fault server).
pub fn write_frame(tag: u8, body: &[u8], out: &mut BytesMut) {
    out.reserve(5 + body.len());
    out.put_u8(tag);
    out.put_u32((body.len() + 4) as u32);
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_bytes(tag: u8, body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        write_frame(tag, body, &mut b);
        b
    }

    #[test]
    fn read_frame_exactly() {
        let mut buf = frame_bytes(b'Z', b"I");
        let f = FrameDecoder::default()
            .decode_frame(&mut buf)
            .unwrap()
            .unwrap();
        assert_eq!((f.tag, &f.body[..]), (b'Z', &b"I"[..]));
        assert!(buf.is_empty());
    }

    #[test]
    fn read_partial_header_then_not_ready() {
        let mut buf = BytesMut::from(&b"Z\0\0"[..]);
        assert_eq!(
            FrameDecoder::default().decode_frame(&mut buf).unwrap(),
            None
        );
        assert_eq!(buf.len(), 3);
    }

    #[test]
    fn read_multi_frame_across_packets() {
        let mut all = frame_bytes(b'd', b"hello");
        all.extend_from_slice(&frame_bytes(b'c', b""));
        let dec = FrameDecoder::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for chunk in all.chunks(3) {
            buf.extend_from_slice(chunk);
            while let Some(f) = dec.decode_frame(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(&got[0].body[..], b"hello");
        assert_eq!(got[1].tag, b'c');
        assert!(buf.is_empty());
    }

    #[test]
    fn length_below_four_is_an_error() {
        let mut buf = BytesMut::from(&b"d\0\0\0\x03"[..]);
        let err = FrameDecoder::default().decode_frame(&mut buf).unwrap_err();
        assert!(matches!(err.kind, DecodeErrorKind::Invalid { .. }));
    }

    #[test]
    fn oversized_length_is_refused_before_allocating() {
        let mut buf = BytesMut::from(&b"d\xff\xff\xff\xff"[..]);
        let cap_before = buf.capacity();
        let err = FrameDecoder::new(1024).decode_frame(&mut buf).unwrap_err();
        assert_eq!(
            err.kind,
            DecodeErrorKind::FrameTooLarge {
                len: 0xFFFF_FFFF - 4,
                max: 1024
            }
        );
        assert_eq!(buf.capacity(), cap_before);
    }

    #[test]
    fn large_allowed_frame_reserves_a_step_not_the_whole_length() {
        // 768 MiB announced, under the default cap: the buffer grows as bytes arrive.
        let mut buf = BytesMut::from(&b"d\x30\0\0\x04"[..]);
        assert_eq!(
            FrameDecoder::default().decode_frame(&mut buf).unwrap(),
            None
        );
        assert!(buf.capacity() <= RESERVE_STEP + 64, "{}", buf.capacity());
    }

    #[test]
    fn copy_data_framing_counts_the_length_word() {
        let mut buf = BytesMut::new();
        write_copy_data(b"abc", &mut buf);
        assert_eq!(&buf[..], b"d\0\0\0\x07abc");
    }
}
