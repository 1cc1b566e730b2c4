//! How the initial copy shows its progress: a bar per table being copied when stderr is a
//! terminal (rows against the table's estimated size, bytes, rate), log lines every 10 s
//! otherwise — and in both cases one line per finished table. Also the bar of bytes
//! `pgsub bench` shows.

use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a table's progress is logged when there are no bars.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// A bar of `len` bytes (`unit` names what they are: "of recording", "of WAL"), with the
/// rate; for a caller that checked that stderr is a terminal.
pub fn bytes_bar(len: u64, unit: &str) -> ProgressBar {
    ProgressBar::new(len.max(1)).with_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} [{{bar:40}}] {{percent:>3}}% {{binary_bytes_per_sec}} {unit}  {{msg}}"
        ))
        .expect("a valid template")
        .progress_chars("=> "),
    )
}

/// The display of a whole copy.
#[derive(Debug, Clone)]
pub struct CopyProgress {
    bars: Option<MultiProgress>,
}

impl CopyProgress {
    /// Bars when `bars` (the caller checked that stderr is a terminal and logs are text),
    /// log lines otherwise.
    pub fn new(bars: bool) -> Self {
        CopyProgress {
            bars: bars.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }

    /// The display of one table, whose size the source estimates at `estimated_rows`
    /// (0: unknown).
    pub fn table(&self, name: &str, estimated_rows: u64) -> TableProgress {
        let bar = self.bars.as_ref().map(|m| {
            let bar = if estimated_rows > 0 {
                ProgressBar::new(estimated_rows).with_style(
                    ProgressStyle::with_template(
                        "{prefix:<32!} [{bar:30}] {human_pos:>11}/{human_len} rows  {msg}",
                    )
                    .expect("a valid template")
                    .progress_chars("=> "),
                )
            } else {
                ProgressBar::new_spinner().with_style(
                    ProgressStyle::with_template(
                        "{prefix:<32!} {spinner} {human_pos:>11} rows  {msg}",
                    )
                    .expect("a valid template"),
                )
            };
            let bar = m.add(bar);
            bar.set_prefix(name.to_owned());
            bar
        });
        TableProgress {
            name: name.to_owned(),
            bar,
            started: Instant::now(),
            next_log: Instant::now() + LOG_EVERY,
        }
    }
}

/// The display of one table's copy.
#[derive(Debug)]
pub struct TableProgress {
    name: String,
    bar: Option<ProgressBar>,
    started: Instant,
    next_log: Instant,
}

fn rate(bytes: u64, since: Instant) -> String {
    let secs = since.elapsed().as_secs_f64().max(0.001);
    format!(
        "{:.1} MB, {:.1} MB/s",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / secs
    )
}

impl TableProgress {
    /// Rows and bytes copied so far.
    pub fn update(&mut self, rows: u64, bytes: u64) {
        match &self.bar {
            Some(bar) => {
                if bar.length().is_some_and(|l| rows > l) {
                    bar.set_length(rows);
                }
                bar.set_position(rows);
                bar.set_message(rate(bytes, self.started));
            }
            None if Instant::now() >= self.next_log => {
                tracing::info!(table = %self.name, rows, bytes, progress = %rate(bytes, self.started), "copying");
                self.next_log += LOG_EVERY;
            }
            None => {}
        }
    }

    /// The table is copied.
    pub fn finish(self, rows: u64, bytes: u64, binary: bool) {
        let seconds = self.started.elapsed().as_secs_f64();
        let format = if binary { "binary" } else { "text" };
        match self.bar {
            Some(bar) => {
                bar.set_length(rows.max(1));
                bar.set_position(rows);
                bar.finish_with_message(format!(
                    "{}, {:.1} s, {format}",
                    rate(bytes, self.started),
                    seconds
                ));
            }
            None => tracing::info!(
                table = %self.name,
                rows,
                bytes,
                seconds = format!("{seconds:.2}"),
                rows_per_second = (rows as f64 / seconds.max(0.001)) as u64,
                format,
                "table copied"
            ),
        }
    }
}
