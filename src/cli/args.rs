//! Command-line arguments (clap). The contract is DESIGN.md § Command line: switches are
//! bare, choices take a value, common options are accepted before or after the
//! subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::pgoutput::options::{OriginFilter, Streaming};
use crate::source::run::Until;

/// pgsub: a standalone PostgreSQL logical-replication subscriber.
#[derive(Debug, Parser)]
#[command(
    name = "pgsub",
    version,
    about = "A standalone PostgreSQL logical-replication subscriber: its own replication connection, its own pgoutput decoder, exact LSN accounting",
    after_help = "Examples:\n  pgsub slot create --source 'host=db1 dbname=app user=repl' --slot pgsub\n  pgsub decode --source 'host=db1 dbname=app user=repl' --publication pub1 --slot pgsub --until caught-up\n  pgsub decode --input proto-fixtures/pg15/basic.pgrec\n\nConnection strings take both libpq forms (\"host=h port=5432 dbname=d user=u\" and postgres://u@h/d), the PG* environment variables and ~/.pgpass. Passwords are never printed.\n\nExit codes: 0 done, 1 runtime failure, 2 usage or configuration error, 3 verify found differences."
)]
pub struct Cli {
    /// Format of reports and summaries.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Format of log lines on stderr.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub log_format: Format,
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less log output (-q warnings only, -qq errors only).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Text for people, JSON for machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Readable text.
    Text,
    /// One JSON object per line.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print every decoded pgoutput message as one JSON object per line.
    #[command(after_help = DECODE_EXAMPLES)]
    Decode(DecodeArgs),
    /// Stand in for a subscription: copy and stream the published tables into the destination, exactly once.
    #[command(after_help = SYNC_EXAMPLES)]
    Sync(SyncArgs),
    /// Capture the raw replication stream into a recording file.
    #[command(after_help = RECORD_EXAMPLES)]
    Record(RecordArgs),
    /// The managed procedure end to end on two throwaway local clusters.
    #[command(
        after_help = "Example:\n  pgsub demo          # about 15 seconds; needs the PostgreSQL server binaries\n  pgsub demo --keep   # leave both clusters running and print how to connect"
    )]
    Demo(DemoArgs),
    /// Create, drop or list logical replication slots on the source.
    #[command(
        subcommand,
        after_help = "Examples:\n  pgsub slot create --source 'host=db1 dbname=app user=repl' --slot pgsub\n  pgsub slot list --source 'host=db1 dbname=app user=repl'\n  pgsub slot drop --source 'host=db1 dbname=app user=repl' --slot pgsub\n\nA slot keeps WAL on the source until its client confirms it: drop slots nobody streams from."
    )]
    Slot(SlotCommand),
}

const DECODE_EXAMPLES: &str = "Examples:
  pgsub decode --source 'host=db1 dbname=app user=repl' --publication pub1 --slot pgsub --create-slot --until caught-up
  pgsub decode --source postgres://repl@db1/app --publication pub1 --no-ack     # look without moving the slot
  pgsub decode --input proto-fixtures/pg15/basic.pgrec                          # decode a recording

Each line has `kind`, the XLogData `wal_start` and the message's fields; row images map column
names to values: text as a string, null, {\"unchanged_toast\": true} or {\"binary\": \"<hex>\"}.
Printed transactions are acknowledged to the source (the slot advances) unless --no-ack.
A summary of the byte and LSN accounting goes to stderr (with --format json: a last line on stdout).";

const SYNC_EXAMPLES: &str = "Examples:
  pgsub sync --source 'host=db1 dbname=app user=repl' --dest 'postgres://avnadmin@dest/defaultdb?sslmode=require' \\
      --publication pub_all_tables --slot pgsub --create-slot --until caught-up
  pgsub sync --source … --dest … --publication pub1 --slot pgsub --create-slot   # run until SIGINT/SIGTERM

The same command line serves the first run and every rerun: --create-slot creates the slot only if it
is missing, the initial copy (default on when the slot is created here) resumes per table, and
streaming resumes from the position recorded in pgsub.progress on the destination, skipping what was
applied. A position is acknowledged to the source only once the destination has made it durable.";

const RECORD_EXAMPLES: &str = "Examples:
  pgsub record --source 'host=db1 dbname=app user=repl' --publication pub1 --slot pgsub --output run.pgrec --until caught-up
  pgsub decode --input run.pgrec

The file holds every CopyData payload the server sent (XLogData and keepalives), each with its
length and CRC-32, behind a header with the server version, system id, slot and START_REPLICATION
options. Recorded transactions are acknowledged once the file is synced to disk, unless --no-ack.";

/// Where the stream comes from, and how it is asked for.
#[derive(Debug, Clone, Args)]
pub struct StreamArgs {
    /// The source.
    #[command(flatten)]
    pub source: SourceArg,
    /// Publication(s) to stream; repeat or separate with commas.
    #[arg(long = "publication", value_name = "NAME", value_delimiter = ',')]
    pub publications: Vec<String>,
    /// Logical replication slot to stream from ([a-z0-9_]).
    #[arg(long, default_value = "pgsub", value_name = "NAME")]
    pub slot: String,
    /// Create the slot if it does not exist.
    #[arg(long)]
    pub create_slot: bool,
    /// Seconds to wait for a slot another process is streaming from.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub slot_wait: u64,
    /// Stop once everything up to here is processed: `caught-up` (the source's WAL position at start) or an LSN.
    #[arg(long, value_name = "caught-up|LSN")]
    pub until: Option<Until>,
    /// Do not acknowledge anything: the flush position sent is 0/0 and the slot does not move.
    #[arg(long)]
    pub no_ack: bool,
    /// Large in-progress transactions: off (whole at commit), on (in blocks, PostgreSQL 14+), parallel (16+).
    #[arg(long, value_enum, default_value_t = Streaming::Off)]
    pub streaming: Streaming,
    /// Column values in binary format (PostgreSQL 14+); auto leaves the server's default (text).
    #[arg(long, value_enum, default_value_t = Toggle::Auto)]
    pub binary: Toggle,
    /// Decode two-phase transactions at PREPARE (PostgreSQL 15+); enables it on a slot it creates.
    #[arg(long)]
    pub two_phase: bool,
    /// Only changes that did not come through replication (none), or all (any); PostgreSQL 16+.
    #[arg(long, value_enum)]
    pub origin: Option<OriginFilter>,
    /// Do not ask for logical decoding messages (pg_logical_emit_message).
    #[arg(long)]
    pub no_messages: bool,
    /// Use this pgoutput protocol version instead of the highest the server supports.
    #[arg(long, value_name = "1-4")]
    pub proto_version: Option<u32>,
    /// Maximum seconds between standby status updates.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub status_interval: u64,
}

/// `auto`, `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Toggle {
    /// Decide automatically.
    Auto,
    /// Yes.
    On,
    /// No.
    Off,
}

/// `pgsub decode`.
#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// Decode a recording file instead of a live source.
    #[arg(long, value_name = "FILE", conflicts_with = "create_slot")]
    pub input: Option<PathBuf>,
    /// The stream.
    #[command(flatten)]
    pub stream: StreamArgs,
}

/// `pgsub sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The source.
    #[command(flatten)]
    pub source: SourceArg,
    /// Destination connection string (key=value or postgres:// URI).
    #[arg(
        long,
        env = "PGSUB_DEST",
        value_name = "CONNINFO",
        hide_env_values = true
    )]
    pub dest: Option<String>,
    /// Publication(s) to replicate; repeat or separate with commas.
    #[arg(long = "publication", value_name = "NAME", value_delimiter = ',')]
    pub publications: Vec<String>,
    /// Logical replication slot on the source ([a-z0-9_]).
    #[arg(long, default_value = "pgsub", value_name = "NAME")]
    pub slot: String,
    /// Name of this subscription: the key of its progress on the destination (default: the slot name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Create the slot if it does not exist.
    #[arg(long)]
    pub create_slot: bool,
    /// Seconds to wait for a slot another process is streaming from.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub slot_wait: u64,
    /// Table definitions on the destination: verify they match, create what is missing, or skip.
    #[arg(long, value_enum, default_value_t = crate::schema::SchemaMode::Verify)]
    pub schema: crate::schema::SchemaMode,
    /// Copy the tables' current contents first (default: when this run creates the slot).
    #[arg(long, overrides_with = "no_copy_data")]
    pub copy_data: bool,
    /// Do not copy the tables' current contents.
    #[arg(long)]
    pub no_copy_data: bool,
    /// Tables copied at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub copy_jobs: usize,
    /// Empty destination tables before copying into them (in the copy's transaction).
    #[arg(long)]
    pub truncate_before_copy: bool,
    /// Stop once everything up to here is applied and acknowledged: `caught-up` (the source's WAL position when streaming began) or an LSN.
    #[arg(long, value_name = "caught-up|LSN")]
    pub until: Option<Until>,
    /// Seconds between lines of statistics (positions, lag, rows/s); 0 for none.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub stats_interval: u64,
    /// Maximum seconds between standby status updates.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub status_interval: u64,
}

impl SyncArgs {
    /// `--copy-data` / `--no-copy-data`, or `None` for the default.
    pub fn copy_data(&self) -> Option<bool> {
        match (self.copy_data, self.no_copy_data) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        }
    }
}

/// `pgsub demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Leave both clusters running at the end, and print how to connect to them.
    #[arg(long)]
    pub keep: bool,
}

/// `pgsub record`.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// The recording file to write (replaced if it exists).
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
    /// The stream.
    #[command(flatten)]
    pub stream: StreamArgs,
}

/// `pgsub slot …`.
#[derive(Debug, Subcommand)]
pub enum SlotCommand {
    /// Create a logical slot using pgoutput.
    #[command(
        after_help = "Example:\n  pgsub slot create --source 'host=db1 dbname=app user=repl' --slot pgsub"
    )]
    Create(SlotCreateArgs),
    /// Drop a slot (the WAL it retained is released).
    #[command(
        after_help = "Example:\n  pgsub slot drop --source 'host=db1 dbname=app user=repl' --slot pgsub\n\nAn active slot is not dropped unless --wait is given (then pgsub waits until it is released)."
    )]
    Drop(SlotDropArgs),
    /// List the slots with their positions and the WAL they retain.
    #[command(
        after_help = "Example:\n  pgsub slot list --source 'host=db1 dbname=app user=repl' --format json\n\nInactive slots that retain WAL are flagged: they keep WAL on the source until its disk is full."
    )]
    List(SlotListArgs),
}

/// Connection to the source.
#[derive(Debug, Clone, Args)]
pub struct SourceArg {
    /// Source connection string (key=value or postgres:// URI).
    #[arg(
        id = "source",
        long = "source",
        env = "PGSUB_SOURCE",
        value_name = "CONNINFO",
        hide_env_values = true
    )]
    pub conninfo: Option<String>,
}

/// `pgsub slot create`.
#[derive(Debug, Args)]
pub struct SlotCreateArgs {
    /// The source.
    #[command(flatten)]
    pub source: SourceArg,
    /// Slot name ([a-z0-9_]).
    #[arg(long, default_value = "pgsub", value_name = "NAME")]
    pub slot: String,
    /// Enable two-phase decoding on the slot (PostgreSQL 15+).
    #[arg(long)]
    pub two_phase: bool,
}

/// `pgsub slot drop`.
#[derive(Debug, Args)]
pub struct SlotDropArgs {
    /// The source.
    #[command(flatten)]
    pub source: SourceArg,
    /// Slot name.
    #[arg(long, default_value = "pgsub", value_name = "NAME")]
    pub slot: String,
    /// If the slot is active, wait until it is released instead of failing.
    #[arg(long)]
    pub wait: bool,
}

/// `pgsub slot list`.
#[derive(Debug, Args)]
pub struct SlotListArgs {
    /// The source.
    #[command(flatten)]
    pub source: SourceArg,
}
