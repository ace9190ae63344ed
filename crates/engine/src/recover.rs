//! The recovery pass: what killed kiln processes left half made, found by
//! their owner marks ([`kiln_content::Store::claim`]) and reclaimed.

use std::path::Path;

use kiln_sys::MountOps as _;

use crate::bail;
use crate::engine::Engine;
use crate::error::{Result, chain};

/// Kinds of owner marks ([`kiln_content::Store::claim`]) the engine takes, in
/// the order a recovery reclaims them: a step's container first (it may
/// still hold the rest), then host mounts, then directories, then
/// snapshots (unmounted by then).
pub mod claim {
    /// A container state directory (`containers/<id>`) of a build step.
    pub const CONTAINER: &str = "container";
    /// A host mount point (`build/mnt/<key>`).
    pub const MOUNT: &str = "mount";
    /// A scratch directory (`build/steps/<id>`).
    pub const DIR: &str = "dir";
    /// An active snapshot key (`unpack-*`, a build step's).
    pub const SNAPSHOT: &str = "snapshot";

    pub(super) fn order(kind: &str) -> usize {
        [CONTAINER, MOUNT, DIR, SNAPSHOT]
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(usize::MAX)
    }
}

/// The recovery pass: reclaims what kiln processes that were killed (or
/// crashed) left in the middle of their work, as their owner marks say:
/// step containers, overlay mounts under `build/mnt`, step scratch
/// directories and `unpack-*` / build step snapshots. Every command runs it
/// from [`Engine::open`] when `Store::abandoned` finds
/// a mark of a process that is gone (otherwise it costs one `readdir`), and
/// `system prune` runs it too. It works under the store lock, so two
/// commands never reclaim the same thing; what cannot be reclaimed yet
/// stays marked (and is said once per command on stderr). Returns how many
/// items were reclaimed.
pub fn recover(app: &mut Engine) -> Result<usize> {
    if app.store.abandoned()?.is_empty() {
        return Ok(0);
    }
    let store = app.store.clone();
    let _lock = store.lock()?;
    let mut reclaimed = 0;
    // Read again under the lock: another command may have done it.
    for a in store.abandoned()? {
        let mut items = a.items.clone();
        items.sort_by_key(|i| claim::order(&i.kind));
        let mut left = Vec::new();
        for item in items {
            match reclaim(app, &item) {
                Ok(()) => reclaimed += 1,
                Err(e) => {
                    (app.opts.notice)(&format!(
                        "cannot reclaim {} {} left by {} (killed): {}",
                        item.kind,
                        item.name,
                        a.owner,
                        chain(&e)
                    ));
                    left.push(item);
                }
            }
        }
        store.settle(&a, &left)?;
    }
    Ok(reclaimed)
}

/// Undoes one claimed item. Paths must lie under the store root (marks are
/// kiln's own, but nothing outside the store is ever touched).
fn reclaim(app: &mut Engine, item: &kiln_content::ClaimItem) -> Result<()> {
    let under_root = |name: &str| -> Result<std::path::PathBuf> {
        let p = std::path::PathBuf::from(name);
        let clean = p
            .components()
            .all(|c| !matches!(c, std::path::Component::ParentDir));
        if !clean || !p.starts_with(app.root()) || p == app.root() {
            bail!("{name} is not inside the store");
        }
        Ok(p)
    };
    let gone_ok = |r: std::io::Result<()>| match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    };
    match item.kind.as_str() {
        claim::CONTAINER => {
            let dir = under_root(&item.name)?;
            if dir.exists() {
                let _ = kiln_runtime::Runtime::default().delete(&dir, true);
                gone_ok(std::fs::remove_dir_all(&dir))?;
            }
        }
        claim::MOUNT => {
            let dir = under_root(&item.name)?;
            // Unmount every mount stacked there (EINVAL: none left).
            for _ in 0..16 {
                if kiln_sys::LinuxSys.umount(&dir, true).is_err() {
                    break;
                }
            }
            gone_ok(std::fs::remove_dir(&dir))?;
        }
        claim::DIR => {
            let dir = under_root(&item.name)?;
            gone_ok(std::fs::remove_dir_all(&dir))?;
        }
        claim::SNAPSHOT => {
            let snapshotter = app.snapshotter()?;
            match snapshotter.remove(&item.name) {
                Ok(()) | Err(kiln_snapshot::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        other => bail!("unknown kind of owner mark {other:?}"),
    }
    Ok(())
}

/// What `system prune` reclaims beyond the owner marks: leftovers no mark
/// names (made by a kiln older than the marks, or cut short by a machine
/// crash): entries of `build/mnt` and `build/steps`, and `unpack-*`
/// snapshots whose process (the pid in their key) is gone, unless a live
/// kiln process claims them. The entries are listed before the claims are
/// read, and a process claims before it creates, so nothing in progress is
/// taken.
pub fn sweep_leftovers(app: &mut Engine) -> Result<()> {
    let mut found: Vec<kiln_content::ClaimItem> = Vec::new();
    for (sub, kind) in [("build/mnt", claim::MOUNT), ("build/steps", claim::DIR)] {
        let dir = app.root().join(sub);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            found.push(kiln_content::ClaimItem {
                kind: kind.to_owned(),
                name: e.path().to_string_lossy().into_owned(),
            });
        }
    }
    let snapshotter = app.snapshotter()?;
    for info in snapshotter.list()? {
        let pid = info
            .name
            .strip_prefix("unpack-")
            .and_then(|rest| rest.split('-').nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if info.kind == kiln_snapshot::Kind::Active
            && let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            found.push(kiln_content::ClaimItem {
                kind: claim::SNAPSHOT.to_owned(),
                name: info.name.clone(),
            });
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    let live = app.store.claimed_by_live()?;
    let store = app.store.clone();
    let _lock = store.lock()?;
    found.sort_by_key(|i| claim::order(&i.kind));
    for item in found.iter().filter(|i| !live.contains(i)) {
        if let Err(e) = reclaim(app, item) {
            (app.opts.notice)(&format!(
                "cannot reclaim {} {}: {}",
                item.kind,
                item.name,
                chain(&e)
            ));
        }
    }
    Ok(())
}
