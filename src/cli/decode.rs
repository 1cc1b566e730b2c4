//! `pgsub decode`: every decoded message as one JSON line on stdout, from a live source or
//! a recording. Live, a transaction is acknowledged once its lines are written and
//! stdout is flushed (unless `--no-ack`).

use std::io::{BufWriter, Stdout, Write};

use bytes::Bytes;

use super::args::{Cli, DecodeArgs};
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::replicate::run::{Sink, Until};
use crate::stream::{Event, Session};

/// Writes JSON lines.
pub(crate) struct JsonLines {
    out: BufWriter<Stdout>,
}

impl JsonLines {
    pub(crate) fn new() -> Self {
        JsonLines {
            out: BufWriter::with_capacity(256 * 1024, std::io::stdout()),
        }
    }

    fn write(&mut self, session: &Session, event: &Event) -> Result<()> {
        if let Event::Message { header, msg, .. } = event {
            let rels = session.relations();
            // Row messages straight from the tuple; the others through their value.
            if !crate::output::json::write_row_message(&mut self.out, header, msg, rels)
                .map_err(|e| Error::io("writing to stdout", e))?
            {
                let v = crate::output::json::message(header, msg, rels);
                serde_json::to_writer(&mut self.out, &v)
                    .map_err(|e| Error::io("writing to stdout", e.into()))?;
            }
            self.out
                .write_all(b"\n")
                .map_err(|e| Error::io("writing to stdout", e))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .map_err(|e| Error::io("flushing stdout", e))
    }
}

impl Sink for JsonLines {
    async fn on_event(&mut self, session: &Session, event: &Event, _payload: &Bytes) -> Result<()> {
        self.write(session, event)
    }

    async fn durable(&mut self, processed: Lsn) -> Result<Lsn> {
        self.flush()?;
        Ok(processed)
    }

    async fn make_durable(&mut self, processed: Lsn) -> Result<Lsn> {
        self.durable(processed).await
    }
}

pub(crate) async fn run(cli: &Cli, args: &DecodeArgs) -> Result<()> {
    if let Some(path) = &args.input {
        return decode_file(cli, path, args.stream.until);
    }
    if let Some(addr) = &args.metrics_addr {
        crate::output::metrics::serve(addr).await?;
    }
    let mut started = super::start_stream(&args.stream).await?;
    let mut sink = JsonLines::new();
    let end = started
        .stream_into(&mut sink, super::shutdown_signal())
        .await?;
    sink.flush()?;
    crate::output::summary::print(
        "decode",
        &super::output(cli),
        Some(&end as &dyn std::fmt::Display),
        &started.session,
    )
}

/// Decodes a recording. `--until LSN` stops after the unit that reaches it;
/// `--until caught-up` means the end of the recording.
fn decode_file(cli: &Cli, path: &std::path::Path, until: Option<Until>) -> Result<()> {
    let mut rec = crate::replicate::offline::Offline::open(path)?;
    let mut out = JsonLines::new();
    let target = match until {
        Some(Until::Lsn(l)) => Some(l),
        _ => None,
    };
    let result = (|| -> Result<()> {
        while let Some(event) = rec.next_event()? {
            out.write(&rec.session, &event)?;
            if target.is_some_and(|t| rec.session.positions().acknowledgeable() >= t) {
                break;
            }
        }
        Ok(())
    })();
    out.flush()?;
    result?;
    rec.session.accounting().check()?;
    crate::output::summary::print("decode", &super::output(cli), None, &rec.session)
}
