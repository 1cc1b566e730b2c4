//! `pgsub sequences`: sets the destination's sequences to the source's values at cutover.

use std::io::Write;

use serde_json::json;

use super::args::{Cli, Format, SequencesArgs};
use crate::error::{Error, Result};
use crate::sequences::{self, Action};
use crate::source::{self, tables};

pub(crate) async fn run(cli: &Cli, args: &SequencesArgs) -> Result<()> {
    if args.publications.is_empty() && args.schemas.is_empty() {
        return Err(Error::Usage(
            "which sequences? pass --publication NAME (sequences owned by its tables) or --schema NAME (every sequence in it)".into(),
        ));
    }
    let src = super::resolve_source(args.source.conninfo.as_deref())?;
    let dst = super::resolve_dest(args.dest.conninfo.as_deref())?;
    let mut conn = source::connect(&src, false).await?;
    let mut relids = Vec::new();
    if !args.publications.is_empty() {
        source::check_publications(&mut conn, &args.publications).await?;
        relids = tables::published_tables(&mut conn, &args.publications)
            .await?
            .iter()
            .map(|t| t.relid)
            .collect();
    }
    let found = sequences::source_sequences(&mut conn, &relids, &args.schemas).await?;
    conn.close().await;
    let client = crate::pg::client::connect_client(&dst, "destination").await?;
    let done = sequences::carry(&client, found, args.dry_run).await?;

    let mut out = std::io::stdout().lock();
    let written = match cli.format {
        Format::Json => done.iter().try_for_each(|s| {
            let mut v = serde_json::to_value(s).unwrap_or_default();
            v["kind"] = json!("sequence");
            v["dry_run"] = json!(args.dry_run);
            writeln!(out, "{v}")
        }),
        Format::Text => {
            if done.is_empty() {
                writeln!(out, "no sequences found")
            } else {
                done.iter().try_for_each(|s| {
                    let v = |x: Option<i64>| x.map_or_else(|| "unused".to_owned(), |x| x.to_string());
                    let what = match s.action {
                        Action::Set if args.dry_run => format!("would be set to {}", v(s.source_value)),
                        Action::Set => format!("set to {}", v(s.source_value)),
                        Action::Unchanged => "already at the source's value".to_owned(),
                        Action::WouldGoBackwards => format!(
                            "NOT set: the destination is at {}, ahead of the source's {}; moving it would go backwards",
                            v(s.dest_value),
                            v(s.source_value)
                        ),
                        Action::UnusedOnSource => "never used on the source: left alone".to_owned(),
                        Action::UnreadableOnSource => "NOT set: the source role may not read it (GRANT SELECT ON SEQUENCE …)".to_owned(),
                        Action::MissingOnDestination => "NOT set: no sequence of that name on the destination".to_owned(),
                    };
                    let owner = s.owner.as_deref().map(|o| format!(" (owned by {o})")).unwrap_or_default();
                    writeln!(out, "{}{owner}: {what} (destination was at {})", s.qualified_name(), v(s.dest_value))
                })
            }
        }
    };
    written.map_err(|e| Error::io("writing to stdout", e))?;
    let behind = done
        .iter()
        .filter(|s| s.action == Action::WouldGoBackwards)
        .count();
    if behind > 0 {
        tracing::warn!(
            "{behind} destination sequence(s) are ahead of the source and were left alone"
        );
    }
    Ok(())
}
