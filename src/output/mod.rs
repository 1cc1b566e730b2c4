//! What pgsub shows: reports for people and for programs, the end-of-run summary, JSON
//! lines of decoded messages, Prometheus metrics, copy progress bars. Data (decoded lines,
//! reports) goes to stdout; logs and reports meant for people go to stderr.

pub mod json;
pub mod metrics;
pub mod progress;
pub mod summary;

/// How reports are written (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// For people.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Where and how a command reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct Output {
    /// `--format`.
    pub format: Format,
    /// `--log-format json`: reports for people become JSON log lines on stderr.
    pub log_json: bool,
    /// `-q`: no text summaries.
    pub quiet: bool,
}

impl Output {
    /// Writes a report meant for people to stderr; under `--log-format json` it becomes
    /// one JSON log line, so that stderr stays machine-readable.
    pub fn say(&self, text: &str) {
        if self.log_json {
            tracing::info!(report = text.trim_end(), "report");
        } else if text.ends_with('\n') {
            eprint!("{text}");
        } else {
            eprintln!("{text}");
        }
    }
}
