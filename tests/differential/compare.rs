//! Comparing relations as multisets of rows: each row read as the text of `ROW(columns)`
//! under the same output settings on every side, sorted, and merged.

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// Output settings every comparing session uses.
const SETTINGS: &str = "SET extra_float_digits = 3; SET TimeZone = 'UTC'; SET DateStyle = ISO; \
     SET IntervalStyle = postgres; SET bytea_output = hex";

/// Connects a comparing session to `conninfo`.
pub async fn connect(conninfo: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(conninfo, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {conninfo}: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
        .batch_execute(SETTINGS)
        .await
        .expect("comparison settings");
    client
}

/// The rows of `relation` (quoted, qualified), `columns` of each, filtered by `filter`,
/// sorted. `only`: not the rows of inheritance children.
pub async fn rows(
    client: &Client,
    relation: &str,
    only: bool,
    columns: &[String],
    filter: Option<&str>,
) -> Result<Vec<String>, String> {
    let sql = format!(
        "SELECT ROW({})::text FROM {}{relation}{}",
        columns.join(", "),
        if only { "ONLY " } else { "" },
        filter.map(|f| format!(" WHERE {f}")).unwrap_or_default()
    );
    let msgs = client
        .simple_query(&sql)
        .await
        .map_err(|e| format!("{sql}: {e}"))?;
    let mut out: Vec<String> = msgs
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("NULL").to_owned()),
            _ => None,
        })
        .collect();
    out.sort();
    Ok(out)
}

/// What one side lacks and has too many of, compared with `want` (both sorted).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Diff {
    /// Rows of `want` not there (with multiplicity).
    pub missing: Vec<String>,
    /// Rows there that `want` lacks (with multiplicity).
    pub extra: Vec<String>,
}

impl Diff {
    /// Nothing differs.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty()
    }

    /// The first few differences, for a failure message.
    pub fn show(&self, n: usize) -> String {
        let mut s = String::new();
        for r in self.missing.iter().take(n) {
            s.push_str(&format!("\n    missing {r}"));
        }
        for r in self.extra.iter().take(n) {
            s.push_str(&format!("\n    extra   {r}"));
        }
        if self.missing.len() + self.extra.len() > 2 * n {
            s.push_str(&format!(
                "\n    ({} missing and {} extra in all)",
                self.missing.len(),
                self.extra.len()
            ));
        }
        s
    }
}

/// Merges two sorted multisets.
pub fn diff(want: &[String], have: &[String]) -> Diff {
    let (mut i, mut j) = (0, 0);
    let mut d = Diff::default();
    while i < want.len() || j < have.len() {
        match (want.get(i), have.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                d.missing.push(a.clone());
                i += 1;
            }
            (Some(_), Some(b)) => {
                d.extra.push(b.clone());
                j += 1;
            }
            (Some(a), None) => {
                d.missing.push(a.clone());
                i += 1;
            }
            (None, Some(b)) => {
                d.extra.push(b.clone());
                j += 1;
            }
            (None, None) => break,
        }
    }
    d
}

#[test]
fn multiset_diff_counts_duplicates() {
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    let d = diff(&s(&["a", "a", "b", "d"]), &s(&["a", "b", "c", "d", "d"]));
    assert_eq!(d.missing, s(&["a"]));
    assert_eq!(d.extra, s(&["c", "d"]));
    assert!(diff(&s(&["x"]), &s(&["x"])).is_empty());
}
