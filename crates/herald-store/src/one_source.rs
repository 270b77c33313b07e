//! One source for every statement: a test that the backends' own directories do not
//! repeat each other's SQL.

use std::collections::BTreeMap;
use std::path::Path;

/// The SQL string literals of the Rust files under `dir`, with `?N` written `$N` and
/// whitespace collapsed, each with the file it is in.
fn statements(dir: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for literal in text.split('"').skip(1).step_by(2) {
            let words: Vec<&str> = literal.split_whitespace().filter(|w| *w != "\\").collect();
            let sql = words.join(" ").replace('?', "$");
            let first = sql.split(' ').next().unwrap_or("");
            if ["SELECT", "INSERT", "UPDATE", "DELETE", "WITH"].contains(&first) && sql.contains(' ') {
                found.insert(sql, path.display().to_string());
            }
        }
    }
    found
}

/// A statement both backends run is written once (in `sql.rs` or `migrations.rs`); the
/// backends' own directories hold only what one of them runs.
#[test]
fn no_statement_is_written_in_both_backends() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let sqlite = statements(&src.join("sqlite"));
    let postgres = statements(&src.join("postgres"));
    assert!(!sqlite.is_empty() && !postgres.is_empty(), "the scan finds the backends' own SQL");
    let twins: Vec<&String> = sqlite.keys().filter(|s| postgres.contains_key(*s)).collect();
    assert!(twins.is_empty(), "written in both backends: {twins:#?}");
}
