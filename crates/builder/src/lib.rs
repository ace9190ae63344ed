//! Dockerfile to image: stage graph, cached steps, layers, through traits.
//!
//! kiln-builder turns a parsed Dockerfile ([`parse`]) and a build context
//! ([`ContextDir`]) into an image, the way `docker build` does: every
//! instruction's effect on the image config, Docker's history entries, the
//! step cache (same parent + same instruction with its flags + visible build
//! args + content checksum of COPY sources; the key is derived from the
//! typed instruction, see `key.rs`), multi-stage builds with only the stages the
//! target needs, independent stages in parallel, and the legacy progress
//! output (`Step 2/4 : RUN ...`, ` ---> Using cache`, ...) as [`Event`]s.
//!
//! It does no privileged work itself. Everything that needs root, a store or
//! a registry goes through six small traits that the caller implements:
//!
//! - [`ImageBackend`]: resolve/pull a base image, prepare a writable rootfs on
//!   an image, mount it for the builder to write into, commit it as a layer +
//!   image (or a metadata-only image), discard it, tag.
//! - [`StepRunner`]: run one RUN step's command in a container on that rootfs,
//!   its output going to an [`OutputSink`] (the builder's, forwarding it as
//!   [`Event::Output`]).
//! - [`BuildCache`]: the persistent step cache (records by parent image).
//! - [`Fetcher`] (optional): download `ADD <url>`, clone `ADD <git url>`.
//! - [`Progress`]: where the events go ([`LegacyWriter`] renders Docker's text).
//!
//! With the `testing` feature, the `fake` module has implementations for
//! tests: an in-memory cache, a backend keeping each image as a directory
//! tree and a scripted runner (this crate's own tests build over them).
//!
//! The context side (`.dockerignore`, source resolution and globs, the
//! persistent file index that avoids rehashing unchanged files, checksums,
//! copying into a mounted rootfs without escaping it) is real filesystem work
//! done here.
//!
//! ```no_run
//! use std::path::Path;
//! use kiln_builder::{BuildCache, BuildOptions, Builder, ContextDir, ImageBackend, LegacyWriter, StepRunner};
//!
//! fn build(
//!     backend: &dyn ImageBackend,
//!     runner: &dyn StepRunner,
//!     cache: &dyn BuildCache,
//! ) -> kiln_builder::Result<()> {
//!     let dockerfile = kiln_builder::parse(b"FROM busybox\nRUN echo hello > /hello.txt\nCMD [\"cat\",\"/hello.txt\"]\n")?;
//!     let context = ContextDir::open(Path::new("."), None, Some(Path::new("/var/lib/kiln/build/index/ctx")))?;
//!     let progress = LegacyWriter::new(std::io::stdout());
//!     let options = BuildOptions {
//!         tags: vec!["test/hello".into()],
//!         now: 1_764_374_400,
//!         id_seed: "random per build".into(),
//!         ..Default::default()
//!     };
//!     let outcome = Builder::new(backend, runner, cache, &progress).build(&dockerfile, &context, &options)?;
//!     assert_eq!(outcome.tags, ["test/hello:latest"]);
//!     Ok(())
//! }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod args;
mod backend;
mod cache;
mod context;
mod copy;
mod decompress;
mod dockerignore;
mod engine;
mod error;
mod graph;
mod history;
mod index;
mod key;
mod pattern;
mod perms;
mod plan;
mod progress;
mod run;
mod steps;
mod write;

pub use backend::*;
pub use cache::JsonCache;
pub use context::ContextDir;
pub use dockerignore::{DockerIgnore, DockerIgnoreError};
pub use engine::{BuildOptions, BuildOutcome, Builder, normalize_tag};
pub use error::{BackendError, Error, Result};
pub use history::rfc3339;
pub use index::FileIndex;
pub use kiln_dockerfile::instructions::Dockerfile;
pub use pattern::{Pattern, PatternError};
pub use perms::{Chmod, Owner};
pub use plan::parse;
pub use progress::*;

#[cfg(any(test, feature = "testing"))]
pub mod fake;
#[cfg(test)]
mod tests;
