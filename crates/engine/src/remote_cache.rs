//! `--cache-from` / `--cache-to` over this engine's store: a
//! [`kiln_cache::RemoteCache`] in front of the local step cache, whose
//! fetched step images are adopted as local builds are (the parent
//! recorded, the layers unpacked with their diffIDs checked).

use std::sync::Arc;

use kiln_builder::{BuildCache, CacheRecord};
use kiln_cache::{Host, Location, RemoteCache};
use kiln_content::Store;
use kiln_model::Digest;
use kiln_snapshot::Snapshotter;

use crate::PARENT_ANNOTATION;
use crate::engine::Engine;
use crate::error::{Error, Result};

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
        sources: Vec<Location>,
        warn: Warn,
    ) -> Result<RemoteCache> {
        let host = EngineHost {
            store: self.store.clone(),
            snapshotter: self.snapshotter()?,
            unpack: self.unpack_options(),
            warn,
        };
        let registry = Arc::new(self.registry()?);
        Ok(
            RemoteCache::new(local, sources, self.store.clone(), registry, Arc::new(host))
                .map_err(Error::msg)?,
        )
    }
}
