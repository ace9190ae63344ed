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
use oci_spec::runtime::{LinuxSeccomp, Process, Spec};
use serde::de::DeserializeOwned;

use crate::cgroups::{Cgroup, Layout};
use crate::config::{ExitStatus, RootfsMount};
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

/// Waits for `child`, passing on every forwarded signal.
fn supervise(sys: &LinuxSys, child: i32, sfd: &OwnedFd) -> WaitStatus {
    loop {
        let sig = match sysproc::read_signalfd(sfd.as_fd()) {
            Ok(s) => s,
            Err(_) => libc::SIGCHLD,
        };
        if sig == libc::SIGCHLD {
            while let Ok(Some((pid, st))) = sys.waitpid(-1, true) {
                if pid == child {
                    return st;
                }
            }
        } else {
            let _ = sys.kill(child, sig);
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
    if req.detached {
        sys.setsid().or_fail("setsid")?;
        if let Fork::Parent(_) = sys.fork().or_fail("fork supervisor")? {
            status.take();
            sys.exit(0);
        }
    } else {
        sys.set_parent_death_signal(libc::SIGKILL)
            .or_fail("parent death signal")?;
    }
    let ns = namespaces(&req.spec);
    let layout = Layout::detect(&req.cgroup_root);
    let resources = req
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref());
    let cgroup =
        Cgroup::create(&layout, &req.cgroup_parent, &req.id, resources).or_fail("cgroup")?;
    let signals = forwarded_and_chld();
    let old_mask = sysproc::block_signals(&signals).or_fail("block signals")?;
    let sfd = sysproc::signalfd(&signals).or_fail("signalfd")?;
    if ns.contains(Namespaces::PID) {
        sys.unshare(Namespaces::PID)
            .or_fail("unshare pid namespace")?;
    }
    // The shim moves the init into the cgroup while the init builds its
    // root filesystem: a cgroup v1 migration waits for an RCU grace period
    // (milliseconds), so it is kept off the init's path.
    let (joined_r, joined_w) = sysproc::pipe().or_fail("pipe")?;
    let fork = sys.fork();
    let pid = match fork {
        Err(e) => {
            let _ = cgroup.remove();
            return Err(Failure::setup(format!("fork container init: {e}")));
        }
        Ok(Fork::Child) => {
            drop(sfd);
            drop(joined_w);
            let _ = sysproc::set_signal_mask(&old_mask);
            return container_init(sys, status, &req, &layout, joined_r);
        }
        Ok(Fork::Parent(pid)) => pid,
    };
    drop(joined_r);
    // The init may already have failed and gone: a write to its pipes must
    // not kill the shim (only the shim ignores SIGPIPE; the init has reset it).
    let _ = sysproc::ignore_signals(&[libc::SIGPIPE]);
    match cgroup.join(pid) {
        Ok(()) => {
            let _ = fs::File::from(joined_w).write_all(b"j");
        }
        Err(e) => {
            // The init reads end-of-file and gives up; say why.
            drop(joined_w);
            let _ = sys.kill(pid, libc::SIGKILL);
            let _ = sys.waitpid(pid, false);
            let _ = cgroup.remove();
            return Err(Failure::setup(format!("join cgroup: {e}")));
        }
    }
    let (state_path, exit_path) = state::paths(&req.state_dir);
    let record = StateFile {
        id: req.id.clone(),
        pid,
        pid_start: state::start_time(pid).unwrap_or_default(),
        shim_pid: sysproc::getpid(),
        cgroup: Some(cgroup.clone()),
    };
    if let Err(e) = state::write_json(&state_path, &record) {
        let _ = sys.kill(pid, libc::SIGKILL);
        return Err(Failure::setup(e));
    }
    if let Some(fd) = status.take() {
        send(&fd, &Report::Started { pid });
    }
    let st = supervise(sys, pid, &sfd);
    cgroup.kill_all(|p| {
        let _ = sys.kill(p, libc::SIGKILL);
    });
    let _ = cgroup.remove();
    let _ = state::write_json(
        &exit_path,
        &ExitFile {
            status: to_exit(st),
        },
    );
    exit_like(sys, st)
}

fn container_init(
    sys: &LinuxSys,
    status: &mut Option<OwnedFd>,
    req: &RunRequest,
    layout: &Layout,
    joined: OwnedFd,
) -> Result<Infallible, Failure> {
    if !req.detached {
        sys.set_parent_death_signal(libc::SIGKILL)
            .or_fail("parent death signal")?;
    }
    // Keep /proc/1/exe (the host's binary) out of reach (CVE-2019-5736).
    sys.set_dumpable(false).or_fail("set non-dumpable")?;
    let ns = namespaces(&req.spec);
    let rest = Namespaces(ns.0 & !Namespaces::PID.0 & !Namespaces::USER.0 & !Namespaces::CGROUP.0);
    sys.unshare(rest).or_fail("unshare namespaces")?;
    if ns.contains(Namespaces::NET) {
        sys.loopback_up().or_fail("bring lo up")?;
    }
    let spec = &req.spec;
    let rootfs = if req.rootfs.is_empty() {
        let root = spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .unwrap_or_default();
        vec![RootfsMount::bind(root)]
    } else {
        req.rootfs.clone()
    };
    let linux = spec.linux().as_ref();
    let masked = linux
        .and_then(|l| l.masked_paths().clone())
        .unwrap_or_default();
    let readonly = linux
        .and_then(|l| l.readonly_paths().clone())
        .unwrap_or_default();
    let mounts = spec.mounts().clone().unwrap_or_default();
    let controllers = layout.mountable();
    let plan = RootfsPlan {
        rootfs: &rootfs,
        target: req.state_dir.join("rootfs"),
        mounts: &mounts,
        masked: &masked,
        readonly: &readonly,
        readonly_root: spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false),
        cgroup_v1_controllers: &controllers,
    };
    setup_rootfs(sys, &plan)?;
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
    let seccomp = linux.and_then(|l| l.seccomp().as_ref());
    finish(sys, status, process, req.user.as_deref(), seccomp, req.init)
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
/// init and by exec. Runs inside the container's mount namespace.
fn finish(
    sys: &LinuxSys,
    status: &mut Option<OwnedFd>,
    process: &Process,
    user: Option<&str>,
    seccomp: Option<&LinuxSeccomp>,
    tiny_init: bool,
) -> Result<Infallible, Failure> {
    let u = process.user();
    // Without a user string the spec's numeric ids stand; passwd still
    // gives HOME and group membership, as in Docker.
    let numeric = format!("{}:{}", u.uid(), u.gid());
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = fs::read_to_string("/etc/group").unwrap_or_default();
    let eu =
        crate::user::resolve(user.unwrap_or(&numeric), &passwd, &group).map_err(Failure::setup)?;
    let (uid, gid, mut groups, home) = (eu.uid, eu.gid, eu.groups, eu.home);
    for g in u.additional_gids().iter().flatten() {
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
    if let Some(profile) = seccomp {
        let programs = crate::seccomp::compile(profile).map_err(Failure::setup)?;
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
    sys.setgroups(&groups).or_fail("setgroups")?;
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
            let st = supervise(sys, child, &sfd);
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
    let kinds = [
        ("ipc", Namespaces::IPC),
        ("uts", Namespaces::UTS),
        ("net", Namespaces::NET),
        ("cgroup", Namespaces::CGROUP),
        ("pid", Namespaces::PID),
        ("mnt", Namespaces::MOUNT),
    ];
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
            finish(
                sys,
                status,
                &req.process,
                req.user.as_deref(),
                req.seccomp.as_ref(),
                false,
            )
        }
        Fork::Parent(child) => {
            let _ = sysproc::ignore_signals(&[libc::SIGPIPE]);
            if let Some(fd) = status.take() {
                send(&fd, &Report::Started { pid: child });
            }
            let st = supervise(sys, child, &sfd);
            exit_like(sys, st)
        }
    }
}

#[cfg(test)]
mod tests {
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
