//! The text of the statements that apply changes, and the COPY text encoding of rows.
//! Pure functions: everything here is tested without a server.
//!
//! Values arrive in the text output format of their type; every statement takes them as
//! `text` (or `text[]`) parameters and casts them to the destination column's type
//! *without* its modifier, so that assigning to the column applies the modifier the way
//! the type's input function does: a value too long for `varchar(5)` is an error, never
//! cut. Under `sync --binary` they arrive in their type's binary format, and the
//! parameters are of that type (`Col::param`): `$1::integer[]`, `$1::integer::integer`;
//! inserts are COPY binary. A plain table is named with `ONLY` (changes never reach inheritance children); a
//! partitioned one without (its partitions hold the rows).
//!
//! ```text
//! INSERT  COPY "s"."t" ("id", "v") FROM STDIN                         one COPY per run
//!  (far)  INSERT INTO "s"."t" ("id", "v") SELECT u.c1::integer, …      pipelined, for a
//!           FROM unnest($1::text[], $2::text[]) AS u(c1, c2)           destination far away
//! UPDATE  UPDATE ONLY "s"."t" AS t SET "v" = u.c2::text               one statement per run
//!           FROM unnest($1::text[], $2::text[]) AS u(c1, c2)           of one shape (the same
//!          WHERE t."id" = u.c1::integer                                columns left unchanged)
//! DELETE  DELETE FROM ONLY "s"."t" AS t USING unnest($1::text[]) AS u(c1)
//!          WHERE t."id" = u.c1::integer
//! FULL    … WHERE (tableoid, ctid) = (SELECT tableoid, ctid FROM ONLY "s"."t"
//!          WHERE "a" = $1::text::integer AND "b" IS NULL LIMIT 1)     exactly one row
//! ```

use super::target::Col;
use super::values::{ValueArray, ValueFormat};

/// Appends `value` in COPY text format (backslash escapes), or `\N` for NULL.
pub fn copy_text_value(value: Option<&[u8]>, out: &mut Vec<u8>) {
    let Some(v) = value else {
        out.extend_from_slice(b"\\N");
        return;
    };
    for &b in v {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.push(b),
        }
    }
}

/// The rows of COPY text as [`copy_text_value`] writes them, column by column into `cols`
/// (`None` for `\N`): the inverse, for the rows of a COPY that failed.
pub fn copy_text_columns(data: &[u8], cols: &mut [ValueArray]) {
    let ncols = cols.len();
    for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        for (i, field) in line.split(|&b| b == b'\t').enumerate().take(ncols) {
            if field == b"\\N" {
                cols[i].push(None);
                continue;
            }
            let mut v = Vec::with_capacity(field.len());
            let mut bytes = field.iter();
            while let Some(&b) = bytes.next() {
                if b != b'\\' {
                    v.push(b);
                    continue;
                }
                match bytes.next() {
                    Some(b'n') => v.push(b'\n'),
                    Some(b'r') => v.push(b'\r'),
                    Some(b't') => v.push(b'\t'),
                    Some(&other) => v.push(other),
                    None => v.push(b'\\'),
                }
            }
            cols[i].push(Some(&v));
        }
    }
}

/// For rows given as one `text[]` parameter per column of `cols`, in the order they were
/// inserted: how many unique indexes the first row that conflicts at all conflicts on
/// (the row the insert stopped at), each index given by the positions of its columns in
/// `cols`; 0 when none does. A NULL conflicts with nothing (unique indexes treat NULLs
/// as distinct by default). 2 or more is PostgreSQL 18's `multiple_unique_conflicts`.
pub fn unique_conflicts(table: &str, only: &str, cols: &[&Col], indexes: &[Vec<usize>]) -> String {
    let hits = indexes
        .iter()
        .map(|index| {
            let matches = index
                .iter()
                .map(|&p| format!("t.{} = u.c{}::{}", cols[p].ident(), p + 1, cols[p].cast))
                .collect::<Vec<_>>()
                .join(" AND ");
            format!("(EXISTS (SELECT FROM {only}{table} AS t WHERE {matches}))::int")
        })
        .collect();
    format!(
        "SELECT coalesce((SELECT h FROM (SELECT {} AS h, u.o FROM {}) AS x \
         WHERE h > 0 ORDER BY o LIMIT 1), 0)",
        sum(hits),
        unnest_numbered(cols)
    )
}

/// For an update run given as `text[]` parameters (the old key at positions `key` of
/// `cols`, then the new values of those at `set`): how many unique indexes the first row
/// whose new values meet another row meets, each index given by the positions of its
/// columns in `cols`; a column the update does not set keeps the row's value. 0 when no
/// row does (nor when the row itself is not found). 2 or more is PostgreSQL 18's
/// `multiple_unique_conflicts`.
pub fn update_unique_conflicts(
    table: &str,
    only: &str,
    cols: &[&Col],
    key: &[usize],
    set: &[usize],
    indexes: &[Vec<usize>],
) -> String {
    let found = key
        .iter()
        .enumerate()
        .map(|(j, &p)| format!("r.{} = u.c{}::{}", cols[p].ident(), j + 1, cols[p].cast))
        .collect::<Vec<_>>()
        .join(" AND ");
    let new_value = |p: usize| match set.iter().position(|&s| s == p) {
        Some(i) => format!("u.c{}::{}", key.len() + i + 1, cols[p].cast),
        None => format!("r.{}", cols[p].ident()),
    };
    let hits = indexes
        .iter()
        .map(|index| {
            let matches = index
                .iter()
                .map(|&p| format!("t.{} = {}", cols[p].ident(), new_value(p)))
                .collect::<Vec<_>>()
                .join(" AND ");
            format!(
                "(EXISTS (SELECT FROM {only}{table} AS t WHERE {matches} \
                 AND (t.tableoid, t.ctid) <> (r.tableoid, r.ctid)))::int"
            )
        })
        .collect();
    format!(
        "SELECT coalesce((SELECT h FROM (SELECT {} AS h, u.o FROM {} \
         JOIN {only}{table} AS r ON {found}) AS x WHERE h > 0 ORDER BY o LIMIT 1), 0)",
        sum(hits),
        unnest_numbered(&params_of(cols, key, set))
    )
}

/// Before a run updates or deletes rows by key (the key's values in the parameters at
/// `at`, 1-based, of `nparams` `text[]` parameters): the rows (by ordinality) whose row
/// on the destination was last written by a transaction of another origin than `own`.
/// A row written by the open transaction has no commit timestamp yet, so no origin, and
/// does not count, as for the built-in worker.
pub fn origin_differs(
    table: &str,
    only: &str,
    keys: &[&Col],
    params: &[&Col],
    at: &[usize],
    own: u32,
) -> String {
    format!(
        "SELECT u.o FROM {} JOIN {only}{table} AS t ON {} \
         WHERE (pg_catalog.pg_xact_commit_timestamp_origin(t.xmin)).roident <> {own} ORDER BY u.o",
        unnest_numbered(params),
        key_matches_at(keys, at.iter().copied())
    )
}

/// `a + b + …` of integer expressions, `0` for none.
fn sum(terms: Vec<String>) -> String {
    if terms.is_empty() {
        "0".to_owned()
    } else {
        terms.join(" + ")
    }
}

/// `$1::text[], $2::text[]` and `c1, c2`: one array parameter for each column of
/// `params`, of its parameter type, and their names.
fn unnest_lists(params: &[&Col]) -> (String, String) {
    let list = params
        .iter()
        .enumerate()
        .map(|(i, c)| format!("${}::{}[]", i + 1, c.param))
        .collect::<Vec<_>>()
        .join(", ");
    let names = (1..=params.len())
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    (list, names)
}

/// The columns whose values an update run's parameters hold: those at `key` (the old
/// key) then those at `set`.
pub fn params_of<'a>(cols: &[&'a Col], key: &[usize], set: &[usize]) -> Vec<&'a Col> {
    key.iter().chain(set).map(|&p| cols[p]).collect()
}

fn list(cols: &[&Col]) -> String {
    cols.iter()
        .map(|c| c.ident())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `COPY table (cols) FROM STDIN`.
pub fn copy_in(table: &str, cols: &[&Col], format: ValueFormat) -> String {
    let binary = match format {
        ValueFormat::Text => "",
        ValueFormat::Binary => " (FORMAT binary)",
    };
    format!("COPY {table} ({}) FROM STDIN{binary}", list(cols))
}

/// `INSERT INTO table (cols) SELECT … FROM unnest($1::type[], …)`: the rows of a run
/// given as one array parameter per column, inserted in their order. What a far
/// destination gets instead of a COPY, which waits for the server's CopyInResponse before
/// its data can go: this is one request, pipelined with the statements around it. Each
/// value is cast to the column's type without its modifier and then assigned, as an
/// update's are; an identity column `GENERATED ALWAYS` takes the source's value, as COPY
/// lets it.
pub fn insert_rows(table: &str, cols: &[&Col]) -> String {
    let overriding = if cols.iter().any(|c| c.identity_always) {
        " OVERRIDING SYSTEM VALUE"
    } else {
        ""
    };
    let values = cols
        .iter()
        .enumerate()
        .map(|(i, c)| format!("u.c{}::{}", i + 1, c.cast))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {table} ({}){overriding} SELECT {values} FROM {}",
        list(cols),
        unnest(cols)
    )
}

fn unnest(params: &[&Col]) -> String {
    let (list, names) = unnest_lists(params);
    format!("unnest({list}) AS u({names})")
}

/// [`unnest`] with the rows numbered `u.o`.
fn unnest_numbered(params: &[&Col]) -> String {
    let (params, names) = unnest_lists(params);
    format!("unnest({params}) WITH ORDINALITY AS u({names}, o)")
}

/// `t.k1 = u.c1::type AND …`: the key columns against the unnest columns `first…`.
fn key_matches(keys: &[&Col], first: usize) -> String {
    key_matches_at(keys, first..)
}

/// [`key_matches`] against the unnest columns numbered `at` (1-based), one per key column.
fn key_matches_at(keys: &[&Col], at: impl IntoIterator<Item = usize>) -> String {
    keys.iter()
        .zip(at)
        .map(|(c, p)| format!("t.{} = u.c{p}::{}", c.ident(), c.cast))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// Set-based update of a run: `keys` match the old key, `set` are assigned. Parameters:
/// one `text[]` per key column, then one per set column.
pub fn update_by_key(table: &str, only: &str, keys: &[&Col], set: &[&Col]) -> String {
    let params: Vec<&Col> = keys.iter().chain(set).copied().collect();
    update_from(table, only, keys, set, &unnest(&params))
}

/// [`update_by_key`] with the rows from `from`.
fn update_from(table: &str, only: &str, keys: &[&Col], set: &[&Col], from: &str) -> String {
    let assignments = set
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} = u.c{}::{}", c.ident(), keys.len() + i + 1, c.cast))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "UPDATE {only}{table} AS t SET {assignments} FROM {from} WHERE {}",
        key_matches(keys, 1)
    )
}

/// `statement` (an UPDATE or DELETE of a run whose unnest is numbered `u.o`, see
/// [`update_by_key_missing`]) made to return what found no row: the ordinals of the run's
/// rows it changed nothing for, in one round trip, so that nothing has to be asked
/// afterwards (and later statements can be sent before it completes). Exact where no row
/// trigger can keep a row.
fn returning_missing(statement: String, params: &[&Col]) -> String {
    let first = params.first().map_or("text", |c| c.param.as_str());
    format!(
        "WITH done AS ({statement} RETURNING u.o) \
         SELECT s.o FROM generate_series(1, cardinality($1::{first}[])) AS s(o) \
         EXCEPT SELECT o FROM done ORDER BY 1"
    )
}

/// [`update_by_key`] returning the ordinals of the rows that found nothing.
pub fn update_by_key_missing(table: &str, only: &str, keys: &[&Col], set: &[&Col]) -> String {
    let params: Vec<&Col> = keys.iter().chain(set).copied().collect();
    let from = unnest_numbered(&params);
    returning_missing(update_from(table, only, keys, set, &from), &params)
}

/// [`delete_by_key`] returning the ordinals of the rows that found nothing.
pub fn delete_by_key_missing(table: &str, only: &str, keys: &[&Col]) -> String {
    returning_missing(
        delete_using(table, only, keys, &unnest_numbered(keys)),
        keys,
    )
}

/// After a run changed fewer rows than it had: the rows (by ordinality) for which no
/// row of the table has any of the keys in `at` (`present` false), or has the first
/// (`present` true). Each element of `at` gives, for each key column, the parameter
/// (1-based) holding the value looked for. Same parameters as the run's statement.
///
/// For an update, a row with neither its old nor its new key in the table found no row
/// (one whose old key is still there was kept by a trigger). For a delete, a row whose
/// key is still there was kept by a trigger, not missing.
pub fn probe(
    table: &str,
    only: &str,
    keys: &[&Col],
    params: &[&Col],
    at: &[Vec<usize>],
    present: bool,
) -> String {
    let exists = |params: &[usize]| {
        format!(
            "EXISTS (SELECT FROM {only}{table} AS t WHERE {})",
            key_matches_at(keys, params.iter().copied())
        )
    };
    let cond = if present {
        exists(&at[0])
    } else {
        at.iter()
            .map(|a| format!("NOT {}", exists(a)))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    format!(
        "SELECT u.o FROM {} WHERE {cond} ORDER BY u.o",
        unnest_numbered(params)
    )
}

/// Set-based delete of a run by key. Parameters: one `text[]` per key column.
pub fn delete_by_key(table: &str, only: &str, keys: &[&Col]) -> String {
    delete_using(table, only, keys, &unnest(keys))
}

/// [`delete_by_key`] with the rows from `using`.
fn delete_using(table: &str, only: &str, keys: &[&Col], using: &str) -> String {
    format!(
        "DELETE FROM {only}{table} AS t USING {using} WHERE {}",
        key_matches(keys, 1)
    )
}

/// One row whose every column equals the old row (REPLICA IDENTITY FULL without a
/// destination key): each column compared with its type's equality, a NULL with
/// `IS NULL`; a table without a key may hold duplicates, of which exactly one is
/// changed. `tableoid` and `ctid` together name one row even across partitions.
/// Parameters `$1…` are the old values that are not NULL, in column order.
fn one_row_equal_to(table: &str, only: &str, all: &[&Col], nulls: &[bool]) -> String {
    let mut p = 0;
    let conds = all
        .iter()
        .zip(nulls)
        .map(|(c, &null)| {
            if null {
                format!("{} IS NULL", c.ident())
            } else {
                p += 1;
                format!("{} = ${p}::{}::{}", c.ident(), c.param, c.cast)
            }
        })
        .collect::<Vec<_>>()
        .join(" AND ");
    format!("(SELECT tableoid, ctid FROM {only}{table} WHERE {conds} LIMIT 1)")
}

/// Update of one row identified by its whole old image. Parameters: the old values
/// that are not NULL, then the new values of `set`.
pub fn update_full(table: &str, only: &str, all: &[&Col], nulls: &[bool], set: &[&Col]) -> String {
    let first = nulls.iter().filter(|n| !**n).count();
    let assignments = set
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "{} = ${}::{}::{}",
                c.ident(),
                first + i + 1,
                c.param,
                c.cast
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "UPDATE {only}{table} SET {assignments} WHERE (tableoid, ctid) = {}",
        one_row_equal_to(table, only, all, nulls)
    )
}

/// Delete of one row identified by its whole old image. Parameters: the old values
/// that are not NULL.
pub fn delete_full(table: &str, only: &str, all: &[&Col], nulls: &[bool]) -> String {
    format!(
        "DELETE FROM {only}{table} WHERE (tableoid, ctid) = {}",
        one_row_equal_to(table, only, all, nulls)
    )
}

/// `TRUNCATE ONLY a, b, …`: never cascading, as the built-in worker replays it; each
/// plain table with its own `ONLY` (its inheritance children are not truncated), a
/// partitioned one without (its partitions are).
pub fn truncate(tables: &[(String, &str)], restart_identity: bool) -> String {
    format!(
        "TRUNCATE {}{} RESTRICT",
        tables
            .iter()
            .map(|(t, only)| format!("{only}{t}"))
            .collect::<Vec<_>>()
            .join(", "),
        if restart_identity {
            " RESTART IDENTITY"
        } else {
            ""
        }
    )
}

/// A TRUNCATE of `tables` that falls back to `DELETE` where the destination refuses it
/// for a foreign key from a table the message also named but that pgsub left out (a table
/// whose copy came later than the TRUNCATE, and so already holds what followed it). The
/// built-in worker reaches the same rows another way: it fails, retries once that table is
/// ready, and then truncates it too and applies its changes again. Under the replica role
/// the `DELETE` fires no foreign-key trigger; `RESTART IDENTITY` restarts the sequences the
/// tables own, as TRUNCATE would.
pub fn truncate_or_delete(tables: &[(String, &str)], restart_identity: bool) -> String {
    let deletes: String = tables
        .iter()
        .map(|(t, only)| format!("DELETE FROM {only}{t}; "))
        .collect();
    let restart = if restart_identity {
        let rels: Vec<String> = tables
            .iter()
            .map(|(t, _)| format!("{}::regclass", crate::protocol::quote::literal(t)))
            .collect();
        format!(
            "FOR s IN SELECT d.objid::regclass FROM pg_catalog.pg_depend d \
             JOIN pg_catalog.pg_class c ON c.oid = d.objid AND c.relkind = 'S' \
             WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refobjid IN ({}) AND d.deptype IN ('a', 'i') \
             LOOP EXECUTE pg_catalog.format('ALTER SEQUENCE %s RESTART', s); END LOOP; ",
            rels.join(", ")
        )
    } else {
        String::new()
    };
    let body = format!(
        "DECLARE s regclass; BEGIN {}; EXCEPTION WHEN feature_not_supported THEN {deletes}{restart}END",
        truncate(tables, restart_identity)
    );
    let mut tag = String::from("$pgsub$");
    while body.contains(&tag) {
        tag.insert(tag.len() - 1, '_');
    }
    format!("DO {tag} {body} {tag}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: &str) -> Col {
        Col {
            name: name.into(),
            cast: ty.into(),
            param: "text".into(),
            type_oid: 0,
            source_type: ty.into(),
            dest_type: ty.into(),
            write: true,
            identity_always: false,
        }
    }

    /// A column whose values arrive in binary: parameters of its own type.
    fn binary_col(name: &str, ty: &str) -> Col {
        Col {
            param: ty.into(),
            ..col(name, ty)
        }
    }

    #[test]
    fn copy_text_reads_back_column_by_column() {
        let mut data = Vec::new();
        for row in [[Some(&b"a\tb\\c"[..]), None], [Some(b"x\ny"), Some(b"\\N")]] {
            for (i, v) in row.iter().enumerate() {
                if i > 0 {
                    data.push(b'\t');
                }
                copy_text_value(*v, &mut data);
            }
            data.push(b'\n');
        }
        let mut cols = vec![ValueArray::default(), ValueArray::default()];
        copy_text_columns(&data, &mut cols);
        assert_eq!(cols[0].get(0), Some(Some(&b"a\tb\\c"[..])));
        assert_eq!(cols[0].get(1), Some(Some(&b"x\ny"[..])));
        assert_eq!(cols[1].get(0), Some(None));
        assert_eq!(cols[1].get(1), Some(Some(&b"\\N"[..])));
    }

    #[test]
    fn unique_conflicts_add_one_exists_per_index() {
        let (k, u) = (col("k", "integer"), col("u", "text"));
        assert_eq!(
            unique_conflicts("s.t", "ONLY ", &[&k, &u], &[vec![0], vec![1, 0]]),
            "SELECT coalesce((SELECT h FROM (SELECT (EXISTS (SELECT FROM ONLY s.t AS t WHERE t.\"k\" = u.c1::integer))::int + \
             (EXISTS (SELECT FROM ONLY s.t AS t WHERE t.\"u\" = u.c2::text AND t.\"k\" = u.c1::integer))::int AS h, u.o \
             FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(c1, c2, o)) AS x WHERE h > 0 ORDER BY o LIMIT 1), 0)"
        );
    }

    #[test]
    fn an_updates_unique_conflicts_take_unset_columns_from_the_row_and_skip_the_row_itself() {
        let (k, u, v) = (col("k", "integer"), col("u", "integer"), col("v", "text"));
        // Key k (old value $1); the update sets k ($2) and v ($3); u keeps the row's.
        assert_eq!(
            update_unique_conflicts(
                "s.t",
                "ONLY ",
                &[&k, &u, &v],
                &[0],
                &[0, 2],
                &[vec![0], vec![1]]
            ),
            "SELECT coalesce((SELECT h FROM (SELECT (EXISTS (SELECT FROM ONLY s.t AS t WHERE t.\"k\" = u.c2::integer \
             AND (t.tableoid, t.ctid) <> (r.tableoid, r.ctid)))::int + (EXISTS (SELECT FROM ONLY s.t AS t WHERE t.\"u\" = r.\"u\" \
             AND (t.tableoid, t.ctid) <> (r.tableoid, r.ctid)))::int AS h, u.o FROM unnest($1::text[], $2::text[], $3::text[]) \
             WITH ORDINALITY AS u(c1, c2, c3, o) JOIN ONLY s.t AS r ON r.\"k\" = u.c1::integer) AS x WHERE h > 0 ORDER BY o LIMIT 1), 0)"
        );
    }

    #[test]
    fn the_origin_probe_finds_rows_by_their_old_key_and_compares_the_last_writers_origin() {
        let k = col("k", "integer");
        assert_eq!(
            origin_differs("s.t", "", &[&k], &[&k, &k], &[1], 7),
            "SELECT u.o FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(c1, c2, o) JOIN s.t AS t ON t.\"k\" = u.c1::integer \
             WHERE (pg_catalog.pg_xact_commit_timestamp_origin(t.xmin)).roident <> 7 ORDER BY u.o"
        );
    }

    #[test]
    fn copy_text_escapes_what_copy_would_misread() {
        let mut out = Vec::new();
        copy_text_value(Some(b"a\tb\nc\\d\re"), &mut out);
        out.push(b'\t');
        copy_text_value(None, &mut out);
        assert_eq!(out, b"a\\tb\\nc\\\\d\\re\t\\N");
    }

    #[test]
    fn identifiers_are_quoted() {
        let c = col("Id", "integer");
        assert_eq!(
            copy_in("t", &[&c], ValueFormat::Text),
            r#"COPY t ("Id") FROM STDIN"#
        );
        assert_eq!(
            copy_in("t", &[&c], ValueFormat::Binary),
            r#"COPY t ("Id") FROM STDIN (FORMAT binary)"#
        );
    }

    #[test]
    fn far_inserts_cast_each_array_without_typmod_and_override_an_identity_always() {
        let id = col("id", "bigint");
        let v = col("v", "character varying");
        assert_eq!(
            insert_rows("t", &[&id, &v]),
            r#"INSERT INTO t ("id", "v") SELECT u.c1::bigint, u.c2::character varying FROM unnest($1::text[], $2::text[]) AS u(c1, c2)"#
        );
        let mut always = col("n", "integer");
        always.identity_always = true;
        assert_eq!(
            insert_rows("t", &[&always]),
            r#"INSERT INTO t ("n") OVERRIDING SYSTEM VALUE SELECT u.c1::integer FROM unnest($1::text[]) AS u(c1)"#
        );
    }

    #[test]
    fn update_by_key_numbers_parameters_keys_first_and_casts_without_typmod() {
        let id = col("id", "bigint");
        let v = col("v", "character varying");
        assert_eq!(
            update_by_key("t", "ONLY ", &[&id], &[&id, &v]),
            r#"UPDATE ONLY t AS t SET "id" = u.c2::bigint, "v" = u.c3::character varying FROM unnest($1::text[], $2::text[], $3::text[]) AS u(c1, c2, c3) WHERE t."id" = u.c1::bigint"#
        );
    }

    #[test]
    fn runs_can_return_the_ordinals_of_their_rows_that_found_nothing() {
        let id = col("id", "bigint");
        let v = col("v", "text");
        assert_eq!(
            update_by_key_missing("t", "ONLY ", &[&id], &[&v]),
            r#"WITH done AS (UPDATE ONLY t AS t SET "v" = u.c2::text FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(c1, c2, o) WHERE t."id" = u.c1::bigint RETURNING u.o) SELECT s.o FROM generate_series(1, cardinality($1::text[])) AS s(o) EXCEPT SELECT o FROM done ORDER BY 1"#
        );
        assert_eq!(
            delete_by_key_missing("t", "", &[&id]),
            r#"WITH done AS (DELETE FROM t AS t USING unnest($1::text[]) WITH ORDINALITY AS u(c1, o) WHERE t."id" = u.c1::bigint RETURNING u.o) SELECT s.o FROM generate_series(1, cardinality($1::text[])) AS s(o) EXCEPT SELECT o FROM done ORDER BY 1"#
        );
    }

    #[test]
    fn probe_of_an_update_run_looks_for_the_new_keys_and_of_a_delete_for_kept_rows() {
        let id = col("id", "bigint");
        assert_eq!(
            probe(
                "t",
                "ONLY ",
                &[&id],
                &[&id, &id, &id],
                &[vec![1], vec![2]],
                false
            ),
            r#"SELECT u.o FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS u(c1, c2, c3, o) WHERE NOT EXISTS (SELECT FROM ONLY t AS t WHERE t."id" = u.c1::bigint) AND NOT EXISTS (SELECT FROM ONLY t AS t WHERE t."id" = u.c2::bigint) ORDER BY u.o"#
        );
        assert!(
            probe("t", "", &[&id], &[&id], &[vec![1]], true)
                .contains("WHERE EXISTS (SELECT FROM t AS t")
        );
    }

    #[test]
    fn binary_values_are_parameters_of_the_columns_own_types() {
        let id = binary_col("id", "bigint");
        let v = binary_col("v", "character varying");
        assert_eq!(
            update_by_key_missing("t", "ONLY ", &[&id], &[&v]),
            r#"WITH done AS (UPDATE ONLY t AS t SET "v" = u.c2::character varying FROM unnest($1::bigint[], $2::character varying[]) WITH ORDINALITY AS u(c1, c2, o) WHERE t."id" = u.c1::bigint RETURNING u.o) SELECT s.o FROM generate_series(1, cardinality($1::bigint[])) AS s(o) EXCEPT SELECT o FROM done ORDER BY 1"#
        );
        assert_eq!(
            delete_full("t", "ONLY ", &[&id, &v], &[false, false]),
            r#"DELETE FROM ONLY t WHERE (tableoid, ctid) = (SELECT tableoid, ctid FROM ONLY t WHERE "id" = $1::bigint::bigint AND "v" = $2::character varying::character varying LIMIT 1)"#
        );
    }

    #[test]
    fn delete_by_composite_key_of_a_partitioned_table_has_no_only() {
        let a = col("a", "integer");
        let b = col("b", "text");
        assert_eq!(
            delete_by_key("t", "", &[&a, &b]),
            r#"DELETE FROM t AS t USING unnest($1::text[], $2::text[]) AS u(c1, c2) WHERE t."a" = u.c1::integer AND t."b" = u.c2::text"#
        );
    }

    #[test]
    fn full_identity_compares_values_by_type_and_nulls_with_is_null() {
        let a = col("a", "integer");
        let b = col("b", "text");
        assert_eq!(
            delete_full("t", "ONLY ", &[&a, &b], &[false, true]),
            r#"DELETE FROM ONLY t WHERE (tableoid, ctid) = (SELECT tableoid, ctid FROM ONLY t WHERE "a" = $1::text::integer AND "b" IS NULL LIMIT 1)"#
        );
        assert_eq!(
            update_full("t", "", &[&a, &b], &[true, false], &[&b]),
            r#"UPDATE t SET "b" = $2::text::text WHERE (tableoid, ctid) = (SELECT tableoid, ctid FROM t WHERE "a" IS NULL AND "b" = $1::text::text LIMIT 1)"#
        );
    }

    #[test]
    fn truncate_never_cascades_and_names_each_plain_table_with_only() {
        assert_eq!(
            truncate(
                &[
                    ("a".into(), "ONLY "),
                    ("p".into(), ""),
                    ("b".into(), "ONLY ")
                ],
                true
            ),
            "TRUNCATE ONLY a, p, ONLY b RESTART IDENTITY RESTRICT"
        );
        assert!(!truncate(&[("a".into(), "ONLY ")], false).contains("CASCADE"));
    }

    #[test]
    fn truncate_or_delete_deletes_when_refused_and_its_quoting_cannot_be_escaped() {
        let plain = truncate_or_delete(&[(r#""s"."a""#.into(), "ONLY ")], false);
        assert!(plain.starts_with("DO $pgsub$ "), "{plain}");
        assert!(plain.ends_with(" $pgsub$"), "{plain}");
        assert!(
            plain.contains("TRUNCATE ONLY \"s\".\"a\" RESTRICT;"),
            "{plain}"
        );
        assert!(
            plain.contains("WHEN feature_not_supported THEN DELETE FROM ONLY \"s\".\"a\"; END"),
            "{plain}"
        );
        assert!(!plain.contains("ALTER SEQUENCE"), "{plain}");
        let restart = truncate_or_delete(&[(r#""it's""#.into(), "")], true);
        assert!(restart.contains(r#"IN ('"it''s"'::regclass)"#), "{restart}");
        assert!(restart.contains("ALTER SEQUENCE %s RESTART"), "{restart}");
        // A name holding the dollar-quote tag gets a longer tag.
        let odd = truncate_or_delete(&[(r#""x$pgsub$y""#.into(), "ONLY ")], false);
        assert!(
            odd.starts_with("DO $pgsub_$ ") && odd.ends_with(" $pgsub_$"),
            "{odd}"
        );
    }
}
