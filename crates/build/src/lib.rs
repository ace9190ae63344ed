//! Dockerfile to image: stage graph, cached steps, layers, through traits.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod args;
mod backend;
mod config;
mod context;
mod copy;
mod dockerignore;
mod engine;
mod error;
mod history;
mod index;
mod pattern;
mod perms;
mod plan;
mod progress;
mod run;
mod steps;

pub use backend::*;
pub use config::*;
pub use context::ContextDir;
pub use dockerignore::DockerIgnore;
pub use engine::{BuildOptions, BuildOutcome, Builder, normalize_tag};
pub use error::{BackendError, Error, Result};
pub use history::rfc3339;
pub use index::FileIndex;
pub use kiln_dockerfile::instructions::Dockerfile;
pub use pattern::{Pattern, PatternError};
pub use perms::{Chmod, Owner};
pub use plan::parse;
pub use progress::*;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;
