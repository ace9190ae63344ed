//! Garbage collection of blobs no image references, and the usage summary
//! behind `kiln system df`.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::{Result, Store};
use kiln_model::Digest;

/// What [`Store::gc`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Blobs deleted.
    pub removed: Vec<Digest>,
    /// Bytes freed.
    pub freed: u64,
}

/// Usage summary of a store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DiskUsage {
    /// Number of image records.
    pub images: usize,
    /// Number of blobs.
    pub blobs: usize,
    /// Total bytes of all blobs.
    pub blob_bytes: u64,
    /// Bytes of blobs no image references (what `gc` would free, before
    /// its `keep` callback is consulted).
    pub reclaimable_bytes: u64,
}

/// Prefix of the image-record annotations naming extra manifests of the
/// image (e.g. `kiln.manifest.gzip`: the manifest it is pushed with, its
/// plain layers compressed). Garbage collection keeps what they reference.
pub const DISTRIBUTION_MANIFEST_PREFIX: &str = "kiln.manifest.";

/// Digests a manifest or index blob points at (config, layers, child
/// manifests). Unparseable content points at nothing.
pub fn manifest_children(bytes: &[u8]) -> Vec<Digest> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Vec::new();
    };
    let digest_of = |d: &serde_json::Value| d.get("digest")?.as_str()?.parse::<Digest>().ok();
    let mut out = Vec::new();
    if let Some(c) = v.get("config").and_then(digest_of) {
        out.push(c);
    }
    for key in ["layers", "manifests", "blobs"] {
        if let Some(list) = v.get(key).and_then(|l| l.as_array()) {
            out.extend(list.iter().filter_map(digest_of));
        }
    }
    out
}

impl Store {
    /// Every blob reachable from an image record: the manifest (and the
    /// manifests its [`DISTRIBUTION_MANIFEST_PREFIX`] annotations name), and
    /// what they point at, recursively through indexes.
    pub fn referenced_blobs(&self) -> Result<BTreeSet<Digest>> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<Digest> = Vec::new();
        for img in self.list_images()? {
            todo.push(img.manifest_digest);
            todo.push(img.id);
            for (k, v) in &img.annotations {
                if k.starts_with(DISTRIBUTION_MANIFEST_PREFIX)
                    && let Ok(d) = v.parse::<Digest>()
                {
                    todo.push(d);
                }
            }
        }
        while let Some(d) = todo.pop() {
            if !seen.insert(d) {
                continue;
            }
            // Only small JSON blobs can be manifests; skip reading layers.
            if self.blob_size(&d).is_ok_and(|s| s <= 4 * 1024 * 1024)
                && let Ok(bytes) = self.read_blob(&d)
                && bytes.first() == Some(&b'{')
            {
                todo.extend(manifest_children(&bytes));
            }
        }
        Ok(seen)
    }

    /// Deletes every blob that no image record references and `keep` does
    /// not claim (pass a callback for blobs other crates use, e.g. build
    /// cache layers). Waits until no writer or [`Lease`](crate::Lease) is
    /// active, and holds the store lock while it works.
    pub fn gc(&self, keep: impl Fn(&Digest) -> bool) -> Result<GcReport> {
        // Order matters: a puller holds its lease while it records its
        // image under the store lock, so wait for leases first.
        let _no_writers = self.exclusive_active()?;
        let _lock = self.lock()?;
        let referenced = self.referenced_blobs()?;
        let mut report = GcReport::default();
        for (d, size) in self.list_blobs()? {
            if referenced.contains(&d) || keep(&d) {
                continue;
            }
            if self.remove_blob(&d)? {
                report.removed.push(d);
                report.freed += size;
            }
        }
        Ok(report)
    }

    /// Counts images and blobs and how much `gc` could free.
    pub fn df(&self) -> Result<DiskUsage> {
        let referenced = self.referenced_blobs()?;
        let blobs = self.list_blobs()?;
        Ok(DiskUsage {
            images: self.list_images()?.len(),
            blobs: blobs.len(),
            blob_bytes: blobs.iter().map(|(_, s)| s).sum(),
            reclaimable_bytes: blobs
                .iter()
                .filter(|(d, _)| !referenced.contains(d))
                .map(|(_, s)| s)
                .sum(),
        })
    }
}
