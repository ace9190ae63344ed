//! Root-only tests of kiln-layer: overlay-form whiteouts, device nodes,
//! owners, `security.capability`, and byte-identical re-diff of an applied
//! overlay layer. Run with `cargo test -p kiln-layer --features privileged-tests`.

#![cfg(feature = "privileged-tests")]

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, symlink};
use std::path::Path;

use common::{RawTar, fingerprint, tar_entries};
use kiln_layer::{
    ApplyOptions, Compression, DiffOptions, WhiteoutMode, apply_layer, diff_dirs_mapped,
    diff_overlay_upper, diff_overlay_upper_mapped,
};
use kiln_model::{IdMap, IdRange};
use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, Uid};
use tar::EntryType;

fn overlay_opts() -> ApplyOptions {
    ApplyOptions {
        whiteouts: WhiteoutMode::Overlay,
        ..ApplyOptions::default()
    }
}

fn mknod(p: &Path, kind: FileType, major: u32, minor: u32) {
    rustix::fs::mknodat(
        CWD,
        p,
        kind,
        Mode::from_raw_mode(0o644),
        rustix::fs::makedev(major, minor),
    )
    .unwrap();
}

#[test]
fn overlay_mode_writes_whiteout_devices_and_opaque_xattrs() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = RawTar::default()
        .dir("o/")
        .file("o/.wh..wh..opq", b"")
        .file("o/kept", b"k")
        .file("a/.wh.b", b"")
        .finish();
    let stats = apply_layer(
        tar.as_slice(),
        Compression::None,
        tmp.path(),
        &overlay_opts(),
    )
    .unwrap();
    assert_eq!(stats.whiteouts, 2);
    let wh = fs::symlink_metadata(tmp.path().join("a/b")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert_eq!(
        xattr::get(tmp.path().join("o"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(fs::read(tmp.path().join("o/kept")).unwrap(), b"k");
}

#[test]
fn devices_owners_and_capabilities_are_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, major, minor) in [
        ("dev/null", EntryType::Char, 1, 3),
        ("dev/loop0", EntryType::Block, 7, 0),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.set_mode(0o620);
        h.set_uid(0);
        h.set_gid(6);
        h.set_size(0);
        b.append_data(&mut h, name, std::io::empty()).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o4750);
    h.set_uid(1234);
    h.set_gid(4321);
    h.set_size(3);
    h.set_mtime(1_234_567_890);
    b.append_data(&mut h, "bin/suid", &b"abc"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let cap: [u8; 20] = [
        0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let mut with_cap = RawTar::default();
    with_cap.pax(&[("SCHILY.xattr.security.capability", &cap)]);
    with_cap.file("bin/ping", b"ping");
    let cap_tar = with_cap.finish();

    apply_layer(
        tar.as_slice(),
        Compression::None,
        tmp.path(),
        &overlay_opts(),
    )
    .unwrap();
    apply_layer(
        cap_tar.as_slice(),
        Compression::None,
        tmp.path(),
        &overlay_opts(),
    )
    .unwrap();
    let null = fs::symlink_metadata(tmp.path().join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(
        (
            rustix::fs::major(null.rdev()),
            rustix::fs::minor(null.rdev())
        ),
        (1, 3)
    );
    assert_eq!((null.mode() & 0o7777, null.gid()), (0o620, 6));
    let lp = fs::symlink_metadata(tmp.path().join("dev/loop0")).unwrap();
    assert!(lp.file_type().is_block_device());
    let suid = fs::metadata(tmp.path().join("bin/suid")).unwrap();
    assert_eq!(
        (suid.uid(), suid.gid(), suid.mode() & 0o7777),
        (1234, 4321, 0o4750)
    );
    assert_eq!(suid.mtime(), 1_234_567_890);
    assert_eq!(
        xattr::get(tmp.path().join("bin/ping"), "security.capability")
            .unwrap()
            .as_deref(),
        Some(&cap[..])
    );
}

/// An overlay upper dir as overlayfs leaves it: whiteout devices, an opaque
/// directory, owners, a capability.
fn upper_tree(d: &Path) {
    fs::create_dir_all(d.join("etc/opaque")).unwrap();
    fs::write(d.join("etc/opaque/inside"), b"i").unwrap();
    xattr::set(d.join("etc/opaque"), "trusted.overlay.opaque", b"y").unwrap();
    xattr::set(d.join("etc"), "trusted.overlay.origin", b"junk").unwrap();
    mknod(&d.join("etc/removed"), FileType::CharacterDevice, 0, 0);
    mknod(&d.join("etc/tty"), FileType::CharacterDevice, 5, 0);
    fs::write(d.join("etc/owned"), b"o").unwrap();
    rustix::fs::chownat(
        CWD,
        d.join("etc/owned"),
        Some(Uid::from_raw(99)),
        Some(Gid::from_raw(98)),
        AtFlags::empty(),
    )
    .unwrap();
    let cap: [u8; 20] = [
        0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    xattr::set(d.join("etc/owned"), "security.capability", &cap).unwrap();
    fs::hard_link(d.join("etc/owned"), d.join("owned-too")).unwrap();
    symlink("etc/owned", d.join("sym")).unwrap();
}

#[test]
fn overlay_upper_diff_converts_whiteouts_and_reapplies_byte_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let upper = tmp.path().join("upper");
    fs::create_dir(&upper).unwrap();
    upper_tree(&upper);
    let opts = DiffOptions {
        source_date_epoch: Some(2_000_000_000),
        ..Default::default()
    };
    let tar = diff_overlay_upper(&upper, &opts, Vec::new()).unwrap();
    let entries = tar_entries(&tar);
    let names: Vec<&str> = entries.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(
        names,
        [
            "etc",
            "etc/opaque",
            "etc/opaque/.wh..wh..opq",
            "etc/opaque/inside",
            "etc/owned",
            "etc/.wh.removed",
            "etc/tty",
            "owned-too",
            "sym"
        ]
    );
    assert_eq!(
        entries[7].1, '1',
        "second name of a hardlink is a link entry"
    );
    // No overlay xattrs travel; the capability does.
    let mut ar = tar::Archive::new(tar.as_slice());
    let mut keys = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if let Some(exts) = e.pax_extensions().unwrap() {
            for ext in exts {
                keys.push(ext.unwrap().key().unwrap().to_owned());
            }
        }
    }
    assert_eq!(keys, ["SCHILY.xattr.security.capability"]);

    // Unpacked in overlay form, the layer dir is the upper dir again, and
    // diffing it gives the same bytes.
    let again = tmp.path().join("again");
    fs::create_dir(&again).unwrap();
    apply_layer(tar.as_slice(), Compression::None, &again, &overlay_opts()).unwrap();
    let tar2 = diff_overlay_upper(&again, &opts, Vec::new()).unwrap();
    assert_eq!(tar, tar2);
    let mut a = fingerprint(&upper);
    let b = fingerprint(&again);
    a.retain(|k, _| k != "etc"); // origin xattr is overlay-private
    assert_eq!(a.get("etc/owned"), b.get("etc/owned"));
    // Whiteouts are 0/0 character devices on both sides (their mode is not
    // part of a layer).
    assert!(b["etc/removed"].starts_with("chr 0 "));
    assert!(a["etc/removed"].starts_with("chr 0 "));
}

fn lget(p: &Path, name: &str) -> Option<Vec<u8>> {
    // The xattr crate's `get` is lgetxattr: it does not follow a symlink.
    xattr::get(p, name).unwrap()
}

#[test]
fn symlink_xattrs_are_diffed_and_applied_without_following() {
    let tmp = tempfile::tempdir().unwrap();
    let upper = tmp.path().join("upper");
    fs::create_dir(&upper).unwrap();
    fs::write(upper.join("target"), b"t").unwrap();
    symlink("target", upper.join("link")).unwrap();
    symlink("/nonexistent/dangling", upper.join("dangling")).unwrap();
    xattr::set(upper.join("link"), "trusted.kiln.sym", b"on-link").unwrap();
    xattr::set(upper.join("link"), "security.kiln", b"sec").unwrap();
    xattr::set(upper.join("dangling"), "trusted.kiln.sym", b"dangles").unwrap();
    assert_eq!(lget(&upper.join("target"), "trusted.kiln.sym"), None);

    let opts = DiffOptions::default();
    let tar = diff_overlay_upper(&upper, &opts, Vec::new()).unwrap();
    // The records sit on the symlinks' entries, none on the target's.
    let mut per_entry = Vec::new();
    let mut ar = tar::Archive::new(tar.as_slice());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut keys = Vec::new();
        if let Some(exts) = e.pax_extensions().unwrap() {
            for ext in exts {
                keys.push(ext.unwrap().key().unwrap().to_owned());
            }
        }
        per_entry.push((e.path().unwrap().display().to_string(), keys));
    }
    assert_eq!(
        per_entry,
        [
            (
                "dangling".to_owned(),
                vec!["SCHILY.xattr.trusted.kiln.sym".to_owned()]
            ),
            (
                "link".to_owned(),
                vec![
                    "SCHILY.xattr.security.kiln".to_owned(),
                    "SCHILY.xattr.trusted.kiln.sym".to_owned()
                ]
            ),
            ("target".to_owned(), vec![]),
        ]
    );

    for mode in [WhiteoutMode::Overlay, WhiteoutMode::Delete] {
        let again = tmp.path().join(format!("again-{mode:?}"));
        fs::create_dir(&again).unwrap();
        let o = ApplyOptions {
            whiteouts: mode,
            ..ApplyOptions::default()
        };
        apply_layer(tar.as_slice(), Compression::None, &again, &o).unwrap();
        assert!(
            fs::symlink_metadata(again.join("link"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            lget(&again.join("link"), "trusted.kiln.sym").as_deref(),
            Some(&b"on-link"[..])
        );
        assert_eq!(
            lget(&again.join("link"), "security.kiln").as_deref(),
            Some(&b"sec"[..])
        );
        assert_eq!(lget(&again.join("target"), "trusted.kiln.sym"), None);
        assert_eq!(
            lget(&again.join("dangling"), "trusted.kiln.sym").as_deref(),
            Some(&b"dangles"[..])
        );
        // Diffing the unpacked tree gives the same bytes.
        assert_eq!(diff_overlay_upper(&again, &opts, Vec::new()).unwrap(), tar);
    }
}

#[test]
fn symlink_xattrs_never_land_on_what_the_link_points_to() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    fs::create_dir(&root).unwrap();
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), b"s").unwrap();
    let secret = outside.join("secret");
    let abs = secret.to_str().unwrap().to_owned();
    let mut t = RawTar::default();
    t.file("inside", b"i");
    for (name, target) in [
        ("to-inside", "inside"),
        ("to-outside-abs", abs.as_str()),
        ("to-outside-rel", "../outside/secret"),
    ] {
        t.pax(&[("SCHILY.xattr.trusted.evil", b"x")]);
        t.symlink(name, target);
    }
    // A device and a fifo take xattrs the same way.
    t.pax(&[("SCHILY.xattr.trusted.evil", b"fifo")]);
    t.entry(b"pipe", EntryType::Fifo, b"", b"", 0o600);
    let tar = t.finish();
    apply_layer(tar.as_slice(), Compression::None, &root, &overlay_opts()).unwrap();
    for name in ["to-inside", "to-outside-abs", "to-outside-rel"] {
        assert_eq!(
            lget(&root.join(name), "trusted.evil").as_deref(),
            Some(&b"x"[..]),
            "{name}"
        );
    }
    assert_eq!(
        lget(&root.join("pipe"), "trusted.evil").as_deref(),
        Some(&b"fifo"[..])
    );
    assert_eq!(lget(&root.join("inside"), "trusted.evil"), None);
    assert_eq!(lget(&secret, "trusted.evil"), None);
    assert_eq!(fs::read(&secret).unwrap(), b"s");
}

#[test]
fn dir_diff_sees_an_xattr_added_to_an_unchanged_symlink() {
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
    for d in [&lower, &upper] {
        fs::create_dir(d).unwrap();
        symlink("somewhere", d.join("link")).unwrap();
        let t = rustix::fs::Timespec {
            tv_sec: 1_600_000_000,
            tv_nsec: 0,
        };
        let ts = rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        };
        for p in [d.join("link"), d.to_path_buf()] {
            rustix::fs::utimensat(CWD, &p, &ts, AtFlags::SYMLINK_NOFOLLOW).unwrap();
        }
    }
    let unchanged =
        kiln_layer::diff_dirs(&lower, &upper, &DiffOptions::default(), Vec::new()).unwrap();
    assert!(tar_entries(&unchanged).is_empty());
    xattr::set(upper.join("link"), "trusted.kiln", b"new").unwrap();
    let changed =
        kiln_layer::diff_dirs(&lower, &upper, &DiffOptions::default(), Vec::new()).unwrap();
    let names: Vec<String> = tar_entries(&changed).into_iter().map(|e| e.0).collect();
    assert_eq!(names, ["link"]);
}

/// (path, uid, gid) of every entry of a layer tar.
fn tar_owners(bytes: &[u8]) -> Vec<(String, u64, u64)> {
    let mut ar = tar::Archive::new(bytes);
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path().unwrap().display().to_string(),
                h.uid().unwrap(),
                h.gid().unwrap(),
            )
        })
        .collect()
}

fn lchown(p: &Path, uid: u32, gid: u32) {
    rustix::fs::chownat(
        CWD,
        p,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

#[test]
fn id_mapped_diffs_record_container_ids_and_keep_unmapped_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
    fs::create_dir(&lower).unwrap();
    fs::create_dir_all(upper.join("home")).unwrap();
    fs::write(upper.join("home/new"), b"n").unwrap();
    fs::write(upper.join("host-root"), b"h").unwrap();
    fs::write(upper.join("past-the-range"), b"p").unwrap();
    symlink("new", upper.join("home/link")).unwrap();
    // As `--userns` leaves them: container root is host 1000000000.
    lchown(&upper.join("home"), 1_000_000_000, 1_000_000_000);
    lchown(&upper.join("home/new"), 1_000_001_000, 1_000_000_050);
    lchown(&upper.join("home/link"), 1_000_000_007, 1_000_000_008);
    lchown(&upper.join("host-root"), 0, 0);
    lchown(&upper.join("past-the-range"), 1_000_065_536, 999_999_999);
    let remap = IdMap {
        uids: vec![IdRange {
            container_id: 0,
            host_id: 1_000_000_000,
            size: 65_536,
        }],
        gids: vec![IdRange {
            container_id: 0,
            host_id: 1_000_000_000,
            size: 65_536,
        }],
    };
    let want: Vec<(String, u64, u64)> = [
        ("home", 0, 0),
        ("home/link", 7, 8),
        ("home/new", 1000, 50),
        ("host-root", 0, 0),
        ("past-the-range", 1_000_065_536, 999_999_999),
    ]
    .iter()
    .map(|(p, u, g)| (p.to_string(), *u, *g))
    .collect();
    let opts = DiffOptions::default();
    let tar = diff_overlay_upper_mapped(&upper, &opts, &remap, Vec::new()).unwrap();
    assert_eq!(tar_owners(&tar), want);
    let tar = diff_dirs_mapped(&lower, &upper, &opts, &remap, Vec::new()).unwrap();
    assert_eq!(tar_owners(&tar), want);
    // Without a map the host ids are recorded, as before.
    let tar = diff_overlay_upper(&upper, &opts, Vec::new()).unwrap();
    assert!(tar_owners(&tar).contains(&("home/new".to_owned(), 1_000_001_000, 1_000_000_050)));

    // Rootless: container root is the caller (1000), ids 1.. its subuid range.
    let rootless = IdMap {
        uids: vec![
            IdRange {
                container_id: 0,
                host_id: 1000,
                size: 1,
            },
            IdRange {
                container_id: 1,
                host_id: 100_000,
                size: 65_536,
            },
        ],
        gids: vec![IdRange {
            container_id: 0,
            host_id: 1000,
            size: 1,
        }],
    };
    lchown(&upper.join("home"), 1000, 1000);
    lchown(&upper.join("home/new"), 100_000, 1000);
    lchown(&upper.join("home/link"), 165_535, 1001);
    let tar = diff_overlay_upper_mapped(&upper, &opts, &rootless, Vec::new()).unwrap();
    let got = tar_owners(&tar);
    assert_eq!(got[0], ("home".to_owned(), 0, 0));
    assert_eq!(got[1], ("home/link".to_owned(), 65_536, 1001));
    assert_eq!(got[2], ("home/new".to_owned(), 1, 0));
}
