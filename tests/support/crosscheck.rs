//! An independent check of pgsub's decoding: the same WAL decoded by the server's own
//! `test_decoding` plugin, reduced to committed changes, compared with pgsub's JSON lines
//! reduced the same way (streamed transactions assembled, aborted subtransactions and
//! transactions dropped, prepared transactions taken at PREPARE, as `test_decoding` shows
//! them).

use serde_json::Value;

/// A column value as both decodings can show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    /// SQL NULL.
    Null,
    /// An unchanged TOASTed value that was not sent.
    Unchanged,
    /// The text form.
    Text(String),
    /// A binary value: pgsub has the bytes, test_decoding the text; equal to any text.
    Binary,
}

/// One change, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A row change.
    Row {
        /// `schema.table`.
        table: String,
        /// INSERT, UPDATE or DELETE.
        op: String,
        /// Old key or old row.
        old: Option<Vec<(String, Val)>>,
        /// New row.
        new: Option<Vec<(String, Val)>>,
    },
    /// A table truncated.
    Truncate {
        /// `schema.table`.
        table: String,
        /// RESTART IDENTITY.
        restart: bool,
        /// CASCADE.
        cascade: bool,
    },
    /// A logical decoding message.
    Message {
        /// Transactional or not.
        transactional: bool,
        /// Prefix.
        prefix: String,
        /// Content.
        content: String,
    },
}

fn vals_equal(a: &[(String, Val)], b: &[(String, Val)]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((na, va), (nb, vb))| {
            na == nb
                && (va == vb
                    || matches!(
                        (va, vb),
                        (Val::Binary, Val::Text(_)) | (Val::Text(_), Val::Binary)
                    ))
        })
}

impl Change {
    /// Equality that lets binary values match their text form.
    pub fn matches(&self, other: &Change) -> bool {
        match (self, other) {
            (
                Change::Row {
                    table,
                    op,
                    old,
                    new,
                },
                Change::Row {
                    table: t2,
                    op: o2,
                    old: old2,
                    new: new2,
                },
            ) => {
                let opt = |a: &Option<Vec<_>>, b: &Option<Vec<_>>| match (a, b) {
                    (None, None) => true,
                    (Some(a), Some(b)) => vals_equal(a, b),
                    _ => false,
                };
                table == t2 && op == o2 && opt(old, old2) && opt(new, new2)
            }
            _ => self == other,
        }
    }
}

/// Committed units in order; a non-transactional message is a unit of its own.
pub type Units = Vec<Vec<Change>>;

// ---------- test_decoding ----------

fn parse_value(s: &str) -> (Val, &str) {
    if let Some(rest) = s.strip_prefix('\'') {
        let mut out = String::new();
        let mut chars = rest.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '\'' {
                if let Some((_, '\'')) = chars.peek() {
                    out.push('\'');
                    chars.next();
                    continue;
                }
                return (Val::Text(out), &rest[i + 1..]);
            }
            out.push(c);
        }
        panic!("unterminated quoted value in {s:?}");
    }
    let end = s.find(' ').unwrap_or(s.len());
    let word = &s[..end];
    let v = match word {
        "null" => Val::Null,
        "unchanged-toast-datum" => Val::Unchanged,
        w => Val::Text(w.to_owned()),
    };
    (v, &s[end..])
}

/// `name[type]:value name[type]:value …`, stopping at ` new-tuple:`.
fn parse_columns(mut s: &str) -> (Vec<(String, Val)>, &str) {
    let mut cols = Vec::new();
    loop {
        s = s.trim_start();
        if s.is_empty() || s.starts_with("new-tuple:") {
            return (cols, s);
        }
        let open = s.find('[').unwrap_or_else(|| panic!("no [ in {s:?}"));
        let name = s[..open].to_owned();
        let mut depth = 0;
        let mut close = None;
        for (i, c) in s[open..].char_indices() {
            match c {
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(open + i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let close = close.unwrap_or_else(|| panic!("no ] in {s:?}"));
        let ty = &s[open + 1..close];
        let rest = s[close + 1..]
            .strip_prefix(':')
            .expect("':' after the type");
        let (mut v, rest) = parse_value(rest);
        if ty == "boolean" {
            v = match v {
                Val::Text(t) if t == "true" => Val::Text("t".into()),
                Val::Text(t) if t == "false" => Val::Text("f".into()),
                other => other,
            };
        }
        cols.push((name, v));
        s = rest;
    }
}

/// Parses `test_decoding` output (`include-xids` on, `skip-empty-xacts` on).
pub fn from_test_decoding(text: &str) -> Units {
    let mut units = Vec::new();
    let mut current: Option<Vec<Change>> = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if line.starts_with("BEGIN") {
            current = Some(Vec::new());
        } else if line.starts_with("COMMIT PREPARED") || line.starts_with("ROLLBACK PREPARED") {
            // Already taken at PREPARE.
        } else if line.starts_with("COMMIT") || line.starts_with("PREPARE TRANSACTION") {
            units.push(current.take().expect("COMMIT without BEGIN"));
        } else if let Some(rest) = line.strip_prefix("message: transactional: ") {
            let transactional = rest.starts_with('1');
            let prefix_start = rest.find("prefix: ").expect("prefix") + 8;
            let prefix_end = prefix_start + rest[prefix_start..].find(", sz:").expect("sz");
            let content = &rest[rest.find("content:").expect("content") + 8..];
            let m = Change::Message {
                transactional,
                prefix: rest[prefix_start..prefix_end].to_owned(),
                content: content.to_owned(),
            };
            match current.as_mut() {
                Some(c) if transactional => c.push(m),
                _ => units.push(vec![m]),
            }
        } else if let Some(rest) = line.strip_prefix("table ") {
            let (table, rest) = rest.split_once(": ").expect("table name");
            let (op, rest) = rest.split_once(':').expect("operation");
            let rest = rest.trim_start();
            let c = current.as_mut().expect("change outside a transaction");
            let change = match op {
                "TRUNCATE" => {
                    // One line names every table of the statement: "table a, b: TRUNCATE: …".
                    for t in table.split(", ") {
                        c.push(Change::Truncate {
                            table: t.to_owned(),
                            restart: rest.contains("restart_seqs"),
                            cascade: rest.contains("cascade"),
                        });
                    }
                    continue;
                }
                "INSERT" => Change::Row {
                    table: table.to_owned(),
                    op: op.to_owned(),
                    old: None,
                    new: Some(parse_columns(rest).0),
                },
                "UPDATE" => {
                    let (old, rest) = match rest.strip_prefix("old-key:") {
                        Some(r) => {
                            let (cols, r) = parse_columns(r);
                            (
                                Some(cols),
                                r.trim_start()
                                    .strip_prefix("new-tuple:")
                                    .expect("new-tuple"),
                            )
                        }
                        None => (None, rest),
                    };
                    Change::Row {
                        table: table.to_owned(),
                        op: op.to_owned(),
                        old,
                        new: Some(parse_columns(rest).0),
                    }
                }
                "DELETE" => Change::Row {
                    table: table.to_owned(),
                    op: op.to_owned(),
                    old: Some(parse_columns(rest).0),
                    new: None,
                },
                other => panic!("unknown test_decoding operation {other:?} in {line:?}"),
            };
            current
                .as_mut()
                .expect("change outside a transaction")
                .push(change);
        } else {
            panic!("unexpected test_decoding line {line:?}");
        }
    }
    units
}

// ---------- pgsub JSON lines ----------

fn json_val(v: &Value) -> Val {
    match v {
        Value::Null => Val::Null,
        Value::String(s) => Val::Text(s.clone()),
        Value::Object(o) if o.contains_key("unchanged_toast") => Val::Unchanged,
        Value::Object(o) if o.contains_key("binary") => Val::Binary,
        other => panic!("unexpected column value {other}"),
    }
}

fn json_cols(v: &Value) -> Option<Vec<(String, Val)>> {
    v.as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), json_val(v))).collect())
}

fn json_change(v: &Value) -> Vec<Change> {
    let table = || v["relation"].as_str().expect("relation").to_owned();
    match v["kind"].as_str().unwrap() {
        "insert" => vec![Change::Row {
            table: table(),
            op: "INSERT".into(),
            old: None,
            new: json_cols(&v["new"]),
        }],
        "update" => vec![Change::Row {
            table: table(),
            op: "UPDATE".into(),
            old: json_cols(&v["key"]).or_else(|| json_cols(&v["old"])),
            new: json_cols(&v["new"]),
        }],
        "delete" => vec![Change::Row {
            table: table(),
            op: "DELETE".into(),
            old: json_cols(&v["key"]).or_else(|| json_cols(&v["old"])),
            new: None,
        }],
        "truncate" => v["relations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| Change::Truncate {
                table: t.as_str().unwrap().to_owned(),
                restart: v["restart_identity"] == true,
                cascade: v["cascade"] == true,
            })
            .collect(),
        "message" => vec![Change::Message {
            transactional: v["transactional"] == true,
            prefix: v["prefix"].as_str().unwrap().to_owned(),
            content: v["content"].as_str().unwrap_or("<binary>").to_owned(),
        }],
        _ => Vec::new(),
    }
}

/// Reduces pgsub's JSON lines to committed units.
pub fn from_json_lines(lines: &[Value]) -> Units {
    let mut units = Vec::new();
    let mut current: Option<Vec<Change>> = None;
    // Streamed transactions: top xid → changes tagged with their subxid.
    let mut streams: std::collections::HashMap<u64, Vec<(u64, Change)>> = Default::default();
    let mut block: Option<u64> = None;
    for v in lines {
        let kind = v["kind"].as_str().unwrap();
        let xid = v["xid"].as_u64();
        match kind {
            "begin" | "begin_prepare" => current = Some(Vec::new()),
            "commit" | "prepare" => units.push(current.take().expect("end without begin")),
            "stream_start" => {
                block = xid;
                streams.entry(xid.unwrap()).or_default();
            }
            "stream_stop" => block = None,
            "stream_abort" => {
                let top = xid.unwrap();
                let sub = v["subxid"].as_u64().unwrap();
                if sub == top {
                    streams.remove(&top);
                } else if let Some(changes) = streams.get_mut(&top)
                    && let Some(first) = changes.iter().position(|(s, _)| *s == sub)
                {
                    changes.truncate(first);
                }
            }
            "stream_commit" | "stream_prepare" => {
                let changes = streams.remove(&xid.unwrap()).unwrap_or_default();
                units.push(changes.into_iter().map(|(_, c)| c).collect());
            }
            "commit_prepared" | "rollback_prepared" | "relation" | "type" | "origin" => {}
            _ => {
                let changes = json_change(v);
                if let Some(top) = block {
                    let sub = xid.unwrap_or(top);
                    let s = streams.get_mut(&top).unwrap();
                    s.extend(changes.into_iter().map(|c| (sub, c)));
                } else if let Some(c) = current.as_mut() {
                    c.extend(changes);
                } else {
                    // A non-transactional message.
                    units.push(changes);
                }
            }
        }
    }
    units
}
