//! `docker diff` through kiln-layer: `overlay_changes` of an upper dir
//! against its lower layers (overlay2's rules: whiteouts and opaque
//! directories are `D`, new entries `A`, entries of a lower layer `C`,
//! parents of `A`/`D` `C`, unchanged directories left out), and
//! `dir_changes` of a copied tree.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use kiln_layer::{Change, dir_changes, overlay_changes};

fn lines(changes: &[Change]) -> Vec<String> {
    changes.iter().map(ToString::to_string).collect()
}

/// A 0/0 character device (an overlay whiteout); unprivileged since
/// Linux 5.8. `false` when this kernel or sandbox refuses it.
fn whiteout(path: &Path) -> bool {
    let (dir, name) = (path.parent().unwrap(), path.file_name().unwrap());
    let d = rustix::fs::open(dir, rustix::fs::OFlags::PATH, rustix::fs::Mode::empty()).unwrap();
    rustix::fs::mknodat(
        &d,
        name,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        rustix::fs::makedev(0, 0),
    )
    .is_ok()
}

fn copy_times(from: &Path, to: &Path) {
    let m = fs::metadata(from).unwrap();
    let t = filetime_of(&m);
    let f = fs::File::open(to).unwrap();
    f.set_modified(t).unwrap();
}

fn filetime_of(m: &fs::Metadata) -> std::time::SystemTime {
    m.modified().unwrap()
}

#[test]
fn overlay_changes_are_dockers_a_c_d() {
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
    for d in ["etc", "usr/lib", "var/log", "opaque/old"] {
        fs::create_dir_all(lower.join(d)).unwrap();
    }
    fs::write(lower.join("etc/passwd"), "root\n").unwrap();
    fs::write(lower.join("etc/gone"), "x").unwrap();
    fs::write(lower.join("usr/lib/libc"), "c").unwrap();
    // The container: changed /etc/passwd, added /etc/new and /srv/app/x,
    // deleted /etc/gone, replaced /opaque's contents, left /usr alone
    // (copied up unchanged, as overlay does for a parent).
    fs::create_dir_all(upper.join("etc")).unwrap();
    fs::create_dir_all(upper.join("srv/app")).unwrap();
    fs::create_dir_all(upper.join("usr")).unwrap();
    fs::create_dir_all(upper.join("opaque")).unwrap();
    fs::write(upper.join("etc/passwd"), "root\nme\n").unwrap();
    fs::write(upper.join("etc/new"), "n").unwrap();
    fs::write(upper.join("srv/app/x"), "x").unwrap();
    fs::write(upper.join("opaque/fresh"), "f").unwrap();
    symlink("/etc/passwd", upper.join("srv/link")).unwrap();
    copy_times(&lower.join("usr"), &upper.join("usr"));
    let has_whiteout = whiteout(&upper.join("etc/gone"));
    let opaque = xattr::set(upper.join("opaque"), "user.overlay.opaque", b"y").is_ok();
    // /etc's mtime differs from the lower's: reported as changed anyway.
    let got = lines(&overlay_changes(&upper, std::slice::from_ref(&lower), &[]).unwrap());
    let mut want = vec!["C /etc"];
    if has_whiteout {
        want.push("D /etc/gone");
    }
    want.extend(["A /etc/new", "C /etc/passwd"]);
    if opaque {
        want.extend(["D /opaque", "A /opaque/fresh"]);
    } else {
        want.extend(["C /opaque", "A /opaque/fresh"]);
    }
    want.extend(["A /srv", "A /srv/app", "A /srv/app/x", "A /srv/link"]);
    assert_eq!(got, want);
}

#[test]
fn overlay_changes_leave_out_the_runtimes_stubs_and_report_parents() {
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
    fs::create_dir_all(lower.join("etc")).unwrap();
    fs::create_dir_all(lower.join("a/b")).unwrap();
    fs::create_dir_all(upper.join("etc")).unwrap();
    fs::create_dir_all(upper.join("a/b")).unwrap();
    fs::create_dir_all(upper.join("proc")).unwrap();
    fs::write(upper.join("etc/hostname"), "").unwrap();
    fs::write(upper.join("a/b/new"), "n").unwrap();
    // `a` copied up with the lower's times: unchanged itself, but the
    // parent of a change.
    copy_times(&lower.join("a"), &upper.join("a"));
    let exclude = [PathBuf::from("proc"), PathBuf::from("etc/hostname")];
    let lowers = [lower];
    let got = lines(&overlay_changes(&upper, &lowers, &exclude).unwrap());
    assert_eq!(got, ["C /a/b", "A /a/b/new"]);
    // A real change beside a stub: the directory's mtime counts again.
    fs::write(upper.join("etc/passwd"), "me").unwrap();
    let got = lines(&overlay_changes(&upper, &lowers, &exclude).unwrap());
    assert_eq!(got, ["C /a/b", "A /a/b/new", "C /etc", "A /etc/passwd"]);
}

#[test]
fn overlay_changes_never_follow_links_out_of_a_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
    let host = tmp.path().join("host");
    fs::create_dir_all(host.join("data")).unwrap();
    fs::create_dir_all(&lower).unwrap();
    // The lower layer's `/data` is a link to a host directory that has a
    // `file`; the upper's `/data/file` is then new (the lower has no
    // `/data/file` inside it).
    fs::write(host.join("data/file"), "host").unwrap();
    symlink(host.join("data"), lower.join("data")).unwrap();
    fs::create_dir_all(upper.join("data")).unwrap();
    fs::write(upper.join("data/file"), "x").unwrap();
    let got = lines(&overlay_changes(&upper, &[lower], &[]).unwrap());
    assert_eq!(got, ["C /data", "A /data/file"]);
}

#[test]
fn dir_changes_compare_a_copied_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
    for root in [&lower, &upper] {
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir_all(root.join("gone/deep")).unwrap();
        fs::create_dir_all(root.join("same")).unwrap();
        fs::write(root.join("etc/passwd"), "root\n").unwrap();
        fs::write(root.join("same/f"), "s").unwrap();
    }
    for p in ["etc/passwd", "same/f", "same", "etc"] {
        copy_times(&lower.join(p), &upper.join(p));
    }
    fs::remove_dir_all(upper.join("gone")).unwrap();
    fs::write(upper.join("etc/passwd"), "root\nme\n").unwrap();
    fs::create_dir_all(upper.join("new/sub")).unwrap();
    let got = lines(&dir_changes(&lower, &upper, &[]).unwrap());
    assert_eq!(
        got,
        ["C /etc", "C /etc/passwd", "D /gone", "A /new", "A /new/sub"]
    );
}
