//! Random trees of hostile symlinks, random sequences of `Root` operations:
//! nothing outside the root is created, changed or removed, and nothing
//! read through the root is the host marker (the harness is shared with the
//! fuzz target `tree_ops`).

mod harness;

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn random_operations_stay_inside_the_root(program in proptest::collection::vec(any::<u8>(), 0..600)) {
        harness::run(&program);
    }
}

/// Programs that walk the known-dangerous shapes on purpose.
#[test]
fn hand_written_programs_stay_inside_the_root() {
    // write through `abs` (-> outside), through `up` (../..), through a
    // planted link to the marker file; chmod/chown/times with each
    // FinalLink; remove_all of paths through links.
    let programs: &[&[u8]] = &[
        // op 1 (write), path: 2 names, absolute, "abs" "passwd"
        &[1, 1, 1, 5, 4, 7],
        &[0, 2, 0, 6, 0, 1, 0],
        &[7, 0, 0, 5, 0, 7, 0, 0, 5, 1, 7, 0, 0, 5, 2],
        &[8, 0, 0, 5, 0, 8, 0, 0, 6, 1, 9, 0, 0, 7, 0],
        &[2, 0, 0, 0, 1, 10, 0, 0, 0],
        &[3, 0, 0, 5, 3, 1, 0, 5, 0, 4, 0, 0, 6],
        &[18, 0, 0, 5, 1, 0, 1, 1, 5, 4],
    ];
    for p in programs {
        harness::run(p);
    }
}

/// The fuzz target's committed inputs (`fuzz/regressions/tree_ops/`),
/// replayed without cargo-fuzz.
#[test]
fn fuzz_regressions_stay_inside_the_root() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/tree_ops");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/regressions/tree_ops") {
        let path = entry.expect("entry").path();
        harness::run(&std::fs::read(&path).expect("read input"));
        n += 1;
    }
    assert!(n > 0, "no inputs in {}", dir.display());
}
