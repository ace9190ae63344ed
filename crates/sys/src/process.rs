//! Process-level helpers with no sensible fake: signal masks and signalfds,
//! pidfds and poll, ptys, and passing a file descriptor across `exec`.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::linux::check;

/// Makes the child of `cmd` receive `fd` as descriptor number `target`
/// (without close-on-exec). `fd` must stay open until the child is spawned.
pub fn keep_fd(cmd: &mut Command, fd: RawFd, target: RawFd) {
    let hook = move || -> io::Result<()> {
        if fd == target {
            // SAFETY: fcntl on a descriptor number with integer arguments.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            check(flags)?;
            // SAFETY: as above.
            check(unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) })
        } else {
            // SAFETY: dup2 on descriptor numbers; async-signal-safe.
            check(unsafe { libc::dup2(fd, target) })
        }
    };
    // SAFETY: the hook only calls async-signal-safe functions (fcntl, dup2)
    // and allocates nothing.
    unsafe { cmd.pre_exec(hook) };
}

/// A pipe whose both ends are close-on-exec: `(read, write)`.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(io::Error::from)
}

/// Clears close-on-exec on `fd`.
pub fn clear_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()).map_err(io::Error::from)
}

/// Sets close-on-exec on `fd`.
pub fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC).map_err(io::Error::from)
}

/// A set of signals.
#[derive(Clone, Copy)]
pub struct SigSet(libc::sigset_t);

impl SigSet {
    /// A set holding `signals`.
    pub fn of(signals: &[i32]) -> Self {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set; sigaddset only writes it.
        unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            for &s in signals {
                libc::sigaddset(set.as_mut_ptr(), s);
            }
            Self(set.assume_init())
        }
    }

    /// Every signal.
    pub fn all() -> Self {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigfillset initialises the set.
        unsafe {
            libc::sigfillset(set.as_mut_ptr());
            Self(set.assume_init())
        }
    }
}

impl std::fmt::Debug for SigSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigSet")
    }
}

/// Blocks `set` in the calling thread; returns the previous mask.
pub fn block_signals(set: &SigSet) -> io::Result<SigSet> {
    let mut old = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: both pointers are valid; `old` is written by the call.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set.0, old.as_mut_ptr()) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    // SAFETY: pthread_sigmask succeeded and filled `old`.
    Ok(SigSet(unsafe { old.assume_init() }))
}

/// Replaces the calling thread's signal mask.
pub fn set_signal_mask(set: &SigSet) -> io::Result<()> {
    // SAFETY: `set` is a valid initialised sigset.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &set.0, std::ptr::null_mut()) };
    if ret != 0 {
        Err(io::Error::from_raw_os_error(ret))
    } else {
        Ok(())
    }
}

extern "C" fn noop_handler(_: libc::c_int) {}

/// Installs a handler that does nothing for each signal: a PID namespace's
/// init only receives signals it handles; paired with [`block_signals`] and
/// [`signalfd`] they are then read, never run.
pub fn install_noop_handlers(signals: &[i32]) -> io::Result<()> {
    for &sig in signals {
        // SAFETY: sigaction is plain old data; zero is a valid start.
        let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
        act.sa_sigaction = noop_handler as extern "C" fn(libc::c_int) as usize;
        act.sa_flags = libc::SA_RESTART;
        // SAFETY: `act` is initialised and the handler is async-signal-safe.
        check(unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) })?;
    }
    Ok(())
}

/// Ignores each signal (e.g. SIGPIPE in a supervisor whose peers may be gone).
pub fn ignore_signals(signals: &[i32]) -> io::Result<()> {
    for &sig in signals {
        // SAFETY: SIG_IGN is always a valid disposition.
        let prev = unsafe { libc::signal(sig, libc::SIG_IGN) };
        if prev == libc::SIG_ERR {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Resets each signal to its default disposition.
pub fn reset_signal_handlers(signals: &[i32]) -> io::Result<()> {
    for &sig in signals {
        // SAFETY: SIG_DFL is always a valid disposition.
        let prev = unsafe { libc::signal(sig, libc::SIG_DFL) };
        if prev == libc::SIG_ERR {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A close-on-exec signalfd(2) reading `set` (which must be blocked).
pub fn signalfd(set: &SigSet) -> io::Result<OwnedFd> {
    // SAFETY: `set` is valid; -1 asks for a new descriptor.
    let fd = unsafe { libc::signalfd(-1, &set.0, libc::SFD_CLOEXEC) };
    check(fd)?;
    // SAFETY: signalfd returned a fresh descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads one signal number from a signalfd.
pub fn read_signalfd(fd: BorrowedFd<'_>) -> io::Result<i32> {
    read_signal(fd).map(|(signo, _)| signo)
}

/// Reads one signal from a signalfd: its number and `si_code`
/// (`SI_KERNEL` for signals the terminal generated, `SI_USER` for kill(2)).
pub fn read_signal(fd: BorrowedFd<'_>) -> io::Result<(i32, i32)> {
    // SAFETY: signalfd_siginfo is plain old data.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    loop {
        // SAFETY: `info` is a writable buffer of `size` bytes.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                size,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        return Ok((info.ssi_signo as i32, info.ssi_code));
    }
}

/// pidfd_open(2): a descriptor that becomes readable when `pid` exits.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "pid must be positive"))?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).map_err(io::Error::from)
}

/// Sends `signal` to the process behind a pidfd (immune to pid reuse).
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    // SAFETY: the fd is valid; a null siginfo is allowed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// poll(2) for readability; returns which of `fds` are readable (or hung
/// up). `timeout_ms < 0` waits forever. Retries on EINTR.
pub fn poll_readable(fds: &[BorrowedFd<'_>], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: the pointer and length describe `pfds`.
        let ret = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        return Ok(pfds.iter().map(|p| p.revents != 0).collect());
    }
}

/// Opens a new pseudo-terminal pair from the host's `/dev/ptmx`:
/// `(master, slave)`, both close-on-exec.
pub fn openpty() -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    Ok((master, slave))
}

/// Terminal window size `(rows, cols)` of `fd`, if it is a terminal.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    rustix::termios::tcgetwinsize(fd)
        .ok()
        .map(|w| (w.ws_row, w.ws_col))
}

/// Sets the window size of the terminal on `fd`.
pub fn set_window_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let ws = rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(fd, ws).map_err(io::Error::from)
}

/// Whether `fd` is a terminal.
pub fn is_terminal(fd: BorrowedFd<'_>) -> bool {
    rustix::termios::isatty(fd)
}

/// Puts the terminal on `fd` in raw mode; returns the previous settings
/// for [`restore_terminal`].
pub fn make_raw(fd: BorrowedFd<'_>) -> io::Result<rustix::termios::Termios> {
    let old = rustix::termios::tcgetattr(fd)?;
    let mut raw = old.clone();
    raw.make_raw();
    rustix::termios::tcsetattr(fd, rustix::termios::OptionalActions::Now, &raw)?;
    Ok(old)
}

/// Restores terminal settings saved by [`make_raw`].
pub fn restore_terminal(fd: BorrowedFd<'_>, saved: &rustix::termios::Termios) -> io::Result<()> {
    rustix::termios::tcsetattr(fd, rustix::termios::OptionalActions::Now, saved)
        .map_err(io::Error::from)
}

/// Current process id.
pub fn getpid() -> i32 {
    rustix::process::getpid().as_raw_nonzero().get()
}

/// Sets the process umask; returns the previous one.
pub fn set_umask(mode: u32) -> u32 {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(mode)).as_raw_mode()
}

/// Takes ownership of file descriptor `fd` inherited from the parent (as
/// passed with [`keep_fd`]); fails if it is not open. Call it once per
/// number, before anything else could have closed or reused it.
pub fn inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only queries the descriptor's flags.
    check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: the descriptor is open and, per this function's contract,
    // owned by nothing else in this process.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Kills the calling process with `signal` the way the signal itself would
/// (default disposition, unblocked), without a core dump. Returns only if
/// the signal does not terminate (e.g. it is ignored by the kernel).
pub fn die_by_signal(signal: i32) {
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointers to rlimit structs.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_CORE, &mut lim) == 0 {
            lim.rlim_cur = 0;
            libc::setrlimit(libc::RLIMIT_CORE, &lim);
        } else {
            libc::setrlimit(libc::RLIMIT_CORE, &none);
        }
    }
    let _ = reset_signal_handlers(&[signal]);
    let _ = set_signal_mask(&SigSet::of(&[]));
    // SAFETY: raising a signal on ourselves.
    unsafe { libc::raise(signal) };
}

/// Resets every signal to its default disposition and unblocks all signals:
/// a re-executed helper must not inherit its caller's ignored or blocked
/// signals (an ignored SIGPIPE or a blocked SIGTERM would survive `exec`).
pub fn reset_all_signals() {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // libc refuses the signals it reserves (32, 33), yet an inherited
        // SIG_IGN on them survives exec: ask the kernel directly.
        #[repr(C)]
        struct KernelSigaction {
            handler: usize,
            flags: u64,
            restorer: usize,
            mask: u64,
        }
        let act = KernelSigaction {
            handler: libc::SIG_DFL,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        // SAFETY: `act` has the kernel's struct sigaction layout on 64-bit
        // Linux and SIG_DFL needs no restorer; the old action is not asked for.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &act as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                std::mem::size_of::<u64>(),
            )
        };
    }
    let _ = set_signal_mask(&SigSet::of(&[]));
}

/// A connected pair of close-on-exec Unix stream sockets (a report channel
/// that can also carry file descriptors).
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    check(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair succeeded: both descriptors are fresh and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sends `data` over a Unix socket with `fd` attached (SCM_RIGHTS).
pub fn send_with_fd(sock: BorrowedFd<'_>, data: &[u8], fd: BorrowedFd<'_>) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain old data; zero is a valid start.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg_control points at a buffer of CMSG_SPACE(int) bytes, so
    // the first header and its data fit; the kernel reads `data` through iov.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), raw);
    }
    loop {
        // SAFETY: `msg` and everything it points at are valid for the call.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Receives bytes from a Unix socket into `buf`, with any file descriptors
/// that came along (made close-on-exec). `Ok((0, _))` is end of stream.
pub fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    // Room for a few descriptors.
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space =
        unsafe { libc::CMSG_SPACE((4 * std::mem::size_of::<libc::c_int>()) as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain old data; zero is a valid start.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    let n = loop {
        // SAFETY: `msg` points at `buf` and `cbuf`, both valid and writable.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: the kernel filled msg_control with well-formed headers up to
    // msg_controllen; the CMSG_* macros walk exactly those.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<libc::c_int>();
                let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / std::mem::size_of::<libc::c_int>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n, fds))
}

/// dup2(2): makes `target` a copy of `fd` (for setting up 0, 1 and 2).
pub fn dup_onto(fd: BorrowedFd<'_>, target: RawFd) -> io::Result<()> {
    // SAFETY: dup2 on a valid descriptor; `target` is a standard stream
    // number the caller means to replace.
    check(unsafe { libc::dup2(fd.as_raw_fd(), target) })
}

/// Opens a new pseudo-terminal from the devpts instance at `ptmx` (the
/// container's `/dev/ptmx`): `(master, slave, slave path)`.
pub fn open_pty_at(ptmx: &std::path::Path) -> io::Result<(OwnedFd, OwnedFd, std::path::PathBuf)> {
    use rustix::fs::{Mode, OFlags, open};
    let master = open(
        ptmx,
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let path = std::path::PathBuf::from(
        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name.as_bytes()),
    );
    let slave = open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok((master, slave, path))
}

/// fork(2) into new namespaces: clone(2) with `ns` (e.g. `USER | PID`) and
/// no new stack, so the child continues like after `fork`. With
/// `CLONE_NEWUSER` the other namespaces are created owned by the new user
/// namespace, and the child has every capability in it (but no uid/gid
/// mapping until the parent writes one). Only call it from a
/// single-threaded process.
pub fn fork_into(ns: crate::Namespaces) -> io::Result<crate::Fork> {
    let flags = (ns.0 as libc::c_ulong) | (libc::SIGCHLD as libc::c_ulong);
    // SAFETY: clone without CLONE_VM and with a null stack duplicates the
    // calling (single, per the contract) thread like fork; the null
    // pointers are the unused parent/child tid and tls arguments.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(if pid == 0 {
        crate::Fork::Child
    } else {
        crate::Fork::Parent(pid as i32)
    })
}

/// geteuid(2).
pub fn geteuid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// getegid(2).
pub fn getegid() -> u32 {
    rustix::process::getegid().as_raw()
}

/// A sealed in-memory copy of the file at `path` (memfd, close-on-exec,
/// sealed against writes, growing, shrinking and further seals): a process
/// executed from it (`/proc/self/fd/N`) has no host file behind its
/// `/proc/PID/exe`, so nothing reached through that link can overwrite
/// the host's binary (runc's CVE-2019-5736 mitigation). Costs a copy of
/// the whole file.
pub fn sealed_copy(path: &std::path::Path) -> io::Result<OwnedFd> {
    use rustix::fs::{MemfdFlags, SealFlags};
    let fd = rustix::fs::memfd_create(
        "kiln-runtime",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    let mut src = std::fs::File::open(path)?;
    let mut dst = std::fs::File::from(fd);
    io::copy(&mut src, &mut dst)?;
    let fd = OwnedFd::from(dst);
    rustix::fs::fcntl_add_seals(
        &fd,
        SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE,
    )?;
    Ok(fd)
}

/// Gives the calling thread a mount namespace of its own (with its own
/// root, working directory and umask: `unshare(CLONE_FS | CLONE_NEWNS)`),
/// whose mounts receive the host's later mounts and unmounts but send
/// none back (`MS_REC | MS_SLAVE` on `/`). Mounts this thread makes are
/// then seen only by it and by the processes it starts, and vanish with
/// the last of them, even when the process is killed. The other threads
/// of the process keep the namespace they had. Needs `CAP_SYS_ADMIN`.
pub fn unshare_thread_mounts() -> io::Result<()> {
    // SAFETY: unshare only detaches this thread's filesystem context and
    // mount namespace from the other threads'; no memory is involved.
    check(unsafe { libc::unshare(libc::CLONE_FS | libc::CLONE_NEWNS) })?;
    use crate::MountOps as _;
    crate::LinuxSys.mount(
        None,
        std::path::Path::new("/"),
        None,
        crate::MountFlags::REC | crate::MountFlags::SLAVE,
        None,
    )
}
