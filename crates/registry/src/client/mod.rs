//! The `Registry` client: configuration, sessions (one HTTP session per
//! registry, with credentials and tokens, in `http`), resolving references, and login. Pulling
//! and pushing live in the `pull` and `push` submodules.

mod document;
mod http;
mod pull;
mod push;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_content::Reference;
use kiln_model::{Digest, Platform};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};

pub use document::{RawDocument, is_not_found};
pub use http::Credentials;
pub(crate) use http::{Call, Session, Upload, scope};

use crate::errors::Ctx;
use crate::manifest::{self, ACCEPTED, ParseError, Parsed};
use crate::{Error, Result, auth};
use kiln_model::Descriptor;

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
    /// How long the registry may keep kiln waiting: a request fails when
    /// nothing arrives for this long, or less than 16 KiB over this much
    /// waiting (a trickle); a manifest, index or token must arrive whole
    /// within 4 times this; an upload fails when the registry stops
    /// reading it for this long. Docker's default: 30 s.
    pub timeout: Duration,
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
            timeout: Duration::from_secs(30),
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
    sessions: Mutex<HashMap<String, Arc<Session>>>,
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

/// Runs a blocking store operation off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// What a reference names in `/v2/<repo>/manifests/<part>`: its digest,
/// else its tag, else `latest`.
fn manifest_part(reference: &Reference) -> String {
    match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    }
}

impl Registry {
    /// A client with `config`.
    pub fn new(config: RegistryConfig) -> Registry {
        crate::init_tls();
        Registry {
            config,
            sessions: Mutex::new(HashMap::new()),
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

    /// The session for `registry`, with the credentials the Docker config
    /// has for it now (a new session when they changed).
    async fn session_for(&self, registry: &str) -> Result<Arc<Session>> {
        let cfg = self.config.docker_config.clone();
        let reg = registry.to_string();
        let credentials = blocking(move || auth::credentials(cfg.as_deref(), &reg)).await?;
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = sessions.get(registry)
            && s.credentials == credentials
        {
            return Ok(s.clone());
        }
        let s = Arc::new(Session::new(
            registry,
            self.uses_http(registry),
            credentials,
            self.config.connect_timeout,
            self.config.timeout,
        )?);
        sessions.insert(registry.to_string(), s.clone());
        Ok(s)
    }

    async fn session(&self, r: &Reference) -> Result<Arc<Session>> {
        self.session_for(r.registry()).await
    }

    fn ctx<'a>(r: &'a Reference, session: &Session) -> Ctx<'a> {
        Ctx {
            registry: r.registry(),
            reference: r.familiar(),
            has_credentials: !matches!(session.credentials, Credentials::Anonymous),
        }
    }

    /// Fetches the manifest `reference_part` (a tag or digest) of `r`'s
    /// repository, reading at most [`crate::MAX_MANIFEST_SIZE`] bytes;
    /// checks it against `want` and the registry's digest header.
    async fn fetch_manifest(
        &self,
        session: &Session,
        r: &Reference,
        reference_part: &str,
        want: Option<&Digest>,
    ) -> Result<(Vec<u8>, Digest, Parsed)> {
        let ctx = Self::ctx(r, session);
        let what = format!("manifest {}", r.familiar());
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_str(&ACCEPTED.join(", "))
                .unwrap_or_else(|_| HeaderValue::from_static("*/*")),
        );
        let url = session.url(&format!(
            "/v2/{}/manifests/{reference_part}",
            r.repository()
        ));
        let scopes = [scope(r.repository(), "pull")];
        let mut resp = session
            .send(
                Call {
                    method: Method::GET,
                    url: &url,
                    scopes: &scopes,
                    headers,
                    what: &what,
                },
                None,
                &ctx,
            )
            .await?;
        if !resp.status().is_success() {
            return Err(session.status_error(resp, &ctx).await);
        }
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let body = match session
            .document(&mut resp, manifest::MAX_MANIFEST_SIZE, &what, &ctx)
            .await
        {
            Ok(b) => b,
            Err(Error::TooLarge { size, .. }) => {
                return Err(Error::ManifestTooLarge {
                    reference: r.familiar(),
                    size,
                });
            }
            Err(e) => return Err(e),
        };
        let digest = Digest::of(&body);
        if let Some(w) = want
            && *w != digest
        {
            return Err(Error::InvalidManifest {
                reference: r.familiar(),
                reason: format!("manifest has digest {digest}, expected {w}"),
            });
        }
        if let Some(h) = header_digest
            && h != digest
        {
            return Err(Error::InvalidManifest {
                reference: r.familiar(),
                reason: "manifest does not match its digest".into(),
            });
        }
        let header_type = content_type.filter(|t| ACCEPTED.contains(&t.as_str()));
        let parsed = manifest::parse(&body, header_type.as_deref()).map_err(|e| match e {
            ParseError::TooLarge(size) => Error::ManifestTooLarge {
                reference: r.familiar(),
                size: Some(size as u64),
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
        Ok((body, digest, parsed))
    }

    /// Resolves `reference` to one image manifest, choosing the entry for
    /// `platform` when it names an index or manifest list.
    pub async fn resolve(&self, reference: &Reference, platform: &Platform) -> Result<Resolved> {
        let session = self.session(reference).await?;
        let part = manifest_part(reference);
        let (bytes, digest, parsed) = self
            .fetch_manifest(&session, reference, &part, reference.digest())
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
                config: *config,
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
                        wanted: Box::new(platform.clone()),
                        available,
                    }
                })?;
                let child = entry.descriptor.digest;
                let (mbytes, mdigest, mparsed) = self
                    .fetch_manifest(&session, reference, &child.to_string(), Some(&child))
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
                    config: *config,
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
        let session = Session::new(
            registry,
            self.uses_http(registry),
            Credentials::Basic(username.into(), password.into()),
            self.config.connect_timeout,
            self.config.timeout,
        )?;
        let ctx = Ctx {
            registry,
            reference: registry.to_string(),
            has_credentials: true,
        };
        // Token registries check the credentials when handing out a token;
        // basic-auth registries on `/v2/` itself, as `docker login` probes.
        let scopes = [scope(probe.repository(), "pull")];
        let resp = session
            .send(
                Call {
                    method: Method::GET,
                    url: &session.url("/v2/"),
                    scopes: &scopes,
                    headers: HeaderMap::new(),
                    what: "the login check (/v2/)",
                },
                None,
                &ctx,
            )
            .await?;
        if matches!(
            resp.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            return Err(ctx.unauthorized());
        }
        // Forget cached sessions so the new credentials are used.
        self.sessions
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
}
