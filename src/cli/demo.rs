//! `pgsub demo`: the managed procedure end to end on two throwaway local clusters.
//!
//! It plays the managed procedure (`docs/design.md`) with pgsub standing in for
//! `aiven_extras.pg_create_subscription`: a source with `test_table`, `test_table_2` and
//! `test_table_3` and the publications `pub1` and `pub_all_tables`, an empty destination,
//! `pgsub sync` (table definitions, initial copy, streaming) to caught-up, more inserts,
//! updates and deletes, caught-up again, then both sides' rows side by side and the slot.
//! Each pgsub command is shown as it runs (connection strings as a user would type them).
//! The clusters are removed at the end unless `--keep`, which prints how to connect.

use std::process::Command;

use super::args::{Cli, DemoArgs};
use crate::error::{Error, Result};
use pgsub_testkit::install::{self, Plan};
use pgsub_testkit::{Cluster, ClusterError, ClusterOptions, PgBin};

const SOURCE_DB: &str = "test_database";
const DEST_DB: &str = "defaultdb";

const SOURCE_SETUP: &str = "
CREATE TABLE test_table (id INT);
CREATE TABLE test_table_2 (id INT);
CREATE TABLE test_table_3 (id INT);
INSERT INTO test_table VALUES (1), (2);
INSERT INTO test_table_2 VALUES (3), (4);
INSERT INTO test_table_3 VALUES (5), (6);
CREATE PUBLICATION pub1 FOR TABLE test_table WITH (publish='insert,update,delete');
CREATE PUBLICATION pub_all_tables FOR ALL TABLES WITH (publish='insert,update,delete');
";

/// Tables published for updates and deletes need a replica identity; the managed
/// procedure's tables have none, so the demo gives them one before changing rows.
const SOURCE_CHANGES: &str = "
ALTER TABLE test_table ADD PRIMARY KEY (id);
ALTER TABLE test_table_2 REPLICA IDENTITY FULL;
ALTER TABLE test_table_3 ADD PRIMARY KEY (id);
INSERT INTO test_table VALUES (7), (8);
UPDATE test_table SET id = 20 WHERE id = 2;
DELETE FROM test_table WHERE id = 1;
INSERT INTO test_table_2 VALUES (9), (9);
UPDATE test_table_2 SET id = 30 WHERE id = 3;
DELETE FROM test_table_3 WHERE id = 5;
INSERT INTO test_table_3 SELECT g FROM generate_series(100, 109) g;
";

fn section(title: &str) {
    println!("\n== {title}");
}

fn psql(c: &Cluster, db: &str, sql: &str) -> Result<String> {
    c.psql(db, sql)
        .map_err(|e| Error::Config(format!("demo: {e}")))
}

fn pgsub(args: &[&str]) -> Result<()> {
    let shown: Vec<String> = args
        .iter()
        .map(|a| {
            if a.contains(' ') {
                format!("'{a}'")
            } else {
                (*a).to_owned()
            }
        })
        .collect();
    println!("$ pgsub {}", shown.join(" "));
    let exe = std::env::current_exe().map_err(|e| Error::io("finding the pgsub executable", e))?;
    let status = Command::new(exe)
        .args(args)
        .status()
        .map_err(|e| Error::io("running pgsub", e))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "demo: `pgsub {}` failed ({status})",
            args.join(" ")
        )))
    }
}

fn side_by_side(source: &Cluster, dest: &Cluster) -> Result<bool> {
    let mut same = true;
    println!("{:<14} {:<36} {:<36}", "table", "source", "destination");
    for t in ["test_table", "test_table_2", "test_table_3"] {
        let q = format!("SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM {t}");
        let (a, b) = (psql(source, SOURCE_DB, &q)?, psql(dest, DEST_DB, &q)?);
        same &= a == b;
        println!(
            "{t:<14} {a:<36} {b:<36}{}",
            if a == b { "" } else { "  <- differs" }
        );
    }
    Ok(same)
}

/// The server binaries, installed first where they are missing and the demo may (the
/// README's first command works on a fresh machine).
fn server_binaries(no_install: bool) -> Result<PgBin> {
    match PgBin::discover() {
        Ok(bin) => return Ok(bin),
        Err(ClusterError::NoBinaries) => {}
        Err(e) => return Err(Error::Config(format!("demo: {e}"))),
    }
    let missing = "the PostgreSQL server binaries (initdb, pg_ctl, postgres) are not installed \
                   (looked in $PGSUB_PGBIN, PATH, `pg_config --bindir`, /usr/lib/postgresql/*/bin)";
    let plan = install::plan(install::Host::probe());
    let cmds = match plan {
        Plan::Run(cmds) if !no_install => cmds,
        Plan::Run(_) => {
            return Err(Error::Config(format!(
                "demo: {missing}\nTo install them: `{}`, then run the demo again",
                plan.shown()
            )));
        }
        Plan::Tell(what) => {
            return Err(Error::Config(format!(
                "demo: {missing}\nTo install them: {what}"
            )));
        }
    };
    eprintln!(
        "pgsub demo: the PostgreSQL server binaries are not installed; installing them with:\n  {}",
        Plan::Run(cmds.clone()).shown()
    );
    install::run(&cmds).map_err(|e| {
        Error::Config(format!(
            "demo: installing PostgreSQL failed: {e}; install the server packages yourself, or set PGSUB_PGBIN to a directory holding initdb, pg_ctl and postgres"
        ))
    })?;
    PgBin::discover().map_err(|e| Error::Config(format!("demo: after the installation: {e}")))
}

pub(crate) async fn run(_cli: &Cli, args: &DemoArgs) -> Result<()> {
    let bin = server_binaries(args.no_install)?;
    section(&format!(
        "Two throwaway clusters (PostgreSQL {})",
        bin.version
    ));
    let start = |what: &str| {
        Cluster::start(ClusterOptions {
            bin: Some(bin.clone()),
            ..ClusterOptions::default()
        })
        .map_err(|e| Error::Config(format!("demo: starting the {what} cluster: {e}")))
    };
    let source = start("source")?;
    let dest = start("destination")?;
    println!("source       {}", source.conninfo(SOURCE_DB));
    println!("destination  {}", dest.conninfo(DEST_DB));
    psql(&source, "postgres", &format!("CREATE DATABASE {SOURCE_DB}"))?;
    psql(&dest, "postgres", &format!("CREATE DATABASE {DEST_DB}"))?;

    section("Source: the managed procedure's tables, rows and publications");
    print!("{}", SOURCE_SETUP.trim_start());
    psql(&source, SOURCE_DB, SOURCE_SETUP)?;

    let src = source.conninfo(SOURCE_DB);
    let dst = dest.conninfo(DEST_DB);
    let sync = [
        "sync",
        "--source",
        &src,
        "--dest",
        &dst,
        "--publication",
        "pub_all_tables",
        "--slot",
        "slot",
        "--name",
        "subscription",
        "--create-slot",
        "--schema",
        "create",
        "--until",
        "caught-up",
        "-q",
    ];
    section("pgsub stands in for aiven_extras.pg_create_subscription: definitions, copy, stream");
    pgsub(&sync)?;
    let first = side_by_side(&source, &dest)?;

    section("More changes on the source");
    print!("{}", SOURCE_CHANGES.trim_start());
    psql(&source, SOURCE_DB, SOURCE_CHANGES)?;
    section("The same command line catches up again");
    pgsub(&sync[..sync.len() - 1])?;
    let second = side_by_side(&source, &dest)?;

    section("The slot on the source, and pgsub's progress on the destination");
    pgsub(&["slot", "list", "--source", &src])?;
    println!(
        "{}",
        psql(
            &dest,
            DEST_DB,
            "SELECT name || ': slot ' || slot || ', applied up to ' || applied_lsn || ' (source system ' || source_system_id || ')' FROM pgsub.progress"
        )?
    );

    if args.keep {
        let (dir_s, port_s) = source.keep();
        let (dir_d, port_d) = dest.keep();
        section("Kept running");
        println!(
            "source:      psql 'host=127.0.0.1 port={port_s} user=postgres dbname={SOURCE_DB}'   ({})",
            dir_s.display()
        );
        println!(
            "destination: psql 'host=127.0.0.1 port={port_d} user=postgres dbname={DEST_DB}'   ({})",
            dir_d.display()
        );
        println!("stop them with: pg_ctl -D <dir>/data stop, then remove the directories");
    } else {
        section("Removing the clusters (pass --keep to keep them)");
    }
    if first && second {
        println!("\nsource and destination match.");
        Ok(())
    } else {
        Err(Error::Config("demo: source and destination differ".into()))
    }
}
