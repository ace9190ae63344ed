//! The caller's side: start the re-executed shim, hand it the request,
//! collect its reports; then wait, signal, exec, delete.

use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use kiln_sys::process as sysproc;
use oci_spec::runtime::Process;

use crate::cgroups::Cgroup;
use crate::config::{DetachOptions, ExitStatus, LaunchConfig, RuntimeConfig, Stdio, StdioConfig};
use crate::error::{Error, Result};
use crate::init::{EXEC_ARG, FORWARDED, SHIM_ARG};
use crate::state::{self, ContainerState, REQUEST_FILE, StateFile, Status};
use crate::wire::{self, ExecRequest, REQUEST_FD, Report, RunRequest, STATUS_FD};

/// Runs containers. Cheap to create; holds only its configuration.
#[derive(Clone, Debug, Default)]
pub struct Runtime {
    config: RuntimeConfig,
}

/// A container (or exec'd process) running in the foreground: the caller
/// waits for it.
#[derive(Debug)]
pub struct Foreground {
    id: String,
    shim: Child,
    pid: i32,
    pty_master: Option<OwnedFd>,
    state_dir: std::path::PathBuf,
}

impl Foreground {
    /// Host pid of the container's first process.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The pseudo-terminal's master side when started with `tty`: the
    /// caller copies between it and its own streams.
    pub fn take_pty(&mut self) -> Option<OwnedFd> {
        self.pty_master.take()
    }

    /// Sends `signal` to the container's first process: through the shim,
    /// which passes it on, or directly for SIGKILL and SIGSTOP (which the
    /// shim cannot catch; killing the shim would leave the cgroup behind).
    pub fn signal(&self, signal: i32) -> Result<()> {
        state::note_stop_request(&self.state_dir, signal);
        let target = if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            self.pid
        } else {
            self.shim.id() as i32
        };
        kill(target, signal).map_err(|e| Error::io("signal", format!("container {}", self.id), e))
    }

    /// Waits for the container's first process to end.
    pub fn wait(mut self) -> Result<ExitStatus> {
        let st = self
            .shim
            .wait()
            .map_err(|e| Error::io("wait", format!("container {}", self.id), e))?;
        Ok(exit_of(st))
    }
}

fn exit_of(st: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => ExitStatus::Code(c),
        (None, Some(s)) => ExitStatus::Signal(s),
        (None, None) => ExitStatus::Code(125),
    }
}

fn kill(pid: i32, signal: i32) -> std::io::Result<()> {
    use kiln_sys::ProcOps;
    kiln_sys::LinuxSys.kill(pid, signal)
}

fn stdio_of(s: Stdio) -> Result<std::process::Stdio> {
    Ok(match s {
        Stdio::Inherit => std::process::Stdio::inherit(),
        Stdio::Null => std::process::Stdio::null(),
        Stdio::Fd(fd) => std::process::Stdio::from(fd),
    })
}

/// The three streams handed to the shim, plus the terminal when one was made.
type Streams = ([std::process::Stdio; 3], Option<TtyEnds>);

/// Where the caller's side of a terminal session reads and writes.
struct TtyEnds {
    input: Option<OwnedFd>,
    output: OwnedFd,
}

fn dup_fd(fd: BorrowedFd<'_>, what: &str) -> Result<OwnedFd> {
    fd.try_clone_to_owned()
        .map_err(|e| Error::io("dup", what, e))
}

impl Runtime {
    /// A runtime with this configuration.
    pub fn new(config: RuntimeConfig) -> Self {
        Self { config }
    }

    /// The configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    fn spawn(
        &self,
        role: &str,
        request: &[u8],
        stdio: [std::process::Stdio; 3],
    ) -> Result<(Child, Vec<Report>, Vec<OwnedFd>)> {
        let bin = &self.config.init_binary;
        let (status_r, status_w) =
            sysproc::socketpair().map_err(|e| Error::io("socketpair", bin, e))?;
        let (req_r, req_w) = sysproc::pipe().map_err(|e| Error::io("pipe", bin, e))?;
        // The sealed copy is close-on-exec: execve opens it by its
        // /proc/self/fd path before closing descriptors.
        let sealed = if self.config.sealed_binary {
            Some(sysproc::sealed_copy(bin).map_err(|e| Error::io("seal a copy of", bin, e))?)
        } else {
            None
        };
        let mut cmd = match &sealed {
            Some(fd) => Command::new(format!("/proc/self/fd/{}", fd.as_raw_fd())),
            None => Command::new(bin),
        };
        let [i, o, e] = stdio;
        cmd.arg(role).env_clear().stdin(i).stdout(o).stderr(e);
        sysproc::keep_fd(&mut cmd, status_w.as_raw_fd(), STATUS_FD);
        sysproc::keep_fd(&mut cmd, req_r.as_raw_fd(), REQUEST_FD);
        let child = cmd.spawn().map_err(|e| Error::Spawn {
            binary: bin.clone(),
            source: e,
        })?;
        drop(status_w);
        drop(req_r);
        let mut w = fs::File::from(req_w);
        // The shim reads the whole request before anything else; a broken
        // pipe means it died, which its reports (or their absence) tell.
        let _ = w.write_all(request);
        drop(w);
        let (reports, fds) = wire::receive(status_r);
        Ok((child, reports, fds))
    }

    fn prepare(&self, c: &LaunchConfig, detached: bool) -> Result<Vec<u8>> {
        self.prepare_with_log(c, detached, None, DetachOptions::default())
    }

    fn prepare_with_log(
        &self,
        c: &LaunchConfig,
        detached: bool,
        log: Option<&Path>,
        options: DetachOptions,
    ) -> Result<Vec<u8>> {
        let dir = &c.state_dir;
        fs::create_dir_all(dir.join("rootfs"))
            .map_err(|e| Error::io("create", dir.join("rootfs"), e))?;
        for f in [state::STATE_FILE, state::EXIT_FILE] {
            let _ = fs::remove_file(dir.join(f));
        }
        let req = RunRequest {
            id: c.id.to_string(),
            spec: {
                let mut spec = c.spec.clone();
                // A detached container has nobody on the terminal's master
                // side: its output goes to the log file instead.
                if detached && let Some(p) = spec.process_mut() {
                    p.set_terminal(Some(false));
                }
                spec
            },
            rootfs: c.rootfs.clone(),
            state_dir: dir.clone(),
            user: c.user.clone(),
            init: c.init,
            detached,
            cgroup_parent: self.config.cgroup_parent.clone(),
            cgroup_root: self.config.cgroup_root.clone(),
            log: log.map(Path::to_path_buf),
            open_stdin: detached && options.open_stdin,
        };
        let data = serde_json::to_vec(&req).map_err(|e| Error::State {
            path: dir.join(REQUEST_FILE),
            source: e,
        })?;
        fs::write(dir.join(REQUEST_FILE), &data)
            .map_err(|e| Error::io("write", dir.join(REQUEST_FILE), e))?;
        Ok(data)
    }

    /// Starts a container whose first process the caller waits for
    /// ([`Foreground::wait`]). Returns once the command was executed, or
    /// the error that prevented it (exit codes: [`Error::exit_code`]).
    pub fn start(&self, c: &LaunchConfig, stdio: StdioConfig) -> Result<Foreground> {
        let data = self.prepare(c, false)?;
        let (streams, ends) = self.streams(stdio)?;
        let (mut shim, reports, fds) = self.spawn(SHIM_ARG, &data, streams)?;
        let id = c.id.to_string();
        let pid = started(&id, reports, &mut shim)?;
        let pty = terminal(&id, ends, fds)?;
        Ok(Foreground {
            id,
            shim,
            pid,
            pty_master: pty.map(|(m, _)| m),
            state_dir: c.state_dir.clone(),
        })
    }

    fn streams(&self, stdio: StdioConfig) -> Result<Streams> {
        if !stdio.tty {
            return Ok((
                [
                    stdio_of(stdio.stdin)?,
                    stdio_of(stdio.stdout)?,
                    stdio_of(stdio.stderr)?,
                ],
                None,
            ));
        }
        // The terminal is made inside the container (its own devpts); the
        // init sends the master side back over the report socket.
        let input = match stdio.stdin {
            Stdio::Null => None,
            Stdio::Inherit => Some(dup_fd(std::io::stdin().as_fd(), "stdin")?),
            Stdio::Fd(f) => Some(f),
        };
        let output = match stdio.stdout {
            Stdio::Fd(f) => f,
            _ => dup_fd(std::io::stdout().as_fd(), "stdout")?,
        };
        let null = std::process::Stdio::null;
        Ok(([null(), null(), null()], Some(TtyEnds { input, output })))
    }

    /// Runs a container to completion in the foreground: starts it, passes
    /// on the signals the caller receives (SIGINT, SIGTERM, SIGHUP, ...),
    /// copies the terminal when `stdio.tty`, and returns how it ended.
    ///
    /// The forwarded signals are blocked in the calling thread while it
    /// runs; call it from the main thread of a program that has no other
    /// threads receiving them (a CLI before it starts an async runtime).
    pub fn run(&self, c: &LaunchConfig, stdio: StdioConfig) -> Result<ExitStatus> {
        let signals = sysproc::SigSet::of(&FORWARDED);
        let old =
            sysproc::block_signals(&signals).map_err(|e| Error::io("block signals", "run", e))?;
        let result = (|| {
            let sfd = sysproc::signalfd(&signals).map_err(|e| Error::io("signalfd", "run", e))?;
            let data = self.prepare(c, false)?;
            let (streams, ends) = self.streams(stdio)?;
            let (mut shim, reports, fds) = self.spawn(SHIM_ARG, &data, streams)?;
            let id = c.id.to_string();
            started(&id, reports, &mut shim)?;
            let pty = terminal(&id, ends, fds)?;
            forward_until_exit(&id, shim, &sfd, pty)
        })();
        let _ = sysproc::set_signal_mask(&old);
        result
    }

    /// Creates and starts a detached container: a supervisor process that
    /// outlives the caller waits for it, records its exit status in the
    /// state directory and removes its cgroup. The supervisor reads the
    /// container's stdout and stderr from two pipes and appends them to
    /// `log` as JSON lines tagged with their stream ([`crate::logfile`],
    /// Docker's `json-file` shape); stdin is `/dev/null`;
    /// `process.terminal` is ignored (no terminal: nobody would read its
    /// master side).
    pub fn start_detached(&self, c: &LaunchConfig, log: &Path) -> Result<ContainerState> {
        self.start_detached_with(c, log, DetachOptions::default())
    }

    /// [`Runtime::start_detached`] with options (`open_stdin`: the
    /// container's stdin stays open, as `docker run -d -i` keeps it).
    pub fn start_detached_with(
        &self,
        c: &LaunchConfig,
        log: &Path,
        options: DetachOptions,
    ) -> Result<ContainerState> {
        // Opened here so that an unwritable log is the caller's error.
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Error::io("open log", log, e))?;
        let log = std::path::absolute(log).map_err(|e| Error::io("resolve", log, e))?;
        let data = self.prepare_with_log(c, true, Some(&log), options)?;
        let null = std::process::Stdio::null;
        let streams = [null(), null(), null()];
        let (mut first, reports, _) = self.spawn(SHIM_ARG, &data, streams)?;
        let id = c.id.to_string();
        // `first` forks the supervisor and exits at once.
        let _ = first.wait();
        let pid = started_pid(&id, reports)?;
        let started_at = state::query(&c.state_dir).ok().and_then(|s| s.started_at);
        Ok(ContainerState {
            id,
            status: Status::Running,
            pid: Some(pid),
            exit: None,
            started_at,
            finished_at: None,
        })
    }

    /// The state of the container in `state_dir`, true even after its
    /// supervisor died (a dead init is reported exited).
    pub fn state(&self, state_dir: &Path) -> Result<ContainerState> {
        state::query(state_dir)
    }

    fn running(&self, state_dir: &Path) -> Result<StateFile> {
        let rec: Option<StateFile> = state::read_json(&state_dir.join(state::STATE_FILE))?;
        let exited = state_dir.join(state::EXIT_FILE).exists();
        match rec {
            Some(r) if !exited && state::alive(&r) => Ok(r),
            Some(r) => Err(Error::NotRunning(r.id)),
            None => Err(Error::NotRunning(state_dir.display().to_string())),
        }
    }

    /// Sends `signal` to the container's first process.
    pub fn kill(&self, state_dir: &Path, signal: i32) -> Result<()> {
        let r = self.running(state_dir)?;
        let pidfd = sysproc::pidfd_open(r.pid)
            .map_err(|e| Error::io("pidfd_open", format!("container {}", r.id), e))?;
        // The pidfd pins the process: check it is still the one recorded.
        if state::start_time(r.pid) != Some(r.pid_start) {
            return Err(Error::NotRunning(r.id));
        }
        // A stop asked for here holds: the supervisor resumes only the
        // stops it was not told of (a ptrace-stopped init).
        state::note_stop_request(state_dir, signal);
        sysproc::pidfd_send_signal(pidfd.as_fd(), signal)
            .map_err(|e| Error::io("signal", format!("container {}", r.id), e))
    }

    /// Waits until the container ended and returns its final state
    /// (`exit: None` when its supervisor died before recording the
    /// status); `Ok(None)` when `timeout` passed first.
    pub fn wait(
        &self,
        state_dir: &Path,
        timeout: Option<Duration>,
    ) -> Result<Option<ContainerState>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        if let Ok(r) = self.running(state_dir)
            && let Ok(pidfd) = sysproc::pidfd_open(r.pid)
            && state::start_time(r.pid) == Some(r.pid_start)
        {
            let ms = deadline.map_or(-1, |d| {
                d.saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(i32::MAX as u128) as i32
            });
            let ready = sysproc::poll_readable(&[pidfd.as_fd()], ms)
                .map_err(|e| Error::io("poll", state_dir, e))?;
            if !ready[0] {
                return Ok(None);
            }
        }
        // The init is gone; give its supervisor a moment to record the status.
        let grace = Instant::now() + Duration::from_secs(2);
        loop {
            let st = state::query(state_dir)?;
            if st.status != Status::Running
                && (st.exit.is_some()
                    || Instant::now() > grace
                    || !self.supervisor_alive(state_dir))
            {
                return Ok(Some(st));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn supervisor_alive(&self, state_dir: &Path) -> bool {
        let rec: Option<StateFile> = state::read_json(&state_dir.join(state::STATE_FILE))
            .ok()
            .flatten();
        rec.is_some_and(|r| Path::new(&format!("/proc/{}", r.shim_pid)).exists())
    }

    /// Stops a container: `signal` (SIGTERM or the image's StopSignal),
    /// then SIGKILL after `timeout`.
    pub fn stop(&self, state_dir: &Path, signal: i32, timeout: Duration) -> Result<ContainerState> {
        match self.kill(state_dir, signal) {
            Ok(()) => {}
            Err(Error::NotRunning(_)) => return self.state(state_dir),
            Err(e) => return Err(e),
        }
        if let Some(st) = self.wait(state_dir, Some(timeout))? {
            return Ok(st);
        }
        match self.kill(state_dir, libc::SIGKILL) {
            Ok(()) | Err(Error::NotRunning(_)) => {}
            Err(e) => return Err(e),
        }
        Ok(self
            .wait(state_dir, None)?
            .unwrap_or(self.state(state_dir)?))
    }

    /// Runs `process` inside the running container: joins its namespaces
    /// and cgroup, and runs with the container's security settings, as
    /// Docker's exec does: its capabilities, `no_new_privileges`, rlimits
    /// and seccomp profile come from the container's spec (those in
    /// `process` are ignored); its args, env, cwd and terminal are
    /// `process`'s. `user` is resolved like [`LaunchConfig::user`]
    /// (the container's when `None`). Waits for it and returns its status.
    pub fn exec(
        &self,
        state_dir: &Path,
        process: &Process,
        user: Option<&str>,
        stdio: StdioConfig,
    ) -> Result<ExitStatus> {
        let (r, data) = self.exec_request(state_dir, process, user, false)?;
        let signals = sysproc::SigSet::of(&FORWARDED);
        let old =
            sysproc::block_signals(&signals).map_err(|e| Error::io("block signals", "exec", e))?;
        let result = (|| {
            let sfd = sysproc::signalfd(&signals).map_err(|e| Error::io("signalfd", "exec", e))?;
            let (streams, ends) = self.streams(stdio)?;
            let (mut joiner, reports, fds) = self.spawn(EXEC_ARG, &data, streams)?;
            started(&r.id, reports, &mut joiner)?;
            let pty = terminal(&r.id, ends, fds)?;
            forward_until_exit(&r.id, joiner, &sfd, pty)
        })();
        let _ = sysproc::set_signal_mask(&old);
        result
    }

    /// `exec -d`: starts `process` in the running container as
    /// [`Runtime::exec`] does, without waiting for it: a process of the
    /// runtime's own (in a new session) waits for it. Its output is
    /// discarded and it gets no terminal, as with Docker's `exec -d`.
    /// Returns its host pid once it was executed.
    pub fn exec_detached(
        &self,
        state_dir: &Path,
        process: &Process,
        user: Option<&str>,
    ) -> Result<i32> {
        let mut process = process.clone();
        process.set_terminal(Some(false));
        let (r, data) = self.exec_request(state_dir, &process, user, true)?;
        let null = std::process::Stdio::null;
        let (mut first, reports, _) = self.spawn(EXEC_ARG, &data, [null(), null(), null()])?;
        // `first` forks the waiting joiner and exits at once.
        let _ = first.wait();
        started_pid(&r.id, reports)
    }

    /// The exec request for the container in `state_dir` (see [`Runtime::exec`]).
    fn exec_request(
        &self,
        state_dir: &Path,
        process: &Process,
        user: Option<&str>,
        detached: bool,
    ) -> Result<(StateFile, Vec<u8>)> {
        let r = self.running(state_dir)?;
        let run: Option<RunRequest> = state::read_json(&state_dir.join(REQUEST_FILE))?;
        let spec = run.as_ref().map(|r| &r.spec);
        let container_process = spec.and_then(|s| s.process().clone());
        let mut process = process.clone();
        // As Docker's exec: the container's security settings, whatever
        // `process` carries (oci-spec's `Process::default()` brings its own
        // capabilities, no_new_privileges and rlimits, which replaced the
        // container's: exec ran with 3 capabilities instead of Docker's 14).
        if let Some(cp) = &container_process {
            process.set_capabilities(cp.capabilities().clone());
            process.set_no_new_privileges(cp.no_new_privileges());
            process.set_rlimits(cp.rlimits().clone());
            process.set_oom_score_adj(cp.oom_score_adj());
            if process.user().additional_gids().is_none() {
                let mut user = process.user().clone();
                user.set_additional_gids(cp.user().additional_gids().clone());
                process.set_user(user);
            }
        }
        let seccomp = spec
            .and_then(|s| s.linux().as_ref())
            .and_then(|l| l.seccomp().clone());
        let req = ExecRequest {
            id: r.id.clone(),
            pid: r.pid,
            pid_start: r.pid_start,
            cgroup: r.cgroup.clone(),
            process,
            user: user
                .map(str::to_owned)
                .or_else(|| run.as_ref().and_then(|r| r.user.clone())),
            group_add: spec.map(crate::extras::group_add_of).unwrap_or_default(),
            seccomp,
            detached,
        };
        let data = serde_json::to_vec(&req).map_err(|e| Error::State {
            path: state_dir.join(REQUEST_FILE),
            source: e,
        })?;
        Ok((r, data))
    }

    /// Removes a container: with `force`, kills it first (else a running
    /// container is an error); kills leftovers in its cgroup, removes the
    /// cgroup and the state directory.
    ///
    /// Safe to call at any moment of the container's life without waiting
    /// first: it waits (up to 10 seconds) on the supervisor's pidfd until
    /// the supervisor recorded the exit and left, so nothing writes into
    /// the state directory or the cgroup while they are removed.
    pub fn delete(&self, state_dir: &Path, force: bool) -> Result<()> {
        if let Ok(r) = self.running(state_dir) {
            if !force {
                return Err(Error::Running(r.id));
            }
            let _ = self.kill(state_dir, libc::SIGKILL);
        }
        let rec: Option<StateFile> = state::read_json(&state_dir.join(state::STATE_FILE))
            .ok()
            .flatten();
        if let Some(r) = &rec {
            wait_supervisor(r, Duration::from_secs(10));
        }
        if let Some(cg) = rec.and_then(|r| r.cgroup) {
            remove_cgroup(&cg)?;
        }
        // A user-namespaced container's rootfs is mounted on the host at
        // STATE_DIR/rootfs while it runs; its supervisor unmounts it, but
        // one that was killed did not. Never recurse into a mounted rootfs.
        let rootfs = state_dir.join("rootfs");
        for _ in 0..8 {
            use kiln_sys::MountOps;
            if kiln_sys::LinuxSys.umount(&rootfs, true).is_err() {
                break;
            }
        }
        if is_mount_point(&rootfs) {
            return Err(Error::io(
                "remove",
                &rootfs,
                std::io::Error::other("still a mount point"),
            ));
        }
        match fs::remove_dir_all(state_dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", state_dir, e)),
        }
    }
}

/// Whether something is mounted on `dir` in the caller's mount namespace
/// (per `/proc/self/mountinfo`, which also shows binds of one filesystem).
fn is_mount_point(dir: &Path) -> bool {
    let Ok(dir) = fs::canonicalize(dir) else {
        return false;
    };
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|m| Path::new(&unescape_mountinfo(m)) == dir)
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Waits until the supervisor recorded in `r` has exited (its pidfd
/// becomes readable), at most `timeout`. A supervisor whose pid now belongs
/// to another process (start time differs) is already gone.
fn wait_supervisor(r: &StateFile, timeout: Duration) {
    if r.shim_pid <= 0 || r.shim_pid == sysproc::getpid() {
        return;
    }
    let Ok(pidfd) = sysproc::pidfd_open(r.shim_pid) else {
        return;
    };
    // Records written before the start time was kept (0) trust the pid.
    if r.shim_start != 0 && state::start_time(r.shim_pid) != Some(r.shim_start) {
        return;
    }
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    let _ = sysproc::poll_readable(&[pidfd.as_fd()], ms);
}

fn remove_cgroup(cg: &Cgroup) -> Result<()> {
    cg.kill_all(|p| {
        let _ = kill(p, libc::SIGKILL);
    });
    cg.remove()
}

fn started_pid(id: &str, reports: Vec<Report>) -> Result<i32> {
    let mut pid = None;
    let mut error = None;
    for r in reports {
        match r {
            Report::Started { pid: p } => pid = Some(p),
            other => error = error.or(other.into_error(id)),
        }
    }
    match (error, pid) {
        (Some(e), _) => Err(e),
        (None, Some(p)) => Ok(p),
        (None, None) => Err(Error::Setup { id: id.to_owned(), message: "the runtime init exited without starting the container (does its main call kiln_runtime::init_entry()?)".into() }),
    }
}

/// Pairs the terminal's master side (sent by the init) with the caller's
/// ends, sized like the caller's terminal.
fn terminal(
    id: &str,
    ends: Option<TtyEnds>,
    fds: Vec<OwnedFd>,
) -> Result<Option<(OwnedFd, TtyEnds)>> {
    let Some(ends) = ends else { return Ok(None) };
    let Some(master) = fds.into_iter().next() else {
        return Err(Error::Setup {
            id: id.to_owned(),
            message: "the init sent no terminal".into(),
        });
    };
    if let Some((rows, cols)) = sysproc::window_size(std::io::stdout().as_fd()) {
        let _ = sysproc::set_window_size(master.as_fd(), rows, cols);
    }
    Ok(Some((master, ends)))
}

fn started(id: &str, reports: Vec<Report>, child: &mut Child) -> Result<i32> {
    match started_pid(id, reports) {
        Ok(p) => Ok(p),
        Err(e) => {
            let _ = child.wait();
            Err(e)
        }
    }
}

/// Copies bytes from `from` to `to` once; false at end of input.
fn pump(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; 8192];
    match rustix_read(from, &mut buf) {
        Some(0) | None => false,
        Some(n) => {
            let mut f = fs::File::from(to.try_clone_to_owned().expect("dup for write"));
            f.write_all(&buf[..n]).is_ok()
        }
    }
}

fn rustix_read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Option<usize> {
    use std::io::Read;
    let mut f = fs::File::from(fd.try_clone_to_owned().ok()?);
    loop {
        match f.read(buf) {
            Ok(n) => return Some(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
}

fn forward_until_exit(
    id: &str,
    mut shim: Child,
    sfd: &OwnedFd,
    pty: Option<(OwnedFd, TtyEnds)>,
) -> Result<ExitStatus> {
    let pidfd = sysproc::pidfd_open(shim.id() as i32)
        .map_err(|e| Error::io("pidfd_open", format!("container {id}"), e))?;
    let (master, mut ends) = match pty {
        Some((m, e)) => (Some(m), Some(e)),
        None => (None, None),
    };
    let raw = ends
        .as_ref()
        .and_then(|e| e.input.as_ref())
        .filter(|i| sysproc::is_terminal(i.as_fd()))
        .and_then(|i| {
            sysproc::make_raw(i.as_fd())
                .ok()
                .map(|t| (dup_fd(i.as_fd(), "stdin"), t))
        });
    let mut master_open = master.is_some();
    loop {
        let mut fds: Vec<BorrowedFd<'_>> = vec![pidfd.as_fd(), sfd.as_fd()];
        if let (true, Some(m)) = (master_open, &master) {
            fds.push(m.as_fd());
            if let Some(i) = ends.as_ref().and_then(|e| e.input.as_ref()) {
                fds.push(i.as_fd());
            }
        }
        let ready = sysproc::poll_readable(&fds, -1)
            .map_err(|e| Error::io("poll", format!("container {id}"), e))?;
        if ready[1]
            && let Ok((sig, code)) = sysproc::read_signal(sfd.as_fd())
        {
            // A signal the terminal sent to the whole foreground process
            // group (Ctrl-C) reached the shim too: do not pass it twice.
            let from_terminal = code == libc::SI_KERNEL;
            if sig == libc::SIGWINCH
                && let (Some(m), Some((r, c))) =
                    (&master, sysproc::window_size(std::io::stdout().as_fd()))
            {
                let _ = sysproc::set_window_size(m.as_fd(), r, c);
            }
            if !from_terminal {
                let _ = kill(shim.id() as i32, sig);
            }
        }
        if fds.len() > 2 && ready[2] {
            let (Some(m), Some(e)) = (&master, &ends) else {
                break;
            };
            if !pump(m.as_fd(), e.output.as_fd()) {
                master_open = false;
            }
        }
        if fds.len() > 3 && ready[3] {
            let (Some(m), Some(e)) = (&master, &mut ends) else {
                break;
            };
            if let Some(i) = &e.input
                && !pump(i.as_fd(), m.as_fd())
            {
                e.input = None;
            }
        }
        if ready[0] && !master_open {
            break;
        }
        if ready[0] && master.is_none() {
            break;
        }
        if ready[0] {
            // Drain what the terminal still holds, then stop.
            if let (Some(m), Some(e)) = (&master, &ends) {
                while sysproc::poll_readable(&[m.as_fd()], 0)
                    .map(|r| r[0])
                    .unwrap_or(false)
                {
                    if !pump(m.as_fd(), e.output.as_fd()) {
                        break;
                    }
                }
            }
            break;
        }
    }
    if let Some((Ok(fd), saved)) = raw {
        let _ = sysproc::restore_terminal(fd.as_fd(), &saved);
    }
    let st = shim
        .wait()
        .map_err(|e| Error::io("wait", format!("container {id}"), e))?;
    Ok(exit_of(st))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_unescape_and_root_is_a_mount_point() {
        assert_eq!(unescape_mountinfo("/a\\040b\\011c"), "/a b\tc");
        assert_eq!(unescape_mountinfo("/plain\\"), "/plain\\");
        assert!(is_mount_point(Path::new("/")));
        let d = tempfile::tempdir().expect("tempdir");
        assert!(!is_mount_point(d.path()));
    }
}
