//! `pgsub verify`: compares the published (or named) tables of source and destination and
//! exits 3 when they differ.

use std::io::Write;
use std::time::Duration;

use serde_json::json;

use super::args::{Cli, Format, VerifyArgs};
use crate::error::{Error, Result};
use crate::source::{self, tables};
use crate::verify::{self, Options};

pub(crate) async fn run(cli: &Cli, args: &VerifyArgs) -> Result<()> {
    if args.publications.is_empty() && args.tables.is_empty() {
        return Err(Error::Usage(
            "nothing to compare: pass --publication NAME (its tables) or --table schema.table (repeatable)".into(),
        ));
    }
    let src = super::resolve_source(args.source.conninfo.as_deref())?;
    let dst = super::resolve_dest(args.dest.conninfo.as_deref())?;
    let mut conn = source::connect(&src, false).await?;
    let mut list = Vec::new();
    if !args.publications.is_empty() {
        source::check_publications(&mut conn, &args.publications).await?;
        list = tables::published_tables(&mut conn, &args.publications).await?;
    }
    for t in tables::tables_by_name(&mut conn, &args.tables).await? {
        if !list.iter().any(|x| x.relid == t.relid) {
            list.push(t);
        }
    }
    // The source's identity picks pgsub's progress rows for this source on the destination.
    let system_id = source::system_identifier(&mut conn).await;
    conn.close().await;
    if list.is_empty() {
        return Err(Error::Config(format!(
            "the publication(s) {} publish no tables: nothing to compare",
            args.publications.join(", ")
        )));
    }
    let opts = Options {
        jobs: args.jobs,
        show: args.show,
        settle: Duration::from_secs(args.settle),
    };
    let report = verify::verify(&src, &dst, system_id.as_deref(), list, &opts).await?;
    let mut out = std::io::stdout().lock();
    let written = match cli.format {
        Format::Json => {
            let mut r = Ok(());
            for t in &report.tables {
                let mut v = serde_json::to_value(t).unwrap_or_default();
                v["kind"] = json!("table");
                v["equal"] = json!(t.is_equal());
                r = r.and(writeln!(out, "{v}"));
            }
            r.and(writeln!(
                out,
                "{}",
                json!({
                    "kind": "summary",
                    "equal": report.is_equal(),
                    "tables": report.tables.len(),
                    "differing_tables": report.differing(),
                    "source_lsn": report.source_lsn,
                    "positions": report.positions,
                })
            ))
        }
        Format::Text => {
            let mut r = write!(out, "{}", report.header());
            for t in &report.tables {
                r = r.and(write!(out, "{}", t.text()));
            }
            r
        }
    };
    written.map_err(|e| Error::io("writing the report to stdout", e))?;
    if report.is_equal() {
        if cli.format == Format::Text {
            let _ = writeln!(out, "equal: {} table(s)", report.tables.len());
        }
        Ok(())
    } else {
        Err(Error::Differences(format!(
            "{} of {} table(s) differ between source and destination (see the report on stdout)",
            report.differing(),
            report.tables.len()
        )))
    }
}
