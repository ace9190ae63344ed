//! `extract_archive` (`docker build`'s ADD of a local tar): the destination
//! directory is the extraction's root, `.wh.` names are plain files, modes
//! keep their special bits, and a truncated archive fails.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use common::RawTar;
use kiln_layer::{Compression, ExtractOptions, Root, extract_archive};
use tar::EntryType;

fn own() -> ExtractOptions {
    ExtractOptions {
        owner: Some((
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        )),
        ..ExtractOptions::default()
    }
}

/// `tmp/rootfs/dest` (the destination) with `tmp/rootfs/elsewhere` beside
/// it inside the image and `tmp/outside` on the host.
fn scene() -> (tempfile::TempDir, Root) {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir_all(tmp.path().join("rootfs/dest")).unwrap();
    fs::create_dir_all(tmp.path().join("rootfs/elsewhere")).unwrap();
    fs::create_dir_all(tmp.path().join("outside")).unwrap();
    let rootfs = Root::open(tmp.path().join("rootfs")).unwrap();
    let dest = rootfs.subdir("/dest").unwrap();
    (tmp, dest)
}

fn empty(p: &Path) -> bool {
    fs::read_dir(p).unwrap().next().is_none()
}

#[test]
fn an_entry_through_an_absolute_link_is_refused_and_writes_nothing_outside_the_destination() {
    let (tmp, dest) = scene();
    let tar = RawTar::default()
        .symlink("lnk", "/elsewhere")
        .file("lnk/x", b"through the link")
        .finish();
    let err = extract_archive(tar.as_slice(), Compression::None, &dest, &own())
        .expect_err("Docker refuses this archive (no /elsewhere in the destination)");
    assert!(err.to_string().contains("lnk/x"), "{err}");
    assert!(
        empty(&tmp.path().join("rootfs/elsewhere")),
        "image's /elsewhere untouched"
    );
    assert!(!tmp.path().join("rootfs/dest/elsewhere").exists());
    assert!(empty(&tmp.path().join("outside")));
    // The same through a link pointing at the host's temporary directory.
    let host = tmp.path().join("outside");
    let tar = RawTar::default()
        .symlink("h", host.to_str().unwrap())
        .file("h/x", b"x")
        .finish();
    assert!(extract_archive(tar.as_slice(), Compression::None, &dest, &own()).is_err());
    assert!(empty(&host));
}

#[test]
fn relative_climbing_links_stay_in_the_destination() {
    let (tmp, dest) = scene();
    let tar = RawTar::default()
        .symlink("up", "../../../..")
        .file("up/x", b"clamped")
        .finish();
    extract_archive(tar.as_slice(), Compression::None, &dest, &own()).unwrap();
    assert_eq!(
        fs::read(tmp.path().join("rootfs/dest/x")).unwrap(),
        b"clamped"
    );
    assert!(!tmp.path().join("rootfs/x").exists());
    assert!(empty(&tmp.path().join("outside")));
}

#[test]
fn whiteout_names_are_plain_files_and_special_bits_are_kept() {
    let (tmp, dest) = scene();
    fs::write(tmp.path().join("rootfs/dest/keep"), b"kept").unwrap();
    let mut t = RawTar::default();
    t.file(".wh.keep", b"");
    t.file(".wh..wh..opq", b"");
    t.entry(b"suid", EntryType::Regular, b"", b"#!/bin/sh\n", 0o4755);
    t.entry(b"sticky", EntryType::Directory, b"", b"", 0o1777);
    t.entry(b"fifo", EntryType::Fifo, b"", b"", 0o600);
    let tar = t.finish();
    let stats = extract_archive(tar.as_slice(), Compression::None, &dest, &own()).unwrap();
    assert_eq!(stats.whiteouts, 0);
    let d = tmp.path().join("rootfs/dest");
    assert_eq!(fs::read(d.join("keep")).unwrap(), b"kept");
    assert!(d.join(".wh.keep").is_file() && d.join(".wh..wh..opq").is_file());
    assert_eq!(
        fs::metadata(d.join("suid")).unwrap().mode() & 0o7777,
        0o4755
    );
    assert_eq!(
        fs::metadata(d.join("sticky")).unwrap().permissions().mode() & 0o7777,
        0o1777
    );
    assert!(
        fs::symlink_metadata(d.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

#[test]
fn a_truncated_archive_fails() {
    let (_tmp, dest) = scene();
    let mut t = RawTar::default();
    t.file("big", &[7u8; 4096]);
    let tar = t.finish();
    // Cut inside the file's data: the header says 4096 bytes.
    let cut = &tar[..512 + 2048];
    let err = extract_archive(cut, Compression::None, &dest, &own()).expect_err("truncated");
    assert!(err.to_string().contains("reading"), "{err}");
    let chain = format!("{:?}", err);
    assert!(chain.contains("ends inside big"), "{chain}");
    // Cut inside a header block.
    assert!(extract_archive(&tar[..300], Compression::None, &dest, &own()).is_err());
}

#[test]
fn hardlinks_resolve_inside_the_destination() {
    let (tmp, dest) = scene();
    fs::write(tmp.path().join("rootfs/target"), b"image file").unwrap();
    let tar = RawTar::default()
        .file("a", b"archive file")
        .hardlink("b", "a")
        .hardlink("c", "/target")
        .finish();
    // `/target` is the destination's, which does not exist.
    assert!(extract_archive(tar.as_slice(), Compression::None, &dest, &own()).is_err());
    let d = tmp.path().join("rootfs/dest");
    assert_eq!(fs::read(d.join("b")).unwrap(), b"archive file");
    assert!(!d.join("c").exists());
    assert_eq!(
        fs::metadata(tmp.path().join("rootfs/target"))
            .unwrap()
            .nlink(),
        1
    );
}
