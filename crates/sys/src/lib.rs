//! The only home of kiln's unsafe syscalls, behind small traits.
//!
//! Every operation the runtime (and the layer and snapshot crates) needs from
//! the kernel is a method of one of a few narrow traits: [`MountOps`],
//! [`NsOps`], [`CredOps`], [`FsOps`], [`ProcOps`] and [`LimitOps`].
//! [`LinuxSys`] implements them with real syscalls; `RecordingSys` (feature
//! `testing`, all six traits) records the calls so that the code driving them can be unit-tested
//! without root. A few process-level helpers that have no sensible fake
//! (signal masks, pidfds, ptys, keeping a file descriptor across `exec`) are
//! free functions in [`process`].
//!
//! Syscall wrappers return [`std::io::Result`], like `std`: callers add the
//! path or object they acted on to the error.
//!
//! ```no_run
//! use kiln_sys::{LinuxSys, NsOps, Namespaces};
//! let sys = LinuxSys;
//! sys.unshare(Namespaces::UTS).expect("unshare");
//! sys.sethostname("box").expect("sethostname");
//! ```

#![deny(missing_docs)]

pub mod bpf;
mod linux;
mod mountopts;
pub mod process;
mod types;

#[cfg(feature = "testing")]
mod fake;

pub use caps::Capability;
#[cfg(feature = "testing")]
pub use fake::{FAKE_CHILD_PID, RecordingSys};
pub use linux::LinuxSys;
pub use mountopts::overlay_options_relative;
pub use types::{
    CapabilitySets, DeviceKind, Fork, MountFlags, Namespaces, Rlimit, SockFilter, WaitStatus,
};

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

/// Mounting, unmounting and changing the root.
pub trait MountOps {
    /// mount(2). `source`, `fstype` and `data` may be absent.
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MountFlags,
        data: Option<&str>,
    ) -> io::Result<()>;
    /// umount2(2), lazily (`MNT_DETACH`) when `detach`.
    fn umount(&self, target: &Path, detach: bool) -> io::Result<()>;
    /// pivot_root(2).
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()>;
    /// open_tree(2) with `OPEN_TREE_CLONE`: a detached copy of the mount at
    /// `path` (recursive when asked), to be attached later with
    /// [`MountOps::move_mount`], even after the path became unreachable.
    fn open_tree(&self, path: &Path, recursive: bool) -> io::Result<OwnedFd>;
    /// move_mount(2) of a detached tree onto `target`.
    fn move_mount(&self, tree: BorrowedFd<'_>, target: &Path) -> io::Result<()>;
    /// open_tree(2) with `OPEN_TREE_CLONE` of the object `fd` refers to
    /// (`AT_EMPTY_PATH`; an `O_PATH` descriptor will do): a detached copy
    /// of the mount holding it, rooted at that file or directory, with
    /// the mounts below it when `recursive`. The object is the one opened,
    /// never a path looked up again, so a caller that resolved `fd` safely
    /// (e.g. `openat2` with `RESOLVE_IN_ROOT`) mounts exactly that.
    fn open_tree_fd(&self, fd: BorrowedFd<'_>, recursive: bool) -> io::Result<OwnedFd>;
    /// mount_setattr(2) on the mount `tree` refers to (a detached tree from
    /// [`MountOps::open_tree_fd`] or any fd on a mount): sets the
    /// `RDONLY`, `NOSUID`, `NODEV` and `NOEXEC` attributes of `set`, on
    /// every mount below it too when `recursive` (`AT_RECURSIVE`: a
    /// read-only bind is then read-only all the way down). Other flags are
    /// refused (Linux 5.12).
    fn mount_setattr(
        &self,
        tree: BorrowedFd<'_>,
        recursive: bool,
        set: MountFlags,
    ) -> io::Result<()>;
    /// Mounts a new `fstype` filesystem on `target` through the
    /// fsopen/fsconfig/fsmount API (Linux 5.2), which takes the options one
    /// at a time: no limit on their total length. `options` are mount(8)
    /// `-o` data, one per element (`key=value` or `flag`). For overlay, a
    /// `lowerdir=a:b:c` list goes in as one `lowerdir+` per layer (Linux
    /// 6.8), so a chain is limited by overlay's own depth (500), not by the
    /// page mount(2) copies. `flags` may hold `RDONLY`, `NOSUID`, `NODEV`,
    /// `NOEXEC` and the atime flags; an error carries the filesystem's
    /// own message (what `dmesg` would have shown for mount(2)).
    fn mount_fs(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        options: &[String],
    ) -> io::Result<()>;
    /// mount(2) of a new `fstype` filesystem from inside `dir`: a helper
    /// thread with a working directory of its own changes into `dir` and
    /// mounts there (the caller's stays as it was), so that relative paths
    /// in `options` resolve against it (how Docker's overlay2 fits long
    /// lower-dir lists into one page). `target` must be absolute.
    fn mount_from(
        &self,
        dir: &Path,
        source: Option<&Path>,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        options: &[String],
    ) -> io::Result<()>;
    /// Mounts a new `fstype` filesystem with `options` (as for
    /// [`MountOps::mount_fs`]): by mount(2) when their comma-joined data
    /// fits the page it copies ([`MOUNT_DATA_MAX`] bytes), else by
    /// [`MountOps::mount_fs`]. On a kernel whose overlay lacks
    /// `lowerdir+` (before 6.8), an overlay's paths are made relative to
    /// their common directory ([`overlay_options_relative`]) and mounted
    /// from there by [`MountOps::mount_from`], if that fits the page.
    fn mount_with_options(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        options: &[String],
    ) -> io::Result<()> {
        let data = options.join(",");
        if data.len() <= MOUNT_DATA_MAX {
            let data = (!data.is_empty()).then_some(data.as_str());
            return self.mount(source, target, Some(fstype), flags, data);
        }
        match self.mount_fs(source, target, fstype, flags, options) {
            Err(e) if e.kind() == io::ErrorKind::Unsupported && fstype == "overlay" => {
                let relative = overlay_options_relative(options)
                    .filter(|(_, o)| o.join(",").len() <= MOUNT_DATA_MAX);
                match relative {
                    Some((dir, o)) => self.mount_from(&dir, source, target, fstype, flags, &o),
                    None => Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!(
                            "{e}; the {} bytes of overlay options do not fit mount(2)'s page even with relative paths",
                            data.len()
                        ),
                    )),
                }
            }
            other => other,
        }
    }
}

/// The longest mount data mount(2) takes: it copies one page (4 KiB on
/// x86-64), terminating nul included.
pub const MOUNT_DATA_MAX: usize = 4096 - 1;

/// Namespaces and what lives in them.
pub trait NsOps {
    /// unshare(2).
    fn unshare(&self, ns: Namespaces) -> io::Result<()>;
    /// setns(2) into the namespace behind `fd`.
    fn setns(&self, fd: BorrowedFd<'_>, ns: Namespaces) -> io::Result<()>;
    /// sethostname(2).
    fn sethostname(&self, name: &str) -> io::Result<()>;
    /// Brings the loopback interface of the current network namespace up.
    fn loopback_up(&self) -> io::Result<()>;
}

/// Credentials: ids, groups, capabilities, no_new_privs.
pub trait CredOps {
    /// setgroups(2).
    fn setgroups(&self, groups: &[u32]) -> io::Result<()>;
    /// setresgid(2) with all three ids equal.
    fn setgid(&self, gid: u32) -> io::Result<()>;
    /// setresuid(2) with all three ids equal.
    fn setuid(&self, uid: u32) -> io::Result<()>;
    /// PR_SET_KEEPCAPS: keep permitted capabilities across a uid change.
    fn set_keepcaps(&self, keep: bool) -> io::Result<()>;
    /// Drops from the bounding set every capability not in `keep` (needs
    /// CAP_SETPCAP: call it before changing to a non-root uid).
    fn drop_bounding(&self, keep: &[Capability]) -> io::Result<()>;
    /// Sets the inheritable, permitted, effective and ambient sets.
    fn set_capabilities(&self, sets: &CapabilitySets) -> io::Result<()>;
    /// PR_SET_NO_NEW_PRIVS.
    fn set_no_new_privs(&self) -> io::Result<()>;
    /// PR_SET_DUMPABLE: a non-dumpable process's `/proc/PID` files (its
    /// `exe`, its fds) are out of reach of unprivileged processes.
    fn set_dumpable(&self, dumpable: bool) -> io::Result<()>;
}

/// Creating things in the filesystem.
pub trait FsOps {
    /// Creates a directory and its parents (mode before umask).
    fn mkdir_all(&self, path: &Path, mode: u32) -> io::Result<()>;
    /// Creates an empty regular file if nothing exists at `path` (a bind
    /// mount target), with its parent directories.
    fn create_file(&self, path: &Path) -> io::Result<()>;
    /// mknod(2).
    fn mknod(
        &self,
        path: &Path,
        kind: DeviceKind,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> io::Result<()>;
    /// symlink(2); `link` pointing at `target`.
    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()>;
    /// chdir(2).
    fn chdir(&self, path: &Path) -> io::Result<()>;
    /// chown(2) without following a final symlink.
    fn lchown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()>;
    /// What is at `path` without following a final symlink: `None` when
    /// nothing, `Some(true)` for a directory, `Some(false)` for anything else.
    fn probe_dir(&self, path: &Path) -> io::Result<Option<bool>>;
}

/// Process creation and control.
pub trait ProcOps {
    /// fork(2). Only call it from a single-threaded process.
    fn fork(&self) -> io::Result<Fork>;
    /// waitpid(2); `None` when `nohang` and the child has not changed state.
    fn waitpid(&self, pid: i32, nohang: bool) -> io::Result<Option<(i32, WaitStatus)>>;
    /// kill(2).
    fn kill(&self, pid: i32, signal: i32) -> io::Result<()>;
    /// execve(2); returns only on failure.
    fn execve(&self, path: &Path, args: &[String], env: &[String]) -> io::Error;
    /// setsid(2).
    fn setsid(&self) -> io::Result<()>;
    /// Makes the terminal on `fd` the controlling terminal (TIOCSCTTY).
    fn set_controlling_tty(&self, fd: BorrowedFd<'_>) -> io::Result<()>;
    /// PR_SET_PDEATHSIG.
    fn set_parent_death_signal(&self, signal: i32) -> io::Result<()>;
    /// _exit(2): leaves without running destructors or atexit handlers.
    fn exit(&self, code: i32) -> !;
}

/// Resource limits, file descriptors and seccomp.
pub trait LimitOps {
    /// getrlimit(2) of a resource (`libc::RLIMIT_*` as `u32`).
    fn getrlimit(&self, resource: u32) -> io::Result<Rlimit>;
    /// setrlimit(2).
    fn setrlimit(&self, resource: u32, limit: Rlimit) -> io::Result<()>;
    /// Marks every file descriptor from `first` on close-on-exec.
    fn cloexec_from(&self, first: i32) -> io::Result<()>;
    /// Closes every file descriptor from `first` on.
    fn close_from(&self, first: i32) -> io::Result<()>;
    /// Installs a seccomp BPF filter (SECCOMP_SET_MODE_FILTER). Requires
    /// no_new_privs or CAP_SYS_ADMIN; does not set no_new_privs itself.
    fn install_seccomp(&self, filter: &[SockFilter]) -> io::Result<()>;
}
