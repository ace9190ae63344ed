//! The volumes of `kiln create`/`run` (a helper of container_cmd): an
//! image's `VOLUME`s and `-v /path` become anonymous volumes, `-v
//! NAME:/path` and `--mount type=volume` named ones (made when missing);
//! a volume made for the container is filled from the image's content at
//! its path with the in-root copy of a stopped container's filesystem
//! (fs_cmd's), as Docker does; `rm -v` and `run --rm` remove anonymous
//! ones. The volume store itself is kiln-engine's (`kiln_engine::volume`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::Result;
use kiln_engine::Engine;
use kiln_engine::container::{ContainerRecord, VolumeSpec};

/// Gives every volume among `volumes` its store directory, making the
/// volumes that do not exist yet (anonymous ones always), after adding an
/// anonymous volume for each of the image's `VOLUME`s that no mount of
/// the user's covers. Returns the volumes made now (the container path
/// and the directory), to be filled from the image by [`fill_new`] once
/// the container's filesystem exists.
pub(crate) fn resolve(
    app: &Engine,
    volumes: &mut Vec<VolumeSpec>,
    image_volumes: Option<&BTreeSet<String>>,
) -> Result<Vec<(String, PathBuf)>> {
    let taken: BTreeSet<String> = volumes.iter().map(|v| clean(&v.target)).collect();
    for path in image_volumes.into_iter().flatten() {
        if path.starts_with('/') && !taken.contains(&clean(path)) {
            volumes.push(VolumeSpec {
                source: String::new(),
                target: path.clone(),
                readonly: false,
                tmpfs: false,
                options: Vec::new(),
                volume: Some(String::new()),
            });
        }
    }
    let mut fresh = Vec::new();
    for v in volumes.iter_mut() {
        let Some(name) = v.volume.clone() else {
            continue;
        };
        let wanted = (!name.is_empty()).then_some(name.as_str());
        let (rec, made) = app.create_volume(wanted, BTreeMap::new(), BTreeMap::new())?;
        let data = app.volume_data(&rec.name);
        v.source = data.to_string_lossy().into_owned();
        v.volume = Some(rec.name);
        if made {
            fresh.push((v.target.clone(), data));
        }
    }
    Ok(fresh)
}

/// Fills the volumes [`resolve`] made with the image's content at their
/// paths (the container `rec`'s filesystem, not started yet), and mounts
/// every volume whose path is a link in the image where the link leads
/// inside the container's root, as Docker does (`rec` and its stored
/// record are updated).
pub(crate) fn fill_new(
    app: &mut Engine,
    rec: &mut ContainerRecord,
    fresh: &[(String, PathBuf)],
) -> Result<()> {
    let mut moved = Vec::new();
    for (i, v) in rec.volumes.iter().enumerate() {
        if v.volume.is_none() {
            continue;
        }
        let data = fresh
            .iter()
            .find(|(t, _)| *t == v.target)
            .map(|(_, d)| d.as_path());
        let at = crate::fs_cmd::volume_target(app, rec, &v.target, data)?;
        if clean(&at) != clean(&v.target) {
            moved.push((i, at));
        }
    }
    if !moved.is_empty() {
        let retarget = |r: &mut ContainerRecord| {
            for (i, at) in &moved {
                if let Some(v) = r.volumes.get_mut(*i) {
                    v.target = at.clone();
                }
            }
        };
        retarget(rec);
        app.containers()?.update(&rec.id, retarget)?;
    }
    Ok(())
}

/// `rm -v` and `run --rm`: removes the anonymous volumes of the removed
/// container `rec` that no other container uses; named ones stay.
pub(crate) fn remove_anonymous(app: &Engine, rec: &ContainerRecord) -> Result<()> {
    for name in rec.volumes.iter().filter_map(|v| v.volume.as_deref()) {
        let anonymous = app.volume(name)?.is_some_and(|v| v.anonymous);
        if anonymous && app.volume_users(name)?.is_empty() {
            app.remove_volume(name, true)?;
        }
    }
    Ok(())
}

/// A container path without `.`, empty components or a trailing `/`.
fn clean(target: &str) -> String {
    let parts: Vec<&str> = target
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}
