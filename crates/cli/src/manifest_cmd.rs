//! `kiln manifest create|add|annotate|inspect|push|rm`: manifest lists (OCI
//! image indexes) assembled from images built or pulled separately, kept in
//! the store until pushed (Docker's `docker manifest`, with Podman's `add`).
//! The images are the store's (a name not in the store is pulled first).

use anyhow::{Context as _, Result, bail};
use kiln_content::Reference;
use kiln_engine::Engine;
use kiln_engine::index::{ListEntry, ManifestList};
use kiln_model::Platform;

use crate::flags::{compression, parse_reference};

/// `kiln manifest ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ManifestCommand {
    /// Create a local manifest list from images.
    Create(CreateArgs),
    /// Add an image to a local manifest list.
    Add(AddArgs),
    /// Set the platform of an image in a local manifest list.
    Annotate(AddArgs),
    /// Show a local manifest list, or a manifest or index of a registry.
    Inspect(InspectArgs),
    /// Push a local manifest list to a registry.
    Push(PushArgs),
    /// Delete local manifest lists.
    Rm(RmArgs),
}

/// `kiln manifest create`.
#[derive(Debug, clap::Args)]
pub(crate) struct CreateArgs {
    /// The list's name (`registry/repository:tag`).
    list: String,
    /// The images (local names or IDs; others are pulled).
    #[arg(required = true)]
    images: Vec<String>,
    /// Add to an existing list instead of refusing.
    #[arg(short, long)]
    amend: bool,
    /// Accepted for Docker's CLI; plain HTTP follows kiln's registry settings.
    #[arg(long)]
    insecure: bool,
}

/// `kiln manifest add` / `annotate`.
#[derive(Debug, clap::Args)]
pub(crate) struct AddArgs {
    /// The list's name.
    list: String,
    /// The image.
    image: String,
    /// Operating system (default: the image's).
    #[arg(long)]
    os: Option<String>,
    /// Architecture (default: the image's).
    #[arg(long)]
    arch: Option<String>,
    /// CPU variant (default: the image's).
    #[arg(long)]
    variant: Option<String>,
}

/// `kiln manifest inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct InspectArgs {
    /// A local list, or a reference in a registry.
    name: String,
    /// Accepted for Docker's CLI (kiln prints the whole document).
    #[arg(short, long)]
    verbose: bool,
    /// Accepted for Docker's CLI.
    #[arg(long)]
    insecure: bool,
}

/// `kiln manifest push`.
#[derive(Debug, clap::Args)]
pub(crate) struct PushArgs {
    /// The local list.
    list: String,
    /// Where to push it (default: its own name).
    destination: Option<String>,
    /// Delete the local list once pushed.
    #[arg(short, long)]
    purge: bool,
    /// Compression of layers stored plain: `gzip` (default), `zstd`.
    #[arg(long, default_value = "gzip")]
    compression: String,
    /// Accepted for Docker's CLI.
    #[arg(long)]
    insecure: bool,
}

/// `kiln manifest rm`.
#[derive(Debug, clap::Args)]
pub(crate) struct RmArgs {
    /// The local lists.
    #[arg(required = true)]
    lists: Vec<String>,
}

pub(crate) fn run(app: &mut Engine, cmd: &ManifestCommand) -> Result<u8> {
    match cmd {
        ManifestCommand::Create(a) => create(app, a),
        ManifestCommand::Add(a) => add(app, a, false),
        ManifestCommand::Annotate(a) => add(app, a, true),
        ManifestCommand::Inspect(a) => inspect(app, a),
        ManifestCommand::Push(a) => push(app, a),
        ManifestCommand::Rm(a) => rm(app, a),
    }
}

/// The store's image `name`, pulled for the host's platform when missing.
fn image(app: &mut Engine, name: &str) -> Result<kiln_model::Digest> {
    match app.store.resolve_image(name) {
        Ok(r) => Ok(r.id),
        Err(kiln_content::Error::NoSuchImage(_)) => {
            let reference = parse_reference(name)?;
            let rec =
                crate::progress::pull_image_to(app, &reference, &Platform::native(), true, true)?;
            Ok(rec.id)
        }
        Err(e) => Err(e.into()),
    }
}

fn list_of(app: &Engine, name: &str) -> Result<(Reference, ManifestList)> {
    let reference = parse_reference(name)?;
    let list = app
        .manifest_list(&reference)?
        .with_context(|| format!("No such manifest: {name}"))?;
    Ok((reference, list))
}

fn create(app: &mut Engine, a: &CreateArgs) -> Result<u8> {
    let reference = parse_reference(&a.list)?;
    let mut entries = match app.manifest_list(&reference)? {
        Some(_) if !a.amend => {
            bail!("refusing to amend an existing manifest list with no --amend flag")
        }
        Some(l) => l.entries,
        None => Vec::new(),
    };
    for name in &a.images {
        let id = image(app, name)?;
        let platform = app.image_platform(&id)?;
        entries.retain(|e| e.image != id);
        entries.push(ListEntry {
            image: id,
            platform,
        });
    }
    app.put_manifest_list(&reference, entries)?;
    println!("Created manifest list {}", reference.familiar_tagged());
    Ok(0)
}

fn add(app: &mut Engine, a: &AddArgs, annotate: bool) -> Result<u8> {
    let (reference, mut list) = list_of(app, &a.list)?;
    let id = image(app, &a.image)?;
    let pos = list.entries.iter().position(|e| e.image == id);
    if annotate && pos.is_none() {
        bail!(
            "manifest for image {} does not exist in {}",
            a.image,
            a.list
        );
    }
    let base = match pos {
        Some(i) => list.entries[i].platform.clone(),
        None => app.image_platform(&id)?,
    };
    let os = a.os.as_deref().unwrap_or(&base.os);
    let arch = a.arch.as_deref().unwrap_or(&base.architecture);
    let variant = a.variant.as_deref().or(base.variant.as_deref());
    let platform = Platform::new(os, arch, variant).normalized();
    let entry = ListEntry {
        image: id,
        platform,
    };
    match pos {
        Some(i) => list.entries[i] = entry,
        None => list.entries.push(entry),
    }
    app.put_manifest_list(&reference, list.entries)?;
    Ok(0)
}

fn inspect(app: &mut Engine, a: &InspectArgs) -> Result<u8> {
    let reference = parse_reference(&a.name)?;
    let bytes = match app.manifest_list(&reference)? {
        Some(list) => {
            let index = app.manifest_list_index(&list)?;
            app.store.read_blob(&index)?
        }
        None => {
            let registry = app.registry()?;
            kiln_engine::block_on(registry.fetch_document(&reference))?
                .map_err(|e| anyhow::anyhow!("no such manifest: {}: {e}", a.name))?
                .bytes
        }
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes)?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(0)
}

fn push(app: &mut Engine, a: &PushArgs) -> Result<u8> {
    let (reference, list) = list_of(app, &a.list)?;
    if list.entries.is_empty() {
        bail!("manifest list {} has no images", a.list);
    }
    let dest = match &a.destination {
        Some(d) => parse_reference(d)?,
        None => reference.clone(),
    };
    let index = app.manifest_list_index(&list)?;
    let digest = app.push_index(
        &dest,
        &index,
        compression(&a.compression)?,
        &kiln_registry::NoProgress,
    )?;
    if a.purge {
        app.remove_manifest_list(&reference)?;
    }
    println!("{digest}");
    Ok(0)
}

fn rm(app: &mut Engine, a: &RmArgs) -> Result<u8> {
    let mut missing = Vec::new();
    for name in &a.lists {
        let reference = parse_reference(name)?;
        if !app.remove_manifest_list(&reference)? {
            missing.push(name.as_str());
        }
    }
    if !missing.is_empty() {
        bail!("No such manifest: {}", missing.join(", "));
    }
    Ok(0)
}
