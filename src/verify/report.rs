//! What `verify` reports, per table and overall, as text for people and JSON for machines.

use serde::Serialize;

use super::merge::DiffKind;
use super::query::TableQuery;
use crate::lsn::Lsn;

/// A position one side was read at.
#[derive(Debug, Clone, Serialize)]
pub struct Position {
    /// `source` or `destination`.
    pub side: &'static str,
    /// `pgsub progress` or `native subscription`.
    pub what: String,
    /// Subscription name.
    pub name: String,
    /// Applied position (`None`: the role may not read it).
    pub lsn: Option<Lsn>,
}

/// One differing key as shown.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Missing, extra or different.
    pub kind: DiffKind,
    /// Key values (`None` for a table compared as a multiset).
    pub key: Option<Vec<String>>,
    /// For a different row: the columns whose values differ.
    pub columns: Vec<String>,
    /// For a multiset: the row.
    pub row: Option<Vec<Option<String>>>,
}

/// The comparison of one table.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    /// `schema.table`.
    pub table: String,
    /// Key columns; `None` when compared as a multiset (no usable key).
    pub key: Option<Vec<String>>,
    /// Rows read on the source (in its snapshot, within the row filter).
    pub source_rows: u64,
    /// Rows read on the destination.
    pub dest_rows: u64,
    /// Rows only on the source.
    pub missing: u64,
    /// Rows only on the destination.
    pub extra: u64,
    /// Rows on both with different values.
    pub different: u64,
    /// Differences beyond the number held for re-checking (not re-checked, not shown).
    pub untracked: u64,
    /// Keys that differed when first read and agreed on a re-check (rows in flight).
    pub settled: u64,
    /// Differences confirmed without waiting: the destination held everything the source
    /// had when they were re-checked (its feeding slots had confirmed that far, or
    /// nothing streams into it).
    pub confirmed: u64,
    /// Up to `--show` differing keys of each kind.
    pub samples: Vec<Sample>,
    /// Why the table could not be compared (missing on the destination …).
    pub error: Option<String>,
    /// The table's columns, for showing keys.
    #[serde(skip)]
    key_names: Vec<String>,
}

impl TableReport {
    pub(super) fn new(q: &TableQuery) -> Self {
        TableReport {
            table: q.name.clone(),
            key: (!q.is_multiset()).then(|| q.key_names.clone()),
            source_rows: 0,
            dest_rows: 0,
            missing: 0,
            extra: 0,
            different: 0,
            untracked: 0,
            settled: 0,
            confirmed: 0,
            samples: Vec::new(),
            error: None,
            key_names: q.key_names.clone(),
        }
    }

    pub(super) fn count(&mut self, kind: DiffKind, n: u64) {
        match kind {
            DiffKind::Missing => self.missing = n,
            DiffKind::Extra => self.extra = n,
            DiffKind::Different => self.different = n,
        }
    }

    /// Source and destination agree.
    pub fn is_equal(&self) -> bool {
        self.error.is_none() && self.missing + self.extra + self.different + self.untracked == 0
    }

    fn show_key(&self, key: &[String]) -> String {
        format!("({})=({})", self.key_names.join(", "), key.join(", "))
    }

    /// The readable lines of this table.
    pub fn text(&self) -> String {
        if let Some(e) = &self.error {
            return format!("{}: DIFFERENT: {e}\n", self.table);
        }
        let how = if self.key.is_some() {
            String::new()
        } else {
            " (no usable key: compared as a multiset of rows)".to_owned()
        };
        let settled = if self.settled > 0 {
            format!(", {} row(s) in flight settled on re-check", self.settled)
        } else {
            String::new()
        };
        if self.is_equal() {
            return format!(
                "{}: equal, {} rows{how}{settled}\n",
                self.table, self.source_rows
            );
        }
        let mut s = format!(
            "{}: DIFFERENT{how}: source {} rows, destination {} rows; missing {}, extra {}, different {}{}{settled}\n",
            self.table,
            self.source_rows,
            self.dest_rows,
            self.missing,
            self.extra,
            self.different,
            if self.untracked > 0 {
                format!(", {} more not re-checked", self.untracked)
            } else {
                String::new()
            }
        );
        for sample in &self.samples {
            let kind = match sample.kind {
                DiffKind::Missing => "missing on the destination",
                DiffKind::Extra => "extra on the destination",
                DiffKind::Different => "different",
            };
            let what = match (&sample.key, &sample.row) {
                (Some(k), _) => self.show_key(k),
                (None, Some(row)) => format!(
                    "row ({})",
                    row.iter()
                        .map(|v| v.as_deref().unwrap_or("NULL"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                (None, None) => "a row".into(),
            };
            let cols = if sample.columns.is_empty() {
                String::new()
            } else {
                format!(" in column(s) {}", sample.columns.join(", "))
            };
            s.push_str(&format!("  {kind}: {what}{cols}\n"));
        }
        s
    }
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The source's WAL position at its snapshot.
    pub source_lsn: Option<Lsn>,
    /// Applied positions known on the destination.
    pub positions: Vec<Position>,
    /// Per table, in the order asked.
    pub tables: Vec<TableReport>,
}

impl Report {
    /// Every table agrees.
    pub fn is_equal(&self) -> bool {
        self.tables.iter().all(TableReport::is_equal)
    }

    /// Tables that differ.
    pub fn differing(&self) -> usize {
        self.tables.iter().filter(|t| !t.is_equal()).count()
    }

    /// The readable header: where each side was read.
    pub fn header(&self) -> String {
        let mut s = format!(
            "source read at {}\n",
            self.source_lsn
                .map_or_else(|| "an unknown position".to_owned(), |l| l.to_string())
        );
        for p in &self.positions {
            s.push_str(&format!(
                "destination: {} \"{}\" applied up to {}\n",
                p.what,
                p.name,
                p.lsn.map_or_else(
                    || "(not readable by this role)".to_owned(),
                    |l| l.to_string()
                )
            ));
        }
        s
    }
}
