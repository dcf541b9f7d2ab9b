//! Tidy checks on the source tree: every module says what it is for, every top-level module
//! says what it may not do, and no two files of `src/` depend on each other.

#[path = "tidy/imports.rs"]
mod imports;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every file under `src/`, by its path relative to `src/` (with `/`), with its text.
fn sources() -> BTreeMap<String, String> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    assert!(files.len() > 10, "the walk found the source tree");
    files
        .iter()
        .map(|path| {
            let relative = path.strip_prefix(src()).unwrap();
            let key = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            (key, fs::read_to_string(path).unwrap())
        })
        .collect()
}

/// The leading `//!` lines of a file.
fn module_doc(text: &str) -> String {
    text.lines()
        .take_while(|line| line.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_module_starts_with_a_doc_comment() {
    let undocumented: Vec<String> = sources()
        .into_iter()
        .filter(|(_, text)| !text.trim_start().starts_with("//!"))
        .map(|(path, _)| path)
        .collect();
    assert!(
        undocumented.is_empty(),
        "modules without a leading `//!` doc: {undocumented:#?}"
    );
}

#[test]
fn every_top_level_module_says_what_it_may_not_do() {
    let top_level = |path: &str| {
        let parts: Vec<&str> = path.split('/').collect();
        match parts.as_slice() {
            ["lib.rs" | "main.rs"] => false,
            [_] => true,
            [_, "mod.rs"] => true,
            _ => false,
        }
    };
    let silent: Vec<String> = sources()
        .into_iter()
        .filter(|(path, text)| {
            top_level(path) && !module_doc(text).contains("**Architecture invariant")
        })
        .map(|(path, _)| path)
        .collect();
    assert!(
        silent.is_empty(),
        "top-level modules whose `//!` doc has no `**Architecture invariant:**` paragraph \
         saying what the module may not do: {silent:#?}"
    );
}

#[test]
fn no_import_cycles_between_files() {
    let graph = imports::file_graph(&sources(), env!("CARGO_PKG_NAME")).unwrap();
    let mut report = String::new();
    for tangle in imports::tangles(&graph) {
        report += &format!("\nfiles that depend on each other: {}\n", tangle.join(", "));
        for cycle in imports::cycles_in(&graph, &tangle) {
            report += &format!("  {}\n", cycle.join(" -> "));
            for pair in cycle.windows(2) {
                let names: Vec<&str> = graph[&pair[0]][&pair[1]]
                    .iter()
                    .map(String::as_str)
                    .collect();
                report += &format!("      {} -> {}: {}\n", pair[0], pair[1], names.join(", "));
            }
        }
    }
    assert!(
        report.is_empty(),
        "import cycles between files of src/ (a child should import an item from the file \
         that defines it, and a mod.rs that re-exports its children must not define items \
         they use):\n{report}"
    );
}
