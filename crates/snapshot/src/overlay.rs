//! [`OverlaySnapshotter`]: every snapshot is a directory `snapshots/<id>/fs`
//! (plus `work` for active ones); layers are shared by every snapshot built
//! on them, and an active snapshot mounts as overlayfs with the chain as
//! lower dirs, named through short links `l/<id>` (so that the option
//! string of about 100 layers fits the page mount(2) takes; longer chains,
//! up to overlay's depth limit, mount through fsconfig's `lowerdir+`, see
//! `kiln_sys::MountOps::mount_with_options`).

use std::fs;
use std::path::{Path, PathBuf};

use kiln_layer::WhiteoutMode;

use crate::meta::{Meta, Record, diffable};
use crate::{
    ApplyTarget, DiffSource, Error, Info, Kind, Mount, Result, Snapshotter, Usage, io_err,
};

/// Overlayfs's limit on the number of lower layers (`OVL_MAX_STACK`).
pub const MAX_LOWER_LAYERS: usize = 500;

/// Overlayfs snapshotter rooted at a directory (for instance
/// `/var/lib/kiln/snapshots/overlay`). Needs root and a filesystem that
/// supports overlay upper dirs (`trusted.*` xattrs); see
/// [`crate::overlay_supported`].
pub struct OverlaySnapshotter {
    meta: Meta,
}

impl OverlaySnapshotter {
    /// Opens or creates a snapshotter under `root`, removing leftovers of an
    /// interrupted operation.
    pub fn new(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        let meta = Meta::open(root)?;
        let links = root.join("l");
        fs::create_dir_all(&links).map_err(io_err("creating", &links))?;
        // Drop links whose snapshot is gone.
        for entry in fs::read_dir(&links).map_err(io_err("listing", &links))? {
            let entry = entry.map_err(io_err("listing", &links))?;
            if !entry.path().exists() {
                let path = entry.path();
                fs::remove_file(&path).map_err(io_err("removing stale link", &path))?;
            }
        }
        Ok(Self { meta })
    }

    fn fs_dir(&self, id: u64) -> PathBuf {
        self.meta.fs_dir(id)
    }

    fn link(&self, id: u64) -> PathBuf {
        self.meta.root().join("l").join(id.to_string())
    }

    fn make_link(&self, id: u64) -> Result<()> {
        let link = self.link(id);
        match std::os::unix::fs::symlink(format!("../snapshots/{id}/fs"), &link) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(io_err("linking", &link)(e)),
        }
    }

    fn mounts_for(&self, key: &str, rec: &Record, chain: &[u64]) -> Result<Vec<Mount>> {
        let own = self.meta.dir(rec.id);
        if rec.kind == Kind::Active && chain.is_empty() {
            return Ok(vec![bind(&own.join("fs"), false)]);
        }
        if rec.kind == Kind::View {
            match chain {
                [] => return Ok(vec![bind(&own.join("fs"), true)]),
                [only] => return Ok(vec![bind(&self.fs_dir(*only), true)]),
                _ => {}
            }
        }
        if chain.len() > MAX_LOWER_LAYERS {
            return Err(Error::ChainTooDeep {
                key: key.to_owned(),
                depth: chain.len(),
                max: MAX_LOWER_LAYERS,
            });
        }
        let lower: Vec<String> = chain
            .iter()
            .map(|id| self.link(*id).display().to_string())
            .collect();
        let mut options = vec![
            "index=off".to_owned(),
            "redirect_dir=off".to_owned(),
            "metacopy=off".to_owned(),
        ];
        if rec.kind == Kind::View {
            options.push("ro".to_owned());
        } else {
            options.push(format!("upperdir={}", own.join("fs").display()));
            options.push(format!("workdir={}", own.join("work").display()));
        }
        options.push(format!("lowerdir={}", lower.join(":")));
        Ok(vec![Mount {
            fstype: "overlay".to_owned(),
            source: "overlay".to_owned(),
            options,
        }])
    }

    fn create(&self, key: &str, parent: Option<&str>, kind: Kind) -> Result<Vec<Mount>> {
        let rec = self.meta.create(key, parent, kind, |tmp, _| {
            for sub in ["fs", "work"] {
                let d = tmp.join(sub);
                fs::create_dir(&d).map_err(io_err("creating", &d))?;
            }
            // The upper dir's mode is the container's `/`: 0755 whatever
            // the caller's umask (Docker's daemon always works under 022;
            // under umask 077 a non-root user could not reach /dev/null).
            let upper = tmp.join("fs");
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(&upper, fs::Permissions::from_mode(0o755))
                .map_err(io_err("chmod", &upper))
        })?;
        let mounts = self.make_link(rec.id).and_then(|()| self.mounts(key));
        if mounts.is_err() {
            // Do not leave a snapshot its caller never got (for instance a
            // chain too long to mount).
            let _ = self.remove(key);
        }
        mounts
    }
}

pub(crate) fn bind(dir: &Path, read_only: bool) -> Mount {
    Mount {
        fstype: "bind".to_owned(),
        source: dir.display().to_string(),
        options: vec![
            "rbind".to_owned(),
            if read_only { "ro" } else { "rw" }.to_owned(),
        ],
    }
}

impl Snapshotter for OverlaySnapshotter {
    fn name(&self) -> &'static str {
        "overlay"
    }

    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.create(key, parent, Kind::Active)
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.create(key, parent, Kind::View)
    }

    fn commit(&self, name: &str, key: &str) -> Result<()> {
        self.meta.commit(name, key)
    }

    fn remove(&self, key: &str) -> Result<()> {
        let rec = self.meta.remove(key)?;
        let link = self.link(rec.id);
        match fs::remove_file(&link) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io_err("removing link", &link)(e))
            }
            _ => Ok(()),
        }
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        self.meta.read(|db| {
            let rec = db.get(key)?;
            if rec.kind == Kind::Committed {
                return Err(Error::WrongKind {
                    key: key.to_owned(),
                    actual: rec.kind,
                    expected: "active or view",
                });
            }
            let chain = match &rec.parent {
                Some(p) => db.chain(p)?,
                None => Vec::new(),
            };
            self.mounts_for(key, rec, &chain)
        })
    }

    fn usage(&self, key: &str) -> Result<Usage> {
        self.meta.usage(key)
    }

    fn stat(&self, key: &str) -> Result<Info> {
        self.meta.read(|db| db.info(key))
    }

    fn list(&self) -> Result<Vec<Info>> {
        self.meta.list()
    }

    fn apply_target(&self, key: &str) -> Result<ApplyTarget> {
        Ok(ApplyTarget {
            dir: self.meta.active_fs_dir(key)?,
            whiteouts: WhiteoutMode::Overlay,
        })
    }

    fn diff_source(&self, key: &str) -> Result<DiffSource> {
        let id = self.meta.read(|db| Ok(diffable(db, key)?.id))?;
        Ok(DiffSource::OverlayUpper {
            upper: self.fs_dir(id),
        })
    }
}
