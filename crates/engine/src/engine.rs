//! The engine: the store, the chosen snapshotter and the registry
//! settings, opened once from [`Options`] and handed to every operation.
//!
//! This is the only place that picks concrete implementations (DESIGN rule 11).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kiln_content::Store;
use kiln_snapshot::{CopySnapshotter, OverlaySnapshotter, Snapshotter};

use crate::error::{Context as _, Result};

/// Which snapshotter to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotterChoice {
    /// overlay when it works here and kiln runs as root, copy otherwise (the
    /// choice is remembered per store).
    Auto,
    /// overlayfs: layers shared between images and containers (root only).
    Overlay,
    /// plain directories copied from their parents (no overlayfs needed).
    Copy,
}

/// How to open an [`Engine`]: what a front end read from its flags,
/// environment and config.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where kiln keeps images, layers and containers.
    pub root: PathBuf,
    /// Snapshotter for root filesystems.
    pub snapshotter: SnapshotterChoice,
    /// Registries (`host[:port]`) reached over plain HTTP, besides those of
    /// the config file.
    pub insecure_registries: Vec<String>,
    /// How long a registry may keep kiln waiting.
    pub registry_timeout: Duration,
    /// Free space to keep on the store's filesystem.
    pub min_free_space: kiln_content::SpaceReserve,
    /// kiln's config file (JSON: `{"insecure-registries": ["host:port"]}`),
    /// read when a registry is first needed; a missing file is no error,
    /// `None` none at all.
    pub config: Option<PathBuf>,
    /// Docker's client config (credentials), if any.
    pub docker_config: Option<PathBuf>,
    /// Where the engine says what it decided or could not do on the way
    /// (the snapshotter it chose, leftovers it could not reclaim): a line
    /// without the program name.
    pub notice: fn(&str),
}

impl Options {
    /// Options for a store at `root` with the defaults: auto snapshotter, no
    /// insecure registries, 30 s registry timeout, the default free-space
    /// reserve, no config file, notices on stderr.
    pub fn new(root: impl Into<PathBuf>) -> Options {
        Options {
            root: root.into(),
            snapshotter: SnapshotterChoice::Auto,
            insecure_registries: Vec::new(),
            registry_timeout: Duration::from_secs(30),
            min_free_space: kiln_content::SpaceReserve::default(),
            config: None,
            docker_config: None,
            notice: |line| eprintln!("kiln: {line}"),
        }
    }
}

/// Whether kiln runs without root (rootless): layers are then unpacked
/// without owners or devices, into copy snapshots, and containers always get
/// a user namespace in which the caller is root.
pub fn rootless() -> bool {
    kiln_sys::process::geteuid() != 0
}

/// Marks the overlay mounts of a snapshot whose upper dir is thrown away
/// or turned into a layer right after use (a build step's, an `--rm`
/// container's) `volatile` (Linux 5.10+): its unmount then skips the sync
/// of the whole upper filesystem (0.18 s for 400 MB written, here). Such a
/// snapshot's files are no more durable than an unpacked layer's, which
/// are never synced either (ARCHITECTURE.md, "Durability"); the layer blob
/// made from it is.
pub fn make_volatile(mounts: &mut [kiln_snapshot::Mount]) {
    static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let supported = *SUPPORTED.get_or_init(|| {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release
            .trim()
            .split(|c: char| !c.is_ascii_digit())
            .map(|p| p.parse::<u32>().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (5, 10)
    });
    for m in mounts.iter_mut().filter(|m| m.fstype == "overlay") {
        if supported && !m.options.iter().any(|o| o == "volatile") {
            m.options.push("volatile".to_owned());
        }
    }
}

/// What every operation works with: the store and how it is used.
pub struct Engine {
    /// The options it was opened with.
    pub opts: Options,
    /// The content store.
    pub store: Store,
    snapshotter: Option<Arc<dyn Snapshotter>>,
}

impl Engine {
    /// Opens the store under `opts.root`.
    pub fn open(opts: Options) -> Result<Engine> {
        // TLS (rustls) for every HTTPS client kiln makes, ADD <url> included.
        kiln_registry::init_tls();
        let store = Store::open(&opts.root).with_context(|| {
            if rootless() {
                format!(
                    "cannot open the store at {} (kiln runs rootless as uid {}: pass --root or set KILN_ROOT to a directory this user may write)",
                    opts.root.display(),
                    kiln_sys::process::geteuid()
                )
            } else {
                format!("cannot open the store at {}", opts.root.display())
            }
        })?;
        store.set_space_reserve(opts.min_free_space);
        let mut app = Engine {
            opts,
            store,
            snapshotter: None,
        };
        // What killed kiln processes left half made (one readdir when none).
        // A failure here must not keep the user from the store: said, and
        // tried again by the next command.
        if let Err(e) = crate::recover::recover(&mut app) {
            (app.opts.notice)(&format!(
                "cannot reclaim what killed kiln processes left: {}",
                crate::error::chain(&e)
            ));
        }
        Ok(app)
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.opts.root
    }

    /// The step cache's directory (`build/cache/`): kiln-builder's
    /// `JsonCache` format, used by builds and counted and cleared by
    /// [`gc`](crate::gc).
    pub fn step_cache_dir(&self) -> PathBuf {
        self.root().join("build").join("cache")
    }

    /// The snapshotter: the one asked for, or (auto) the one chosen the first
    /// time this store needed one, recorded in `<root>/snapshotter`.
    pub fn snapshotter(&mut self) -> Result<Arc<dyn Snapshotter>> {
        if let Some(s) = &self.snapshotter {
            return Ok(s.clone());
        }
        let name = match self.opts.snapshotter {
            SnapshotterChoice::Overlay if rootless() => crate::bail!(
                "the overlay snapshotter needs root (its layers hold whiteouts as 0/0 devices and trusted.overlay xattrs): rootless kiln uses --snapshotter copy"
            ),
            SnapshotterChoice::Overlay => "overlay".to_owned(),
            SnapshotterChoice::Copy => "copy".to_owned(),
            SnapshotterChoice::Auto => self.auto_snapshotter()?,
        };
        let dir = self.root().join("snapshots").join(&name);
        let s: Arc<dyn Snapshotter> = if name == "overlay" {
            Arc::new(OverlaySnapshotter::new(&dir).context("cannot open the overlay snapshotter")?)
        } else {
            Arc::new(CopySnapshotter::new(&dir).context("cannot open the copy snapshotter")?)
        };
        self.snapshotter = Some(s.clone());
        Ok(s)
    }

    fn auto_snapshotter(&self) -> Result<String> {
        let marker = self.root().join("snapshotter");
        if let Ok(saved) = std::fs::read_to_string(&marker) {
            let saved = saved.trim();
            if saved == "overlay" && rootless() {
                crate::bail!(
                    "the store at {} uses the overlay snapshotter, which needs root: rootless kiln needs a store of its own (--root or KILN_ROOT)",
                    self.root().display()
                );
            }
            if saved == "overlay" || saved == "copy" {
                return Ok(saved.to_owned());
            }
        }
        if rootless() {
            (self.opts.notice)(&format!(
                "using the copy snapshotter: kiln runs rootless (uid {}), and overlay layers need root for their whiteouts (0/0 devices, trusted.overlay xattrs)",
                kiln_sys::process::geteuid()
            ));
            std::fs::write(&marker, "copy")
                .with_context(|| format!("cannot write {}", marker.display()))?;
            return Ok("copy".to_owned());
        }
        let probe_dir = self.root().join("snapshots").join("probe");
        let name = match kiln_snapshot::overlay_supported(&probe_dir) {
            Ok(()) => {
                (self.opts.notice)(&format!(
                    "using the overlay snapshotter (overlayfs works under {})",
                    self.root().display()
                ));
                "overlay"
            }
            Err(err) => {
                (self.opts.notice)(&format!(
                    "using the copy snapshotter: overlayfs does not work here ({err})"
                ));
                "copy"
            }
        };
        let _ = std::fs::remove_dir_all(&probe_dir);
        std::fs::write(&marker, name)
            .with_context(|| format!("cannot write {}", marker.display()))?;
        Ok(name.to_owned())
    }

    /// How to unpack layers: owners and devices kept for root; rootless,
    /// files belong to the caller (root in the container) and device nodes
    /// are skipped.
    pub fn unpack_options(&self) -> kiln_image::UnpackOptions {
        let root = !rootless();
        kiln_image::UnpackOptions {
            preserve_owners: root,
            allow_devices: root,
            skip_devices: !root,
        }
    }

    /// Registries reached over plain HTTP: the flags plus the config file's list.
    pub fn insecure_registries(&self) -> Result<Vec<String>> {
        let mut list = self.opts.insecure_registries.clone();
        let Some(config) = &self.opts.config else {
            return Ok(list);
        };
        match std::fs::read(config) {
            Ok(bytes) => {
                let v: serde_json::Value = serde_json::from_slice(&bytes)
                    .with_context(|| format!("invalid config file {}", config.display()))?;
                if let Some(items) = v.get("insecure-registries").and_then(|x| x.as_array()) {
                    list.extend(items.iter().filter_map(|x| x.as_str().map(str::to_owned)));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", config.display()));
            }
        }
        Ok(list)
    }
}
