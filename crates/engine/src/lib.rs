//! kiln-engine: kiln's host library, between the library crates and any
//! front end (the `kiln` CLI today, an API server tomorrow).
//!
//! An [`Engine`] is opened from [`Options`] (the store root, the
//! snapshotter, registry settings): opening it runs the recovery pass
//! ([`recover`]) that reclaims what killed kiln processes left half made.
//! Through it a front end pulls images ([`Engine::pull`], the pipelined
//! pull that unpacks while downloading), and more services move here from
//! the CLI step by step (build backend, containers, gc).
//!
//! The engine prints nothing: notices (the snapshotter chosen, leftovers it
//! could not reclaim) go to [`Options::notice`], progress to the caller's
//! [`kiln_registry::Progress`], and failures are [`Error`]s whose chain
//! (`{:#}` through `anyhow`) names what and where.

#![forbid(unsafe_code)]

mod build;
pub mod build_backend;
pub mod commit;
pub mod container;
mod engine;
mod error;
pub mod fetch;
pub mod gc;
mod pause;
mod pull;
pub mod recover;
pub mod remote_cache;
mod unpack;

pub use engine::{Engine, Options, SnapshotterChoice, make_volatile, rootless};
pub(crate) use error::format_err;
pub use error::{Context, Error, Result, chain};
pub use pause::FrozenForCommit;
pub use pull::{block_on, pull_pipelined};

/// The annotation of an image record naming the image it was built or
/// committed on (`docker images` hides such parents when untagged, `rmi`
/// keeps them while a child exists).
pub const PARENT_ANNOTATION: &str = "kiln.parent";
