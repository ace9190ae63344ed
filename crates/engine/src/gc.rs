//! Removing things: images as `docker rmi` and the prunes remove them
//! (moby's `ImageDelete` and `ImagesPrune`), the build cache, and what
//! disk usage (`system df`) counts. Removing an image frees its layer
//! snapshots (kiln-image's `prune_snapshots`) and blobs once nothing else
//! (another image, a container, the build cache) uses them.

use std::collections::BTreeSet;

use kiln_content::{ImageRecord, Reference};
use kiln_model::Digest;

use crate::PARENT_ANNOTATION;
use crate::bail;
use crate::container::ContainerRecord;
use crate::engine::Engine;
use crate::error::{Result, chain};
use crate::recover::claim;

/// What removing an image did, in order, as `docker rmi` and `docker image
/// prune` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// A name went.
    Untagged(String),
    /// The image went.
    Deleted(Digest),
}

fn containers(app: &Engine) -> Result<Vec<ContainerRecord>> {
    Ok(app.containers()?.list()?)
}

/// Removes (or untags) image `name` as `docker rmi` does (moby's
/// `ImageDelete`): a name is untagged first (refused without `force` when
/// it is the image's only name and a container uses the image), and the
/// image itself goes only when nothing else names it and no conflict
/// stands. Conflicts are hard (a running container, a child image: even
/// `force` cannot override them) or soft (a stopped container, other
/// names: `force` overrides them). After an image goes, its untagged parent
/// chain goes too, quietly stopping at the first parent something still
/// uses or names (Docker's default, without `--no-prune`). What it did
/// goes to `done`, in order, also when it fails half way; freeing the
/// layers is left to the caller ([`free_unused`]).
pub fn remove_image(
    app: &mut Engine,
    name: &str,
    force: bool,
    done: &mut Vec<Removed>,
) -> Result<()> {
    let record = app.store.resolve_image(name)?;
    let id = record.id;
    let mut users = Users::new(app)?;
    let mut quiet = false;
    if !is_id_prefix(&id, name) {
        let reference: Reference = name.parse()?;
        if !force
            && is_single_reference(&record)
            && let Some(c) = users.any(&id)
        {
            bail!(
                "conflict: unable to remove repository reference {name:?} (must force) - container {} is using its referenced image {}",
                short(&c),
                &id.hex()[..12]
            );
        }
        let mut removed = drop_refs(app, &id, |r| match reference.digest() {
            Some(d) => r.digest() == Some(d) && r.same_repository(&reference),
            None => {
                r.digest().is_none() && r.same_repository(&reference) && r.tag() == reference.tag()
            }
        })?;
        // No tag of that repository left: its digest names go too.
        if reference.digest().is_none() {
            let rec = image(app, &id)?;
            let tag_left = rec
                .repo_tags
                .iter()
                .filter_map(|t| t.parse::<Reference>().ok())
                .any(|t| t.same_repository(&reference));
            if !tag_left {
                removed.extend(drop_refs(app, &id, |r| {
                    r.digest().is_some() && r.same_repository(&reference)
                })?);
            }
        }
        done.extend(removed.into_iter().map(Removed::Untagged));
        let rec = image(app, &id)?;
        if !rec.repo_tags.is_empty() || !rec.repo_digests.is_empty() {
            return Ok(());
        }
        quiet = true;
    } else if is_single_reference(&record) {
        // By ID, with one name: the name goes with the image, so only the
        // containers can stop it.
        if let Some(c) = users.conflict(app, &record, force, false)? {
            bail!("{}", c.message);
        }
        done.extend(
            drop_refs(app, &id, |_| true)?
                .into_iter()
                .map(Removed::Untagged),
        );
    }
    delete_chain(app, &mut users, &id, force, quiet, done)
}

/// Deletes image `id` unless a conflict stands (then an error, or nothing
/// when `quiet` and the image is still named, has children or is used),
/// then its untagged parents the same way, quietly and never forced.
fn delete_chain(
    app: &mut Engine,
    users: &mut Users,
    id: &Digest,
    force: bool,
    quiet: bool,
    done: &mut Vec<Removed>,
) -> Result<()> {
    let (mut id, mut force, mut quiet) = (*id, force, quiet);
    loop {
        let Some(rec) = app.store.get_image(&id)? else {
            return Ok(());
        };
        if let Some(c) = users.conflict(app, &rec, force, true)? {
            let dangling = rec.repo_tags.is_empty()
                && rec.repo_digests.is_empty()
                && children(app, &id)?.is_empty();
            if quiet && (!dangling || c.used) {
                return Ok(());
            }
            bail!("{}", c.message);
        }
        let parent = rec
            .annotations
            .get(PARENT_ANNOTATION)
            .and_then(|p| p.parse::<Digest>().ok());
        done.extend(
            drop_refs(app, &id, |_| true)?
                .into_iter()
                .map(Removed::Untagged),
        );
        app.store.remove_image(&id)?;
        done.push(Removed::Deleted(id));
        match parent {
            Some(p) => (id, force, quiet) = (p, false, true),
            None => return Ok(()),
        }
    }
}

/// A reason an image cannot be deleted (moby's `imageDeleteConflict`).
struct Conflict {
    message: String,
    /// A container uses the image.
    used: bool,
}

/// The containers, and which of them run (asked once per container).
struct Users {
    containers: Vec<ContainerRecord>,
    running: std::collections::BTreeMap<String, bool>,
}

impl Users {
    fn new(app: &Engine) -> Result<Users> {
        Ok(Users {
            containers: containers(app)?,
            running: Default::default(),
        })
    }

    /// Some container of image `id`, running or not.
    fn any(&self, id: &Digest) -> Option<String> {
        self.containers
            .iter()
            .find(|c| c.image_id == *id)
            .map(|c| c.id.clone())
    }

    fn is_running(&mut self, app: &Engine, c: &ContainerRecord) -> bool {
        *self.running.entry(c.id.clone()).or_insert_with(|| {
            kiln_runtime::Runtime::default()
                .state(&c.state_dir(app))
                .is_ok_and(|s| s.status == kiln_runtime::Status::Running)
        })
    }

    /// What keeps `rec` from being deleted: always a child image or a
    /// running container (hard); unless `force`, a stopped container and
    /// (when `names` counts) the image's names (soft).
    fn conflict(
        &mut self,
        app: &Engine,
        rec: &ImageRecord,
        force: bool,
        names: bool,
    ) -> Result<Option<Conflict>> {
        let id = rec.id;
        let conflict = |hard: bool, used: bool, what: String| Conflict {
            message: format!(
                "conflict: unable to delete {} ({}) - {what}",
                &id.hex()[..12],
                if hard {
                    "cannot be forced"
                } else {
                    "must be forced"
                }
            ),
            used,
        };
        if !children(app, &id)?.is_empty() {
            return Ok(Some(conflict(
                true,
                false,
                "image has dependent child images".to_owned(),
            )));
        }
        let users: Vec<ContainerRecord> = self
            .containers
            .iter()
            .filter(|c| c.image_id == id)
            .cloned()
            .collect();
        for c in &users {
            if self.is_running(app, c) {
                return Ok(Some(conflict(
                    true,
                    true,
                    format!("image is being used by running container {}", short(&c.id)),
                )));
            }
        }
        if force {
            return Ok(None);
        }
        if names && (!rec.repo_tags.is_empty() || !rec.repo_digests.is_empty()) {
            return Ok(Some(conflict(
                false,
                false,
                "image is referenced in multiple repositories".to_owned(),
            )));
        }
        if let Some(c) = users.first() {
            return Ok(Some(conflict(
                false,
                true,
                format!("image is being used by stopped container {}", short(&c.id)),
            )));
        }
        Ok(None)
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn image(app: &Engine, id: &Digest) -> Result<ImageRecord> {
    Ok(app
        .store
        .get_image(id)?
        .ok_or_else(|| kiln_content::Error::NoSuchImage(id.to_string()))?)
}

/// Images whose parent is `id`.
fn children(app: &Engine, id: &Digest) -> Result<Vec<Digest>> {
    let want = id.to_string();
    Ok(app
        .store
        .list_images()?
        .into_iter()
        .filter(|i| i.annotations.get(PARENT_ANNOTATION) == Some(&want))
        .map(|i| i.id)
        .collect())
}

/// Whether `input` names image `id` by ID (full or prefix, with or without
/// `sha256:`), as moby's `isImageIDPrefix`.
fn is_id_prefix(id: &Digest, input: &str) -> bool {
    id.to_string().starts_with(input) || id.hex().starts_with(input)
}

/// moby's `isSingleReference`: all names from one repository, at most one
/// of them a tag.
fn is_single_reference(rec: &ImageRecord) -> bool {
    let tags: Vec<Reference> = rec
        .repo_tags
        .iter()
        .filter_map(|t| t.parse().ok())
        .collect();
    let digests: Vec<Reference> = rec
        .repo_digests
        .iter()
        .filter_map(|t| t.parse().ok())
        .collect();
    match tags.len() + digests.len() {
        0 => return false,
        1 => return true,
        _ => {}
    }
    if tags.len() > 1 {
        return false;
    }
    let single = tags.first().or(digests.first());
    let repos: BTreeSet<String> = digests.iter().map(Reference::name).collect();
    repos.len() == 1 && single.is_some_and(|s| repos.contains(&s.name()))
}

/// Removes the names of image `id` that `matches` (tags and digests) and
/// returns them as Docker prints them.
fn drop_refs(
    app: &Engine,
    id: &Digest,
    matches: impl Fn(&Reference) -> bool,
) -> Result<Vec<String>> {
    Ok(app.store.remove_names(id, |name| {
        name.parse::<Reference>().is_ok_and(|r| matches(&r))
    })?)
}

/// The chain IDs of every image's layers: the committed snapshots images need.
fn needed_snapshots(app: &Engine) -> Result<BTreeSet<String>> {
    let mut needed: BTreeSet<String> = BTreeSet::new();
    for img in app.store.list_images()? {
        if let Ok(cfg) = kiln_image::image_config(&app.store, &img.id)
            && let Ok(diff_ids) = cfg
                .rootfs
                .diff_ids
                .iter()
                .map(|d| d.parse::<Digest>())
                .collect::<Result<Vec<_>, _>>()
        {
            needed.extend(
                kiln_image::chain_ids(&diff_ids)
                    .iter()
                    .map(Digest::to_string),
            );
        }
    }
    Ok(needed)
}

/// Removes committed layer snapshots no image needs (leaves first:
/// containers and builds in progress are children and keep their
/// parents) and blobs no image references; returns the bytes freed.
pub fn free_unused(app: &mut Engine) -> Result<u64> {
    let snapshotter = app.snapshotter()?;
    kiln_image::prune_snapshots(&app.store, &*snapshotter)?;
    let report = app.store.gc(|_| false)?;
    Ok(report.freed)
}

/// `image prune` as Docker's daemon does it (moby's `ImagesPrune`): the
/// candidates are the dangling images without children (`-a`: every image),
/// leaving out untagged images with children (intermediate images, which
/// go with their last child); each is removed as `rmi` without `-f` would
/// (by each of its names, or by ID), so its untagged parent chain goes in
/// the same pass and conflicts (a container uses it, a child needs it)
/// only keep it. Returns what was removed and the bytes freed.
pub fn prune_images(app: &mut Engine, all: bool) -> Result<(Vec<Removed>, u64)> {
    let images = app.store.list_images()?;
    let used: BTreeSet<Digest> = containers(app)?.iter().map(|c| c.image_id).collect();
    let mut has_children: BTreeSet<String> = BTreeSet::new();
    // The other platforms' images of a local multi-platform index are kept
    // while the image that names it exists (crate::index).
    let mut members: BTreeSet<String> = BTreeSet::new();
    for i in &images {
        if let Some(p) = i.annotations.get(PARENT_ANNOTATION) {
            has_children.insert(p.clone());
        }
        if let Some(m) = i.annotations.get(crate::index::MEMBERS_ANNOTATION) {
            members.extend(
                m.split(',')
                    .filter(|m| *m != i.id.to_string())
                    .map(str::to_owned),
            );
        }
    }
    for list in app.manifest_lists()? {
        members.extend(list.entries.iter().map(|e| e.image.to_string()));
    }
    let mut done = Vec::new();
    let mut candidates: Vec<&ImageRecord> = images
        .iter()
        .filter(|i| {
            let named = !i.repo_tags.is_empty() || !i.repo_digests.is_empty();
            let parent = has_children.contains(&i.id.to_string());
            !(parent && (!all || !named))
                && !used.contains(&i.id)
                && !members.contains(&i.id.to_string())
        })
        .collect();
    candidates.sort_by_key(|i| i.id);
    for cand in candidates {
        // An earlier candidate's parent chain may have taken it already.
        let Some(rec) = app.store.get_image(&cand.id)? else {
            continue;
        };
        let names: Vec<String> = rec
            .repo_tags
            .iter()
            .chain(&rec.repo_digests)
            .cloned()
            .collect();
        let targets = if names.is_empty() {
            vec![rec.id.hex()]
        } else if all || rec.repo_tags.is_empty() {
            names
        } else {
            Vec::new()
        };
        for t in targets {
            match remove_image(app, &t, false, &mut done) {
                Ok(()) => {}
                Err(e) if chain(&e).contains("conflict:") => break,
                Err(e)
                    if matches!(
                        e.find::<kiln_content::Error>(),
                        Some(kiln_content::Error::NoSuchImage(_))
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let freed = free_unused(app)?;
    Ok((done, freed))
}

/// Clears the build cache and the untagged images only it kept; returns
/// (cache records, images) removed and the bytes freed.
pub fn prune_build_cache(app: &mut Engine) -> Result<(usize, usize, u64)> {
    let removed = kiln_builder::JsonCache::clear(&app.step_cache_dir())?;
    // Untagged images that only the cache kept alive go too.
    let images = app.store.list_images()?;
    let used: BTreeSet<Digest> = containers(app)?.iter().map(|c| c.image_id).collect();
    let tagged_chain = tagged_ancestry(&images);
    let mut deleted = 0;
    for img in &images {
        if img.repo_tags.is_empty()
            && img.repo_digests.is_empty()
            && !used.contains(&img.id)
            && !tagged_chain.contains(&img.id.to_string())
        {
            app.store.remove_image(&img.id)?;
            deleted += 1;
        }
    }
    let freed = free_unused(app)?;
    Ok((removed, deleted, freed))
}

/// IDs of every image a tagged image descends from.
fn tagged_ancestry(images: &[ImageRecord]) -> BTreeSet<String> {
    let by_id: std::collections::BTreeMap<String, &ImageRecord> =
        images.iter().map(|i| (i.id.to_string(), i)).collect();
    let mut out = BTreeSet::new();
    for img in images.iter().filter(|i| !i.repo_tags.is_empty()) {
        let mut cur = img.annotations.get(PARENT_ANNOTATION).cloned();
        while let Some(p) = cur {
            if !out.insert(p.clone()) {
                break;
            }
            cur = by_id
                .get(&p)
                .and_then(|i| i.annotations.get(PARENT_ANNOTATION).cloned());
        }
    }
    out
}

/// Removes every container that is not running (`container prune`,
/// `system prune`); returns their IDs and the bytes their writable layers
/// held.
pub fn prune_containers(app: &mut Engine) -> Result<(Vec<String>, u64)> {
    let snapshotter = app.snapshotter()?;
    let mut removed = Vec::new();
    let mut freed = 0;
    for c in app.containers()?.list()? {
        if !app.container_running(&c) {
            let size = snapshotter.usage(&c.snapshot).map_or(0, |u| u.size);
            app.remove_container(&c, false)?;
            freed += size;
            removed.push(c.id);
        }
    }
    Ok((removed, freed))
}

/// What `system df` shows, measured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Image records.
    pub images: usize,
    /// Bytes of blobs.
    pub blob_bytes: u64,
    /// Bytes of blobs no image references.
    pub blob_reclaimable: u64,
    /// Bytes of unpacked layers and other snapshots (not containers').
    pub snapshot_bytes: u64,
    /// Bytes of snapshots nothing needs: layers of no image, and snapshots
    /// no container and no running kiln process owns.
    pub snapshot_reclaimable: u64,
    /// Containers.
    pub containers: usize,
    /// Bytes of the containers' snapshots.
    pub container_bytes: u64,
    /// Build cache records.
    pub cache_records: usize,
}

/// Measures what `system df` shows.
pub fn disk_usage(app: &mut Engine) -> Result<DiskUsage> {
    let usage = app.store.df()?;
    let images = app.store.list_images()?;
    let containers = containers(app)?;
    let snapshotter = app.snapshotter()?;
    let needed = needed_snapshots(app)?;
    let live = app.store.claimed_by_live()?;
    let mut du = DiskUsage {
        images: images.len(),
        blob_bytes: usage.blob_bytes,
        blob_reclaimable: usage.reclaimable_bytes,
        containers: containers.len(),
        ..DiskUsage::default()
    };
    for info in snapshotter.list()? {
        let size = snapshotter.usage(&info.name).map(|u| u.size).unwrap_or(0);
        if containers.iter().any(|c| c.snapshot == info.name) {
            du.container_bytes += size;
            continue;
        }
        du.snapshot_bytes += size;
        // A layer no image needs, or a snapshot that no container and no
        // running kiln process owns (left by a killed one: `system prune`
        // reclaims it), is not live.
        let owned = live
            .iter()
            .any(|c| c.kind == claim::SNAPSHOT && c.name == info.name);
        let unused = match info.kind {
            kiln_snapshot::Kind::Committed => !needed.contains(&info.name),
            _ => !owned,
        };
        if unused {
            du.snapshot_reclaimable += size;
        }
    }
    du.cache_records = kiln_builder::JsonCache::count(&app.step_cache_dir())?;
    Ok(du)
}
