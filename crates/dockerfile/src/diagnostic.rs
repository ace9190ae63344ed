//! Diagnostics (errors and warnings with a location) and the crate's error type.

use std::fmt;

use serde::Serialize;

use crate::shell::ExpandError;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The Dockerfile is invalid.
    Error,
    /// Suspicious but accepted (empty continuation line, legacy syntax...).
    Warning,
}

/// A problem found in a Dockerfile, with its location.
///
/// Lines and columns are 1-based; columns count characters. `Display` gives
/// `line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// First line concerned.
    pub line: usize,
    /// Column on `line`.
    pub column: usize,
    /// Last line concerned (equal to `line` for one-line problems).
    pub end_line: usize,
    /// What is wrong, in BuildKit's wording where BuildKit has one.
    pub message: String,
}

impl Diagnostic {
    /// An error at `line:column`.
    pub fn error(line: usize, column: usize, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            line,
            column,
            end_line: line,
            message: message.into(),
        }
    }

    /// A warning at `line:column`.
    pub fn warning(line: usize, column: usize, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(line, column, message)
        }
    }

    /// Sets the last line concerned.
    pub fn until(mut self, end_line: usize) -> Self {
        self.end_line = end_line.max(self.line);
        self
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let warn = if self.severity == Severity::Warning {
            "warning: "
        } else {
            ""
        };
        write!(f, "{}:{}: {warn}{}", self.line, self.column, self.message)
    }
}

/// Errors of this crate's convenience entry points.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Dockerfile is invalid; every error found is listed.
    #[error("invalid dockerfile: {}", first_message(.diagnostics))]
    Invalid {
        /// The error diagnostics (at least one).
        diagnostics: Vec<Diagnostic>,
    },
    /// A word could not be expanded.
    #[error("failed to expand {word:?}")]
    Expand {
        /// The word as written.
        word: String,
        /// Why.
        #[source]
        source: ExpandError,
    },
}

fn first_message(d: &[Diagnostic]) -> String {
    match d {
        [] => "no diagnostics".to_owned(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
