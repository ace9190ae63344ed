//! Unit tests: each operation against hostile symlinks (absolute, `../..`,
//! to `/`, loops) in a root that sits beside a marker directory.

use super::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

struct Scene {
    _tmp: tempfile::TempDir,
    outside: PathBuf,
    root: Root,
    root_path: PathBuf,
}

/// `tmp/outside/{secret,dir/}` beside `tmp/root` with links planted in the
/// root: `abs -> <outside>`, `up -> ../../../outside` (relative climb),
/// `slash -> /`, `secret -> <outside>/secret`, `loop -> loop`.
fn scene() -> Scene {
    let tmp = tempfile::tempdir().expect("tempdir");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(outside.join("dir")).expect("mkdir");
    std::fs::write(outside.join("secret"), "host secret").expect("write");
    let root_path = tmp.path().join("root");
    std::fs::create_dir(&root_path).expect("mkdir");
    symlink(&outside, root_path.join("abs")).expect("symlink");
    symlink("../../../../../../outside", root_path.join("up")).expect("symlink");
    symlink("/", root_path.join("slash")).expect("symlink");
    symlink(outside.join("secret"), root_path.join("secret")).expect("symlink");
    symlink("loop", root_path.join("loop")).expect("symlink");
    let root = Root::open(&root_path).expect("open root");
    Scene {
        _tmp: tmp,
        outside,
        root,
        root_path,
    }
}

impl Scene {
    fn outside_untouched(&self) {
        let mut names: Vec<_> = std::fs::read_dir(&self.outside)
            .expect("read")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["dir", "secret"],
            "nothing created or removed outside"
        );
        assert!(
            std::fs::read_dir(self.outside.join("dir"))
                .expect("read")
                .next()
                .is_none()
        );
        assert_eq!(
            std::fs::read_to_string(self.outside.join("secret")).expect("read"),
            "host secret"
        );
    }
}

#[test]
fn reads_never_leave_the_root() {
    let s = scene();
    for rel in [
        "secret",
        "abs/secret",
        "up/secret",
        "slash/secret",
        "/abs/secret",
    ] {
        let e = s.root.read(rel).expect_err(rel);
        assert!(at::is_absent(&e), "{rel}: {e}");
    }
    assert_eq!(
        s.root.read("loop").expect_err("loop").raw_os_error(),
        Some(rustix::io::Errno::LOOP.raw_os_error())
    );
    // What a link means inside the root is what is read.
    std::fs::create_dir_all(s.root_path.join(s.outside.strip_prefix("/").expect("abs")))
        .expect("mkdir");
    std::fs::write(
        s.root_path
            .join(s.outside.strip_prefix("/").expect("abs"))
            .join("secret"),
        "inside",
    )
    .expect("write");
    assert_eq!(s.root.read("secret").expect("read"), b"inside");
    assert_eq!(s.root.read("abs/secret").expect("read"), b"inside");
    assert_eq!(
        s.root.read_to_string("/slash/abs/secret").expect("read"),
        "inside"
    );
    s.outside_untouched();
}

#[test]
fn devices_and_fifos_are_never_opened_for_reading() {
    let s = scene();
    rustix::fs::mknodat(
        &s.root,
        "fifo",
        rustix::fs::FileType::Fifo,
        Mode::from_raw_mode(0o644),
        0,
    )
    .expect("mkfifo");
    // Opening a FIFO for reading would block; the check comes first.
    let e = s.root.read("fifo").expect_err("fifo");
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    s.root.mkdir("d", 0o755).expect("mkdir");
    assert!(s.root.read("d").is_err());
    // A final link refused or kept.
    assert!(s.root.open_file("secret", FinalLink::Refuse).is_err());
    assert!(s.root.open_file("secret", FinalLink::NoFollow).is_err());
}

#[test]
fn writes_through_links_land_inside() {
    let s = scene();
    s.root
        .mkdir_all("abs/deep/er", 0o750)
        .expect("mkdir_all through a link");
    s.root
        .mkdir_all("up/x", 0o755)
        .expect("mkdir_all through a climbing link");
    s.root
        .mkdir_all("slash/tmp/y", 0o755)
        .expect("mkdir_all through /");
    let inside = s.root_path.join(s.outside.strip_prefix("/").expect("abs"));
    let m = std::fs::metadata(inside.join("deep/er")).expect("made inside");
    assert_eq!(m.permissions().mode() & 0o7777, 0o750);
    assert!(s.root_path.join("outside/x").is_dir());
    assert!(s.root_path.join("tmp/y").is_dir());
    s.root.write("abs/deep/file", b"x", 0o640).expect("write");
    assert_eq!(std::fs::read(inside.join("deep/file")).expect("read"), b"x");
    s.outside_untouched();
}

#[test]
fn a_final_link_is_replaced_or_refused_never_written_through() {
    let s = scene();
    // write replaces the link with a file.
    s.root.write("secret", b"new", 0o600).expect("write");
    assert!(s.root.lstat("secret").expect("lstat").is_file());
    // create refuses an existing name, link or not.
    assert_eq!(
        s.root.create("abs", 0o644).expect_err("exists").kind(),
        io::ErrorKind::AlreadyExists
    );
    // mkdir on a link name fails.
    assert!(s.root.mkdir("slash", 0o755).is_err());
    // chown/chmod/times of a link with NoFollow touch the link only.
    s.root
        .chmod("abs", 0o700, FinalLink::NoFollow)
        .expect("chmod no-op");
    s.root
        .set_times("abs", 5, 0, FinalLink::NoFollow)
        .expect("times on the link");
    assert_eq!(s.root.lstat("abs").expect("lstat").mtime(), 5);
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    s.root
        .chown("abs", uid, gid, FinalLink::NoFollow)
        .expect("lchown");
    // Follow resolves inside the root: absent here.
    assert!(s.root.chmod("abs", 0o700, FinalLink::Follow).is_err());
    assert_eq!(
        s.root
            .open_path("abs", FinalLink::Refuse)
            .expect_err("refused")
            .raw_os_error(),
        Some(rustix::io::Errno::LOOP.raw_os_error())
    );
    let outside_mode = std::fs::metadata(&s.outside).expect("stat").mode();
    assert_eq!(outside_mode & 0o777, 0o755 & outside_mode & 0o777);
    s.outside_untouched();
}

#[test]
fn removal_never_follows_links() {
    let s = scene();
    s.root.remove_all("abs").expect("remove link");
    s.root.remove("up").expect("remove link");
    assert!(s.root.try_lstat("abs").expect("lstat").is_none());
    // A link as an intermediate component resolves inside: nothing there.
    s.root.remove_all("slash/outside").expect("absent is fine");
    s.root.remove_all("secret").expect("remove link");
    assert!(
        s.root.remove_all("/").is_err(),
        "the root itself is not removable"
    );
    // A tree with links inside is removed without touching their targets.
    s.root.mkdir_all("t/a/b", 0o755).expect("mkdir");
    symlink(&s.outside, s.root_path.join("t/a/b/out")).expect("symlink");
    symlink(s.outside.join("dir"), s.root_path.join("t/dirlink")).expect("symlink");
    s.root.remove_all("t").expect("remove tree");
    assert!(!s.root_path.join("t").exists());
    s.outside_untouched();
}

#[test]
fn rename_link_and_symlink_stay_inside() {
    let s = scene();
    s.root.write("f", b"data", 0o644).expect("write");
    s.root
        .rename("f", "abs/f")
        .expect_err("abs/ resolves to a missing dir");
    s.root.mkdir_all("abs", 0o755).expect("mkdir through link");
    s.root.rename("f", "abs/f").expect("rename");
    s.root.hard_link("abs/f", "slash/g").expect("link");
    assert_eq!(s.root.read("g").expect("read"), b"data");
    s.root.symlink("/etc/passwd", "p").expect("symlink");
    assert_eq!(
        s.root.readlink("p").expect("readlink"),
        Path::new("/etc/passwd")
    );
    // A hard link to a symlink links the symlink, not its target.
    s.root.hard_link("secret", "secret2").expect("link a link");
    assert!(s.root.lstat("secret2").expect("lstat").is_symlink());
    s.outside_untouched();
}

#[test]
fn dotdot_stops_at_the_root() {
    let s = scene();
    s.root
        .write("../../../../escape", b"x", 0o644)
        .expect("write");
    assert!(s.root_path.join("escape").is_file());
    assert!(!s.outside.parent().expect("parent").join("escape").exists());
    assert!(split(Path::new("a/..")).is_err());
    assert!(split(Path::new("/")).is_err());
    assert_eq!(
        split(Path::new("/a/../b/c")).expect("split"),
        (PathBuf::from("a/../b"), OsStr::new("c"))
    );
}

#[test]
fn walk_reports_links_without_following() {
    let s = scene();
    s.root.mkdir_all("d/e", 0o755).expect("mkdir");
    s.root.write("d/e/f", b"1", 0o644).expect("write");
    let mut seen = Vec::new();
    s.root
        .walk("", &mut |p, m| {
            seen.push((p.to_path_buf(), m.file_type()));
            Ok(true)
        })
        .expect("walk");
    let names: Vec<_> = seen.iter().map(|(p, _)| p.display().to_string()).collect();
    assert_eq!(
        names,
        ["abs", "d", "d/e", "d/e/f", "loop", "secret", "slash", "up"]
    );
    assert_eq!(seen[0].1, FileType::Symlink);
    let mut below = Vec::new();
    s.root
        .walk("/d", &mut |p, _| {
            below.push(p.display().to_string());
            Ok(false)
        })
        .expect("walk");
    assert_eq!(below, ["d/e"]);
    assert_eq!(s.root.list("d").expect("list"), [OsString::from("e")]);
}

#[test]
fn read_limited_and_subdir() {
    let s = scene();
    s.root.mkdir_all("etc", 0o755).expect("mkdir");
    s.root
        .write("etc/passwd", &[b'x'; 100], 0o644)
        .expect("write");
    assert_eq!(
        s.root.read_limited("etc/passwd", 100).expect("read").len(),
        100
    );
    assert_eq!(
        s.root
            .read_limited("etc/passwd", 99)
            .expect_err("too big")
            .kind(),
        io::ErrorKind::FileTooLarge
    );
    // A subdir is a root of its own: `/` in a link there means the subdir.
    let sub = s.root.subdir("etc").expect("subdir");
    sub.symlink("/passwd", "again").expect("symlink");
    assert_eq!(sub.read("again").expect("read").len(), 100);
    sub.symlink("../../..", "climb").expect("symlink");
    assert_eq!(sub.read("climb/passwd").expect("read").len(), 100);
}

#[test]
fn ensure_dir_does_not_create_through_a_dangling_link() {
    let s = scene();
    let e = s.root.ensure_dir("abs/x", 0o755).expect_err("dangling");
    assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    s.root
        .ensure_dir("slash/new/dir", 0o700)
        .expect("through / is fine");
    let m = std::fs::metadata(s.root_path.join("new/dir")).expect("made");
    assert_eq!(m.permissions().mode() & 0o777, 0o700);
    // mkdir_all does create the link's target, inside the root.
    s.root.mkdir_all("abs/x", 0o755).expect("mkdir_all");
    s.outside_untouched();
}

#[test]
fn canonical_names_where_links_lead_inside_the_root() {
    let s = scene();
    s.root.mkdir_all("usr/lib", 0o755).expect("mkdir");
    s.root.write("usr/lib/real.so", b"x", 0o644).expect("write");
    s.root
        .symlink("/usr/lib/real.so", "link.so")
        .expect("symlink");
    s.root.symlink("../../usr", "u").expect("symlink");
    assert_eq!(
        s.root
            .canonical("link.so", FinalLink::Follow)
            .expect("canonical"),
        Path::new("usr/lib/real.so")
    );
    assert_eq!(
        s.root
            .canonical("/u/lib/../lib", FinalLink::Follow)
            .expect("canonical"),
        Path::new("usr/lib")
    );
    assert_eq!(
        s.root
            .canonical("link.so", FinalLink::NoFollow)
            .expect("canonical"),
        Path::new("link.so")
    );
    assert_eq!(
        s.root.canonical("", FinalLink::Follow).expect("root"),
        Path::new("")
    );
    assert!(s.root.canonical("abs", FinalLink::Follow).is_err());
}

#[test]
fn at_operations_act_on_the_name_itself() {
    let s = scene();
    let dir = s.root.resolve_dir("").expect("root dir");
    at::mkdir(&dir, OsStr::new("d"), 0o755).expect("mkdir");
    at::chmod(&dir, OsStr::new("abs"), 0o600).expect("no-op on a link");
    at::set_times(&dir, OsStr::new("abs"), 7, 0).expect("times of the link");
    at::symlink(Path::new("/x"), &dir, OsStr::new("l")).expect("symlink");
    assert!(
        at::mkdir(&dir, OsStr::new("a/b"), 0o755).is_err(),
        "one name only"
    );
    assert!(at::chmod(&dir, OsStr::new(".."), 0o700).is_err());
    at::chmod(&dir, OsStr::new("d"), 0o700).expect("chmod dir");
    assert_eq!(s.root.lstat("d").expect("stat").permissions(), 0o700);
    s.outside_untouched();
}

#[test]
fn no_follow_paths_reach_the_entry_not_its_target() {
    let s = scene();
    // The host file a planted link points at carries an xattr; read
    // through the no-follow path, the link shows only its own (none).
    let host = s.outside.join("secret");
    rustix::fs::setxattr(
        &host,
        "user.kiln-marker",
        b"host",
        rustix::fs::XattrFlags::empty(),
    )
    .expect("user xattrs work on the test's filesystem");
    let dir = s.root.resolve_dir("").expect("root dir");
    let path = at::no_follow_path(&dir, OsStr::new("secret")).expect("path");
    assert!(path.starts_with("/proc/self/fd/"), "{}", path.display());
    let mut names = vec![0u8; 256];
    let n = rustix::fs::llistxattr(&path, &mut names).expect("llistxattr of the link");
    assert!(
        !names[..n].windows(16).any(|w| w == b"user.kiln-marker"),
        "the link's xattrs must not be its target's"
    );
    // A name that would walk (`..`, `a/b`) is refused.
    for bad in ["..", "abs/secret", ""] {
        assert!(
            at::no_follow_path(&dir, OsStr::new(bad)).is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn open_regular_opens_only_regular_files_never_through_a_link() {
    let s = scene();
    std::fs::write(s.root_path.join("plain"), "inside").expect("write");
    rustix::fs::mknodat(
        s.root.resolve_dir("").expect("root dir"),
        "fifo",
        rustix::fs::FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .expect("mkfifo");
    let dir = s.root.resolve_dir("").expect("root dir");
    let (mut f, meta) = at::open_regular(&dir, OsStr::new("plain")).expect("plain");
    let mut text = String::new();
    f.read_to_string(&mut text).expect("read");
    assert_eq!((text.as_str(), meta.len()), ("inside", 6));
    // A FIFO (it would block or, for a device, act) and a link to a host
    // file: refused, not opened.
    for name in ["fifo", "secret", "abs", "loop"] {
        let err = at::open_regular(&dir, OsStr::new(name)).expect_err(name);
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name}: {err}");
    }
    s.outside_untouched();
}
