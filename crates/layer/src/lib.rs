//! OCI layer tar apply and diff: whiteouts, hardlinks, xattrs, gzip/zstd, diffID in one pass.
//!
//! Two directions:
//!
//! - [`apply_layer`] unpacks a (possibly compressed) layer tar inside a root
//!   directory, streaming, computing the diffID (sha256 of the uncompressed
//!   tar) while it reads. Whiteouts are either converted to overlayfs form
//!   ([`WhiteoutMode::Overlay`]) or applied by deleting
//!   ([`WhiteoutMode::Delete`]). Every path is resolved inside the root with
//!   `openat2(RESOLVE_IN_ROOT)`, so no entry can create anything outside it.
//! - [`diff_overlay_upper`] and [`diff_dirs`] write a deterministic OCI layer
//!   tar of a change; [`LayerWriter`] hashes and compresses that tar in one pass
//!   into any [`std::io::Write`] and returns the [`LayerDigests`].
//!
//! ```
//! use kiln_layer::{apply_layer, diff_dirs, ApplyOptions, Compression, DiffOptions,
//!                  LayerWriter, WhiteoutMode};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tmp = tempfile::tempdir()?;
//! let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
//! std::fs::create_dir_all(&lower)?;
//! std::fs::create_dir_all(upper.join("etc"))?;
//! std::fs::write(upper.join("etc/motd"), b"hello\n")?;
//!
//! // Make a gzip layer of what `upper` adds to `lower`.
//! let writer = LayerWriter::new(Vec::new(), Compression::Gzip)?;
//! let writer = diff_dirs(&lower, &upper, &DiffOptions::default(), writer)?;
//! let (digests, blob) = writer.finish()?;
//! assert_eq!(digests.size, blob.len() as u64);
//!
//! // Unpack it somewhere else; the diffID is checked while reading.
//! let root = tmp.path().join("root");
//! std::fs::create_dir(&root)?;
//! let opts = ApplyOptions {
//!     whiteouts: WhiteoutMode::Delete,
//!     preserve_owners: false,
//!     expected_diff_id: Some(digests.diff_id.clone()),
//!     ..ApplyOptions::default()
//! };
//! let stats = apply_layer(blob.as_slice(), Compression::Gzip, &root, &opts)?;
//! assert_eq!(stats.diff_id, digests.diff_id);
//! assert_eq!(std::fs::read(root.join("etc/motd"))?, b"hello\n");
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod apply;
mod changes;
mod compression;
mod copy;
mod diff;
mod hash;
mod pargz;
mod pax;
mod sparse;
mod writer;

use std::io;
use std::path::PathBuf;

pub use apply::{
    ApplyOptions, ApplyStats, ExtractOptions, GUARD_INTERVAL, WhiteoutMode, apply_layer,
    apply_layer_guarded, apply_layer_skipping_devices, extract_archive,
};
pub use apply::{CopyOwner, extract_copy};
pub use changes::{Change, ChangeKind, dir_changes, overlay_changes};
pub use compression::{Compression, detect_compression};
pub use copy::{
    CopyDest, CopyError, CopyPlan, PathStat, archive_path, archive_tree, base_name, dir_name,
    link_target, plan_copy, stat_path,
};
pub use diff::{
    DiffOptions, diff_dirs, diff_dirs_mapped, diff_overlay_upper, diff_overlay_upper_mapped,
};
/// The tree type [`extract_archive`] writes into (re-exported from kiln-fs).
pub use kiln_fs::Root;
pub use writer::{LayerDigests, LayerWriter};

/// The prefix of a whiteout file name in a layer tar.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The name of the opaque-directory marker in a layer tar.
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// Errors of layer apply and diff.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation on a path failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path acted on (inside the root when applying).
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The layer stream could not be read or decompressed, or is not a valid tar.
    #[error("reading layer archive")]
    Read {
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Writing the layer to its sink failed.
    #[error("writing layer archive")]
    Write {
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An entry's path (or link target) would leave the root.
    #[error("unsafe path {path:?} in layer: {reason}")]
    UnsafePath {
        /// The path as written in the archive.
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A device node entry while devices are not allowed.
    #[error("device node {path} in layer but devices are not allowed")]
    DeviceNotAllowed {
        /// The entry's path.
        path: String,
    },
    /// An entry type that kiln does not unpack.
    #[error("unsupported tar entry type {kind:?} at {path}")]
    UnsupportedEntry {
        /// The entry's path.
        path: String,
        /// The tar type flag.
        kind: char,
    },
    /// The declared compression does not match the data's magic bytes.
    #[error("layer declared as {declared} but its data is {detected}")]
    CompressionMismatch {
        /// From the media type.
        declared: Compression,
        /// From the magic bytes.
        detected: Compression,
    },
    /// A media type that is not a known layer media type.
    #[error("unknown layer media type {media_type}")]
    UnknownMediaType {
        /// The media type.
        media_type: String,
    },
    /// An archive entry would replace an existing directory with a
    /// non-directory, or an existing non-directory with a directory
    /// ([`extract_copy`]).
    #[error("{}", overwrite_message(path, *directory))]
    Overwrite {
        /// The existing entry, relative to the extraction's root.
        path: PathBuf,
        /// Whether the existing entry is the directory.
        directory: bool,
    },
    /// The uncompressed tar does not hash to the expected diffID.
    #[error("layer diff id mismatch: expected {expected}, got {actual}")]
    DiffIdMismatch {
        /// What the caller expected.
        expected: String,
        /// What the data hashed to.
        actual: String,
    },
}

fn overwrite_message(path: &std::path::Path, directory: bool) -> String {
    let path = std::path::Path::new("/").join(path);
    if directory {
        format!(
            "cannot overwrite directory {:?} with non-directory",
            path.display().to_string()
        )
    } else {
        format!(
            "cannot overwrite non-directory {:?} with directory",
            path.display().to_string()
        )
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn sha256_digest(hasher: sha2::Sha256) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(hasher.finalize()))
}
