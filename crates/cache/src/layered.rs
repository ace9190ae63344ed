//! [`RemoteCache`]: the build's step cache, a local [`BuildCache`] first and
//! then the `--cache-from` sources in order; it remembers the records the
//! build used, for `--cache-to`.

use std::sync::{Arc, Mutex, OnceLock};

use kiln_builder::{BackendError, BuildCache, CacheRecord, ImageId};
use kiln_content::Store;
use kiln_model::Digest;
use kiln_registry::{Registry, RegistryConfig};
use tracing::debug;

use kiln_model::ContainerConfig;

use crate::classic;
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

/// One `--cache-from` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A kiln cache (registry index or OCI layout).
    Cache(Location),
    /// An image in the store, cut at each step (Docker's classic
    /// `--cache-from IMAGE`).
    Image(Digest),
}

enum State {
    Cache {
        location: Location,
        entries: OnceLock<Vec<Entry>>,
    },
    Image {
        id: Digest,
        target: OnceLock<Option<classic::Target>>,
    },
}

/// A step cache over a local cache and remote sources.
pub struct RemoteCache {
    local: Arc<dyn BuildCache>,
    sources: Vec<State>,
    store: Store,
    registry: RegistryConfig,
    host: Arc<dyn Host>,
    used: Mutex<Vec<CacheRecord>>,
}

fn is_base_record(r: &CacheRecord) -> bool {
    r.key.starts_with("#(from) ")
}

impl RemoteCache {
    /// A cache reading `local` first, then each of `sources` in order (the
    /// first hit wins). Sources are read when the first step asks.
    pub fn new(
        local: Arc<dyn BuildCache>,
        sources: Vec<Source>,
        store: Store,
        registry: RegistryConfig,
        host: Arc<dyn Host>,
    ) -> RemoteCache {
        RemoteCache {
            local,
            sources: sources
                .into_iter()
                .map(|s| match s {
                    Source::Cache(location) => State::Cache {
                        location,
                        entries: OnceLock::new(),
                    },
                    Source::Image(id) => State::Image {
                        id,
                        target: OnceLock::new(),
                    },
                })
                .collect(),
            store,
            registry,
            host,
            used: Mutex::new(Vec::new()),
        }
    }

    /// The store fetched images go to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Runs `f` with a registry client on an async runtime made for it
    /// and gone when it returns: no runtime (and none of its threads) is
    /// alive while the build forks its steps' containers.
    pub(crate) fn with_registry<T>(
        &self,
        f: impl AsyncFnOnce(&Registry) -> T,
    ) -> Result<T, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
        let registry = Registry::new(self.registry.clone());
        let out = rt.block_on(f(&registry));
        drop(registry);
        rt.shutdown_background();
        Ok(out)
    }

    fn entries<'a>(&self, location: &Location, entries: &'a OnceLock<Vec<Entry>>) -> &'a [Entry] {
        entries.get_or_init(|| match source::load(self, location) {
            Ok(Loaded::Cache(e)) => {
                debug!(source = %location, entries = e.len(), "cache index read");
                e
            }
            Ok(Loaded::Missing) => {
                self.host
                    .warn(&format!("cache {location} not found: building without it"));
                Vec::new()
            }
            Ok(Loaded::NotACache) => {
                self.host.warn(&format!(
                    "{location} is not a kiln build cache: ignoring it"
                ));
                Vec::new()
            }
            Err(e) => {
                self.host
                    .warn(&format!("cannot read cache {location}: {e}: ignoring it"));
                Vec::new()
            }
        })
    }

    fn target<'a>(
        &self,
        id: &Digest,
        target: &'a OnceLock<Option<classic::Target>>,
    ) -> Option<&'a classic::Target> {
        target
            .get_or_init(|| match classic::load(&self.store, id) {
                Ok(t) => Some(t),
                Err(e) => {
                    self.host
                        .warn(&format!("cannot use image {id} as a cache source: {e}"));
                    None
                }
            })
            .as_ref()
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
    fn try_remote(&self, location: &Location, entry: &Entry) -> Option<CacheRecord> {
        let rec = &entry.record;
        let id: Digest = rec.image.0.parse().ok()?;
        let had = matches!(self.store.get_image(&id), Ok(Some(_)));
        let r = source::fetch(self, &self.store, location, entry)
            .and_then(|()| source::check_step(&self.store, rec))
            .and_then(|()| self.host.adopt(rec));
        match r {
            Ok(()) => Some(rec.clone()),
            Err(e) => {
                self.host.warn(&format!(
                    "ignoring cache entry {} from {location}: {e}",
                    rec.image
                ));
                if !had {
                    let _ = self.store.remove_image(&id);
                }
                None
            }
        }
    }
}

impl RemoteCache {
    /// The image `t` gives for the step, adopted as a fetched one is.
    fn try_image(
        &self,
        t: &classic::Target,
        parent: Option<&ImageId>,
        key: &str,
        config: &ContainerConfig,
    ) -> Option<CacheRecord> {
        let made = classic::cut(&self.store, t, parent, key, config).and_then(|id| match id {
            Some(id) => {
                let rec = CacheRecord {
                    parent: parent.cloned(),
                    key: key.to_string(),
                    shape: key.to_string(),
                    files: Vec::new(),
                    image: ImageId(id.to_string()),
                };
                self.host.adopt(&rec).map(|()| Some(rec))
            }
            None => Ok(None),
        });
        made.unwrap_or_else(|e| {
            self.host.warn(&format!(
                "cannot use the cache source image for this step: {e}"
            ));
            None
        })
    }
}

impl BuildCache for RemoteCache {
    fn children(&self, parent: Option<&ImageId>) -> Result<Vec<CacheRecord>, BackendError> {
        let mut out = self.local.children(parent)?;
        for s in &self.sources {
            if let State::Cache { location, entries } = s {
                out.extend(
                    self.entries(location, entries)
                        .iter()
                        .filter(|e| e.record.parent.as_ref() == parent)
                        .map(|e| e.record.clone()),
                );
            }
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
        self.lookup_step(parent, key, &ContainerConfig::default())
    }

    fn lookup_step(
        &self,
        parent: Option<&ImageId>,
        key: &str,
        config: &ContainerConfig,
    ) -> Result<Option<CacheRecord>, BackendError> {
        if let Some(hit) = self.local.lookup(parent, key)? {
            self.note(&hit);
            return Ok(Some(hit));
        }
        if key.starts_with("#(from) ") {
            return Ok(None);
        }
        for s in &self.sources {
            let hit = match s {
                State::Cache { location, entries } => self
                    .entries(location, entries)
                    .iter()
                    .find(|e| e.record.parent.as_ref() == parent && e.record.key == key)
                    .and_then(|entry| self.try_remote(location, entry)),
                State::Image { id, target } => match self.target(id, target) {
                    Some(t) => self.try_image(t, parent, key, config),
                    None => None,
                },
            };
            if let Some(rec) = hit {
                self.local.record(&rec)?;
                self.note(&rec);
                return Ok(Some(rec));
            }
        }
        Ok(None)
    }
}
