//! `--cache-from` / `--cache-to` over this engine's store: a
//! [`kiln_cache::RemoteCache`] in front of the local step cache, whose
//! fetched step images are adopted as local builds are (the parent
//! recorded, the layers unpacked with their diffIDs checked).

use std::sync::Arc;

use kiln_builder::{BuildCache, CacheRecord};
use kiln_cache::{Host, Location, RemoteCache, Source};
use kiln_content::{Reference, Store};
use kiln_model::{Digest, Platform};
use kiln_registry::NoProgress;
use kiln_snapshot::Snapshotter;

use crate::PARENT_ANNOTATION;
use crate::engine::Engine;
use crate::error::{Context as _, Result};
use crate::pull::block_on;

/// Receives the cache's warnings (the front end prints them).
pub type Warn = Box<dyn Fn(&str) + Send + Sync>;

struct EngineHost {
    store: Store,
    snapshotter: Arc<dyn Snapshotter>,
    unpack: kiln_image::UnpackOptions,
    warn: Warn,
}

impl Host for EngineHost {
    fn adopt(&self, record: &CacheRecord) -> std::result::Result<(), String> {
        let id: Digest = record.image.0.parse().map_err(|e| format!("{e}"))?;
        if let Some(parent) = &record.parent {
            let mut rec = self
                .store
                .get_image(&id)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("image {id} is not in the store"))?;
            rec.annotations
                .insert(PARENT_ANNOTATION.to_owned(), parent.0.clone());
            self.store.put_image(&rec).map_err(|e| e.to_string())?;
        }
        kiln_image::ensure_unpacked(&self.store, &*self.snapshotter, &id, &self.unpack)
            .map(|_| ())
            .map_err(|e| format!("cannot unpack it: {e}"))
    }

    fn warn(&self, message: &str) {
        (self.warn)(message);
    }
}

impl Engine {
    /// The step cache of a build with `--cache-from` `sources` (read in
    /// order after `local`) and, when it exports, the record of the steps
    /// it used. Warnings about the sources go to `warn`.
    pub fn remote_cache(
        &mut self,
        local: Arc<dyn BuildCache>,
        sources: Vec<Source>,
        warn: Warn,
    ) -> Result<RemoteCache> {
        let host = EngineHost {
            store: self.store.clone(),
            snapshotter: self.snapshotter()?,
            unpack: self.unpack_options(),
            warn,
        };
        Ok(RemoteCache::new(
            local,
            sources,
            self.store.clone(),
            self.registry_config()?,
            Arc::new(host),
        ))
    }

    /// What a bare `--cache-from NAME` means: an image in the store (Docker's
    /// classic cache source); else, at that reference in its registry, a
    /// kiln cache index, or an image, pulled for `platform` and used as
    /// the classic source. `None` (with a warning) when the registry has
    /// nothing there or cannot be asked.
    pub fn cache_source(
        &mut self,
        name: &str,
        platform: &Platform,
        warn: &dyn Fn(&str),
    ) -> Result<Option<Source>> {
        if let Ok(rec) = self.store.resolve_image(name) {
            return Ok(Some(Source::Image(rec.id)));
        }
        let reference: Reference = name
            .parse()
            .with_context(|| format!("invalid --cache-from value {name:?}"))?;
        let registry = self.registry()?;
        let doc = block_on(registry.fetch_document(&reference))?;
        drop(registry);
        let doc = match doc {
            Ok(doc) => doc,
            Err(e) => {
                warn(&format!(
                    "--cache-from {name}: {}: building without it",
                    crate::chain(&e)
                ));
                return Ok(None);
            }
        };
        if doc.is_index && kiln_cache::index::decode(&doc.bytes).is_ok_and(|e| e.is_some()) {
            return Ok(Some(Source::Cache(Location::Registry(reference))));
        }
        match self.pull(&reference, platform, &NoProgress) {
            Ok(rec) => Ok(Some(Source::Image(rec.id))),
            Err(e) => {
                warn(&format!(
                    "--cache-from {name}: cannot pull it: {}: building without it",
                    crate::chain(&e)
                ));
                Ok(None)
            }
        }
    }
}
