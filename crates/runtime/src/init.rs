//! The re-executed side of the runtime: the shim (foreground waiter or
//! detached supervisor), the container's init, and the exec joiner. Each
//! runs in a fresh single-threaded process started by [`crate::Runtime`].
//!
//! Process tree of a container:
//! `caller → shim (host pid ns: cgroup, signals, exit status) → init (PID 1:
//! namespaces, rootfs, credentials) → exec of the command`.

use std::convert::Infallible;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use kiln_sys::process::{self as sysproc, SigSet};
use kiln_sys::{
    CapabilitySets, CredOps, Fork, FsOps, LimitOps, LinuxSys, MountOps, Namespaces, NsOps, ProcOps,
    Rlimit, WaitStatus,
};
use oci_spec::runtime::{Process, Spec};
use serde::de::DeserializeOwned;

use crate::cgroups::{Cgroup, Layout};
use crate::config::{ExitStatus, RootfsMount};
use crate::logfile::{LineSplitter, LogEntry, LogStream};
use crate::rootfs::{RootfsPlan, StepError, finish_rootfs, setup_rootfs};
use crate::spec::DEFAULT_PATH;
use crate::state::{self, ExitFile, StateFile};
use crate::wire::{ExecRequest, FailKind, REQUEST_FD, Report, RunRequest, STATUS_FD, send};

/// argv[1] of the shim.
pub(crate) const SHIM_ARG: &str = "__kiln-runtime-shim";
/// argv[1] of the exec joiner.
pub(crate) const EXEC_ARG: &str = "__kiln-runtime-exec";

/// Signals the shim and the tiny init pass on to the container.
pub(crate) const FORWARDED: [i32; 13] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGTERM,
    libc::SIGALRM,
    libc::SIGCONT,
    libc::SIGWINCH,
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGTTOU,
    libc::SIGURG,
];

/// Runs the runtime's re-executed roles when argv says so, and never
/// returns then; otherwise returns at once. The program's `main` must call
/// it first thing, before starting threads or an async runtime.
pub fn init_entry() {
    let mut args = std::env::args_os();
    args.next();
    match args.next() {
        Some(a) if a == SHIM_ARG => role_main(shim),
        Some(a) if a == EXEC_ARG => role_main(exec_join),
        _ => {}
    }
}

struct Failure {
    kind: FailKind,
    command: String,
    message: String,
}

impl Failure {
    fn setup(message: impl std::fmt::Display) -> Self {
        Failure {
            kind: FailKind::Setup,
            command: String::new(),
            message: message.to_string(),
        }
    }

    fn code(&self) -> i32 {
        match self.kind {
            FailKind::NotFound => 127,
            FailKind::NotExecutable => 126,
            FailKind::Setup => 125,
        }
    }
}

impl From<StepError> for Failure {
    fn from(e: StepError) -> Self {
        Failure::setup(e)
    }
}

trait OrFail<T> {
    fn or_fail(self, what: &str) -> Result<T, Failure>;
}

impl<T, E: std::fmt::Display> OrFail<T> for Result<T, E> {
    fn or_fail(self, what: &str) -> Result<T, Failure> {
        self.map_err(|e| Failure::setup(format!("{what}: {e}")))
    }
}

fn role_main<R: DeserializeOwned>(
    role: fn(&LinuxSys, &mut Option<OwnedFd>, R) -> Result<Infallible, Failure>,
) -> ! {
    let sys = LinuxSys;
    sysproc::reset_all_signals();
    let Ok(status) = sysproc::inherited_fd(STATUS_FD) else {
        sys.exit(125)
    };
    let _ = sysproc::set_cloexec(status.as_fd());
    let mut status = Some(status);
    let request = sysproc::inherited_fd(REQUEST_FD)
        .or_fail("request pipe")
        .and_then(|fd| {
            let mut data = Vec::new();
            fs::File::from(fd)
                .read_to_end(&mut data)
                .or_fail("read request")?;
            serde_json::from_slice::<R>(&data).or_fail("parse request")
        });
    // Nothing the caller leaked reaches the container.
    let _ = sys.close_from(REQUEST_FD + 1);
    let Err(failure) = request.and_then(|r| role(&sys, &mut status, r));
    if let Some(fd) = &status {
        send(
            fd,
            &Report::Failed {
                kind: failure.kind,
                command: failure.command.clone(),
                message: failure.message.clone(),
            },
        );
    }
    sys.exit(failure.code())
}

fn namespaces(spec: &Spec) -> Namespaces {
    let mut ns = Namespaces::NONE;
    let list = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for n in list {
        if n.path().is_some() {
            continue;
        }
        let v = serde_json::to_value(n.typ())
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        ns = ns
            | match v.as_str() {
                "pid" => Namespaces::PID,
                "network" => Namespaces::NET,
                "mount" => Namespaces::MOUNT,
                "ipc" => Namespaces::IPC,
                "uts" => Namespaces::UTS,
                "cgroup" => Namespaces::CGROUP,
                "user" => Namespaces::USER,
                _ => Namespaces::NONE,
            };
    }
    ns
}

fn forwarded_and_chld() -> SigSet {
    let mut v = FORWARDED.to_vec();
    v.push(libc::SIGCHLD);
    SigSet::of(&v)
}

/// Handles one signal from `sfd`: SIGCHLD reaps every exited process and
/// returns `child`'s status once it is among them; any other signal is
/// passed on to `child`. With `init_of` (the container's supervisor and
/// its state directory), a stopped init is resumed: see [`resume_stopped_init`].
fn on_signal(
    sys: &LinuxSys,
    child: i32,
    sfd: &OwnedFd,
    init_of: Option<&Path>,
) -> Option<WaitStatus> {
    let sig = match sysproc::read_signalfd(sfd.as_fd()) {
        Ok(s) => s,
        Err(_) => libc::SIGCHLD,
    };
    if sig == libc::SIGCHLD {
        while let Ok(Some((pid, st))) = sys.waitpid(-1, true) {
            if pid == child {
                return Some(st);
            }
        }
        if let Some(state_dir) = init_of {
            resume_stopped_init(sys, child, state_dir);
        }
    } else {
        let _ = sys.kill(child, sig);
    }
    None
}

/// The container's own processes cannot stop its init with a signal (the
/// kernel ignores SIGSTOP and the terminal stops sent to a PID 1 from
/// inside its namespace), but ptrace can: `PTRACE_ATTACH` stops it, and
/// once the tracer is gone the init stays in a group stop that nothing in
/// the container will ever end, so the container (a build's RUN step)
/// hangs for good. The supervisor hears of that stop (SIGCHLD) and resumes
/// the init with SIGCONT, unless the stop was asked for from the host
/// through the runtime (`kiln kill -s STOP`), which leaves
/// [`state::STOP_REQUESTED`] in the state directory.
fn resume_stopped_init(sys: &LinuxSys, init: i32, state_dir: &Path) {
    if state::group_stopped(init) && !state_dir.join(state::STOP_REQUESTED).exists() {
        let _ = sys.kill(init, libc::SIGCONT);
    }
}

/// Waits for `child`, passing on every forwarded signal (and resuming a
/// stopped container init when `init_of` names its state directory).
fn supervise(sys: &LinuxSys, child: i32, sfd: &OwnedFd, init_of: Option<&Path>) -> WaitStatus {
    loop {
        if let Some(st) = on_signal(sys, child, sfd, init_of) {
            return st;
        }
    }
}

/// The detached supervisor's side of the container log: two pipes (the
/// container's stdout and stderr) copied into a JSON-lines file.
struct Logger {
    file: fs::File,
    pipes: Vec<(LogStream, OwnedFd, Option<OwnedFd>, LineSplitter)>,
}

impl Logger {
    fn open(path: &Path) -> Result<Logger, Failure> {
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .or_fail(&format!("open log {}", path.display()))?;
        let mut pipes = Vec::new();
        for stream in [LogStream::Stdout, LogStream::Stderr] {
            let (r, w) = sysproc::pipe().or_fail("log pipe")?;
            pipes.push((stream, r, Some(w), LineSplitter::default()));
        }
        Ok(Logger { file, pipes })
    }

    /// In the container's init: the pipes become stdout and stderr.
    fn attach(self) -> Result<(), Failure> {
        for (i, (_, _, w, _)) in self.pipes.iter().enumerate() {
            if let Some(w) = w {
                sysproc::dup_onto(w.as_fd(), 1 + i as i32).or_fail("log pipe as stdout")?;
            }
        }
        Ok(())
    }

    /// In the supervisor: only the read ends stay open.
    fn parent_side(&mut self) {
        for p in &mut self.pipes {
            p.2 = None;
        }
    }

    fn write(&mut self, stream: LogStream, line: &[u8]) {
        let entry = LogEntry {
            log: String::from_utf8_lossy(line).into_owned(),
            stream,
            time: state::rfc3339(std::time::SystemTime::now()),
        };
        let _ = self.file.write_all(&entry.to_line());
    }

    /// Copies what pipe `i` holds; false at its end.
    fn pump(&mut self, i: usize) -> bool {
        let mut buf = [0u8; 16 * 1024];
        let n = {
            let fd = &self.pipes[i].1;
            loop {
                match rustix_read(fd, &mut buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break 0,
                    Ok(n) => break n,
                }
            }
        };
        let stream = self.pipes[i].0;
        if n == 0 {
            if let Some(rest) = self.pipes[i].3.finish() {
                self.write(stream, &rest);
            }
            return false;
        }
        for line in self.pipes[i].3.push(&buf[..n]) {
            self.write(stream, &line);
        }
        true
    }

    /// After the container's processes were killed: copy until every
    /// writer closed its end (bounded, should one have escaped).
    fn drain(&mut self) {
        let mut open: Vec<usize> = (0..self.pipes.len()).collect();
        while !open.is_empty() {
            let fds: Vec<_> = open.iter().map(|&i| self.pipes[i].1.as_fd()).collect();
            let Ok(ready) = sysproc::poll_readable(&fds, 2000) else {
                return;
            };
            if !ready.iter().any(|r| *r) {
                return;
            }
            let mut still = Vec::new();
            for (k, &i) in open.iter().enumerate() {
                if !ready[k] || self.pump(i) {
                    still.push(i);
                }
            }
            open = still;
        }
    }
}

fn rustix_read(fd: &OwnedFd, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut f = fs::File::from(fd.try_clone()?);
    f.read(buf)
}

/// [`supervise`], copying the container's output into the log meanwhile.
fn supervise_logging(
    sys: &LinuxSys,
    child: i32,
    sfd: &OwnedFd,
    log: &mut Logger,
    init_of: Option<&Path>,
) -> WaitStatus {
    let mut open = [true, true];
    loop {
        let mut fds = vec![sfd.as_fd()];
        let mut which = Vec::new();
        for (i, o) in open.iter().enumerate() {
            if *o {
                fds.push(log.pipes[i].1.as_fd());
                which.push(i);
            }
        }
        let ready = match sysproc::poll_readable(&fds, -1) {
            Ok(r) => r,
            Err(_) => vec![true; fds.len()],
        };
        drop(fds);
        for (k, &i) in which.iter().enumerate() {
            if ready[k + 1] && !log.pump(i) {
                open[i] = false;
            }
        }
        if !ready[0] {
            continue;
        }
        if let Some(st) = on_signal(sys, child, sfd, init_of) {
            return st;
        }
    }
}

fn exit_like(sys: &LinuxSys, st: WaitStatus) -> ! {
    match st {
        WaitStatus::Exited(c) => sys.exit(c),
        WaitStatus::Signaled(s) => {
            sysproc::die_by_signal(s);
            sys.exit(128 + s)
        }
    }
}

fn to_exit(st: WaitStatus) -> ExitStatus {
    match st {
        WaitStatus::Exited(c) => ExitStatus::Code(c),
        WaitStatus::Signaled(s) => ExitStatus::Signal(s),
    }
}

fn shim(
    sys: &LinuxSys,
    status: &mut Option<OwnedFd>,
    req: RunRequest,
) -> Result<Infallible, Failure> {
    become_supervisor(sys, status, req.detached)?;
    let ns = namespaces(&req.spec);
    let userns = ns.contains(Namespaces::USER);
    let layout = Layout::detect(&req.cgroup_root);
    let mut held = Held {
        sys,
        cgroup: create_cgroup(&req, &layout)?,
        premount: None,
    };
    let signals = forwarded_and_chld();
    let old_mask = sysproc::block_signals(&signals).or_fail("block signals")?;
    let sfd = sysproc::signalfd(&signals).or_fail("signalfd")?;
    // Root with a user namespace mounts the rootfs here, in the host's
    // mount namespace and with the host's credentials (its files stay the
    // host's; overlay copy-up runs as the mounter); the init binds it.
    if userns && sysproc::geteuid() == 0 {
        held.premount = Some(premount_rootfs(sys, &req).inspect_err(|_| held.release())?);
    }
    if ns.contains(Namespaces::PID) && !userns {
        sys.unshare(Namespaces::PID)
            .or_fail("unshare pid namespace")?;
    }
    let pipes = InitPipes::new(&req)?;
    let fork = if userns {
        // One clone: the user namespace first, and the PID namespace owned
        // by it (so that the container's root may mount its /proc).
        sysproc::fork_into(Namespaces(ns.0 & (Namespaces::USER.0 | Namespaces::PID.0)))
    } else {
        sys.fork()
    };
    let pid = match fork {
        Err(e) => {
            held.release();
            return Err(Failure::setup(format!("fork container init: {e}")));
        }
        Ok(Fork::Child) => {
            drop(sfd);
            let child = pipes.child_side(userns)?;
            let _ = sysproc::set_signal_mask(&old_mask);
            let premounted = held.premount.is_some();
            return container_init(
                sys,
                status,
                &req,
                &layout,
                child.joined,
                child.mapped,
                premounted,
            );
        }
        Ok(Fork::Parent(pid)) => pid,
    };
    let mut parent = pipes.parent_side(userns);
    // The init may already have failed and gone: a write to its pipes must
    // not kill the shim (only the shim ignores SIGPIPE; the init has reset it).
    let _ = sysproc::ignore_signals(&[libc::SIGPIPE]);
    if let Err(msg) = release_init(&held, &req, pid, &mut parent) {
        let _ = sys.kill(pid, libc::SIGKILL);
        let _ = sys.waitpid(pid, false);
        held.release();
        return Err(Failure::setup(msg));
    }
    record_started(&held, &req, pid, status)?;
    let st = match &mut parent.logger {
        Some(l) => supervise_logging(sys, pid, &sfd, l, Some(&req.state_dir)),
        None => supervise(sys, pid, &sfd, Some(&req.state_dir)),
    };
    if let Some(c) = &held.cgroup {
        c.kill_all(|p| {
            let _ = sys.kill(p, libc::SIGKILL);
        });
    }
    if let Some(l) = &mut parent.logger {
        // Whatever the container's processes wrote before they died.
        l.drain();
    }
    held.release();
    let _ = state::write_json(
        &state::paths(&req.state_dir).1,
        &ExitFile {
            status: to_exit(st),
            finished_at: Some(state::rfc3339(std::time::SystemTime::now())),
        },
    );
    exit_like(sys, st)
}

/// A detached container's shim leaves the caller (new session, forks once
/// more: the supervisor outlives it); a foreground one dies with it.
fn become_supervisor(
    sys: &LinuxSys,
    status: &mut Option<OwnedFd>,
    detached: bool,
) -> Result<(), Failure> {
    if detached {
        sys.setsid().or_fail("setsid")?;
        if let Fork::Parent(_) = sys.fork().or_fail("fork supervisor")? {
            status.take();
            sys.exit(0);
        }
    } else {
        sys.set_parent_death_signal(libc::SIGKILL)
            .or_fail("parent death signal")?;
    }
    Ok(())
}

/// What the shim set up on the host for the container, released when
/// starting fails or the container has ended.
struct Held<'a> {
    sys: &'a LinuxSys,
    cgroup: Option<Cgroup>,
    /// The rootfs the shim mounted itself (root's `--userns`).
    premount: Option<PathBuf>,
}

impl Held<'_> {
    fn release(&self) {
        if let Some(c) = &self.cgroup {
            let _ = c.remove();
        }
        if let Some(target) = &self.premount {
            let _ = self.sys.umount(target, true);
        }
    }
}

/// The container's cgroup with the spec's limits and its device filter;
/// `None` for a rootless container without a delegated cgroup.
fn create_cgroup(req: &RunRequest, layout: &Layout) -> Result<Option<Cgroup>, Failure> {
    let rootless = sysproc::geteuid() != 0;
    let resources = req
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref());
    let cgroup = match Cgroup::create(layout, &req.cgroup_parent, &req.id, resources) {
        Ok(c) => c,
        // Rootless: no cgroup to write to unless one was delegated to the
        // user; the container then runs without limits (as rootless podman
        // does on cgroup v1). The caller warns about requested limits.
        Err(_) if rootless => return Ok(None),
        Err(e) => return Err(Failure::setup(format!("cgroup: {e}"))),
    };
    let rules = crate::devices::effective_rules(resources);
    if let Err(msg) = cgroup.filter_devices(&rules, rootless, crate::cgroups::attach_device_program)
    {
        let _ = cgroup.remove();
        return Err(Failure::setup(msg));
    }
    Ok(Some(cgroup))
}

/// Mounts the rootfs on `STATE_DIR/rootfs` in the host's mount namespace
/// (private) and makes the mount points inside; returns the target.
fn premount_rootfs(sys: &LinuxSys, req: &RunRequest) -> Result<PathBuf, Failure> {
    let target = req.state_dir.join("rootfs");
    let rootfs = rootfs_of(req);
    let plan = plan_for(req, &rootfs, &[], &[], &[], &[], false);
    crate::rootfs::mount_rootfs(sys, &plan)?;
    let _ = sys.mount(
        None,
        &target,
        None,
        kiln_sys::MountFlags::REC | kiln_sys::MountFlags::PRIVATE,
        None,
    );
    // The container's root cannot create files in the image's host-owned
    // directories: make the mount points and working directory now.
    make_mount_points(sys, &target, &req.spec);
    Ok(target)
}

/// The pipes between the shim and the init, made before the fork.
struct InitPipes {
    /// The shim moved the init into the cgroup (`j`), while the init builds
    /// its root filesystem: a cgroup v1 migration waits for an RCU grace
    /// period (milliseconds), so it is kept off the init's path.
    joined: (OwnedFd, OwnedFd),
    /// With a user namespace, the init waits for its uid/gid maps (`m`).
    mapped: (OwnedFd, OwnedFd),
    logger: Option<Logger>,
    /// Detached `-i`: stdin is a pipe nobody writes to but that stays open
    /// (the supervisor holds the write end until the container ends).
    stdin: Option<(OwnedFd, OwnedFd)>,
}

/// The init's ends of [`InitPipes`].
struct ChildPipes {
    joined: OwnedFd,
    mapped: Option<OwnedFd>,
}

/// The shim's ends of [`InitPipes`].
struct ParentPipes {
    joined: Option<OwnedFd>,
    mapped: Option<OwnedFd>,
    logger: Option<Logger>,
    /// Held until the supervisor exits.
    _stdin_writer: Option<OwnedFd>,
}

impl InitPipes {
    fn new(req: &RunRequest) -> Result<InitPipes, Failure> {
        Ok(InitPipes {
            joined: sysproc::pipe().or_fail("pipe")?,
            mapped: sysproc::pipe().or_fail("pipe")?,
            logger: match &req.log {
                Some(path) => Some(Logger::open(path)?),
                None => None,
            },
            stdin: if req.open_stdin {
                Some(sysproc::pipe().or_fail("stdin pipe")?)
            } else {
                None
            },
        })
    }

    /// In the init: log pipes and the stdin pipe in place, the shim's ends
    /// closed; the maps pipe only with a user namespace.
    fn child_side(self, userns: bool) -> Result<ChildPipes, Failure> {
        let (joined_r, joined_w) = self.joined;
        let (mapped_r, mapped_w) = self.mapped;
        drop((joined_w, mapped_w));
        if let Some(l) = self.logger {
            l.attach()?;
        }
        if let Some((r, w)) = self.stdin {
            drop(w);
            sysproc::dup_onto(r.as_fd(), 0).or_fail("stdin pipe as stdin")?;
        }
        Ok(ChildPipes {
            joined: joined_r,
            mapped: userns.then_some(mapped_r),
        })
    }

    /// In the shim: the init's ends closed.
    fn parent_side(self, userns: bool) -> ParentPipes {
        let (joined_r, joined_w) = self.joined;
        let (mapped_r, mapped_w) = self.mapped;
        drop((joined_r, mapped_r));
        let mut logger = self.logger;
        if let Some(l) = &mut logger {
            l.parent_side();
        }
        ParentPipes {
            joined: Some(joined_w),
            mapped: userns.then_some(mapped_w),
            logger,
            _stdin_writer: self.stdin.map(|(_, w)| w),
        }
    }
}

/// Lets the init go on: writes its uid/gid maps (user namespace), moves it
/// into the cgroup and tells it so. On an error the init reads
/// end-of-file and gives up; the message says why.
fn release_init(
    held: &Held<'_>,
    req: &RunRequest,
    pid: i32,
    pipes: &mut ParentPipes,
) -> Result<(), String> {
    if let Some(mapped) = pipes.mapped.take() {
        let maps = id_mappings(&req.spec);
        crate::userns::write_maps(pid, &maps, sysproc::geteuid(), sysproc::getegid())
            .map_err(|e| format!("user namespace maps: {e}"))?;
        let _ = fs::File::from(mapped).write_all(b"m");
    }
    let joined = pipes.joined.take();
    if let Some(c) = &held.cgroup {
        c.join(pid).map_err(|e| format!("join cgroup: {e}"))?;
    }
    if let Some(w) = joined {
        let _ = fs::File::from(w).write_all(b"j");
    }
    Ok(())
}

/// Writes `state.json` (pid and start times, supervisor, cgroup) and
/// reports the start to the caller.
fn record_started(
    held: &Held<'_>,
    req: &RunRequest,
    pid: i32,
    status: &mut Option<OwnedFd>,
) -> Result<(), Failure> {
    let record = StateFile {
        id: req.id.clone(),
        pid,
        pid_start: state::start_time(pid).unwrap_or_default(),
        shim_pid: sysproc::getpid(),
        shim_start: state::start_time(sysproc::getpid()).unwrap_or_default(),
        cgroup: held.cgroup.clone(),
        started_at: Some(state::rfc3339(std::time::SystemTime::now())),
    };
    if let Err(e) = state::write_json(&state::paths(&req.state_dir).0, &record) {
        let _ = held.sys.kill(pid, libc::SIGKILL);
        return Err(Failure::setup(e));
    }
    if let Some(fd) = status.take() {
        send(&fd, &Report::Started { pid });
    }
    Ok(())
}

/// The mounts making up `/`: the request's, else a bind of `spec.root.path`.
fn rootfs_of(req: &RunRequest) -> Vec<RootfsMount> {
    if req.rootfs.is_empty() {
        let root = req
            .spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .unwrap_or_default();
        vec![RootfsMount::bind(root)]
    } else {
        req.rootfs.clone()
    }
}

fn plan_for<'a>(
    req: &RunRequest,
    rootfs: &'a [RootfsMount],
    mounts: &'a [oci_spec::runtime::Mount],
    masked: &'a [String],
    readonly: &'a [String],
    controllers: &'a [String],
    userns: bool,
) -> RootfsPlan<'a> {
    RootfsPlan {
        rootfs,
        target: req.state_dir.join("rootfs"),
        mounts,
        masked,
        readonly,
        readonly_root: req
            .spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false),
        cgroup_v1_controllers: controllers,
        userns,
        premounted: false,
        devices: &[],
    }
}

/// Creates what the spec mounts on and the working directory inside the
/// premounted rootfs at `root`, as the host's root, from a child confined
/// to it with `chroot` (so a symlink planted in the image resolves inside
/// the image, never to a host path). Failures are left for the mount
/// itself to report.
fn make_mount_points(sys: &LinuxSys, root: &Path, spec: &Spec) {
    // What each mount point must be, decided on the host side first: a
    // file for a bind of a file, else a directory.
    let mut points: Vec<(PathBuf, bool)> = Vec::new();
    for m in spec.mounts().iter().flatten() {
        let dest =
            Path::new("/").join(m.destination().strip_prefix("/").unwrap_or(m.destination()));
        let is_bind = m.typ().as_deref() == Some("bind")
            || m.options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind");
        let file_like = is_bind
            && m.source()
                .as_ref()
                .and_then(|s| fs::metadata(s).ok())
                .is_some_and(|md| !md.is_dir());
        points.push((dest, file_like));
    }
    if let Some(p) = spec.process() {
        points.push((p.cwd().clone(), false));
    }
    let Ok(fork) = sys.fork() else { return };
    if let Fork::Parent(pid) = fork {
        let _ = sys.waitpid(pid, false);
        return;
    }
    if std::os::unix::fs::chroot(root).is_err() || sys.chdir(Path::new("/")).is_err() {
        sys.exit(1);
    }
    for (dest, file_like) in points {
        if sys.probe_dir(&dest).ok().flatten().is_some() {
            continue;
        }
        let _ = if file_like {
            sys.create_file(&dest)
        } else {
            sys.mkdir_all(&dest, 0o755)
        };
    }
    sys.exit(0)
}

/// In a user namespace a mount option naming an id that has no mapping
/// (`devpts`'s `gid=5` with a rootless single-id map) makes the mount
/// fail: such options are dropped, as the kernel's default (the caller's
/// id) then applies.
fn drop_unmapped_ids(mounts: &mut [oci_spec::runtime::Mount]) {
    let mapped = |file: &str, id: u32| {
        fs::read_to_string(file).is_ok_and(|t| {
            t.lines().any(|l| {
                let f: Vec<u64> = l
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                f.len() == 3 && u64::from(id) >= f[0] && u64::from(id) - f[0] < f[2]
            })
        })
    };
    for m in mounts.iter_mut() {
        let Some(opts) = m.options().clone() else {
            continue;
        };
        let kept: Vec<String> = opts
            .into_iter()
            .filter(|o| {
                let check = |prefix: &str, file: &str| {
                    o.strip_prefix(prefix)
                        .and_then(|v| v.parse::<u32>().ok())
                        .is_none_or(|id| mapped(file, id))
                };
                check("uid=", "/proc/self/uid_map") && check("gid=", "/proc/self/gid_map")
            })
            .collect();
        m.set_options(Some(kept));
    }
}

/// The spec's uid and gid maps.
fn id_mappings(spec: &Spec) -> kiln_model::IdMap {
    let conv = |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        m.iter()
            .flatten()
            .map(|r| kiln_model::IdRange {
                container_id: r.container_id(),
                host_id: r.host_id(),
                size: r.size(),
            })
            .collect()
    };
    let linux = spec.linux().as_ref();
    kiln_model::IdMap {
        uids: linux.map(|l| conv(l.uid_mappings())).unwrap_or_default(),
        gids: linux.map(|l| conv(l.gid_mappings())).unwrap_or_default(),
    }
}

fn container_init(
    sys: &LinuxSys,
    status: &mut Option<OwnedFd>,
    req: &RunRequest,
    layout: &Layout,
    joined: OwnedFd,
    mapped: Option<OwnedFd>,
    premounted: bool,
) -> Result<Infallible, Failure> {
    if !req.detached {
        sys.set_parent_death_signal(libc::SIGKILL)
            .or_fail("parent death signal")?;
    }
    // Keep /proc/1/exe (the host's binary) out of reach (CVE-2019-5736).
    // In a new user namespace only once the maps are written: a
    // non-dumpable process's /proc/PID files belong to root, and a rootless
    // supervisor could no longer write its uid_map (nothing of the
    // container exists yet meanwhile: this is the namespace's only process).
    if mapped.is_none() {
        sys.set_dumpable(false).or_fail("set non-dumpable")?;
    }
    let ns = namespaces(&req.spec);
    if let Some(mapped) = mapped {
        // In the new user namespace: wait for the supervisor to write the
        // maps, then become its root (every capability in it, none outside).
        let mut byte = [0u8; 1];
        if !matches!(fs::File::from(mapped).read(&mut byte), Ok(1)) {
            return Err(Failure::setup("the user namespace maps were not written"));
        }
        sys.setgid(0).or_fail("setgid 0 in the user namespace")?;
        sys.setuid(0).or_fail("setuid 0 in the user namespace")?;
        sys.set_dumpable(false).or_fail("set non-dumpable")?;
    }
    let rest = Namespaces(ns.0 & !Namespaces::PID.0 & !Namespaces::USER.0 & !Namespaces::CGROUP.0);
    sys.unshare(rest).or_fail("unshare namespaces")?;
    if ns.contains(Namespaces::NET) {
        sys.loopback_up().or_fail("bring lo up")?;
    }
    let spec = &req.spec;
    set_sysctls(spec, ns)?;
    let rootfs = rootfs_of(req);
    let linux = spec.linux().as_ref();
    let masked = linux
        .and_then(|l| l.masked_paths().clone())
        .unwrap_or_default();
    let readonly = linux
        .and_then(|l| l.readonly_paths().clone())
        .unwrap_or_default();
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    if ns.contains(Namespaces::USER) {
        drop_unmapped_ids(&mut mounts);
    }
    let controllers = layout.mountable();
    let mut plan = plan_for(
        req,
        &rootfs,
        &mounts,
        &masked,
        &readonly,
        &controllers,
        ns.contains(Namespaces::USER),
    );
    plan.premounted = premounted;
    let devices = linux.and_then(|l| l.devices().clone()).unwrap_or_default();
    plan.devices = &devices;
    setup_rootfs(sys, &plan)?;
    // Compiled now, while the shim's cgroup migration (an RCU grace period
    // on cgroup v1) is still under way, rather than after waiting for it.
    let seccomp = linux
        .and_then(|l| l.seccomp().as_ref())
        .map(crate::seccomp::compile)
        .transpose()
        .map_err(Failure::setup)?;
    // The cgroup namespace is rooted where the init is when it unshares:
    // wait until the shim moved it into the container's cgroup.
    let mut byte = [0u8; 1];
    match fs::File::from(joined).read(&mut byte) {
        Ok(1) => {}
        _ => {
            return Err(Failure::setup(
                "the container was not moved into its cgroup",
            ));
        }
    }
    if ns.contains(Namespaces::CGROUP) {
        sys.unshare(Namespaces::CGROUP)
            .or_fail("unshare cgroup namespace")?;
    }
    finish_rootfs(sys, &plan)?;
    if spec.process().as_ref().and_then(|p| p.terminal()) == Some(true) {
        attach_terminal(sys, status, true)?;
    }
    if ns.contains(Namespaces::UTS)
        && let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty())
    {
        sys.sethostname(h).or_fail("sethostname")?;
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Failure::setup("spec has no process"))?;
    let group_add = crate::extras::group_add_of(&req.spec);
    let user = UserRequest {
        user: req.user.as_deref(),
        group_add: &group_add,
    };
    finish(sys, status, process, user, seccomp, req.init)
}

/// Writes the spec's sysctls through the procfs still visible before the
/// pivot: namespaced parameters apply to the writer's namespaces, which are
/// the container's now. Each is checked again ([`crate::check_sysctl`]):
/// a parameter that is not namespaced would change the host.
fn set_sysctls(spec: &Spec, ns: Namespaces) -> Result<(), Failure> {
    let sysctls = spec
        .linux()
        .as_ref()
        .and_then(|l| l.sysctl().clone())
        .unwrap_or_default();
    for (name, value) in sysctls {
        crate::check_sysctl(&name, ns.contains(Namespaces::NET)).map_err(Failure::setup)?;
        // `net/ipv4/conf/eth0.1/x` keeps its dots; `net.ipv4.x` has no `/`.
        let rel = if name.contains('/') {
            name.clone()
        } else {
            name.replace('.', "/")
        };
        let path = Path::new("/proc/sys").join(rel);
        fs::write(&path, &value).or_fail(&format!("sysctl {name}={value}"))?;
    }
    Ok(())
}

fn caps_of(set: &Option<oci_spec::runtime::Capabilities>) -> Vec<kiln_sys::Capability> {
    set.iter()
        .flatten()
        .filter_map(|c| serde_json::to_value(c).ok())
        .filter_map(|v| v.as_str().and_then(|s| s.parse().ok()))
        .collect()
}

fn rlimit_resource(name: &str) -> Option<u32> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

/// Where `cmd` is, searched in the container's `PATH` like Go's LookPath.
fn lookup(cmd: &str, env: &[String]) -> Result<PathBuf, Failure> {
    let not_found = |message: String| Failure {
        kind: FailKind::NotFound,
        command: cmd.to_owned(),
        message,
    };
    if cmd.contains('/') {
        return match fs::metadata(cmd) {
            Ok(_) => Ok(PathBuf::from(cmd)),
            Err(_) => Err(not_found(format!("stat {cmd}: no such file or directory"))),
        };
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':') {
        let candidate = Path::new(if dir.is_empty() { "." } else { dir }).join(cmd);
        if let Ok(m) = fs::metadata(&candidate)
            && m.is_file()
            && m.permissions().mode() & 0o111 != 0
        {
            return Ok(candidate);
        }
    }
    Err(not_found("executable file not found in $PATH".into()))
}

/// Everything from user resolution to `execve`, shared by the container's
/// Reads the image's `/etc/passwd` or `/etc/group` for the user lookup:
/// a regular file only, and at most 4 MiB of it. The image chose these
/// paths: a link to `/dev/zero` must not grow the init without bound, and
/// a FIFO must not hang it (opened non-blocking, refused as not a file).
/// Anything else reads as an empty file, so a named user is then unknown.
fn read_account_file(path: &Path) -> String {
    use std::os::unix::fs::OpenOptionsExt;
    const LIMIT: u64 = 4 << 20;
    let Ok(file) = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    else {
        return String::new();
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return String::new();
    }
    let mut bytes = Vec::new();
    if file.take(LIMIT).read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Who the container's process runs as, before resolution against the
/// container's `/etc/passwd` and `/etc/group`.
#[derive(Clone, Copy)]
struct UserRequest<'a> {
    /// Docker's user string (`name`, `uid:gid`, ...); `None`: the
    /// process's numeric ids.
    user: Option<&'a str>,
    /// `--group-add`'s groups.
    group_add: &'a [String],
}

/// The last steps before `exec` (user, working directory, terminal,
/// rlimits, capabilities, seccomp), shared by the container's init and by
/// exec. Runs inside the container's mount namespace.
fn finish(
    sys: &LinuxSys,
    status: &mut Option<OwnedFd>,
    process: &Process,
    user: UserRequest<'_>,
    seccomp: Option<Vec<Vec<kiln_sys::SockFilter>>>,
    tiny_init: bool,
) -> Result<Infallible, Failure> {
    let u = process.user();
    // Without a user string the spec's numeric ids stand; passwd still
    // gives HOME and group membership, as in Docker.
    // The uid alone, so that the user's memberships in /etc/group count
    // (Docker: `docker run busybox id` lists root's groups); the spec's gid
    // stays the primary one.
    let numeric = u.uid().to_string();
    let passwd = read_account_file(Path::new("/etc/passwd"));
    let group = read_account_file(Path::new("/etc/group"));
    let mut eu = crate::user::resolve(user.user.unwrap_or(&numeric), &passwd, &group)
        .map_err(Failure::setup)?;
    if user.user.is_none() && eu.gid != u.gid() {
        let primary = eu.gid;
        eu.groups.retain(|g| *g != primary);
        eu.gid = u.gid();
        eu.groups.insert(0, u.gid());
    }
    let (uid, gid, mut groups, home) = (eu.uid, eu.gid, eu.groups, eu.home);
    let added = crate::user::additional_groups(user.group_add, &group).map_err(Failure::setup)?;
    for g in u.additional_gids().iter().flatten().chain(&added) {
        if !groups.contains(g) {
            groups.push(*g);
        }
    }
    let mut env = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={home}"));
    }
    let cwd = process.cwd();
    if !cwd.is_absolute() {
        return Err(Failure::setup(format!(
            "working directory {} is not absolute",
            cwd.display()
        )));
    }
    if sys
        .probe_dir(cwd)
        .or_fail("stat working directory")?
        .is_none()
    {
        sys.mkdir_all(cwd, 0o755)
            .or_fail("create working directory")?;
    }
    sys.chdir(cwd).or_fail("chdir to working directory")?;
    sys.setsid().or_fail("setsid")?;
    if process.terminal() == Some(true) {
        sys.set_controlling_tty(std::io::stdin().as_fd())
            .or_fail("set controlling terminal")?;
    }
    let args = process.args().clone().unwrap_or_default();
    let Some(cmd) = args.first() else {
        return Err(Failure::setup("no command given"));
    };
    let path = lookup(cmd, &env)?;
    for r in process.rlimits().iter().flatten() {
        let name = serde_json::to_value(r.typ())
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let Some(res) = rlimit_resource(&name) else {
            continue;
        };
        let cur = sys.getrlimit(res).or_fail("getrlimit")?;
        // Never above the current hard limit (raising needs CAP_SYS_RESOURCE).
        let hard = r.hard().min(cur.hard);
        sys.setrlimit(
            res,
            Rlimit {
                soft: r.soft().min(hard),
                hard,
            },
        )
        .or_fail(&format!("setrlimit {name}"))?;
    }
    if process.no_new_privileges() == Some(true) {
        sys.set_no_new_privs().or_fail("no_new_privs")?;
    }
    if let Some(programs) = seccomp {
        for p in &programs {
            sys.install_seccomp(p).or_fail("install seccomp filter")?;
        }
    }
    let caps = process.capabilities().as_ref();
    let bounding = caps.map(|c| caps_of(c.bounding())).unwrap_or_default();
    let sets = CapabilitySets {
        effective: caps.map(|c| caps_of(c.effective())).unwrap_or_default(),
        permitted: caps.map(|c| caps_of(c.permitted())).unwrap_or_default(),
        inheritable: caps.map(|c| caps_of(c.inheritable())).unwrap_or_default(),
        ambient: caps.map(|c| caps_of(c.ambient())).unwrap_or_default(),
    };
    sys.drop_bounding(&bounding)
        .or_fail("drop bounding capabilities")?;
    sys.set_keepcaps(true).or_fail("keep capabilities")?;
    // A rootless user namespace with a single-id map denies setgroups:
    // the process then keeps no supplementary groups (it has none there).
    let setgroups_denied =
        fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny");
    if !setgroups_denied {
        sys.setgroups(&groups).or_fail("setgroups")?;
    }
    sys.setgid(gid).or_fail("setgid")?;
    sys.setuid(uid).or_fail("setuid")?;
    sys.set_capabilities(&sets).or_fail("set capabilities")?;
    sys.set_keepcaps(false).or_fail("clear keep capabilities")?;
    sysproc::set_umask(u.umask().unwrap_or(0o022));
    if tiny_init {
        return run_tiny_init(sys, status, cmd, &path, &args, &env);
    }
    Err(exec_failure(cmd, sys.execve(&path, &args, &env)))
}

/// Opens a terminal on the container's own devpts, makes it the standard
/// streams (and `/dev/console` for the container's init), and sends the
/// master side to the caller over the report socket.
fn attach_terminal(
    sys: &LinuxSys,
    status: &mut Option<OwnedFd>,
    console: bool,
) -> Result<(), Failure> {
    let (master, slave, path) =
        sysproc::open_pty_at(Path::new("/dev/ptmx")).or_fail("open /dev/ptmx")?;
    if console {
        let target = Path::new("/dev/console");
        sys.create_file(target).or_fail("create /dev/console")?;
        sys.mount(Some(&path), target, None, kiln_sys::MountFlags::BIND, None)
            .or_fail("bind /dev/console")?;
    }
    for n in 0..3 {
        sysproc::dup_onto(slave.as_fd(), n).or_fail("terminal as standard stream")?;
    }
    drop(slave);
    let sock = status
        .as_ref()
        .ok_or_else(|| Failure::setup("no report channel for the terminal"))?;
    crate::wire::send_fd(sock, &Report::Pty, &master).or_fail("send terminal")?;
    Ok(())
}

fn exec_failure(cmd: &str, e: std::io::Error) -> Failure {
    let (kind, message) = match e.raw_os_error() {
        Some(libc::ENOENT) => (FailKind::NotFound, "no such file or directory".to_string()),
        Some(libc::EACCES) | Some(libc::EPERM) => {
            (FailKind::NotExecutable, "permission denied".to_string())
        }
        Some(libc::ENOEXEC) => (FailKind::NotExecutable, "exec format error".to_string()),
        _ => (FailKind::Setup, format!("exec {cmd}: {e}")),
    };
    Failure {
        kind,
        command: cmd.to_owned(),
        message,
    }
}

/// PID 1 with `--init`: runs the command as its child, passes signals on,
/// reaps every zombie, and ends with the command's status.
fn run_tiny_init(
    sys: &LinuxSys,
    status: &mut Option<OwnedFd>,
    cmd: &str,
    path: &Path,
    args: &[String],
    env: &[String],
) -> Result<Infallible, Failure> {
    sys.set_dumpable(false).or_fail("set non-dumpable")?;
    sysproc::install_noop_handlers(&FORWARDED).or_fail("signal handlers")?;
    let signals = forwarded_and_chld();
    let old = sysproc::block_signals(&signals).or_fail("block signals")?;
    let sfd = sysproc::signalfd(&signals).or_fail("signalfd")?;
    match sys.fork().or_fail("fork command")? {
        Fork::Child => {
            drop(sfd);
            let _ = sysproc::reset_signal_handlers(&FORWARDED);
            let _ = sysproc::set_signal_mask(&old);
            Err(exec_failure(cmd, sys.execve(path, args, env)))
        }
        Fork::Parent(child) => {
            status.take();
            let st = supervise(sys, child, &sfd, None);
            // Reap what is left so nothing lingers as a zombie, then leave.
            while let Ok(Some(_)) = sys.waitpid(-1, true) {}
            match st {
                WaitStatus::Exited(c) => sys.exit(c),
                WaitStatus::Signaled(s) => sys.exit(128 + s),
            }
        }
    }
}

fn ns_inode(path: &str) -> Option<u64> {
    fs::metadata(path).ok().map(|m| m.ino())
}

fn exec_join(
    sys: &LinuxSys,
    status: &mut Option<OwnedFd>,
    req: ExecRequest,
) -> Result<Infallible, Failure> {
    if state::start_time(req.pid) != Some(req.pid_start) {
        return Err(Failure::setup(format!(
            "container {} is not running",
            req.id
        )));
    }
    if req.detached {
        // As the detached shim: the caller waits only for this first
        // process; the joiner below outlives it.
        sys.setsid().or_fail("setsid")?;
        if let Fork::Parent(_) = sys.fork().or_fail("fork exec supervisor")? {
            status.take();
            sys.exit(0);
        }
    }
    let kinds = [
        ("ipc", Namespaces::IPC),
        ("uts", Namespaces::UTS),
        ("net", Namespaces::NET),
        ("cgroup", Namespaces::CGROUP),
        ("pid", Namespaces::PID),
        ("mnt", Namespaces::MOUNT),
    ];
    // A user namespace is joined first: it owns the others.
    let kinds = std::iter::once(("user", Namespaces::USER)).chain(kinds);
    let mut handles = Vec::new();
    for (name, ns) in kinds {
        let theirs = format!("/proc/{}/ns/{name}", req.pid);
        if ns_inode(&theirs) != ns_inode(&format!("/proc/self/ns/{name}")) {
            let f = fs::File::open(&theirs).or_fail(&format!("open {theirs}"))?;
            handles.push((f, ns, name));
        }
    }
    if let Some(cg) = &req.cgroup {
        cg.join(0).or_fail("join cgroup")?;
    }
    sys.set_dumpable(false).or_fail("set non-dumpable")?;
    for (f, ns, name) in &handles {
        sys.setns(f.as_fd(), *ns)
            .or_fail(&format!("join {name} namespace"))?;
    }
    drop(handles);
    let signals = forwarded_and_chld();
    let old = sysproc::block_signals(&signals).or_fail("block signals")?;
    let sfd = sysproc::signalfd(&signals).or_fail("signalfd")?;
    match sys.fork().or_fail("fork exec process")? {
        Fork::Child => {
            drop(sfd);
            let _ = sysproc::set_signal_mask(&old);
            sys.set_parent_death_signal(libc::SIGKILL)
                .or_fail("parent death signal")?;
            if req.process.terminal() == Some(true) {
                attach_terminal(sys, status, false)?;
            }
            let seccomp = req
                .seccomp
                .as_ref()
                .map(crate::seccomp::compile)
                .transpose()
                .map_err(Failure::setup)?;
            let user = UserRequest {
                user: req.user.as_deref(),
                group_add: &req.group_add,
            };
            finish(sys, status, &req.process, user, seccomp, false)
        }
        Fork::Parent(child) => {
            let _ = sysproc::ignore_signals(&[libc::SIGPIPE]);
            if let Some(fd) = status.take() {
                send(&fd, &Report::Started { pid: child });
            }
            let st = supervise(sys, child, &sfd, None);
            exit_like(sys, st)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn account_files_are_read_only_when_regular_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        std::fs::write(&passwd, "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        assert!(super::read_account_file(&passwd).starts_with("root:x:0:0"));
        // An endless device and a FIFO without a writer: empty at once.
        assert_eq!(
            super::read_account_file(std::path::Path::new("/dev/zero")),
            ""
        );
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        assert_eq!(super::read_account_file(&fifo), "");
        // A huge regular file is cut at 4 MiB.
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; 5 << 20]).unwrap();
        assert_eq!(super::read_account_file(&big).len(), 4 << 20);
    }

    use super::*;

    #[test]
    fn lookup_searches_path_like_docker() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        let found = lookup("sh", &env)
            .map_err(|f| f.message)
            .expect("sh is on the host");
        assert!(found.ends_with("sh"));
        let missing = lookup("nosuch-kiln-cmd", &env).expect_err("missing");
        assert_eq!(
            (missing.kind, missing.message.as_str()),
            (FailKind::NotFound, "executable file not found in $PATH")
        );
        let abs = lookup("/nonexistent/x", &env).expect_err("missing path");
        assert_eq!(abs.code(), 127);
    }

    #[test]
    fn exec_errors_map_to_docker_codes() {
        assert_eq!(
            exec_failure("x", std::io::Error::from_raw_os_error(libc::EACCES)).code(),
            126
        );
        assert_eq!(
            exec_failure("x", std::io::Error::from_raw_os_error(libc::ENOENT)).code(),
            127
        );
        assert_eq!(
            exec_failure("x", std::io::Error::from_raw_os_error(libc::E2BIG)).code(),
            125
        );
    }
}
