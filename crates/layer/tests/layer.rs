//! Public-API tests of kiln-layer that need no root: round trips through
//! diff and apply, whiteouts in delete form, compression and diffID checks,
//! hand-crafted hostile tars, and the replay of fuzz regression inputs.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use common::{RawTar, fingerprint, is_root, names, opts, tar_entries};
use kiln_layer::{
    ApplyOptions, Compression, DiffOptions, Error, LayerWriter, WhiteoutMode, apply_layer,
    diff_dirs, diff_overlay_upper,
};
use sha2::{Digest, Sha256};
use tar::EntryType;
use tempfile::TempDir;

struct Sandbox {
    tmp: TempDir,
    /// The secret's (ctime, ctime_nsec): any chmod, chown, utimes or xattr
    /// reaching it through a link would move it.
    secret_ctime: (i64, i64),
}

impl Sandbox {
    /// `tmp/root` (the apply target) and `tmp/outside/secret`.
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("root")).unwrap();
        fs::create_dir(tmp.path().join("outside")).unwrap();
        let secret = tmp.path().join("outside/secret");
        fs::write(&secret, b"secret").unwrap();
        let m = fs::symlink_metadata(&secret).unwrap();
        Self {
            tmp,
            secret_ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
    fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }
    fn outside(&self) -> PathBuf {
        self.tmp.path().join("outside")
    }
    fn apply(&self, tar: &[u8], o: &ApplyOptions) -> kiln_layer::Result<kiln_layer::ApplyStats> {
        apply_layer(tar, Compression::None, &self.root(), o)
    }
    /// Nothing but `root` and the untouched `outside` exists next to the root.
    fn assert_contained(&self) {
        assert_eq!(names(self.tmp.path()), ["outside", "root"]);
        assert_eq!(names(&self.outside()), ["secret"]);
        let secret = self.outside().join("secret");
        assert_eq!(fs::read(&secret).unwrap(), b"secret");
        let m = fs::symlink_metadata(&secret).unwrap();
        assert_eq!(m.nlink(), 1);
        assert_eq!((m.ctime(), m.ctime_nsec()), self.secret_ctime);
    }
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A tree with one of everything a non-root user can make.
fn make_tree(dir: &Path) {
    fs::create_dir_all(dir.join("etc/deep/er")).unwrap();
    fs::write(dir.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
    fs::write(dir.join("etc/deep/er/f"), vec![7u8; 70_000]).unwrap();
    fs::write(dir.join("suid"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(dir.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::create_dir(dir.join("tmp")).unwrap();
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::write(dir.join("sgid"), b"").unwrap();
    fs::set_permissions(dir.join("sgid"), fs::Permissions::from_mode(0o2711)).unwrap();
    symlink("etc/passwd", dir.join("rel-link")).unwrap();
    symlink("/etc/passwd", dir.join("abs-link")).unwrap();
    fs::hard_link(dir.join("etc/passwd"), dir.join("hard")).unwrap();
    let long_dir = dir.join("l".repeat(90)).join("m".repeat(90));
    fs::create_dir_all(&long_dir).unwrap();
    fs::write(long_dir.join("n".repeat(120)), b"long").unwrap();
    symlink("t".repeat(150), dir.join("long-target")).unwrap();
    fs::hard_link(long_dir.join("n".repeat(120)), dir.join("hard-to-long")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dir.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    xattr::set(dir.join("etc/passwd"), "user.kiln", b"v1").unwrap();
    xattr::set(dir.join("etc"), "user.dir", b"d").unwrap();
    for (i, p) in ["etc/deep/er/f", "etc/deep/er", "etc/deep", "suid"]
        .iter()
        .enumerate()
    {
        let t = filetime(1_500_000_000 + i as i64);
        rustix::fs::utimensat(
            rustix::fs::CWD,
            dir.join(p),
            &t,
            rustix::fs::AtFlags::empty(),
        )
        .unwrap();
    }
}

fn filetime(sec: i64) -> rustix::fs::Timestamps {
    let t = rustix::fs::Timespec {
        tv_sec: sec,
        tv_nsec: 0,
    };
    rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Strips sub-second mtimes (tar headers keep whole seconds) by rewriting
/// every mtime to whole seconds, so fingerprints compare.
fn whole_second_mtimes(dir: &Path) {
    for entry in walk(dir) {
        let m = fs::symlink_metadata(&entry).unwrap();
        rustix::fs::utimensat(
            rustix::fs::CWD,
            &entry,
            &filetime(m.mtime()),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn round_trip_through_every_compression_reproduces_the_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    make_tree(&src);
    whole_second_mtimes(&src);
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let want = fingerprint(&src);
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let w = LayerWriter::new(Vec::new(), c).unwrap();
        let w = diff_dirs(&empty, &src, &DiffOptions::default(), w).unwrap();
        let (digests, blob) = w.finish().unwrap();
        assert_eq!(digests.digest, sha256(&blob));
        let dst = tmp.path().join(format!("dst-{c}"));
        fs::create_dir(&dst).unwrap();
        let o = ApplyOptions {
            expected_diff_id: Some(digests.diff_id.clone()),
            ..opts(WhiteoutMode::Delete)
        };
        let stats = apply_layer(blob.as_slice(), c, &dst, &o).unwrap();
        assert_eq!(stats.diff_id, digests.diff_id);
        assert_eq!(stats.tar_size, digests.uncompressed_size);
        assert_eq!(fingerprint(&dst), want, "compression {c}");
    }
}

#[test]
fn diff_output_is_deterministic_sorted_and_clamped() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, empty) = (tmp.path().join("a"), tmp.path().join("empty"));
    fs::create_dir(&a).unwrap();
    fs::create_dir(&empty).unwrap();
    make_tree(&a);
    let sde = DiffOptions {
        source_date_epoch: Some(1_500_000_001),
        ..Default::default()
    };
    let one = diff_dirs(&empty, &a, &sde, Vec::new()).unwrap();
    let two = diff_dirs(&empty, &a, &sde, Vec::new()).unwrap();
    assert_eq!(one, two);
    let mut ar = tar::Archive::new(one.as_slice());
    let mut paths = Vec::new();
    let mut mtimes = Vec::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        assert!(h.mtime().unwrap() <= 1_500_000_001);
        mtimes.push(h.mtime().unwrap());
        assert_eq!(h.username_bytes().unwrap_or_default(), b"");
        assert_eq!(h.groupname_bytes().unwrap_or_default(), b"");
        let gnu = h.as_gnu().unwrap();
        assert_eq!(gnu.atime, [0; 12]);
        assert_eq!(gnu.ctime, [0; 12]);
        paths.push(e.path().unwrap().into_owned());
    }
    // Older mtimes survive the clamp.
    assert!(mtimes.contains(&1_500_000_000));
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "entries sorted component-wise by path");
}

#[test]
fn excluded_paths_are_left_out_with_their_subtrees_in_both_diffs() {
    let tmp = tempfile::tempdir().unwrap();
    let (upper, empty) = (tmp.path().join("u"), tmp.path().join("empty"));
    fs::create_dir_all(upper.join("proc/sub")).unwrap();
    fs::create_dir_all(upper.join("etc")).unwrap();
    fs::create_dir(&empty).unwrap();
    fs::write(upper.join("proc/sub/f"), "x").unwrap();
    fs::write(upper.join("etc/hostname"), "").unwrap();
    fs::write(upper.join("etc/passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
    fs::write(upper.join("procfile"), "kept").unwrap();
    let opts = DiffOptions {
        exclude: vec![PathBuf::from("proc"), PathBuf::from("etc/hostname")],
        ..Default::default()
    };
    let paths = |tar: &[u8]| -> Vec<String> {
        tar_entries(tar)
            .into_iter()
            .map(|(p, _, _)| p.trim_end_matches('/').to_owned())
            .collect()
    };
    let want = ["etc", "etc/passwd", "procfile"];
    let over = diff_overlay_upper(&upper, &opts, Vec::new()).unwrap();
    assert_eq!(paths(&over), want);
    let dirs = diff_dirs(&empty, &upper, &opts, Vec::new()).unwrap();
    assert_eq!(paths(&dirs), want);
    // Without the exclusions every entry is there.
    let all = diff_overlay_upper(&upper, &DiffOptions::default(), Vec::new()).unwrap();
    assert_eq!(paths(&all).len(), 7);
}

#[test]
fn hardlinks_are_written_once_then_as_links() {
    let tmp = tempfile::tempdir().unwrap();
    let up = tmp.path().join("upper");
    fs::create_dir(&up).unwrap();
    fs::write(up.join("a"), vec![1u8; 10_000]).unwrap();
    fs::hard_link(up.join("a"), up.join("b")).unwrap();
    fs::hard_link(up.join("a"), up.join("c")).unwrap();
    let tar = diff_overlay_upper(&up, &DiffOptions::default(), Vec::new()).unwrap();
    let entries = tar_entries(&tar);
    assert_eq!(
        entries,
        [
            ("a".into(), '0', String::new()),
            ("b".into(), '1', "a".into()),
            ("c".into(), '1', "a".into()),
        ]
    );
    assert!(tar.len() < 10_000 + 5 * 512 + 1024 + 512);
}

#[test]
fn dir_diff_finds_changes_and_whiteouts_and_skips_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
    for d in [&lower, &upper] {
        fs::create_dir_all(d.join("keep/sub")).unwrap();
        fs::create_dir_all(d.join("gone-dir/x")).unwrap();
        fs::write(d.join("keep/same"), b"same").unwrap();
        fs::write(d.join("keep/sub/edited"), b"aaaa").unwrap();
        fs::write(d.join("deleted"), b"bye").unwrap();
        fs::write(d.join("chmod"), b"c").unwrap();
        for p in ["keep/same", "keep/sub/edited", "keep/sub", "keep", "chmod"] {
            rustix::fs::utimensat(
                rustix::fs::CWD,
                d.join(p),
                &filetime(1_000),
                rustix::fs::AtFlags::empty(),
            )
            .unwrap();
        }
    }
    // Same size, same mtime, other content: only a content compare sees it.
    fs::write(upper.join("keep/sub/edited"), b"bbbb").unwrap();
    rustix::fs::utimensat(
        rustix::fs::CWD,
        upper.join("keep/sub/edited"),
        &filetime(1_000),
        rustix::fs::AtFlags::empty(),
    )
    .unwrap();
    fs::remove_file(upper.join("deleted")).unwrap();
    fs::remove_dir_all(upper.join("gone-dir")).unwrap();
    fs::set_permissions(upper.join("chmod"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(upper.join("new"), b"new").unwrap();
    let tar = diff_dirs(&lower, &upper, &DiffOptions::default(), Vec::new()).unwrap();
    let paths: Vec<(String, char)> = tar_entries(&tar)
        .into_iter()
        .map(|(p, t, _)| (p, t))
        .collect();
    assert_eq!(
        paths,
        [
            ("chmod".into(), '0'),
            (".wh.deleted".into(), '0'),
            (".wh.gone-dir".into(), '0'),
            ("keep".into(), '5'),
            ("keep/sub".into(), '5'),
            ("keep/sub/edited".into(), '0'),
            ("new".into(), '0'),
        ]
    );
    // Applied onto a copy of lower, the layer gives upper.
    let merged = tmp.path().join("merged");
    copy_tree(&lower, &merged);
    apply_layer(
        tar.as_slice(),
        Compression::None,
        &merged,
        &opts(WhiteoutMode::Delete),
    )
    .unwrap();
    assert_eq!(names(&merged), names(&upper));
    assert_eq!(fs::read(merged.join("keep/sub/edited")).unwrap(), b"bbbb");
    assert_eq!(
        fs::metadata(merged.join("chmod")).unwrap().mode() & 0o777,
        0o600
    );
}

fn copy_tree(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn delete_mode_whiteouts_remove_lower_files_and_opaque_dirs_keep_new_ones() {
    let sb = Sandbox::new();
    let root = sb.root();
    fs::create_dir_all(root.join("a/sub")).unwrap();
    fs::write(root.join("a/b"), b"b").unwrap();
    fs::write(root.join("a/sub/c"), b"c").unwrap();
    fs::create_dir_all(root.join("o/old")).unwrap();
    fs::write(root.join("o/old-file"), b"x").unwrap();
    let tar = RawTar::default()
        .file("a/.wh.b", b"")
        .file("a/.wh.sub", b"")
        .file("a/.wh.missing", b"")
        .dir("o/")
        .file("o/new", b"new")
        .file("o/.wh..wh..opq", b"")
        .file("nodir/.wh.x", b"")
        .finish();
    let stats = sb.apply(&tar, &opts(WhiteoutMode::Delete)).unwrap();
    assert_eq!(stats.whiteouts, 5);
    assert_eq!(names(&root.join("a")), Vec::<String>::new());
    assert_eq!(names(&root.join("o")), ["new"]);
    assert!(!root.join("nodir").exists());
    sb.assert_contained();
}

#[test]
fn declared_compression_is_checked_against_magic_bytes() {
    let sb = Sandbox::new();
    let tar = RawTar::default().file("f", b"data").finish();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let o = opts(WhiteoutMode::Delete);
    let err = apply_layer(tar.as_slice(), Compression::Gzip, &sb.root(), &o).unwrap_err();
    assert!(matches!(
        err,
        Error::CompressionMismatch {
            declared: Compression::Gzip,
            detected: Compression::None
        }
    ));
    let err = apply_layer(gz.as_slice(), Compression::None, &sb.root(), &o).unwrap_err();
    assert!(matches!(err, Error::CompressionMismatch { .. }));
    assert!(!sb.root().join("f").exists());
    let stats = apply_layer(gz.as_slice(), Compression::Gzip, &sb.root(), &o).unwrap();
    assert_eq!(stats.diff_id, sha256(&tar));
    assert_eq!(fs::read(sb.root().join("f")).unwrap(), b"data");
}

#[test]
fn diff_id_covers_the_whole_stream_and_mismatch_is_an_error() {
    let sb = Sandbox::new();
    let mut tar = RawTar::default().file("f", b"data").finish();
    // Record padding after the end-of-archive blocks counts too.
    tar.extend(std::iter::repeat_n(0, 8192));
    let stats = sb.apply(&tar, &opts(WhiteoutMode::Delete)).unwrap();
    assert_eq!(stats.diff_id, sha256(&tar));
    assert_eq!(stats.tar_size, tar.len() as u64);
    let o = ApplyOptions {
        expected_diff_id: Some(format!("sha256:{}", "0".repeat(64))),
        ..opts(WhiteoutMode::Delete)
    };
    let err = sb.apply(&tar, &o).unwrap_err();
    assert!(
        matches!(err, Error::DiffIdMismatch { ref actual, .. } if *actual == stats.diff_id),
        "{err}"
    );
}

#[test]
fn diff_id_of_a_layer_of_several_hash_chunks_matches_an_independent_hash() {
    // The diffID is hashed in 1 MiB chunks on another thread; a layer of
    // several chunks with an odd tail must hash as one stream.
    let sb = Sandbox::new();
    let big: Vec<u8> = (0..3_500_001u32).map(|i| (i % 241) as u8).collect();
    let tar = RawTar::default()
        .file("a", b"small")
        .file("big", &big)
        .file("z", b"tail")
        .finish();
    let stats = sb.apply(&tar, &opts(WhiteoutMode::Delete)).unwrap();
    assert_eq!(stats.diff_id, sha256(&tar));
    assert_eq!(stats.tar_size, tar.len() as u64);
    assert_eq!(fs::read(sb.root().join("big")).unwrap(), big);
    for c in [Compression::Gzip, Compression::Zstd] {
        let mut w = LayerWriter::new(Vec::new(), c).unwrap();
        w.write_all(&tar).unwrap();
        let (d, blob) = w.finish().unwrap();
        assert_eq!(d.diff_id, sha256(&tar), "{c}");
        let sb = Sandbox::new();
        let stats =
            apply_layer(blob.as_slice(), c, &sb.root(), &opts(WhiteoutMode::Delete)).unwrap();
        assert_eq!(stats.diff_id, d.diff_id, "{c}");
    }
}

#[test]
fn pax_long_names_and_xattrs_are_applied() {
    let sb = Sandbox::new();
    let long = format!("{}/{}", "p".repeat(120), "q".repeat(130));
    let tar = RawTar::default()
        .pax(&[
            ("path", long.as_bytes()),
            ("SCHILY.xattr.user.note", b"hi"),
            ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
        ])
        .file("short-name", b"pax")
        .finish();
    sb.apply(&tar, &opts(WhiteoutMode::Delete)).unwrap();
    let f = sb.root().join(&long);
    assert_eq!(fs::read(&f).unwrap(), b"pax");
    assert!(!sb.root().join("short-name").exists());
    assert_eq!(
        xattr::get(&f, "user.note").unwrap().as_deref(),
        Some(&b"hi"[..])
    );
    if is_root() {
        // Overlay's own xattrs never come from a layer.
        assert_eq!(xattr::get(&f, "trusted.overlay.redirect").unwrap(), None);
    }
}

#[test]
fn user_xattrs_on_symlinks_are_skipped_and_never_reach_the_target() {
    // The kernel refuses user.* xattrs on symlinks; a layer made where they
    // were allowed still unpacks, and nothing lands on the link's target.
    let sb = Sandbox::new();
    let tar = RawTar::default()
        .file("target", b"t")
        .pax(&[("SCHILY.xattr.user.on-link", b"v")])
        .symlink("link", "target")
        .pax(&[("SCHILY.xattr.user.on-link", b"v")])
        .symlink("out", "../outside/secret")
        .finish();
    sb.apply(&tar, &opts(WhiteoutMode::Delete)).unwrap();
    let link = sb.root().join("link");
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(xattr::get(&link, "user.on-link").unwrap(), None);
    assert_eq!(
        xattr::get(sb.root().join("target"), "user.on-link").unwrap(),
        None
    );
    assert_eq!(
        xattr::get(sb.outside().join("secret"), "user.on-link").unwrap(),
        None
    );
    sb.assert_contained();
}

#[test]
fn symlink_times_are_set_on_the_link_not_its_target() {
    let sb = Sandbox::new();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(1);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_000_000_000);
    b.append_data(&mut h, "target", &b"t"[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(EntryType::Symlink);
    h.set_mode(0o777);
    h.set_size(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    b.append_link(&mut h, "link", "target").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(EntryType::Symlink);
    h.set_mode(0o777);
    h.set_size(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    b.append_link(&mut h, "out", "../outside/secret").unwrap();
    let tar = b.into_inner().unwrap();
    sb.apply(&tar, &opts(WhiteoutMode::Delete)).unwrap();
    let link = fs::symlink_metadata(sb.root().join("link")).unwrap();
    assert!(link.file_type().is_symlink());
    assert_eq!(link.mtime(), 1_700_000_000);
    assert_eq!(
        fs::symlink_metadata(sb.root().join("target"))
            .unwrap()
            .mtime(),
        1_000_000_000
    );
    assert_eq!(
        fs::symlink_metadata(sb.root().join("out")).unwrap().mtime(),
        1_700_000_000
    );
    sb.assert_contained();
}

#[test]
fn gnu_sparse_files_unpack_with_holes() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("sparse");
    {
        let f = fs::File::create(&src).unwrap();
        f.set_len(64 << 20).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"start", 0).unwrap();
        f.write_all_at(b"middle", 32 << 20).unwrap();
        f.write_all_at(b"end", (64 << 20) - 3).unwrap();
    }
    let mut b = tar::Builder::new(Vec::new());
    b.sparse(true);
    b.append_path_with_name(&src, "s").unwrap();
    let tar = b.into_inner().unwrap();
    assert!(tar.len() < 1 << 20, "archive stored the holes");
    assert!(
        tar_entries(&tar).iter().any(|(_, t, _)| *t == 'S'),
        "tar-rs wrote a GNU sparse entry"
    );
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    apply_layer(
        tar.as_slice(),
        Compression::None,
        &root,
        &opts(WhiteoutMode::Delete),
    )
    .unwrap();
    let out = root.join("s");
    assert_eq!(fs::read(&out).unwrap(), fs::read(&src).unwrap());
    let m = fs::metadata(&out).unwrap();
    assert_eq!(m.len(), 64 << 20);
    assert!(
        m.blocks() * 512 < 8 << 20,
        "holes kept: {} blocks",
        m.blocks()
    );
}

// ---- hostile archives ----

#[test]
fn pax_sparse_files_of_every_gnu_format_unpack_with_holes() {
    use std::os::unix::fs::FileExt;
    const LEN: u64 = 8 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    {
        let f = fs::File::create(src.join("s")).unwrap();
        f.set_len(LEN).unwrap();
        f.write_all_at(b"start", 0).unwrap();
        f.write_all_at(b"middle", 4 << 20).unwrap();
    }
    let want = fs::read(src.join("s")).unwrap();
    // What GNU tar writes with --format=pax --sparse (the archives Docker
    // and Go never make, but a hand-made layer may hold).
    for version in ["0.0", "0.1", "1.0"] {
        let out = std::process::Command::new("tar")
            .args(["--format=pax", "--sparse"])
            .arg(format!("--sparse-version={version}"))
            .arg("-C")
            .arg(&src)
            .args(["-cf", "-", "s"])
            .output()
            .expect("running GNU tar");
        assert!(out.status.success(), "tar {version}: {out:?}");
        let tar = out.stdout;
        assert!(tar.len() < 1 << 20, "{version}: tar stored the holes");
        let root = tmp.path().join(format!("root-{version}"));
        fs::create_dir(&root).unwrap();
        apply_layer(
            tar.as_slice(),
            Compression::None,
            &root,
            &opts(WhiteoutMode::Delete),
        )
        .unwrap();
        assert_eq!(names(&root), ["s"], "{version}: the real name is used");
        let m = fs::metadata(root.join("s")).unwrap();
        assert_eq!(m.len(), LEN, "{version}");
        assert!(m.blocks() * 512 < 1 << 20, "{version}: holes kept");
        assert!(fs::read(root.join("s")).unwrap() == want, "{version}");
    }

    // A hand-made format 1.0 entry: the map starts the data.
    let mut data = b"2\n0\n5\n9999995\n5\n".to_vec();
    data.resize(512, 0);
    data.extend_from_slice(b"helloworld");
    let tar = RawTar::default()
        .pax(&[
            ("GNU.sparse.major", b"1"),
            ("GNU.sparse.minor", b"0"),
            ("GNU.sparse.name", b"dir/real"),
            ("GNU.sparse.realsize", b"10000000"),
        ])
        .file("GNUSparseFile.0/real", &data)
        .finish();
    let sb = Sandbox::new();
    sb.apply(&tar, &opts(WhiteoutMode::Delete)).unwrap();
    let got = fs::read(sb.root().join("dir/real")).unwrap();
    assert_eq!(got.len(), 10_000_000);
    assert_eq!(
        (&got[..5], &got[9_999_995..]),
        (&b"hello"[..], &b"world"[..])
    );
    assert!(got[5..9_999_995].iter().all(|&b| b == 0));
    assert_eq!(names(&sb.root()), ["dir"]);
    sb.assert_contained();

    // Its real name is as confined as any other.
    let mut empty_map = b"0\n".to_vec();
    empty_map.resize(512, 0);
    let tar = RawTar::default()
        .pax(&[
            ("GNU.sparse.major", b"1"),
            ("GNU.sparse.minor", b"0"),
            ("GNU.sparse.name", b"../outside/pwned"),
            ("GNU.sparse.realsize", b"10"),
        ])
        .file("GNUSparseFile.0/x", &empty_map)
        .finish();
    let sb = Sandbox::new();
    assert!(matches!(
        sb.apply(&tar, &opts(WhiteoutMode::Delete)),
        Err(Error::UnsafePath { .. })
    ));
    sb.assert_contained();
}

#[test]
fn hostile_dotdot_is_refused() {
    for name in ["../outside/pwned", "a/../../outside/pwned", "./../x"] {
        let sb = Sandbox::new();
        let tar = RawTar::default().file(name, b"pwned").finish();
        let err = sb.apply(&tar, &opts(WhiteoutMode::Delete)).unwrap_err();
        assert!(matches!(err, Error::UnsafePath { .. }), "{name}: {err}");
        sb.assert_contained();
    }
    let sb = Sandbox::new();
    let tar = RawTar::default()
        .hardlink("h", "../outside/secret")
        .finish();
    assert!(matches!(
        sb.apply(&tar, &opts(WhiteoutMode::Delete)),
        Err(Error::UnsafePath { .. })
    ));
    let tar = RawTar::default().file(".wh..", b"").finish();
    assert!(matches!(
        sb.apply(&tar, &opts(WhiteoutMode::Delete)),
        Err(Error::UnsafePath { .. })
    ));
    sb.assert_contained();
}

#[test]
fn hostile_absolute_paths_land_inside_the_root() {
    let sb = Sandbox::new();
    let abs = sb.outside().join("pwned");
    let tar = RawTar::default()
        .file(abs.to_str().unwrap(), b"inside")
        .finish();
    sb.apply(&tar, &opts(WhiteoutMode::Delete)).unwrap();
    let inside = sb.root().join(abs.strip_prefix("/").unwrap());
    assert_eq!(fs::read(inside).unwrap(), b"inside");
    sb.assert_contained();
}

#[test]
fn hostile_symlink_to_outside_is_resolved_inside_the_root() {
    let sb = Sandbox::new();
    let out = sb.outside();
    // Absolute and relative symlinks out, then writes through them.
    let tar = RawTar::default()
        .symlink("abs", out.to_str().unwrap())
        .symlink("rel", "../outside")
        .symlink("slash", "/")
        .file("abs/pwned", b"x")
        .file("rel/pwned", b"x")
        .file("slash/etc-pwned", b"inside")
        .finish();
    let res = sb.apply(&tar, &opts(WhiteoutMode::Delete));
    // "abs/pwned" resolves to root/<outside path>, which does not exist.
    assert!(matches!(res, Err(Error::Io { .. })), "{res:?}");
    sb.assert_contained();

    // Through a symlink to "/" the entry lands in the root itself.
    let sb = Sandbox::new();
    let tar = RawTar::default()
        .symlink("slash", "/")
        .symlink("up", "../../../..")
        .file("slash/via-slash", b"inside")
        .file("up/via-up", b"inside")
        .finish();
    sb.apply(&tar, &opts(WhiteoutMode::Delete)).unwrap();
    assert_eq!(fs::read(sb.root().join("via-slash")).unwrap(), b"inside");
    assert_eq!(fs::read(sb.root().join("via-up")).unwrap(), b"inside");
    sb.assert_contained();
}

#[test]
fn hostile_file_over_symlink_replaces_the_link() {
    let sb = Sandbox::new();
    let target = sb.outside().join("secret");
    let tar = RawTar::default()
        .symlink("f", target.to_str().unwrap())
        .file("f", b"overwritten?")
        .finish();
    sb.apply(&tar, &opts(WhiteoutMode::Delete)).unwrap();
    let m = fs::symlink_metadata(sb.root().join("f")).unwrap();
    assert!(m.is_file());
    sb.assert_contained();
}

#[test]
fn hostile_symlink_replaced_by_dir_mid_archive() {
    let sb = Sandbox::new();
    let tar = RawTar::default()
        .symlink("d", sb.outside().to_str().unwrap())
        .dir("d/")
        .file("d/pwned", b"inside")
        .finish();
    sb.apply(&tar, &opts(WhiteoutMode::Delete)).unwrap();
    assert!(fs::symlink_metadata(sb.root().join("d")).unwrap().is_dir());
    assert_eq!(fs::read(sb.root().join("d/pwned")).unwrap(), b"inside");
    sb.assert_contained();
}

#[test]
fn hostile_hardlinks_cannot_reach_outside() {
    let sb = Sandbox::new();
    let secret = sb.outside().join("secret");
    for tar in [
        RawTar::default()
            .hardlink("h", secret.to_str().unwrap())
            .finish(),
        RawTar::default()
            .symlink("s", sb.outside().to_str().unwrap())
            .hardlink("h", "s/secret")
            .finish(),
        RawTar::default()
            .symlink("s", "../outside")
            .hardlink("h", "s/secret")
            .finish(),
    ] {
        let res = sb.apply(&tar, &opts(WhiteoutMode::Delete));
        assert!(matches!(res, Err(Error::Io { .. })), "{res:?}");
        sb.assert_contained();
    }
    // A hardlink to a symlink links the symlink itself, not what it names.
    let sb = Sandbox::new();
    let tar = RawTar::default()
        .symlink("s", secret.to_str().unwrap())
        .hardlink("h", "s")
        .finish();
    sb.apply(&tar, &opts(WhiteoutMode::Delete)).unwrap();
    assert!(
        fs::symlink_metadata(sb.root().join("h"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    sb.assert_contained();
}

#[test]
fn hostile_whiteouts_through_symlinks_stay_inside() {
    let sb = Sandbox::new();
    let tar = RawTar::default()
        .symlink("s", sb.outside().to_str().unwrap())
        .symlink("r", "../outside")
        .file("s/.wh.secret", b"")
        .file("r/.wh.secret", b"")
        .file("r/.wh..wh..opq", b"")
        .finish();
    sb.apply(&tar, &opts(WhiteoutMode::Delete)).unwrap();
    sb.assert_contained();
}

#[test]
fn hostile_devices_are_refused_when_not_allowed() {
    let sb = Sandbox::new();
    let mut raw = RawTar::default();
    raw.entry(b"dev/sda", EntryType::Block, b"", b"", 0o660);
    raw.entry(b"dev/mem", EntryType::Char, b"", b"", 0o660);
    let err = sb
        .apply(&raw.finish(), &opts(WhiteoutMode::Delete))
        .unwrap_err();
    assert!(matches!(err, Error::DeviceNotAllowed { .. }), "{err}");
    assert!(!sb.root().join("dev/sda").exists());
    sb.assert_contained();
}

#[test]
fn hostile_symlink_loops_fail_cleanly() {
    let sb = Sandbox::new();
    let tar = RawTar::default()
        .symlink("a", "b")
        .symlink("b", "a")
        .file("a/x", b"x")
        .finish();
    assert!(sb.apply(&tar, &opts(WhiteoutMode::Delete)).is_err());
    sb.assert_contained();
}

/// Replays every input under fuzz/regressions/unpack: whatever the outcome,
/// nothing may appear outside the root.
#[test]
fn fuzz_regressions_stay_inside_the_root() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/unpack");
    let mut count = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = fs::read(&path).unwrap();
        for mode in [WhiteoutMode::Delete, WhiteoutMode::Overlay] {
            let sb = Sandbox::new();
            let c = Compression::from_magic(&data);
            let _ = apply_layer(data.as_slice(), c, &sb.root(), &opts(mode));
            sb.assert_contained();
        }
        count += 1;
    }
    assert!(count > 0, "no regression inputs in {}", dir.display());
}

#[test]
fn hardlinks_reach_files_of_lower_layers_on_a_merged_tree() {
    let sb = Sandbox::new();
    fs::create_dir(sb.root().join("usr")).unwrap();
    fs::write(sb.root().join("usr/lower"), b"from below").unwrap();
    let tar = RawTar::default()
        .hardlink("usr/alias", "usr/lower")
        .hardlink("/abs-alias", "/usr/lower")
        .file("usr/.wh.lower", b"")
        .finish();
    sb.apply(&tar, &opts(WhiteoutMode::Delete)).unwrap();
    // The whiteout removed one name; the links made before it keep the data.
    assert!(!sb.root().join("usr/lower").exists());
    assert_eq!(
        fs::read(sb.root().join("usr/alias")).unwrap(),
        b"from below"
    );
    let m = fs::metadata(sb.root().join("abs-alias")).unwrap();
    assert_eq!(m.nlink(), 2);
    sb.assert_contained();
}

/// Bytes this thread has read with read(2) and friends so far.
fn thread_rchar() -> u64 {
    let io = fs::read_to_string("/proc/thread-self/io").unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn dir_diff_reads_contents_only_when_size_and_mtime_agree_but_the_inode_differs() {
    const MIB: usize = 1 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
    fs::create_dir(&lower).unwrap();
    fs::create_dir(&upper).unwrap();
    let set_mtime = |p: &Path, t: i64| {
        rustix::fs::utimensat(
            rustix::fs::CWD,
            p,
            &filetime(t),
            rustix::fs::AtFlags::empty(),
        )
        .unwrap()
    };
    // shared: the same inode on both sides (hardlinked): taken on trust.
    fs::write(lower.join("shared"), vec![3u8; 8 * MIB]).unwrap();
    fs::hard_link(lower.join("shared"), upper.join("shared")).unwrap();
    // retimed: same bytes, other mtime: a metadata change, not read.
    // resized: other size: not read.
    for (name, lsize, upper_size) in [("retimed", MIB, MIB), ("resized", MIB, MIB + 1)] {
        fs::write(lower.join(name), vec![4u8; lsize]).unwrap();
        fs::write(upper.join(name), vec![4u8; upper_size]).unwrap();
        set_mtime(&lower.join(name), 1_000);
        set_mtime(
            &upper.join(name),
            if name == "retimed" { 2_000 } else { 1_000 },
        );
    }
    for d in [&lower, &upper] {
        set_mtime(d, 1_000);
    }
    let before = thread_rchar();
    let tar = diff_dirs(&lower, &upper, &DiffOptions::default(), Vec::new()).unwrap();
    let read = thread_rchar() - before;
    let names: Vec<String> = tar_entries(&tar).into_iter().map(|e| e.0).collect();
    assert_eq!(names, ["resized", "retimed"]);
    // The two changed files are archived (2 MiB); `shared` (8 MiB) is not read.
    assert!(read < 3 * MIB as u64, "read {read} bytes");

    // copied: another inode with the same size and mtime: read and compared.
    // Equal contents give no entry; a same-size edit gives one.
    fs::write(lower.join("copied"), vec![5u8; 4 * MIB]).unwrap();
    fs::write(upper.join("copied"), vec![5u8; 4 * MIB]).unwrap();
    let mut edited = vec![6u8; 4 * MIB];
    fs::write(lower.join("edited"), &edited).unwrap();
    edited[3 * MIB] = 7;
    fs::write(upper.join("edited"), &edited).unwrap();
    for name in ["copied", "edited"] {
        set_mtime(&lower.join(name), 1_000);
        set_mtime(&upper.join(name), 1_000);
    }
    for d in [&lower, &upper] {
        set_mtime(d, 1_000);
    }
    let before = thread_rchar();
    let tar = diff_dirs(&lower, &upper, &DiffOptions::default(), Vec::new()).unwrap();
    let read = thread_rchar() - before;
    let names: Vec<String> = tar_entries(&tar).into_iter().map(|e| e.0).collect();
    assert_eq!(names, ["edited", "resized", "retimed"]);
    // Both sides of `copied` and `edited` compared (16 MiB), `edited`
    // archived (4 MiB), `shared` still not read.
    assert!(read >= 16 * MIB as u64, "read {read} bytes");
    assert!(read < 24 * MIB as u64, "read {read} bytes");
}

#[test]
fn id_maps_translate_host_ids_inside_ranges_and_pass_others_through() {
    let map = kiln_model::IdMap {
        uids: vec![
            kiln_model::IdRange {
                container_id: 0,
                host_id: 1000,
                size: 1,
            },
            kiln_model::IdRange {
                container_id: 1,
                host_id: u32::MAX - 9,
                size: 10,
            },
        ],
        gids: Vec::new(),
    };
    assert_eq!(map.container_uid(1000), 0);
    assert_eq!(map.container_uid(999), 999);
    assert_eq!(map.container_uid(1001), 1001);
    assert_eq!(map.container_uid(u32::MAX - 9), 1);
    assert_eq!(map.container_uid(u32::MAX), 10);
    assert_eq!(map.container_gid(1000), 1000);
}

#[test]
fn skipping_devices_leaves_them_out_and_unpacks_the_rest() {
    use std::os::unix::fs::FileTypeExt;
    let sb = Sandbox::new();
    let mut raw = RawTar::default();
    raw.dir("dev/");
    raw.entry(b"dev/sda", EntryType::Block, b"", b"", 0o660);
    raw.entry(b"dev/mem", EntryType::Char, b"", b"", 0o660);
    raw.entry(b"dev/fifo", EntryType::Fifo, b"", b"", 0o600);
    raw.file("dev/after", b"a");
    let tar = raw.finish();
    let want = format!("sha256:{}", hex::encode(Sha256::digest(&tar)));
    for allow_devices in [false, true] {
        let root = sb.root();
        let o = ApplyOptions {
            allow_devices,
            expected_diff_id: Some(want.clone()),
            ..opts(WhiteoutMode::Delete)
        };
        let stats =
            kiln_layer::apply_layer_skipping_devices(tar.as_slice(), Compression::None, &root, &o)
                .unwrap();
        assert_eq!(stats.diff_id, want);
        assert_eq!(stats.entries, 3, "dev/, dev/fifo, dev/after");
        assert!(!root.join("dev/sda").exists());
        assert!(!root.join("dev/mem").exists());
        assert!(
            fs::symlink_metadata(root.join("dev/fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
        assert_eq!(fs::read(root.join("dev/after")).unwrap(), b"a");
        fs::remove_dir_all(root.join("dev")).unwrap();
    }
    sb.assert_contained();
}
