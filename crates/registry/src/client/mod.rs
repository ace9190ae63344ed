//! The `Registry` client: configuration, sessions (one oci-client per
//! registry, with credentials), resolving references, and login. Pulling
//! and pushing live in the `pull` and `push` submodules.

mod pull;
mod push;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use kiln_content::{Digest, Platform, Reference};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};

use crate::errors::Ctx;
use crate::manifest::{self, ACCEPTED, Descriptor, ParseError, Parsed};
use crate::{Error, Result, auth};

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
}
