//! OCI distribution client for kiln: resolve references to manifests (with
//! platform selection from indexes), pull images streaming into a
//! [`kiln_content::Store`], push images, and log in.
//!
//! Speaks the distribution API itself over reqwest (with rustls: no system
//! TLS library): layers stream to disk while they are hashed, so memory
//! stays bounded whatever the layer size, and every blob is checked against
//! its digest and size before it becomes visible in the store. Manifests,
//! indexes, tokens and error bodies are read up to their size limit and no
//! further, and a registry that stops sending (or trickles) is given up on
//! after [`RegistryConfig::timeout`].
//! Registries on 127.0.0.0/8 and `localhost` are spoken to in plain HTTP, as
//! Docker does; others over HTTPS unless listed in
//! [`RegistryConfig::insecure`]. Credentials come from a Docker
//! `config.json` whose path the caller passes in.
//!
//! This crate does not unpack layers, interpret image configs beyond their
//! creation time, or print anything: progress goes to a [`Progress`].
//!
//! ```no_run
//! use kiln_content::{Reference, Store};
//! use kiln_model::Platform;
//! use kiln_registry::{NoProgress, Registry, RegistryConfig};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::open("/var/lib/kiln")?;
//! let registry = Registry::new(RegistryConfig {
//!     docker_config: Some("/root/.docker/config.json".into()),
//!     ..RegistryConfig::default()
//! });
//! let reference: Reference = "127.0.0.1:5000/busybox".parse()?;
//! let image = registry
//!     .pull(&reference, &Platform::native(), &store, &NoProgress)
//!     .await?;
//! println!("pulled {}", image.id);
//! registry
//!     .push(&"127.0.0.1:5000/copy:1".parse()?, &store, &image.id, &NoProgress)
//!     .await?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod auth;
mod client;
mod errors;
mod manifest;
mod sources;

use kiln_model::Digest;

pub use auth::{config_key, credentials, remove_login, save_login};
/// bytes, whose `Bytes` a [`Tee`] receives.
pub use bytes;
pub use client::{
    Credentials, RawDocument, Registry, RegistryConfig, Resolved, ResolvedIndex, is_not_found,
};
pub use errors::Error;
pub use manifest::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, MAX_MANIFEST_SIZE, OCI_INDEX, OCI_MANIFEST,
};
pub use sources::blob_sources;

/// Makes rustls use the ring crypto provider for the whole process (once;
/// later calls do nothing). [`Registry::new`] calls it; a program that
/// makes other reqwest clients calls it before building them.
pub fn init_tls() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // ring rather than aws-lc-rs: it builds in a fraction of the time
        // and size. rustls deprecates it for lacking post-quantum key
        // exchange (X25519MLKEM768); TLS 1.3 with X25519 stays in use.
        #[allow(deprecated)]
        let provider = rustls::crypto::ring::default_provider();
        // Fails only when a provider is installed already, which is fine.
        let _ = provider.install_default();
    });
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Receives progress of pulls and pushes, one call per event. Calls for
/// different blobs may interleave (transfers run concurrently).
pub trait Progress: Send + Sync {
    /// The manifest was resolved: the config blob `config` and `layers`
    /// layer blobs follow (a UI may want to show layers only, as Docker does).
    fn resolved(&self, _manifest: &Digest, _config: &Digest, _layers: usize) {}
    /// A blob transfer starts (`size` bytes).
    fn blob_started(&self, _digest: &Digest, _size: u64) {}
    /// `done` of `size` bytes of the blob are transferred.
    fn blob_progress(&self, _digest: &Digest, _done: u64, _size: u64) {}
    /// The blob was already there (in the store on pull, in the registry on
    /// push) and is skipped.
    fn blob_exists(&self, _digest: &Digest, _size: u64) {}
    /// On push, the registry mounted the blob from `repository` (another
    /// repository of the same registry) instead of an upload.
    fn blob_mounted(&self, _digest: &Digest, _size: u64, _repository: &str) {}
    /// The blob is transferred and verified.
    fn blob_done(&self, _digest: &Digest, _size: u64) {}
    /// The transfer failed and is retried once.
    fn blob_retry(&self, _digest: &Digest, _error: &Error) {}
}

/// What a [`Tee`] receives for one blob download attempt.
#[derive(Debug)]
pub enum TeeEvent {
    /// The next piece of the blob, in order.
    Data(bytes::Bytes),
    /// Every piece was sent and the blob is verified (digest and size) and
    /// committed to the store. A channel that closes without this event
    /// means the attempt failed.
    Verified,
}

/// Receives a copy of chosen blobs' bytes while they download, e.g. to
/// unpack a layer as it arrives instead of after the download. The copy is
/// unverified until [`TeeEvent::Verified`] arrives: a consumer must not make
/// anything it built from it visible before then.
pub trait Tee: Send + Sync {
    /// Called at each download attempt of `digest` (a retried blob is
    /// opened again); the sender to copy the pieces into, or `None` to not
    /// copy this blob. The download waits while the channel is full; a
    /// closed channel only stops the copy.
    fn open(&self, digest: &Digest) -> Option<tokio::sync::mpsc::Sender<TeeEvent>>;
}

/// A [`Progress`] that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
