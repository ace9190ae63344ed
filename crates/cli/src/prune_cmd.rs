//! Removing things: `rmi`, `image prune`, `builder prune`, `system prune`,
//! and `system df`. Removing an image frees its layer snapshots and blobs
//! once nothing else (another image, a container, the build cache) uses them.

use std::io::Write as _;

use anyhow::Result;
use kiln_engine::Engine;
use kiln_engine::gc::{Removed, prune_build_cache, prune_containers, prune_images};
use kiln_engine::recover::{recover, sweep_leftovers};

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

/// `container prune` options.
#[derive(Debug, clap::Args)]
pub(crate) struct ContainerPruneArgs {
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

pub(crate) fn image_prune(app: &mut Engine, a: &PruneArgs) -> Result<u8> {
    if !a.force {
        let what = if a.all {
            "all images without at least one container associated to them"
        } else {
            "all dangling images"
        };
        if !crate::format::confirm(&format!(
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

/// `container prune`: Docker's question (unless `-f`), then every
/// container that is not running goes; prints their IDs and the space
/// their writable layers held.
pub(crate) fn container_prune(app: &mut Engine, a: &ContainerPruneArgs) -> Result<u8> {
    if !a.force
        && !crate::format::confirm(
            "WARNING! This will remove all stopped containers.\nAre you sure you want to continue?",
        )?
    {
        return Ok(0);
    }
    let (removed, freed) = prune_containers(app)?;
    if !removed.is_empty() {
        println!("Deleted Containers:");
        for id in &removed {
            println!("{id}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", format::size(freed));
    Ok(0)
}

pub(crate) fn builder_prune(app: &mut Engine, a: &BuilderPruneArgs) -> Result<u8> {
    if !a.force {
        let what = if a.all {
            "all build cache"
        } else {
            "all dangling build cache"
        };
        if !crate::format::confirm(&format!(
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

/// `system prune`: Docker's question (unless `-f`), then what killed kiln
/// processes left ([`recover`] and [`sweep_leftovers`] of kiln-engine), stopped
/// containers, the build cache and the images, in one pass.
pub(crate) fn system_prune(app: &mut Engine, a: &PruneArgs) -> Result<u8> {
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
        if !crate::format::confirm(&message)? {
            return Ok(0);
        }
    }
    recover(app)?;
    sweep_leftovers(app)?;
    let (removed, _) = prune_containers(app)?;
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

pub(crate) fn df(app: &mut Engine) -> Result<u8> {
    let du = kiln_engine::gc::disk_usage(app)?;
    let snapshotter = app.snapshotter()?;
    let rows = vec![
        vec![
            "Images".to_owned(),
            du.images.to_string(),
            format::size(du.blob_bytes),
            format::size(du.blob_reclaimable),
        ],
        vec![
            "Layers (unpacked)".to_owned(),
            String::new(),
            format::size(du.snapshot_bytes),
            format::size(du.snapshot_reclaimable),
        ],
        vec![
            "Containers".to_owned(),
            du.containers.to_string(),
            format::size(du.container_bytes),
            String::new(),
        ],
        vec![
            "Build Cache".to_owned(),
            du.cache_records.to_string(),
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
