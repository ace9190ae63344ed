//! The `Registry` client: resolve, pull into the store, push from it, login.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use kiln_content::{BlobWriter, Digest, ImageRecord, Platform, Reference, Store};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};
use tracing::{Instrument, debug, info_span};

use crate::errors::Ctx;
use crate::manifest::{self, ACCEPTED, Descriptor, ParseError, Parsed};
use crate::{Error, Progress, Result, auth};

/// How the registry client behaves. Plain data; `Default` gives Docker's
/// behaviour (3 concurrent downloads, no insecure registries, no
/// credentials file).
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Registries (`host` or `host:port`) to speak plain HTTP to, in
    /// addition to 127.0.0.0/8, `::1` and `localhost`, which always use it.
    pub insecure: Vec<String>,
    /// Path of a Docker `config.json` to read credentials from.
    pub docker_config: Option<PathBuf>,
    /// Blobs downloaded at once during a pull.
    pub max_concurrent_downloads: usize,
    /// Blobs uploaded at once during a push.
    pub max_concurrent_uploads: usize,
    /// Size of each piece fed to a chunked upload (several MiB: small
    /// pieces make pushes crawl).
    pub upload_chunk_size: usize,
    /// Upload each blob in one streamed `PUT` instead of a series of
    /// `PATCH` requests of `upload_chunk_size` bytes. Fewer round trips;
    /// off by default because some registries limit request sizes.
    pub monolithic_push: bool,
    /// TCP connect timeout.
    pub connect_timeout: Option<Duration>,
    /// Timeout between two reads of a response.
    pub read_timeout: Option<Duration>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure: Vec::new(),
            docker_config: None,
            max_concurrent_downloads: 3,
            max_concurrent_uploads: 3,
            upload_chunk_size: 8 * 1024 * 1024,
            monolithic_push: false,
            connect_timeout: Some(Duration::from_secs(30)),
            read_timeout: Some(Duration::from_secs(120)),
        }
    }
}

/// The index a reference pointed at, when it pointed at one.
#[derive(Clone, Debug)]
pub struct ResolvedIndex {
    /// Digest of the index.
    pub digest: Digest,
    /// Its media type (OCI index or Docker manifest list).
    pub media_type: String,
    /// Its raw bytes.
    pub bytes: Vec<u8>,
}

/// A reference resolved to one image manifest.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The reference resolved.
    pub reference: Reference,
    /// Digest of the image manifest.
    pub digest: Digest,
    /// Media type of the image manifest.
    pub media_type: String,
    /// Raw bytes of the image manifest (its digest is over these).
    pub manifest: Vec<u8>,
    /// The config blob.
    pub config: Descriptor,
    /// The layer blobs, base first.
    pub layers: Vec<Descriptor>,
    /// The index the reference named, if it named one.
    pub index: Option<ResolvedIndex>,
    /// The platform of the chosen index entry, if chosen from an index.
    pub platform: Option<Platform>,
}

impl Resolved {
    /// The digest a user would pull by: the index's when there is one,
    /// otherwise the manifest's (Docker's RepoDigest).
    pub fn repo_digest(&self) -> Digest {
        self.index.as_ref().map_or(self.digest, |i| i.digest)
    }
}

/// An OCI distribution client. Cheap to share (`&Registry` across tasks).
pub struct Registry {
    config: RegistryConfig,
    clients: Mutex<HashMap<String, Client>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("config", &self.config)
            .finish()
    }
}

/// Whether `registry` (`host[:port]`) is spoken to in plain HTTP by default.
pub(crate) fn is_local(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, _)| h)
    };
    if host == "localhost" {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => v6.is_loopback(),
        Err(_) => false,
    }
}

fn to_oci(r: &Reference) -> oci_client::Reference {
    let (reg, repo) = (r.registry().to_string(), r.repository().to_string());
    match (r.tag(), r.digest()) {
        (Some(t), Some(d)) => {
            oci_client::Reference::with_tag_and_digest(reg, repo, t.into(), d.to_string())
        }
        (None, Some(d)) => oci_client::Reference::with_digest(reg, repo, d.to_string()),
        (Some(t), None) => oci_client::Reference::with_tag(reg, repo, t.into()),
        (None, None) => oci_client::Reference::with_tag(reg, repo, "latest".into()),
    }
}

fn by_digest(r: &Reference, d: &Digest) -> oci_client::Reference {
    oci_client::Reference::with_digest(r.registry().into(), r.repository().into(), d.to_string())
}

fn oci_descriptor(d: &Descriptor) -> OciDescriptor {
    OciDescriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.to_string(),
        size: i64::try_from(d.size).unwrap_or(i64::MAX),
        ..Default::default()
    }
}

/// Runs a blocking store operation off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Outcome of one download attempt.
enum Attempt {
    Done,
    Retry(Error),
    Fail(Error),
}

impl Registry {
    /// A client with `config`.
    pub fn new(config: RegistryConfig) -> Registry {
        Registry {
            config,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    fn uses_http(&self, registry: &str) -> bool {
        let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
        is_local(registry)
            || self
                .config
                .insecure
                .iter()
                .any(|i| i == registry || i == host)
    }

    fn new_client(&self, registry: &str) -> Client {
        let protocol = if self.uses_http(registry) {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        Client::new(ClientConfig {
            protocol,
            connect_timeout: self.config.connect_timeout,
            read_timeout: self.config.read_timeout,
            user_agent: concat!("kiln/", env!("CARGO_PKG_VERSION")),
            use_monolithic_push: self.config.monolithic_push,
            ..ClientConfig::default()
        })
    }

    /// The client for `r`'s registry with its credentials stored in it, and
    /// whether credentials were found.
    async fn session(&self, r: &Reference) -> Result<(Client, RegistryAuth)> {
        let registry = r.registry().to_string();
        let client = {
            let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
            clients
                .entry(registry.clone())
                .or_insert_with(|| self.new_client(&registry))
                .clone()
        };
        let cfg = self.config.docker_config.clone();
        let reg = registry.clone();
        let auth = blocking(move || auth::credentials(cfg.as_deref(), &reg)).await?;
        let oref = to_oci(r);
        client
            .store_auth_if_needed(oref.resolve_registry(), &auth)
            .await;
        Ok((client, auth))
    }

    fn ctx<'a>(r: &'a Reference, auth: &RegistryAuth) -> Ctx<'a> {
        Ctx {
            registry: r.registry(),
            reference: r.familiar(),
            has_credentials: !matches!(auth, RegistryAuth::Anonymous),
        }
    }

    async fn fetch_manifest(
        &self,
        client: &Client,
        auth: &RegistryAuth,
        r: &Reference,
        oref: &oci_client::Reference,
        want: Option<&Digest>,
    ) -> Result<(Vec<u8>, Digest, Parsed)> {
        let ctx = Self::ctx(r, auth);
        let (body, _) = client
            .pull_manifest_raw(oref, auth, ACCEPTED)
            .await
            .map_err(|e| match e {
                OciDistributionError::DigestError(_) => Error::InvalidManifest {
                    reference: r.familiar(),
                    reason: "manifest does not match its digest".into(),
                },
                e => ctx.map(e),
            })?;
        let digest = Digest::of(&body);
        if let Some(w) = want
            && *w != digest
        {
            return Err(Error::InvalidManifest {
                reference: r.familiar(),
                reason: format!("manifest has digest {digest}, expected {w}"),
            });
        }
        let parsed = manifest::parse(&body, None).map_err(|e| match e {
            ParseError::TooLarge(size) => Error::ManifestTooLarge {
                reference: r.familiar(),
                size,
            },
            ParseError::UnsupportedMediaType(media_type) => Error::UnsupportedMediaType {
                reference: r.familiar(),
                media_type,
            },
            ParseError::Invalid(reason) => Error::InvalidManifest {
                reference: r.familiar(),
                reason,
            },
        })?;
        Ok((body.to_vec(), digest, parsed))
    }

    /// Resolves `reference` to one image manifest, choosing the entry for
    /// `platform` when it names an index or manifest list.
    pub async fn resolve(&self, reference: &Reference, platform: &Platform) -> Result<Resolved> {
        let (client, auth) = self.session(reference).await?;
        let oref = to_oci(reference);
        let (bytes, digest, parsed) = self
            .fetch_manifest(&client, &auth, reference, &oref, reference.digest())
            .await?;
        match parsed {
            Parsed::Image {
                media_type,
                config,
                layers,
            } => Ok(Resolved {
                reference: reference.clone(),
                digest,
                media_type,
                manifest: bytes,
                config,
                layers,
                index: None,
                platform: None,
            }),
            Parsed::Index {
                media_type: index_type,
                entries,
            } => {
                let entry = manifest::select(&entries, platform).map_err(|available| {
                    Error::NoMatchingPlatform {
                        reference: reference.familiar(),
                        wanted: platform.clone(),
                        available,
                    }
                })?;
                let child = entry.descriptor.digest;
                let (mbytes, mdigest, mparsed) = self
                    .fetch_manifest(
                        &client,
                        &auth,
                        reference,
                        &by_digest(reference, &child),
                        Some(&child),
                    )
                    .await?;
                let Parsed::Image {
                    media_type,
                    config,
                    layers,
                } = mparsed
                else {
                    return Err(Error::InvalidManifest {
                        reference: reference.familiar(),
                        reason: format!("index entry {child} is itself an index"),
                    });
                };
                Ok(Resolved {
                    reference: reference.clone(),
                    digest: mdigest,
                    media_type,
                    manifest: mbytes,
                    config,
                    layers,
                    index: Some(ResolvedIndex {
                        digest,
                        media_type: index_type,
                        bytes,
                    }),
                    platform: entry.platform.clone(),
                })
            }
        }
    }

    /// Pulls `reference` for `platform` into `store`: config and layers are
    /// streamed into verified blobs (several at once, skipping blobs the
    /// store has), the raw manifest (and index) are stored, and the image is
    /// recorded with its tag and repository digest. Returns the record.
    pub async fn pull(
        &self,
        reference: &Reference,
        platform: &Platform,
        store: &Store,
        progress: &dyn Progress,
    ) -> Result<ImageRecord> {
        let span = info_span!("pull", image = %reference);
        async move {
            let resolved = self.resolve(reference, platform).await?;
            progress.resolved(&resolved.digest, resolved.layers.len());
            let s = store.clone();
            let lease = blocking(move || s.lease()).await?;
            self.fetch_blobs(&resolved, store, progress).await?;
            let record = self.record(&resolved, store).await?;
            drop(lease);
            Ok(record)
        }
        .instrument(span)
        .await
    }

    /// Downloads the config and layers of `resolved` into `store` (those
    /// not there yet), verifying each. Hold a [`kiln_content::Lease`] around
    /// it if the image is recorded later.
    pub async fn fetch_blobs(
        &self,
        resolved: &Resolved,
        store: &Store,
        progress: &dyn Progress,
    ) -> Result<()> {
        let (client, auth) = self.session(&resolved.reference).await?;
        let mut wanted: Vec<&Descriptor> = Vec::new();
        for d in std::iter::once(&resolved.config).chain(&resolved.layers) {
            if wanted.iter().any(|w| w.digest == d.digest) {
                continue;
            }
            if store.has_blob(&d.digest) {
                progress.blob_exists(&d.digest, d.size);
            } else {
                wanted.push(d);
            }
        }
        let n = self.config.max_concurrent_downloads.max(1);
        // On the first failure the other transfers stop at their next piece;
        // all are awaited (none is dropped mid-commit), so when this returns
        // no temporary file of this pull is left behind.
        let abort = AtomicBool::new(false);
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        stream::iter(wanted)
            .for_each_concurrent(n, |d| {
                let (client, auth, abort, first_error) = (&client, &auth, &abort, &first_error);
                async move {
                    if abort.load(Ordering::Relaxed) {
                        return;
                    }
                    let res = self
                        .fetch_blob(client, auth, &resolved.reference, d, store, progress, abort)
                        .await;
                    if let Err(e) = res {
                        abort.store(true, Ordering::Relaxed);
                        first_error
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert(e);
                    }
                }
            })
            .await;
        match first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn fetch_blob(
        &self,
        client: &Client,
        auth: &RegistryAuth,
        r: &Reference,
        d: &Descriptor,
        store: &Store,
        progress: &dyn Progress,
        abort: &AtomicBool,
    ) -> Result<()> {
        progress.blob_started(&d.digest, d.size);
        match self
            .fetch_once(client, auth, r, d, store, progress, abort)
            .await
        {
            Attempt::Done => {}
            Attempt::Fail(e) => return Err(e),
            Attempt::Retry(e) if abort.load(Ordering::Relaxed) => return Err(e),
            Attempt::Retry(e) => {
                debug!(digest = %d.digest, error = %e, "retrying blob");
                progress.blob_retry(&d.digest, &e);
                match self
                    .fetch_once(client, auth, r, d, store, progress, abort)
                    .await
                {
                    Attempt::Done => {}
                    Attempt::Fail(e) | Attempt::Retry(e) => return Err(e),
                }
            }
        }
        progress.blob_done(&d.digest, d.size);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn fetch_once(
        &self,
        client: &Client,
        auth: &RegistryAuth,
        r: &Reference,
        d: &Descriptor,
        store: &Store,
        progress: &dyn Progress,
        abort: &AtomicBool,
    ) -> Attempt {
        let ctx = Self::ctx(r, auth);
        let mut body = match client
            .pull_blob_stream(&by_digest(r, &d.digest), &oci_descriptor(d))
            .await
        {
            Ok(s) => s,
            Err(e) => {
                return match ctx.map(e) {
                    e @ Error::Registry { .. } => Attempt::Retry(e),
                    e => Attempt::Fail(e),
                };
            }
        };
        let s = store.clone();
        let mut writer: BlobWriter = match blocking(move || s.blob_writer()).await {
            Ok(w) => w,
            Err(e) => return Attempt::Fail(e.into()),
        };
        let mut got: u64 = 0;
        let mut stream_failed = false;
        while let Some(item) = body.stream.next().await {
            if abort.load(Ordering::Relaxed) {
                // Another blob failed; the writer's drop removes our file.
                return Attempt::Fail(Error::Truncated {
                    digest: d.digest,
                    got,
                    expected: d.size,
                });
            }
            let chunk: Bytes = match item {
                Ok(c) => c,
                Err(e) => {
                    debug!(digest = %d.digest, error = %e, "blob stream ended with an error");
                    stream_failed = true;
                    break;
                }
            };
            got += chunk.len() as u64;
            if got > d.size {
                // Longer than announced: not the blob we asked for.
                return Attempt::Fail(Error::DigestMismatch { digest: d.digest });
            }
            if let Err(e) = writer.write_all(&chunk) {
                return Attempt::Fail(Error::Io {
                    op: "write blob",
                    path: store.root().join("tmp"),
                    source: e,
                });
            }
            progress.blob_progress(&d.digest, got, d.size);
        }
        if got < d.size {
            // Dropping the writer deletes the partial temporary file.
            return Attempt::Retry(Error::Truncated {
                digest: d.digest,
                got,
                expected: d.size,
            });
        }
        let (want, size) = (d.digest, d.size);
        match blocking(move || writer.commit(Some((&want, size)))).await {
            Ok(_) => {
                if stream_failed {
                    debug!(digest = %d.digest, "stream error after a complete, verified blob");
                }
                Attempt::Done
            }
            Err(
                kiln_content::Error::DigestMismatch { .. }
                | kiln_content::Error::SizeMismatch { .. },
            ) => Attempt::Fail(Error::DigestMismatch { digest: d.digest }),
            Err(e) => Attempt::Fail(e.into()),
        }
    }

    /// Stores the manifest (and index) of `resolved` and records the image
    /// (tag and repository digest of its reference). Its blobs must be in
    /// the store already.
    pub async fn record(&self, resolved: &Resolved, store: &Store) -> Result<ImageRecord> {
        let resolved = resolved.clone();
        let store = store.clone();
        blocking(move || {
            let size = resolved.manifest.len() as u64;
            store.copy_blob(&mut &resolved.manifest[..], Some((&resolved.digest, size)))?;
            if let Some(ix) = &resolved.index {
                store.copy_blob(
                    &mut &ix.bytes[..],
                    Some((&ix.digest, ix.bytes.len() as u64)),
                )?;
            }
            let config = store.read_blob(&resolved.config.digest)?;
            let created = serde_json::from_slice::<serde_json::Value>(&config)
                .ok()
                .and_then(|v| v.get("created")?.as_str().map(str::to_string));
            let mut rec = ImageRecord::new(
                resolved.config.digest,
                resolved.digest,
                &resolved.media_type,
            );
            rec.created = created;
            rec.size = resolved.config.size + resolved.layers.iter().map(|l| l.size).sum::<u64>();
            let r = &resolved.reference;
            if r.tag().is_some() {
                rec.repo_tags.push(r.familiar_tagged());
            }
            rec.repo_digests
                .push(r.familiar_digested(&resolved.repo_digest()));
            if let Some(p) = &resolved.platform {
                rec.annotations
                    .insert("kiln.platform".into(), p.to_string());
            }
            if let Some(ix) = &resolved.index {
                rec.annotations
                    .insert("kiln.index".into(), ix.digest.to_string());
            }
            store.put_image(&rec)?;
            Ok(store
                .get_image(&rec.id)?
                .expect("the record was just written under the store lock"))
        })
        .await
    }

    /// Pushes image `id` from `store` as `reference`: each layer and the
    /// config are uploaded unless the registry has them (HEAD first), in
    /// pieces of [`RegistryConfig::upload_chunk_size`], then the manifest.
    /// Records the repository digest in the store and returns the manifest
    /// digest.
    pub async fn push(
        &self,
        reference: &Reference,
        store: &Store,
        id: &Digest,
        progress: &dyn Progress,
    ) -> Result<Digest> {
        let span = info_span!("push", image = %reference, id = %id);
        async move {
            let s = store.clone();
            let idc = *id;
            let record = blocking(move || s.get_image(&idc))
                .await?
                .ok_or_else(|| Error::NoSuchImage(id.to_string()))?;
            let manifest = store.read_blob(&record.manifest_digest)?;
            let parsed =
                manifest::parse(&manifest, Some(&record.manifest_media_type)).map_err(|e| {
                    Error::InvalidManifest {
                        reference: reference.familiar(),
                        reason: format!("{e:?}"),
                    }
                })?;
            let Parsed::Image {
                media_type,
                config,
                layers,
            } = parsed
            else {
                return Err(Error::InvalidManifest {
                    reference: reference.familiar(),
                    reason: "stored manifest is an index".into(),
                });
            };
            progress.resolved(&record.manifest_digest, layers.len());
            let (client, auth) = self.session(reference).await?;
            let oref = to_oci(reference);
            let ctx = Self::ctx(reference, &auth);
            // Authenticate for push once before running uploads concurrently.
            client
                .auth(&oref, &auth, RegistryOperation::Push)
                .await
                .map_err(|e| ctx.map(e))?;
            let mut blobs: Vec<Descriptor> = Vec::new();
            for d in layers.iter().chain(std::iter::once(&config)) {
                if !blobs.iter().any(|b| b.digest == d.digest) {
                    blobs.push(d.clone());
                }
            }
            let n = self.config.max_concurrent_uploads.max(1);
            stream::iter(blobs.iter().map(Ok::<_, Error>))
                .try_for_each_concurrent(n, |d| {
                    self.push_blob(&client, &ctx, &oref, d, store, progress)
                })
                .await?;
            let content_type = media_type.parse().map_err(|_| Error::InvalidManifest {
                reference: reference.familiar(),
                reason: format!("media type {media_type:?} is not a valid header"),
            })?;
            client
                .push_manifest_raw(&oref, manifest.clone(), content_type)
                .await
                .map_err(|e| ctx.map(e))?;
            let digest = Digest::of(&manifest);
            let (s, r, idc) = (store.clone(), reference.clone(), *id);
            blocking(move || s.add_repo_digest(&r, &digest, &idc)).await?;
            Ok(digest)
        }
        .instrument(span)
        .await
    }

    async fn push_blob(
        &self,
        client: &Client,
        ctx: &Ctx<'_>,
        oref: &oci_client::Reference,
        d: &Descriptor,
        store: &Store,
        progress: &dyn Progress,
    ) -> Result<()> {
        let digest = d.digest.to_string();
        if client
            .blob_exists(oref, &digest)
            .await
            .map_err(|e| ctx.map(e))?
        {
            progress.blob_exists(&d.digest, d.size);
            return Ok(());
        }
        progress.blob_started(&d.digest, d.size);
        let path = store.blob_path(&d.digest);
        let file = std::fs::File::open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Store(kiln_content::Error::BlobNotFound(d.digest))
            } else {
                Error::Io {
                    op: "open",
                    path: path.clone(),
                    source: e,
                }
            }
        })?;
        let chunk = self.config.upload_chunk_size.max(64 * 1024);
        let body = chunks(file, chunk, path.clone());
        // Progress is reported per piece as it is read for sending.
        let total = d.size;
        let dg = d.digest;
        let mut sent = 0u64;
        let progress_stream = body.inspect(move |item| {
            if let Ok(b) = item {
                sent += b.len() as u64;
                debug!(digest = %dg, sent, total, "upload piece");
            }
        });
        client
            .push_blob_stream(oref, progress_stream, &digest, Some(d.size))
            .await
            .map_err(|e| ctx.map(e))?;
        progress.blob_progress(&d.digest, d.size, d.size);
        progress.blob_done(&d.digest, d.size);
        Ok(())
    }

    /// Checks `username`/`password` against `registry` (a host) and, when
    /// accepted, saves them in the Docker config at `docker_config`.
    pub async fn login(
        &self,
        registry: &str,
        username: &str,
        password: &str,
        docker_config: &Path,
    ) -> Result<()> {
        let probe: Reference = format!("{registry}/kiln-login-probe")
            .parse()
            .map_err(Error::Store)?;
        let client = self.new_client(registry);
        let auth = RegistryAuth::Basic(username.into(), password.into());
        let ctx = Self::ctx(&probe, &auth);
        let ctx = Ctx {
            reference: registry.to_string(),
            ..ctx
        };
        let oref = to_oci(&probe);
        // Token registries check the credentials when handing out a token;
        // basic-auth registries only on a request, so probe the catalog.
        let token = client
            .auth(&oref, &auth, RegistryOperation::Pull)
            .await
            .map_err(|e| ctx.map(e))?;
        if token.is_none()
            && let Err(e) = client.catalog(&oref, &auth, Some(1), None).await
        {
            let e = ctx.map(e);
            // A registry without a catalog endpoint still accepted us; only
            // refusals and unreachable registries fail the login.
            if matches!(
                e,
                Error::Unreachable { .. }
                    | Error::AccessDenied { .. }
                    | Error::LoginRequired { .. }
            ) {
                return Err(e);
            }
        }
        // Forget cached clients so the new credentials are used.
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(registry);
        let (path, reg, u, p) = (
            docker_config.to_path_buf(),
            registry.to_string(),
            username.to_string(),
            password.to_string(),
        );
        blocking(move || auth::save_login(&path, &reg, &u, &p)).await
    }
}

/// A stream of `chunk`-byte pieces of `file` (the last may be shorter),
/// each read off the async threads.
fn chunks(
    file: std::fs::File,
    chunk: usize,
    path: PathBuf,
) -> impl futures_util::Stream<Item = std::result::Result<Bytes, OciDistributionError>> + Send + 'static
{
    stream::try_unfold(Some(file), move |state| {
        let path = path.clone();
        async move {
            let Some(mut file) = state else {
                return Ok(None);
            };
            let (file, buf) = blocking(move || {
                let mut buf = vec![0u8; chunk];
                let mut filled = 0;
                while filled < chunk {
                    match file.read(&mut buf[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                buf.truncate(filled);
                Ok((file, buf))
            })
            .await
            .map_err(|e| {
                OciDistributionError::IoError(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", path.display()),
                ))
            })?;
            if buf.is_empty() {
                Ok(None)
            } else {
                Ok(Some((Bytes::from(buf), Some(file))))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_registries_use_http() {
        for r in [
            "127.0.0.1:5000",
            "127.1.2.3",
            "localhost",
            "localhost:5000",
            "[::1]:5000",
        ] {
            assert!(is_local(r), "{r}");
        }
        for r in [
            "docker.io",
            "10.0.0.1:5000",
            "example.com:5000",
            "localhost.example",
        ] {
            assert!(!is_local(r), "{r}");
        }
        let reg = Registry::new(RegistryConfig {
            insecure: vec!["myreg:5000".into(), "other".into()],
            ..RegistryConfig::default()
        });
        assert!(reg.uses_http("myreg:5000"));
        assert!(reg.uses_http("other:443"));
        assert!(!reg.uses_http("myreg:5001"));
        assert!(!reg.uses_http("quay.io"));
    }

    #[test]
    fn oci_reference_conversion() {
        let r: Reference = "busybox".parse().unwrap();
        let o = to_oci(&r);
        assert_eq!(o.registry(), "docker.io");
        assert_eq!(o.repository(), "library/busybox");
        assert_eq!(o.tag(), Some("latest"));
        let d = Digest::of(b"x");
        let o = by_digest(&r, &d);
        assert_eq!(o.digest(), Some(d.to_string().as_str()));
    }

    #[tokio::test]
    async fn chunks_are_full_sized() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..2_500_000u32).map(|i| i as u8).collect();
        std::fs::File::create(&p).unwrap().write_all(&data).unwrap();
        let pieces: Vec<Bytes> = chunks(std::fs::File::open(&p).unwrap(), 1 << 20, p.clone())
            .try_collect()
            .await
            .unwrap();
        let sizes: Vec<usize> = pieces.iter().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![1 << 20, 1 << 20, 2_500_000 - (2 << 20)]);
        assert_eq!(pieces.concat(), data);
    }
}
