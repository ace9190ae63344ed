//! [`RemoteCache`]: the build's step cache, a local [`BuildCache`] first and
//! then the `--cache-from` sources in order; it remembers the records the
//! build used, for `--cache-to`.

use std::sync::{Arc, Mutex, OnceLock};

use kiln_builder::{BackendError, BuildCache, CacheRecord, ImageId};
use kiln_content::Store;
use kiln_model::Digest;
use kiln_registry::Registry;
use tracing::debug;

use crate::CacheError;
use crate::index::Entry;
use crate::source::{self, Loaded};
use crate::spec::Location;

/// What the cache needs of the host that runs the build.
pub trait Host: Send + Sync {
    /// Makes an image fetched from a cache usable as a step's result:
    /// records its parent, unpacks its layers (checking their diffIDs). An
    /// error makes the entry a miss.
    fn adopt(&self, record: &CacheRecord) -> Result<(), String>;
    /// Tells the user something went wrong with a cache; the build goes on.
    fn warn(&self, message: &str);
}

struct Source {
    location: Location,
    entries: OnceLock<Vec<Entry>>,
}

/// A step cache over a local cache and remote sources.
pub struct RemoteCache {
    local: Arc<dyn BuildCache>,
    sources: Vec<Source>,
    store: Store,
    registry: Arc<Registry>,
    host: Arc<dyn Host>,
    rt: Option<tokio::runtime::Runtime>,
    used: Mutex<Vec<CacheRecord>>,
}

impl Drop for RemoteCache {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn is_base_record(r: &CacheRecord) -> bool {
    r.key.starts_with("#(from) ")
}

impl RemoteCache {
    /// A cache reading `local` first, then each of `sources` in order (the
    /// first hit wins). Sources are read when the first step asks.
    pub fn new(
        local: Arc<dyn BuildCache>,
        sources: Vec<Location>,
        store: Store,
        registry: Arc<Registry>,
        host: Arc<dyn Host>,
    ) -> Result<RemoteCache, CacheError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(CacheError::Runtime)?;
        Ok(RemoteCache {
            local,
            sources: sources
                .into_iter()
                .map(|location| Source {
                    location,
                    entries: OnceLock::new(),
                })
                .collect(),
            store,
            registry,
            host,
            rt: Some(rt),
            used: Mutex::new(Vec::new()),
        })
    }

    /// The store fetched images go to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt().block_on(f)
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        // Set in `new`, taken only by `drop`.
        self.rt.as_ref().expect("runtime lives until drop")
    }

    fn entries<'a>(&self, s: &'a Source) -> &'a [Entry] {
        s.entries.get_or_init(
            || match source::load(self.rt(), &self.registry, &s.location) {
                Ok(Loaded::Cache(e)) => {
                    debug!(source = %s.location, entries = e.len(), "cache index read");
                    e
                }
                Ok(Loaded::Missing) => {
                    self.host.warn(&format!(
                        "cache {} not found: building without it",
                        s.location
                    ));
                    Vec::new()
                }
                Ok(Loaded::NotACache) => {
                    self.host.warn(&format!(
                        "{} is not a kiln build cache: ignoring it",
                        s.location
                    ));
                    Vec::new()
                }
                Err(e) => {
                    self.host.warn(&format!(
                        "cannot read cache {}: {e}: ignoring it",
                        s.location
                    ));
                    Vec::new()
                }
            },
        )
    }

    fn note(&self, r: &CacheRecord) {
        if is_base_record(r) {
            return;
        }
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if !used.iter().any(|u| u.parent == r.parent && u.key == r.key) {
            used.push(r.clone());
        }
    }

    /// Every record the build used or made, in order (base-resolution
    /// records left out).
    pub fn used(&self) -> Vec<CacheRecord> {
        self.used.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Tries `entry` of `s`: fetch, check, adopt. Errors are warnings and
    /// the entry a miss; an image that was not in the store before is
    /// removed again.
    fn try_remote(&self, s: &Source, entry: &Entry) -> Option<CacheRecord> {
        let rec = &entry.record;
        let id: Digest = rec.image.0.parse().ok()?;
        let had = matches!(self.store.get_image(&id), Ok(Some(_)));
        let r = source::fetch(self.rt(), &self.registry, &self.store, &s.location, entry)
            .and_then(|()| source::check_step(&self.store, rec))
            .and_then(|()| self.host.adopt(rec));
        match r {
            Ok(()) => Some(rec.clone()),
            Err(e) => {
                self.host.warn(&format!(
                    "ignoring cache entry {} from {}: {e}",
                    rec.image, s.location
                ));
                if !had {
                    let _ = self.store.remove_image(&id);
                }
                None
            }
        }
    }
}

impl BuildCache for RemoteCache {
    fn children(&self, parent: Option<&ImageId>) -> Result<Vec<CacheRecord>, BackendError> {
        let mut out = self.local.children(parent)?;
        for s in &self.sources {
            out.extend(
                self.entries(s)
                    .iter()
                    .filter(|e| e.record.parent.as_ref() == parent)
                    .map(|e| e.record.clone()),
            );
        }
        Ok(out)
    }

    fn record(&self, record: &CacheRecord) -> Result<(), BackendError> {
        self.local.record(record)?;
        self.note(record);
        Ok(())
    }

    fn lookup(
        &self,
        parent: Option<&ImageId>,
        key: &str,
    ) -> Result<Option<CacheRecord>, BackendError> {
        if let Some(hit) = self.local.lookup(parent, key)? {
            self.note(&hit);
            return Ok(Some(hit));
        }
        if key.starts_with("#(from) ") {
            return Ok(None);
        }
        for s in &self.sources {
            let found = self
                .entries(s)
                .iter()
                .find(|e| e.record.parent.as_ref() == parent && e.record.key == key);
            if let Some(entry) = found
                && let Some(rec) = self.try_remote(s, entry)
            {
                self.local.record(&rec)?;
                self.note(&rec);
                return Ok(Some(rec));
            }
        }
        Ok(None)
    }
}
