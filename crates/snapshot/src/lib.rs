//! Snapshotter trait (containerd model) with overlay and copy implementations.
//!
//! A [`Snapshotter`] manages filesystem snapshots named by strings. A
//! *committed* snapshot is a frozen layer (kiln names them by chain ID); an
//! *active* snapshot, made by [`Snapshotter::prepare`], is a writable tree on
//! top of a committed parent; a *view* is a read-only one. Snapshotters only
//! **describe** how to mount a snapshot ([`Mount`]); the runtime performs the
//! mount.
//!
//! Unpacking an image is, for each layer: `prepare(tmp, parent)`, apply the
//! layer into [`Snapshotter::apply_target`], `commit(chain_id, tmp)`. Making a
//! layer from a container or build step is: write through the mounts of
//! `prepare(key, parent)`, then diff [`Snapshotter::diff_source`].
//!
//! - [`OverlaySnapshotter`]: one directory per layer shared by every user, an
//!   overlayfs mount of the chain plus an upper and work dir per active
//!   snapshot.
//! - [`CopySnapshotter`]: a full copy of the parent per snapshot, for
//!   machines without overlayfs.
//!
//! ```
//! use kiln_snapshot::{CopySnapshotter, Snapshotter};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tmp = tempfile::tempdir()?;
//! let sn = CopySnapshotter::new(tmp.path())?;
//! sn.prepare("unpack-1", None)?;
//! let target = sn.apply_target("unpack-1")?;
//! std::fs::write(target.dir.join("hello"), b"hi")?;
//! sn.commit("sha256:layer1", "unpack-1")?;
//!
//! let mounts = sn.prepare("container", Some("sha256:layer1"))?;
//! assert_eq!(mounts[0].fstype, "bind");
//! assert!(sn.remove("sha256:layer1").is_err()); // it has a child
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod copy;
mod meta;
mod overlay;
mod probe;

use std::io;
use std::path::PathBuf;

use kiln_layer::{DiffOptions, WhiteoutMode};
use kiln_model::IdMap;
use serde::{Deserialize, Serialize};

pub use copy::{CopySnapshotter, copy_tree};
pub use overlay::{MAX_LOWER_LAYERS, OverlaySnapshotter};
pub use probe::overlay_supported;

/// How to mount a snapshot. A description only: nothing here mounts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Filesystem type: `overlay` or `bind`.
    pub fstype: String,
    /// The mount source (`overlay`, or the directory to bind).
    pub source: String,
    /// Mount options, as `mount -o` takes them (`rbind`, `ro`, `lowerdir=...`).
    pub options: Vec<String>,
}

/// The state of a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Writable, made by `prepare`; can be committed.
    Active,
    /// Read-only, made by `view`.
    View,
    /// Frozen by `commit`; can be a parent.
    Committed,
}

/// What a snapshotter knows about one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    /// The key (active, view) or name (committed).
    pub name: String,
    /// The parent's name, if any.
    pub parent: Option<String>,
    /// Its state.
    pub kind: Kind,
}

/// Disk usage of a snapshot's own data (not its parents').
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes allocated on disk (hardlinked inodes counted once).
    pub size: u64,
    /// Number of inodes.
    pub inodes: u64,
}

/// Where a layer is unpacked for a prepared snapshot, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyTarget {
    /// The directory to pass to `kiln_layer::apply_layer` as root.
    pub dir: PathBuf,
    /// The whiteout form this snapshotter needs.
    pub whiteouts: WhiteoutMode,
}

/// What to diff to turn a snapshot into a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiffSource {
    /// An overlayfs upper directory ([`kiln_layer::diff_overlay_upper`]).
    OverlayUpper {
        /// The upper directory.
        upper: PathBuf,
    },
    /// A tree and the parent tree it was copied from ([`kiln_layer::diff_dirs`]).
    Dirs {
        /// The parent's tree (an empty directory when there is no parent).
        lower: PathBuf,
        /// The snapshot's tree.
        upper: PathBuf,
    },
    /// Another source whose files were written from inside a user namespace:
    /// its owners are written as the container ids `ids` maps them to
    /// ([`kiln_layer::diff_overlay_upper_mapped`], [`kiln_layer::diff_dirs_mapped`]).
    /// Made by [`DiffSource::with_id_map`]; snapshotters never return it.
    IdMapped {
        /// The `OverlayUpper` or `Dirs` source.
        source: Box<DiffSource>,
        /// Host ids → container ids.
        ids: IdMap,
    },
}

impl DiffSource {
    /// This source with its owners mapped through `ids` (replacing any map
    /// it had).
    pub fn with_id_map(self, ids: IdMap) -> DiffSource {
        let source = match self {
            Self::IdMapped { source, .. } => source,
            other => Box::new(other),
        };
        Self::IdMapped { source, ids }
    }

    /// Writes the layer tar of this change into `out` (for instance a
    /// `kiln_layer::LayerWriter`) and returns `out`.
    pub fn write_layer<W: io::Write>(&self, opts: &DiffOptions, out: W) -> kiln_layer::Result<W> {
        self.write(opts, None, out)
    }

    fn write<W: io::Write>(
        &self,
        opts: &DiffOptions,
        ids: Option<&IdMap>,
        out: W,
    ) -> kiln_layer::Result<W> {
        match (self, ids) {
            (Self::OverlayUpper { upper }, None) => {
                kiln_layer::diff_overlay_upper(upper, opts, out)
            }
            (Self::OverlayUpper { upper }, Some(ids)) => {
                kiln_layer::diff_overlay_upper_mapped(upper, opts, ids, out)
            }
            (Self::Dirs { lower, upper }, None) => kiln_layer::diff_dirs(lower, upper, opts, out),
            (Self::Dirs { lower, upper }, Some(ids)) => {
                kiln_layer::diff_dirs_mapped(lower, upper, opts, ids, out)
            }
            (Self::IdMapped { source, ids }, _) => source.write(opts, Some(ids), out),
        }
    }
}

/// The containerd snapshotter model. Keys are strings; committed layer
/// snapshots are named by chain ID. Every method is safe to call from
/// several threads and processes: metadata changes take a file lock.
pub trait Snapshotter: Send + Sync {
    /// A short name for messages and config (`overlay`, `copy`).
    fn name(&self) -> &'static str;

    /// Creates a writable snapshot `key` on top of the committed `parent`
    /// and returns how to mount it.
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>>;

    /// Creates a read-only snapshot `key` of the committed `parent`.
    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>>;

    /// Freezes the active snapshot `key` as the committed snapshot `name`;
    /// `key` no longer exists afterwards.
    fn commit(&self, name: &str, key: &str) -> Result<()>;

    /// Removes a snapshot and its data. Refused while other snapshots have it
    /// as parent.
    fn remove(&self, key: &str) -> Result<()>;

    /// How to mount an active snapshot or a view.
    fn mounts(&self, key: &str) -> Result<Vec<Mount>>;

    /// Disk usage of the snapshot's own data.
    fn usage(&self, key: &str) -> Result<Usage>;

    /// Information about one snapshot.
    fn stat(&self, key: &str) -> Result<Info>;

    /// Whether a snapshot exists.
    fn exists(&self, key: &str) -> Result<bool> {
        match self.stat(key) {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every snapshot, sorted by name.
    fn list(&self) -> Result<Vec<Info>>;

    /// Where to unpack a layer into the active snapshot `key`.
    fn apply_target(&self, key: &str) -> Result<ApplyTarget>;

    /// What to diff to make a layer of the active or committed snapshot `key`.
    fn diff_source(&self, key: &str) -> Result<DiffSource>;
}

/// Errors of the snapshotters.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path acted on.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The metadata file is not valid JSON of the expected shape.
    #[error("corrupt snapshot metadata {path}")]
    Metadata {
        /// The metadata file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// No snapshot by that key or name.
    #[error("snapshot {key} not found")]
    NotFound {
        /// The key.
        key: String,
    },
    /// A snapshot by that key or name exists already.
    #[error("snapshot {key} already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// The snapshot is not in the state the operation needs.
    #[error("snapshot {key} is {actual:?}, expected {expected}")]
    WrongKind {
        /// The key.
        key: String,
        /// Its state.
        actual: Kind,
        /// What the operation needs.
        expected: &'static str,
    },
    /// Removal refused: other snapshots are built on it.
    #[error("snapshot {key} has children: {children:?}")]
    HasChildren {
        /// The key.
        key: String,
        /// The children's keys.
        children: Vec<String>,
    },
    /// The chain under a snapshot has more layers than overlayfs stacks.
    #[error("snapshot {key} would stack {depth} lower layers; overlayfs takes at most {max}")]
    ChainTooDeep {
        /// The key.
        key: String,
        /// The number of layers below it.
        depth: usize,
        /// The limit.
        max: usize,
    },
    /// A key that cannot be stored (empty, or with a NUL byte).
    #[error("invalid snapshot key {key:?}")]
    InvalidKey {
        /// The key.
        key: String,
    },
    /// overlayfs cannot be used under this root.
    #[error("overlayfs is not usable under {root}: {reason}")]
    OverlayUnsupported {
        /// The snapshotter root probed.
        root: PathBuf,
        /// What failed.
        reason: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(op: &'static str, path: &std::path::Path) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_owned();
    move |source| Error::Io { op, path, source }
}
