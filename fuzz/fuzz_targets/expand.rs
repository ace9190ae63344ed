//! Fuzz target: expand arbitrary words with both escape characters, in
//! every lexer mode. Expansion must never panic, and word splitting never
//! yields an empty word.

#![no_main]

use kiln_dockerfile::shell::Lexer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let word = String::from_utf8_lossy(rest);
    let env = [("A", "x y"), ("EMPTY", ""), ("PAT", "*/?")];
    let lexer = Lexer {
        raw_quotes: mode & 1 != 0,
        raw_escapes: mode & 2 != 0,
        skip_process_quotes: mode & 4 != 0,
        skip_unset_env: mode & 8 != 0,
        ..Lexer::new(if mode & 16 != 0 { '`' } else { '\\' })
    };
    if let Ok(e) = lexer.process(&word, &env[..]) {
        assert!(e.words.iter().all(|w| !w.is_empty()));
    }
});
