//! Pushing: HEAD each blob, upload the missing ones in multi-MiB pieces,
//! then the manifest, and record the repository digest.

use std::io::Read;
use std::path::PathBuf;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use kiln_content::{Digest, Reference, Store};
use oci_client::errors::OciDistributionError;
use oci_client::{Client, RegistryOperation};
use tracing::{Instrument, debug, info_span};

use super::{Registry, blocking, to_oci};
use crate::errors::Ctx;
use crate::manifest::{self, Descriptor, Parsed};
use crate::{Error, Progress, Result};

impl Registry {
    /// Pushes image `id` from `store` as `reference`: each layer and the
    /// config are uploaded unless the registry has them (HEAD first), in
    /// pieces of [`RegistryConfig::upload_chunk_size`](super::RegistryConfig::upload_chunk_size), then the manifest.
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
            let parsed = manifest::parse(&manifest, Some(media_type)).map_err(|e| {
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
            if config.digest != *id {
                return Err(Error::InvalidManifest {
                    reference: reference.familiar(),
                    reason: format!(
                        "manifest {manifest_digest} has config {}, not image {id}",
                        config.digest
                    ),
                });
            }
            progress.resolved(manifest_digest, id, layers.len());
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
        // Progress is reported per piece as it is read for sending: the
        // stream must be 'static, so counts travel through a channel.
        let total = d.size;
        let dg = d.digest;
        let mut sent = 0u64;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let progress_stream = body.inspect(move |item| {
            if let Ok(b) = item {
                sent += b.len() as u64;
                debug!(digest = %dg, sent, total, "upload piece");
                let _ = tx.send(sent);
            }
        });
        let upload = client.push_blob_stream(oref, progress_stream, &digest, Some(d.size));
        tokio::pin!(upload);
        // Ends with the upload, not with the channel (the HTTP client may
        // keep the body stream alive a little longer).
        let res = loop {
            tokio::select! {
                r = &mut upload => break r,
                Some(n) = rx.recv() => progress.blob_progress(&dg, n.min(total), total),
            }
        };
        res.map_err(|e| ctx.map(e))?;
        progress.blob_progress(&d.digest, d.size, d.size);
        progress.blob_done(&d.digest, d.size);
        Ok(())
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
