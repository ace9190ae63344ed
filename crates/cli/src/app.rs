//! The command context: the store, the chosen snapshotter and the registry
//! settings, built once from the global flags and handed to every command.
//!
//! This is the only place that picks concrete implementations (DESIGN rule 11).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use kiln_content::Store;
use kiln_snapshot::{CopySnapshotter, OverlaySnapshotter, Snapshotter};

/// Which snapshotter the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SnapshotterChoice {
    /// overlay when it works here, copy otherwise (the choice is remembered per store).
    Auto,
    /// overlayfs: layers shared between images and containers.
    Overlay,
    /// plain directories copied from their parents (no overlayfs needed).
    Copy,
}

/// Global options shared by every command.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct GlobalOpts {
    /// Where kiln keeps images, layers and containers.
    #[arg(
        long,
        global = true,
        env = "KILN_ROOT",
        default_value = "/var/lib/kiln"
    )]
    pub(crate) root: PathBuf,

    /// Snapshotter for root filesystems.
    #[arg(
        long,
        global = true,
        env = "KILN_SNAPSHOTTER",
        value_enum,
        default_value = "auto"
    )]
    pub(crate) snapshotter: SnapshotterChoice,

    /// A registry (`host[:port]`) to reach over plain HTTP (repeatable; also
    /// read from `insecure-registries` in the config file).
    #[arg(long = "insecure-registry", global = true, value_name = "HOST")]
    pub(crate) insecure_registries: Vec<String>,

    /// kiln's config file (JSON: `{"insecure-registries": ["host:port"]}`).
    #[arg(
        long,
        global = true,
        env = "KILN_CONFIG",
        default_value = "/etc/kiln/config.json"
    )]
    pub(crate) config: PathBuf,
}

/// What every command works with.
pub(crate) struct App {
    /// The global options as given.
    pub(crate) opts: GlobalOpts,
    /// The content store.
    pub(crate) store: Store,
    snapshotter: Option<Arc<dyn Snapshotter>>,
}

impl App {
    /// Opens the store under `opts.root`.
    pub(crate) fn open(opts: GlobalOpts) -> Result<App> {
        let store = Store::open(&opts.root)
            .with_context(|| format!("cannot open the store at {}", opts.root.display()))?;
        Ok(App {
            opts,
            store,
            snapshotter: None,
        })
    }

    /// The store root.
    pub(crate) fn root(&self) -> &Path {
        &self.opts.root
    }

    /// The snapshotter: the one asked for, or (auto) the one chosen the first
    /// time this store needed one, recorded in `<root>/snapshotter`.
    pub(crate) fn snapshotter(&mut self) -> Result<Arc<dyn Snapshotter>> {
        if let Some(s) = &self.snapshotter {
            return Ok(s.clone());
        }
        let name = match self.opts.snapshotter {
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
            if saved == "overlay" || saved == "copy" {
                return Ok(saved.to_owned());
            }
        }
        let probe_dir = self.root().join("snapshots").join("probe");
        let name = match kiln_snapshot::overlay_supported(&probe_dir) {
            Ok(()) => {
                eprintln!(
                    "kiln: using the overlay snapshotter (overlayfs works under {})",
                    self.root().display()
                );
                "overlay"
            }
            Err(err) => {
                eprintln!("kiln: using the copy snapshotter: overlayfs does not work here ({err})");
                "copy"
            }
        };
        let _ = std::fs::remove_dir_all(&probe_dir);
        std::fs::write(&marker, name)
            .with_context(|| format!("cannot write {}", marker.display()))?;
        Ok(name.to_owned())
    }

    /// Registries reached over plain HTTP: the flags plus the config file's list.
    pub(crate) fn insecure_registries(&self) -> Result<Vec<String>> {
        let mut list = self.opts.insecure_registries.clone();
        match std::fs::read(&self.opts.config) {
            Ok(bytes) => {
                let v: serde_json::Value = serde_json::from_slice(&bytes).with_context(|| {
                    format!("invalid config file {}", self.opts.config.display())
                })?;
                if let Some(items) = v.get("insecure-registries").and_then(|x| x.as_array()) {
                    list.extend(items.iter().filter_map(|x| x.as_str().map(str::to_owned)));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read {}", self.opts.config.display()));
            }
        }
        Ok(list)
    }
}
