//! Removing things: `rmi`, `image prune`, `builder prune`, `system prune`,
//! and `system df`. Removing an image frees its layer snapshots and blobs
//! once nothing else (another image, a container, the build cache) uses them.

use std::collections::BTreeSet;
use std::io::Write as _;

use anyhow::{Result, bail};
use kiln_content::{Digest, ImageRecord, Reference};

use crate::app::App;
use crate::container::{ContainerRecord, KIND};
use crate::format;

/// `prune` options.
#[derive(Debug, clap::Args)]
pub(crate) struct PruneArgs {
    /// Remove all unused images, not just dangling ones.
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation (kiln never prompts; accepted for Docker compatibility).
    #[arg(short, long)]
    force: bool,
}

/// The annotation recording an image's parent (the image a build step or commit ran on).
pub(crate) const PARENT_ANNOTATION: &str = "kiln.parent";

fn containers(app: &App) -> Result<Vec<ContainerRecord>> {
    Ok(app.store.records::<ContainerRecord>(KIND)?.list()?)
}

/// Removes (or untags) an image as `docker rmi` does.
pub(crate) fn remove_image(app: &mut App, name: &str, force: bool) -> Result<()> {
    let record = app.store.resolve_image(name)?;
    let by_name = name.parse::<Reference>().ok().filter(|r| {
        record.repo_tags.iter().any(|t| {
            t.parse::<Reference>()
                .is_ok_and(|t| t.same_repository(r) && t.tag() == r.tag())
        })
    });
    if let Some(reference) = &by_name
        && record.repo_tags.len() > 1
    {
        app.store.untag(reference)?;
        println!("Untagged: {}", reference.familiar());
        return Ok(());
    }
    if by_name.is_none() && record.repo_tags.len() > 1 && !force {
        bail!(
            "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
            &record.id.hex()[..12]
        );
    }
    if let Some(c) = containers(app)?
        .into_iter()
        .find(|c| c.image_id == record.id)
        && !force
    {
        bail!(
            "conflict: unable to delete {} (must be forced) - image is being used by container {}",
            if by_name.is_some() {
                name.to_owned()
            } else {
                record.id.hex()[..12].to_owned()
            },
            &c.id[..12]
        );
    }
    for name in record.repo_tags.iter().chain(&record.repo_digests) {
        println!("Untagged: {name}");
    }
    delete_image(app, &record)?;
    println!("Deleted: {}", record.id);
    Ok(())
}

/// Deletes an image record, then frees its snapshots and blobs that nothing else uses.
fn delete_image(app: &mut App, record: &ImageRecord) -> Result<()> {
    app.store.remove_image(&record.id)?;
    free_unused(app)?;
    Ok(())
}

/// Removes committed layer snapshots no image needs and blobs no image references.
pub(crate) fn free_unused(app: &mut App) -> Result<u64> {
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

/// Images whose ID is some other image's parent (intermediate build images).
fn parents(images: &[ImageRecord]) -> BTreeSet<String> {
    images
        .iter()
        .filter_map(|i| i.annotations.get(PARENT_ANNOTATION).cloned())
        .collect()
}

pub(crate) fn image_prune(app: &mut App, a: &PruneArgs) -> Result<u8> {
    let _ = a.force;
    let images = app.store.list_images()?;
    let used: BTreeSet<Digest> = containers(app)?.iter().map(|c| c.image_id).collect();
    let parents = parents(&images);
    let cache = crate::build_backend::cached_images(app)?;
    let mut deleted = Vec::new();
    for img in &images {
        let dangling = img.repo_tags.is_empty();
        if (!a.all && !dangling) || used.contains(&img.id) {
            continue;
        }
        // Intermediate images that tagged images stand on stay, as in Docker.
        if parents.contains(&img.id.to_string()) || cache.contains(&img.id) {
            continue;
        }
        app.store.remove_image(&img.id)?;
        deleted.push(img.id);
    }
    let freed = free_unused(app)?;
    if !deleted.is_empty() {
        println!("Deleted Images:");
        for d in &deleted {
            println!("deleted: {d}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", format::size(freed));
    Ok(0)
}

pub(crate) fn builder_prune(app: &mut App, a: &PruneArgs) -> Result<u8> {
    let _ = (a.all, a.force);
    let removed = crate::build_backend::clear_cache(app)?;
    // Untagged images that only the cache kept alive go too.
    let images = app.store.list_images()?;
    let used: BTreeSet<Digest> = containers(app)?.iter().map(|c| c.image_id).collect();
    let tagged_chain = tagged_ancestry(&images);
    let mut deleted = 0;
    for img in &images {
        if img.repo_tags.is_empty()
            && !used.contains(&img.id)
            && !tagged_chain.contains(&img.id.to_string())
        {
            app.store.remove_image(&img.id)?;
            deleted += 1;
        }
    }
    let freed = free_unused(app)?;
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

pub(crate) fn system_prune(app: &mut App, a: &PruneArgs) -> Result<u8> {
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
    builder_prune(app, a)?;
    image_prune(app, a)
}

pub(crate) fn df(app: &mut App) -> Result<u8> {
    let usage = app.store.df()?;
    let images = app.store.list_images()?;
    let containers = containers(app)?;
    let snapshotter = app.snapshotter()?;
    let mut snap_bytes = 0u64;
    let mut container_bytes = 0u64;
    for info in snapshotter.list()? {
        let size = snapshotter.usage(&info.name).map(|u| u.size).unwrap_or(0);
        if containers.iter().any(|c| c.snapshot == info.name) {
            container_bytes += size;
        } else {
            snap_bytes += size;
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
            String::new(),
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
