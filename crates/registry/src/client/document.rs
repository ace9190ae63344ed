//! Documents that are not one image: reading a manifest or index as raw
//! bytes (a build cache's index, whose annotations kiln reads itself) and
//! putting an index under a tag. Bounded like every other read.

use bytes::Bytes;
use kiln_content::Reference;
use kiln_model::Digest;
use reqwest::Method;
use reqwest::header::{self, HeaderMap, HeaderValue};
use tracing::debug;

use super::{Call, Registry, scope};
use crate::manifest::{OCI_INDEX, Parsed};
use crate::{Error, Result};

/// A manifest or index as the registry served it, checked against its
/// digest.
#[derive(Clone, Debug)]
pub struct RawDocument {
    /// Its digest (over `bytes`).
    pub digest: Digest,
    /// Whether it parsed as an index or manifest list (else an image
    /// manifest).
    pub is_index: bool,
    /// Its bytes, at most [`crate::MAX_MANIFEST_SIZE`].
    pub bytes: Vec<u8>,
}

impl Registry {
    /// Fetches what `reference` names (tag or digest) without choosing a
    /// platform: the raw index or manifest, size-limited and checked against
    /// the registry's digest header and the reference's digest.
    pub async fn fetch_document(&self, reference: &Reference) -> Result<RawDocument> {
        let session = self.session(reference).await?;
        let part = super::manifest_part(reference);
        let (bytes, digest, parsed) = self
            .fetch_manifest(&session, reference, &part, reference.digest())
            .await?;
        Ok(RawDocument {
            digest,
            is_index: matches!(parsed, Parsed::Index { .. }),
            bytes,
        })
    }

    /// Puts `bytes`, an OCI image index whose manifests the repository
    /// already has, under `reference`'s tag. Returns its digest.
    pub async fn put_index(&self, reference: &Reference, bytes: Vec<u8>) -> Result<Digest> {
        let session = self.session(reference).await?;
        let ctx = Self::ctx(reference, &session);
        let repo = reference.repository();
        let scopes = [scope(repo, "pull,push")];
        let tag = reference.tag().unwrap_or("latest");
        let url = session.url(&format!("/v2/{repo}/manifests/{tag}"));
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(OCI_INDEX));
        let what = format!("index {}", reference.familiar());
        let digest = Digest::of(&bytes);
        let resp = session
            .send(
                Call {
                    method: Method::PUT,
                    url: &url,
                    scopes: &scopes,
                    headers,
                    what: &what,
                },
                Some(Bytes::from(bytes)),
                &ctx,
            )
            .await?;
        if !resp.status().is_success() {
            return Err(session.status_error(resp, &ctx).await);
        }
        debug!(%digest, "index put");
        Ok(digest)
    }
}

/// Whether an error means "the registry does not have it" (a missing
/// tag, repository or manifest), as opposed to a failure worth reporting.
pub fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::NotFound { .. })
}
