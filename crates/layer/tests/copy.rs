//! `docker cp` and `docker export` through kiln-layer: stat and archive a
//! path inside a container root (entry names as Docker's, the final link
//! followed only for `/` and `/.`, links resolved inside the root, never to
//! the host), Docker's destination rules (`plan_copy`, cases A to J of
//! moby's `docker_cli_cp_*` tests), and `extract_copy` (no escape, no
//! directory/non-directory overwrite, owners).

mod common;

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use common::RawTar;
use kiln_layer::{
    CopyDest, CopyError, CopyOwner, CopyPlan, Error, Root, archive_path, archive_tree, base_name,
    dir_name, extract_copy, link_target, plan_copy, stat_path,
};
use tar::EntryType;

/// `tmp/rootfs`: a container root with `/etc/shadow` ("container"), a
/// directory `/dir1` with two files, and links: `leak -> <host marker>`
/// (an absolute host path), `up -> ../../../../..`, `shadow ->
/// /etc/shadow`, `dangling -> /nowhere/x`; `tmp/host/secret` is the host
/// marker, whose path also exists inside the root holding "container copy".
struct Scene {
    tmp: tempfile::TempDir,
    root: Root,
}

fn scene() -> Scene {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    let host = tmp.path().join("host");
    fs::create_dir_all(rootfs.join("etc")).unwrap();
    fs::create_dir_all(rootfs.join("dir1/sub")).unwrap();
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("secret"), "HOST SECRET\n").unwrap();
    fs::write(rootfs.join("etc/shadow"), "container\n").unwrap();
    fs::write(rootfs.join("dir1/file1-1"), "file1-1\n").unwrap();
    fs::write(rootfs.join("dir1/sub/deep"), "deep\n").unwrap();
    let inner = rootfs.join(host.strip_prefix("/").unwrap());
    fs::create_dir_all(&inner).unwrap();
    fs::write(inner.join("secret"), "container copy\n").unwrap();
    symlink(host.join("secret"), rootfs.join("leak")).unwrap();
    symlink(host.as_path(), rootfs.join("leakdir")).unwrap();
    symlink("../../../../../../..", rootfs.join("up")).unwrap();
    symlink("/etc/shadow", rootfs.join("shadow")).unwrap();
    symlink("/nowhere/x", rootfs.join("dangling")).unwrap();
    symlink("dir1", rootfs.join("dirlink")).unwrap();
    let root = Root::open(&rootfs).unwrap();
    Scene { tmp, root }
}

/// (name, type, link target, contents) of every entry of a tar.
fn entries(tar: &[u8]) -> Vec<(String, EntryType, String, String)> {
    let mut a = tar::Archive::new(tar);
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let kind = e.header().entry_type();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default();
        let mut data = String::new();
        e.read_to_string(&mut data).unwrap();
        out.push((name, kind, link, data));
    }
    out
}

fn names(tar: &[u8]) -> Vec<String> {
    entries(tar).into_iter().map(|e| e.0).collect()
}

#[test]
fn stat_path_keeps_a_final_link_unless_the_path_ends_in_a_slash() {
    let s = scene();
    let st = stat_path(&s.root, "/shadow").unwrap();
    assert!(st.is_symlink());
    assert_eq!(st.name, "shadow");
    assert_eq!(st.link_target.as_deref(), Some("/etc/shadow"));
    // A directory link with a trailing slash is the directory.
    let st = stat_path(&s.root, "dirlink/").unwrap();
    assert!(st.is_dir());
    assert_eq!(st.link_target, None);
    // A file with a trailing slash is not a directory.
    let err = stat_path(&s.root, "/etc/shadow/").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotADirectory, "{err}");
    // Missing.
    let err = stat_path(&s.root, "/nope").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    // `..` never climbs out: cleaned against the container's `/`.
    let st = stat_path(&s.root, "../../../../etc/shadow").unwrap();
    assert_eq!((st.name.as_str(), st.size), ("shadow", 10));
}

#[test]
fn link_targets_resolve_inside_the_root_and_may_dangle() {
    let s = scene();
    let host_secret = s.tmp.path().join("host/secret");
    // The host path, as a path inside the container.
    assert_eq!(
        link_target(&s.root, "/leak").unwrap(),
        host_secret.to_str().unwrap()
    );
    assert_eq!(link_target(&s.root, "/up").unwrap(), "/");
    assert_eq!(link_target(&s.root, "/dangling").unwrap(), "/nowhere/x");
    assert_eq!(link_target(&s.root, "/dirlink").unwrap(), "/dir1");
    // A chain: a link through a link.
    symlink("/dirlink/file1-1", s.root.path().join("chain")).unwrap();
    assert_eq!(link_target(&s.root, "chain").unwrap(), "/dir1/file1-1");
}

#[test]
fn a_file_is_archived_under_the_name_asked() {
    let s = scene();
    let tar = archive_path(&s.root, "/dir1/file1-1", "file1-1", &[], None, Vec::new()).unwrap();
    let e = entries(&tar);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, "file1-1");
    assert_eq!(e[0].1, EntryType::Regular);
    assert_eq!(e[0].3, "file1-1\n");
    // Renamed (`-L`: the link's name for its target's content).
    let tar = archive_path(&s.root, "/etc/shadow", "shadow-link", &[], None, Vec::new()).unwrap();
    assert_eq!(names(&tar), ["shadow-link"]);
}

#[test]
fn a_directory_is_archived_with_its_tree_and_its_contents_under_dot() {
    let s = scene();
    let tar = archive_path(&s.root, "/dir1", "dir1", &[], None, Vec::new()).unwrap();
    assert_eq!(
        names(&tar),
        ["dir1", "dir1/file1-1", "dir1/sub", "dir1/sub/deep"]
    );
    let tar = archive_path(&s.root, "/dir1/.", ".", &[], None, Vec::new()).unwrap();
    assert_eq!(names(&tar), [".", "file1-1", "sub", "sub/deep"]);
    // A link with a trailing slash: the directory it leads to, under the
    // link's name.
    let tar = archive_path(&s.root, "/dirlink/", "dirlink", &[], None, Vec::new()).unwrap();
    assert_eq!(names(&tar)[0], "dirlink");
    assert_eq!(names(&tar).len(), 4);
    // The root itself: its entries.
    let tar = archive_path(&s.root, "/", "rootfs", &[], None, Vec::new()).unwrap();
    assert!(names(&tar).contains(&"rootfs/etc/shadow".to_owned()));
    // Kernel filesystems of a running container: left out below the
    // object, refused as the object.
    let skip = ["dir1/sub".into()];
    let tar = archive_path(&s.root, "/", "rootfs", &skip, None, Vec::new()).unwrap();
    assert!(!names(&tar).iter().any(|n| n.starts_with("rootfs/dir1/sub")));
    assert!(names(&tar).contains(&"rootfs/dir1/file1-1".to_owned()));
    let tar = archive_path(&s.root, "/dir1/.", ".", &skip, None, Vec::new()).unwrap();
    assert_eq!(names(&tar), [".", "file1-1"]);
    let skip_etc = ["etc".into()];
    let tar = archive_path(&s.root, "/.", ".", &skip_etc, None, Vec::new()).unwrap();
    assert!(!names(&tar).iter().any(|n| n.starts_with("etc")));
    assert!(names(&tar).contains(&"dir1/file1-1".to_owned()));
    let err = archive_path(&s.root, "/dir1/sub/deep", "deep", &skip, None, Vec::new()).unwrap_err();
    assert!(err.to_string().contains("archiving"), "{err}");
}

#[test]
fn a_link_is_archived_as_a_link_never_as_the_host_file() {
    let s = scene();
    let tar = archive_path(&s.root, "/leak", "leak", &[], None, Vec::new()).unwrap();
    let e = entries(&tar);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].1, EntryType::Symlink);
    assert!(e[0].3.is_empty());
    // `-L`: the caller archives the link's target, resolved in the root:
    // the container's copy, never the host's file.
    let target = link_target(&s.root, "/leak").unwrap();
    let tar = archive_path(&s.root, &target, "leak", &[], None, Vec::new()).unwrap();
    let e = entries(&tar);
    assert_eq!(e[0].3, "container copy\n");
    // Through a directory link to the host and a `..` chain: the same.
    let tar = archive_path(&s.root, "/leakdir/secret", "secret", &[], None, Vec::new()).unwrap();
    assert_eq!(entries(&tar)[0].3, "container copy\n");
    let tar = archive_path(&s.root, "/up/etc/shadow", "shadow", &[], None, Vec::new()).unwrap();
    assert_eq!(entries(&tar)[0].3, "container\n");
    // Gone from the container: an error, not the host file.
    fs::remove_file(
        s.root
            .path()
            .join(s.tmp.path().strip_prefix("/").unwrap())
            .join("host/secret"),
    )
    .unwrap();
    let err = archive_path(&s.root, &target, "leak", &[], None, Vec::new()).unwrap_err();
    let Error::Io { source, .. } = err else {
        panic!("{err}")
    };
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn export_archives_every_entry_below_the_root_without_the_root() {
    let s = scene();
    let tar = archive_tree(&s.root, &[], None, Vec::new()).unwrap();
    let n = names(&tar);
    assert_eq!(n[0], "dangling");
    assert!(n.contains(&"dir1/sub/deep".to_owned()));
    assert!(n.contains(&"etc/shadow".to_owned()));
    assert!(!n.iter().any(|x| x == "." || x == "./" || x.is_empty()));
    let e = entries(&tar);
    let leak = e.iter().find(|e| e.0 == "leak").unwrap();
    assert_eq!(leak.1, EntryType::Symlink);
    // Left out with their subtrees.
    let tar = archive_tree(
        &s.root,
        &["dir1/sub".into(), "etc".into()],
        None,
        Vec::new(),
    )
    .unwrap();
    let n = names(&tar);
    assert!(n.contains(&"dir1/file1-1".to_owned()));
    assert!(
        !n.iter()
            .any(|x| x.starts_with("dir1/sub") || x.starts_with("etc"))
    );
}

fn dest(path: &str, exists: bool, is_dir: bool) -> CopyDest {
    CopyDest {
        path: path.to_owned(),
        exists,
        is_dir,
    }
}

fn plan(dir: &str, name: &str) -> Result<CopyPlan, CopyError> {
    Ok(CopyPlan {
        dir: dir.to_owned(),
        name: name.to_owned(),
    })
}

/// moby's cases A to J (`docker_cli_cp_from_container_test.go`).
#[test]
fn plan_copy_follows_dockers_cases() {
    // A: a file to a new name.
    assert_eq!(
        plan_copy("file1", false, &dest("/t/itWorks.txt", false, false)),
        plan("/t", "itWorks.txt")
    );
    // B: a file to a missing directory.
    assert_eq!(
        plan_copy("file1", false, &dest("/t/testDir/", false, false)),
        Err(CopyError::DirNotExists)
    );
    // C: a file over a file.
    assert_eq!(
        plan_copy("file1", false, &dest("/t/file2", true, false)),
        plan("/t", "file2")
    );
    // D: a file into a directory, with or without a slash.
    assert_eq!(
        plan_copy("file1", false, &dest("/t/dir1", true, true)),
        plan("/t/dir1", "file1")
    );
    assert_eq!(
        plan_copy("file1", false, &dest("/t/dir1/", true, true)),
        plan("/t/dir1/", "file1")
    );
    // E: a directory to a new name.
    assert_eq!(
        plan_copy("dir1", true, &dest("/t/testDir", false, false)),
        plan("/t", "testDir")
    );
    assert_eq!(
        plan_copy("dir1", true, &dest("/t/testDir/", false, false)),
        plan("/t", "testDir")
    );
    // F: a directory over a file.
    assert_eq!(
        plan_copy("dir1", true, &dest("/t/file1", true, false)),
        Err(CopyError::CannotCopyDir)
    );
    // G: a directory into a directory.
    assert_eq!(
        plan_copy("dir1", true, &dest("/t/dir2", true, true)),
        plan("/t/dir2", "dir1")
    );
    // H: a directory's contents to a new name.
    assert_eq!(
        plan_copy(".", true, &dest("/t/testDir", false, false)),
        plan("/t", "testDir")
    );
    // I: a directory's contents over a file.
    assert_eq!(
        plan_copy(".", true, &dest("/t/file1", true, false)),
        Err(CopyError::CannotCopyDir)
    );
    // J: a directory's contents into a directory.
    assert_eq!(
        plan_copy(".", true, &dest("/t/dir2", true, true)),
        plan("/t/dir2", ".")
    );
    assert_eq!(
        CopyError::CannotCopyDir.to_string(),
        "cannot copy directory"
    );
    assert_eq!(CopyError::DirNotExists.to_string(), "no such directory");
}

#[test]
fn base_and_dir_names_split_as_docker_does() {
    assert_eq!(base_name("/dir1/."), ".");
    assert_eq!(base_name("/dir1/"), "dir1");
    assert_eq!(base_name("file"), "file");
    assert_eq!(base_name("/"), "/");
    assert_eq!(dir_name("/dir1/."), "/dir1");
    assert_eq!(dir_name("/a/b/"), "/a");
    assert_eq!(dir_name("/a"), "/");
    assert_eq!(dir_name("b"), ".");
    assert_eq!(dir_name("/."), "/");
}

fn tar_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    build(&mut b);
    b.into_inner().unwrap()
}

fn file(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &str, uid: u64) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_size(data.len() as u64);
    h.set_mode(0o640);
    h.set_uid(uid);
    h.set_gid(uid);
    b.append_data(&mut h, name, data.as_bytes()).unwrap();
}

fn dir(b: &mut tar::Builder<Vec<u8>>, name: &str) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(EntryType::Directory);
    h.set_size(0);
    h.set_mode(0o755);
    b.append_data(&mut h, name, std::io::empty()).unwrap();
}

#[test]
fn extract_copy_never_writes_through_a_link_to_the_host() {
    let s = scene();
    let host = s.tmp.path().join("host");
    // The tree's own link to a host directory, then an archive entry below
    // it: lands in the container's copy of that path.
    let tar = tar_of(|b| file(b, "leakdir/planted", "evil\n", 0));
    extract_copy(tar.as_slice(), &s.root, CopyOwner::Caller, None, false).unwrap();
    assert!(!host.join("planted").exists());
    let inner = s
        .root
        .path()
        .join(host.strip_prefix("/").unwrap())
        .join("planted");
    assert_eq!(fs::read_to_string(inner).unwrap(), "evil\n");
    // An archive's own link then a file through it, and a `..` entry.
    let mut raw = RawTar::default();
    raw.entry(
        b"lnk",
        EntryType::Symlink,
        host.to_str().unwrap().as_bytes(),
        b"",
        0o777,
    );
    raw.entry(b"lnk/x", EntryType::Regular, b"", b"evil\n", 0o644);
    let bytes = raw.finish();
    let dest = s.root.subdir("/dir1/sub").unwrap();
    let _ = extract_copy(bytes.as_slice(), &dest, CopyOwner::Caller, None, false);
    assert!(!host.join("x").exists());
    let mut raw = RawTar::default();
    raw.entry(b"../../../x", EntryType::Regular, b"", b"evil\n", 0o644);
    let bytes = raw.finish();
    assert!(extract_copy(bytes.as_slice(), &dest, CopyOwner::Caller, None, false).is_err());
    assert!(!s.tmp.path().join("x").exists());
    assert_eq!(
        fs::read_to_string(host.join("secret")).unwrap(),
        "HOST SECRET\n"
    );
}

#[test]
fn extract_copy_refuses_to_swap_directories_and_non_directories() {
    let s = scene();
    // A file where a directory is.
    let tar = tar_of(|b| file(b, "sub", "x", 0));
    let dest = s.root.subdir("/dir1").unwrap();
    let err = extract_copy(tar.as_slice(), &dest, CopyOwner::Caller, None, false).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Overwrite {
                directory: true,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "cannot overwrite directory \"/sub\" with non-directory"
    );
    assert!(s.root.path().join("dir1/sub/deep").exists());
    // A directory where a file is.
    let tar = tar_of(|b| dir(b, "file1-1"));
    let err = extract_copy(tar.as_slice(), &dest, CopyOwner::Caller, None, false).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Overwrite {
                directory: false,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(s.root.path().join("dir1/file1-1")).unwrap(),
        "file1-1\n"
    );
    // A file over a file is replaced; a directory into a directory merges.
    let tar = tar_of(|b| {
        file(b, "file1-1", "new\n", 0);
        dir(b, "sub");
        file(b, "sub/more", "more\n", 0);
    });
    extract_copy(tar.as_slice(), &dest, CopyOwner::Caller, None, false).unwrap();
    let p = s.root.path().join("dir1");
    assert_eq!(fs::read_to_string(p.join("file1-1")).unwrap(), "new\n");
    assert_eq!(fs::read_to_string(p.join("sub/more")).unwrap(), "more\n");
    assert_eq!(fs::read_to_string(p.join("sub/deep")).unwrap(), "deep\n");
    assert_eq!(
        fs::metadata(p.join("file1-1"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o640
    );
}

#[test]
fn extract_copy_sets_owners_as_asked() {
    let s = scene();
    let me = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    let dest = s.root.subdir("/dir1").unwrap();
    // The caller's: whatever the archive says.
    let tar = tar_of(|b| file(b, "mine", "x", 4242));
    extract_copy(tar.as_slice(), &dest, CopyOwner::Caller, None, false).unwrap();
    let m = fs::metadata(s.root.path().join("dir1/mine")).unwrap();
    assert_eq!((m.uid(), m.gid()), me);
    // Fixed: the given ids (ours, so that it works without root).
    let tar = tar_of(|b| file(b, "fixed", "x", 4242));
    extract_copy(
        tar.as_slice(),
        &dest,
        CopyOwner::Fixed(me.0, me.1),
        None,
        false,
    )
    .unwrap();
    let m = fs::metadata(s.root.path().join("dir1/fixed")).unwrap();
    assert_eq!((m.uid(), m.gid()), me);
    // The archive's: kept (needs root for another id).
    if common::is_root() {
        let tar = tar_of(|b| file(b, "theirs", "x", 4242));
        extract_copy(tar.as_slice(), &dest, CopyOwner::Archive, None, false).unwrap();
        let m = fs::metadata(s.root.path().join("dir1/theirs")).unwrap();
        assert_eq!((m.uid(), m.gid()), (4242, 4242));
    }
    // Gzip is recognised.
    let tar = tar_of(|b| file(b, "zipped", "z", 0));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let gz = gz.finish().unwrap();
    extract_copy(gz.as_slice(), &dest, CopyOwner::Caller, None, false).unwrap();
    assert!(Path::new(&s.root.path().join("dir1/zipped")).exists());
}

#[test]
fn user_namespace_ids_are_the_containers_in_archives_and_the_hosts_on_disk() {
    if !common::is_root() {
        eprintln!("skipped: needs root to own files as other ids");
        return;
    }
    let s = scene();
    let map = kiln_model::IdMap::remap(100_000, 100_000, 65_536);
    let f = s.root.path().join("dir1/file1-1");
    std::os::unix::fs::chown(&f, Some(100_005), Some(100_006)).unwrap();
    // Out: the ids the container sees.
    let tar = archive_path(&s.root, "/dir1/file1-1", "f", &[], Some(&map), Vec::new()).unwrap();
    let mut a = tar::Archive::new(tar.as_slice());
    let e = a.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(
        (e.header().uid().unwrap(), e.header().gid().unwrap()),
        (5, 6)
    );
    let tar = archive_tree(&s.root, &[], Some(&map), Vec::new()).unwrap();
    let mut a = tar::Archive::new(tar.as_slice());
    let e = a
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .find(|e| e.path().unwrap() == Path::new("dir1/file1-1"))
        .unwrap();
    assert_eq!(e.header().uid().unwrap(), 5);
    // In with -a: the host ids the container's ids map to; an id the
    // namespace does not map is refused.
    let dest = s.root.subdir("/dir1").unwrap();
    let tar = tar_of(|b| file(b, "mapped", "x", 7));
    extract_copy(tar.as_slice(), &dest, CopyOwner::Archive, Some(&map), false).unwrap();
    let m = fs::metadata(s.root.path().join("dir1/mapped")).unwrap();
    assert_eq!((m.uid(), m.gid()), (100_007, 100_007));
    let tar = tar_of(|b| file(b, "unmapped", "x", 70_000));
    let err =
        extract_copy(tar.as_slice(), &dest, CopyOwner::Archive, Some(&map), false).unwrap_err();
    assert!(format!("{err:?}").contains("no host id"), "{err:?}");
}
