//! Moving images as files: `save` (docker-archive or OCI layout), `load`
//! and `import` (a root filesystem tarball as a one-layer image).

use std::io::{BufWriter, IsTerminal as _, Write as _};
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use kiln_content::Reference;
use kiln_image::{Format, ImportOptions, SaveImage};

use kiln_engine::Engine;

use crate::output::SaveTarget;

/// `kiln save`.
#[derive(Debug, clap::Args)]
pub(crate) struct SaveArgs {
    /// Write to this file instead of stdout (`-`: stdout).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Archive format: `docker` (docker load) or `oci` (an OCI image layout).
    #[arg(long, default_value = "docker")]
    format: String,
    /// Compression of layers stored uncompressed, in an OCI layout: `none`
    /// (as stored), `gzip` or `zstd`. A docker archive always holds plain
    /// layer tars, as `docker save` writes them.
    #[arg(long, default_value = "none")]
    compression: String,
    /// Images (names, IDs or ID prefixes).
    #[arg(required = true)]
    images: Vec<String>,
}

/// `kiln load`.
#[derive(Debug, clap::Args)]
pub(crate) struct LoadArgs {
    /// Read from this file instead of stdin.
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// Print only the loaded image names.
    #[arg(short, long)]
    quiet: bool,
}

/// `kiln import`.
#[derive(Debug, clap::Args)]
pub(crate) struct ImportArgs {
    /// Apply a Dockerfile instruction to the image (CMD, ENV, ...).
    #[arg(short, long)]
    change: Vec<String>,
    /// Commit message for the history.
    #[arg(short, long)]
    message: Option<String>,
    /// Platform of the image (default: the host's).
    #[arg(long)]
    platform: Option<String>,
    /// The tarball (`-` for stdin).
    file: String,
    /// The image's name.
    reference: Option<String>,
}

pub(crate) fn save(app: &mut Engine, a: &SaveArgs) -> Result<u8> {
    let format = match a.format.as_str() {
        "docker" | "docker-archive" => Format::DockerArchive,
        "oci" | "oci-layout" | "oci-archive" => Format::OciLayout,
        other => bail!("invalid --format {other:?}: expected docker or oci"),
    };
    let compression = crate::flags::compression(&a.compression)?;
    let mut images: Vec<SaveImage> = Vec::new();
    for name in &a.images {
        let record = app.store.resolve_image(name)?;
        // Named by a tag: save that name; by ID: every tag the image has.
        let tags: Vec<Reference> = match name.parse::<Reference>() {
            Ok(r)
                if record
                    .repo_tags
                    .iter()
                    .any(|t| t.parse::<Reference>().is_ok_and(|t| t == r)) =>
            {
                vec![r]
            }
            _ => record
                .repo_tags
                .iter()
                .filter_map(|t| t.parse().ok())
                .collect(),
        };
        match images.iter_mut().find(|i| i.id == record.id) {
            Some(existing) => existing.tags.extend(tags),
            None => images.push(SaveImage {
                id: record.id,
                tags,
            }),
        }
    }
    match a.output.as_deref().filter(|p| p.as_os_str() != "-") {
        Some(path) => {
            let out = SaveTarget::create(path)
                .map_err(|e| anyhow::anyhow!("failed to save image: {e}"))?;
            let mut w = kiln_image::save_compressed(
                &app.store,
                &images,
                format,
                compression,
                BufWriter::with_capacity(1 << 20, out.file()),
            )?;
            w.flush()
                .with_context(|| format!("cannot write {}", out.tmp_path().display()))?;
            drop(w);
            out.finish()?;
        }
        None => {
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let mut w = kiln_image::save_compressed(
                &app.store,
                &images,
                format,
                compression,
                BufWriter::new(stdout.lock()),
            )?;
            w.flush()?;
        }
    }
    Ok(0)
}

pub(crate) fn load(app: &mut Engine, a: &LoadArgs) -> Result<u8> {
    if a.input.is_none() && std::io::stdin().is_terminal() {
        // As Docker: never sit waiting for an archive typed on a terminal.
        bail!("requested load from stdin, but stdin is empty");
    }
    let records = match &a.input {
        Some(path) => {
            let f = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            app.load_images(f)?
        }
        None => app.load_images(std::io::stdin().lock())?,
    };
    for r in &records {
        if r.repo_tags.is_empty() {
            println!("Loaded image ID: {}", r.id);
        }
        for t in &r.repo_tags {
            if a.quiet {
                println!("{t}");
            } else {
                println!("Loaded image: {t}");
            }
        }
    }
    Ok(0)
}

pub(crate) fn import(app: &mut Engine, a: &ImportArgs) -> Result<u8> {
    let reference = match &a.reference {
        Some(r) => Some(crate::flags::parse_reference(r)?),
        None => None,
    };
    let platform = crate::flags::platform(a.platform.as_deref())?;
    let opts = ImportOptions {
        created: kiln_image::Timestamp::from_system_time(std::time::SystemTime::now()),
        os: platform.os,
        architecture: platform.architecture,
        variant: platform.variant,
        comment: a
            .message
            .clone()
            .unwrap_or_else(|| format!("Imported from {}", a.file)),
        // Kept uncompressed locally, as Docker does; push compresses.
        compression: kiln_layer::Compression::None,
    };
    let record = if a.file == "-" {
        app.import_image(
            std::io::stdin().lock(),
            reference.as_ref(),
            &a.change,
            &opts,
        )?
    } else {
        let f = std::fs::File::open(&a.file).with_context(|| format!("cannot open {}", a.file))?;
        app.import_image(f, reference.as_ref(), &a.change, &opts)?
    };
    println!("{}", record.id);
    Ok(0)
}
