//! `pgsub record`: the raw replication stream into a recording file. A transaction is
//! acknowledged once the file holding it is synced to disk (unless `--no-ack`), so an
//! interrupted recording can be resumed from the slot without losing anything.

use std::fs::File;
use std::io::BufWriter;

use bytes::Bytes;

use super::args::{Cli, RecordArgs};
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::protocol::time::PgTimestamp;
use crate::record::{self, Header, Writer};
use crate::replicate::run::Sink;
use crate::stream::{Event, Session};

struct RecordSink {
    writer: Writer<BufWriter<File>>,
}

impl Sink for RecordSink {
    async fn on_event(
        &mut self,
        _session: &Session,
        _event: &Event,
        payload: &Bytes,
    ) -> Result<()> {
        Ok(self.writer.write_frame(payload)?)
    }

    async fn durable(&mut self, processed: Lsn) -> Result<Lsn> {
        self.writer.flush()?;
        self.writer
            .get_mut()
            .get_ref()
            .sync_data()
            .map_err(|e| Error::io("syncing the recording to disk", e))?;
        Ok(processed)
    }

    async fn make_durable(&mut self, processed: Lsn) -> Result<Lsn> {
        self.durable(processed).await
    }
}

pub(crate) async fn run(cli: &Cli, args: &RecordArgs) -> Result<()> {
    let path = args.output.display().to_string();
    // Open the file before touching the source, so a bad path costs nothing.
    let file = File::create(&args.output).map_err(|source| record::RecordError::Io {
        path: path.clone(),
        source,
    })?;
    let mut started = super::start_stream(&args.stream).await?;
    // Each acknowledgement costs an fsync of the recording: once a second is plenty.
    started.run.progress_gap = std::time::Duration::from_secs(1);
    let header = Header {
        pgsub_version: env!("CARGO_PKG_VERSION").into(),
        server_version: started
            .conn
            .parameter("server_version")
            .unwrap_or_default()
            .to_owned(),
        server_version_num: started.conn.server_version_num(),
        system_id: started.identify.systemid.clone(),
        timeline: started.identify.timeline,
        slot: started.run.slot.clone(),
        start_lsn: started.start.to_string(),
        options: started.options.to_sql(),
        recorded_at: PgTimestamp::now().to_string(),
        publications: started.options.publication_names.clone(),
    };
    let writer = Writer::new(BufWriter::with_capacity(1 << 20, file), &path, &header)?;
    let mut sink = RecordSink { writer };
    let end = started
        .stream_into(&mut sink, super::shutdown_signal())
        .await?;
    let frames = sink.writer.frames();
    let file = sink.writer.finish()?;
    file.get_ref()
        .sync_all()
        .map_err(|e| Error::io("syncing the recording to disk", e))?;
    tracing::info!(path = %path, frames, "recording complete");
    crate::output::summary::print(
        "record",
        &super::output(cli),
        Some(&end as &dyn std::fmt::Display),
        &started.session,
    )
}
