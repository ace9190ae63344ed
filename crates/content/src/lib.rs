//! Content-addressed blob store, image and generic records, references,
//! locking and garbage collection for kiln. Digests and platforms are
//! kiln-model's.
//!
//! A [`Store`] keeps blobs under `blobs/sha256/<hex>`. A blob is written
//! through a [`BlobWriter`] into `tmp/`, hashed as it is written, fsynced,
//! checked against the expected digest and size, and only then renamed into
//! place: no unverified blob is ever visible, and a process killed at any
//! moment leaves a consistent store. Image records ([`ImageRecord`]) map an
//! image ID (its config digest) to its manifest and tags; generic
//! [`Records`] hold other JSON state (containers, build cache entries).
//! Metadata changes take a flock ([`Store::lock`]), so several processes can
//! share one store.
//!
//! This crate does not talk to registries, unpack layers or know image
//! config formats beyond the digests a manifest points at.
//!
//! ```
//! use std::io::Write;
//! use kiln_content::{ImageRecord, Reference, Store};
//! use kiln_model::Digest;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path())?;
//!
//! // Stream a blob in; it becomes visible only once verified.
//! let config = br#"{"architecture":"amd64","os":"linux"}"#;
//! let mut w = store.blob_writer()?;
//! w.write_all(config)?;
//! let (id, size) = w.commit(Some((&Digest::of(config), config.len() as u64)))?;
//! assert_eq!(store.read_blob(&id)?, config);
//! assert_eq!(size, config.len() as u64);
//!
//! let manifest = store.write_blob(br#"{"schemaVersion":2}"#)?;
//! store.put_image(&ImageRecord::new(id, manifest, "application/vnd.oci.image.manifest.v1+json"))?;
//! store.tag_image(&"busybox".parse::<Reference>()?, &id)?;
//! assert_eq!(store.resolve_image("busybox:latest")?.id, id);
//! assert_eq!(store.resolve_image(&id.hex()[..4])?.id, id);
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod gc;
mod images;
mod owner;
mod records;
mod reference;
mod space;
mod store;

use std::path::PathBuf;

use kiln_model::Digest;

pub use gc::{DISTRIBUTION_MANIFEST_PREFIX, DiskUsage, GcReport, manifest_children};
pub use images::{ImageRecord, PARENT_ANNOTATION};
pub use owner::{Abandoned, Claim, ClaimItem, Liveness, ProcessId};
pub use records::{Record, Records};
pub use reference::{DEFAULT_REGISTRY, DEFAULT_TAG, Reference};
pub use space::{SPACE_CHECK_EVERY, SpaceReserve};
pub use store::{BlobWriter, Lease, PrehashedBlobWriter, Store, StoreLock};

/// Errors of the content store.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A digest (or another value of kiln-model) did not parse.
    #[error(transparent)]
    Model(#[from] kiln_model::Error),
    /// An image reference did not parse.
    #[error("invalid reference {input:?}: {reason}")]
    InvalidReference {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A tag whose repository is a digest algorithm (`sha256:<hex>`), which
    /// Docker refuses as ambiguous with an image ID.
    #[error("refusing to create an ambiguous tag using digest algorithm as name: {0}")]
    AmbiguousTag(String),
    /// Writing more would leave the store's filesystem with less free space
    /// than its reserve ([`SpaceReserve`]).
    #[error(
        "not enough free space on the filesystem of {}: {} free, and kiln keeps {} free (its free-space reserve)",
        path.display(),
        space::human(*available),
        space::human(*reserve)
    )]
    StoreFull {
        /// Where kiln was writing.
        path: PathBuf,
        /// Bytes free.
        available: u64,
        /// Bytes the reserve keeps free.
        reserve: u64,
    },
    /// A filesystem operation failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// The operation (e.g. `rename into place`).
        op: &'static str,
        /// The path acted on.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A JSON record could not be read or written.
    #[error("invalid json record {}", path.display())]
    Json {
        /// The record's path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// Written content hashed to something else than expected.
    #[error("blob {expected} rejected: content has digest {actual}")]
    DigestMismatch {
        /// The digest the content should have had.
        expected: Digest,
        /// What it hashed to.
        actual: Digest,
    },
    /// Written content had another size than expected.
    #[error("blob {digest} rejected: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The expected digest.
        digest: Digest,
        /// The expected size.
        expected: u64,
        /// The size written.
        actual: u64,
    },
    /// The blob is not in the store.
    #[error("blob not found: {0}")]
    BlobNotFound(Digest),
    /// No image matches what was asked for.
    #[error("no such image: {0}")]
    NoSuchImage(String),
    /// An ID prefix matches several images.
    #[error("ambiguous image id prefix {input:?}: matches {}", candidates.join(", "))]
    AmbiguousImage {
        /// The prefix given.
        input: String,
        /// Short IDs of the matching images.
        candidates: Vec<String>,
    },
    /// No record of this kind matches.
    #[error("no such {}: {input}", singular(kind))]
    NoSuchRecord {
        /// The record kind, e.g. `containers`.
        kind: String,
        /// What was given.
        input: String,
    },
    /// An ID prefix matches several records.
    #[error("ambiguous {} id prefix {input:?}: matches {}", singular(kind), candidates.join(", "))]
    AmbiguousRecord {
        /// The record kind.
        kind: String,
        /// The prefix given.
        input: String,
        /// Short IDs of the matching records.
        candidates: Vec<String>,
    },
    /// A record ID or kind is not a safe file name.
    #[error("invalid {kind} record id {id:?}")]
    InvalidRecordId {
        /// The record kind.
        kind: String,
        /// The rejected ID.
        id: String,
    },
    /// Another record already has this name.
    #[error("the {} name {name:?} is already in use by {id}", singular(kind))]
    NameInUse {
        /// The record kind.
        kind: String,
        /// The name.
        name: String,
        /// The ID of the record that has it.
        id: String,
    },
}

fn singular(kind: &str) -> &str {
    kind.strip_suffix('s').unwrap_or(kind)
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
