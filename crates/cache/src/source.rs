//! Reading caches: the index of a location, and fetching the image of one
//! entry into the store with every check a hostile cache could fail.

use std::path::Path;

use kiln_builder::CacheRecord;
use kiln_content::{ImageRecord, Reference, Store};
use kiln_model::Digest;
use std::io::Read as _;

use kiln_fs::{FinalLink, Root};
use kiln_registry::{MAX_MANIFEST_SIZE, NoProgress};

use crate::layered::RemoteCache;
use serde_json::Value;

use crate::blobs::{Manifest, history_and_layers, layout_path, read_json};
use crate::index::{self, Entry};
use crate::spec::Location;

/// What reading a location's index gave.
pub(crate) enum Loaded {
    /// A kiln cache.
    Cache(Vec<Entry>),
    /// Nothing there.
    Missing,
    /// A document that is not a kiln cache (an image, a manifest list).
    NotACache,
}

pub(crate) fn load(cache: &RemoteCache, location: &Location) -> Result<Loaded, String> {
    let bytes = match location {
        Location::Registry(r) => {
            match cache.with_registry(async |reg| reg.fetch_document(r).await)? {
                Ok(doc) if !doc.is_index => return Ok(Loaded::NotACache),
                Ok(doc) => doc.bytes,
                Err(e) if kiln_registry::is_not_found(&e) => return Ok(Loaded::Missing),
                Err(e) => return Err(e.to_string()),
            }
        }
        Location::Local(dir) => match read_local_index(dir) {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(Loaded::Missing),
            Err(e) => return Err(e),
        },
    };
    match index::decode(&bytes) {
        Ok(Some(entries)) => Ok(Loaded::Cache(entries)),
        Ok(None) => Ok(Loaded::NotACache),
        Err(e) => Err(e.to_string()),
    }
}

fn read_local_index(dir: &Path) -> Result<Option<Vec<u8>>, String> {
    let root = match Root::open(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open {}: {e}", dir.display())),
    };
    match root.read_limited("index.json", MAX_MANIFEST_SIZE as u64) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}/index.json: {e}", dir.display())),
    }
}

/// Brings the image of `entry` into `store` from `location`: manifest,
/// config and layers verified against their digests and sizes, then the
/// image recorded.
pub(crate) fn fetch(
    cache: &RemoteCache,
    store: &Store,
    location: &Location,
    entry: &Entry,
) -> Result<(), String> {
    let image = &entry.record.image.0;
    match location {
        Location::Registry(repo) => {
            let r: Reference = repo.with_digest(entry.manifest.digest);
            let _lease = store.lease().map_err(|e| e.to_string())?;
            cache.with_registry(async |reg| {
                let resolved = reg
                    .resolve(&r, &kiln_model::Platform::native())
                    .await
                    .map_err(|e| e.to_string())?;
                if resolved.config.digest.to_string() != *image {
                    return Err(format!(
                        "manifest {} has config {}, the cache says {image}",
                        entry.manifest.digest, resolved.config.digest
                    ));
                }
                reg.fetch_blobs(&resolved, store, &NoProgress)
                    .await
                    .map_err(|e| e.to_string())?;
                reg.record(&resolved, store)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(())
            })?
        }
        Location::Local(dir) => fetch_local(store, dir, entry),
    }
}

fn fetch_local(store: &Store, dir: &Path, entry: &Entry) -> Result<(), String> {
    let root = Root::open(dir).map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
    let m = &entry.manifest;
    let bytes = root
        .read_limited(layout_path(&m.digest), MAX_MANIFEST_SIZE as u64)
        .map_err(|e| format!("manifest {}: {e}", m.digest))?;
    if Digest::of(&bytes) != m.digest {
        return Err(format!("manifest {} does not match its digest", m.digest));
    }
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| format!("manifest {}: not an image manifest: {e}", m.digest))?;
    if manifest.config.digest.to_string() != entry.record.image.0 {
        return Err(format!(
            "manifest {} has config {}, the cache says {}",
            m.digest, manifest.config.digest, entry.record.image
        ));
    }
    let _lease = store.lease().map_err(|e| e.to_string())?;
    for b in std::iter::once(&manifest.config).chain(&manifest.layers) {
        if store.has_blob(&b.digest) {
            continue;
        }
        let f = root
            .open_file(layout_path(&b.digest), FinalLink::Follow)
            .map_err(|e| format!("blob {}: {e}", b.digest))?;
        // One byte past the size is enough to see a blob that is too long.
        store
            .copy_blob(
                &mut f.take(b.size.saturating_add(1)),
                Some((&b.digest, b.size)),
            )
            .map_err(|e| e.to_string())?;
    }
    store
        .copy_blob(&mut &bytes[..], Some((&m.digest, bytes.len() as u64)))
        .map_err(|e| e.to_string())?;
    let config = store
        .read_blob(&manifest.config.digest)
        .map_err(|e| e.to_string())?;
    let mut rec = ImageRecord::new(manifest.config.digest, m.digest, &m.media_type);
    rec.created = serde_json::from_slice::<Value>(&config)
        .ok()
        .and_then(|v| v.get("created")?.as_str().map(str::to_string));
    rec.size = manifest.config.size + manifest.layers.iter().map(|l| l.size).sum::<u64>();
    store.put_image(&rec).map_err(|e| e.to_string())
}

/// Checks that the fetched image is what the record says a step made:
/// the parent's history and layers plus one history entry (and one layer
/// unless the entry says it made none) whose `created_by` starts the key.
pub(crate) fn check_step(store: &Store, rec: &CacheRecord) -> Result<(), String> {
    let config = |id: &str| -> Result<(Vec<Value>, Vec<Value>), String> {
        let d: Digest = id.parse().map_err(|e| format!("image {id}: {e}"))?;
        Ok(history_and_layers(&read_json(store, &d, "config")?))
    };
    let (history, layers) = config(&rec.image.0)?;
    let (p_history, p_layers) = match &rec.parent {
        Some(p) => config(&p.0)?,
        None => (Vec::new(), Vec::new()),
    };
    if history.len() != p_history.len() + 1 || history[..p_history.len()] != p_history[..] {
        return Err(format!(
            "image {} is not its parent's history plus one step",
            rec.image
        ));
    }
    let step = &history[p_history.len()];
    let empty = step.get("empty_layer").and_then(Value::as_bool) == Some(true);
    let added = usize::from(!empty);
    if layers.len() != p_layers.len() + added || layers[..p_layers.len()] != p_layers[..] {
        return Err(format!(
            "image {} is not its parent's layers plus {added}",
            rec.image
        ));
    }
    if let Some(by) = step.get("created_by").and_then(Value::as_str)
        && !rec.key.starts_with(by)
        && !rec.key.starts_with(&format!("#(link) {by}"))
    {
        return Err(format!(
            "image {}'s last step is {by:?}, not the cached step",
            rec.image
        ));
    }
    Ok(())
}
