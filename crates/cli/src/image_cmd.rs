//! Image commands: `pull`, `push`, `tag`, `images`, `rmi`, `image inspect`,
//! `history`, `login`, `logout`.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::{Context as _, Result, bail};
use kiln_content::{Digest, ImageRecord, Platform, Reference};
use kiln_registry::{Progress, Registry, RegistryConfig};

use crate::app::App;
use crate::format;

/// `kiln pull`.
#[derive(Debug, clap::Args)]
pub(crate) struct PullArgs {
    /// Print only the image reference.
    #[arg(short, long)]
    quiet: bool,
    /// Platform to pull from a multi-platform image (`os/arch[/variant]`).
    #[arg(long)]
    platform: Option<String>,
    /// The image (`name[:tag]`, `name@sha256:...`).
    image: String,
}

/// `kiln push`.
#[derive(Debug, clap::Args)]
pub(crate) struct PushArgs {
    /// Print only the pushed manifest digest.
    #[arg(short, long)]
    quiet: bool,
    /// Compression of layers stored uncompressed: `gzip` (what Docker
    /// pushes), `zstd` or `none` (push them as they are).
    #[arg(long, default_value = "gzip")]
    compression: String,
    /// The image name to push (`host/repo:tag`).
    image: String,
}

/// `kiln tag`.
#[derive(Debug, clap::Args)]
pub(crate) struct TagArgs {
    /// The image (name, ID or ID prefix).
    source: String,
    /// The new name (`[host/]repo[:tag]`).
    target: String,
}

/// `kiln images`.
#[derive(Debug, clap::Args)]
pub(crate) struct ImagesArgs {
    /// Show all images, including intermediate build images.
    #[arg(short, long)]
    all: bool,
    /// Print only image IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Show repository digests.
    #[arg(long)]
    digests: bool,
    /// Show full image IDs.
    #[arg(long)]
    no_trunc: bool,
    /// Format the output using the given Go template (`table` for a table
    /// of the chosen fields: `.ID`, `.Repository`, `.Tag`, `.Digest`,
    /// `.CreatedSince`, `.CreatedAt`, `.Size`).
    #[arg(long)]
    format: Option<String>,
    /// Only images of this repository (`name` or `name:tag`).
    repository: Option<String>,
}

/// `kiln rmi`.
#[derive(Debug, clap::Args)]
pub(crate) struct RmiArgs {
    /// Remove the image even when containers use it or it has several tags.
    #[arg(short, long)]
    force: bool,
    /// Images (names, IDs or ID prefixes).
    #[arg(required = true)]
    images: Vec<String>,
}

/// `kiln history`.
#[derive(Debug, clap::Args)]
pub(crate) struct HistoryArgs {
    /// Do not truncate the output.
    #[arg(long)]
    no_trunc: bool,
    /// Print only image IDs.
    #[arg(short, long)]
    quiet: bool,
    /// The image.
    image: String,
}

/// `kiln login`.
#[derive(Debug, clap::Args)]
pub(crate) struct LoginArgs {
    /// User name.
    #[arg(short, long)]
    username: Option<String>,
    /// Password (prefer --password-stdin).
    #[arg(short, long)]
    password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    password_stdin: bool,
    /// The registry host (`host[:port]`).
    server: String,
}

/// `kiln logout`.
#[derive(Debug, clap::Args)]
pub(crate) struct LogoutArgs {
    /// The registry host (`host[:port]`).
    server: String,
}

/// Where Docker's client config lives: `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
pub(crate) fn docker_config_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return PathBuf::from(dir).join("config.json");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".docker").join("config.json")
}

/// A registry client configured from the global options.
pub(crate) fn registry(app: &App) -> Result<Registry> {
    Ok(Registry::new(RegistryConfig {
        insecure: app.insecure_registries()?,
        docker_config: Some(docker_config_path()),
        timeout: std::time::Duration::from_secs(app.opts.registry_timeout),
        ..RegistryConfig::default()
    }))
}

/// Runs `fut` on a fresh tokio runtime that is gone when this returns (kiln
/// never forks while an async runtime is alive).
pub(crate) fn block_on<F: std::future::Future>(fut: F) -> Result<F::Output> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let out = rt.block_on(fut);
    rt.shutdown_background();
    Ok(out)
}

/// Parses an image reference; the error names the input and what is wrong
/// with it (`invalid reference "Busybox": invalid reference format:
/// repository name (library/Busybox) must be lowercase`).
pub(crate) fn parse_reference(input: &str) -> Result<Reference> {
    Ok(input.parse::<Reference>()?)
}

/// Parses `--platform`, defaulting to the host's.
pub(crate) fn platform(arg: Option<&str>) -> Result<Platform> {
    match arg {
        Some(p) => p
            .parse()
            .with_context(|| format!("invalid --platform {p:?}")),
        None => Ok(Platform::native()),
    }
}

/// Pull progress as Docker shows it, for layers only (the config blob gets
/// no line): a bar per layer on a terminal, plain lines
/// (`<id>: Download complete`) otherwise.
struct LineProgress {
    enabled: bool,
    verbs: &'static Verbs,
    out: Mutex<Box<dyn std::io::Write + Send>>,
    config: std::sync::OnceLock<Digest>,
    /// On a terminal: the bars, one per layer.
    bars: Option<Bars>,
}

struct Bars {
    multi: indicatif::MultiProgress,
    by_digest: Mutex<std::collections::HashMap<Digest, indicatif::ProgressBar>>,
}

impl Bars {
    fn new(target: indicatif::ProgressDrawTarget) -> Bars {
        Bars {
            multi: indicatif::MultiProgress::with_draw_target(target),
            by_digest: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// The bar of `digest`, made on first use.
    fn bar(&self, digest: &Digest, size: u64) -> Option<indicatif::ProgressBar> {
        let mut map = self.by_digest.lock().ok()?;
        let bar = map.entry(*digest).or_insert_with(|| {
            let style = indicatif::ProgressStyle::with_template(
                "{prefix}: {msg:<17} [{bar:30}] {bytes}/{total_bytes}",
            )
            .expect("a valid template")
            .progress_chars("=> ");
            let bar = self
                .multi
                .add(indicatif::ProgressBar::new(size).with_style(style));
            bar.set_prefix(digest.hex()[..12].to_owned());
            bar
        });
        Some(bar.clone())
    }
}

/// What [`LineProgress`] says at each stage of a transfer.
struct Verbs {
    started: &'static str,
    progress: &'static str,
    exists: &'static str,
    done: &'static str,
}

const PULL_VERBS: Verbs = Verbs {
    started: "Pulling fs layer",
    progress: "Downloading",
    exists: "Already exists",
    done: "Download complete",
};

/// Docker's push lines: only `Layer already exists` and `Pushed` are
/// printed in lines mode (started and progress only move bars).
const PUSH_VERBS: Verbs = Verbs {
    started: "Preparing",
    progress: "Pushing",
    exists: "Layer already exists",
    done: "Pushed",
};

impl LineProgress {
    fn new(enabled: bool, stderr: bool) -> LineProgress {
        Self::with_verbs(enabled, stderr, &PULL_VERBS)
    }

    fn with_verbs(enabled: bool, stderr: bool, verbs: &'static Verbs) -> LineProgress {
        let (out, tty, target): (
            Box<dyn std::io::Write + Send>,
            bool,
            indicatif::ProgressDrawTarget,
        ) = if stderr {
            (
                Box::new(std::io::stderr()),
                std::io::stderr().is_terminal(),
                indicatif::ProgressDrawTarget::stderr(),
            )
        } else {
            (
                Box::new(std::io::stdout()),
                std::io::stdout().is_terminal(),
                indicatif::ProgressDrawTarget::stdout(),
            )
        };
        LineProgress {
            enabled,
            verbs,
            out: Mutex::new(out),
            config: std::sync::OnceLock::new(),
            bars: (enabled && tty).then(|| Bars::new(target)),
        }
    }

    fn say(&self, line: &str) {
        if !self.enabled {
            return;
        }
        if let Some(bars) = &self.bars {
            let _ = bars.multi.println(line);
        } else if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{line}");
        }
    }

    /// Updates the layer's bar, or prints its line.
    fn layer(&self, digest: &Digest, what: &str, done: Option<(u64, u64)>, finished: bool) {
        if !self.enabled || self.config.get() == Some(digest) {
            return;
        }
        match &self.bars {
            Some(bars) => {
                let Some(bar) = bars.bar(digest, done.map_or(0, |d| d.1)) else {
                    return;
                };
                if let Some((pos, len)) = done {
                    bar.set_length(len);
                    bar.set_position(pos);
                }
                if finished {
                    bar.finish_with_message(what.to_owned());
                } else {
                    bar.set_message(what.to_owned());
                }
            }
            None => self.say(&format!("{}: {what}", &digest.hex()[..12])),
        }
    }
}

impl Progress for LineProgress {
    fn resolved(&self, _manifest: &Digest, config: &Digest, _layers: usize) {
        let _ = self.config.set(*config);
    }
    fn blob_started(&self, digest: &Digest, size: u64) {
        // A push prints no "Preparing" line in lines mode.
        if self.bars.is_some() || std::ptr::eq(self.verbs, &PULL_VERBS) {
            self.layer(digest, self.verbs.started, Some((0, size)), false);
        }
    }
    fn blob_progress(&self, digest: &Digest, done: u64, size: u64) {
        // Lines mode prints no line per chunk, as Docker's plain output.
        if self.bars.is_some() {
            self.layer(digest, self.verbs.progress, Some((done, size)), false);
        }
    }
    fn blob_exists(&self, digest: &Digest, size: u64) {
        self.layer(digest, self.verbs.exists, Some((size, size)), true);
    }
    fn blob_mounted(&self, digest: &Digest, size: u64, repository: &str) {
        // Docker's push line for a cross-repository mount.
        self.layer(
            digest,
            &format!("Mounted from {repository}"),
            Some((size, size)),
            true,
        );
    }
    fn blob_done(&self, digest: &Digest, size: u64) {
        self.layer(digest, self.verbs.done, Some((size, size)), true);
    }
    fn blob_retry(&self, digest: &Digest, error: &kiln_registry::Error) {
        self.layer(digest, &format!("Retrying ({error})"), None, false);
    }
}

/// Pulls `reference` and unpacks it, printing Docker-like progress on
/// stdout (or stderr, for `run` and `build`) unless `quiet`.
pub(crate) fn pull_image_to(
    app: &mut App,
    reference: &Reference,
    platform: &Platform,
    quiet: bool,
    stderr: bool,
) -> Result<ImageRecord> {
    let registry = registry(app)?;
    let progress = LineProgress::new(!quiet, stderr);
    let say = |line: String| progress.say(&line);
    if !quiet {
        let what = match (reference.tag(), reference.digest()) {
            (Some(t), _) => t.to_owned(),
            (None, Some(d)) => d.to_string(),
            (None, None) => "latest".to_owned(),
        };
        say(format!(
            "{what}: Pulling from {}",
            reference.familiar_name()
        ));
    }
    let before = app
        .store
        .resolve_image(&reference.to_string())
        .ok()
        .map(|r| r.id);
    let snapshotter = app.snapshotter()?;
    let record = pull_pipelined(
        &app.store,
        snapshotter,
        app.unpack_options(),
        &registry,
        reference,
        platform,
        &progress,
    )?;
    crate::unpack::ensure_unpacked(app, &record.id)?;
    if !quiet {
        if let Some(d) = record
            .repo_digests
            .first()
            .and_then(|d| d.rsplit('@').next())
        {
            say(format!("Digest: {d}"));
        }
        if before == Some(record.id) {
            say(format!(
                "Status: Image is up to date for {}",
                reference.familiar()
            ));
        } else {
            say(format!(
                "Status: Downloaded newer image for {}",
                reference.familiar()
            ));
        }
    }
    Ok(record)
}

/// Pulls `reference` as `Registry::pull` does, but unpacks its lowest
/// missing layer while it downloads: the download with its digest check
/// and the gunzip, diff ID check and file writes run at once, on two
/// threads, with a bounded channel between them. The snapshot is committed
/// only once both checks passed (else it is removed). Other missing layers
/// are left to `ensure_unpacked`, which unpacks them from the store.
/// `kiln pull`, `run` and `build` (a missing FROM image) pull through it.
pub(crate) fn pull_pipelined(
    store: &kiln_content::Store,
    snapshotter: std::sync::Arc<dyn kiln_snapshot::Snapshotter>,
    unpack_opts: kiln_image::UnpackOptions,
    registry: &Registry,
    reference: &Reference,
    platform: &Platform,
    progress: &dyn kiln_registry::Progress,
) -> Result<ImageRecord> {
    let store = store.clone();
    block_on(async {
        let resolved = registry.resolve(reference, platform).await?;
        progress.resolved(
            &resolved.digest,
            &resolved.config.digest,
            resolved.layers.len(),
        );
        let lease = store.lease()?;
        // The (verified) config first: it names the diff IDs to check.
        let mut config_only = resolved.clone();
        config_only.layers.clear();
        registry.fetch_blobs(&config_only, &store, progress).await?;
        let mut tee = None;
        let mut unpacker = None;
        if let Some(job) = pipeline_job(&store, &*snapshotter, &resolved) {
            let (tx, rx) = tokio::sync::mpsc::channel(16);
            tee = Some(OneTee {
                digest: job.blob,
                tx: Mutex::new(Some(tx)),
            });
            let (snap, st) = (snapshotter.clone(), store.clone());
            unpacker = Some(std::thread::spawn(move || {
                let mut reader = TeeReader::new(rx);
                let label = job.layer.label.clone();
                kiln_image::unpack_layer_verified(
                    &*snap,
                    job.parent.as_deref(),
                    &job.layer,
                    &mut reader,
                    &unpack_opts,
                    Some(&st),
                    |r| r.finish(&label),
                )
            }));
        }
        let fetched = registry
            .fetch_blobs_teed(
                &resolved,
                &store,
                progress,
                tee.as_ref().map(|t| t as &dyn kiln_registry::Tee),
            )
            .await;
        // Closes the channel if the layer was never opened.
        drop(tee);
        if let Some(h) = unpacker {
            // Whatever happened there, ensure_unpacked afterwards unpacks
            // the (verified) blob from the store or reports the error.
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        fetched?;
        let record = registry.record(&resolved, &store).await?;
        drop(lease);
        Ok::<_, anyhow::Error>(record)
    })?
}

/// The layer [`pull_pipelined`] unpacks while downloading.
struct PipelineJob {
    blob: Digest,
    layer: kiln_image::LayerRef,
    parent: Option<String>,
}

/// The lowest layer of `resolved` not unpacked yet, if its blob must be
/// downloaded and every layer below it is unpacked.
fn pipeline_job(
    store: &kiln_content::Store,
    snapshotter: &dyn kiln_snapshot::Snapshotter,
    resolved: &kiln_registry::Resolved,
) -> Option<PipelineJob> {
    let config =
        kiln_image::ImageConfig::from_json(&store.read_blob(&resolved.config.digest).ok()?).ok()?;
    let diff_ids: Vec<Digest> = config
        .rootfs
        .diff_ids
        .iter()
        .map(|d| d.parse().ok())
        .collect::<Option<_>>()?;
    if diff_ids.len() != resolved.layers.len() {
        return None;
    }
    let chain = kiln_image::chain_ids(&diff_ids);
    let k =
        (0..chain.len()).find(|&i| !snapshotter.exists(&chain[i].to_string()).unwrap_or(true))?;
    let layer = &resolved.layers[k];
    if store.has_blob(&layer.digest) {
        return None;
    }
    let compression = kiln_layer::Compression::from_media_type(&layer.media_type).ok()?;
    Some(PipelineJob {
        blob: layer.digest,
        layer: kiln_image::LayerRef {
            chain_id: chain[k],
            diff_id: diff_ids[k],
            compression,
            label: layer.digest.to_string(),
        },
        parent: k.checked_sub(1).map(|p| chain[p].to_string()),
    })
}

/// Copies the first download attempt of one blob into a channel.
struct OneTee {
    digest: Digest,
    tx: Mutex<Option<tokio::sync::mpsc::Sender<kiln_registry::TeeEvent>>>,
}

impl kiln_registry::Tee for OneTee {
    fn open(&self, digest: &Digest) -> Option<tokio::sync::mpsc::Sender<kiln_registry::TeeEvent>> {
        if *digest != self.digest {
            return None;
        }
        self.tx.lock().ok()?.take()
    }
}

/// Reads the pieces a [`OneTee`] receives; the end is clean only after the
/// download said the blob was verified.
struct TeeReader {
    rx: tokio::sync::mpsc::Receiver<kiln_registry::TeeEvent>,
    cur: kiln_registry::bytes::Bytes,
    verified: bool,
}

impl TeeReader {
    fn new(rx: tokio::sync::mpsc::Receiver<kiln_registry::TeeEvent>) -> TeeReader {
        TeeReader {
            rx,
            cur: kiln_registry::bytes::Bytes::new(),
            verified: false,
        }
    }

    /// Reads what is left and succeeds only if the download was verified.
    fn finish(&mut self, label: &str) -> kiln_image::Result<()> {
        std::io::copy(self, &mut std::io::sink()).map_err(|source| {
            kiln_image::Error::ReadBlob {
                digest: label.to_owned(),
                source,
            }
        })?;
        Ok(())
    }
}

impl std::io::Read for TeeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if !self.cur.is_empty() {
                let n = buf.len().min(self.cur.len());
                buf[..n].copy_from_slice(&self.cur.split_to(n));
                return Ok(n);
            }
            if self.verified {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(kiln_registry::TeeEvent::Data(b)) => self.cur = b,
                Some(kiln_registry::TeeEvent::Verified) => self.verified = true,
                None => {
                    return Err(std::io::Error::other(
                        "the download failed or was not verified",
                    ));
                }
            }
        }
    }
}

pub(crate) fn pull(app: &mut App, args: &PullArgs) -> Result<u8> {
    let reference = parse_reference(&args.image)?;
    let platform = platform(args.platform.as_deref())?;
    pull_image_to(app, &reference, &platform, args.quiet, false)?;
    println!("{}", reference);
    Ok(0)
}

/// Parses a `--compression` value.
pub(crate) fn compression(arg: &str) -> Result<kiln_layer::Compression> {
    Ok(match arg {
        "gzip" => kiln_layer::Compression::Gzip,
        "zstd" => kiln_layer::Compression::Zstd,
        "none" | "uncompressed" => kiln_layer::Compression::None,
        other => bail!("invalid --compression {other:?}: expected gzip, zstd or none"),
    })
}

pub(crate) fn push(app: &mut App, args: &PushArgs) -> Result<u8> {
    let reference = parse_reference(&args.image)?;
    let compression = compression(&args.compression)?;
    let record = app.store.resolve_image(&args.image)?;
    let registry = registry(app)?;
    if !args.quiet {
        println!("The push refers to repository [{}]", reference.name());
    }
    let dist = kiln_image::distribution_manifest(&app.store, &record.id, compression)
        .with_context(|| format!("cannot compress the layers of {}", args.image))?;
    let progress = LineProgress::with_verbs(!args.quiet, false, &PUSH_VERBS);
    let _ = progress.config.set(record.id);
    let digest = block_on(registry.push_manifest(
        &reference,
        &app.store,
        &record.id,
        &dist.manifest_digest,
        &dist.media_type,
        &progress,
    ))??;
    if args.quiet {
        println!("{digest}");
    } else {
        let size = app.store.blob_size(&digest).unwrap_or(0);
        progress.say(&format!(
            "{}: digest: {digest} size: {size}",
            reference.tag().unwrap_or("latest")
        ));
    }
    Ok(0)
}

pub(crate) fn tag(app: &mut App, args: &TagArgs) -> Result<u8> {
    // The target is checked first, as Docker's client does before it asks
    // the daemon about the source.
    let target = args.target.parse::<Reference>().map_err(|e| match e {
        kiln_content::Error::InvalidReference { reason, .. } => anyhow::anyhow!(
            "Error parsing reference: {:?} is not a valid repository/tag: {}",
            args.target,
            docker_reference_reason(&reason)
        ),
        other => other.into(),
    })?;
    if target.digest().is_some() {
        bail!("refusing to create a tag with a digest reference");
    }
    if target.is_digest_algorithm_name() {
        bail!("refusing to create an ambiguous tag using digest algorithm as name");
    }
    let record = app.store.resolve_image(&args.source)?;
    app.store.tag_image(&target, &record.id)?;
    Ok(0)
}

/// kiln-content's reason for refusing a reference, as Docker's reference
/// parser words it: its own messages where kiln has them (lowercase names,
/// 64-hex names), else `invalid reference format: <what kiln found>`.
fn docker_reference_reason(reason: &str) -> String {
    if reason.starts_with("invalid reference format")
        || reason.starts_with("invalid repository name")
    {
        reason.to_owned()
    } else {
        format!("invalid reference format: {reason}")
    }
}

/// An RFC 3339 time as Go prints a `time.Time` (`2024-05-01 10:20:30
/// +0000 UTC`), Docker's `.CreatedAt`.
fn docker_time(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..19)) {
        (Some(date), Some(time)) if rfc3339.ends_with('Z') => format!("{date} {time} +0000 UTC"),
        _ => rfc3339.to_owned(),
    }
}

fn created_time(record: &ImageRecord) -> Option<SystemTime> {
    let ts: kiln_image::Timestamp = record.created.as_deref()?.parse().ok()?;
    Some(ts.to_system_time())
}

pub(crate) fn images(app: &mut App, args: &ImagesArgs) -> Result<u8> {
    let filter = match &args.repository {
        Some(r) => Some(parse_reference(r)?),
        None => None,
    };
    let explicit_tag = args
        .repository
        .as_deref()
        .is_some_and(|r| r.rsplit('/').next().is_some_and(|l| l.contains(':')));
    let template = args
        .format
        .as_deref()
        .map(crate::template::Format::parse)
        .transpose()?;
    let mut fields = Vec::new();
    let mut records = app.store.list_images()?;
    records.sort_by(|a, b| b.created.cmp(&a.created));
    let now = SystemTime::now();
    let mut rows = Vec::new();
    let mut ids = Vec::new();
    let parents: std::collections::BTreeSet<&String> = records
        .iter()
        .filter_map(|r| r.annotations.get(crate::gc::PARENT_ANNOTATION))
        .collect();
    for rec in &records {
        if !args.all && rec.repo_tags.is_empty() && parents.contains(&rec.id.to_string()) {
            continue;
        }
        let id = if args.no_trunc {
            rec.id.to_string()
        } else {
            rec.id.hex()[..12].to_owned()
        };
        let created = created_time(rec).map_or_else(|| "N/A".to_owned(), |t| format::ago(t, now));
        // Unpacked, as Docker shows it, once measured; else the blobs' sum.
        let size = kiln_image::read_image(&app.store, &rec.id)
            .ok()
            .and_then(|img| kiln_image::image_size(&app.store, &img).ok().flatten())
            .unwrap_or(rec.size);
        let size = format::size(size);
        let mut tags: Vec<(String, String)> = rec
            .repo_tags
            .iter()
            .filter_map(|t| {
                t.rsplit_once(':')
                    .map(|(r, tg)| (r.to_owned(), tg.to_owned()))
            })
            .collect();
        if tags.is_empty() {
            // Pulled by digest only: Docker shows the repository, tag <none>.
            for d in &rec.repo_digests {
                if let Some((repo, _)) = d.split_once('@')
                    && !tags.iter().any(|(r, _)| r == repo)
                {
                    tags.push((repo.to_owned(), "<none>".into()));
                }
            }
        }
        if tags.is_empty() {
            tags.push(("<none>".into(), "<none>".into()));
        }
        for (repo, tag) in tags {
            if let Some(f) = &filter {
                let Ok(this) = repo.parse::<Reference>() else {
                    continue;
                };
                if !this.same_repository(f) || (explicit_tag && Some(tag.as_str()) != f.tag()) {
                    continue;
                }
            }
            if !ids.contains(&id) {
                ids.push(id.clone());
            }
            let mut row = vec![repo.clone(), tag];
            if args.digests {
                let d = rec
                    .repo_digests
                    .iter()
                    .find(|d| d.split('@').next() == Some(repo.as_str()))
                    .and_then(|d| d.rsplit('@').next())
                    .unwrap_or("<none>");
                row.push(d.to_owned());
            }
            fields.push(serde_json::json!({
                "ID": id,
                "Repository": row[0],
                "Tag": row[1],
                "Digest": rec.repo_digests.iter()
                    .find(|d| d.split('@').next() == Some(repo.as_str()))
                    .and_then(|d| d.rsplit('@').next())
                    .unwrap_or("<none>"),
                "CreatedSince": created,
                "CreatedAt": rec.created.as_deref().map(docker_time).unwrap_or_default(),
                "Size": size,
            }));
            row.extend([id.clone(), created.clone(), size.clone()]);
            rows.push(row);
        }
    }
    let mut out = std::io::stdout().lock();
    if args.quiet {
        for id in ids {
            writeln!(out, "{id}")?;
        }
        return Ok(0);
    }
    if let Some(t) = template {
        const HEADERS: &[(&str, &str)] = &[
            ("ID", "IMAGE ID"),
            ("Repository", "REPOSITORY"),
            ("Tag", "TAG"),
            ("Digest", "DIGEST"),
            ("CreatedSince", "CREATED"),
            ("CreatedAt", "CREATED AT"),
            ("Size", "SIZE"),
        ];
        out.write_all(t.render_rows(HEADERS, &fields)?.as_bytes())?;
        return Ok(0);
    }
    let header: &[&str] = if args.digests {
        &["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"]
    } else {
        &["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    };
    out.write_all(format::table(header, &rows).as_bytes())?;
    Ok(0)
}

pub(crate) fn rmi(app: &mut App, args: &RmiArgs) -> Result<u8> {
    let mut failed = false;
    for name in &args.images {
        if let Err(err) = crate::gc::remove_image(app, name, args.force) {
            eprintln!("Error response from kiln: {err:#}");
            failed = true;
        }
    }
    Ok(u8::from(failed))
}

pub(crate) fn inspect_image(app: &mut App, name: &str) -> Result<serde_json::Value> {
    let record = app.store.resolve_image(name)?;
    Ok(kiln_image::inspect(&app.store, &record.id)?)
}

pub(crate) fn history(app: &mut App, args: &HistoryArgs) -> Result<u8> {
    let record = app.store.resolve_image(&args.image)?;
    let rows = kiln_image::history(&app.store, &record.id)?;
    let now = SystemTime::now();
    let mut out = std::io::stdout().lock();
    if args.quiet {
        for r in &rows {
            let id = r.id.map_or_else(
                || "<missing>".to_owned(),
                |d| {
                    if args.no_trunc {
                        d.to_string()
                    } else {
                        d.hex()[..12].to_owned()
                    }
                },
            );
            writeln!(out, "{id}")?;
        }
        return Ok(0);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let id = r.id.map_or_else(
                || "<missing>".to_owned(),
                |d| {
                    if args.no_trunc {
                        d.to_string()
                    } else {
                        d.hex()[..12].to_owned()
                    }
                },
            );
            let created = r.created.map_or_else(
                || "N/A".to_owned(),
                |t| format::ago(t.to_system_time(), now),
            );
            let mut by = r.created_by.clone();
            if !args.no_trunc && by.chars().count() > 45 {
                by = by.chars().take(44).collect::<String>() + "…";
            }
            vec![id, created, by, format::size(r.size), r.comment.clone()]
        })
        .collect();
    out.write_all(
        format::table(
            &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
            &table,
        )
        .as_bytes(),
    )?;
    Ok(0)
}

pub(crate) fn login(app: &mut App, args: &LoginArgs) -> Result<u8> {
    let username = match &args.username {
        Some(u) => u.clone(),
        None => bail!("kiln login needs --username (interactive prompts are not supported)"),
    };
    let password = if args.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the password from stdin")?;
        s.trim_end_matches(['\n', '\r']).to_owned()
    } else if let Some(p) = &args.password {
        if std::io::stderr().is_terminal() {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        }
        p.clone()
    } else {
        bail!("kiln login needs --password-stdin or --password");
    };
    let registry = registry(app)?;
    let path = docker_config_path();
    block_on(registry.login(&args.server, &username, &password, &path))??;
    println!("Login Succeeded");
    Ok(0)
}

pub(crate) fn logout(_app: &mut App, args: &LogoutArgs) -> Result<u8> {
    let path = docker_config_path();
    if kiln_registry::remove_login(&path, &args.server)? {
        println!("Removing login credentials for {}", args.server);
    } else {
        println!("Not logged in to {}", args.server);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress_with_hidden_bars() -> LineProgress {
        hidden(&PULL_VERBS)
    }

    fn hidden(verbs: &'static Verbs) -> LineProgress {
        LineProgress {
            enabled: true,
            verbs,
            out: Mutex::new(Box::new(std::io::sink())),
            config: std::sync::OnceLock::new(),
            bars: Some(Bars::new(indicatif::ProgressDrawTarget::hidden())),
        }
    }

    #[test]
    fn terminal_bars_follow_each_layer_and_skip_the_config() {
        let p = progress_with_hidden_bars();
        let (config, layer, cached) = (
            Digest::of(b"config"),
            Digest::of(b"layer"),
            Digest::of(b"cached"),
        );
        p.resolved(&Digest::of(b"manifest"), &config, 2);
        p.blob_started(&config, 10);
        p.blob_started(&layer, 100);
        p.blob_progress(&layer, 40, 100);
        let bars = p.bars.as_ref().expect("bars");
        let bar = bars
            .by_digest
            .lock()
            .expect("lock")
            .get(&layer)
            .cloned()
            .expect("a bar for the layer");
        assert_eq!((bar.position(), bar.length()), (40, Some(100)));
        assert_eq!(bar.message(), "Downloading");
        p.blob_done(&layer, 100);
        assert!(bar.is_finished());
        assert_eq!(bar.message(), "Download complete");
        p.blob_exists(&cached, 7);
        let map = bars.by_digest.lock().expect("lock");
        assert_eq!(
            map.get(&cached).map(|b| b.message()),
            Some("Already exists".to_owned())
        );
        assert!(!map.contains_key(&config), "the config blob gets no bar");
    }

    #[test]
    fn push_bars_say_pushing_then_pushed() {
        let p = hidden(&PUSH_VERBS);
        let (config, layer, there) = (
            Digest::of(b"config"),
            Digest::of(b"layer"),
            Digest::of(b"there"),
        );
        p.resolved(&Digest::of(b"manifest"), &config, 2);
        p.blob_started(&layer, 100);
        p.blob_progress(&layer, 60, 100);
        let bars = p.bars.as_ref().expect("bars");
        let bar = bars
            .by_digest
            .lock()
            .expect("lock")
            .get(&layer)
            .cloned()
            .expect("a bar for the layer");
        assert_eq!((bar.position(), bar.message()), (60, "Pushing".to_owned()));
        p.blob_done(&layer, 100);
        assert!(bar.is_finished());
        assert_eq!(bar.message(), "Pushed");
        p.blob_exists(&there, 5);
        p.blob_done(&config, 10);
        let map = bars.by_digest.lock().expect("lock");
        assert_eq!(
            map.get(&there).map(|b| b.message()),
            Some("Layer already exists".to_owned())
        );
        assert!(!map.contains_key(&config), "the config blob gets no bar");
    }

    #[test]
    fn compression_names() {
        assert_eq!(compression("gzip").unwrap(), kiln_layer::Compression::Gzip);
        assert_eq!(compression("zstd").unwrap(), kiln_layer::Compression::Zstd);
        assert_eq!(compression("none").unwrap(), kiln_layer::Compression::None);
        assert!(compression("lz4").is_err());
    }
}
