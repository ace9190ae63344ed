//! The command context: the store, the chosen snapshotter and the registry
//! settings, built once from the global flags and handed to every command.
//!
//! This is the only place that picks concrete implementations (DESIGN rule 11).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use kiln_content::Store;
use kiln_snapshot::{CopySnapshotter, OverlaySnapshotter, Snapshotter};

/// Which snapshotter the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SnapshotterChoice {
    /// overlay when it works here and kiln runs as root, copy otherwise (the
    /// choice is remembered per store).
    Auto,
    /// overlayfs: layers shared between images and containers (root only).
    Overlay,
    /// plain directories copied from their parents (no overlayfs needed).
    Copy,
}

/// Global options shared by every command.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct GlobalOpts {
    /// Where kiln keeps images, layers and containers (root: /var/lib/kiln;
    /// other users, as rootless podman: $XDG_DATA_HOME/kiln, else
    /// ~/.local/share/kiln).
    #[arg(
        long,
        global = true,
        env = "KILN_ROOT",
        default_value_os_t = default_root(),
        hide_default_value = true
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

    /// Seconds a registry may keep kiln waiting: a request fails when
    /// nothing (or under 16 KiB) arrives for this long, or the registry
    /// stops reading an upload for this long.
    #[arg(
        long,
        global = true,
        env = "KILN_REGISTRY_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    pub(crate) registry_timeout: u64,

    /// Free space to keep on the store's filesystem: a load, import, pull or
    /// unpack stops with an error (leaving nothing) before the filesystem
    /// falls below it. A size (`2G`, `512M`), a percentage of the
    /// filesystem (`5%`), `0` for none, or `default`: 1 GiB or 5 % of the
    /// filesystem, whichever is smaller.
    #[arg(
        long,
        global = true,
        env = "KILN_MIN_FREE",
        value_name = "SIZE",
        default_value = "default"
    )]
    pub(crate) min_free_space: kiln_content::SpaceReserve,

    /// kiln's config file (JSON: `{"insecure-registries": ["host:port"]}`).
    #[arg(
        long,
        global = true,
        env = "KILN_CONFIG",
        default_value = "/etc/kiln/config.json"
    )]
    pub(crate) config: PathBuf,
}

/// Whether kiln runs without root (rootless): layers are then unpacked
/// without owners or devices, into copy snapshots, and containers always get
/// a user namespace in which the caller is root.
pub(crate) fn rootless() -> bool {
    kiln_sys::process::geteuid() != 0
}

/// Marks the overlay mounts of a snapshot whose upper dir is thrown away
/// or turned into a layer right after use (a build step's, an `--rm`
/// container's) `volatile` (Linux 5.10+): its unmount then skips the sync
/// of the whole upper filesystem (0.18 s for 400 MB written, here). Such a
/// snapshot's files are no more durable than an unpacked layer's, which
/// are never synced either (ARCHITECTURE.md, "Durability"); the layer blob
/// made from it is.
pub(crate) fn make_volatile(mounts: &mut [kiln_snapshot::Mount]) {
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

/// The default store root: `/var/lib/kiln` for root; for anyone else
/// `$XDG_DATA_HOME/kiln` (when absolute), else `$HOME/.local/share/kiln`.
fn default_root() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).map(PathBuf::from);
    rootless_root(
        rootless(),
        var("XDG_DATA_HOME").as_deref(),
        var("HOME").as_deref(),
    )
}

fn rootless_root(rootless: bool, xdg_data_home: Option<&Path>, home: Option<&Path>) -> PathBuf {
    if !rootless {
        return PathBuf::from("/var/lib/kiln");
    }
    match (xdg_data_home, home) {
        (Some(x), _) if x.is_absolute() => x.join("kiln"),
        (_, Some(h)) if h.is_absolute() => h.join(".local/share/kiln"),
        // Nowhere of the user's own: App::open says to pass --root.
        _ => PathBuf::from("/var/lib/kiln"),
    }
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
        let mut app = App {
            opts,
            store,
            snapshotter: None,
        };
        // What killed kiln processes left half made (one readdir when none).
        // A failure here must not keep the user from the store: said, and
        // tried again by the next command.
        if let Err(e) = crate::gc::recover(&mut app) {
            eprintln!("kiln: cannot reclaim what killed kiln processes left: {e:#}");
        }
        Ok(app)
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
            SnapshotterChoice::Overlay if rootless() => bail!(
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
                bail!(
                    "the store at {} uses the overlay snapshotter, which needs root: rootless kiln needs a store of its own (--root or KILN_ROOT)",
                    self.root().display()
                );
            }
            if saved == "overlay" || saved == "copy" {
                return Ok(saved.to_owned());
            }
        }
        if rootless() {
            eprintln!(
                "kiln: using the copy snapshotter: kiln runs rootless (uid {}), and overlay layers need root for their whiteouts (0/0 devices, trusted.overlay xattrs)",
                kiln_sys::process::geteuid()
            );
            std::fs::write(&marker, "copy")
                .with_context(|| format!("cannot write {}", marker.display()))?;
            return Ok("copy".to_owned());
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

    /// How to unpack layers: owners and devices kept for root; rootless,
    /// files belong to the caller (root in the container) and device nodes
    /// are skipped.
    pub(crate) fn unpack_options(&self) -> kiln_image::UnpackOptions {
        let root = !rootless();
        kiln_image::UnpackOptions {
            preserve_owners: root,
            allow_devices: root,
            skip_devices: !root,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_keeps_var_lib_kiln() {
        assert_eq!(
            rootless_root(false, Some(Path::new("/x")), Some(Path::new("/home/u"))),
            PathBuf::from("/var/lib/kiln")
        );
    }

    #[test]
    fn rootless_prefers_xdg_data_home_then_home() {
        assert_eq!(
            rootless_root(true, Some(Path::new("/data")), Some(Path::new("/home/u"))),
            PathBuf::from("/data/kiln")
        );
        // A relative XDG_DATA_HOME is ignored, as the XDG spec says.
        assert_eq!(
            rootless_root(true, Some(Path::new("rel")), Some(Path::new("/home/u"))),
            PathBuf::from("/home/u/.local/share/kiln")
        );
        assert_eq!(
            rootless_root(true, None, Some(Path::new("/home/u"))),
            PathBuf::from("/home/u/.local/share/kiln")
        );
    }
}
