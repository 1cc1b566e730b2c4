//! Recording files: the exact CopyData payloads a server sent during streaming, framed
//! so that any damage is detected and named.
//!
//! ```text
//!   "PGSUBREC"            8 bytes magic
//!   version               u16 (1)
//!   header length         u32, then the header as JSON, then its CRC-32
//!   frames …              u32 length · u32 CRC-32 of the payload · payload
//!   end marker            u32 0xFFFFFFFF · u32 CRC-32 of the count · u64 number of frames
//! ```
//!
//! All integers are big-endian. The header records what is needed to interpret the
//! stream (server version, `START_REPLICATION` options, system id, slot, start position).
//! A file without its end marker was cut short (the recorder was killed, the disk filled):
//! reading it reports which frame is incomplete, or that the marker is missing after the
//! last whole frame.

use std::io::{BufRead, Read, Write};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::lsn::Lsn;

/// The first bytes of every recording.
pub const MAGIC: &[u8; 8] = b"PGSUBREC";
/// The format version this code writes and reads.
pub const FORMAT_VERSION: u16 = 1;
const END_MARKER: u32 = u32::MAX;
/// Largest frame accepted when reading (a CopyData payload is at most ~1 GiB).
pub const MAX_FRAME_LEN: u32 = (1 << 30) + 64;

/// What a recording says about where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// pgsub version that wrote it.
    pub pgsub_version: String,
    /// The server's `server_version`.
    pub server_version: String,
    /// `server_version_num`.
    pub server_version_num: u32,
    /// `IDENTIFY_SYSTEM` system id.
    pub system_id: String,
    /// Timeline.
    pub timeline: u32,
    /// Slot streamed from.
    pub slot: String,
    /// Position streaming started at (the slot's confirmed flush position).
    pub start_lsn: String,
    /// The `START_REPLICATION` option list as sent.
    pub options: String,
    /// When recording started (RFC 3339).
    pub recorded_at: String,
    /// The publications streamed (absent in recordings of pgsub 0.1's first releases).
    #[serde(default)]
    pub publications: Vec<String>,
}

impl Header {
    /// The start position.
    pub fn start(&self) -> Lsn {
        self.start_lsn.parse().unwrap_or_default()
    }
}

/// A recording file opened for reading, its header read and checked.
pub type FileReader = Reader<std::io::BufReader<std::fs::File>>;

/// Opens the recording at `path` and reads its header.
pub fn open(path: &std::path::Path) -> Result<FileReader, RecordError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| RecordError::Io {
        path: name.clone(),
        source,
    })?;
    Reader::new(std::io::BufReader::with_capacity(1 << 20, file), &name)
}

/// A damaged or foreign recording.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The system's answer.
        source: std::io::Error,
    },
    /// The file does not start with the magic bytes.
    #[error("{path} is not a pgsub recording (it does not start with PGSUBREC)")]
    NotARecording {
        /// The file.
        path: String,
    },
    /// A format version this pgsub cannot read.
    #[error(
        "{path} is a recording of format version {version}; this pgsub reads version {FORMAT_VERSION}"
    )]
    UnsupportedVersion {
        /// The file.
        path: String,
        /// Its version.
        version: u16,
    },
    /// The header is damaged.
    #[error("{path}: the recording header is damaged: {detail}")]
    BadHeader {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// A frame is cut short.
    #[error(
        "{path}: frame {frame} at byte {offset} is truncated: {needed} bytes needed, {available} present (the recording was cut short)"
    )]
    Truncated {
        /// The file.
        path: String,
        /// 1-based frame number.
        frame: u64,
        /// Byte offset of the frame in the file.
        offset: u64,
        /// Bytes the frame needs.
        needed: u64,
        /// Bytes present.
        available: u64,
    },
    /// A frame's checksum does not match its bytes.
    #[error(
        "{path}: frame {frame} at byte {offset} is corrupt: CRC-32 {actual:08x} of its {len} bytes does not match the recorded {expected:08x}"
    )]
    CrcMismatch {
        /// The file.
        path: String,
        /// 1-based frame number.
        frame: u64,
        /// Byte offset.
        offset: u64,
        /// Payload length.
        len: u32,
        /// CRC in the file.
        expected: u32,
        /// CRC of the bytes read.
        actual: u32,
    },
    /// A frame announces an impossible length.
    #[error(
        "{path}: frame {frame} at byte {offset} announces {len} bytes, more than the {MAX_FRAME_LEN} a frame may have: the file is corrupt"
    )]
    FrameTooLarge {
        /// The file.
        path: String,
        /// 1-based frame number.
        frame: u64,
        /// Byte offset.
        offset: u64,
        /// Announced length.
        len: u32,
    },
    /// The file ends after a whole frame but without the end marker.
    #[error(
        "{path}: the recording ends after frame {frames} without its end marker (the recorder was stopped before it finished)"
    )]
    MissingEndMarker {
        /// The file.
        path: String,
        /// Whole frames read.
        frames: u64,
    },
    /// The end marker disagrees with the frames read.
    #[error(
        "{path}: the end marker counts {recorded} frames but {read} were read; the file is damaged"
    )]
    CountMismatch {
        /// The file.
        path: String,
        /// Count in the marker.
        recorded: u64,
        /// Frames read.
        read: u64,
    },
    /// Bytes follow the end marker.
    #[error("{path}: {extra} unexpected byte(s) after the end marker")]
    TrailingData {
        /// The file.
        path: String,
        /// How many (at least).
        extra: u64,
    },
}

impl RecordError {
    /// True for problems with the file as a whole (wrong file, unsupported version),
    /// as opposed to damage found while reading frames.
    pub fn is_unusable_file(&self) -> bool {
        matches!(
            self,
            RecordError::NotARecording { .. }
                | RecordError::UnsupportedVersion { .. }
                | RecordError::BadHeader { .. }
        ) || matches!(self, RecordError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Writes a recording.
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
    path: String,
    frames: u64,
}

impl<W: Write> Writer<W> {
    /// Starts a recording with `header`; `path` names the file in errors.
    pub fn new(mut out: W, path: &str, header: &Header) -> Result<Self, RecordError> {
        let io = |source| RecordError::Io {
            path: path.to_owned(),
            source,
        };
        let json = serde_json::to_vec(header).map_err(|e| RecordError::BadHeader {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        out.write_all(MAGIC).map_err(io)?;
        out.write_all(&FORMAT_VERSION.to_be_bytes()).map_err(io)?;
        out.write_all(&(json.len() as u32).to_be_bytes())
            .map_err(io)?;
        out.write_all(&json).map_err(io)?;
        out.write_all(&crc32fast::hash(&json).to_be_bytes())
            .map_err(io)?;
        Ok(Writer {
            out,
            path: path.to_owned(),
            frames: 0,
        })
    }

    fn io(&self, source: std::io::Error) -> RecordError {
        RecordError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends one CopyData payload.
    pub fn write_frame(&mut self, payload: &[u8]) -> Result<(), RecordError> {
        let mut head = [0u8; 8];
        head[..4].copy_from_slice(&(payload.len() as u32).to_be_bytes());
        head[4..].copy_from_slice(&crc32fast::hash(payload).to_be_bytes());
        self.out.write_all(&head).map_err(|e| self.io(e))?;
        self.out.write_all(payload).map_err(|e| self.io(e))?;
        self.frames += 1;
        Ok(())
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Flushes buffered bytes to the underlying writer.
    pub fn flush(&mut self) -> Result<(), RecordError> {
        self.out.flush().map_err(|e| self.io(e))
    }

    /// The underlying writer (to sync a file).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Writes the end marker and returns the writer.
    pub fn finish(mut self) -> Result<W, RecordError> {
        let count = self.frames.to_be_bytes();
        let mut tail = Vec::with_capacity(16);
        tail.extend_from_slice(&END_MARKER.to_be_bytes());
        tail.extend_from_slice(&crc32fast::hash(&count).to_be_bytes());
        tail.extend_from_slice(&count);
        self.out.write_all(&tail).map_err(|e| self.io(e))?;
        self.flush()?;
        Ok(self.out)
    }
}

/// Reads a recording frame by frame.
#[derive(Debug)]
pub struct Reader<R: BufRead> {
    input: R,
    path: String,
    header: Header,
    offset: u64,
    frames: u64,
    done: bool,
}

/// Reads as much of `buf` as the input has; returns how many bytes were read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl<R: BufRead> Reader<R> {
    /// Opens a recording: checks magic, version and header.
    pub fn new(mut input: R, path: &str) -> Result<Self, RecordError> {
        let io = |source| RecordError::Io {
            path: path.to_owned(),
            source,
        };
        let bad = |detail: String| RecordError::BadHeader {
            path: path.to_owned(),
            detail,
        };
        let mut start = [0u8; 14];
        let n = read_full(&mut input, &mut start).map_err(io)?;
        if n < 8 || &start[..8] != MAGIC {
            return Err(RecordError::NotARecording {
                path: path.to_owned(),
            });
        }
        if n < 14 {
            return Err(bad("the file ends inside the header".into()));
        }
        let version = u16::from_be_bytes([start[8], start[9]]);
        if version != FORMAT_VERSION {
            return Err(RecordError::UnsupportedVersion {
                path: path.to_owned(),
                version,
            });
        }
        let len = u32::from_be_bytes([start[10], start[11], start[12], start[13]]);
        if len > 1 << 20 {
            return Err(bad(format!("header length {len} is implausible")));
        }
        let mut json = vec![0u8; len as usize + 4];
        if read_full(&mut input, &mut json).map_err(io)? < json.len() {
            return Err(bad("the file ends inside the header".into()));
        }
        let crc = u32::from_be_bytes([
            json[len as usize],
            json[len as usize + 1],
            json[len as usize + 2],
            json[len as usize + 3],
        ]);
        json.truncate(len as usize);
        if crc32fast::hash(&json) != crc {
            return Err(bad("its CRC-32 does not match".into()));
        }
        let header: Header = serde_json::from_slice(&json).map_err(|e| bad(e.to_string()))?;
        Ok(Reader {
            input,
            path: path.to_owned(),
            header,
            offset: 14 + u64::from(len) + 4,
            frames: 0,
            done: false,
        })
    }

    /// The recording's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Frames read so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The next payload, `Ok(None)` after the end marker, or what is wrong.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, RecordError> {
        if self.done {
            return Ok(None);
        }
        let path = || self.path.clone();
        let frame = self.frames + 1;
        let mut head = [0u8; 8];
        let n = read_full(&mut self.input, &mut head).map_err(|source| RecordError::Io {
            path: path(),
            source,
        })?;
        if n == 0 {
            return Err(RecordError::MissingEndMarker {
                path: path(),
                frames: self.frames,
            });
        }
        if n < 8 {
            return Err(RecordError::Truncated {
                path: path(),
                frame,
                offset: self.offset,
                needed: 8,
                available: n as u64,
            });
        }
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let crc = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        if len == END_MARKER {
            return self.end_marker(crc).map(|()| None);
        }
        if len > MAX_FRAME_LEN {
            return Err(RecordError::FrameTooLarge {
                path: path(),
                frame,
                offset: self.offset,
                len,
            });
        }
        // Read in bounded steps, so a corrupt length cannot make us allocate beyond what
        // the file holds.
        let mut payload = Vec::with_capacity((len as usize).min(1 << 20));
        let got = (&mut self.input)
            .take(u64::from(len))
            .read_to_end(&mut payload)
            .map_err(|source| RecordError::Io {
                path: path(),
                source,
            })?;
        if got < len as usize {
            return Err(RecordError::Truncated {
                path: path(),
                frame,
                offset: self.offset,
                needed: 8 + u64::from(len),
                available: 8 + got as u64,
            });
        }
        let actual = crc32fast::hash(&payload);
        if actual != crc {
            return Err(RecordError::CrcMismatch {
                path: path(),
                frame,
                offset: self.offset,
                len,
                expected: crc,
                actual,
            });
        }
        self.offset += 8 + u64::from(len);
        self.frames = frame;
        Ok(Some(Bytes::from(payload)))
    }

    fn end_marker(&mut self, crc: u32) -> Result<(), RecordError> {
        let mut count = [0u8; 8];
        let n = read_full(&mut self.input, &mut count).map_err(|source| RecordError::Io {
            path: self.path.clone(),
            source,
        })?;
        if n < 8 || crc32fast::hash(&count) != crc {
            return Err(RecordError::Truncated {
                path: self.path.clone(),
                frame: self.frames + 1,
                offset: self.offset,
                needed: 16,
                available: 8 + n as u64,
            });
        }
        let recorded = u64::from_be_bytes(count);
        if recorded != self.frames {
            return Err(RecordError::CountMismatch {
                path: self.path.clone(),
                recorded,
                read: self.frames,
            });
        }
        let extra = self.input.fill_buf().map(|b| b.len()).unwrap_or(0);
        if extra > 0 {
            return Err(RecordError::TrailingData {
                path: self.path.clone(),
                extra: extra as u64,
            });
        }
        self.done = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            pgsub_version: "0.1.0".into(),
            server_version: "15.18".into(),
            server_version_num: 150018,
            system_id: "7300000000000000001".into(),
            timeline: 1,
            slot: "pgsub".into(),
            start_lsn: "0/16B3748".into(),
            options: "(proto_version '3')".into(),
            recorded_at: "2026-11-26T00:00:00Z".into(),
            publications: vec!["pub1".into()],
        }
    }

    fn recording(frames: &[&[u8]]) -> Vec<u8> {
        let mut w = Writer::new(Vec::new(), "mem", &header()).unwrap();
        for f in frames {
            w.write_frame(f).unwrap();
        }
        w.finish().unwrap()
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Bytes>, RecordError> {
        let mut r = Reader::new(bytes, "test.pgrec")?;
        let mut out = Vec::new();
        while let Some(f) = r.next_frame()? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn a_header_written_before_publications_were_recorded_still_reads() {
        let mut json = serde_json::to_value(header()).unwrap();
        json.as_object_mut().unwrap().remove("publications");
        let h: Header = serde_json::from_value(json).unwrap();
        assert!(h.publications.is_empty());
        assert_eq!(h.slot, "pgsub");
    }

    #[test]
    fn frames_round_trip_with_header() {
        let bytes = recording(&[b"w-one", b"", b"k-three"]);
        let r = Reader::new(&bytes[..], "x").unwrap();
        assert_eq!(r.header(), &header());
        let frames = read_all(&bytes).unwrap();
        assert_eq!(frames, vec![&b"w-one"[..], b"", b"k-three"]);
    }

    #[test]
    fn cut_inside_a_frame_names_the_frame() {
        let bytes = recording(&[b"first", b"second frame"]);
        let header_len = bytes.len() - 16 - (8 + 5) - (8 + 12);
        let cut = &bytes[..header_len + 13 + 8 + 4];
        match read_all(cut).unwrap_err() {
            RecordError::Truncated {
                frame,
                needed,
                available,
                ..
            } => assert_eq!((frame, needed, available), (2, 20, 12)),
            e => panic!("{e}"),
        }
    }

    #[test]
    fn cut_at_a_frame_boundary_reports_the_missing_end_marker() {
        let bytes = recording(&[b"first"]);
        let cut = &bytes[..bytes.len() - 16];
        let err = read_all(cut).unwrap_err();
        assert!(
            matches!(err, RecordError::MissingEndMarker { frames: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("after frame 1"));
    }

    #[test]
    fn flipped_bit_is_caught_by_the_crc_and_named() {
        let mut bytes = recording(&[b"first", b"second"]);
        let pos = bytes.len() - 16 - 3;
        bytes[pos] ^= 0x10;
        let err = read_all(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                RecordError::CrcMismatch {
                    frame: 2,
                    len: 6,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn not_a_recording_and_wrong_version() {
        assert!(matches!(
            read_all(b"hello world, this is text").unwrap_err(),
            RecordError::NotARecording { .. }
        ));
        let mut bytes = recording(&[]);
        bytes[9] = 9;
        assert!(matches!(
            read_all(&bytes).unwrap_err(),
            RecordError::UnsupportedVersion { version: 9, .. }
        ));
    }

    #[test]
    fn damaged_header_is_detected() {
        let mut bytes = recording(&[]);
        bytes[20] ^= 1;
        assert!(matches!(
            read_all(&bytes).unwrap_err(),
            RecordError::BadHeader { .. }
        ));
    }

    #[test]
    fn huge_frame_length_is_refused() {
        let mut bytes = recording(&[b"abc"]);
        let pos = bytes.len() - 16 - 11;
        bytes[pos..pos + 4].copy_from_slice(&0x7fff_ffffu32.to_be_bytes());
        assert!(matches!(
            read_all(&bytes).unwrap_err(),
            RecordError::FrameTooLarge { frame: 1, .. }
        ));
    }

    #[test]
    fn end_marker_with_wrong_count_or_trailing_bytes() {
        let mut bytes = recording(&[b"a"]);
        let n = bytes.len();
        bytes[n - 8..].copy_from_slice(&5u64.to_be_bytes());
        let crc = crc32fast::hash(&5u64.to_be_bytes());
        bytes[n - 12..n - 8].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            read_all(&bytes).unwrap_err(),
            RecordError::CountMismatch {
                recorded: 5,
                read: 1,
                ..
            }
        ));
        let mut bytes = recording(&[b"a"]);
        bytes.push(0);
        assert!(matches!(
            read_all(&bytes).unwrap_err(),
            RecordError::TrailingData { .. }
        ));
    }
}
