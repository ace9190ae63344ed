//! Root-only tests of the new mount API wrapper: real mounts through
//! fsopen/fsconfig/fsmount, flags carried over, and the filesystem's own
//! message in errors.

#![cfg(feature = "privileged-tests")]

use std::fs;
use std::path::Path;

use kiln_sys::{LinuxSys, MountFlags, MountOps};

fn umount(target: &Path) {
    LinuxSys.umount(target, false).expect("umount");
}

#[test]
fn mount_fs_mounts_with_each_option_and_flag() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).expect("mkdir");
    LinuxSys
        .mount_fs(
            Some(Path::new("kiln-test")),
            &mnt,
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            &["size=1m".to_owned(), "mode=0710".to_owned()],
        )
        .expect("tmpfs through fsconfig");
    let info = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(mnt.to_str().expect("utf-8")))
        .map(str::to_owned);
    let mode =
        fs::metadata(&mnt).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()));
    let big = fs::write(mnt.join("big"), vec![0u8; 2 << 20]);
    umount(&mnt);
    let line = line.expect("the mount shows in mountinfo");
    assert!(line.contains("nosuid,nodev"), "{line}");
    assert!(line.contains(" - tmpfs kiln-test "), "{line}");
    assert!(line.contains("size=1024k"), "{line}");
    assert_eq!(mode.expect("stat") & 0o7777, 0o710);
    assert!(big.is_err(), "size=1m was applied");

    // Read-only: both the mount and the superblock.
    LinuxSys
        .mount_fs(None, &mnt, "tmpfs", MountFlags::RDONLY, &[])
        .expect("read-only tmpfs");
    let write = fs::write(mnt.join("f"), b"x");
    umount(&mnt);
    assert_eq!(
        write.expect_err("read-only").raw_os_error(),
        Some(libc::EROFS)
    );
}

#[test]
fn mount_fs_errors_carry_the_filesystems_message() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mnt = tmp.path().join("mnt");
    let lower = tmp.path().join("lower");
    fs::create_dir(&mnt).expect("mkdir");
    fs::create_dir(&lower).expect("mkdir");
    let missing = tmp.path().join("no-such-layer");
    let err = LinuxSys
        .mount_fs(
            Some(Path::new("overlay")),
            &mnt,
            "overlay",
            MountFlags::NONE,
            &[format!(
                "lowerdir={}:{}",
                lower.display(),
                missing.display()
            )],
        )
        .expect_err("a missing lower dir");
    let msg = err.to_string();
    assert!(msg.contains("lowerdir+"), "{msg}");
    assert!(msg.contains("no-such-layer"), "{msg}");
    let err = LinuxSys
        .mount_fs(None, &mnt, "tmpfs", MountFlags::REMOUNT, &[])
        .expect_err("remount is not a new mount");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    let err = LinuxSys
        .mount_fs(
            None,
            &mnt,
            "tmpfs",
            MountFlags::NONE,
            &["nonsense=1".to_owned()],
        )
        .expect_err("an unknown option");
    assert!(err.to_string().contains("nonsense"), "{err}");
}

#[test]
fn mount_with_options_takes_mount_2_for_short_data_and_fsconfig_for_long() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).expect("mkdir");
    // 300 lowers of ~60 bytes each: ~18 KB of options.
    let mut lowers = Vec::new();
    for i in 0..300 {
        let d = tmp
            .path()
            .join(format!("a-rather-long-layer-directory-name-{i:04}"));
        fs::create_dir(&d).expect("mkdir");
        fs::write(d.join(format!("f{i}")), b"").expect("write");
        lowers.push(d.display().to_string());
    }
    // Mounts an overlay of `lowers` and counts what shows.
    let mount_and_count = |lowers: &[String]| {
        let options = vec![format!("lowerdir={}", lowers.join(":"))];
        LinuxSys
            .mount_with_options(
                Some(Path::new("overlay")),
                &mnt,
                "overlay",
                MountFlags::NONE,
                &options,
            )
            .unwrap_or_else(|e| panic!("{} lowers: {e}", lowers.len()));
        let seen = fs::read_dir(&mnt).expect("readdir").count();
        umount(&mnt);
        (options[0].len(), seen)
    };
    let (len, seen) = mount_and_count(&lowers);
    assert!(len > 4 * kiln_sys::MOUNT_DATA_MAX, "{len}");
    assert_eq!(seen, 300);
    // Two layers fit a page and go through mount(2).
    let (len, seen) = mount_and_count(&lowers[..2]);
    assert!(len <= kiln_sys::MOUNT_DATA_MAX, "{len}");
    assert_eq!(seen, 2);
}

#[test]
fn mount_from_mounts_relative_paths_from_inside_a_directory() {
    // What kernels without `lowerdir+` get: 400 lowers whose absolute
    // paths take ~20 KB, relative to their common directory ~2.5 KB.
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path().join("a-root-as-long-as-a-real-store-would-have");
    let mnt = tmp.path().join("mnt");
    fs::create_dir_all(base.join("l")).expect("mkdir");
    fs::create_dir(&mnt).expect("mkdir");
    let mut lowers = Vec::new();
    for i in 0..400 {
        let d = base.join("l").join(i.to_string());
        fs::create_dir(&d).expect("mkdir");
        fs::write(d.join(format!("f{i}")), b"").expect("write");
        lowers.push(d.display().to_string());
    }
    let options = vec![
        "index=off".to_owned(),
        format!("lowerdir={}", lowers.join(":")),
    ];
    let (dir, relative) = kiln_sys::overlay_options_relative(&options).expect("absolute paths");
    assert_eq!(dir, base.join("l"));
    assert!(relative.join(",").len() <= kiln_sys::MOUNT_DATA_MAX);
    let cwd = std::env::current_dir().expect("cwd");
    LinuxSys
        .mount_from(
            &dir,
            Some(Path::new("overlay")),
            &mnt,
            "overlay",
            MountFlags::NONE,
            &relative,
        )
        .expect("relative mount");
    let seen = fs::read_dir(&mnt).expect("readdir").count();
    umount(&mnt);
    assert_eq!(seen, 400);
    assert_eq!(
        std::env::current_dir().expect("cwd"),
        cwd,
        "the caller stayed put"
    );
    // The child's errors come back as errnos.
    let err = LinuxSys
        .mount_from(
            &dir,
            Some(Path::new("overlay")),
            &mnt,
            "overlay",
            MountFlags::NONE,
            &["lowerdir=no-such-layer".to_owned()],
        )
        .expect_err("a missing lower dir");
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
    let err = LinuxSys
        .mount_from(&dir, None, Path::new("mnt"), "tmpfs", MountFlags::NONE, &[])
        .expect_err("a relative target");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
}

/// An `O_PATH` descriptor of `path`.
fn open_path(path: &Path) -> std::os::fd::OwnedFd {
    rustix::fs::open(
        path,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .expect("open O_PATH")
}

#[test]
fn open_tree_fd_mounts_the_opened_object_not_its_path() {
    use std::os::fd::AsFd as _;
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    let elsewhere = tmp.path().join("elsewhere");
    let mnt = tmp.path().join("mnt");
    for d in [&src, &elsewhere, &mnt] {
        fs::create_dir(d).expect("mkdir");
    }
    fs::write(src.join("mine"), b"opened").expect("write");
    fs::write(elsewhere.join("theirs"), b"swapped in").expect("write");
    let fd = open_path(&src);
    // After the open, the path is made to lead somewhere else.
    fs::rename(&src, tmp.path().join("moved")).expect("rename");
    std::os::unix::fs::symlink(&elsewhere, &src).expect("symlink");
    let tree = LinuxSys.open_tree_fd(fd.as_fd(), false).expect("open_tree");
    LinuxSys.move_mount(tree.as_fd(), &mnt).expect("move_mount");
    // An open descriptor on the mount would keep it busy.
    drop(tree);
    let names: Vec<String> = fs::read_dir(&mnt)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    umount(&mnt);
    assert_eq!(names, ["mine"]);

    // A regular file is a tree too (a file bind mount).
    let file = tmp.path().join("moved").join("mine");
    let at = tmp.path().join("file-target");
    fs::write(&at, b"").expect("write");
    let tree = LinuxSys
        .open_tree_fd(open_path(&file).as_fd(), false)
        .expect("open_tree of a file");
    LinuxSys.move_mount(tree.as_fd(), &at).expect("move_mount");
    drop(tree);
    let seen = fs::read(&at);
    umount(&at);
    assert_eq!(seen.expect("read").as_slice(), b"opened");
}

#[test]
fn mount_setattr_makes_a_tree_read_only_all_the_way_down() {
    use std::os::fd::AsFd as _;
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    let sub = src.join("sub");
    let mnt = tmp.path().join("mnt");
    fs::create_dir_all(&sub).expect("mkdir");
    fs::create_dir(&mnt).expect("mkdir");
    // A submount under the source, as a host's /dev/shm under / would be.
    LinuxSys
        .mount(
            Some(Path::new("tmpfs")),
            &sub,
            Some("tmpfs"),
            MountFlags::NONE,
            Some("size=1m"),
        )
        .expect("tmpfs submount");
    let tree = LinuxSys
        .open_tree_fd(open_path(&src).as_fd(), true)
        .expect("open_tree recursive");
    let set = LinuxSys.mount_setattr(tree.as_fd(), true, MountFlags::RDONLY | MountFlags::NOSUID);
    let moved = set
        .as_ref()
        .ok()
        .map(|()| LinuxSys.move_mount(tree.as_fd(), &mnt));
    let top = fs::write(mnt.join("top"), b"x");
    let below = fs::write(mnt.join("sub").join("below"), b"x");
    let info = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    if matches!(moved, Some(Ok(()))) {
        LinuxSys.umount(&mnt, true).expect("umount");
    }
    // The source itself stays writable: only the copy is read-only.
    let host = fs::write(sub.join("host"), b"x");
    umount(&sub);
    set.expect("mount_setattr");
    moved.expect("attempted").expect("move_mount");
    assert_eq!(top.expect_err("top").raw_os_error(), Some(libc::EROFS));
    assert_eq!(
        below.expect_err("submount").raw_os_error(),
        Some(libc::EROFS)
    );
    host.expect("the source's submount is untouched");
    let sub_line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == mnt.join("sub").to_str())
        .expect("the submount came along");
    assert!(
        sub_line
            .split(' ')
            .nth(5)
            .is_some_and(|o| o.starts_with("ro,nosuid")),
        "{sub_line}"
    );

    // Flags mount_setattr has no attribute for are refused.
    let tree = LinuxSys
        .open_tree_fd(open_path(&src).as_fd(), false)
        .expect("open_tree");
    let err = LinuxSys
        .mount_setattr(tree.as_fd(), false, MountFlags::REMOUNT)
        .expect_err("no such attribute");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn unshare_thread_mounts_keeps_a_threads_mounts_from_the_others() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("private");
    fs::create_dir(&dir).expect("mkdir");
    let (seen_inside, host_mount_seen) = std::thread::scope(|s| {
        s.spawn(|| {
            kiln_sys::process::unshare_thread_mounts().expect("unshare");
            LinuxSys
                .mount(
                    Some(Path::new("tmpfs")),
                    &dir,
                    Some("tmpfs"),
                    MountFlags::NONE,
                    None,
                )
                .expect("tmpfs in the thread's namespace");
            fs::write(dir.join("inside"), b"x").expect("write");
            let seen = dir.join("inside").exists();
            // A process started from this thread shares its view.
            let child = std::process::Command::new("ls")
                .arg(&dir)
                .output()
                .expect("ls");
            (
                seen,
                String::from_utf8_lossy(&child.stdout).contains("inside"),
            )
        })
        .join()
        .expect("thread")
    });
    assert!(seen_inside);
    assert!(host_mount_seen, "a child of the thread sees its mounts");
    // The rest of the process (and the host) never saw the tmpfs, and
    // nothing is left mounted once the thread is gone.
    assert_eq!(fs::read_dir(&dir).expect("readdir").count(), 0);
    let info = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !info.contains(dir.to_str().expect("utf-8")),
        "the thread's mount leaked: {info}"
    );
}
