//! `sync --binary auto|on|off`: whether the stream carries column values in their types'
//! binary format (pgoutput's `binary` option, PostgreSQL 14+), which the destination
//! then receives as they are, with no text to write on the source nor to parse on the
//! destination.
//!
//! pgoutput's option is for the whole stream: every column of every published table
//! arrives in binary, so binary is chosen only when every column the destination is
//! written can read the source's binary form as its own ([`values::binary_refusal`]:
//! the same built-in scalar type on both sides, with binary input and output). `auto`
//! chooses binary exactly then, and text otherwise; `on` refuses to start (exit 2) naming
//! the first column that cannot. The same rule is checked again for every Relation
//! message while streaming (a column whose type changed, a table that joined): under
//! `auto` the run then starts again with a text stream from the stored progress — exact,
//! since nothing of the transaction that met it was committed — and stays text for the
//! rest of the process.
//!
//! The initial copy already uses binary COPY per table where every column is of the same
//! built-in type on both sides; `off` makes it text too.

use crate::apply::table::DestTable;
use crate::apply::values::{self, ValueFormat};
use crate::error::{Error, Result};
use crate::source::tables::PublishedTable;

/// `--binary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BinaryMode {
    /// Binary where every published column allows it, else text.
    #[default]
    Auto,
    /// Binary, or exit 2 naming the column that cannot.
    On,
    /// Text, for the stream and the copy.
    Off,
}

/// The first published column of `tables` that cannot travel in binary into the
/// destination, and why; `None` when every one can. `dests`: each table as the
/// destination's catalog has it ([`super::schema::prepare`] read them), `None` for one
/// missing there, which is passed over (reported where its rows are first written).
pub fn first_refused(
    tables: &[PublishedTable],
    dests: &[Option<DestTable>],
) -> Option<(String, String)> {
    for (t, d) in tables.iter().zip(dests) {
        let Some(d) = d else {
            continue;
        };
        for c in &t.columns {
            let Some(dc) = d.column(&c.name) else {
                continue;
            };
            if dc.generated {
                continue; // the destination computes it: no value of it is written
            }
            if let Some(why) = values::binary_refusal(c.type_oid, dc) {
                return Some((
                    format!("\"{}\" of table {}", c.name, t.qualified_name()),
                    why,
                ));
            }
        }
    }
    None
}

/// The stream's format under `mode` for a source of `server_version_num` and these
/// published `tables` (`dests`: as the destination has them); `text_only` once a run met a
/// column that could not (`auto`).
pub fn choose(
    mode: BinaryMode,
    text_only: bool,
    server_version_num: u32,
    tables: &[PublishedTable],
    dests: &[Option<DestTable>],
) -> Result<ValueFormat> {
    if mode == BinaryMode::Off || (mode == BinaryMode::Auto && text_only) {
        return Ok(ValueFormat::Text);
    }
    if server_version_num < 140000 {
        return match mode {
            BinaryMode::On => Err(Error::Config(format!(
                "--binary on needs PostgreSQL 14 or newer on the source, which runs {}; use --binary auto (text on older sources) or off",
                server_version_num / 10000
            ))),
            _ => Ok(ValueFormat::Text),
        };
    }
    match first_refused(tables, dests) {
        None => Ok(ValueFormat::Binary),
        Some((column, why)) if mode == BinaryMode::On => Err(Error::BinaryRefused { column, why }),
        Some((column, why)) => {
            tracing::info!(%column, "values stream in text, not binary: column {column} cannot be applied in binary ({why})");
            Ok(ValueFormat::Text)
        }
    }
}
