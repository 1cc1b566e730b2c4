//! Fuzz target for the SQL text pgsub builds from names it did not choose: the apply
//! statements (`COPY`, set-based `UPDATE`/`DELETE`, the probes, the REPLICA IDENTITY FULL
//! forms, `TRUNCATE` and its `DELETE` fallback in a `DO` block, the count of unique
//! indexes a failed insert hit), the replication commands
//! (`CREATE_REPLICATION_SLOT`, `START_REPLICATION` with its publication list) and the
//! quoting functions themselves. Names come from the input (any UTF-8 but NUL, which no
//! PostgreSQL name holds), mixed with reserved words, quotes, backslashes and dollar
//! signs. Each statement is built twice, with the fuzzed names and with placeholders,
//! and the two must lex to the same structure, the names only inside quotes where they
//! belong (`pgsub_fuzz::sql_lex`); every quoted name and literal must read back as given.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pgsub::Lsn;
use pgsub::conn::replication::{
    SlotFeatures, SnapshotAction, create_slot_command, start_replication_command,
};
use pgsub::fuzzing::{Col, sql};
use pgsub::pgoutput::options::{RequestedOptions, StreamOptions};
use pgsub::protocol::quote::{ident, literal, qualified, replication_literal};
use pgsub_fuzz::sql_lex::{Dialect, Token, lex, same_shape};
use pgsub_fuzz::{Rng, carve};

/// Names an attacker would try, and words the grammar reserves.
const TRICKY: &[&str] = &[
    "select",
    "from",
    "where",
    "user",
    "table",
    "ONLY",
    "t",
    "u",
    "o",
    "c1",
    "\"",
    "'",
    "\\",
    "$1",
    "$pgsub$",
    "$$",
    "a\"b",
    "it's",
    "x'; DROP TABLE t; --",
    "ü",
    "名前",
    "E'",
    "\u{feff}",
    " ",
    "\n",
    "/*",
    "--",
];

/// Type names as `format_type` writes them: what `Col::cast` holds.
const CASTS: &[&str] = &[
    "integer",
    "text",
    "character varying",
    "timestamp with time zone",
    "numeric",
    "integer[]",
    "public.\"My Type\"",
    "\"ünï\".\"cödé\"",
    "bit varying",
];

struct Names {
    fuzzed: Vec<String>,
    placeholders: Vec<String>,
}

impl Names {
    fn pairs(&self) -> Vec<(String, String)> {
        self.placeholders
            .iter()
            .cloned()
            .zip(self.fuzzed.iter().cloned())
            .collect()
    }
}

fn names(data: &[u8], rng: &mut Rng) -> Names {
    let mut fuzzed = Vec::new();
    for part in carve(data) {
        let mut s: String = String::from_utf8_lossy(part).replace('\0', "");
        if rng.below(3) == 0 {
            s.push_str(TRICKY[rng.below(TRICKY.len())]);
        }
        if s.is_empty() {
            s = TRICKY[rng.below(TRICKY.len())].to_owned();
        }
        fuzzed.push(s);
    }
    while fuzzed.len() < 4 {
        fuzzed.push(TRICKY[rng.below(TRICKY.len())].to_owned());
    }
    fuzzed.truncate(12);
    let placeholders = (0..fuzzed.len()).map(|i| format!("n{i}")).collect();
    Names {
        fuzzed,
        placeholders,
    }
}

fn col(name: &str, cast: &str) -> Col {
    Col {
        name: name.to_owned(),
        cast: cast.to_owned(),
        source_type: cast.to_owned(),
        dest_type: cast.to_owned(),
        write: true,
        identity_always: false,
    }
}

/// Every statement, built from `n` (table schema, table name, then columns).
fn statements(n: &[String], casts: &[&str], shape: &Shape) -> Vec<(Dialect, String)> {
    let table = qualified(&n[0], &n[1]);
    let cols: Vec<Col> = n[2..]
        .iter()
        .zip(casts)
        .map(|(name, cast)| col(name, cast))
        .collect();
    let refs: Vec<&Col> = cols.iter().collect();
    let (keys, set) = refs.split_at(shape.keys.min(refs.len()));
    let only = if shape.only { "ONLY " } else { "" };
    let nulls: Vec<bool> = (0..refs.len()).map(|i| shape.nulls >> i & 1 == 1).collect();
    let nparams = keys.len() + set.len();
    let at: Vec<Vec<usize>> = vec![(1..=keys.len()).collect(), (1..=keys.len()).rev().collect()];
    let second = qualified(&n[1], &n[0]);
    let tables = vec![(table.clone(), only), (second, "")];
    let mut out = vec![
        sql::copy_in(&table, &refs),
        sql::update_full(&table, only, &refs, &nulls, set),
        sql::delete_full(&table, only, &refs, &nulls),
        sql::truncate(&tables, shape.restart),
        sql::truncate_or_delete(&tables, shape.restart),
        sql::unique_conflicts(
            &table,
            only,
            &refs,
            &[vec![0], (0..refs.len()).rev().collect()],
        ),
    ];
    if !keys.is_empty() {
        out.push(sql::update_by_key(&table, only, keys, set));
        out.push(sql::delete_by_key(&table, only, keys));
        out.push(sql::probe(&table, only, keys, nparams, &at, shape.present));
    }
    let mut out: Vec<(Dialect, String)> = out.into_iter().map(|s| (Dialect::Sql, s)).collect();
    let options = StreamOptions::negotiate(
        180000,
        &RequestedOptions {
            publication_names: n[2..].to_vec(),
            ..Default::default()
        },
    )
    .expect("version 4 options for a PostgreSQL 18 server");
    out.push((
        Dialect::Replication,
        start_replication_command(&n[0], Lsn(0x16_B374_D848), &options),
    ));
    out.push((
        Dialect::Replication,
        create_slot_command(
            shape.server,
            &n[1],
            shape.only,
            SnapshotAction::Export,
            SlotFeatures {
                two_phase: shape.restart,
                failover: shape.present,
            },
        ),
    ));
    out
}

struct Shape {
    keys: usize,
    only: bool,
    nulls: u64,
    restart: bool,
    present: bool,
    server: u32,
}

fuzz_target!(|data: &[u8]| {
    let mut rng = Rng::from_input(data);
    let names = names(data, &mut rng);
    let casts: Vec<&str> = (0..names.fuzzed.len())
        .map(|_| CASTS[rng.below(CASTS.len())])
        .collect();
    let shape = Shape {
        keys: 1 + rng.below(3),
        only: rng.below(2) == 0,
        nulls: rng.next_u64(),
        restart: rng.below(2) == 0,
        present: rng.below(2) == 0,
        server: [140000, 150000, 170000][rng.below(3)],
    };

    // The quoting functions read back as given.
    for name in &names.fuzzed {
        assert_eq!(
            lex(&ident(name), Dialect::Sql),
            Ok(vec![Token::Ident(name.clone())])
        );
        assert_eq!(
            lex(&literal(name), Dialect::Sql),
            Ok(vec![Token::Str(name.clone())])
        );
        assert_eq!(
            lex(&replication_literal(name), Dialect::Replication),
            Ok(vec![Token::Str(name.clone())])
        );
    }

    let fuzzed = statements(&names.fuzzed, &casts, &shape);
    let reference = statements(&names.placeholders, &casts, &shape);
    let pairs = names.pairs();
    for ((dialect, f), (_, r)) in fuzzed.iter().zip(&reference) {
        let tf = lex(f, *dialect).unwrap_or_else(|e| panic!("{e}: {f}"));
        let tr = lex(r, *dialect).unwrap_or_else(|e| panic!("the reference: {e}: {r}"));
        if let Err(e) = same_shape(&tf, &tr, &pairs) {
            panic!("{e}\n  built: {f}\n  reference: {r}");
        }
    }
});
