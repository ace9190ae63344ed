//! Single-name operations on a directory descriptor that was itself
//! resolved inside a [`Root`](crate::Root) (with
//! [`Root::resolve_dir`](crate::Root::resolve_dir),
//! [`Root::mkdir_all`](crate::Root::mkdir_all) or
//! [`Root::open_dir`](crate::Root::open_dir)).
//!
//! `name` is always one ordinary path component (no `/`, not `.` or `..`;
//! anything else is an `InvalidInput` error), and no function here follows
//! a symlink at `name`.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use rustix::fs::{AtFlags, Dir, Mode, OFlags, XattrFlags};

use crate::{FileType, Metadata, bytes, proc_fd_path};

/// Checks that `name` is one ordinary component.
fn check(name: &OsStr) -> io::Result<()> {
    let b = bytes(name);
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a single file name"),
        ));
    }
    Ok(())
}

/// Whether an error means "not there" (the name or a parent is missing, or
/// a parent is not a directory).
pub fn is_absent(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
        || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error())
}

/// The metadata of `name` in `dir`, not following a symlink; `None` when
/// absent.
pub fn lstat(dir: impl AsFd, name: &OsStr) -> io::Result<Option<Metadata>> {
    check(name)?;
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(Metadata::from_stat(&st))),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The type of `name` in `dir`, not following a symlink; `None` when absent.
pub fn file_type(dir: impl AsFd, name: &OsStr) -> io::Result<Option<FileType>> {
    Ok(lstat(dir, name)?.map(|m| m.file_type()))
}

/// The names in a directory opened for reading (without `.` and `..`), in
/// the order the file system returns them.
pub fn list(dir: impl AsFd) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_owned());
        }
    }
    Ok(names)
}

/// Opens the subdirectory `name` of `dir` for reading its entries,
/// refusing a symlink.
pub fn open_subdir(dir: impl AsFd, name: &OsStr) -> io::Result<OwnedFd> {
    check(name)?;
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Creates the new regular file `name` in `dir` for writing
/// (`O_CREAT|O_EXCL|O_NOFOLLOW`), with `mode` (the umask applies).
pub fn create(dir: impl AsFd, name: &OsStr, mode: u32) -> io::Result<File> {
    check(name)?;
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode & 0o7777),
    )?;
    Ok(File::from(fd))
}

/// Opens the regular file `name` in `dir` for reading, and its metadata,
/// without ever opening anything else: the entry is opened `O_PATH |
/// O_NOFOLLOW` (which has no effect on a device or FIFO), checked to be a
/// regular file, then reopened for reading through `/proc/self/fd/N`. A
/// symlink, directory, device, FIFO or socket is an `InvalidInput` error,
/// so a node swapped in since the caller looked is never opened.
pub fn open_regular(dir: impl AsFd, name: &OsStr) -> io::Result<(File, Metadata)> {
    check(name)?;
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let meta = Metadata::from_stat(&rustix::fs::fstat(&fd)?);
    if meta.file_type() != FileType::File {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a regular file"),
        ));
    }
    let file = rustix::fs::open(
        proc_fd_path(fd.as_fd())?,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )?;
    Ok((File::from(file), meta))
}

/// The target of the symlink `name` in `dir`.
pub fn readlink(dir: impl AsFd, name: &OsStr) -> io::Result<PathBuf> {
    check(name)?;
    let target = rustix::fs::readlinkat(dir, name, Vec::new())?;
    Ok(PathBuf::from(OsStr::from_bytes(target.as_bytes())))
}

/// Removes `name` in `dir` and, if it is a directory, everything below it.
/// Never follows symlinks. Absent is not an error.
pub fn remove_all(dir: impl AsFd, name: &OsStr) -> io::Result<()> {
    check(name)?;
    let dir = dir.as_fd();
    match file_type(dir, name)? {
        None => Ok(()),
        Some(FileType::Dir) => {
            let sub = open_subdir(dir, name)?;
            for child in list(&sub)? {
                remove_all(&sub, &child)?;
            }
            drop(sub);
            match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        Some(_) => match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        },
    }
}

/// Sets an xattr on `name` in `dir` without following `name` if it is a
/// symlink (`lsetxattr` semantics), for nodes that cannot be opened to
/// `fsetxattr` through (symlinks, devices, FIFOs).
///
/// There is no `*at` form of `lsetxattr`, so the path is
/// `/proc/self/fd/<dir>/<name>`: the magic link jumps to `dir` itself
/// (already resolved inside the root), `name` is one component, and the
/// final component is not followed. `/proc` must be a real procfs, else
/// an `Unsupported` error is returned.
pub fn lsetxattr(dir: impl AsFd, name: &OsStr, key: &OsStr, value: &[u8]) -> io::Result<()> {
    check(name)?;
    let mut path = proc_fd_path(dir.as_fd())?;
    path.push(name);
    Ok(rustix::fs::lsetxattr(
        &path,
        key,
        value,
        XattrFlags::empty(),
    )?)
}

/// A path that reaches `name` in the already-resolved directory `dir`
/// without walking any host path: `/proc/self/fd/<dir>/<name>`. The magic
/// link jumps to `dir` itself and `name` is one component, so a call that
/// does not follow its final component (`llistxattr`, `lgetxattr`) acts on
/// that entry and nothing else. For the few calls that have no `*at` form.
pub fn no_follow_path(dir: impl AsFd, name: &OsStr) -> io::Result<std::path::PathBuf> {
    check(name)?;
    let mut path = proc_fd_path(dir.as_fd())?;
    path.push(name);
    Ok(path)
}

/// Creates the directory `name` in `dir` (the umask applies to `mode`).
pub fn mkdir(dir: impl AsFd, name: &OsStr, mode: u32) -> io::Result<()> {
    check(name)?;
    Ok(rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode))?)
}

/// Creates the symlink `name` in `dir` pointing to `target` (stored as
/// given).
pub fn symlink(target: &std::path::Path, dir: impl AsFd, name: &OsStr) -> io::Result<()> {
    check(name)?;
    Ok(rustix::fs::symlinkat(target, dir, name)?)
}

/// Sets the owner of `name` in `dir` itself (`lchown`: a symlink's own
/// owner).
pub fn chown(dir: impl AsFd, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
    check(name)?;
    Ok(rustix::fs::chownat(
        dir,
        name,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

/// Sets the permission bits of `name` in `dir`, never through a symlink (a
/// symlink, which has no mode of its own, is left as it is).
pub fn chmod(dir: impl AsFd, name: &OsStr, mode: u32) -> io::Result<()> {
    check(name)?;
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if FileType::from_mode(rustix::fs::fstat(&fd)?.st_mode as u32) == FileType::Symlink {
        return Ok(());
    }
    Ok(rustix::fs::chmod(
        proc_fd_path(fd.as_fd())?,
        Mode::from_raw_mode(mode & 0o7777),
    )?)
}

/// Sets the access and modification times of `name` in `dir` itself (a
/// symlink's own times).
pub fn set_times(dir: impl AsFd, name: &OsStr, secs: i64, nsecs: u32) -> io::Result<()> {
    check(name)?;
    Ok(rustix::fs::utimensat(
        dir,
        name,
        &crate::timestamps(secs, nsecs),
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}
