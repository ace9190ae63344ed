//! Pushing: HEAD each blob, upload the missing ones in multi-MiB pieces,
//! then the manifest, and record the repository digest.

use std::io::Read;
use std::path::PathBuf;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use kiln_content::{Reference, Store};
use kiln_model::Digest;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode};
use tracing::{Instrument, debug, info_span};

use super::{Call, Registry, Session, Upload, blocking, scope};
use crate::errors::Ctx;
use crate::manifest::{self, Parsed};
use crate::{Error, Progress, Result, sources};
use kiln_model::Descriptor;

/// Repositories tried as mount sources for one blob, at most.
const MAX_MOUNT_CANDIDATES: usize = 3;

/// What every blob upload of one push shares: the registry session, the
/// error context, the target reference, the store and progress.
#[derive(Clone, Copy)]
struct BlobPush<'a> {
    session: &'a Session,
    ctx: &'a Ctx<'a>,
    reference: &'a Reference,
    store: &'a Store,
    progress: &'a dyn Progress,
}

impl Registry {
    /// Pushes image `id` from `store` as `reference`: each layer and the
    /// config are uploaded unless the registry has them in that repository
    /// (HEAD first) or can mount them from another repository where kiln
    /// pulled or pushed them (see [`crate::blob_sources`]), in pieces of
    /// [`RegistryConfig::upload_chunk_size`](super::RegistryConfig::upload_chunk_size), then the manifest.
    /// Records the repository digest in the store and returns the manifest
    /// digest.
    pub async fn push(
        &self,
        reference: &Reference,
        store: &Store,
        id: &Digest,
        progress: &dyn Progress,
    ) -> Result<Digest> {
        let s = store.clone();
        let idc = *id;
        let record = blocking(move || s.get_image(&idc))
            .await?
            .ok_or_else(|| Error::NoSuchImage(id.to_string()))?;
        self.push_manifest(
            reference,
            store,
            id,
            &record.manifest_digest,
            &record.manifest_media_type,
            progress,
        )
        .await
    }

    /// Pushes image `id` as [`Registry::push`] does, but with the manifest
    /// blob `manifest_digest` (of `media_type`) from `store` instead of the
    /// image's own: e.g. one whose plain layers were replaced by compressed
    /// copies. Its config must be the image's config (so the image ID is
    /// the same); its blobs must all be in the store. Records the pushed
    /// manifest's digest as the repository digest and returns it.
    pub async fn push_manifest(
        &self,
        reference: &Reference,
        store: &Store,
        id: &Digest,
        manifest_digest: &Digest,
        media_type: &str,
        progress: &dyn Progress,
    ) -> Result<Digest> {
        let span = info_span!("push", image = %reference, id = %id, manifest = %manifest_digest);
        async move {
            let manifest = store.read_blob(manifest_digest)?;
            let (media_type, config, layers) =
                image_manifest(&manifest, media_type, reference, id, manifest_digest)?;
            progress.resolved(manifest_digest, id, layers.len());
            let session = self.session(reference).await?;
            let ctx = Self::ctx(reference, &session);
            let push_scopes = [scope(reference.repository(), "pull,push")];
            // Get push access once (a token, or the refusal) before the
            // uploads run concurrently.
            session
                .authorization(
                    &push_scopes,
                    &format!("push of {}", reference.familiar()),
                    &ctx,
                )
                .await?;
            let mut blobs: Vec<Descriptor> = Vec::new();
            for d in layers.iter().chain(std::iter::once(&*config)) {
                if !blobs.iter().any(|b| b.digest == d.digest) {
                    blobs.push(d.clone());
                }
            }
            let push = BlobPush {
                session: &session,
                ctx: &ctx,
                reference,
                store,
                progress,
            };
            self.push_blobs(&push, &blobs).await?;
            put_manifest(&push, &push_scopes, &manifest, &media_type).await?;
            let digest = Digest::of(&manifest);
            record_push(store, reference, digest, *id, &blobs).await?;
            Ok(digest)
        }
        .instrument(span)
        .await
    }

    /// Pushes `blobs`, several at a time, each mounted from a repository
    /// of the same registry where kiln saw it when one is known.
    async fn push_blobs(&self, push: &BlobPush<'_>, blobs: &[Descriptor]) -> Result<()> {
        let reference = push.reference;
        let repo = reference.repository();
        let (s, digests) = (push.store.clone(), blobs.iter().map(|b| b.digest).collect());
        let candidates = blocking(move || sources::lookup_all(&s, &digests)).await?;
        let n = self.config.max_concurrent_uploads.max(1);
        stream::iter(blobs.iter().map(Ok::<_, Error>))
            .try_for_each_concurrent(n, |d| {
                let from: Vec<String> = candidates
                    .get(&d.digest)
                    .into_iter()
                    .flatten()
                    .filter(|(reg, r)| reg == reference.registry() && r != repo)
                    .map(|(_, r)| r.clone())
                    .take(MAX_MOUNT_CANDIDATES)
                    .collect();
                async move { self.push_blob(push, d, &from).await }
            })
            .await
    }

    /// Pushes one blob: nothing when the repository has it, a mount from
    /// one of `from` (repositories of the same registry) when the registry
    /// allows, else an upload.
    async fn push_blob(&self, p: &BlobPush<'_>, d: &Descriptor, from: &[String]) -> Result<()> {
        let BlobPush {
            session,
            ctx,
            reference,
            progress,
            ..
        } = *p;
        let repo = reference.repository();
        let job = BlobJob {
            p: *p,
            d,
            push_scopes: [scope(repo, "pull,push")],
            what: format!("blob {} to {}", d.digest, reference.familiar_name()),
        };
        if job.exists().await? {
            progress.blob_exists(&d.digest, d.size);
            return Ok(());
        }
        let start_url = session.url(&format!("/v2/{repo}/blobs/uploads/"));
        let location = match job.mount(&start_url, from).await? {
            Mount::Done => return Ok(()),
            Mount::Started(loc) => loc,
            Mount::Refused => job.start_upload(&start_url).await?,
        };
        progress.blob_started(&d.digest, d.size);
        let chunk = self.config.upload_chunk_size.max(64 * 1024);
        let done = if self.config.monolithic_push {
            job.upload_whole(chunk, &location).await?
        } else {
            job.upload_pieces(chunk, location).await?
        };
        if !done.status().is_success() {
            return Err(session.status_error(done, ctx).await);
        }
        progress.blob_progress(&d.digest, d.size, d.size);
        progress.blob_done(&d.digest, d.size);
        Ok(())
    }
}

/// Checks that stored `manifest` (of `media_type`) is an image manifest
/// whose config is image `id`; returns its media type, config and layers.
fn image_manifest(
    manifest: &[u8],
    media_type: &str,
    reference: &Reference,
    id: &Digest,
    manifest_digest: &Digest,
) -> Result<(String, Box<Descriptor>, Vec<Descriptor>)> {
    let parsed =
        manifest::parse(manifest, Some(media_type)).map_err(|e| Error::InvalidManifest {
            reference: reference.familiar(),
            reason: format!("{e:?}"),
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
    if config.digest != *id {
        return Err(Error::InvalidManifest {
            reference: reference.familiar(),
            reason: format!(
                "manifest {manifest_digest} has config {}, not image {id}",
                config.digest
            ),
        });
    }
    Ok((media_type, config, layers))
}

/// PUTs `manifest` (of `media_type`) under the reference's tag or digest
/// (`latest` without either).
async fn put_manifest(
    push: &BlobPush<'_>,
    push_scopes: &[String],
    manifest: &[u8],
    media_type: &str,
) -> Result<()> {
    let BlobPush {
        session,
        ctx,
        reference,
        ..
    } = *push;
    let what = format!("manifest {}", reference.familiar());
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(media_type).map_err(|_| Error::InvalidManifest {
            reference: reference.familiar(),
            reason: format!("media type {media_type:?} is not a valid header"),
        })?,
    );
    let part = match (reference.tag(), reference.digest()) {
        (Some(t), _) => t.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => "latest".to_string(),
    };
    let url = session.url(&format!("/v2/{}/manifests/{part}", reference.repository()));
    let resp = session
        .send(
            Call {
                method: Method::PUT,
                url: &url,
                scopes: push_scopes,
                headers,
                what: &what,
            },
            Some(Bytes::from(manifest.to_vec())),
            ctx,
        )
        .await?;
    if !resp.status().is_success() {
        return Err(session.status_error(resp, ctx).await);
    }
    Ok(())
}

/// Records `digest` as image `id`'s repository digest for `reference`,
/// and where `blobs` now are (for later mounts).
async fn record_push(
    store: &Store,
    reference: &Reference,
    digest: Digest,
    id: Digest,
    blobs: &[Descriptor],
) -> Result<()> {
    let (s, r) = (store.clone(), reference.clone());
    let pushed: Vec<Digest> = blobs.iter().map(|b| b.digest).collect();
    blocking(move || -> Result<()> {
        s.add_repo_digest(&r, &digest, &id)?;
        // Where these blobs now are, for later mounts; losing this record
        // only costs an upload, so it does not fail the push.
        if let Err(e) = sources::add(&s, r.registry(), r.repository(), &pushed) {
            debug!(error = %e, "cannot record the pushed blobs' repository");
        }
        Ok(())
    })
    .await
}

/// How trying to mount a blob ended.
enum Mount {
    /// A source was mounted: the blob is there.
    Done,
    /// No mount, but the registry started an upload session here.
    Started(String),
    /// No mount and no upload session (no source, or none allowed).
    Refused,
}

/// One blob being pushed: what the push shares, the blob, the push scope
/// and what errors name.
struct BlobJob<'a> {
    p: BlobPush<'a>,
    d: &'a Descriptor,
    push_scopes: [String; 1],
    what: String,
}

impl BlobJob<'_> {
    /// A call of `method` to `url` with the push scope.
    fn call<'c>(&'c self, method: Method, url: &'c str, headers: HeaderMap) -> Call<'c> {
        Call {
            method,
            url,
            scopes: &self.push_scopes,
            headers,
            what: &self.what,
        }
    }

    fn bad_address(&self, loc: &str) -> Error {
        Error::Registry {
            registry: self.p.session.registry.clone(),
            reference: self.p.ctx.reference.clone(),
            message: format!("invalid upload address {loc:?}"),
        }
    }

    /// Whether the repository has the blob (HEAD).
    async fn exists(&self) -> Result<bool> {
        let BlobPush { session, ctx, .. } = self.p;
        let repo = self.p.reference.repository();
        let url = session.url(&format!("/v2/{repo}/blobs/{}", self.d.digest));
        let head = session
            .send(self.call(Method::HEAD, &url, HeaderMap::new()), None, ctx)
            .await?;
        match head.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(session.status_error(head, ctx).await),
        }
    }

    /// Asks for a mount from each of `from` in turn. A registry that
    /// answers with an upload session instead keeps the last one.
    async fn mount(&self, start_url: &str, from: &[String]) -> Result<Mount> {
        let BlobPush {
            session,
            ctx,
            progress,
            ..
        } = self.p;
        let d = self.d;
        let mut location = None;
        for (i, source) in from.iter().enumerate() {
            let mut url =
                reqwest::Url::parse(start_url).map_err(|_| self.bad_address(start_url))?;
            url.query_pairs_mut()
                .append_pair("mount", &d.digest.to_string())
                .append_pair("from", source);
            // The token must allow pulling from the source too; a registry
            // that does not grant it just starts a plain upload.
            let scopes = [self.push_scopes[0].clone(), scope(source, "pull")];
            let call = Call {
                scopes: &scopes,
                ..self.call(Method::POST, url.as_str(), HeaderMap::new())
            };
            let resp = match session.send(call, None, ctx).await {
                Ok(r) => r,
                Err(e @ (Error::AccessDenied { .. } | Error::LoginRequired { .. })) => {
                    debug!(error = %e, source, "no access for a mount");
                    continue;
                }
                Err(e) => return Err(e),
            };
            match resp.status() {
                StatusCode::CREATED => {
                    progress.blob_mounted(&d.digest, d.size, source);
                    return Ok(Mount::Done);
                }
                StatusCode::ACCEPTED => {
                    let loc = upload_location(&resp, session, ctx)?;
                    if i + 1 == from.len() {
                        location = Some(loc);
                    } else {
                        // Try the next source; drop this upload session.
                        let _ = session
                            .send(self.call(Method::DELETE, &loc, HeaderMap::new()), None, ctx)
                            .await;
                    }
                }
                _ => return Err(session.status_error(resp, ctx).await),
            }
        }
        Ok(location.map_or(Mount::Refused, Mount::Started))
    }

    /// Starts an upload session; returns its location.
    async fn start_upload(&self, start_url: &str) -> Result<String> {
        let BlobPush { session, ctx, .. } = self.p;
        let resp = session
            .send(
                self.call(Method::POST, start_url, HeaderMap::new()),
                None,
                ctx,
            )
            .await?;
        if resp.status() != StatusCode::ACCEPTED && !resp.status().is_success() {
            return Err(session.status_error(resp, ctx).await);
        }
        upload_location(&resp, session, ctx)
    }

    /// Opens the blob's file in the store.
    fn open(&self) -> Result<(std::fs::File, PathBuf)> {
        let path = self.p.store.blob_path(&self.d.digest);
        let file = std::fs::File::open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Store(kiln_content::Error::BlobNotFound(self.d.digest))
            } else {
                Error::Io {
                    op: "open",
                    path: path.clone(),
                    source: e,
                }
            }
        })?;
        Ok((file, path))
    }

    /// The address that completes the upload at `loc` (`?digest=`).
    fn finish_url(&self, loc: &str) -> Result<String> {
        let mut url = reqwest::Url::parse(loc).map_err(|_| self.bad_address(loc))?;
        url.query_pairs_mut()
            .append_pair("digest", &self.d.digest.to_string());
        Ok(url.into())
    }

    /// Uploads the blob in one PUT (read in `chunk`-byte pieces).
    async fn upload_whole(&self, chunk: usize, location: &str) -> Result<Response> {
        let BlobPush {
            session,
            ctx,
            progress,
            ..
        } = self.p;
        let (file, path) = self.open()?;
        let (dg, total) = (self.d.digest, self.d.size);
        let body = chunks(file, chunk, path);
        let report = move |n: u64| progress.blob_progress(&dg, n.min(total), total);
        session
            .send_upload(
                self.call(Method::PUT, &self.finish_url(location)?, octets()),
                Upload {
                    pieces: body,
                    len: total,
                    progress: &report,
                },
                ctx,
            )
            .await
    }

    /// Uploads the blob in `chunk`-byte PATCHes, then completes it with
    /// an empty PUT.
    async fn upload_pieces(&self, chunk: usize, mut location: String) -> Result<Response> {
        let BlobPush {
            session,
            ctx,
            progress,
            ..
        } = self.p;
        let (file, path) = self.open()?;
        let (dg, total) = (self.d.digest, self.d.size);
        let mut pieces = Box::pin(chunks(file, chunk, path.clone()));
        let mut offset = 0u64;
        while let Some(piece) = pieces.next().await {
            let piece = piece.map_err(|e| Error::Io {
                op: "read",
                path: path.clone(),
                source: e,
            })?;
            let len = piece.len() as u64;
            let mut headers = octets();
            headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("{offset}-{}", offset + len - 1))
                    .unwrap_or_else(|_| HeaderValue::from_static("0-0")),
            );
            let base = offset;
            let report = move |n: u64| progress.blob_progress(&dg, (base + n).min(total), total);
            let resp = session
                .send_upload(
                    self.call(Method::PATCH, &location, headers),
                    Upload {
                        pieces: stream::once(async move { Ok(piece) }),
                        len,
                        progress: &report,
                    },
                    ctx,
                )
                .await?;
            if !resp.status().is_success() {
                return Err(session.status_error(resp, ctx).await);
            }
            location = upload_location(&resp, session, ctx)?;
            offset += len;
            debug!(digest = %dg, sent = offset, total, "upload piece");
        }
        session
            .send(
                self.call(Method::PUT, &self.finish_url(&location)?, HeaderMap::new()),
                Some(Bytes::new()),
                ctx,
            )
            .await
    }
}

/// `Content-Type: application/octet-stream`.
fn octets() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h
}

/// The absolute URL of the upload session `resp` names in `Location`.
fn upload_location(resp: &Response, session: &Session, ctx: &Ctx<'_>) -> Result<String> {
    resp.headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|l| session.url(l))
        .ok_or_else(|| Error::Registry {
            registry: session.registry.clone(),
            reference: ctx.reference.clone(),
            message: format!("it answered {} without an upload location", resp.status()),
        })
}

/// A stream of `chunk`-byte pieces of `file` (the last may be shorter),
/// each read off the async threads.
fn chunks(
    file: std::fs::File,
    chunk: usize,
    path: PathBuf,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
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
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
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
    use std::io::Write;

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
