//! Streamed transactions (`--streaming on|parallel`) kept on disk until they end.
//!
//! With streaming, the source sends a large transaction in blocks while it is still in
//! progress, interleaved with other transactions, and only later says how it ended:
//! Stream Commit (apply it, in commit order), Stream Abort of the transaction (drop it), or
//! Stream Abort of one of its subtransactions (a rolled-back savepoint: drop that part).
//! Memory stays bounded however large the transaction: each block's messages are appended
//! to a file of their own transaction, and read back one at a time at commit.
//!
//! ```text
//!  spool file (one per streamed top-level xid)
//!  record := length u32 · CRC-32 of body u32 · body
//!  body   := subxid u32 · pgoutput message (as received, with its xid prefix)
//! ```
//!
//! The CRC catches a damaged file before anything from it reaches the destination. Files
//! need no fsync: after a crash the source sends an unfinished transaction again from its
//! start, so every file is removed when its transaction ends, and the whole directory when
//! the run ends.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use bytes::Bytes;

use crate::error::{Error, Result};

/// Where one streamed transaction is kept.
#[derive(Debug)]
struct Entry {
    path: PathBuf,
    /// Aborted subtransactions: their changes are skipped when read back.
    aborted: HashSet<u32>,
    records: u64,
    bytes: u64,
}

/// The spool directory and the streamed transactions in it.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    created: bool,
    entries: HashMap<u32, Entry>,
    /// The transaction whose block is open, with its file.
    writing: Option<(u32, BufWriter<File>)>,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what, e)
}

/// The name of the spool directory of process `pid` (under `--spool-dir`, or the system's
/// temporary directory).
pub fn dir_name(pid: u32) -> String {
    format!("pgsub-spool-{pid}")
}

/// Removes, under `parent`, the spool directories of pgsub processes that are no longer
/// running (a pgsub killed while it held streamed transactions leaves its directory
/// behind; the source sends those transactions again). Directories of running processes
/// are left alone, and so is everything whose name is not a spool directory's. Returns
/// how many were removed; failures are logged, not fatal.
pub fn remove_leftovers(parent: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("pgsub-spool-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || process_running(pid) {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => {
                tracing::info!(dir = %entry.path().display(), "removed the spool directory of a pgsub that is no longer running");
                removed += 1;
            }
            Err(e) => {
                tracing::warn!(dir = %entry.path().display(), "could not remove the spool directory of a pgsub that is no longer running: {e}");
            }
        }
    }
    removed
}

/// Whether process `pid` exists (on Linux, by `/proc`; elsewhere assumed running, so that
/// nothing of a live process is ever removed).
fn process_running(pid: u32) -> bool {
    let proc = std::path::Path::new("/proc");
    if !proc.join("self").exists() {
        return true;
    }
    proc.join(pid.to_string()).exists()
}

impl Spool {
    /// A spool in `dir` (created when first needed, removed on drop).
    pub fn new(dir: PathBuf) -> Self {
        Spool {
            dir,
            created: false,
            entries: HashMap::new(),
            writing: None,
        }
    }

    /// Streamed transactions being kept.
    #[cfg(test)]
    pub fn open_transactions(&self) -> usize {
        self.entries.len()
    }

    /// Stream Start: opens `xid`'s file for appending (a new, empty one for its first
    /// block).
    pub fn start(&mut self, xid: u32, first_segment: bool) -> Result<()> {
        self.stop()?;
        if !self.created {
            std::fs::create_dir_all(&self.dir).map_err(io(format!(
                "creating the spool directory {} (pass --spool-dir to put it elsewhere)",
                self.dir.display()
            )))?;
            self.created = true;
        }
        let path = self.dir.join(format!("{xid}.spool"));
        if first_segment || !self.entries.contains_key(&xid) {
            self.entries.insert(
                xid,
                Entry {
                    path: path.clone(),
                    aborted: HashSet::new(),
                    records: 0,
                    bytes: 0,
                },
            );
        }
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(!first_segment)
            .truncate(first_segment)
            .open(&path)
            .map_err(io(format!("opening the spool file {}", path.display())))?;
        self.writing = Some((xid, BufWriter::with_capacity(256 * 1024, file)));
        Ok(())
    }

    /// Appends one message of the open block; `subxid` is the (sub)transaction that made it.
    pub fn append(&mut self, subxid: u32, message: &[u8]) -> Result<()> {
        let Some((xid, w)) = self.writing.as_mut() else {
            return Err(Error::Definite(
                "a streamed change arrived outside a stream block".into(),
            ));
        };
        let mut crc = crc32fast::Hasher::new();
        crc.update(&subxid.to_be_bytes());
        crc.update(message);
        let len = u32::try_from(message.len() + 4).map_err(|_| {
            Error::Definite(format!(
                "a streamed message of {} bytes is too large to spool",
                message.len()
            ))
        })?;
        let entry = self
            .entries
            .get_mut(xid)
            .expect("an entry for the open block");
        let what = || format!("writing the spool file {}", entry.path.display());
        w.write_all(&len.to_be_bytes())
            .and_then(|()| w.write_all(&crc.finalize().to_be_bytes()))
            .and_then(|()| w.write_all(&subxid.to_be_bytes()))
            .and_then(|()| w.write_all(message))
            .map_err(|e| Error::io(what(), e))?;
        entry.records += 1;
        entry.bytes += u64::from(len) + 8;
        Ok(())
    }

    /// Stream Stop: writes the block out and closes the file.
    pub fn stop(&mut self) -> Result<()> {
        if let Some((xid, mut w)) = self.writing.take() {
            w.flush().map_err(io(format!(
                "writing the spool file of transaction {xid} in {}",
                self.dir.display()
            )))?;
        }
        Ok(())
    }

    /// Stream Abort: drops the transaction, or marks a subtransaction aborted.
    pub fn abort(&mut self, xid: u32, subxid: u32) -> Result<()> {
        if xid == subxid {
            if let Some(e) = self.entries.remove(&xid) {
                let _ = std::fs::remove_file(&e.path);
            }
        } else if let Some(e) = self.entries.get_mut(&xid) {
            e.aborted.insert(subxid);
        }
        Ok(())
    }

    /// Stream Commit: the transaction's messages to read back, without those of aborted
    /// subtransactions (descriptions — Relation and Type — are always kept).
    pub fn take(&mut self, xid: u32) -> Result<Option<SpoolReader>> {
        if self.writing.as_ref().is_some_and(|(x, _)| *x == xid) {
            self.stop()?;
        }
        let Some(e) = self.entries.remove(&xid) else {
            return Ok(None);
        };
        let file = File::open(&e.path)
            .map_err(io(format!("opening the spool file {}", e.path.display())))?;
        Ok(Some(SpoolReader {
            reader: BufReader::with_capacity(256 * 1024, file),
            path: e.path,
            aborted: e.aborted,
            offset: 0,
            records: e.records,
            bytes: e.bytes,
        }))
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.writing = None;
        if self.created {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A committed streamed transaction, read back message by message.
#[derive(Debug)]
pub struct SpoolReader {
    reader: BufReader<File>,
    path: PathBuf,
    aborted: HashSet<u32>,
    offset: u64,
    /// Messages written.
    pub records: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// pgoutput tags of descriptions, which are never dropped with a subtransaction.
fn is_description(message: &[u8]) -> bool {
    matches!(message.first(), Some(b'R' | b'Y'))
}

impl SpoolReader {
    /// The next message to apply, or `None` at the end.
    pub fn next_message(&mut self) -> Result<Option<Bytes>> {
        loop {
            let mut head = [0u8; 8];
            match self.reader.read_exact(&mut head) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => {
                    return Err(Error::io(
                        format!("reading the spool file {}", self.path.display()),
                        e,
                    ));
                }
            }
            let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
            let crc = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
            let damaged = |why: &str| {
                Error::Definite(format!(
                    "the spool file {} is damaged at offset {} ({why}); nothing of that transaction was applied: restart pgsub and the source sends it again",
                    self.path.display(),
                    self.offset
                ))
            };
            if len < 4 {
                return Err(damaged("a record shorter than its header"));
            }
            let mut body = vec![0u8; len];
            self.reader
                .read_exact(&mut body)
                .map_err(|_| damaged("a record cut short"))?;
            if crc32fast::hash(&body) != crc {
                return Err(damaged("CRC mismatch"));
            }
            self.offset += 8 + len as u64;
            let subxid = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
            let body = Bytes::from(body).slice(4..);
            if self.aborted.contains(&subxid) && !is_description(&body) {
                continue;
            }
            return Ok(Some(body));
        }
    }
}

impl Drop for SpoolReader {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("pgsub-spool-test-{}-{name}", std::process::id()))
    }

    fn read_all(r: &mut SpoolReader) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(m) = r.next_message().unwrap() {
            out.push(m.to_vec());
        }
        out
    }

    #[test]
    fn blocks_of_interleaved_transactions_read_back_in_order() {
        let mut s = Spool::new(dir("order"));
        s.start(7, true).unwrap();
        s.append(7, b"I1").unwrap();
        s.stop().unwrap();
        s.start(8, true).unwrap();
        s.append(8, b"I8").unwrap();
        s.stop().unwrap();
        s.start(7, false).unwrap();
        s.append(7, b"I2").unwrap();
        s.stop().unwrap();
        let mut r = s.take(7).unwrap().unwrap();
        assert_eq!(read_all(&mut r), [b"I1".to_vec(), b"I2".to_vec()]);
        assert_eq!(s.open_transactions(), 1);
        let path = r.path.clone();
        drop(r);
        assert!(!path.exists(), "read back, the file is removed");
    }

    #[test]
    fn aborted_subtransaction_changes_are_skipped_but_descriptions_kept() {
        let mut s = Spool::new(dir("subxact"));
        s.start(10, true).unwrap();
        s.append(10, b"Ikeep").unwrap();
        s.append(11, b"Rrelation").unwrap();
        s.append(11, b"Idrop").unwrap();
        s.append(12, b"Ireleased").unwrap();
        s.stop().unwrap();
        s.abort(10, 11).unwrap();
        let mut r = s.take(10).unwrap().unwrap();
        assert_eq!(
            read_all(&mut r),
            [
                b"Ikeep".to_vec(),
                b"Rrelation".to_vec(),
                b"Ireleased".to_vec()
            ]
        );
    }

    #[test]
    fn aborted_transaction_leaves_nothing() {
        let d = dir("abort");
        let mut s = Spool::new(d.clone());
        s.start(20, true).unwrap();
        s.append(20, b"I").unwrap();
        s.stop().unwrap();
        s.abort(20, 20).unwrap();
        assert!(s.take(20).unwrap().is_none());
        assert!(!d.join("20.spool").exists());
        drop(s);
        assert!(!d.exists(), "the directory goes with the spool");
    }

    #[test]
    fn a_flipped_byte_is_reported_not_applied() {
        let d = dir("crc");
        let mut s = Spool::new(d.clone());
        s.start(30, true).unwrap();
        s.append(30, b"Ivalue").unwrap();
        s.stop().unwrap();
        let path = d.join("30.spool");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&path, bytes).unwrap();
        let mut r = s.take(30).unwrap().unwrap();
        let err = r.next_message().unwrap_err().to_string();
        assert!(err.contains("damaged at offset 0 (CRC mismatch)"), "{err}");
    }
}
