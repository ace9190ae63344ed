//! The crate's error type: every variant names what was acted on (digest,
//! image, snapshot key, archive entry).

use std::io;

/// Errors from kiln-image.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A JSON document (config, manifest, index) did not parse.
    #[error("invalid {what} json")]
    InvalidJson {
        /// What was being parsed (`image config`, `manifest`, ...).
        what: &'static str,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A timestamp was not RFC 3339.
    #[error("invalid timestamp: {value}")]
    InvalidTimestamp {
        /// The text given.
        value: String,
    },
    /// A digest string (diff ID, descriptor) did not parse.
    #[error("invalid digest {value:?}")]
    InvalidDigest {
        /// The text given.
        value: String,
        /// Why.
        #[source]
        source: kiln_model::Error,
    },
    /// The content store failed.
    #[error("content store")]
    Content(#[from] kiln_content::Error),
    /// Applying or writing the layer `digest` failed.
    #[error("layer {digest}")]
    Layer {
        /// The layer blob's digest (or `new layer` while writing one).
        digest: String,
        /// The cause.
        #[source]
        source: kiln_layer::Error,
    },
    /// A snapshotter operation on `key` failed.
    #[error("snapshot {key}")]
    Snapshot {
        /// The snapshot key or name.
        key: String,
        /// The cause.
        #[source]
        source: kiln_snapshot::Error,
    },
    /// An image's manifest and config disagree on the number of layers.
    #[error("image {id}: manifest has {layers} layers but config has {diff_ids} diff ids")]
    LayerCountMismatch {
        /// The image ID.
        id: String,
        /// Layers in the manifest.
        layers: usize,
        /// Diff IDs in the config.
        diff_ids: usize,
    },
    /// A layer's media type is not one kiln can unpack.
    #[error("layer {digest} has unsupported media type {media_type}")]
    UnsupportedMediaType {
        /// The layer blob.
        digest: String,
        /// Its media type.
        media_type: String,
    },
    /// An image archive (docker-archive or OCI layout) is malformed.
    #[error("invalid image archive: {reason}")]
    InvalidArchive {
        /// What is wrong, naming the entry.
        reason: String,
    },
    /// Reading or writing an archive stream failed.
    #[error("{op} image archive")]
    Archive {
        /// What was being done (`reading`, `writing`).
        op: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An image to save has no manifest layer blob in the store.
    #[error("image {id}: blob {digest} is not in the store")]
    MissingBlob {
        /// The image ID.
        id: String,
        /// The missing blob.
        digest: String,
    },
    /// Reading a layer blob from the store failed.
    #[error("reading blob {digest}")]
    ReadBlob {
        /// The blob.
        digest: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An `import` change line was not a supported Dockerfile instruction.
    #[error("invalid change {change:?}: {reason}")]
    InvalidChange {
        /// The change as given.
        change: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// Compressing a plain layer blob for distribution failed (or the blob
    /// did not hash to its own digest).
    #[error("compressing layer {digest}")]
    Compress {
        /// The plain layer blob.
        digest: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn snap_err(key: &str) -> impl FnOnce(kiln_snapshot::Error) -> Error + '_ {
    move |source| Error::Snapshot {
        key: key.to_owned(),
        source,
    }
}

pub(crate) fn layer_err(digest: &str) -> impl FnOnce(kiln_layer::Error) -> Error + '_ {
    move |source| Error::Layer {
        digest: digest.to_owned(),
        source,
    }
}

/// Parses a `sha256:<hex>` string from a config or layer crate.
pub(crate) fn parse_digest(value: &str) -> Result<kiln_model::Digest> {
    value.parse().map_err(|source| Error::InvalidDigest {
        value: value.to_owned(),
        source,
    })
}

/// Parses an image config blob (unknown fields are kept).
pub(crate) fn parse_config(bytes: &[u8]) -> Result<kiln_model::ImageConfig> {
    kiln_model::ImageConfig::from_json(bytes).map_err(|source| Error::InvalidJson {
        what: "image config",
        source,
    })
}
