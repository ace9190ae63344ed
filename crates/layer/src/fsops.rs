//! Filesystem operations confined to a root directory: every lookup goes
//! through `openat2(RESOLVE_IN_ROOT)` from the root's fd, and the final
//! component is acted on with `*at` calls that never follow it.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags, XattrFlags};

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// Opens a directory to act as the root of a confined tree.
pub(crate) fn open_root(root: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens the directory at `rel` (normalized, relative) inside the root,
/// resolving symlinks as if the root were `/`. An empty `rel` is the root.
pub(crate) fn resolve_dir(root: impl AsFd, rel: &Path) -> io::Result<OwnedFd> {
    let rel: &Path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    Ok(rustix::fs::openat2(
        root,
        rel,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        RESOLVE,
    )?)
}

/// Like [`resolve_dir`], but creates missing directories (mode 0755) on the
/// way, as `mkdir -p` inside the root.
pub(crate) fn ensure_dir(root: impl AsFd, rel: &Path) -> io::Result<OwnedFd> {
    let root = root.as_fd();
    match resolve_dir(root, rel) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    let mut prefix = PathBuf::new();
    let mut current = resolve_dir(root, &prefix)?;
    for comp in rel.components() {
        let Component::Normal(name) = comp else {
            continue;
        };
        prefix.push(name);
        current = match resolve_dir(root, &prefix) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match rustix::fs::mkdirat(&current, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) => {}
                    Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                resolve_dir(root, &prefix)?
            }
            Err(e) => return Err(e),
        };
    }
    Ok(current)
}

/// The file type of `name` in `dir`, not following a symlink; `None` if absent.
pub(crate) fn lstat_type(dir: impl AsFd, name: &OsStr) -> io::Result<Option<FileType>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Lists the names in a directory (without `.` and `..`).
pub(crate) fn list_dir(dir: impl AsFd) -> io::Result<Vec<OsString>> {
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

/// Opens a directory entry for reading its children, refusing symlinks.
pub(crate) fn open_subdir(dir: impl AsFd, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Removes `name` in `dir` and, if it is a directory, everything below it.
/// Never follows symlinks. Absent is not an error.
pub(crate) fn remove_all_at(dir: impl AsFd, name: &OsStr) -> io::Result<()> {
    let dir = dir.as_fd();
    match lstat_type(dir, name)? {
        None => Ok(()),
        Some(FileType::Directory) => {
            let sub = open_subdir(dir, name)?;
            for child in list_dir(&sub)? {
                remove_all_at(&sub, &child)?;
            }
            drop(sub);
            Ok(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
        }
        Some(_) => Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?),
    }
}

/// procfs's `f_type` (`PROC_SUPER_MAGIC`).
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// Whether `/proc` is a real procfs (checked once per process): the
/// no-follow xattr path below goes through `/proc/self/fd`, and a fake
/// `/proc` (a bind mount of an ordinary tree) must not redirect it.
// `f_type`'s integer type differs between architectures.
#[allow(clippy::useless_conversion)]
fn proc_is_procfs() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        rustix::fs::statfs("/proc/self/fd").is_ok_and(|st| i64::from(st.f_type) == PROC_SUPER_MAGIC)
    })
}

/// Sets an xattr on `name` in `dir` without following `name` if it is a
/// symlink (`lsetxattr` semantics), for nodes that cannot be opened to get an
/// fd to `fsetxattr` through (symlinks, devices, FIFOs).
///
/// There is no `*at` form of `lsetxattr` in rustix, so the path is
/// `/proc/self/fd/<dir>/<name>`: the magic link jumps to `dir` itself (already
/// resolved inside the root), `name` is one component, and the final
/// component is not followed. `/proc` must be a real procfs, else
/// `ENOTSUP`-like `Unsupported` is returned.
pub(crate) fn lsetxattr_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    key: &OsStr,
    value: &[u8],
) -> io::Result<()> {
    debug_assert!(!name.as_bytes().contains(&b'/'), "one path component");
    if !proc_is_procfs() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "setting xattrs on a symlink, device or fifo needs /proc mounted as procfs",
        ));
    }
    let mut path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    path.push(name);
    Ok(rustix::fs::lsetxattr(
        &path,
        key,
        value,
        XattrFlags::empty(),
    )?)
}
