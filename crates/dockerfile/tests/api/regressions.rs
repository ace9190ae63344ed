//! Replays every fuzz regression input (`fuzz/regressions/{parse,expand}/`)
//! through the parser, the typed layer, the printer and the expander: none
//! may panic, and the invariants the fuzz targets check must hold.

use std::fs;
use std::path::Path;

use kiln_dockerfile::instructions::parse_dockerfile;
use kiln_dockerfile::shell::{Lexer, process_words};
use kiln_dockerfile::{parse, print};

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target);
    let mut v: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.display().to_string(),
                fs::read(&p).expect("regression input"),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn parse_regressions() {
    let all = inputs("parse");
    assert!(all.len() >= 3, "expected seeds in fuzz/regressions/parse");
    for (name, data) in all {
        let parsed = parse(&data);
        for d in &parsed.diagnostics {
            assert!(d.line >= 1 && d.column >= 1, "{name}: {d}");
        }
        let _ = parsed.ast.dump();
        let _ = parse_dockerfile(&data);
        if !parsed.has_errors() {
            let again = parse(print(&parsed.ast).as_bytes());
            assert_eq!(
                again.ast.dump(),
                parsed.ast.dump(),
                "{name}: printer round trip"
            );
        }
    }
}

#[test]
fn expand_regressions() {
    let all = inputs("expand");
    assert!(all.len() >= 3, "expected seeds in fuzz/regressions/expand");
    let env = [("A", "x y"), ("EMPTY", "")];
    for (name, data) in all {
        let word = String::from_utf8_lossy(&data);
        for escape in ['\\', '`'] {
            let lexer = Lexer::new(escape);
            if let Ok(words) = lexer.process_words(&word, &env[..]) {
                assert!(words.iter().all(|w| !w.is_empty()), "{name}: empty word");
            }
            let _ = lexer.process_word(&word, &env[..]);
        }
        let _ = process_words(&word, &env[..]);
    }
}
