//! Records the `proto-fixtures/` of one PostgreSQL server version.
//!
//! For every scenario in `proto-fixtures/scenarios/*.sql` the server supports, on a
//! throwaway cluster of that version: run the scenario's setup, create a pgoutput slot
//! (with `pgsub slot create`) and a `test_decoding` slot at the same point, run the
//! workload, then
//!
//! - `pgsub record --until caught-up --no-ack` → `<scenario>.pgrec`
//! - `pgsub decode --input` of that file       → `<scenario>.jsonl` (the expected decoding)
//! - `test_decoding` changes of the same WAL  → `<scenario>.test_decoding` (an independent
//!   decoding by the server itself, which the tests cross-check the JSON against)
//!
//! Usage (normally through `scripts/record-fixtures.sh`):
//!
//! ```text
//! cargo build && cargo run --example record_fixtures -- \
//!     --pgsub target/debug/pgsub --pgbin /usr/lib/postgresql/15/bin --out proto-fixtures/pg15
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use pgsub_testkit::{Cluster, ClusterOptions, PgBin};

struct Scenario {
    name: String,
    min_version: u32,
    record_flags: Vec<String>,
    setup: String,
    workload: String,
}

/// A scenario file, and one more scenario per `-- variant NAME: min_version N; record_flags …`
/// line: the same SQL recorded with other settings.
fn parse_scenarios(path: &Path) -> Vec<Scenario> {
    let source = std::fs::read_to_string(path).expect("read scenario");
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    let mut min_version = 100000;
    let mut record_flags = Vec::new();
    let (mut setup, mut workload) = (String::new(), String::new());
    let mut section = 0;
    let mut variants = Vec::new();
    for line in source.lines() {
        if let Some(v) = line.strip_prefix("-- variant ") {
            let (vname, settings) = v.split_once(':').expect("-- variant NAME: …");
            let mut version = 100000;
            let mut flags = Vec::new();
            for setting in settings.split(';') {
                let setting = setting.trim();
                if let Some(n) = setting.strip_prefix("min_version") {
                    version = n.trim().parse().expect("variant min_version");
                } else if let Some(f) = setting.strip_prefix("record_flags") {
                    flags = f.split_whitespace().map(str::to_owned).collect();
                }
            }
            variants.push((vname.trim().to_owned(), version, flags));
        } else if let Some(v) = line.strip_prefix("-- min_version:") {
            min_version = v.trim().parse().expect("min_version");
        } else if let Some(v) = line.strip_prefix("-- record_flags:") {
            record_flags = v.split_whitespace().map(str::to_owned).collect();
        } else if line.trim() == "-- setup" {
            section = 1;
        } else if line.trim() == "-- workload" {
            section = 2;
        } else if section == 1 {
            setup.push_str(line);
            setup.push('\n');
        } else if section == 2 {
            workload.push_str(line);
            workload.push('\n');
        }
    }
    let mut all: Vec<Scenario> = variants
        .into_iter()
        .map(|(name, min_version, record_flags)| Scenario {
            name,
            min_version,
            record_flags,
            setup: setup.clone(),
            workload: workload.clone(),
        })
        .collect();
    all.insert(
        0,
        Scenario {
            name,
            min_version,
            record_flags,
            setup,
            workload,
        },
    );
    all
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn pgsub(bin: &Path, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(args)
        .env("PGSUB_LOG", "pgsub=warn")
        .output()
        .expect("run pgsub");
    if !out.status.success() {
        panic!(
            "pgsub {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pgsub_bin = PathBuf::from(arg(&args, "--pgsub").unwrap_or("target/debug/pgsub".into()));
    let out_dir = PathBuf::from(arg(&args, "--out").expect("--out DIR"));
    let only = arg(&args, "--scenario");
    let bin = match arg(&args, "--pgbin") {
        Some(dir) => PgBin::from_dir(dir).expect("PostgreSQL binaries"),
        None => PgBin::discover().expect("PostgreSQL binaries"),
    };
    let version = bin.version_num;
    let cluster = Cluster::start(ClusterOptions {
        bin: Some(bin.clone()),
        // logical_decoding_work_mem exists from PostgreSQL 13 on.
        extra_conf: if version >= 130000 {
            vec!["logical_decoding_work_mem = '64kB'".into()]
        } else {
            Vec::new()
        },
        ..ClusterOptions::default()
    })
    .expect("start a cluster");
    std::fs::create_dir_all(&out_dir).expect("create the output directory");
    let mut scenarios: Vec<PathBuf> = std::fs::read_dir("proto-fixtures/scenarios")
        .expect("run from the repository root")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    scenarios.sort();
    let mut recorded = Vec::new();
    for sc in scenarios.iter().flat_map(|p| parse_scenarios(p)) {
        if only.as_deref().is_some_and(|o| o != sc.name) || version < sc.min_version {
            continue;
        }
        eprintln!("recording {} on PostgreSQL {}", sc.name, bin.version);
        let db = cluster
            .create_database(&format!("fixture_{}", sc.name))
            .unwrap();
        let psql = |sql: &str| {
            cluster
                .psql(&db, sql)
                .unwrap_or_else(|e| panic!("{e}\n{}", cluster.log_tail(20)))
        };
        psql(&sc.setup);
        let src = cluster.conninfo(&db);
        let slot = format!("fixture_{}", sc.name);
        let two_phase = sc.record_flags.iter().any(|f| f == "--two-phase");
        let mut create = vec!["slot", "create", "--source", &src, "--slot", &slot];
        if two_phase {
            create.push("--two-phase");
        }
        pgsub(&pgsub_bin, &create);
        let td_slot = format!("td_{}", sc.name);
        if two_phase {
            psql(&format!(
                "SELECT 1 FROM pg_create_logical_replication_slot('{td_slot}', 'test_decoding', false, true)"
            ));
        } else {
            psql(&format!(
                "SELECT 1 FROM pg_create_logical_replication_slot('{td_slot}', 'test_decoding')"
            ));
        }
        psql(&sc.workload);
        let rec = out_dir.join(format!("{}.pgrec", sc.name));
        let rec_s = rec.display().to_string();
        let mut record = vec![
            "record",
            "--source",
            &src,
            "--publication",
            "fixture_pub",
            "--slot",
            &slot,
            "--output",
            &rec_s,
            "--until",
            "caught-up",
            "--no-ack",
        ];
        record.extend(sc.record_flags.iter().map(String::as_str));
        pgsub(&pgsub_bin, &record);
        let decoded = pgsub(&pgsub_bin, &["decode", "--input", &rec_s, "-q"]);
        std::fs::write(out_dir.join(format!("{}.jsonl", sc.name)), decoded).unwrap();
        let td = psql(&format!(
            "SELECT data FROM pg_logical_slot_get_changes('{td_slot}', NULL, NULL, 'include-xids', '1', 'skip-empty-xacts', '1')"
        ));
        std::fs::write(
            out_dir.join(format!("{}.test_decoding", sc.name)),
            format!("{td}\n"),
        )
        .unwrap();
        psql(&format!(
            "SELECT pg_drop_replication_slot('{slot}'); SELECT pg_drop_replication_slot('{td_slot}')"
        ));
        recorded.push(sc.name);
    }
    let readme = format!(
        "# Recordings from PostgreSQL {}\n\nMade by `scripts/record-fixtures.sh` (`cargo run --example record_fixtures`) on a throwaway cluster\nwith `logical_decoding_work_mem = 64kB`, from the SQL in `../scenarios/NAME.sql` (setup before the\nslots were created, workload after; a variant's SQL is its base scenario's). Per scenario: `NAME.pgrec` (the recording), `NAME.jsonl` (its\nexpected decoding by `pgsub decode --input`), `NAME.test_decoding` (the same changes decoded by the\nserver's `test_decoding` plugin, for cross-checking).\n\nScenarios: {}\n",
        bin.version,
        recorded.join(", ")
    );
    std::fs::write(out_dir.join("README.md"), readme).unwrap();
}
