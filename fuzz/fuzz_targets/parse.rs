//! Fuzz target: parse arbitrary bytes. The parser, the typed layer, the dump
//! and the printer must never panic; diagnostics must have a location; a
//! valid parse must print back to text that parses to the same dump.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = kiln_dockerfile::parse(data);
    for d in &parsed.diagnostics {
        assert!(d.line >= 1 && d.column >= 1 && d.end_line >= d.line, "{d}");
    }
    let dump = parsed.ast.dump();
    let _ = kiln_dockerfile::instructions::parse_dockerfile(data);
    if !parsed.has_errors() {
        let printed = kiln_dockerfile::print(&parsed.ast);
        let again = kiln_dockerfile::parse(printed.as_bytes());
        assert_eq!(again.ast.dump(), dump, "printer round trip");
    }
});
