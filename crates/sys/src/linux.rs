//! `LinuxSys`: the real implementation of the syscall traits.

use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use caps::{CapSet, Capability};

use crate::mountopts::split_lowerdirs;
use crate::types::{
    CapabilitySets, DeviceKind, Fork, MountFlags, Namespaces, Rlimit, SockFilter, WaitStatus,
};
use crate::{CredOps, FsOps, LimitOps, MountOps, NsOps, ProcOps};

/// `struct mount_attr` of mount_setattr(2), its first version
/// (`MOUNT_ATTR_SIZE_VER0`, 32 bytes).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;

/// The real Linux implementation of every syscall trait.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinuxSys;

pub(crate) fn cstr(path: &OsStr) -> io::Result<CString> {
    CString::new(path.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a nul byte"))
}

pub(crate) fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn check_long(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn caps_err(e: caps::errors::CapsError) -> io::Error {
    io::Error::other(e.to_string())
}

impl MountOps for LinuxSys {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MountFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        let source = source.map(|s| cstr(s.as_os_str())).transpose()?;
        let target = cstr(target.as_os_str())?;
        let fstype = fstype.map(|s| cstr(OsStr::new(s))).transpose()?;
        let data = data.map(|s| cstr(OsStr::new(s))).transpose()?;
        // SAFETY: every pointer is either null or a valid nul-terminated string
        // that outlives the call.
        let ret = unsafe {
            libc::mount(
                source.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
                target.as_ptr(),
                fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
                flags.0 as libc::c_ulong,
                data.as_ref()
                    .map_or(std::ptr::null(), |s| s.as_ptr().cast()),
            )
        };
        check(ret)
    }

    fn umount(&self, target: &Path, detach: bool) -> io::Result<()> {
        let target = cstr(target.as_os_str())?;
        let flags = if detach { libc::MNT_DETACH } else { 0 };
        // SAFETY: target is a valid nul-terminated string.
        check(unsafe { libc::umount2(target.as_ptr(), flags) })
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()> {
        let new_root = cstr(new_root.as_os_str())?;
        let put_old = cstr(put_old.as_os_str())?;
        // SAFETY: both arguments are valid nul-terminated strings.
        let ret =
            unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
        check_long(ret).map(drop)
    }

    fn open_tree(&self, path: &Path, recursive: bool) -> io::Result<OwnedFd> {
        let path = cstr(path.as_os_str())?;
        let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
        if recursive {
            flags |= libc::AT_RECURSIVE as libc::c_uint;
        }
        // SAFETY: path is a valid nul-terminated string; the flags ask for a
        // new file descriptor that we take ownership of below.
        let ret =
            unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
        let fd = check_long(ret)?;
        // SAFETY: open_tree returned a fresh file descriptor owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    fn move_mount(&self, tree: BorrowedFd<'_>, target: &Path) -> io::Result<()> {
        let target = cstr(target.as_os_str())?;
        let empty = c"";
        // SAFETY: the fd is valid for the call, the strings are nul-terminated.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                tree.as_raw_fd(),
                empty.as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                libc::MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        check_long(ret).map(drop)
    }

    fn open_tree_fd(&self, fd: BorrowedFd<'_>, recursive: bool) -> io::Result<OwnedFd> {
        use rustix::mount::OpenTreeFlags as F;
        let mut flags = F::OPEN_TREE_CLONE | F::OPEN_TREE_CLOEXEC | F::AT_EMPTY_PATH;
        if recursive {
            flags |= F::AT_RECURSIVE;
        }
        rustix::mount::open_tree(fd, c"", flags).map_err(|e| errno_error("open_tree", e))
    }

    fn mount_setattr(
        &self,
        tree: BorrowedFd<'_>,
        recursive: bool,
        set: MountFlags,
    ) -> io::Result<()> {
        let mut attr_set = 0u64;
        let mut rest = set.0;
        for (flag, attr) in [
            (MountFlags::RDONLY, MOUNT_ATTR_RDONLY),
            (MountFlags::NOSUID, MOUNT_ATTR_NOSUID),
            (MountFlags::NODEV, MOUNT_ATTR_NODEV),
            (MountFlags::NOEXEC, MOUNT_ATTR_NOEXEC),
        ] {
            if set.contains(flag) {
                attr_set |= attr;
                rest &= !flag.0;
            }
        }
        if rest != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("mount flags {rest:#x} have no mount_setattr(2) attribute"),
            ));
        }
        let attr = MountAttr {
            attr_set,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
        if recursive {
            flags |= libc::AT_RECURSIVE as libc::c_uint;
        }
        let empty = c"";
        // SAFETY: the fd is valid for the call, the path is a nul-terminated
        // string, and `attr` is a `struct mount_attr` (its first version, whose
        // size is passed) that outlives the call; the kernel only reads it.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                tree.as_raw_fd(),
                empty.as_ptr(),
                flags,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        check_long(ret).map(drop)
    }

    fn mount_fs(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        options: &[String],
    ) -> io::Result<()> {
        use rustix::mount as m;
        let mut attrs = m::MountAttrFlags::empty();
        let mut rest = flags.0;
        for (flag, attr) in [
            (MountFlags::RDONLY, m::MountAttrFlags::MOUNT_ATTR_RDONLY),
            (MountFlags::NOSUID, m::MountAttrFlags::MOUNT_ATTR_NOSUID),
            (MountFlags::NODEV, m::MountAttrFlags::MOUNT_ATTR_NODEV),
            (MountFlags::NOEXEC, m::MountAttrFlags::MOUNT_ATTR_NOEXEC),
            (MountFlags::NOATIME, m::MountAttrFlags::MOUNT_ATTR_NOATIME),
            (MountFlags::RELATIME, m::MountAttrFlags::MOUNT_ATTR_RELATIME),
            (
                MountFlags::STRICTATIME,
                m::MountAttrFlags::MOUNT_ATTR_STRICTATIME,
            ),
            (
                MountFlags::NODIRATIME,
                m::MountAttrFlags::MOUNT_ATTR_NODIRATIME,
            ),
        ] {
            if flags.contains(flag) {
                attrs |= attr;
                rest &= !flag.0;
            }
        }
        if rest != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("mount flags {rest:#x} have no fsmount(2) equivalent"),
            ));
        }
        let fs = m::fsopen(fstype, m::FsOpenFlags::FSOPEN_CLOEXEC)
            .map_err(|e| errno_error(&format!("fsopen({fstype})"), e))?;
        let config = |key: &str, value: Option<&str>| {
            match value {
                Some(v) => m::fsconfig_set_string(&fs, key, v),
                None => m::fsconfig_set_flag(&fs, key),
            }
            .map_err(|e| {
                let shown = value.map_or(String::new(), |v| format!("={v}"));
                fs_error(&fs, &format!("{fstype} option {key}{shown}"), e)
            })
        };
        if let Some(source) = source {
            m::fsconfig_set_string(&fs, "source", source)
                .map_err(|e| fs_error(&fs, &format!("{fstype} source {}", source.display()), e))?;
        }
        for option in options {
            match option.split_once('=') {
                Some(("lowerdir", list)) if fstype == "overlay" => {
                    // One call per layer; after an empty element (`::`)
                    // come data-only layers.
                    let mut key = "lowerdir+";
                    for (i, dir) in split_lowerdirs(list).iter().enumerate() {
                        if dir.is_empty() {
                            key = "datadir+";
                            continue;
                        }
                        match config(key, Some(dir)) {
                            // The first layer refused as invalid: this
                            // overlay does not know `lowerdir+` (Linux < 6.8).
                            Err(e) if i == 0 && e.kind() == io::ErrorKind::InvalidInput => {
                                return Err(io::Error::new(io::ErrorKind::Unsupported, e));
                            }
                            other => other?,
                        }
                    }
                }
                Some((key, value)) => config(key, Some(value))?,
                None => config(option, None)?,
            }
        }
        if flags.contains(MountFlags::RDONLY) {
            // mount(2)'s MS_RDONLY makes the superblock read-only too.
            config("ro", None)?;
        }
        m::fsconfig_create(&fs).map_err(|e| fs_error(&fs, &format!("creating {fstype}"), e))?;
        let mnt = m::fsmount(&fs, m::FsMountFlags::FSMOUNT_CLOEXEC, attrs)
            .map_err(|e| fs_error(&fs, &format!("fsmount({fstype})"), e))?;
        m::move_mount(
            &mnt,
            c"",
            rustix::fs::CWD,
            target,
            m::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(|e| errno_error(&format!("move_mount to {}", target.display()), e))
    }

    fn mount_from(
        &self,
        dir: &Path,
        source: Option<&Path>,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        options: &[String],
    ) -> io::Result<()> {
        mount_in_thread(dir, source, target, fstype, flags, &options.join(",")).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("mounting {fstype} from {}: {e}", dir.display()),
            )
        })
    }
}

/// The mount(2) of [`MountOps::mount_from`], on a short-lived thread that
/// first gives itself a working directory of its own (`unshare(CLONE_FS)`)
/// and changes into `dir`: the rest of the process keeps its directory,
/// and no process is forked (a fork would briefly hold every open file of
/// a multi-threaded caller, and make a concurrent unmount fail busy).
fn mount_in_thread(
    dir: &Path,
    source: Option<&Path>,
    target: &Path,
    fstype: &str,
    flags: MountFlags,
    data: &str,
) -> io::Result<()> {
    if !target.is_absolute() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("mount target {} is not absolute", target.display()),
        ));
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: unshare(CLONE_FS) only detaches this thread's root,
                // working directory and umask from the other threads'.
                check(unsafe { libc::unshare(libc::CLONE_FS) })?;
                std::env::set_current_dir(dir)?;
                LinuxSys.mount(source, target, Some(fstype), flags, Some(data))
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the mounting thread panicked")))
    })
}

/// An errno with what was being done, keeping its kind.
fn errno_error(what: &str, err: rustix::io::Errno) -> io::Error {
    io::Error::new(io::Error::from(err).kind(), format!("{what}: {err}"))
}

/// An error of a filesystem context, with the messages the filesystem
/// logged on it (`e overlay: ...`).
fn fs_error(fs: &OwnedFd, what: &str, err: rustix::io::Errno) -> io::Error {
    let mut messages = Vec::new();
    let mut buf = [0u8; 512];
    // Each read returns one message; ENODATA once the log is empty.
    while messages.len() < 8 {
        match rustix::io::read(fs, &mut buf) {
            Ok(n) if n > 0 => {
                let msg = String::from_utf8_lossy(&buf[..n]);
                let msg = msg.trim_end();
                messages.push(msg.split_once(' ').map_or(msg, |(_, m)| m).to_owned());
            }
            _ => break,
        }
    }
    if messages.is_empty() {
        errno_error(what, err)
    } else {
        errno_error(&format!("{what} ({})", messages.join("; ")), err)
    }
}

impl NsOps for LinuxSys {
    fn unshare(&self, ns: Namespaces) -> io::Result<()> {
        // SAFETY: unshare only changes this process's namespaces.
        check(unsafe { libc::unshare(ns.0) })
    }

    fn setns(&self, fd: BorrowedFd<'_>, ns: Namespaces) -> io::Result<()> {
        // SAFETY: the fd is valid for the duration of the call.
        check(unsafe { libc::setns(fd.as_raw_fd(), ns.0) })
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        // SAFETY: the pointer and length describe `name`'s bytes.
        check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })
    }

    fn loopback_up(&self) -> io::Result<()> {
        // SAFETY: plain socket creation; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        check(fd)?;
        // SAFETY: socket returned a fresh fd that we now own.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        // SAFETY: SIOCGIFFLAGS fills `req` for the named interface.
        check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
        // SAFETY: after SIOCGIFFLAGS the flags member of the union is initialised.
        unsafe {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        }
        // SAFETY: SIOCSIFFLAGS reads `req`, which is fully initialised.
        check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) })
    }
}

fn capset(caps: &[Capability]) -> HashSet<Capability> {
    caps.iter().copied().collect()
}

impl CredOps for LinuxSys {
    fn setgroups(&self, groups: &[u32]) -> io::Result<()> {
        // SAFETY: the pointer and length describe `groups`.
        check(unsafe { libc::setgroups(groups.len(), groups.as_ptr()) })
    }

    fn setgid(&self, gid: u32) -> io::Result<()> {
        // SAFETY: plain id change; glibc applies it to every thread.
        check(unsafe { libc::setresgid(gid, gid, gid) })
    }

    fn setuid(&self, uid: u32) -> io::Result<()> {
        // SAFETY: plain id change; glibc applies it to every thread.
        check(unsafe { libc::setresuid(uid, uid, uid) })
    }

    fn set_keepcaps(&self, keep: bool) -> io::Result<()> {
        caps::securebits::set_keepcaps(keep).map_err(caps_err)
    }

    fn drop_bounding(&self, keep: &[Capability]) -> io::Result<()> {
        let keep = capset(keep);
        let current = caps::read(None, CapSet::Bounding).map_err(caps_err)?;
        for cap in current {
            if !keep.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap).map_err(caps_err)?;
            }
        }
        Ok(())
    }

    fn set_capabilities(&self, sets: &CapabilitySets) -> io::Result<()> {
        caps::set(None, CapSet::Inheritable, &capset(&sets.inheritable)).map_err(caps_err)?;
        // Effective must stay within permitted: shrink effective first.
        let eff: HashSet<Capability> = capset(&sets.effective)
            .intersection(&capset(&sets.permitted))
            .copied()
            .collect();
        caps::set(None, CapSet::Effective, &eff).map_err(caps_err)?;
        caps::set(None, CapSet::Permitted, &capset(&sets.permitted)).map_err(caps_err)?;
        caps::set(None, CapSet::Ambient, &capset(&sets.ambient)).map_err(caps_err)
    }

    fn set_no_new_privs(&self) -> io::Result<()> {
        // SAFETY: prctl with integer arguments only.
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
    }

    fn set_dumpable(&self, dumpable: bool) -> io::Result<()> {
        // SAFETY: prctl with integer arguments only.
        check(unsafe {
            libc::prctl(
                libc::PR_SET_DUMPABLE,
                libc::c_ulong::from(dumpable),
                0,
                0,
                0,
            )
        })
    }
}

impl FsOps for LinuxSys {
    fn mkdir_all(&self, path: &Path, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)
    }

    fn create_file(&self, path: &Path) -> io::Result<()> {
        if path.symlink_metadata().is_ok() {
            return Ok(());
        }
        if let Some(parent) = path.parent() {
            self.mkdir_all(parent, 0o755)?;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map(drop)
    }

    fn mknod(
        &self,
        path: &Path,
        kind: DeviceKind,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> io::Result<()> {
        let path = cstr(path.as_os_str())?;
        let kind = match kind {
            DeviceKind::Char => libc::S_IFCHR,
            DeviceKind::Block => libc::S_IFBLK,
        };
        let dev = libc::makedev(major, minor);
        // SAFETY: path is a valid nul-terminated string.
        check(unsafe { libc::mknod(path.as_ptr(), kind | mode, dev) })
    }

    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    fn chdir(&self, path: &Path) -> io::Result<()> {
        std::env::set_current_dir(path)
    }

    fn lchown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()> {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))
    }

    fn probe_dir(&self, path: &Path) -> io::Result<Option<bool>> {
        match path.symlink_metadata() {
            Ok(m) => Ok(Some(m.is_dir())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn to_cstrings(items: &[String]) -> io::Result<Vec<CString>> {
    items.iter().map(|s| cstr(OsStr::new(s))).collect()
}

impl ProcOps for LinuxSys {
    fn fork(&self) -> io::Result<Fork> {
        // SAFETY: the trait documents that callers are single-threaded, so the
        // child is a complete copy of the only thread.
        let pid = unsafe { libc::fork() };
        check(pid)?;
        Ok(if pid == 0 {
            Fork::Child
        } else {
            Fork::Parent(pid)
        })
    }

    fn waitpid(&self, pid: i32, nohang: bool) -> io::Result<Option<(i32, WaitStatus)>> {
        let mut status = 0;
        let flags = if nohang { libc::WNOHANG } else { 0 };
        loop {
            // SAFETY: status is a valid out pointer.
            let ret = unsafe { libc::waitpid(pid, &mut status, flags) };
            if ret < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            if ret == 0 {
                return Ok(None);
            }
            if libc::WIFEXITED(status) {
                return Ok(Some((ret, WaitStatus::Exited(libc::WEXITSTATUS(status)))));
            }
            if libc::WIFSIGNALED(status) {
                return Ok(Some((ret, WaitStatus::Signaled(libc::WTERMSIG(status)))));
            }
        }
    }

    fn kill(&self, pid: i32, signal: i32) -> io::Result<()> {
        // SAFETY: kill takes plain integers.
        check(unsafe { libc::kill(pid, signal) })
    }

    fn execve(&self, path: &Path, args: &[String], env: &[String]) -> io::Error {
        let build = || -> io::Result<(CString, Vec<CString>, Vec<CString>)> {
            Ok((
                cstr(path.as_os_str())?,
                to_cstrings(args)?,
                to_cstrings(env)?,
            ))
        };
        let (path, args, env) = match build() {
            Ok(v) => v,
            Err(e) => return e,
        };
        let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
        envp.push(std::ptr::null());
        // SAFETY: argv and envp are null-terminated arrays of pointers to
        // nul-terminated strings that outlive the call.
        unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        io::Error::last_os_error()
    }

    fn setsid(&self) -> io::Result<()> {
        // SAFETY: no arguments.
        check(unsafe { libc::setsid() })
    }

    fn set_controlling_tty(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        // SAFETY: TIOCSCTTY takes an integer argument.
        check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) })
    }

    fn set_parent_death_signal(&self, signal: i32) -> io::Result<()> {
        // SAFETY: prctl with integer arguments only.
        check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) })
    }

    fn exit(&self, code: i32) -> ! {
        // SAFETY: _exit never returns and touches no Rust state.
        unsafe { libc::_exit(code) }
    }
}

impl LimitOps for LinuxSys {
    fn getrlimit(&self, resource: u32) -> io::Result<Rlimit> {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: lim is a valid out pointer.
        check(unsafe { libc::getrlimit(resource as _, &mut lim) })?;
        Ok(Rlimit {
            soft: lim.rlim_cur,
            hard: lim.rlim_max,
        })
    }

    fn setrlimit(&self, resource: u32, limit: Rlimit) -> io::Result<()> {
        let lim = libc::rlimit {
            rlim_cur: limit.soft,
            rlim_max: limit.hard,
        };
        // SAFETY: lim is a valid pointer to an initialised rlimit.
        check(unsafe { libc::setrlimit(resource as _, &lim) })
    }

    fn cloexec_from(&self, first: i32) -> io::Result<()> {
        // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                first as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        check_long(ret).map(drop)
    }

    fn close_from(&self, first: i32) -> io::Result<()> {
        // SAFETY: closing descriptors from `first` on; callers own them and
        // hold no Rust objects wrapping them past this point.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                first as libc::c_uint,
                libc::c_uint::MAX,
                0,
            )
        };
        check_long(ret).map(drop)
    }

    fn install_seccomp(&self, filter: &[SockFilter]) -> io::Result<()> {
        let len = u16::try_from(filter.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "seccomp filter too long"))?;
        let prog = libc::sock_fprog {
            len,
            filter: filter.as_ptr().cast_mut().cast(),
        };
        // SAFETY: SockFilter has the layout of struct sock_filter and `prog`
        // points at `filter`, which outlives the call; the kernel copies it.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0 as libc::c_ulong,
                &prog as *const libc::sock_fprog,
            )
        };
        check_long(ret).map(drop)
    }
}
