//! The runtime's error type and the exit codes it maps to.

use std::io;
use std::path::PathBuf;

/// What can go wrong creating, running or managing a container.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A filesystem or syscall operation on a path failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// What it was done to.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Starting the runtime's init binary failed.
    #[error("spawn the runtime init {binary}: {source}")]
    Spawn {
        /// The binary re-executed as init.
        binary: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The container's command was not found (exit code 127).
    #[error("exec: \"{command}\": {reason}")]
    NotFound {
        /// The command as given.
        command: String,
        /// Docker's wording: `executable file not found in $PATH`, or
        /// `stat /x: no such file or directory`.
        reason: String,
    },
    /// The container's command could not be executed (exit code 126).
    #[error("exec: \"{command}\": {reason}")]
    NotExecutable {
        /// The command as given.
        command: String,
        /// Why, e.g. `permission denied`.
        reason: String,
    },
    /// The container's init failed while setting the container up.
    #[error("container {id}: {message}")]
    Setup {
        /// The container.
        id: String,
        /// The failing step and its cause, as reported by the init process.
        message: String,
    },
    /// A container ID with characters outside `[A-Za-z0-9_.-]` or a bad length.
    #[error("invalid container id {0:?}")]
    InvalidId(String),
    /// The spec asks for something the runtime cannot do.
    #[error("container {id}: invalid spec: {reason}")]
    InvalidSpec {
        /// The container.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A user given as `name`, `uid`, `uid:gid` or `name:group` did not resolve.
    #[error("unable to find user {user}: {reason}")]
    User {
        /// The user as given.
        user: String,
        /// Why it did not resolve.
        reason: String,
    },
    /// A `--group-add` group did not resolve.
    #[error("unable to find group {group}: {reason}")]
    Group {
        /// The group as given.
        group: String,
        /// Why it did not resolve.
        reason: String,
    },
    /// A state file could not be read or written as JSON.
    #[error("state file {path}: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The container is running (delete without force).
    #[error("container {0} is running: stop it first or force the removal")]
    Running(String),
    /// The container is not running (for kill or exec).
    #[error("container {0} is not running")]
    NotRunning(String),
    /// The seccomp profile did not compile.
    #[error("seccomp profile: {0}")]
    Seccomp(String),
}

impl Error {
    /// The exit status Docker gives for this error: 127 when the command
    /// is missing, 126 when it cannot be executed, 125 for anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NotFound { .. } => 127,
            Error::NotExecutable { .. } => 126,
            _ => 125,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// The runtime's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
