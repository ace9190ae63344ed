//! Fuzz target `unpack`: applies arbitrary bytes as a layer (compression
//! detected from the magic bytes, whiteout mode from the first byte) into a
//! root inside a temporary directory, then checks that nothing appeared or
//! changed next to the root, whatever the archive said and whether or not
//! the apply failed. The canary's ctime must not move either: a chmod,
//! chown, utimes or xattr written through a symlink would change it.

#![no_main]

use std::fs;
use std::os::unix::fs::MetadataExt;

use kiln_layer::{ApplyOptions, Compression, WhiteoutMode, apply_layer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let root = tmp.path().join("root");
    fs::create_dir(&root).expect("creating root");
    let canary = tmp.path().join("canary");
    fs::write(&canary, b"canary").expect("writing canary");
    let before = fs::symlink_metadata(&canary).expect("canary metadata");
    let whiteouts = if data.first().is_some_and(|b| b & 1 == 1) {
        WhiteoutMode::Overlay
    } else {
        WhiteoutMode::Delete
    };
    let opts = ApplyOptions {
        whiteouts,
        allow_devices: false,
        preserve_owners: false,
        expected_diff_id: None,
    };
    let _ = apply_layer(data, Compression::from_magic(data), &root, &opts);
    let mut names: Vec<String> = fs::read_dir(tmp.path())
        .expect("listing temporary directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["canary", "root"], "something was created outside the root");
    let canary_meta = fs::symlink_metadata(&canary).expect("canary still there");
    assert!(canary_meta.is_file() && canary_meta.len() == 6, "canary replaced");
    assert_eq!(fs::read(&canary).expect("reading canary"), b"canary");
    assert_eq!(
        (canary_meta.ctime(), canary_meta.ctime_nsec(), canary_meta.ino()),
        (before.ctime(), before.ctime_nsec(), before.ino()),
        "canary's metadata changed"
    );
});
