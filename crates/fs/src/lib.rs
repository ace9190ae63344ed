//! One door for untrusted trees: every path resolved inside a root directory fd.
//!
//! A build context, an image's root filesystem, a step's upper directory, a
//! stage's tree, an archive being unpacked: kiln works on trees whose
//! content (and symlinks) someone else chose. [`Root`] is the only way kiln
//! touches such a tree. It holds a file descriptor of the tree's top
//! directory and resolves every relative path from it with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: symlinks (absolute,
//! relative, `../..` chains) resolve as if the root were `/`, `..` stops at
//! the root, `/proc/self/fd`-style magic links are refused, and a loop is
//! `ELOOP`. No host path string is ever joined onto the root.
//!
//! The final component is handled the way each operation needs:
//!
//! - Operations that create, remove, rename or link a name (`create`,
//!   `mkdir`, `remove`, `remove_all`, `symlink`, `hard_link`, `rename`,
//!   `mknod`, `readlink`, `lstat`) resolve the *parent* inside the root and
//!   act on the last name with a `*at` call that never follows it: a file
//!   written where a symlink was replaces the link, never writes through it.
//! - Operations that act on an object (`open_path`, `open_file`, `stat`,
//!   `chown`, `chmod`, `set_times`) take a [`FinalLink`]: follow a final
//!   symlink (inside the root), act on the link itself, or refuse it.
//!
//! Reading never opens a device or a FIFO: [`Root::open_file`] opens the
//! object with `O_PATH`, checks that it is a regular file, and only then
//! reopens it for reading (so an image whose `/etc/passwd` is a block device
//! or `/dev/watchdog` makes kiln fail, not read a host disk).
//!
//! The [`at`] module has the single-name operations on a directory fd that
//! was itself resolved inside a root (for code that walks a tree once and
//! acts on many names, such as the layer unpacker).
//!
//! ```
//! use kiln_fs::{FinalLink, Root};
//! # fn main() -> std::io::Result<()> {
//! let tmp = tempfile::tempdir()?;
//! let root = Root::open(tmp.path())?;
//! root.mkdir_all("etc", 0o755)?;
//! root.write("etc/passwd", b"root:x:0:0::/root:/bin/sh\n", 0o644)?;
//! // A link to the host's /etc/shadow means <root>/etc/shadow here.
//! root.symlink("/etc/shadow", "leak")?;
//! assert!(root.read("leak").is_err());
//! // A link that climbs out stops at the root.
//! root.symlink("../../../../etc", "up")?;
//! assert_eq!(root.read("up/passwd")?, b"root:x:0:0::/root:/bin/sh\n");
//! assert!(root.lstat("leak")?.is_symlink());
//! assert!(root.stat("up", FinalLink::Follow)?.is_dir());
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod at;

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustix::fs::{AtFlags, Gid, Mode, OFlags, ResolveFlags, Timestamps, Uid};

/// How every lookup inside a root resolves.
const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// What to do when the last component of a path is a symlink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalLink {
    /// Follow it, inside the root (as every earlier component is).
    Follow,
    /// Act on the symlink itself.
    NoFollow,
    /// Fail with `ELOOP` ("too many levels of symbolic links").
    Refuse,
}

/// The kind of a file system object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
    /// Anything else.
    Unknown,
}

impl FileType {
    /// The type encoded in an `st_mode`.
    pub fn from_mode(mode: u32) -> FileType {
        match mode & 0o170000 {
            0o100000 => FileType::File,
            0o040000 => FileType::Dir,
            0o120000 => FileType::Symlink,
            0o020000 => FileType::CharDevice,
            0o060000 => FileType::BlockDevice,
            0o010000 => FileType::Fifo,
            0o140000 => FileType::Socket,
            _ => FileType::Unknown,
        }
    }

    fn to_rustix(self) -> rustix::fs::FileType {
        match self {
            FileType::File => rustix::fs::FileType::RegularFile,
            FileType::Dir => rustix::fs::FileType::Directory,
            FileType::Symlink => rustix::fs::FileType::Symlink,
            FileType::CharDevice => rustix::fs::FileType::CharacterDevice,
            FileType::BlockDevice => rustix::fs::FileType::BlockDevice,
            FileType::Fifo => rustix::fs::FileType::Fifo,
            FileType::Socket => rustix::fs::FileType::Socket,
            FileType::Unknown => rustix::fs::FileType::Unknown,
        }
    }
}

/// What `stat` says about an object (never following a final symlink
/// unless asked to).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metadata {
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: i64,
    mtime_nsec: u32,
    ctime: i64,
    ctime_nsec: u32,
    ino: u64,
    dev: u64,
    rdev: u64,
    nlink: u64,
}

impl Metadata {
    // Field types differ between architectures.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    fn from_stat(st: &rustix::fs::Stat) -> Metadata {
        Metadata {
            mode: st.st_mode as u32,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime: st.st_mtime as i64,
            mtime_nsec: st.st_mtime_nsec as u32,
            ctime: st.st_ctime as i64,
            ctime_nsec: st.st_ctime_nsec as u32,
            ino: st.st_ino as u64,
            dev: st.st_dev as u64,
            rdev: st.st_rdev as u64,
            nlink: st.st_nlink as u64,
        }
    }

    /// The object's type.
    pub fn file_type(&self) -> FileType {
        FileType::from_mode(self.mode)
    }
    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.file_type() == FileType::Dir
    }
    /// A regular file.
    pub fn is_file(&self) -> bool {
        self.file_type() == FileType::File
    }
    /// A symbolic link (only seen when the final link is not followed).
    pub fn is_symlink(&self) -> bool {
        self.file_type() == FileType::Symlink
    }
    /// The whole `st_mode` (type and permission bits).
    pub fn mode(&self) -> u32 {
        self.mode
    }
    /// The permission bits with setuid, setgid and sticky (`mode & 0o7777`).
    pub fn permissions(&self) -> u32 {
        self.mode & 0o7777
    }
    /// Owner user ID.
    pub fn uid(&self) -> u32 {
        self.uid
    }
    /// Owner group ID.
    pub fn gid(&self) -> u32 {
        self.gid
    }
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.size
    }
    /// Whether the size is zero.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
    /// Modification time, seconds since the epoch.
    pub fn mtime(&self) -> i64 {
        self.mtime
    }
    /// Nanoseconds of the modification time.
    pub fn mtime_nsec(&self) -> u32 {
        self.mtime_nsec
    }
    /// Status change time, seconds since the epoch.
    pub fn ctime(&self) -> i64 {
        self.ctime
    }
    /// Nanoseconds of the status change time.
    pub fn ctime_nsec(&self) -> u32 {
        self.ctime_nsec
    }
    /// Inode number.
    pub fn ino(&self) -> u64 {
        self.ino
    }
    /// Device of the file system holding the object.
    pub fn dev(&self) -> u64 {
        self.dev
    }
    /// Device number of a device node.
    pub fn rdev(&self) -> u64 {
        self.rdev
    }
    /// Number of hard links.
    pub fn nlink(&self) -> u64 {
        self.nlink
    }
}

/// A directory tree that kiln does not trust, reached only through its
/// top directory's file descriptor.
///
/// Paths given to its methods are relative to the root; a leading `/` is
/// allowed and means the root too (as in an image), `..` never climbs
/// above it. Cloning is cheap (the descriptor is shared).
#[derive(Clone, Debug)]
pub struct Root {
    fd: Arc<OwnedFd>,
    path: Arc<Path>,
}

impl AsFd for Root {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// An error for a path that names the root itself where a name is needed.
fn the_root_itself() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "the path names the root itself, not an entry inside it",
    )
}

/// Splits `rel` into the path of its parent (for `openat2`) and its last
/// name, which must be an ordinary name (not `.`, `..` or empty).
fn split(rel: &Path) -> io::Result<(PathBuf, &OsStr)> {
    let mut parent = PathBuf::new();
    let mut last: Option<&OsStr> = None;
    for comp in rel.components() {
        match comp {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if let Some(name) = last.take() {
                    parent.push(name);
                }
                parent.push("..");
            }
            Component::Normal(name) => {
                if let Some(prev) = last.replace(name) {
                    parent.push(prev);
                }
            }
        }
    }
    match last {
        Some(name) => Ok((parent, name)),
        None if parent.as_os_str().is_empty() => Err(the_root_itself()),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("path {} ends in `..`", rel.display()),
        )),
    }
}

/// `rel` without leading `/`, or `.` for the root.
fn relative(rel: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for comp in rel.components() {
        match comp {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => out.push(".."),
            Component::Normal(n) => out.push(n),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// `openat2` inside the root, retried when the kernel reports a concurrent
/// rename (`EAGAIN`, which `RESOLVE_IN_ROOT` returns rather than risk a
/// wrong `..`).
fn openat2(dir: BorrowedFd<'_>, rel: &Path, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
    let rel = relative(rel);
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(dir, &rel, flags | OFlags::CLOEXEC, mode, RESOLVE) {
            Err(rustix::io::Errno::AGAIN) if tries < 64 => tries += 1,
            other => return Ok(other?),
        }
    }
}

/// procfs's `f_type` (`PROC_SUPER_MAGIC`).
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// Whether `/proc` is a real procfs (checked once per process): operations
/// with no `*at` form that acts on an `O_PATH` descriptor (chmod, times,
/// reopening for reading, xattrs on links) go through `/proc/self/fd/N`,
/// which a fake `/proc` must not redirect.
// `f_type`'s integer type differs between architectures.
#[allow(clippy::useless_conversion)]
pub(crate) fn proc_is_procfs() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        rustix::fs::statfs("/proc/self/fd").is_ok_and(|st| i64::from(st.f_type) == PROC_SUPER_MAGIC)
    })
}

/// `/proc/self/fd/N` for a descriptor, after checking that `/proc` is procfs.
pub(crate) fn proc_fd_path(fd: BorrowedFd<'_>) -> io::Result<PathBuf> {
    if !proc_is_procfs() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "kiln needs /proc mounted as procfs to act on files inside an untrusted tree",
        ));
    }
    Ok(PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())))
}

fn timestamps(secs: i64, nsecs: u32) -> Timestamps {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: nsecs.into(),
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn not_regular(rel: &Path, t: FileType) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{} is not a regular file (it is a {t:?})", rel.display()),
    )
}

fn loop_error() -> io::Error {
    io::Error::from_raw_os_error(rustix::io::Errno::LOOP.raw_os_error())
}

impl Root {
    /// Opens the directory at `path` as a root. `path` itself is taken as
    /// given (it is kiln's own: a store directory, a mount point, the
    /// context directory the user named); everything below it is not.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Root> {
        let path = path.as_ref();
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root {
            fd: Arc::new(fd),
            path: Arc::from(path),
        })
    }

    /// A root from a directory descriptor already opened; `path` is only
    /// for messages.
    pub fn from_fd(fd: OwnedFd, path: impl Into<PathBuf>) -> Root {
        Root {
            fd: Arc::new(fd),
            path: Arc::from(path.into()),
        }
    }

    /// The directory `rel` inside this root, as a root of its own: from then
    /// on its symlinks resolve with *it* as `/` (for extracting an archive
    /// into a destination directory as `docker build`'s ADD does).
    pub fn subdir(&self, rel: impl AsRef<Path>) -> io::Result<Root> {
        let rel = rel.as_ref();
        let fd = self.resolve_dir(rel)?;
        Ok(Root::from_fd(fd, self.display(rel)))
    }

    /// The host path the root was opened at. For messages only: never open
    /// anything through it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `rel` under the root's host path, for messages only.
    pub fn display(&self, rel: impl AsRef<Path>) -> PathBuf {
        let rel = relative(rel.as_ref());
        if rel == Path::new(".") {
            self.path.to_path_buf()
        } else {
            let mut p = self.path.to_path_buf();
            p.push(rel);
            p
        }
    }

    /// An `O_PATH` descriptor of `rel`, resolved inside the root, with the
    /// final symlink followed, kept or refused. Good for `fstat`, as a
    /// directory fd for `*at` calls, or for mounting the object itself
    /// (`open_tree`/`move_mount`, or `/proc/self/fd/N` as a bind source)
    /// without a path walk that could leave the root.
    pub fn open_path(&self, rel: impl AsRef<Path>, last: FinalLink) -> io::Result<OwnedFd> {
        let rel = rel.as_ref();
        let flags = match last {
            FinalLink::Follow => OFlags::PATH,
            FinalLink::NoFollow | FinalLink::Refuse => OFlags::PATH | OFlags::NOFOLLOW,
        };
        let fd = openat2(self.as_fd(), rel, flags, Mode::empty())?;
        if last == FinalLink::Refuse
            && FileType::from_mode(rustix::fs::fstat(&fd)?.st_mode as u32) == FileType::Symlink
        {
            return Err(loop_error());
        }
        Ok(fd)
    }

    /// An `O_PATH` descriptor of the directory `rel` (symlinks followed
    /// inside the root); the root itself for an empty path.
    pub fn resolve_dir(&self, rel: impl AsRef<Path>) -> io::Result<OwnedFd> {
        openat2(
            self.as_fd(),
            rel.as_ref(),
            OFlags::PATH | OFlags::DIRECTORY,
            Mode::empty(),
        )
    }

    /// The directory `rel` opened for reading its entries (for
    /// [`at::list`] and friends).
    pub fn open_dir(&self, rel: impl AsRef<Path>) -> io::Result<OwnedFd> {
        openat2(
            self.as_fd(),
            rel.as_ref(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
    }

    /// The regular file `rel` opened for reading. Anything else (a
    /// directory, a device, a FIFO, a socket) is an `InvalidInput` error and
    /// is never opened for reading: the object is first opened with
    /// `O_PATH`, checked, then reopened through its descriptor.
    pub fn open_file(&self, rel: impl AsRef<Path>, last: FinalLink) -> io::Result<File> {
        let rel = rel.as_ref();
        let fd = self.open_path(rel, last)?;
        let t = FileType::from_mode(rustix::fs::fstat(&fd)?.st_mode as u32);
        if t != FileType::File {
            return Err(not_regular(rel, t));
        }
        let reopened = rustix::fs::open(
            proc_fd_path(fd.as_fd())?,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        )?;
        Ok(File::from(reopened))
    }

    /// The content of the regular file `rel` (a final symlink followed
    /// inside the root).
    pub fn read(&self, rel: impl AsRef<Path>) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.open_file(rel, FinalLink::Follow)?
            .read_to_end(&mut out)?;
        Ok(out)
    }

    /// Like [`Root::read`], failing with `FileTooLarge` beyond `max` bytes
    /// (for files an image could make huge, such as `/etc/passwd`).
    pub fn read_limited(&self, rel: impl AsRef<Path>, max: u64) -> io::Result<Vec<u8>> {
        let rel = rel.as_ref();
        let mut out = Vec::new();
        self.open_file(rel, FinalLink::Follow)?
            .take(max.saturating_add(1))
            .read_to_end(&mut out)?;
        if out.len() as u64 > max {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("{} is larger than {max} bytes", rel.display()),
            ));
        }
        Ok(out)
    }

    /// The content of the regular file `rel` as UTF-8 text.
    pub fn read_to_string(&self, rel: impl AsRef<Path>) -> io::Result<String> {
        String::from_utf8(self.read(rel)?)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Creates the new regular file `rel` for writing (`O_CREAT|O_EXCL`,
    /// never following a link at `rel`), with `mode` (the umask applies;
    /// `File::set_permissions` sets exact bits). The parent must exist.
    pub fn create(&self, rel: impl AsRef<Path>, mode: u32) -> io::Result<File> {
        let (parent, name) = split(rel.as_ref())?;
        let dir = self.resolve_dir(&parent)?;
        at::create(&dir, name, mode)
    }

    /// Writes `data` to `rel`, replacing a file, symlink or other
    /// non-directory there (never writing through a link), with `mode`
    /// (exact bits).
    pub fn write(&self, rel: impl AsRef<Path>, data: &[u8], mode: u32) -> io::Result<()> {
        let (parent, name) = split(rel.as_ref())?;
        let dir = self.resolve_dir(&parent)?;
        if let Some(t) = at::file_type(&dir, name)? {
            if t == FileType::Dir {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    format!("{} is a directory", rel.as_ref().display()),
                ));
            }
            rustix::fs::unlinkat(&dir, name, AtFlags::empty())?;
        }
        let mut f = at::create(&dir, name, mode)?;
        f.write_all(data)?;
        rustix::fs::fchmod(&f, Mode::from_raw_mode(mode & 0o7777))?;
        Ok(())
    }

    /// Creates the directory `rel` (the umask applies to `mode`). Its parent
    /// must exist; an existing entry at `rel` is an `AlreadyExists` error.
    pub fn mkdir(&self, rel: impl AsRef<Path>, mode: u32) -> io::Result<()> {
        let (parent, name) = split(rel.as_ref())?;
        let dir = self.resolve_dir(&parent)?;
        Ok(rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(mode))?)
    }

    /// `mkdir -p` inside the root: creates the missing directories of `rel`
    /// with exactly `mode`, following existing symlinks inside the root,
    /// and returns an `O_PATH` descriptor of the last one.
    pub fn mkdir_all(&self, rel: impl AsRef<Path>, mode: u32) -> io::Result<OwnedFd> {
        self.mkdir_all_with(rel.as_ref(), mode, None)
    }

    /// [`Root::mkdir_all`], with the directories it creates owned by
    /// `uid:gid` (existing ones are left alone).
    pub fn mkdir_all_owned(
        &self,
        rel: impl AsRef<Path>,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> io::Result<OwnedFd> {
        self.mkdir_all_with(rel.as_ref(), mode, Some((uid, gid)))
    }

    /// `mkdir -p` as `tar -x` does it: missing directories of `rel` are
    /// created with exactly `mode`, existing symlinks on the way are
    /// followed inside the root, but a dangling symlink on the way is a
    /// `NotFound` error (its target is not created). Returns an `O_PATH`
    /// descriptor of the last directory.
    pub fn ensure_dir(&self, rel: impl AsRef<Path>, mode: u32) -> io::Result<OwnedFd> {
        self.mkdir_all_hops(rel.as_ref(), mode, None, None)
    }

    fn mkdir_all_with(
        &self,
        rel: &Path,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> io::Result<OwnedFd> {
        let mut hops = 0;
        self.mkdir_all_hops(rel, mode, owner, Some(&mut hops))
    }

    /// `mkdir -p`, where a dangling symlink on the way has its target
    /// created (inside the root) as `docker build` does for a COPY
    /// destination; `hops` bounds the links followed that way (`None`: a
    /// dangling link is an error).
    fn mkdir_all_hops(
        &self,
        rel: &Path,
        mode: u32,
        owner: Option<(u32, u32)>,
        mut hops: Option<&mut u32>,
    ) -> io::Result<OwnedFd> {
        match self.resolve_dir(rel) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => return other,
        }
        let mut prefix = PathBuf::new();
        let mut current = self.resolve_dir(&prefix)?;
        for comp in rel.components() {
            let name = match comp {
                Component::Normal(name) => name,
                Component::ParentDir => {
                    prefix.push("..");
                    current = self.resolve_dir(&prefix)?;
                    continue;
                }
                _ => continue,
            };
            prefix.push(name);
            current = match self.resolve_dir(&prefix) {
                Ok(fd) => fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match rustix::fs::mkdirat(&current, name, Mode::from_raw_mode(0o700)) {
                        Ok(()) => {
                            if let Some((uid, gid)) = owner {
                                rustix::fs::chownat(
                                    &current,
                                    name,
                                    Some(Uid::from_raw(uid)),
                                    Some(Gid::from_raw(gid)),
                                    AtFlags::SYMLINK_NOFOLLOW,
                                )?;
                            }
                            let made = at::open_subdir(&current, name)?;
                            rustix::fs::fchmod(&made, Mode::from_raw_mode(mode & 0o7777))?;
                        }
                        // Made meanwhile by someone else, or a dangling link:
                        // make its target, inside the root.
                        Err(rustix::io::Errno::EXIST) => {
                            if at::file_type(&current, name)? == Some(FileType::Symlink) {
                                // `ensure_dir`: a dangling link is not followed.
                                let Some(hops) = hops.as_deref_mut() else {
                                    return Err(io::ErrorKind::NotFound.into());
                                };
                                *hops += 1;
                                if *hops > 40 {
                                    return Err(loop_error());
                                }
                                let target = at::readlink(&current, name)?;
                                let mut via = prefix.clone();
                                via.pop();
                                via.push(target);
                                self.mkdir_all_hops(&via, mode, owner, Some(hops))?;
                            }
                        }
                        Err(e) => return Err(e.into()),
                    }
                    self.resolve_dir(&prefix)?
                }
                Err(e) => return Err(e),
            };
        }
        Ok(current)
    }

    /// Removes the file, symlink, device, FIFO or empty directory `rel`,
    /// never following a link at `rel`.
    pub fn remove(&self, rel: impl AsRef<Path>) -> io::Result<()> {
        let (parent, name) = split(rel.as_ref())?;
        let dir = self.resolve_dir(&parent)?;
        let flags = match at::file_type(&dir, name)? {
            None => return Err(io::ErrorKind::NotFound.into()),
            Some(FileType::Dir) => AtFlags::REMOVEDIR,
            Some(_) => AtFlags::empty(),
        };
        Ok(rustix::fs::unlinkat(&dir, name, flags)?)
    }

    /// `rm -rf` inside the root: removes `rel` and, for a directory,
    /// everything below it, never following a symlink (a link is removed,
    /// not what it points to). Absent is not an error; the root itself
    /// cannot be removed.
    pub fn remove_all(&self, rel: impl AsRef<Path>) -> io::Result<()> {
        let (parent, name) = split(rel.as_ref())?;
        let dir = match self.resolve_dir(&parent) {
            Ok(d) => d,
            Err(e) if at::is_absent(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        at::remove_all(&dir, name)
    }

    /// Sets the owner of `rel` (`lchown` with [`FinalLink::NoFollow`]).
    pub fn chown(
        &self,
        rel: impl AsRef<Path>,
        uid: u32,
        gid: u32,
        last: FinalLink,
    ) -> io::Result<()> {
        let fd = self.open_path(rel, last)?;
        Ok(rustix::fs::chownat(
            &fd,
            "",
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::EMPTY_PATH,
        )?)
    }

    /// Sets the permission bits (with setuid, setgid, sticky) of `rel`. A
    /// symlink has no mode of its own on Linux: with
    /// [`FinalLink::NoFollow`] a final symlink is left as it is.
    pub fn chmod(&self, rel: impl AsRef<Path>, mode: u32, last: FinalLink) -> io::Result<()> {
        let fd = self.open_path(rel, last)?;
        let st = rustix::fs::fstat(&fd)?;
        if FileType::from_mode(st.st_mode as u32) == FileType::Symlink {
            return Ok(());
        }
        Ok(rustix::fs::chmod(
            proc_fd_path(fd.as_fd())?,
            Mode::from_raw_mode(mode & 0o7777),
        )?)
    }

    /// Sets the access and modification times of `rel` to `secs.nsecs`.
    pub fn set_times(
        &self,
        rel: impl AsRef<Path>,
        secs: i64,
        nsecs: u32,
        last: FinalLink,
    ) -> io::Result<()> {
        let rel = rel.as_ref();
        let fd = self.open_path(rel, last)?;
        let st = rustix::fs::fstat(&fd)?;
        let ts = timestamps(secs, nsecs);
        if FileType::from_mode(st.st_mode as u32) == FileType::Symlink {
            // The link itself: by name in its parent, never followed.
            let (parent, name) = split(rel)?;
            let dir = self.resolve_dir(&parent)?;
            return Ok(rustix::fs::utimensat(
                &dir,
                name,
                &ts,
                AtFlags::SYMLINK_NOFOLLOW,
            )?);
        }
        Ok(rustix::fs::utimensat(
            rustix::fs::CWD,
            proc_fd_path(fd.as_fd())?,
            &ts,
            AtFlags::empty(),
        )?)
    }

    /// The target of the symlink `rel`, as written (not resolved).
    pub fn readlink(&self, rel: impl AsRef<Path>) -> io::Result<PathBuf> {
        let (parent, name) = split(rel.as_ref())?;
        let dir = self.resolve_dir(&parent)?;
        at::readlink(&dir, name)
    }

    /// Creates the symlink `rel` pointing to `target` (stored as given; it
    /// resolves inside the root whenever kiln follows it).
    pub fn symlink(&self, target: impl AsRef<Path>, rel: impl AsRef<Path>) -> io::Result<()> {
        let (parent, name) = split(rel.as_ref())?;
        let dir = self.resolve_dir(&parent)?;
        Ok(rustix::fs::symlinkat(target.as_ref(), &dir, name)?)
    }

    /// Creates `new` as a hard link to `existing` (both inside the root; a
    /// symlink at `existing` is linked itself, not followed).
    pub fn hard_link(&self, existing: impl AsRef<Path>, new: impl AsRef<Path>) -> io::Result<()> {
        let (p1, n1) = split(existing.as_ref())?;
        let (p2, n2) = split(new.as_ref())?;
        let d1 = self.resolve_dir(&p1)?;
        let d2 = self.resolve_dir(&p2)?;
        Ok(rustix::fs::linkat(&d1, n1, &d2, n2, AtFlags::empty())?)
    }

    /// Renames `from` to `to` inside the root (neither name followed).
    pub fn rename(&self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
        let (p1, n1) = split(from.as_ref())?;
        let (p2, n2) = split(to.as_ref())?;
        let d1 = self.resolve_dir(&p1)?;
        let d2 = self.resolve_dir(&p2)?;
        Ok(rustix::fs::renameat(&d1, n1, &d2, n2)?)
    }

    /// Creates a device node, FIFO or socket node `rel` (`mknodat`).
    pub fn mknod(
        &self,
        rel: impl AsRef<Path>,
        kind: FileType,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> io::Result<()> {
        let (parent, name) = split(rel.as_ref())?;
        let dir = self.resolve_dir(&parent)?;
        Ok(rustix::fs::mknodat(
            &dir,
            name,
            kind.to_rustix(),
            Mode::from_raw_mode(mode),
            rustix::fs::makedev(major, minor),
        )?)
    }

    /// Where `rel` leads inside the root: its path relative to the root
    /// with every symlink resolved (inside the root) and no `.` or `..`
    /// (empty for the root itself). For matching rules such as
    /// `.dockerignore` against what a link points to; act on the object
    /// through [`Root::open_path`], not through this path.
    pub fn canonical(&self, rel: impl AsRef<Path>, last: FinalLink) -> io::Result<PathBuf> {
        let fd = self.open_path(rel, last)?;
        let top = rustix::fs::readlink(proc_fd_path(self.as_fd())?, Vec::new())?;
        let here = rustix::fs::readlink(proc_fd_path(fd.as_fd())?, Vec::new())?;
        let top = Path::new(OsStr::from_bytes(top.as_bytes()));
        let here = Path::new(OsStr::from_bytes(here.as_bytes()));
        here.strip_prefix(top).map(Path::to_path_buf).map_err(|_| {
            io::Error::other(format!(
                "{} resolved outside the root as seen from /proc",
                here.display()
            ))
        })
    }

    /// The metadata of `rel` (of what a final symlink points to with
    /// [`FinalLink::Follow`]).
    pub fn stat(&self, rel: impl AsRef<Path>, last: FinalLink) -> io::Result<Metadata> {
        let fd = self.open_path(rel, last)?;
        Ok(Metadata::from_stat(&rustix::fs::fstat(&fd)?))
    }

    /// The metadata of `rel` itself (a final symlink not followed).
    pub fn lstat(&self, rel: impl AsRef<Path>) -> io::Result<Metadata> {
        let rel = rel.as_ref();
        match split(rel) {
            Ok((parent, name)) => {
                let dir = self.resolve_dir(&parent)?;
                at::lstat(&dir, name)?.ok_or_else(|| io::ErrorKind::NotFound.into())
            }
            Err(_) if relative(rel) == Path::new(".") => {
                Ok(Metadata::from_stat(&rustix::fs::fstat(self)?))
            }
            Err(e) => Err(e),
        }
    }

    /// [`Root::lstat`], with a missing entry (or a missing or non-directory
    /// parent) as `None`.
    pub fn try_lstat(&self, rel: impl AsRef<Path>) -> io::Result<Option<Metadata>> {
        match self.lstat(rel) {
            Ok(m) => Ok(Some(m)),
            Err(e) if at::is_absent(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The names in the directory `rel` (followed inside the root), sorted,
    /// without `.` and `..`.
    pub fn list(&self, rel: impl AsRef<Path>) -> io::Result<Vec<OsString>> {
        let dir = self.open_dir(rel)?;
        let mut names = at::list(&dir)?;
        names.sort();
        Ok(names)
    }

    /// Walks the tree below the directory `rel` (not `rel` itself): calls
    /// `f(path, metadata)` for every entry, parents before children, names
    /// sorted within a directory, `path` relative to the root. Symlinks are
    /// reported, never followed; `f` returns whether to descend into a
    /// directory.
    pub fn walk(
        &self,
        rel: impl AsRef<Path>,
        f: &mut dyn FnMut(&Path, &Metadata) -> io::Result<bool>,
    ) -> io::Result<()> {
        let rel = rel.as_ref();
        let dir = self.open_dir(rel)?;
        let base = relative(rel);
        let base = if base == Path::new(".") {
            PathBuf::new()
        } else {
            base
        };
        walk_fd(&dir, &base, f)
    }
}

fn walk_fd(
    dir: &OwnedFd,
    base: &Path,
    f: &mut dyn FnMut(&Path, &Metadata) -> io::Result<bool>,
) -> io::Result<()> {
    let mut names = at::list(dir)?;
    names.sort();
    for name in names {
        let Some(meta) = at::lstat(dir, &name)? else {
            continue; // removed meanwhile
        };
        let path = base.join(&name);
        if f(&path, &meta)? && meta.is_dir() {
            let sub = at::open_subdir(dir, &name)?;
            walk_fd(&sub, &path, f)?;
        }
    }
    Ok(())
}

// `OsStr::as_bytes` is used by `at`; keep the import in one place.
pub(crate) fn bytes(s: &OsStr) -> &[u8] {
    s.as_bytes()
}

#[cfg(test)]
mod tests;
