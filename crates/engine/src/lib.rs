//! kiln-engine: kiln's host library, between the library crates and any
//! front end (the `kiln` CLI today, an API server tomorrow).
//!
//! An [`Engine`] is opened from [`Options`] (the store root, the
//! snapshotter, registry settings): opening it runs the recovery pass
//! ([`recover`]) that reclaims what killed kiln processes left half made.
//! Through it a front end
//! - pulls images ([`Engine::pull`]: the pipelined pull that unpacks a
//!   layer while it downloads) and unpacks them ([`Engine::ensure_unpacked`]);
//! - builds ([`Engine::build`], or kiln-builder driven with the
//!   [`build_backend`] adapters and step cache itself);
//! - creates, runs, pauses, commits and removes containers
//!   ([`container`], [`Engine::run_container`], [`Engine::pause_container`],
//!   [`Engine::commit_container`], [`Engine::remove_container`]);
//! - removes images and prunes as Docker does ([`gc`]).
//!
//! `examples/build_and_run.rs` builds an image and runs a container of it
//! with nothing else. The engine prints nothing: notices (the snapshotter
//! chosen, leftovers it could not reclaim) go to [`Options::notice`],
//! progress to the caller's `Progress`, and failures are [`Error`]s whose
//! chain (`{:#}` through `anyhow`, or [`chain`]) names what and where. A
//! front end's `main` must call `kiln_runtime::init_entry()` first: a
//! container's init is that program run again.

#![forbid(unsafe_code)]

mod build;
pub mod build_backend;
pub mod commit;
pub mod container;
pub mod emulation;
mod engine;
mod error;
pub mod fetch;
pub mod gc;
pub mod index;
mod pause;
mod pull;
pub mod recover;
pub mod remote_cache;
mod transfer;
mod unpack;
pub mod volume;

pub use engine::{Engine, Options, SnapshotterChoice, make_volatile, rootless};
pub(crate) use error::format_err;
pub use error::{Context, Error, Result, chain};
pub use pause::FrozenForCommit;
pub use pull::{block_on, pull_pipelined};

pub use kiln_content::PARENT_ANNOTATION;
