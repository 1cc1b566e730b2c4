//! Builds the seed corpora of the fuzz targets in `fuzz/corpus/<target>/` from the
//! recordings in `proto-fixtures/` (when there are any) and from hand-written samples of
//! every message kind, so fuzzing starts from real server traffic rather than from
//! nothing. Run through `fuzz/seed.sh`; `--fixtures DIR` and `--out DIR` override the
//! defaults (`../proto-fixtures` and `corpus` beside this crate). Seed files are named
//! by a hash of their content, so running it again adds nothing twice.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use pgsub::protocol::frame::write_copy_data;
use pgsub::protocol::replication::XLOG_DATA_HEADER_LEN;
use pgsub_fuzz::*;

/// Largest seed made from recordings; bigger streams are cut into pieces of about this
/// size (libFuzzer's default `-max_len` follows the largest seed).
const MAX_SEED: usize = 4 * 1024;

/// Single-payload seeds kept per recording and message type: a streamed transaction
/// holds thousands of Inserts that differ only in their numbers.
const PER_KIND: usize = 8;

/// The payloads of a recording worth a seed of their own: the first few of each kind
/// (keepalive, or XLogData by pgoutput tag and length class).
fn representative(payloads: &[Bytes]) -> Vec<&Bytes> {
    let mut seen = std::collections::HashMap::new();
    payloads
        .iter()
        .filter(|p| {
            let kind = (
                p.first().copied(),
                p.get(XLOG_DATA_HEADER_LEN).copied(),
                p.len().ilog2(),
            );
            let n = seen.entry(kind).or_insert(0usize);
            *n += 1;
            *n <= PER_KIND
        })
        .collect()
}

struct Corpus {
    dir: PathBuf,
    written: usize,
}

impl Corpus {
    fn new(out: &Path, target: &str) -> Corpus {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        Corpus { dir, written: 0 }
    }

    fn add(&mut self, seed: &[u8]) {
        let name = format!("{:016x}", Rng::from_input(seed).next_u64());
        let path = self.dir.join(name);
        if !path.exists() {
            std::fs::write(&path, seed)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            self.written += 1;
        }
    }

    /// Adds `items` joined with [`SEP`], in runs of at most [`MAX_SEED`] bytes.
    fn add_runs(&mut self, items: &[Bytes]) {
        let mut run: Vec<&Bytes> = Vec::new();
        let mut size = 0;
        for item in items {
            if !run.is_empty() && size + item.len() > MAX_SEED {
                self.add(&join(&run));
                run.clear();
                size = 0;
            }
            size += item.len() + SEP.len();
            run.push(item);
        }
        if !run.is_empty() {
            self.add(&join(&run));
        }
    }

    /// Adds the concatenation of `items`, in runs of at most [`MAX_SEED`] bytes.
    fn add_concatenated(&mut self, items: &[Vec<u8>]) {
        let mut run = Vec::new();
        for item in items {
            if !run.is_empty() && run.len() + item.len() > MAX_SEED {
                self.add(&run);
                run.clear();
            }
            run.extend_from_slice(item);
        }
        if !run.is_empty() {
            self.add(&run);
        }
    }
}

fn copy_data_frame(payload: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    write_copy_data(payload, &mut b);
    b.to_vec()
}

fn main() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut fixtures = here.join("..").join("proto-fixtures");
    let mut out = here.join("corpus");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--fixtures", Some(v)) => fixtures = PathBuf::from(v),
            ("--out", Some(v)) => out = PathBuf::from(v),
            _ => {
                eprintln!("usage: seed [--fixtures DIR] [--out DIR]");
                std::process::exit(2);
            }
        }
    }

    let mut frame_codec = Corpus::new(&out, "frame_codec");
    let mut decoder = Corpus::new(&out, "pgoutput_decoder");
    let mut session = Corpus::new(&out, "session");
    let mut conninfo = Corpus::new(&out, "conninfo");
    let mut reader = Corpus::new(&out, "recording_reader");

    // Hand-written seeds: every pgoutput kind, a whole valid session, every backend
    // message type, connection strings, a small recording.
    let samples = sample_messages();
    let mut in_block = vec![encoded(&pgsub::pgoutput::PgOutput::StreamStart(
        pgsub::pgoutput::StreamStart {
            xid: 801,
            first_segment: 1,
        },
    ))];
    let mut outside = Vec::new();
    for (in_stream, msg) in &samples {
        let bytes = encoded(msg);
        if *in_stream {
            in_block.push(bytes);
        } else {
            decoder.add(&bytes);
            outside.push(bytes);
        }
    }
    decoder.add(&join(&in_block));
    decoder.add(&join(&outside));
    let sample = sample_session();
    session.add(&join(&sample));
    for p in &sample {
        session.add(p);
    }
    decoder.add(&join(
        &sample
            .iter()
            .filter(|p| p.first() == Some(&b'w'))
            .map(|p| p.slice(XLOG_DATA_HEADER_LEN..))
            .collect::<Vec<_>>(),
    ));
    let backend = sample_backend_frames();
    for f in &backend {
        frame_codec.add(f);
    }
    frame_codec.add(&backend.concat());
    for c in sample_conninfos() {
        conninfo.add(c.as_bytes());
    }
    let rec = sample_recording(&sample);
    reader.add(&rec);
    reader.add(&rec[..rec.len() - 16]);
    reader.add(&sample_recording(&[]));

    // Seeds from the recordings.
    let recs = recordings(&fixtures);
    let mut payloads_total = 0;
    for r in &recs {
        payloads_total += r.payloads.len();
        if r.raw.len() <= 4 * MAX_SEED {
            reader.add(&r.raw);
        } else {
            // Too big to fuzz whole: its start, cut off inside a frame.
            reader.add(&r.raw[..4 * MAX_SEED]);
        }
        let frames: Vec<Vec<u8>> = r.payloads.iter().map(|p| copy_data_frame(p)).collect();
        frame_codec.add_concatenated(&frames);
        session.add_runs(&r.payloads);
        let body = |p: &Bytes| {
            (p.first() == Some(&b'w') && p.len() > XLOG_DATA_HEADER_LEN)
                .then(|| p.slice(XLOG_DATA_HEADER_LEN..))
        };
        let bodies: Vec<Bytes> = r.payloads.iter().filter_map(body).collect();
        decoder.add_runs(&bodies);
        for p in representative(&r.payloads) {
            frame_codec.add(&copy_data_frame(p));
            session.add(p);
            if let Some(b) = body(p) {
                decoder.add(&b);
            }
        }
    }

    println!(
        "{} recording(s) with {payloads_total} payload(s) in {}",
        recs.len(),
        fixtures.display()
    );
    for c in [&frame_codec, &decoder, &session, &conninfo, &reader] {
        println!("{}: {} new seed(s)", c.dir.display(), c.written);
    }
}
