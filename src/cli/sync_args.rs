//! The options of `pgsub sync` (the largest command, in a file of its own; the other
//! commands' are in [`super::args`]).

use std::path::PathBuf;

use clap::Args;

use super::args::*;
use crate::replicate::run::Until;

/// `pgsub sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The source.
    #[command(flatten)]
    pub source: SourceArg,
    /// The destination.
    #[command(flatten)]
    pub dest: DestArg,
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
    /// Table definitions on the destination: verify they match, create what is missing (the
    /// source's secondary indexes are built after the copy, before streaming), or skip.
    #[arg(long, value_enum, default_value_t = SchemaArg::Verify)]
    pub schema: SchemaArg,
    /// Copy the tables' current contents first (default: when this run creates the slot).
    #[arg(long, overrides_with = "no_copy_data")]
    pub copy_data: bool,
    /// Do not copy the tables' current contents.
    #[arg(long)]
    pub no_copy_data: bool,
    /// Tables (or chunks of a large table) copied at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub copy_jobs: usize,
    /// A table larger than this (in MiB) is copied in chunks of about this size, several at once within --copy-jobs, all under the one snapshot of the copy (PostgreSQL 14+ sources, by ranges of the table's blocks; not a partitioned table published through its root). A run killed between chunks copies that table again whole. 0: every table in one piece.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub copy_chunk_mb: u64,
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
    /// Serve Prometheus metrics on HOST:PORT (GET /metrics).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// Large in-progress transactions: off (sent whole at commit), on (sent in blocks while in progress, PostgreSQL 14+, kept in a spool file until they commit), parallel (16+, the same for pgsub).
    #[arg(long, value_enum, default_value_t = StreamingArg::Off)]
    pub streaming: StreamingArg,
    /// Directory for the spool files of streamed transactions (default: under the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Conflicts (an insert of an existing key, an update or delete that finds no row): log (as the built-in worker: a missing row is logged, counted and skipped; an existing key stops pgsub) or error (any conflict stops pgsub, nothing of its transaction applied). Every conflict is counted in pgsub.conflicts, the summary, the metrics and `pgsub status`.
    #[arg(long, value_enum, default_value_t = OnConflictArg::Log)]
    pub on_conflict: OnConflictArg,
    /// Seconds between looks for tables that joined the publications (ALTER PUBLICATION … ADD TABLE, a new table under FOR ALL TABLES or TABLES IN SCHEMA); such a table is copied, then streamed, while the others wait. A table is also found at start and at its first change; 0 for only those.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub refresh_interval: u64,
    /// Create the slot as a failover slot (PostgreSQL 17+): with sync_replication_slots on a physical standby of the source, the slot is kept there, and replication goes on from the standby after a failover. An existing slot is made one (ALTER_REPLICATION_SLOT).
    #[arg(long)]
    pub failover: bool,
    /// Two-phase transactions (PostgreSQL 15+): a transaction prepared on the source (PREPARE TRANSACTION) becomes a prepared transaction on the destination, under a GID of pgsub's own (pgsub_<source system id>_<xid>_<name>), and is committed or rolled back when the source does so, exactly once across restarts. The slot is created with two-phase decoding; an existing one without it decodes them from this start on (a transaction prepared before then arrives whole when it commits). The destination needs max_prepared_transactions above 0. Without it, a prepared transaction is applied when it commits.
    #[arg(long)]
    pub two_phase: bool,
    /// Column values in their types' binary format (PostgreSQL 14+ sources), which the destination receives without parsing text: auto (binary when every published column is of the same built-in, non-array type on both sides, else text; a column that stops allowing it while streaming makes pgsub go on in text), on (binary, or exit 2 naming the column that cannot), off (text, for the initial copy too, which otherwise uses binary COPY per table where the types match).
    #[arg(long, value_enum, default_value_t = BinaryArg::Auto)]
    pub binary: BinaryArg,
    /// Apply a recording made by `pgsub record` instead of streaming from a source (store and forward: the recording can be carried where no machine reaches both servers). Progress is kept on the destination as for a live sync, so an interrupted replay resumes and a later recording of the same slot goes on from it; a recording of another source system or slot than the destination's progress names is refused. Without stored progress the destination's tables must hold the source's rows as of the recording's start. --name defaults to the recording's slot.
    #[arg(
        long,
        value_name = "RECORDING",
        conflicts_with_all = ["source", "slot", "create_slot", "slot_wait", "copy_data", "no_copy_data", "copy_jobs", "copy_chunk_mb", "truncate_before_copy", "failover", "two_phase", "binary", "origin", "publications", "streaming", "schema", "refresh_interval", "status_interval", "stats_interval", "metrics_addr"]
    )]
    pub input: Option<PathBuf>,
    /// Which changes to take by their origin (PostgreSQL 16+): none (only changes made on the source itself, not those it got through replication; for replications both ways between two servers) or any. pgsub's own writes on the destination carry an origin of their own where the role may set one.
    #[arg(long, value_enum)]
    pub origin: Option<OriginArg>,
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
