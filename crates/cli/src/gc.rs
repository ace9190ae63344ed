//! Removing things: `rmi`, `image prune`, `builder prune`, `system prune`,
//! and `system df`. Removing an image frees its layer snapshots and blobs
//! once nothing else (another image, a container, the build cache) uses them.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Result, bail};
use kiln_content::{Digest, ImageRecord, Reference};

use crate::app::App;
use crate::container::{ContainerRecord, KIND};
use crate::format;

/// `image prune` and `system prune` options.
#[derive(Debug, clap::Args)]
pub(crate) struct PruneArgs {
    /// Remove all unused images, not just dangling ones.
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    force: bool,
}

/// `builder prune` options.
#[derive(Debug, clap::Args)]
pub(crate) struct BuilderPruneArgs {
    /// Remove all unused build cache, not just dangling ones.
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    force: bool,
}

/// What removing an image did, in order, as `docker rmi` and `docker image
/// prune` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Removed {
    /// A name went.
    Untagged(String),
    /// The image went.
    Deleted(Digest),
}

/// Asks Docker's question on stdout and reads the answer from stdin: only
/// `y` or `Y` goes on (an empty answer or the end of stdin is a no).
fn confirm(message: &str) -> Result<bool> {
    use std::io::BufRead as _;
    let mut out = std::io::stdout().lock();
    write!(out, "{message} [y/N] ")?;
    out.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().eq_ignore_ascii_case("y"))
}

/// The annotation recording an image's parent (the image a build step or commit ran on).
pub(crate) const PARENT_ANNOTATION: &str = "kiln.parent";

fn containers(app: &App) -> Result<Vec<ContainerRecord>> {
    Ok(app.store.records::<ContainerRecord>(KIND)?.list()?)
}

/// Removes (or untags) an image as `docker rmi` does (moby's
/// `ImageDelete`): a name is untagged first (refused without `force` when
/// it is the image's only name and a container uses the image), and the
/// image itself goes only when nothing else names it and no conflict
/// stands. Conflicts are hard (a running container, a child image: even
/// `force` cannot override them) or soft (a stopped container, other
/// names: `force` overrides them). After an image goes, its untagged parent
/// chain goes too, quietly stopping at the first parent something still
/// uses or names (Docker's default, without `--no-prune`).
pub(crate) fn remove_image(app: &mut App, name: &str, force: bool) -> Result<()> {
    let mut done = Vec::new();
    let res = remove_image_into(app, name, force, &mut done);
    for r in &done {
        match r {
            Removed::Untagged(n) => println!("Untagged: {n}"),
            Removed::Deleted(id) => println!("Deleted: {id}"),
        }
    }
    res?;
    free_unused(app)?;
    Ok(())
}

/// [`remove_image`], recording what it did in `done` instead of printing it
/// and leaving the freeing of layers to the caller.
fn remove_image_into(
    app: &mut App,
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
    app: &mut App,
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
    fn new(app: &App) -> Result<Users> {
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

    fn is_running(&mut self, app: &App, c: &ContainerRecord) -> bool {
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
        app: &App,
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

fn image(app: &App, id: &Digest) -> Result<ImageRecord> {
    Ok(app
        .store
        .get_image(id)?
        .ok_or_else(|| kiln_content::Error::NoSuchImage(id.to_string()))?)
}

/// Images whose parent is `id`.
fn children(app: &App, id: &Digest) -> Result<Vec<Digest>> {
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
fn drop_refs(app: &App, id: &Digest, matches: impl Fn(&Reference) -> bool) -> Result<Vec<String>> {
    Ok(app.store.remove_names(id, |name| {
        name.parse::<Reference>().is_ok_and(|r| matches(&r))
    })?)
}

/// The chain IDs of every image's layers: the committed snapshots images need.
fn needed_snapshots(app: &App) -> Result<BTreeSet<String>> {
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

/// Removes committed layer snapshots no image needs and blobs no image references.
pub(crate) fn free_unused(app: &mut App) -> Result<u64> {
    let needed = needed_snapshots(app)?;
    let snapshotter = app.snapshotter()?;
    // Remove leaves first: repeat until nothing more can go (a parent is
    // removable only once its children are gone; containers and builds in
    // progress are children and keep their parents).
    loop {
        let mut removed = false;
        for info in snapshotter.list()? {
            if info.kind == kiln_snapshot::Kind::Committed
                && info.name.starts_with("sha256:")
                && !needed.contains(&info.name)
                && snapshotter.remove(&info.name).is_ok()
            {
                removed = true;
            }
        }
        if !removed {
            break;
        }
    }
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
fn prune_images(app: &mut App, all: bool) -> Result<(Vec<Removed>, u64)> {
    let images = app.store.list_images()?;
    let used: BTreeSet<Digest> = containers(app)?.iter().map(|c| c.image_id).collect();
    let mut has_children: BTreeSet<String> = BTreeSet::new();
    for i in &images {
        if let Some(p) = i.annotations.get(PARENT_ANNOTATION) {
            has_children.insert(p.clone());
        }
    }
    let mut done = Vec::new();
    let mut candidates: Vec<&ImageRecord> = images
        .iter()
        .filter(|i| {
            let named = !i.repo_tags.is_empty() || !i.repo_digests.is_empty();
            let parent = has_children.contains(&i.id.to_string());
            !(parent && (!all || !named)) && !used.contains(&i.id)
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
            match remove_image_into(app, &t, false, &mut done) {
                Ok(()) => {}
                Err(e) if format!("{e:#}").contains("conflict:") => break,
                Err(e)
                    if matches!(
                        e.downcast_ref::<kiln_content::Error>(),
                        Some(kiln_content::Error::NoSuchImage(_))
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let freed = free_unused(app)?;
    Ok((done, freed))
}

/// Docker's report of pruned images (`Deleted Images:` then one line each).
fn print_pruned(done: &[Removed]) {
    if done.is_empty() {
        return;
    }
    println!("Deleted Images:");
    for r in done {
        match r {
            Removed::Untagged(n) => println!("untagged: {n}"),
            Removed::Deleted(id) => println!("deleted: {id}"),
        }
    }
    println!();
}

pub(crate) fn image_prune(app: &mut App, a: &PruneArgs) -> Result<u8> {
    if !a.force {
        let what = if a.all {
            "all images without at least one container associated to them"
        } else {
            "all dangling images"
        };
        if !confirm(&format!(
            "WARNING! This will remove {what}.\nAre you sure you want to continue?"
        ))? {
            return Ok(0);
        }
    }
    let (done, freed) = prune_images(app, a.all)?;
    print_pruned(&done);
    println!("Total reclaimed space: {}", format::size(freed));
    Ok(0)
}

/// Clears the build cache and the untagged images only it kept; returns
/// (cache records, images) removed and the bytes freed.
fn prune_build_cache(app: &mut App) -> Result<(usize, usize, u64)> {
    let removed = crate::build_backend::clear_cache(app)?;
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

pub(crate) fn builder_prune(app: &mut App, a: &BuilderPruneArgs) -> Result<u8> {
    if !a.force {
        let what = if a.all {
            "all build cache"
        } else {
            "all dangling build cache"
        };
        if !confirm(&format!(
            "WARNING! This will remove {what}. Are you sure you want to continue?"
        ))? {
            return Ok(0);
        }
    }
    let (removed, deleted, freed) = prune_build_cache(app)?;
    println!("Deleted build cache objects: {removed} cache records, {deleted} intermediate images");
    println!("Total reclaimed space: {}", format::size(freed));
    Ok(0)
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

/// `system prune`: Docker's question (unless `-f`), then what killed kiln
/// processes left ([`recover`] and [`sweep_leftovers`]), stopped
/// containers, the build cache and the images, in one pass.
pub(crate) fn system_prune(app: &mut App, a: &PruneArgs) -> Result<u8> {
    if !a.force {
        let (images, cache) = if a.all {
            (
                "all images without at least one container associated to them",
                "all build cache",
            )
        } else {
            ("all dangling images", "unused build cache")
        };
        let message = format!(
            "WARNING! This will remove:\n  - all stopped containers\n  - {images}\n  - {cache}\n\nAre you sure you want to continue?"
        );
        if !confirm(&message)? {
            return Ok(0);
        }
    }
    recover(app)?;
    sweep_leftovers(app)?;
    let mut removed = Vec::new();
    for c in containers(app)? {
        let running = kiln_runtime::Runtime::default()
            .state(&c.state_dir(app))
            .is_ok_and(|s| s.status == kiln_runtime::Status::Running);
        if !running {
            crate::container_cmd::remove(app, &c, false)?;
            removed.push(c.id);
        }
    }
    if !removed.is_empty() {
        println!("Deleted Containers:");
        for id in &removed {
            println!("{id}");
        }
        println!();
    }
    let (records, intermediate, freed_cache) = prune_build_cache(app)?;
    if records + intermediate > 0 {
        println!(
            "Deleted build cache objects: {records} cache records, {intermediate} intermediate images\n"
        );
    }
    let (done, freed) = prune_images(app, a.all)?;
    print_pruned(&done);
    println!(
        "Total reclaimed space: {}",
        format::size(freed + freed_cache)
    );
    Ok(0)
}

pub(crate) fn df(app: &mut App) -> Result<u8> {
    let usage = app.store.df()?;
    let images = app.store.list_images()?;
    let containers = containers(app)?;
    let snapshotter = app.snapshotter()?;
    let needed = needed_snapshots(app)?;
    let live = app.store.claimed_by_live()?;
    let mut snap_bytes = 0u64;
    let mut snap_reclaimable = 0u64;
    let mut container_bytes = 0u64;
    for info in snapshotter.list()? {
        let size = snapshotter.usage(&info.name).map(|u| u.size).unwrap_or(0);
        if containers.iter().any(|c| c.snapshot == info.name) {
            container_bytes += size;
            continue;
        }
        snap_bytes += size;
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
            snap_reclaimable += size;
        }
    }
    let cache = crate::build_backend::cache_record_count(app)?;
    let rows = vec![
        vec![
            "Images".to_owned(),
            images.len().to_string(),
            format::size(usage.blob_bytes),
            format::size(usage.reclaimable_bytes),
        ],
        vec![
            "Layers (unpacked)".to_owned(),
            String::new(),
            format::size(snap_bytes),
            format::size(snap_reclaimable),
        ],
        vec![
            "Containers".to_owned(),
            containers.len().to_string(),
            format::size(container_bytes),
            String::new(),
        ],
        vec![
            "Build Cache".to_owned(),
            cache.to_string(),
            String::new(),
            String::new(),
        ],
    ];
    let mut out = std::io::stdout().lock();
    out.write_all(format::table(&["TYPE", "TOTAL", "SIZE", "RECLAIMABLE"], &rows).as_bytes())?;
    writeln!(
        out,
        "\nStore: {} (snapshotter: {})",
        app.root().display(),
        snapshotter.name()
    )?;
    Ok(0)
}

/// Kinds of owner marks ([`kiln_content::Store::claim`]) the CLI takes, in
/// the order a recovery reclaims them: a step's container first (it may
/// still hold the rest), then host mounts, then directories, then
/// snapshots (unmounted by then).
pub(crate) mod claim {
    /// A container state directory (`containers/<id>`) of a build step.
    pub(crate) const CONTAINER: &str = "container";
    /// A host mount point (`build/mnt/<key>`).
    pub(crate) const MOUNT: &str = "mount";
    /// A scratch directory (`build/steps/<id>`).
    pub(crate) const DIR: &str = "dir";
    /// An active snapshot key (`unpack-*`, a build step's).
    pub(crate) const SNAPSHOT: &str = "snapshot";

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
/// from [`App::open`](crate::app::App::open) when `Store::abandoned` finds
/// a mark of a process that is gone (otherwise it costs one `readdir`), and
/// `system prune` runs it too. It works under the store lock, so two
/// commands never reclaim the same thing; what cannot be reclaimed yet
/// stays marked (and is said once per command on stderr). Returns how many
/// items were reclaimed.
pub(crate) fn recover(app: &mut App) -> Result<usize> {
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
                    eprintln!(
                        "kiln: cannot reclaim {} {} left by {} (killed): {e:#}",
                        item.kind, item.name, a.owner
                    );
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
fn reclaim(app: &mut App, item: &kiln_content::ClaimItem) -> Result<()> {
    use kiln_sys::MountOps as _;
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
fn sweep_leftovers(app: &mut App) -> Result<()> {
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
            eprintln!("kiln: cannot reclaim {} {}: {e:#}", item.kind, item.name);
        }
    }
    Ok(())
}
