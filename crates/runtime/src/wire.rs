//! What the caller and the re-executed init tell each other: the request
//! (JSON on fd 4) and reports (JSON lines on fd 3, closed on exec).

use std::io::Write;
use std::os::fd::AsFd;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use oci_spec::runtime::{LinuxSeccomp, Process, Spec};
use serde::{Deserialize, Serialize};

use crate::cgroups::Cgroup;
use crate::config::RootfsMount;
use crate::error::Error;

/// The fd number the init writes reports to.
pub(crate) const STATUS_FD: i32 = 3;
/// The fd number the init reads its request from.
pub(crate) const REQUEST_FD: i32 = 4;

/// Run a container (foreground or detached).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RunRequest {
    pub(crate) id: String,
    pub(crate) spec: Spec,
    pub(crate) rootfs: Vec<RootfsMount>,
    pub(crate) state_dir: PathBuf,
    pub(crate) user: Option<String>,
    pub(crate) init: bool,
    pub(crate) detached: bool,
    pub(crate) cgroup_parent: String,
    pub(crate) cgroup_root: PathBuf,
    /// Detached containers: the JSON-lines log the supervisor writes the
    /// container's stdout and stderr to, each entry tagged with its stream.
    #[serde(default)]
    pub(crate) log: Option<PathBuf>,
    /// Detached `-i`: the container's stdin is a pipe that the supervisor
    /// holds open (else `/dev/null`).
    #[serde(default)]
    pub(crate) open_stdin: bool,
}

/// Run a process inside a running container.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ExecRequest {
    pub(crate) id: String,
    pub(crate) pid: i32,
    pub(crate) pid_start: u64,
    pub(crate) cgroup: Option<Cgroup>,
    pub(crate) process: Process,
    pub(crate) user: Option<String>,
    /// The container's `--group-add` groups (exec gets them too, as in
    /// Docker).
    #[serde(default)]
    pub(crate) group_add: Vec<String>,
    pub(crate) seccomp: Option<LinuxSeccomp>,
    /// `exec -d`: the joiner leaves the caller (new session, one more
    /// fork) and waits for the process on its own.
    #[serde(default)]
    pub(crate) detached: bool,
}

/// Why the container's process did not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum FailKind {
    NotFound,
    NotExecutable,
    Setup,
}

/// One report line.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Report {
    /// The container's first process exists, with this host pid.
    Started { pid: i32 },
    /// The master side of the container's terminal comes attached.
    Pty,
    /// Setup or exec failed.
    Failed {
        kind: FailKind,
        command: String,
        message: String,
    },
}

impl Report {
    pub(crate) fn into_error(self, id: &str) -> Option<Error> {
        match self {
            Report::Started { .. } | Report::Pty => None,
            Report::Failed {
                kind: FailKind::NotFound,
                command,
                message,
            } => Some(Error::NotFound {
                command,
                reason: message,
            }),
            Report::Failed {
                kind: FailKind::NotExecutable,
                command,
                message,
            } => Some(Error::NotExecutable {
                command,
                reason: message,
            }),
            Report::Failed {
                kind: FailKind::Setup,
                message,
                ..
            } => Some(Error::Setup {
                id: id.to_owned(),
                message,
            }),
        }
    }
}

/// Writes one report line (a single write: atomic on a pipe).
pub(crate) fn send(fd: &OwnedFd, report: &Report) {
    if let Ok(mut line) = serde_json::to_vec(report) {
        line.push(b'\n');
        let _ = std::fs::File::from(fd.try_clone().expect("dup of the status fd")).write_all(&line);
    }
}

/// Sends a report with a file descriptor attached.
pub(crate) fn send_fd(sock: &OwnedFd, report: &Report, fd: &OwnedFd) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(report).map_err(std::io::Error::other)?;
    line.push(b'\n');
    kiln_sys::process::send_with_fd(sock.as_fd(), &line, fd.as_fd())
}

/// Reads report lines (and attached descriptors) until every writer closed
/// the socket.
pub(crate) fn receive(sock: OwnedFd) -> (Vec<Report>, Vec<OwnedFd>) {
    let mut data = Vec::new();
    let mut fds = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok((n, mut got)) = kiln_sys::process::recv_with_fds(sock.as_fd(), &mut buf) {
        fds.append(&mut got);
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&data);
    let reports = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (reports, fds)
}
