//! Command-line arguments (clap). The contract is `docs/design.md` § Command line: switches are
//! bare, choices take a value, common options are accepted before or after the
//! subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::replicate::run::Until;

pub use super::sync_args::SyncArgs;

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
    /// Compare source and destination row by row; exit 3 when they differ.
    #[command(after_help = VERIFY_EXAMPLES)]
    Verify(VerifyArgs),
    /// Slots, retained WAL and lag on the source; subscriptions and pgsub progress on the destination.
    #[command(after_help = STATUS_EXAMPLES)]
    Status(StatusArgs),
    /// Hand a replication over between a native subscription and pgsub, either way, losing and repeating nothing.
    #[command(after_help = HANDOFF_EXAMPLES)]
    Handoff(HandoffArgs),
    /// At cutover: set the destination's sequences to the source's values.
    #[command(after_help = SEQUENCES_EXAMPLES)]
    Sequences(SequencesArgs),
    /// Remove pgsub's slot on the source and its progress rows on the destination.
    #[command(after_help = DROP_EXAMPLES)]
    Drop(DropArgs),
    /// Create, drop or list logical replication slots on the source.
    #[command(
        subcommand,
        after_help = "Examples:\n  pgsub slot create --source 'host=db1 dbname=app user=repl' --slot pgsub\n  pgsub slot list --source 'host=db1 dbname=app user=repl'\n  pgsub slot drop --source 'host=db1 dbname=app user=repl' --slot pgsub\n\nA slot keeps WAL on the source until its client confirms it: drop slots nobody streams from."
    )]
    Slot(SlotCommand),
    /// Measure throughput: decode (from a recording, or a slot's backlog on a live server) and apply (a recording replayed into a scratch database).
    #[command(subcommand, after_help = BENCH_EXAMPLES)]
    Bench(BenchCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Examples:\n  pgsub completions bash > /etc/bash_completion.d/pgsub\n  pgsub completions zsh > \"${fpath[1]}/_pgsub\"\n  pgsub completions fish > ~/.config/fish/completions/pgsub.fish"
    )]
    Completions(CompletionsArgs),
    /// Write the manual pages (pgsub(1) and one per command) generated from this help.
    #[command(
        after_help = "Examples:\n  pgsub man | man -l -                       # read pgsub(1) now\n  pgsub man --dir /usr/local/share/man/man1  # install every page"
    )]
    Man(ManArgs),
}

const BENCH_EXAMPLES: &str = "Examples:
  pgsub bench decode --input backlog.pgrec                     # decode alone, from a recording
  pgsub bench decode --source 'host=db1 dbname=app user=repl' --publication pub1 --slot pgsub
  pgsub bench apply --input backlog.pgrec --dest 'host=db2 dbname=postgres user=admin'
  pgsub --format json bench decode --input backlog.pgrec       # one JSON object on stdout

A live decode bench never acknowledges (the slot does not move) and stops at the source's WAL
position when streaming began, unless --until says otherwise. The report gives bytes and
messages per second by kind, the CPU time over the span (well below the span: the server was
the bound) and the time from process start to the end.";

/// `pgsub bench …`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Decode rate: of a recording (--input), or of a slot's backlog streamed from the source.
    Decode(BenchDecodeArgs),
    /// Apply rate: a recording replayed into a scratch database the command creates and drops (needs CREATEDB on the destination).
    Apply(BenchApplyArgs),
}

/// Arguments of `pgsub bench decode`.
#[derive(Debug, Args)]
pub struct BenchDecodeArgs {
    /// Decode this recording instead of streaming from a source.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["source", "publications"])]
    pub input: Option<PathBuf>,
    /// The stream (live).
    #[command(flatten)]
    pub stream: StreamArgs,
}

/// Arguments of `pgsub bench apply`.
#[derive(Debug, Args)]
pub struct BenchApplyArgs {
    /// The recording to replay.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// The destination server (any database there; the scratch database is created beside it).
    #[command(flatten)]
    pub dest: DestArg,
    /// Keep the scratch database afterwards (its name is logged).
    #[arg(long)]
    pub keep: bool,
}

/// Arguments of `pgsub completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Arguments of `pgsub man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write pgsub.1 and a page per command (pgsub-sync.1, …) into this directory instead of
    /// printing pgsub.1 on stdout.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
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

const VERIFY_EXAMPLES: &str = "Examples:
  pgsub verify --source 'host=db1 dbname=app user=repl' --dest postgres://avnadmin@dest/defaultdb --publication pub_all_tables
  pgsub verify --source … --dest … --table public.orders --table customers --format json --show 50

Each table is read on both sides in key order (one snapshot per side) and compared row by row by
a 64-bit hash of the row; a table without a usable key is compared as a multiset of rows. Under
live replication a differing row is re-checked for --settle seconds before it is reported, and the
report says at which position each side was read. Exit 0 when equal, 3 when not.";

const STATUS_EXAMPLES: &str = "Examples:
  pgsub status --source 'host=db1 dbname=app user=repl' --dest postgres://avnadmin@dest/defaultdb
  pgsub status --source … --watch 5
  pgsub status --source … --dest … --format json

Lag is in bytes of WAL: the source's current position minus what each subscription has applied
(or its slot has confirmed, whichever is further). An inactive slot retaining WAL is flagged: it
keeps WAL on the source until the disk is full. Connection strings are shown redacted.";

const HANDOFF_EXAMPLES: &str = "Examples:
  pgsub handoff --source … --dest … --subscription sub1 --to-pgsub --dry-run
  pgsub handoff --source … --dest … --subscription sub1 --to-pgsub
  pgsub sync --source … --dest … --publication pub1 --slot <the subscription's slot>
  pgsub handoff --source … --dest … --subscription sub1 --to-native --slot pgsub

--to-pgsub disables the subscription, reads its origin's applied position, detaches its slot
(slot_name = NONE) and records that position as pgsub's progress: `pgsub sync` on the same slot
continues with nothing lost or repeated. --to-native (pgsub stopped) points the subscription at
pgsub's slot, advances its origin to pgsub's applied position and enables it; a subscription that
does not exist is created (copy_data = false) with --subscription-conninfo.

On a managed destination (an admin role that does not own the subscription, with aiven_extras),
the subscription is disabled, dropped keeping its slot, and created through aiven_extras'
functions. Where the role may not read the subscription's origin, the hand-off to pgsub needs a
short write pause on the source and --writes-paused (pgsub checks that the pause holds, and
changes nothing when it does not); the hand-off back needs the slot to confirm everything pgsub
applied, as `pgsub sync --until caught-up` leaves it.";

const SEQUENCES_EXAMPLES: &str = "Examples:
  pgsub sequences --source … --dest … --publication pub_all_tables --dry-run
  pgsub sequences --source … --dest … --schema public

Logical replication does not carry sequences. At cutover, each destination sequence owned by a
published table (or in a --schema) is set to the source's value; one that would go backwards is
reported and left alone.";

const DROP_EXAMPLES: &str = "Examples:
  pgsub drop --source … --dest … --slot pgsub
  pgsub drop --source … --dest … --slot pgsub --force   # also while a pgsub still streams

Removes the slot (and the WAL it retains) on the source, and pgsub's progress and table-copy rows
for the subscription on the destination. The replicated tables themselves are left alone.";

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
    #[arg(long, value_enum, default_value_t = StreamingArg::Off)]
    pub streaming: StreamingArg,
    /// Column values in binary format (PostgreSQL 14+); auto leaves the server's default (text).
    #[arg(long, value_enum, default_value_t = Toggle::Auto)]
    pub binary: Toggle,
    /// Decode two-phase transactions at PREPARE (PostgreSQL 15+); enables it on a slot it creates.
    #[arg(long)]
    pub two_phase: bool,
    /// Only changes that did not come through replication (none), or all (any); PostgreSQL 16+.
    #[arg(long, value_enum)]
    pub origin: Option<OriginArg>,
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
    /// Serve Prometheus metrics on HOST:PORT (GET /metrics).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
}

/// `pgsub demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Leave both clusters running at the end, and print how to connect to them.
    #[arg(long)]
    pub keep: bool,
    /// Where the PostgreSQL server binaries are missing, print the command that installs
    /// them instead of running it (by default the demo runs it, shown first, when it may:
    /// as root or through sudo without a password).
    #[arg(long)]
    pub no_install: bool,
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

/// Connection to the destination.
#[derive(Debug, Clone, Args)]
pub struct DestArg {
    /// Destination connection string (key=value or postgres:// URI).
    #[arg(
        id = "dest",
        long = "dest",
        env = "PGSUB_DEST",
        value_name = "CONNINFO",
        hide_env_values = true
    )]
    pub conninfo: Option<String>,
}

/// `pgsub verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The source.
    #[command(flatten)]
    pub source: SourceArg,
    /// The destination.
    #[command(flatten)]
    pub dest: DestArg,
    /// Compare the tables these publications publish (with their column lists and row filters).
    #[arg(long = "publication", value_name = "NAME", value_delimiter = ',')]
    pub publications: Vec<String>,
    /// Compare this table (schema.table, or a bare name found through the source's search path); repeatable.
    #[arg(long = "table", value_name = "TABLE")]
    pub tables: Vec<String>,
    /// Tables compared at once (each uses one connection per side).
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub jobs: usize,
    /// Differing keys shown per table and kind of difference.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub show: usize,
    /// Seconds to re-check differing rows before reporting them (rows in flight under live replication settle); 0 reports at once.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub settle: u64,
}

/// `pgsub status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The source.
    #[command(flatten)]
    pub source: SourceArg,
    /// The destination (optional: its native subscriptions and pgsub's progress).
    #[command(flatten)]
    pub dest: DestArg,
    /// Refresh every SECONDS until interrupted.
    #[arg(long, value_name = "SECONDS")]
    pub watch: Option<u64>,
}

/// `pgsub drop`.
#[derive(Debug, Args)]
pub struct DropArgs {
    /// The source.
    #[command(flatten)]
    pub source: SourceArg,
    /// The destination.
    #[command(flatten)]
    pub dest: DestArg,
    /// The slot to drop on the source.
    #[arg(long, default_value = "pgsub", value_name = "NAME")]
    pub slot: String,
    /// Subscription name whose progress rows to remove (default: the slot name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Drop the slot even while a process streams from it (that process is terminated).
    #[arg(long)]
    pub force: bool,
}

/// `pgsub sequences`.
#[derive(Debug, Args)]
pub struct SequencesArgs {
    /// The source.
    #[command(flatten)]
    pub source: SourceArg,
    /// The destination.
    #[command(flatten)]
    pub dest: DestArg,
    /// Sequences owned by the tables these publications publish.
    #[arg(long = "publication", value_name = "NAME", value_delimiter = ',')]
    pub publications: Vec<String>,
    /// Every sequence in this schema; repeatable.
    #[arg(long = "schema", value_name = "SCHEMA")]
    pub schemas: Vec<String>,
    /// Print what would be set, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `pgsub handoff`.
#[derive(Debug, Args)]
pub struct HandoffArgs {
    /// The source.
    #[command(flatten)]
    pub source: SourceArg,
    /// The destination.
    #[command(flatten)]
    pub dest: DestArg,
    /// The native subscription on the destination.
    #[arg(long, value_name = "NAME")]
    pub subscription: String,
    /// From the native subscription to pgsub: disable it, detach its slot, record its position as pgsub's progress.
    #[arg(
        long,
        conflicts_with = "to_native",
        required_unless_present = "to_native"
    )]
    pub to_pgsub: bool,
    /// From pgsub to a native subscription on pgsub's slot, starting where pgsub stopped.
    #[arg(long)]
    pub to_native: bool,
    /// --to-pgsub where the role may not read the subscription's origin (a managed service's admin role): writes to the published tables are paused, so the slot's confirmed position is where the subscription stopped. pgsub waits until the slot confirms everything written, disables the subscription and checks, by decoding the slot without consuming it, that no published change follows; if one does, it enables the subscription again and exits 2.
    #[arg(long, conflicts_with = "to_native")]
    pub writes_paused: bool,
    /// --to-native: pgsub's slot, whose progress is handed over (--to-pgsub takes the subscription's slot).
    #[arg(long, value_name = "NAME", conflicts_with = "to_pgsub")]
    pub slot: Option<String>,
    /// pgsub's subscription name: the key of its progress row (default: the slot name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// --to-native when the subscription does not exist yet: the connection string it stores (in pg_subscription, as every native subscription does).
    #[arg(long, value_name = "CONNINFO", hide_env_values = true)]
    pub subscription_conninfo: Option<String>,
    /// --to-native when the subscription does not exist yet: its publications (default: pgsub's).
    #[arg(long = "publication", value_name = "NAME", value_delimiter = ',')]
    pub publications: Vec<String>,
    /// Print the statements, change nothing.
    #[arg(long)]
    pub dry_run: bool,
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
    /// A failover slot (PostgreSQL 17+): kept on standbys that run with sync_replication_slots, so that replication survives a failover of the source.
    #[arg(long)]
    pub failover: bool,
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

/// The values of a choice option, each mapped onto the domain's own type: the layers
/// below `cli/` know nothing of clap.
macro_rules! choice {
    ($(#[$doc:meta])* $arg:ident => $domain:ty { $($(#[$vdoc:meta])* $variant:ident),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
        pub enum $arg {
            $($(#[$vdoc])* $variant),*
        }

        impl From<$arg> for $domain {
            fn from(a: $arg) -> Self {
                match a {
                    $($arg::$variant => <$domain>::$variant),*
                }
            }
        }
    };
}

choice! {
    /// `--streaming`.
    StreamingArg => crate::pgoutput::options::Streaming {
        /// Whole transactions at commit only.
        Off,
        /// In-progress transactions in blocks (PostgreSQL 14+).
        On,
        /// As `on`, with abort positions for parallel apply (PostgreSQL 16+).
        Parallel,
    }
}

choice! {
    /// `--origin`.
    OriginArg => crate::pgoutput::options::OriginFilter {
        /// All transactions (the server's default).
        Any,
        /// Only transactions that did not arrive through replication (PostgreSQL 16+).
        None,
    }
}

choice! {
    /// `sync --binary`.
    BinaryArg => crate::sync::binary::BinaryMode {
        /// Binary where every published column allows it, else text.
        Auto,
        /// Binary, or exit 2 naming the column that cannot.
        On,
        /// Text.
        Off,
    }
}

choice! {
    /// `--schema`.
    SchemaArg => crate::sync::schema::SchemaMode {
        /// Check that the destination's tables take the source's values.
        Verify,
        /// Create what is missing: schemas, tables (with their key), columns; the source's
        /// other indexes and unique constraints after the copy.
        Create,
        /// Do nothing.
        Skip,
    }
}

choice! {
    /// `--on-conflict`.
    OnConflictArg => crate::apply::conflicts::OnConflict {
        /// As the built-in worker: a missing row is logged and skipped, an existing key stops pgsub.
        Log,
        /// Any conflict stops pgsub.
        Error,
    }
}
