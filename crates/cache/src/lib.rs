//! kiln-cache: a build's step cache shared between machines through any OCI
//! registry or an OCI image layout directory — `kiln build --cache-to` and
//! `--cache-from`, in buildx's syntax.
//!
//! A cache is one OCI image index ([`index`]): each entry is the image a
//! step made, annotated with the step's record (parent image, cache key,
//! what explains a miss). Reading a cache costs one document; a step that
//! hits fetches only its own image, verified blob by blob, checked to be
//! its parent plus that one step ([`Host::adopt`] then unpacks it, checking
//! diffIDs). Anything wrong with an entry is a warning and a miss. What a
//! step's layer holds is trusted to whoever can write the cache reference
//! (it cannot be checked without running the step). [`RemoteCache`] is the
//! builder's [`kiln_builder::BuildCache`] over a local cache and the
//! sources; [`RemoteCache::export`] writes the steps the build used.

#![forbid(unsafe_code)]

mod blobs;
mod classic;
mod export;
pub mod index;
mod layered;
mod source;
pub mod spec;

pub use export::{ExportReport, select};
pub use layered::{Host, RemoteCache, Source};
pub use spec::{CacheFrom, CacheTo, Location, Mode, parse_cache_from, parse_cache_to};

/// What can go wrong with a cache as a whole (entries that fail are
/// warnings, not errors).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A `--cache-to`/`--cache-from` value kiln cannot use.
    #[error("invalid {flag} value {value:?}: {reason}")]
    Spec {
        /// The flag.
        flag: String,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A cache index that is not what kiln writes.
    #[error("invalid cache index: {reason}")]
    InvalidIndex {
        /// What is wrong.
        reason: String,
    },
    /// Writing the cache failed.
    #[error("cannot export the build cache to {location}: {reason}")]
    Export {
        /// Where to.
        location: String,
        /// What failed.
        reason: String,
    },
}
