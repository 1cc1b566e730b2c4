//! A recording read offline: every frame through a [`Session`], as a live stream would be,
//! the units it completes taken as applied at once (nothing waits on a destination; a
//! replay into one, `sync --input`, reads the frames itself and lets the sink say what is
//! durable).

use std::path::Path;

use crate::error::Result;
use crate::record::{self, FileReader};
use crate::stream::{Event, Session};

/// A recording and the session that reads it.
pub struct Offline {
    /// The recording.
    pub reader: FileReader,
    /// The session, started at the recording's start.
    pub session: Session,
}

impl Offline {
    /// Opens the recording at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let reader = record::open(path)?;
        let session = Session::new(reader.header().start());
        Ok(Offline { reader, session })
    }

    /// The event of the next frame, `None` at the end of the recording.
    pub fn next_event(&mut self) -> Result<Option<Event>> {
        let Some(payload) = self.reader.next_frame()? else {
            return Ok(None);
        };
        let wire_len = payload.len() + 5;
        let event = self.session.on_copy_data(payload, wire_len)?;
        if let Event::Message {
            unit_end: Some(end),
            ..
        } = &event
        {
            self.session.on_applied(*end)?;
        }
        Ok(Some(event))
    }
}
