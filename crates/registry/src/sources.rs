//! Where blobs came from: for each blob digest, the repositories (with
//! their registry) kiln pulled it from or pushed it to, most recent first,
//! kept as store records of kind `blob-sources`. A push names one of them
//! in a cross-repository mount (`?mount=DIGEST&from=REPO`) instead of
//! uploading the blob again, as Docker does with its distribution
//! metadata.

use std::collections::HashMap;

use kiln_content::{Record, Store};
use kiln_model::Digest;
use serde::{Deserialize, Serialize};

use crate::Result;

/// Record kind in the store.
const KIND: &str = "blob-sources";
/// Repositories kept per blob (the oldest are forgotten).
const MAX_SOURCES: usize = 16;

#[derive(Debug, Serialize, Deserialize)]
struct BlobSources {
    /// The blob's digest.
    id: String,
    /// `(registry, repository)`, most recent first.
    sources: Vec<(String, String)>,
}

impl Record for BlobSources {
    fn id(&self) -> &str {
        &self.id
    }
}

/// The repositories `digest` is known to be in, most recent first, as
/// `(registry, repository)` pairs.
pub fn blob_sources(store: &Store, digest: &Digest) -> Result<Vec<(String, String)>> {
    Ok(store
        .records::<BlobSources>(KIND)?
        .get(&digest.to_string())?
        .map(|r| r.sources)
        .unwrap_or_default())
}

/// [`blob_sources`] of several blobs.
pub(crate) fn lookup_all(
    store: &Store,
    digests: &Vec<Digest>,
) -> Result<HashMap<Digest, Vec<(String, String)>>> {
    let mut out = HashMap::new();
    for d in digests {
        out.insert(*d, blob_sources(store, d)?);
    }
    Ok(out)
}

/// Records that `digests` are in `repository` of `registry`.
pub(crate) fn add(
    store: &Store,
    registry: &str,
    repository: &str,
    digests: &[Digest],
) -> Result<()> {
    let records = store.records::<BlobSources>(KIND)?;
    let here = (registry.to_string(), repository.to_string());
    for d in digests {
        let id = d.to_string();
        let mut rec = records.get(&id)?.unwrap_or(BlobSources {
            id,
            sources: Vec::new(),
        });
        if rec.sources.first() == Some(&here) {
            continue;
        }
        rec.sources.retain(|s| *s != here);
        rec.sources.insert(0, here.clone());
        rec.sources.truncate(MAX_SOURCES);
        records.put(&rec)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_kept_most_recent_first_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        assert!(blob_sources(&store, &a).unwrap().is_empty());
        add(&store, "r:5000", "x", &[a, b]).unwrap();
        add(&store, "r:5000", "y", &[a]).unwrap();
        add(&store, "other", "x", &[a]).unwrap();
        add(&store, "r:5000", "x", &[a]).unwrap();
        let pair = |r: &str, p: &str| (r.to_string(), p.to_string());
        assert_eq!(
            blob_sources(&store, &a).unwrap(),
            vec![pair("r:5000", "x"), pair("other", "x"), pair("r:5000", "y")]
        );
        assert_eq!(blob_sources(&store, &b).unwrap(), vec![pair("r:5000", "x")]);
        for i in 0..40 {
            add(&store, "r:5000", &format!("repo{i}"), &[b]).unwrap();
        }
        let all = blob_sources(&store, &b).unwrap();
        assert_eq!(all.len(), MAX_SOURCES);
        assert_eq!(all[0], pair("r:5000", "repo39"));
    }
}
