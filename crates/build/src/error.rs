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
    /// The Dockerfile did not parse.
    #[error("dockerfile parse error: {message}")]
    Parse {
        /// The parser's diagnostics, one per line (`line:col: message`).
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
    #[error("no image was generated: is your dockerfile empty")]
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
    /// A COPY/ADD source matched nothing in the context or stage.
    #[error("line {line}: copy source {source_path:?} not found")]
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

    pub(crate) fn instr(line: usize, message: impl Into<String>) -> Self {
        Error::Instruction {
            line,
            message: message.into(),
        }
    }
}
