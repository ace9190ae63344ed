//! The global flags and config, turned into the engine's [`Options`]: the
//! store root (rootless: the user's data directory), the snapshotter, the
//! registry settings, the free-space reserve.

use std::path::{Path, PathBuf};

use anyhow::Result;
use kiln_engine::{Engine, Options, rootless};

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

impl From<SnapshotterChoice> for kiln_engine::SnapshotterChoice {
    fn from(c: SnapshotterChoice) -> Self {
        match c {
            SnapshotterChoice::Auto => kiln_engine::SnapshotterChoice::Auto,
            SnapshotterChoice::Overlay => kiln_engine::SnapshotterChoice::Overlay,
            SnapshotterChoice::Copy => kiln_engine::SnapshotterChoice::Copy,
        }
    }
}

/// Where Docker's client config lives: `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
pub(crate) fn docker_config_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return PathBuf::from(dir).join("config.json");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".docker").join("config.json")
}

/// Opens the engine (the store under `--root`) as the flags say.
pub(crate) fn open(opts: GlobalOpts) -> Result<Engine> {
    Ok(Engine::open(Options {
        root: opts.root,
        snapshotter: opts.snapshotter.into(),
        insecure_registries: opts.insecure_registries,
        registry_timeout: std::time::Duration::from_secs(opts.registry_timeout),
        min_free_space: opts.min_free_space,
        config: Some(opts.config),
        docker_config: Some(docker_config_path()),
        notice: |line| eprintln!("kiln: {line}"),
    })?)
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
