//! Pulling: streaming verified blob downloads (several at once, one retry
//! for a cut transfer) and recording the pulled image in the store.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use kiln_content::{BlobWriter, ImageRecord, Reference, Store};
use kiln_model::Platform;
use reqwest::Method;
use reqwest::header::HeaderMap;
use tracing::{Instrument, debug, info_span};

use super::http::{Pace, Stall};
use super::{Call, Registry, Resolved, Session, blocking, scope};
use crate::{Error, Progress, Result, Tee, TeeEvent, sources};
use kiln_model::Descriptor;

/// Outcome of one download attempt.
enum Attempt {
    Done,
    Retry(Error),
    Fail(Error),
}

/// What every blob download of one pull shares: the registry session, the
/// image's reference, the store, progress, the pull's abort flag and the
/// optional [`Tee`].
#[derive(Clone, Copy)]
struct BlobFetch<'a> {
    session: &'a Session,
    reference: &'a Reference,
    store: &'a Store,
    progress: &'a dyn Progress,
    abort: &'a AtomicBool,
    tee: Option<&'a dyn Tee>,
}

impl Registry {
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
            progress.resolved(
                &resolved.digest,
                &resolved.config.digest,
                resolved.layers.len(),
            );
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
        self.fetch_blobs_teed(resolved, store, progress, None).await
    }

    /// [`Registry::fetch_blobs`], copying the pieces of the blobs `tee`
    /// asks for to it while they download (see [`Tee`]).
    pub async fn fetch_blobs_teed(
        &self,
        resolved: &Resolved,
        store: &Store,
        progress: &dyn Progress,
        tee: Option<&dyn Tee>,
    ) -> Result<()> {
        let session = self.session(&resolved.reference).await?;
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
        let fetch = BlobFetch {
            session: &session,
            reference: &resolved.reference,
            store,
            progress,
            abort: &abort,
            tee,
        };
        stream::iter(wanted)
            .for_each_concurrent(n, |d| {
                let (fetch, abort, first_error) = (&fetch, &abort, &first_error);
                async move {
                    if abort.load(Ordering::Relaxed) {
                        return;
                    }
                    let res = self.fetch_blob(fetch, d).await;
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
        if let Some(e) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        // Where these blobs are, so a push to another repository of this
        // registry can mount them; losing this only costs an upload.
        let (s, r) = (store.clone(), resolved.reference.clone());
        let digests: Vec<_> = std::iter::once(&resolved.config)
            .chain(&resolved.layers)
            .map(|d| d.digest)
            .collect();
        if let Err(e) =
            blocking(move || sources::add(&s, r.registry(), r.repository(), &digests)).await
        {
            debug!(error = %e, "cannot record the pulled blobs' repository");
        }
        Ok(())
    }

    async fn fetch_blob(&self, f: &BlobFetch<'_>, d: &Descriptor) -> Result<()> {
        let (progress, abort) = (f.progress, f.abort);
        progress.blob_started(&d.digest, d.size);
        match self.fetch_once(f, d).await {
            Attempt::Done => {}
            Attempt::Fail(e) => return Err(e),
            Attempt::Retry(e) if abort.load(Ordering::Relaxed) => return Err(e),
            Attempt::Retry(e) => {
                debug!(digest = %d.digest, error = %e, "retrying blob");
                progress.blob_retry(&d.digest, &e);
                match self.fetch_once(f, d).await {
                    Attempt::Done => {}
                    Attempt::Fail(e) | Attempt::Retry(e) => return Err(e),
                }
            }
        }
        progress.blob_done(&d.digest, d.size);
        Ok(())
    }

    async fn fetch_once(&self, f: &BlobFetch<'_>, d: &Descriptor) -> Attempt {
        let BlobFetch {
            session,
            reference: r,
            store,
            progress,
            abort,
            tee,
        } = *f;
        let ctx = Self::ctx(r, session);
        let what = format!("blob {} of {}", d.digest, r.familiar());
        let url = session.url(&format!("/v2/{}/blobs/{}", r.repository(), d.digest));
        let scopes = [scope(r.repository(), "pull")];
        let sent = session
            .send(
                Call {
                    method: Method::GET,
                    url: &url,
                    scopes: &scopes,
                    headers: HeaderMap::new(),
                    what: &what,
                },
                None,
                &ctx,
            )
            .await;
        let mut resp = match sent {
            Ok(resp) if resp.status().is_success() => resp,
            Ok(resp) => {
                return match session.status_error(resp, &ctx).await {
                    e @ Error::Registry { .. } => Attempt::Retry(e),
                    e => Attempt::Fail(e),
                };
            }
            Err(e @ (Error::Registry { .. } | Error::Timeout { .. })) => {
                return Attempt::Retry(e);
            }
            Err(e) => return Attempt::Fail(e),
        };
        let s = store.clone();
        let mut writer: BlobWriter = match blocking(move || s.blob_writer()).await {
            Ok(w) => w,
            Err(e) => return Attempt::Fail(e.into()),
        };
        // Dropped without `Verified` on every failure path below.
        let mut tee_tx = tee.and_then(|t| t.open(&d.digest));
        let mut got: u64 = 0;
        let mut stream_failed = false;
        let mut pace = Pace::new(session.timeout);
        loop {
            let item = pace.chunk(&mut resp).await;
            if abort.load(Ordering::Relaxed) {
                // Another blob failed; the writer's drop removes our file.
                return Attempt::Fail(Error::Truncated {
                    digest: d.digest,
                    got,
                    expected: d.size,
                });
            }
            let chunk: Bytes = match item {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(Stall::Transport(e)) => {
                    debug!(digest = %d.digest, error = %e, "blob stream ended with an error");
                    stream_failed = true;
                    break;
                }
                // The writer's drop removes the partial file.
                Err(stall) => return Attempt::Retry(session.stall_error(&stall, &what, &ctx)),
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
            if let Some(tx) = &tee_tx
                && tx.send(TeeEvent::Data(chunk)).await.is_err()
            {
                tee_tx = None;
            }
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
                if let Some(tx) = tee_tx {
                    let _ = tx.send(TeeEvent::Verified).await;
                }
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
}
