//! The engine's error type: the library crates' errors as they are, kiln's
//! own messages for users, and context added on the way up.
//!
//! Displayed with `{:#}` through `anyhow` (as the CLI prints errors), an
//! [`Error`] reads as a chain `context: cause: cause`, the same text a
//! chain of `anyhow` contexts gave before the engine existed: wrapped
//! library errors are transparent (their own message and source), and
//! [`Error::Context`] adds one link.

use std::fmt::Display;

/// Everything that can make an engine operation fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The content store (blobs, records, references, locks).
    #[error(transparent)]
    Content(Box<kiln_content::Error>),
    /// Images: unpack, commit, config, archives.
    #[error(transparent)]
    Image(Box<kiln_image::Error>),
    /// A registry.
    #[error(transparent)]
    Registry(Box<kiln_registry::Error>),
    /// The container runtime.
    #[error(transparent)]
    Runtime(Box<kiln_runtime::Error>),
    /// A snapshotter.
    #[error(transparent)]
    Snapshot(Box<kiln_snapshot::Error>),
    /// Layer tars.
    #[error(transparent)]
    Layer(Box<kiln_layer::Error>),
    /// A build.
    #[error(transparent)]
    Build(Box<kiln_builder::Error>),
    /// Digests, platforms and other model values.
    #[error(transparent)]
    Model(Box<kiln_model::Error>),
    /// A runtime spec that does not build.
    #[error(transparent)]
    Spec(#[from] kiln_runtime::oci_spec::OciSpecError),
    /// An HTTP download (`ADD <url>`).
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    /// A number in an argument.
    #[error(transparent)]
    Int(#[from] std::num::ParseIntError),
    /// A decimal number in an argument.
    #[error(transparent)]
    Float(#[from] std::num::ParseFloatError),
    /// A file or system call.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// JSON that kiln reads or writes.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// An error of a trait object (the builder's backends, a fetcher).
    #[error(transparent)]
    Other(#[from] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// kiln's own message for the user.
    #[error("{0}")]
    Message(String),
    /// What was being done when `source` happened.
    #[error("{message}")]
    Context {
        /// What kiln was doing, naming what and where.
        message: String,
        /// Why it failed.
        #[source]
        source: Box<Error>,
    },
}

// The library errors are boxed: an `Error` stays small (clippy's
// `result_large_err`), whatever the largest of them.
impl From<kiln_content::Error> for Error {
    fn from(e: kiln_content::Error) -> Error {
        Error::Content(Box::new(e))
    }
}

impl From<kiln_image::Error> for Error {
    fn from(e: kiln_image::Error) -> Error {
        Error::Image(Box::new(e))
    }
}

impl From<kiln_registry::Error> for Error {
    fn from(e: kiln_registry::Error) -> Error {
        Error::Registry(Box::new(e))
    }
}

impl From<kiln_runtime::Error> for Error {
    fn from(e: kiln_runtime::Error) -> Error {
        Error::Runtime(Box::new(e))
    }
}

impl From<kiln_snapshot::Error> for Error {
    fn from(e: kiln_snapshot::Error) -> Error {
        Error::Snapshot(Box::new(e))
    }
}

impl From<kiln_layer::Error> for Error {
    fn from(e: kiln_layer::Error) -> Error {
        Error::Layer(Box::new(e))
    }
}

impl From<kiln_builder::Error> for Error {
    fn from(e: kiln_builder::Error) -> Error {
        Error::Build(Box::new(e))
    }
}

impl From<kiln_model::Error> for Error {
    fn from(e: kiln_model::Error) -> Error {
        Error::Model(Box::new(e))
    }
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error that is only a message for the user.
    pub fn msg(message: impl Display) -> Error {
        Error::Message(message.to_string())
    }

    /// This error with `message` added as what was being done.
    pub fn context(self, message: impl Display) -> Error {
        Error::Context {
            message: message.to_string(),
            source: Box::new(self),
        }
    }

    /// The first error of type `E` in this error's chain (through contexts
    /// and the wrapped library errors), e.g. to pick an exit code.
    pub fn find<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            Error::Context { source, .. } => source.find(),
            Error::Message(_) => None,
            wrapped => {
                let mut cur = Some(wrapped.innermost_wrapped());
                while let Some(e) = cur {
                    if let Some(found) = e.downcast_ref::<E>() {
                        return Some(found);
                    }
                    cur = e.source();
                }
                None
            }
        }
    }

    /// The library error this error wraps (itself for a message or context).
    fn innermost_wrapped(&self) -> &(dyn std::error::Error + 'static) {
        match self {
            Error::Content(e) => &**e,
            Error::Image(e) => &**e,
            Error::Registry(e) => &**e,
            Error::Runtime(e) => &**e,
            Error::Snapshot(e) => &**e,
            Error::Layer(e) => &**e,
            Error::Build(e) => &**e,
            Error::Io(e) => e,
            Error::Model(e) => &**e,
            Error::Spec(e) => e,
            Error::Http(e) => e,
            Error::Int(e) => e,
            Error::Float(e) => e,
            Error::Json(e) => e,
            Error::Other(e) => &**e,
            Error::Message(_) | Error::Context { .. } => self,
        }
    }
}

/// `error` and its sources joined by `: ` (what `anyhow` prints for `{:#}`),
/// for messages the engine passes on as text.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut cur = error.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// `anyhow`-style context for the engine's results: `.context("cannot
/// open x")` adds a link to the error chain.
pub trait Context<T> {
    /// Adds `message` as what was being done.
    fn context<C: Display>(self, message: C) -> Result<T>;
    /// Adds the message `f` makes (only on failure).
    fn with_context<C: Display, F: FnOnce() -> C>(self, f: F) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context<C: Display>(self, message: C) -> Result<T> {
        self.map_err(|e| Error::Context {
            message: message.to_string(),
            source: Box::new(e.into()),
        })
    }

    fn with_context<C: Display, F: FnOnce() -> C>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::Context {
            message: f().to_string(),
            source: Box::new(e.into()),
        })
    }
}

impl<T> Context<T> for Option<T> {
    fn context<C: Display>(self, message: C) -> Result<T> {
        self.ok_or_else(|| Error::msg(message))
    }

    fn with_context<C: Display, F: FnOnce() -> C>(self, f: F) -> Result<T> {
        self.ok_or_else(|| Error::msg(f()))
    }
}

/// Returns early with [`Error::Message`] made as `format!` makes strings.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::Error::msg(format!($($arg)*)))
    };
}

/// An [`Error::Message`] made as `format!` makes strings.
macro_rules! format_err {
    ($($arg:tt)*) => {
        $crate::Error::msg(format!($($arg)*))
    };
}
pub(crate) use format_err;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_reads_as_a_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e: Error = Err::<(), _>(io)
            .context("cannot read /x")
            .context("cannot load")
            .unwrap_err();
        assert_eq!(chain(&e), "cannot load: cannot read /x: no such file");
    }

    #[test]
    fn find_looks_through_contexts() {
        let e: Error = Err::<(), _>(kiln_content::Error::NoSuchImage("x".into()))
            .context("outer")
            .unwrap_err();
        assert!(e.find::<kiln_content::Error>().is_some());
        assert!(e.find::<kiln_runtime::Error>().is_none());
        let plain = Error::msg("m");
        assert!(plain.find::<kiln_content::Error>().is_none());
    }
}
