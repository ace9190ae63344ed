//! Dockerfile to image: stage graph, cached steps, layers, through traits.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod backend;
mod config;
mod context;
mod dockerignore;
mod error;
mod index;
mod pattern;
mod perms;
mod progress;

pub use backend::*;
pub use config::*;
pub use context::ContextDir;
pub use dockerignore::DockerIgnore;
pub use error::{BackendError, Error, Result};
pub use index::FileIndex;
pub use pattern::{Pattern, PatternError};
pub use perms::{Chmod, Owner};
pub use progress::*;
