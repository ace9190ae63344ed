//! The registry client's error type, and the context that words errors
//! with what was acted on.

use std::path::PathBuf;

use kiln_model::{Digest, Platform};

/// Errors of registry operations.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry could not be reached at all.
    #[error("cannot reach registry {registry}: {reason}")]
    Unreachable {
        /// The registry host.
        registry: String,
        /// Short cause, e.g. `connection refused`.
        reason: String,
    },
    /// The repository, tag or digest does not exist in the registry.
    #[error("image not found: {reference}")]
    NotFound {
        /// The reference asked for.
        reference: String,
    },
    /// The registry wants credentials that were not given.
    #[error(
        "authentication required by {registry} for {reference}: log in first with `kiln login {registry}`"
    )]
    LoginRequired {
        /// The registry host.
        registry: String,
        /// The reference acted on.
        reference: String,
    },
    /// The registry refused the credentials given.
    #[error(
        "access denied by {registry} for {reference}: check your credentials (`kiln login {registry}`)"
    )]
    AccessDenied {
        /// The registry host.
        registry: String,
        /// The reference acted on.
        reference: String,
    },
    /// A blob's content did not hash to its digest; nothing was kept.
    #[error("blob {digest} rejected: its content does not match the digest")]
    DigestMismatch {
        /// The digest the blob should have had.
        digest: Digest,
    },
    /// A blob ended early (or ran long) compared with its descriptor.
    #[error("blob {digest} transfer incomplete: got {got} of {expected} bytes")]
    Truncated {
        /// The blob's digest.
        digest: Digest,
        /// Bytes received.
        got: u64,
        /// Bytes the descriptor announced.
        expected: u64,
    },
    /// A manifest over the size limit (not read further than the limit).
    #[error("manifest for {reference} is too large: {} (limit 4 MiB)", size.map_or_else(|| "more than that".to_string(), |s| format!("{s} bytes")))]
    ManifestTooLarge {
        /// The reference.
        reference: String,
        /// Its size, when the registry announced it.
        size: Option<u64>,
    },
    /// Another small document (a token, an error body) over its limit.
    #[error("registry {registry} sent too large a response for {what}: {} (limit {limit} bytes)", size.map_or_else(|| "more than the limit".to_string(), |s| format!("{s} bytes")))]
    TooLarge {
        /// The registry host.
        registry: String,
        /// What was asked for.
        what: String,
        /// The announced size, if any.
        size: Option<u64>,
        /// The limit.
        limit: u64,
    },
    /// The registry stopped sending (or reading) for too long, or sent too
    /// slowly.
    #[error("registry {registry} timed out on {what}: {reason}")]
    Timeout {
        /// The registry host.
        registry: String,
        /// The manifest or blob (with its reference or digest).
        what: String,
        /// What happened, e.g. `nothing received for 30 s`.
        reason: String,
    },
    /// A manifest of a media type kiln does not handle.
    #[error("unsupported manifest media type {media_type:?} for {reference}")]
    UnsupportedMediaType {
        /// The reference.
        reference: String,
        /// The media type found.
        media_type: String,
    },
    /// A manifest that is not valid JSON of the expected shape.
    #[error("invalid manifest for {reference}: {reason}")]
    InvalidManifest {
        /// The reference.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// No index entry matches the wanted platform.
    #[error("no matching manifest for {wanted} in {reference}; available platforms: {}", if available.is_empty() { "none".to_string() } else { available.join(", ") })]
    NoMatchingPlatform {
        /// The reference.
        reference: String,
        /// The platform asked for (boxed: it is larger than the other
        /// variants).
        wanted: Box<Platform>,
        /// The platforms the index offers.
        available: Vec<String>,
    },
    /// The image to push is not in the store.
    #[error("no such image: {0}")]
    NoSuchImage(String),
    /// Any other failure reported by the registry or the HTTP layer.
    #[error("registry {registry} failed on {reference}: {message}")]
    Registry {
        /// The registry host.
        registry: String,
        /// The reference acted on.
        reference: String,
        /// What went wrong (the registry's error codes and messages, or the
        /// connection's failure).
        message: String,
    },
    /// The Docker config file could not be read or written.
    #[error("docker config {}: {reason}", path.display())]
    DockerConfig {
        /// Its path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A content store operation failed.
    #[error(transparent)]
    Store(#[from] kiln_content::Error),
    /// A local file operation failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// The operation.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What an operation was acting on, to word errors.
pub(crate) struct Ctx<'a> {
    pub(crate) registry: &'a str,
    pub(crate) reference: String,
    pub(crate) has_credentials: bool,
}

pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    let mut io_kind = None;
    while let Some(next) = cur.source() {
        if let Some(io) = next.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        cur = next;
    }
    match io_kind {
        Some(std::io::ErrorKind::ConnectionRefused) => "connection refused".into(),
        Some(std::io::ErrorKind::ConnectionReset) => "connection reset".into(),
        Some(std::io::ErrorKind::TimedOut) => "timed out".into(),
        _ => cur.to_string(),
    }
}

impl Ctx<'_> {
    pub(crate) fn unauthorized(&self) -> Error {
        if self.has_credentials {
            Error::AccessDenied {
                registry: self.registry.to_string(),
                reference: self.reference.clone(),
            }
        } else {
            Error::LoginRequired {
                registry: self.registry.to_string(),
                reference: self.reference.clone(),
            }
        }
    }

    pub(crate) fn not_found(&self) -> Error {
        Error::NotFound {
            reference: self.reference.clone(),
        }
    }
}
