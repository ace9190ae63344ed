//! `kiln build`: options, the build context (a directory, or a tar or a
//! Dockerfile on stdin), and the run of kiln-build's engine over the real
//! store, snapshotter and runtime.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use kiln_build::{
    BuildOptions, Builder, ContextDir, Event, LegacyWriter, NetworkMode, Progress, PullPolicy,
};

use crate::app::App;
use crate::build_backend::{Backend, Cache, Runner};

/// `kiln build`.
#[derive(Debug, clap::Args)]
pub(crate) struct BuildArgs {
    /// Name and optionally a tag (`user/project:version`); repeatable.
    #[arg(short, long = "tag")]
    tag: Vec<String>,
    /// The Dockerfile (default: `CONTEXT/Dockerfile`), or `-` for stdin.
    #[arg(short, long)]
    file: Option<String>,
    /// Build-time variables (`KEY=VALUE`, or `KEY` to take the host's value).
    #[arg(long = "build-arg")]
    build_arg: Vec<String>,
    /// The stage to build.
    #[arg(long)]
    target: Option<String>,
    /// Do not use the cache.
    #[arg(long)]
    no_cache: bool,
    /// Always check the registry for newer base images.
    #[arg(long)]
    pull: bool,
    /// Network of RUN steps: `none` (default) or `host`.
    #[arg(long, default_value = "none")]
    network: String,
    /// Target platform (`linux/amd64`).
    #[arg(long)]
    platform: Option<String>,
    /// Labels for the image (`KEY=VALUE`).
    #[arg(long)]
    label: Vec<String>,
    /// Write the image ID to this file.
    #[arg(long)]
    iidfile: Option<PathBuf>,
    /// Print only the image ID.
    #[arg(short, long)]
    quiet: bool,
    /// Output: `auto`, `plain`, `tty` or `quiet`.
    #[arg(long, default_value = "auto")]
    progress: String,
    /// Compression of the layers stored: `none` (default: local layers are
    /// kept uncompressed, as Docker does; push and save compress them),
    /// `gzip` or `zstd`.
    #[arg(long, default_value = "none")]
    compression: String,
    /// Stages built at once (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Tell, for each step that misses the cache, which input changed.
    #[arg(long)]
    explain_cache: bool,
    /// A secret for `RUN --mount=type=secret` (`id=NAME,src=FILE`).
    #[arg(long)]
    secret: Vec<String>,
    /// The build context: a directory, or `-` for a tar archive or a Dockerfile on stdin.
    context: String,
}

/// Prints events as Docker's legacy builder does, to stdout, plus timing per step with `tty`.
struct Printer {
    inner: LegacyWriter<std::io::Stdout>,
    quiet: bool,
    start: std::time::Instant,
}

impl Progress for Printer {
    fn event(&self, event: Event) {
        if crate::build_backend::trace_timing()
            && let Event::Step { number, text, .. } = &event
        {
            eprintln!(
                "[timing] step {number} at {:.2} ms: {text}",
                self.start.elapsed().as_secs_f64() * 1000.0
            );
        }
        if self.quiet {
            return;
        }
        self.inner.event(event);
    }
}

fn parse_kv(items: &[String], what: &str, from_env: bool) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in items {
        match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_owned(), v.to_owned());
            }
            None if from_env && !item.is_empty() => {
                if let Ok(v) = std::env::var(item) {
                    out.insert(item.clone(), v);
                }
            }
            _ => bail!("invalid {what} {item:?}: expected KEY=VALUE"),
        }
    }
    Ok(out)
}

fn parse_secrets(items: &[String]) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for item in items {
        let mut id = None;
        let mut src = None;
        for part in item.split(',') {
            match part.split_once('=') {
                Some(("id", v)) => id = Some(v.to_owned()),
                Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
                Some(("type", "file")) => {}
                _ => bail!("invalid --secret {item:?}: expected id=NAME,src=FILE"),
            }
        }
        let Some(id) = id else {
            bail!("invalid --secret {item:?}: missing id=")
        };
        let src = src.unwrap_or_else(|| PathBuf::from(&id));
        if !src.is_file() {
            bail!("--secret {id}: {} is not a readable file", src.display());
        }
        out.insert(id, src);
    }
    Ok(out)
}

/// The context directory and the Dockerfile bytes, reading stdin when asked.
struct Prepared {
    dir: PathBuf,
    dockerfile_path: Option<PathBuf>,
    dockerfile: Vec<u8>,
    _temp: Option<tempfile::TempDir>,
}

fn prepare_context(args: &BuildArgs) -> Result<Prepared> {
    let mut temp = None;
    let mut stdin_dockerfile = None;
    let dir = if args.context == "-" {
        let mut data = Vec::new();
        std::io::stdin()
            .read_to_end(&mut data)
            .context("cannot read the build context from stdin")?;
        let t = tempfile::tempdir().context("cannot create a temporary context directory")?;
        let data = if data.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&data[..])
                .read_to_end(&mut out)
                .context("invalid gzip context on stdin")?;
            out
        } else {
            data
        };
        if data.len() > 262 && &data[257..262] == b"ustar" {
            tar::Archive::new(&data[..])
                .unpack(t.path())
                .context("cannot unpack the tar context from stdin")?;
        } else {
            stdin_dockerfile = Some(data);
        }
        let p = t.path().to_path_buf();
        temp = Some(t);
        p
    } else {
        let p = PathBuf::from(&args.context);
        if !p.is_dir() {
            bail!(
                "unable to prepare context: path {:?} not found",
                args.context
            );
        }
        p
    };
    let (dockerfile, dockerfile_path) = match (stdin_dockerfile, args.file.as_deref()) {
        (Some(d), _) => (d, None),
        (None, Some("-")) => {
            let mut d = Vec::new();
            std::io::stdin()
                .read_to_end(&mut d)
                .context("cannot read the Dockerfile from stdin")?;
            (d, None)
        }
        (None, f) => {
            let path = match f {
                Some(f) if Path::new(f).is_absolute() => PathBuf::from(f),
                Some(f) if args.context != "-" && Path::new(f).exists() => PathBuf::from(f),
                Some(f) => dir.join(f),
                None => dir.join("Dockerfile"),
            };
            let d = std::fs::read(&path)
                .with_context(|| format!("cannot read the Dockerfile {}", path.display()))?;
            (d, Some(path))
        }
    };
    Ok(Prepared {
        dir,
        dockerfile_path,
        dockerfile,
        _temp: temp,
    })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

pub(crate) fn build(app: &mut App, args: &BuildArgs) -> Result<u8> {
    let started = std::time::Instant::now();
    let quiet = args.quiet || args.progress == "quiet";
    if !matches!(args.progress.as_str(), "auto" | "plain" | "tty" | "quiet") {
        bail!(
            "invalid --progress {:?}: expected auto, plain, tty or quiet",
            args.progress
        );
    }
    let compression = match args.compression.as_str() {
        "gzip" => kiln_layer::Compression::Gzip,
        "zstd" => kiln_layer::Compression::Zstd,
        "none" => kiln_layer::Compression::None,
        other => bail!("invalid --compression {other:?}: expected gzip, zstd or none"),
    };
    let network = match crate::container::network_mode(&args.network)? {
        kiln_runtime::NetworkMode::Host => NetworkMode::Host,
        kiln_runtime::NetworkMode::None => NetworkMode::None,
    };
    let prepared = prepare_context(args)?;
    let name = prepared.dockerfile_path.as_ref().map_or_else(
        || "Dockerfile".to_owned(),
        |p| {
            p.file_name()
                .map_or_else(|| "Dockerfile".into(), |n| n.to_string_lossy().into_owned())
        },
    );
    let dockerfile = kiln_build::parse(&prepared.dockerfile).map_err(|e| match e {
        kiln_build::Error::Parse { message } => anyhow::anyhow!(
            "{}",
            message
                .lines()
                .map(|l| format!("{name}:{l}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
        other => anyhow::Error::new(other),
    })?;
    let index_dir = app.root().join("build").join("index");
    std::fs::create_dir_all(&index_dir)
        .with_context(|| format!("cannot create {}", index_dir.display()))?;
    let context_key = kiln_content::Digest::of(
        std::fs::canonicalize(&prepared.dir)
            .unwrap_or_else(|_| prepared.dir.clone())
            .to_string_lossy()
            .as_bytes(),
    );
    let index_path = (args.context != "-").then(|| index_dir.join(context_key.hex()));
    let context = ContextDir::open(
        &prepared.dir,
        prepared.dockerfile_path.as_deref(),
        index_path.as_deref(),
    )?;
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Some(
            v.parse::<i64>()
                .with_context(|| format!("invalid SOURCE_DATE_EPOCH {v:?}"))?,
        ),
        _ => None,
    };
    let platform = match &args.platform {
        Some(p) => Some(
            p.parse()
                .map_err(|e| anyhow::anyhow!("invalid --platform {p:?}: {e}"))?,
        ),
        None => None,
    };
    let (seed, _) = crate::container::new_id()?;
    let downloads_root = app.root().join("build").join("downloads");
    std::fs::create_dir_all(&downloads_root)
        .with_context(|| format!("cannot create {}", downloads_root.display()))?;
    let downloads =
        tempfile::tempdir_in(&downloads_root).context("cannot create a download directory")?;
    let options = BuildOptions {
        tags: args
            .tag
            .iter()
            .map(|t| kiln_build::normalize_tag(t))
            .collect(),
        build_args: parse_kv(&args.build_arg, "--build-arg", true)?,
        target: args.target.clone(),
        no_cache: args.no_cache,
        pull: if args.pull {
            PullPolicy::Always
        } else {
            PullPolicy::Missing
        },
        network,
        platform,
        labels: parse_kv(&args.label, "--label", false)?,
        jobs: args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
            .max(1),
        explain_cache: args.explain_cache || std::env::var_os("KILN_EXPLAIN_CACHE").is_some(),
        now: unix_now(),
        source_date_epoch,
        id_seed: seed,
        secrets: parse_secrets(&args.secret)?,
        download_dir: Some(downloads.path().to_path_buf()),
        ..BuildOptions::default()
    };
    for t in &args.tag {
        t.parse::<kiln_content::Reference>()
            .with_context(|| format!("invalid tag {t:?}"))?;
    }
    let snapshotter = app.snapshotter()?;
    let backend = Backend::new(
        app,
        snapshotter.clone(),
        compression,
        source_date_epoch,
        quiet,
    )?;
    let runner = Runner::new(app);
    let cache = Cache::new(app)?;
    let printer = Printer {
        inner: LegacyWriter::new(std::io::stdout()),
        quiet,
        start: started,
    };
    let _ = std::io::stdout().is_terminal();
    let outcome = Builder::new(&backend, &runner, &cache, &printer)
        .with_fetcher(&crate::fetch::HttpFetcher)
        .build(&dockerfile, &context, &options);
    backend.cleanup();
    let outcome = match outcome {
        Ok(o) => o,
        Err(kiln_build::Error::StepFailed { command, code }) => {
            eprintln!("The command '{command}' returned a non-zero code: {code}");
            return Ok(1);
        }
        Err(e) => return Err(e.into()),
    };
    if quiet {
        println!("{}", outcome.image);
    }
    if crate::build_backend::trace_timing() {
        eprintln!(
            "[timing] build done at {:.2} ms",
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    if let Some(path) = &args.iidfile {
        std::fs::write(path, outcome.image.to_string())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    std::io::stdout().flush()?;
    Ok(0)
}
