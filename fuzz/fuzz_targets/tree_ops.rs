//! Fuzz target `tree_ops`: arbitrary bytes become a program of kiln-fs
//! `Root` operations (mkdir -p, write, symlink with hostile targets,
//! remove, rename, link, chmod/chown/times with every `FinalLink`, reads,
//! walks, nested subdir roots) on a tree of links to a marker directory
//! beside the root; afterwards nothing outside the root may have been
//! created, changed or removed, and no read may have returned the marker.
//! The harness is kiln-fs's own (`crates/fs/tests/harness/mod.rs`), which
//! its proptest also runs, so `cargo test -p kiln-fs` covers the same
//! property without cargo-fuzz.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/fs/tests/harness/mod.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    harness::run(data);
});
