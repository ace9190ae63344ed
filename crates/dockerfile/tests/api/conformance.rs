//! Data-driven conformance tests against BuildKit's parser and shell test
//! data in `test_data/` (see `test_data/README.md`).

use std::fs;
use std::path::{Path, PathBuf};

use kiln_dockerfile::parse;
use kiln_dockerfile::shell::Lexer;

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("test_data")
        .join(rel)
}

fn cases(rel: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(data(rel))
        .expect("test data directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

#[test]
fn testfiles_dump_equals_result() {
    let dirs = cases("buildkit-parser/testfiles");
    assert_eq!(dirs.len(), 33);
    let mut failures = Vec::new();
    for dir in dirs {
        let input = fs::read(dir.join("Dockerfile")).expect("Dockerfile");
        let expected = fs::read_to_string(dir.join("result")).expect("result");
        let parsed = parse(&input);
        let errors: Vec<_> = parsed.errors().map(ToString::to_string).collect();
        let got = parsed.ast.dump();
        if !errors.is_empty() || got != expected {
            failures.push(format!(
                "{}: errors {errors:?}\n--- expected\n{expected}--- got\n{got}",
                dir.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn negative_cases_are_rejected() {
    let expect = [
        ("empty_dockerfile", "file with no instructions"),
        ("env_no_value", "ENV must have two arguments"),
        ("only_comments", "file with no instructions"),
        (
            "shykes-nested-json",
            "when using JSON array syntax, arrays must be comprised of strings only",
        ),
    ];
    let dirs = cases("buildkit-parser/negative");
    assert_eq!(dirs.len(), expect.len());
    for (name, message) in expect {
        let input = fs::read(
            data("buildkit-parser/negative")
                .join(name)
                .join("Dockerfile"),
        )
        .expect("Dockerfile");
        let parsed = parse(&input);
        let errors: Vec<_> = parsed.errors().collect();
        assert!(
            errors.iter().any(|d| d.message == message),
            "{name}: expected {message:?}, got {errors:?}"
        );
        for e in errors {
            assert!(e.line >= 1 && e.column >= 1, "{name}: location {e}");
        }
    }
}

#[test]
fn testfile_line_ranges() {
    let input = fs::read(data("buildkit-parser/testfile-line/Dockerfile")).expect("Dockerfile");
    let parsed = parse(&input);
    assert!(!parsed.has_errors(), "{:?}", parsed.diagnostics);
    assert_eq!(parsed.ast.line_range(), Some((5, 31)));
    let lines: Vec<_> = parsed
        .ast
        .nodes
        .iter()
        .map(|n| (&*n.keyword, n.start_line, n.end_line))
        .collect();
    assert_eq!(lines, [("FROM", 5, 5), ("ENV", 11, 12), ("RUN", 17, 31)]);
}

#[test]
fn env_var_table() {
    let text = fs::read_to_string(data("buildkit-shell/envVarTest")).expect("envVarTest");
    let env = ["PWD=/home", "SHELL=bash", "KOREAN=한국어", "NULL="].map(String::from);
    let lexer = Lexer::new('\\');
    let mut checked = 0;
    let mut failures = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.trim().split('|').collect();
        assert_eq!(fields.len(), 3, "line {}", n + 1);
        let (platform, source, expected) = (fields[0].trim(), fields[1].trim(), fields[2].trim());
        if platform == "W" {
            continue;
        }
        checked += 1;
        let got = lexer.process_word(source, &env[..]);
        let ok = match &got {
            Ok(w) => expected != "error" && w == expected,
            Err(_) => expected == "error",
        };
        if !ok {
            failures.push(format!(
                "line {}: {source:?} expected {expected:?}, got {got:?}",
                n + 1
            ));
        }
    }
    assert!(checked > 200, "only {checked} rows");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn words_table() {
    let text = fs::read_to_string(data("buildkit-shell/wordsTest")).expect("wordsTest");
    let lexer = Lexer::new('\\');
    let mut env: Vec<String> = Vec::new();
    let mut checked = 0;
    let mut failures = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            env.push(rest.trim_start_matches(' ').to_owned());
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(fields.len(), 2, "line {}", n + 1);
        let test = fields[0].trim();
        let expected: Vec<&str> = fields[1].trim_start_matches(' ').split(',').collect();
        let got = match lexer.process_words(test, &env[..]) {
            Ok(w) => w,
            Err(_) => vec!["error".to_owned()],
        };
        checked += 1;
        if got != expected {
            failures.push(format!(
                "line {}: {test:?} expected {expected:?}, got {got:?}",
                n + 1
            ));
        }
    }
    assert!(checked >= 20, "only {checked} rows");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
