//! The crate's error type: what went wrong while building, with what it acted on.

use std::path::PathBuf;

/// An error from a backend implementation (store, snapshotter, runtime adapter).
///
/// Implementations of the crate's traits box their own error type; the builder
/// wraps it with the operation and the object it was acting on.
pub type BackendError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can make a build fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Dockerfile did not parse. Displayed as Docker's
    /// `dockerfile parse error line N: message` for the first error, then
    /// every error as `line:col: message`, one per line.
    #[error("dockerfile parse error line {line}: {first}\n{message}")]
    Parse {
        /// 1-based line of the first error.
        line: usize,
        /// The first error's message (without its location).
        first: String,
        /// Every error diagnostic, one per line (`line:col: message`).
        message: String,
    },
    /// An instruction is well-formed for the parser but not usable by the builder.
    #[error("line {line}: {message}")]
    Instruction {
        /// 1-based line of the instruction.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Variable expansion failed (for example `${X:?unset}`).
    #[error("line {line}: failed to expand {word:?}: {message}")]
    Expand {
        /// 1-based line of the instruction.
        line: usize,
        /// The word that was expanded.
        word: String,
        /// The expander's message.
        message: String,
    },
    /// `--target` names no stage.
    #[error("target stage {0:?} could not be found")]
    UnknownTarget(String),
    /// The Dockerfile has no FROM, or no image was produced.
    #[error("No image was generated. Is your Dockerfile empty?")]
    NoImage,
    /// A stage depends on itself through `FROM`, `COPY --from` or `--mount from=`.
    #[error("circular dependency between stages involving {0:?}")]
    Cycle(String),
    /// A RUN step's command exited with a non-zero status.
    #[error("The command '{command}' returned a non-zero code: {code}")]
    StepFailed {
        /// The command as Docker prints it (`/bin/sh -c false`).
        command: String,
        /// Its exit status.
        code: i32,
    },
    /// A RUN step's executable is not in its root filesystem (`RUN` on
    /// `FROM scratch`, `RUN ["/missing"]`): the container cannot start, so,
    /// as Docker's, the build fails with this error and not with the
    /// command's exit status.
    #[error("The command '{command}' could not start: unable to start container process: {reason}")]
    StepNotStarted {
        /// The command as Docker prints it (`/bin/sh -c echo hi`).
        command: String,
        /// Docker's (runc's) reason: `exec: "/bin/sh": stat /bin/sh: no such
        /// file or directory`, `exec: "x": executable file not found in $PATH`.
        reason: String,
    },
    /// A COPY/ADD source matched nothing in the context or stage (Docker's
    /// text; the step wraps it as `COPY failed: ...`, see [`Error::CopyFailed`]).
    #[error(
        "file not found in build context or excluded by .dockerignore: stat {source_path}: file does not exist"
    )]
    SourceNotFound {
        /// 1-based line of the instruction.
        line: usize,
        /// The source as written (after expansion).
        source_path: String,
    },
    /// A COPY/ADD source points outside the build context.
    #[error("line {line}: forbidden path outside the build context: {source_path}")]
    OutsideContext {
        /// 1-based line of the instruction.
        line: usize,
        /// The offending source.
        source_path: String,
    },
    /// A COPY or ADD step could not resolve its sources (Docker's
    /// `COPY failed: <why>`).
    #[error("{instruction} failed")]
    CopyFailed {
        /// `COPY` or `ADD`.
        instruction: &'static str,
        /// 1-based line of the instruction.
        line: usize,
        /// Why.
        #[source]
        error: Box<Error>,
    },
    /// `COPY --from` names neither an earlier stage nor an image that could be
    /// resolved (Docker's `invalid from flag value <value>: <why>`).
    #[error("invalid from flag value {value}: {reason}")]
    InvalidFrom {
        /// The `--from` value (expanded).
        value: String,
        /// Why it could not be used (the whole chain of causes).
        reason: String,
    },
    /// A RUN --mount=type=secret names a secret that was not provided.
    #[error("secret {0:?} not provided")]
    MissingSecret(String),
    /// A user or group name could not be resolved in the image.
    #[error("unable to find {kind} {name:?} in the image")]
    UnknownUser {
        /// `user` or `group`.
        kind: &'static str,
        /// The name looked up.
        name: String,
    },
    /// A filesystem operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done (`read`, `copy to`, ...).
        op: &'static str,
        /// The path acted on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A backend (trait implementation) failed.
    #[error("{op} {subject}")]
    Backend {
        /// The trait method that failed (`resolve image`, `commit`, ...).
        op: &'static str,
        /// What it acted on (a reference, an image id, a container id).
        subject: String,
        /// The implementation's error.
        #[source]
        source: BackendError,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn backend(
        op: &'static str,
        subject: impl Into<String>,
        source: BackendError,
    ) -> Self {
        Error::Backend {
            op,
            subject: subject.into(),
            source,
        }
    }

    /// This error and its causes, `: `-separated (as anyhow's `{:#}`).
    pub(crate) fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            out.push_str(": ");
            out.push_str(&c.to_string());
            cause = c.source();
        }
        out
    }

    pub(crate) fn instr(line: usize, message: impl Into<String>) -> Self {
        Error::Instruction {
            line,
            message: message.into(),
        }
    }
}
