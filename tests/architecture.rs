//! The module map of `docs/architecture.md`, checked against the code: every top-level
//! module of `src/` sits in one row, and imports (`crate::…` paths outside comments) only
//! go to rows below its own. An import that goes up or sideways fails here, naming the
//! file and line, so the map and the code cannot drift apart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The rows of the map, top first.
const ROWS: &[&[&str]] = &[
    &["cli"],
    &["bench"],
    &["sync"],
    &["apply"],
    &["replicate"],
    &["verify", "status", "handoff"],
    &["source", "dest", "state", "output", "sequences"],
    &["error"],
    &["pg"],
    &["conn"],
    &["stream"],
    &["pgoutput"],
    &["protocol"],
    &["record"],
    &["conninfo"],
    &["lsn", "failpoint"],
];

fn row_of(module: &str) -> Option<usize> {
    ROWS.iter().position(|r| r.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `crate::NAME` paths of one line of code (nothing in a comment).
fn imports(line: &str) -> Vec<&str> {
    let code = line.split("//").next().unwrap_or("");
    code.match_indices("crate::")
        .map(|(i, _)| {
            let rest = &code[i + "crate::".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|m| !m.is_empty())
        .collect()
}

#[test]
fn every_module_imports_only_from_the_rows_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut unplaced = BTreeMap::new();
    let mut upward = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("a component");
        let module = first
            .as_os_str()
            .to_str()
            .expect("utf-8")
            .trim_end_matches(".rs");
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(row) = row_of(module) else {
            unplaced.insert(module.to_owned(), rel.display().to_string());
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read");
        for (n, line) in text.lines().enumerate() {
            for target in imports(line) {
                if target == module {
                    continue;
                }
                match row_of(target) {
                    Some(t) if t > row => {}
                    Some(_) => upward.push(format!(
                        "{}:{}: {module} (row {}) imports {target} (row {})",
                        rel.display(),
                        n + 1,
                        row + 1,
                        row_of(target).map_or(0, |r| r + 1)
                    )),
                    None => {
                        unplaced.insert(target.to_owned(), rel.display().to_string());
                    }
                }
            }
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules missing from the map (add them to ROWS and docs/architecture.md): {unplaced:?}"
    );
    assert!(
        upward.is_empty(),
        "imports against the map:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_map_in_the_docs_names_every_row() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md"))
            .expect("docs/architecture.md");
    let mut at = 0;
    for row in ROWS {
        for m in *row {
            let found = [format!(" {m}/"), format!(" {m}.rs")]
                .iter()
                .filter_map(|needle| doc[at..].find(needle.as_str()))
                .min();
            assert!(
                found.is_some(),
                "docs/architecture.md does not show {m} at or below the row before it"
            );
        }
        // The next row starts below the first module of this one.
        let first = row[0];
        at += [format!(" {first}/"), format!(" {first}.rs")]
            .iter()
            .filter_map(|needle| doc[at..].find(needle.as_str()))
            .min()
            .unwrap_or(0);
    }
}

#[test]
fn imports_are_read_from_code_not_comments() {
    assert_eq!(imports("use crate::pg::Row; // crate::cli"), vec!["pg"]);
    assert!(imports("//! see crate::stream").is_empty());
}
