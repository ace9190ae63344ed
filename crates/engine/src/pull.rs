//! Pulling: the registry client configured from the engine's options, the
//! async bridge (a tokio runtime per call, gone before anything forks), and
//! the pipelined pull that unpacks a layer while it downloads.

use std::sync::Mutex;

use kiln_content::{ImageRecord, Reference};
use kiln_model::{Digest, Platform};
use kiln_registry::{Progress, Registry, RegistryConfig};

use crate::engine::Engine;
use crate::error::{Context as _, Error, Result};

/// Runs `fut` on a fresh tokio runtime that is gone when this returns (kiln
/// never forks while an async runtime is alive).
pub fn block_on<F: std::future::Future>(fut: F) -> Result<F::Output> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let out = rt.block_on(fut);
    rt.shutdown_background();
    Ok(out)
}

impl Engine {
    /// A registry client configured from the options (insecure registries
    /// of the flags and the config file, credentials, timeout).
    pub fn registry(&self) -> Result<Registry> {
        Ok(Registry::new(self.registry_config()?))
    }

    /// The registry client's configuration from the options.
    pub fn registry_config(&self) -> Result<RegistryConfig> {
        Ok(RegistryConfig {
            insecure: self.insecure_registries()?,
            docker_config: self.opts.docker_config.clone(),
            timeout: self.opts.registry_timeout,
            ..RegistryConfig::default()
        })
    }

    /// Pulls `reference` for `platform` and unpacks it (the lowest missing
    /// layer while it downloads, see [`pull_pipelined`]), telling
    /// `progress` about each blob.
    pub fn pull(
        &mut self,
        reference: &Reference,
        platform: &Platform,
        progress: &dyn Progress,
    ) -> Result<ImageRecord> {
        let registry = self.registry()?;
        self.pull_with(&registry, reference, platform, progress)
    }

    /// [`Engine::pull`] through a registry client the caller made.
    pub fn pull_with(
        &mut self,
        registry: &Registry,
        reference: &Reference,
        platform: &Platform,
        progress: &dyn Progress,
    ) -> Result<ImageRecord> {
        let snapshotter = self.snapshotter()?;
        let record = pull_pipelined(
            &self.store,
            snapshotter,
            self.unpack_options(),
            registry,
            reference,
            platform,
            progress,
        )?;
        self.ensure_unpacked(&record.id)?;
        Ok(record)
    }
}

/// Pulls `reference` as `Registry::pull` does, but unpacks its lowest
/// missing layer while it downloads: the download with its digest check
/// and the gunzip, diff ID check and file writes run at once, on two
/// threads, with a bounded channel between them. The snapshot is committed
/// only once both checks passed (else it is removed). Other missing layers
/// are left to `ensure_unpacked`, which unpacks them from the store.
/// [`Engine::pull`] and the build backend (a missing FROM image) pull
/// through it.
pub fn pull_pipelined(
    store: &kiln_content::Store,
    snapshotter: std::sync::Arc<dyn kiln_snapshot::Snapshotter>,
    unpack_opts: kiln_image::UnpackOptions,
    registry: &Registry,
    reference: &Reference,
    platform: &Platform,
    progress: &dyn kiln_registry::Progress,
) -> Result<ImageRecord> {
    let store = store.clone();
    block_on(async {
        let resolved = registry.resolve(reference, platform).await?;
        progress.resolved(
            &resolved.digest,
            &resolved.config.digest,
            resolved.layers.len(),
        );
        let lease = store.lease()?;
        // The (verified) config first: it names the diff IDs to check.
        let mut config_only = resolved.clone();
        config_only.layers.clear();
        registry.fetch_blobs(&config_only, &store, progress).await?;
        let mut tee = None;
        let mut unpacker = None;
        if let Some(job) = pipeline_job(&store, &*snapshotter, &resolved) {
            let (tx, rx) = tokio::sync::mpsc::channel(16);
            tee = Some(OneTee {
                digest: job.blob,
                tx: Mutex::new(Some(tx)),
            });
            let (snap, st) = (snapshotter.clone(), store.clone());
            unpacker = Some(std::thread::spawn(move || {
                let mut reader = TeeReader::new(rx);
                let label = job.layer.label.clone();
                kiln_image::unpack_layer_verified(
                    &*snap,
                    job.parent.as_deref(),
                    &job.layer,
                    &mut reader,
                    &unpack_opts,
                    Some(&st),
                    |r| r.finish(&label),
                )
            }));
        }
        let fetched = registry
            .fetch_blobs_teed(
                &resolved,
                &store,
                progress,
                tee.as_ref().map(|t| t as &dyn kiln_registry::Tee),
            )
            .await;
        // Closes the channel if the layer was never opened.
        drop(tee);
        if let Some(h) = unpacker {
            // Whatever happened there, ensure_unpacked afterwards unpacks
            // the (verified) blob from the store or reports the error.
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        fetched?;
        let record = registry.record(&resolved, &store).await?;
        drop(lease);
        Ok::<_, Error>(record)
    })?
}

/// The layer [`pull_pipelined`] unpacks while downloading.
struct PipelineJob {
    blob: Digest,
    layer: kiln_image::LayerRef,
    parent: Option<String>,
}

/// The lowest layer of `resolved` not unpacked yet, if its blob must be
/// downloaded and every layer below it is unpacked.
fn pipeline_job(
    store: &kiln_content::Store,
    snapshotter: &dyn kiln_snapshot::Snapshotter,
    resolved: &kiln_registry::Resolved,
) -> Option<PipelineJob> {
    let config =
        kiln_model::ImageConfig::from_json(&store.read_blob(&resolved.config.digest).ok()?).ok()?;
    let diff_ids: Vec<Digest> = config
        .rootfs
        .diff_ids
        .iter()
        .map(|d| d.parse().ok())
        .collect::<Option<_>>()?;
    if diff_ids.len() != resolved.layers.len() {
        return None;
    }
    let chain = kiln_image::chain_ids(&diff_ids);
    let k =
        (0..chain.len()).find(|&i| !snapshotter.exists(&chain[i].to_string()).unwrap_or(true))?;
    let layer = &resolved.layers[k];
    if store.has_blob(&layer.digest) {
        return None;
    }
    let compression = kiln_layer::Compression::from_media_type(&layer.media_type).ok()?;
    Some(PipelineJob {
        blob: layer.digest,
        layer: kiln_image::LayerRef {
            chain_id: chain[k],
            diff_id: diff_ids[k],
            compression,
            label: layer.digest.to_string(),
        },
        parent: k.checked_sub(1).map(|p| chain[p].to_string()),
    })
}

/// Copies the first download attempt of one blob into a channel.
struct OneTee {
    digest: Digest,
    tx: Mutex<Option<tokio::sync::mpsc::Sender<kiln_registry::TeeEvent>>>,
}

impl kiln_registry::Tee for OneTee {
    fn open(&self, digest: &Digest) -> Option<tokio::sync::mpsc::Sender<kiln_registry::TeeEvent>> {
        if *digest != self.digest {
            return None;
        }
        self.tx.lock().ok()?.take()
    }
}

/// Reads the pieces a [`OneTee`] receives; the end is clean only after the
/// download said the blob was verified.
struct TeeReader {
    rx: tokio::sync::mpsc::Receiver<kiln_registry::TeeEvent>,
    cur: kiln_registry::bytes::Bytes,
    verified: bool,
}

impl TeeReader {
    fn new(rx: tokio::sync::mpsc::Receiver<kiln_registry::TeeEvent>) -> TeeReader {
        TeeReader {
            rx,
            cur: kiln_registry::bytes::Bytes::new(),
            verified: false,
        }
    }

    /// Reads what is left and succeeds only if the download was verified.
    fn finish(&mut self, label: &str) -> kiln_image::Result<()> {
        std::io::copy(self, &mut std::io::sink()).map_err(|source| {
            kiln_image::Error::ReadBlob {
                digest: label.to_owned(),
                source,
            }
        })?;
        Ok(())
    }
}

impl std::io::Read for TeeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if !self.cur.is_empty() {
                let n = buf.len().min(self.cur.len());
                buf[..n].copy_from_slice(&self.cur.split_to(n));
                return Ok(n);
            }
            if self.verified {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(kiln_registry::TeeEvent::Data(b)) => self.cur = b,
                Some(kiln_registry::TeeEvent::Verified) => self.verified = true,
                None => {
                    return Err(std::io::Error::other(
                        "the download failed or was not verified",
                    ));
                }
            }
        }
    }
}
