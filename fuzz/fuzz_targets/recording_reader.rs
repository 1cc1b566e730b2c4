//! Fuzz target for recording files: the input is read as a whole file with
//! `record::Reader`, frame by frame until the end marker or the first error. Nothing may
//! panic or allocate beyond what the file holds; the frames read can never hold more
//! bytes than the file; after the end marker the reader keeps answering "no more"; and a
//! file read to its end is written again with `record::Writer` and read back to the same
//! header and frames.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use pgsub::record::{Reader, Writer};

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = Reader::new(data, "fuzz.pgrec") else {
        return;
    };
    let header = reader.header().clone();
    let _ = header.start();
    let mut frames: Vec<Bytes> = Vec::new();
    let mut bytes = 0usize;
    let complete = loop {
        match reader.next_frame() {
            Ok(Some(p)) => {
                bytes += 8 + p.len();
                assert!(bytes <= data.len(), "frames hold more than the file");
                frames.push(p);
            }
            Ok(None) => break true,
            Err(e) => {
                let _ = e.to_string();
                let _ = e.is_unusable_file();
                break false;
            }
        }
    };
    assert_eq!(reader.frames(), frames.len() as u64);
    if complete {
        assert!(matches!(reader.next_frame(), Ok(None)));
        let mut w = Writer::new(Vec::new(), "again.pgrec", &header).expect("writes to memory");
        for f in &frames {
            w.write_frame(f).expect("writes to memory");
        }
        let again = w.finish().expect("writes to memory");
        let mut r = Reader::new(&again[..], "again.pgrec").expect("reads what was written");
        assert_eq!(r.header(), &header);
        for f in &frames {
            assert_eq!(r.next_frame().expect("reads").as_ref(), Some(f));
        }
        assert!(matches!(r.next_frame(), Ok(None)));
    }
});
