//! The apply backlog the benchmarks share: a table of an int8 key, an int and ~80 bytes of
//! text; `rows` inserts in transactions of 200 rows, updates of half of them and deletes of
//! a quarter by key in transactions of 100 — `rows * 7 / 4` changes.

/// The table's columns.
pub const TABLE: &str = "(id int8 PRIMARY KEY, n int, body text)";

/// The changes of the backlog.
pub fn changes(rows: u64) -> u64 {
    rows + rows / 2 + rows / 4
}

/// The statements that write the backlog into table `bench`, each its own transaction
/// when run by one psql session.
pub fn script(rows: u64) -> String {
    let mut script = String::new();
    for b in 0..rows / 200 {
        script.push_str(&format!(
            "INSERT INTO bench SELECT g, g % 1000, md5(g::text) || md5((g + 1)::text) || repeat('x', 16) \
             FROM generate_series({}, {}) g;\n",
            b * 200 + 1,
            (b + 1) * 200
        ));
    }
    for b in 0..rows / 200 {
        script.push_str(&format!(
            "UPDATE bench SET n = n + 1, body = upper(body) WHERE id BETWEEN {} AND {};\n",
            b * 200 + 1,
            b * 200 + 100
        ));
    }
    for b in 0..rows / 400 {
        script.push_str(&format!(
            "DELETE FROM bench WHERE id BETWEEN {} AND {};\n",
            b * 400 + 301,
            b * 400 + 400
        ));
    }
    script
}

/// What a destination's `table` holds, as one comparable string.
pub fn checksum_sql(table: &str) -> String {
    format!(
        "SELECT count(*) || ':' || coalesce(sum(hashtext(id::text || n::text || body)::int8), 0) FROM {table}"
    )
}
