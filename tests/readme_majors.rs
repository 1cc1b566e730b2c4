//! The README's table of what works from which major is checked against the tests: each
//! test it names exists, and a row's major above 12 is one the test asks for (by the
//! server's version, `version_num() < N0000` and the like, or by starting a cluster of
//! that major), in its own body or in a helper of its file that it calls.

use std::collections::HashMap;

/// Bodies of the functions of a test file, by name (from `fn name(` to the next
/// top-level `fn` or `#[test]`).
fn functions(source: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let starts: Vec<usize> = source
        .match_indices("\nfn ")
        .map(|(i, _)| i + 1)
        .chain(source.starts_with("fn ").then_some(0))
        .collect();
    for &start in &starts {
        let rest = &source[start + 3..];
        let Some(name_end) = rest.find('(') else {
            continue;
        };
        let name = rest[..name_end].trim().to_owned();
        let end = [rest.find("\nfn "), rest.find("\n#[test]")]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(rest.len());
        out.insert(name, rest[..end].to_owned());
    }
    out
}

/// Whether `body` asks for PostgreSQL `major`.
fn gates(body: &str, major: u32) -> bool {
    [
        format!("{major}0000"),
        format!("major_cluster({major})"),
        format!("pg_major({major})"),
    ]
    .iter()
    .any(|g| body.contains(g.as_str()))
}

/// The table's rows: (feature, major, `file::test`).
fn rows(readme: &str) -> Vec<(String, u32, String)> {
    let table = readme
        .split("<!-- majors:begin -->")
        .nth(1)
        .and_then(|t| t.split("<!-- majors:end -->").next())
        .expect("the README has the table between <!-- majors:begin --> and <!-- majors:end -->");
    table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| feature"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 3, "a row of three cells: {l}");
            let major = cells[1]
                .trim_end_matches('+')
                .parse()
                .unwrap_or_else(|_| panic!("a major such as 15+ or 18: {l}"));
            (
                cells[0].to_owned(),
                major,
                cells[2].trim_matches('`').to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_readme_table_of_majors_names_tests_that_exist_and_ask_for_that_major() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let rows = rows(&readme);
    assert!(rows.len() >= 5, "{rows:?}");
    for (feature, major, test) in rows {
        let (file, name) = test
            .split_once("::")
            .unwrap_or_else(|| panic!("{feature}: `file::test`, not {test}"));
        let source = std::fs::read_to_string(format!("{root}/tests/{file}.rs"))
            .unwrap_or_else(|e| panic!("{feature}: tests/{file}.rs: {e}"));
        let fns = functions(&source);
        let body = fns
            .get(name)
            .unwrap_or_else(|| panic!("{feature}: no fn {name} in tests/{file}.rs"));
        let before = &source[..source.find(&format!("fn {name}(")).unwrap()];
        assert!(
            before
                .rfind("#[test]")
                .is_some_and(|t| !before[t..].contains("\nfn ")),
            "{feature}: {test} is not a test"
        );
        if major > 12 {
            let helpers_gate = fns
                .iter()
                .any(|(h, b)| h != name && body.contains(&format!("{h}(")) && gates(b, major));
            assert!(
                gates(body, major) || helpers_gate,
                "{feature}: the README says PostgreSQL {major}, and {test} does not ask for it"
            );
        }
    }
}

#[test]
fn a_row_whose_test_does_not_ask_for_its_major_is_caught() {
    let source =
        "fn helper() { if v < 150000 {} }\n#[test]\nfn a() { helper(); }\n#[test]\nfn b() {}\n";
    let fns = functions(source);
    assert!(gates(&fns["helper"], 15) && !gates(&fns["a"], 15));
    assert!(!gates(&fns["b"], 15));
    let table = "<!-- majors:begin -->\n| feature | source major | test |\n|---|---|---|\n| x | 16+ | `f::a` |\n<!-- majors:end -->";
    assert_eq!(rows(table), vec![("x".to_owned(), 16, "f::a".to_owned())]);
}
