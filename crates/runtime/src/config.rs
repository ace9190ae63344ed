//! What the caller hands the runtime: the container, its root filesystem,
//! its stdio, and how it ended.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::str::FromStr;

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// How the runtime starts containers.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// The binary re-executed as the container's init and supervisor; it
    /// must call [`crate::init_entry`] first thing. Default `/proc/self/exe`.
    pub init_binary: PathBuf,
    /// The cgroup every container's cgroup is created under (`kiln`).
    pub cgroup_parent: String,
    /// Where the cgroup filesystems are mounted (`/sys/fs/cgroup`).
    pub cgroup_root: PathBuf,
    /// Execute the shim, init and exec joiner from a sealed in-memory copy
    /// of `init_binary` instead of the file itself (runc's CVE-2019-5736
    /// mitigation): then even a container process allowed to open their
    /// `/proc/PID/exe` (e.g. with `CAP_SYS_PTRACE` added) reaches only the
    /// sealed copy. Off by default: it copies the whole binary on every
    /// start (see the README for the measured cost); the processes are
    /// non-dumpable either way.
    pub sealed_binary: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            init_binary: PathBuf::from("/proc/self/exe"),
            cgroup_parent: "kiln".into(),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            sealed_binary: false,
        }
    }
}

/// A container ID: 1 to 128 characters of `[A-Za-z0-9_.-]`, not starting
/// with `.` (it names a cgroup and a directory).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContainerId(String);

impl ContainerId {
    /// The ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ContainerId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && !s.starts_with('.')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(Error::InvalidId(s.to_owned()))
        }
    }
}

impl TryFrom<String> for ContainerId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl From<ContainerId> for String {
    fn from(id: ContainerId) -> String {
        id.0
    }
}

impl std::fmt::Display for ContainerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One mount making up the root filesystem, described and not performed
/// (the shape of `kiln_snapshot::Mount`): e.g. `overlay` with
/// `lowerdir=..,upperdir=..,workdir=..`, or `bind` of a directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootfsMount {
    /// Filesystem type: `overlay`, `bind`, `tmpfs`, ...
    pub fstype: String,
    /// Source: a directory for `bind`, anything for `overlay`.
    pub source: PathBuf,
    /// Options: flags (`ro`, `rbind`, `nosuid`, ...) and data (`lowerdir=...`).
    pub options: Vec<String>,
}

impl RootfsMount {
    /// A recursive bind mount of a directory.
    pub fn bind(dir: impl Into<PathBuf>) -> Self {
        Self {
            fstype: "bind".into(),
            source: dir.into(),
            options: vec!["rbind".into()],
        }
    }
}

/// How [`crate::Runtime::start_detached_with`] starts a detached container.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetachOptions {
    /// Keep the container's stdin open (`docker run -d -i`): a pipe whose
    /// write end the supervisor holds for the container's life, so that a
    /// command reading stdin (`cat`) waits instead of reading end-of-file
    /// from `/dev/null` and exiting.
    pub open_stdin: bool,
}

/// Everything the runtime needs to run one container.
#[derive(Clone, Debug)]
pub struct LaunchConfig {
    /// The container's ID (cgroup name, default hostname).
    pub id: ContainerId,
    /// The OCI runtime spec: process, mounts, namespaces, resources.
    pub spec: Spec,
    /// The root filesystem: the first mount is mounted as `/`. When empty,
    /// `spec.root.path` is bind-mounted.
    pub rootfs: Vec<RootfsMount>,
    /// A directory owned by the runtime for this container: the rootfs
    /// mount point and the state files live here. Created if missing;
    /// [`crate::Runtime::delete`] removes it.
    pub state_dir: PathBuf,
    /// The user as Docker takes it (`name`, `uid`, `uid:gid`,
    /// `name:group`), resolved against the container's `/etc/passwd` and
    /// `/etc/group`. `None` uses `spec.process.user` as is.
    pub user: Option<String>,
    /// Run a tiny init as PID 1 that reaps zombies and forwards signals.
    pub init: bool,
}

/// Where one standard stream of the container goes.
#[derive(Debug, Default)]
pub enum Stdio {
    /// The caller's own stream.
    #[default]
    Inherit,
    /// `/dev/null`.
    Null,
    /// This file descriptor (a file, a pipe, a socket).
    Fd(OwnedFd),
}

/// The container's standard streams.
#[derive(Debug, Default)]
pub struct StdioConfig {
    /// Standard input.
    pub stdin: Stdio,
    /// Standard output.
    pub stdout: Stdio,
    /// Standard error.
    pub stderr: Stdio,
    /// Allocate a pseudo-terminal as the container's stdin, stdout and
    /// stderr; the three fields above then say where the terminal's input
    /// comes from and its output goes (`docker run -t`).
    pub tty: bool,
}

impl StdioConfig {
    /// The caller's own streams, no terminal.
    pub fn inherit() -> Self {
        Self::default()
    }
}

/// How a container's process ended, as Docker reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// Docker's exit code: the code, or 128 + the signal.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }
}
