//! `kiln build`: options, the build context (a directory, or a tar or a
//! Dockerfile on stdin), and the run of kiln-builder's engine over the real
//! store, snapshotter and runtime.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use kiln_builder::{BuildOptions, Builder, ContextDir, Event, LegacyWriter, Progress, PullPolicy};

use kiln_engine::Engine;
use kiln_engine::build_backend::{Backend, Cache, Runner};

/// `kiln build`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BuildArgs {
    /// Name and optionally a tag (`user/project:version`); repeatable.
    #[arg(short, long = "tag", value_parser = parse_tag)]
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
    /// A cache to read steps from, in buildx's syntax
    /// (`type=registry,ref=REF` or `type=local,src=DIR`), or an image
    /// name; repeatable, the first hit wins.
    #[arg(long = "cache-from")]
    cache_from: Vec<String>,
    /// Where to write the build's steps as a cache
    /// (`type=registry,ref=REF[,mode=min|max][,compression=gzip|zstd][,ignore-error=true]`
    /// or `type=local,dest=DIR`); repeatable.
    #[arg(long = "cache-to")]
    cache_to: Vec<String>,
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
    /// Push the image after building it (with several `--platform`s, the
    /// index of the platforms' images).
    #[arg(long)]
    push: bool,
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
    /// An SSH agent for `RUN --mount=type=ssh`: `default` (the agent of
    /// `$SSH_AUTH_SOCK`) or `ID=SOCKET`.
    #[arg(long)]
    ssh: Vec<String>,
    /// Remove intermediate containers after a successful build (default
    /// true, as Docker's legacy builder). kiln's RUN containers are removed
    /// as soon as their layer is committed; `--rm=false` is refused.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    rm: bool,
    /// Always remove intermediate containers, even after a failed step
    /// (kiln always does).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    force_rm: bool,
    /// The cgroup the RUN steps' containers are created under (default
    /// `kiln`), from the root of the cgroup hierarchy.
    #[arg(long, value_parser = parse_cgroup_parent)]
    cgroup_parent: Option<String>,
    /// An extra `/etc/hosts` line for RUN steps (`host:ip`); repeatable.
    #[arg(long = "add-host", value_parser = parse_add_host)]
    add_host: Vec<(String, String)>,
    /// The build context: a directory, `-` for a tar archive or a Dockerfile
    /// on stdin, a git repository (`git://host/repo.git#ref:subdir`,
    /// `https://host/repo.git`) or an `http(s)://` URL of a tarball (or of a
    /// Dockerfile).
    context: String,
}

/// `--cgroup-parent`: a path below the cgroup root (a leading `/` is
/// allowed, as Docker allows it); `..` is refused.
fn parse_cgroup_parent(value: &str) -> Result<String, String> {
    let rel = value.trim_start_matches('/');
    if rel.is_empty()
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(format!(
            "invalid cgroup parent {value:?}: expected a path like /kiln-builds or kiln/ci"
        ));
    }
    Ok(rel.to_owned())
}

/// `--add-host host:ip`, checked as Docker's CLI checks it (a usage error,
/// exit 125): split at the first `:` (IPv6 addresses keep theirs).
fn parse_add_host(value: &str) -> Result<(String, String), String> {
    match value.split_once(':') {
        Some((host, ip)) if !host.is_empty() => {
            if ip == "host-gateway" {
                return Err(
                    "host-gateway is not supported: kiln creates no bridge network".to_owned(),
                );
            }
            ip.parse::<std::net::IpAddr>()
                .map_err(|_| format!("invalid IP address in add-host: {ip:?}"))?;
            Ok((host.to_owned(), ip.to_owned()))
        }
        _ => Err(format!("bad format for add-host: {value:?}")),
    }
}

/// Prints events as Docker's legacy builder does (`plain`), as a live view
/// (`tty`), or not at all.
struct Printer {
    out: Output,
    start: std::time::Instant,
}

impl Progress for Printer {
    fn event(&self, event: Event) {
        if kiln_engine::build_backend::trace_timing()
            && let Event::Step { number, text, .. } = &event
        {
            eprintln!(
                "[timing] step {number} at {:.2} ms: {text}",
                self.start.elapsed().as_secs_f64() * 1000.0
            );
        }
        match &self.out {
            Output::Plain(w) => w.event(event),
            Output::Live(v) => v.event(event),
            Output::Quiet => {}
        }
    }
}

/// Lines of the running step's output the live view shows.
const TAIL_LINES: usize = 5;

/// `--progress tty` (and `auto` on a terminal): a live view with a line per
/// step and its time (`CACHED` when it came from the cache), the running
/// step's last lines of output under it, and the legacy closing lines
/// (`Successfully built`, tags, warnings, cache-miss reasons) printed above.
/// A failing step's whole output is printed by [`LiveView::failed`].
struct LiveView {
    multi: indicatif::MultiProgress,
    state: std::sync::Mutex<LiveState>,
    start: std::time::Instant,
}

struct LiveState {
    timeline: kiln_builder::Timeline,
    bars: Vec<indicatif::ProgressBar>,
}

impl LiveView {
    fn new(target: indicatif::ProgressDrawTarget) -> LiveView {
        LiveView {
            multi: indicatif::MultiProgress::with_draw_target(target),
            state: std::sync::Mutex::new(LiveState {
                timeline: kiln_builder::Timeline::new(TAIL_LINES),
                bars: Vec::new(),
            }),
            start: std::time::Instant::now(),
        }
    }

    fn running_style() -> indicatif::ProgressStyle {
        indicatif::ProgressStyle::with_template("{spinner} {msg}")
            .expect("a valid template")
            .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ")
    }

    fn done_style() -> indicatif::ProgressStyle {
        indicatif::ProgressStyle::with_template("{msg}").expect("a valid template")
    }

    /// Brings the bars in line with the timeline as of `now`.
    fn sync(&self, s: &mut LiveState, now: std::time::Duration) {
        let lines = s.timeline.lines(now);
        for (i, line) in lines.iter().enumerate() {
            if s.bars.len() <= i {
                let bar = self
                    .multi
                    .add(indicatif::ProgressBar::new_spinner().with_style(Self::running_style()));
                bar.enable_steady_tick(std::time::Duration::from_millis(100));
                s.bars.push(bar);
            }
            let bar = &s.bars[i];
            if bar.is_finished() {
                continue;
            }
            let mut msg = line.summary();
            if line.done {
                bar.set_style(Self::done_style());
                bar.finish_with_message(format!("✔ {msg}"));
            } else {
                for t in &line.tail {
                    msg.push_str("\n    ");
                    msg.push_str(t);
                }
                bar.set_message(msg);
            }
        }
    }

    fn event(&self, event: Event) {
        let now = self.start.elapsed();
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let above = matches!(
            event,
            Event::Warning { .. }
                | Event::CacheMiss { .. }
                | Event::Built { .. }
                | Event::Tagged { .. }
        );
        s.timeline.event(&event, now);
        self.sync(&mut s, now);
        if above && let Some(text) = kiln_builder::legacy_text(&event) {
            let text = String::from_utf8_lossy(&text);
            let _ = self.multi.println(text.trim_end());
        }
    }

    /// The build failed: stop the clock and return the whole output of the
    /// step that was running (to print before the error).
    fn failed(&self) -> Vec<u8> {
        let now = self.start.elapsed();
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.timeline.end_current(now);
        self.sync(&mut s, now);
        s.timeline.last_output().to_vec()
    }

    /// The summary lines so far (for tests).
    #[cfg(test)]
    fn messages(&self) -> Vec<String> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.bars.iter().map(|b| b.message()).collect()
    }
}

/// The build's output sink: the legacy text (`plain`), the live view
/// (`tty`), or nothing (`quiet`).
enum Output {
    Plain(LegacyWriter<std::io::Stdout>),
    Live(LiveView),
    Quiet,
}

/// `-t` values are checked as Docker's CLI checks them, before anything is
/// read: a bad one is a usage error (exit 125, `invalid reference format`).
fn parse_tag(value: &str) -> Result<String, String> {
    match value.parse::<kiln_content::Reference>() {
        Ok(_) => Ok(value.to_owned()),
        Err(kiln_content::Error::InvalidReference { reason, .. })
            if reason.starts_with("invalid reference format") =>
        {
            Err(reason)
        }
        Err(kiln_content::Error::InvalidReference { reason, .. }) => {
            Err(format!("invalid reference format: {reason}"))
        }
        Err(e) => Err(format!("invalid reference format: {e}")),
    }
}

/// What a `KEY` without `=` means for [`parse_kv`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum BareKey {
    /// `--build-arg KEY`: the host's value, if it has one.
    FromEnv,
    /// `--label KEY`: an empty value, as Docker gives.
    Empty,
}

fn parse_kv(items: &[String], what: &str, bare: BareKey) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in items {
        match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_owned(), v.to_owned());
            }
            None if !item.is_empty() => match bare {
                BareKey::FromEnv => {
                    if let Ok(v) = std::env::var(item) {
                        out.insert(item.clone(), v);
                    }
                }
                BareKey::Empty => {
                    out.insert(item.clone(), String::new());
                }
            },
            _ => bail!("invalid {what} {item:?}: expected KEY=VALUE"),
        }
    }
    Ok(out)
}

/// `--ssh ID[=SOCKET]`: the agent socket of each ID (`$SSH_AUTH_SOCK`
/// when none is given). Key files are refused: kiln forwards agents only.
fn parse_ssh(items: &[String], auth_sock: Option<PathBuf>) -> Result<BTreeMap<String, PathBuf>> {
    use std::os::unix::fs::FileTypeExt as _;
    let mut out = BTreeMap::new();
    for item in items {
        let (id, value) = match item.split_once('=') {
            Some((id, v)) => (id, Some(v)),
            None => (item.as_str(), None),
        };
        if id.is_empty() || value.is_some_and(|v| v.contains(',')) {
            bail!("invalid --ssh {item:?}: expected ID or ID=SOCKET");
        }
        let socket = match value {
            Some(v) => PathBuf::from(v),
            None => auth_sock
                .clone()
                .with_context(|| format!("--ssh {id}: SSH_AUTH_SOCK is not set"))?,
        };
        let is_socket = std::fs::metadata(&socket).is_ok_and(|m| m.file_type().is_socket());
        if !is_socket {
            bail!(
                "--ssh {id}: {} is not an agent socket (key files are not supported; load them into ssh-agent)",
                socket.display()
            );
        }
        out.insert(id.to_owned(), socket);
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
    /// Bytes read from stdin or downloaded for the context (the size Docker
    /// reports).
    stdin_size: Option<u64>,
    /// A directory of the host (not stdin, git or a URL): its file index is
    /// kept between builds.
    local: bool,
    _temp: Option<tempfile::TempDir>,
}

/// A context archive's bytes (gzip or plain tar) unpacked into `dir`, or
/// the bytes themselves when they are not an archive (then they are the
/// Dockerfile, as Docker takes them). Returns the decompressed bytes' length
/// too (the size Docker reports).
fn unpack_or_dockerfile(data: Vec<u8>, dir: &Path, what: &str) -> Result<(Option<Vec<u8>>, u64)> {
    let data = if data.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&data[..])
            .read_to_end(&mut out)
            .with_context(|| format!("invalid gzip context {what}"))?;
        out
    } else {
        data
    };
    if data.len() > 262 && &data[257..262] == b"ustar" {
        tar::Archive::new(&data[..])
            .unpack(dir)
            .with_context(|| format!("cannot unpack the tar context {what}"))?;
        Ok((None, data.len() as u64))
    } else {
        // A Dockerfile alone: Docker sends it as a one-file tar.
        let size = 512 + (data.len() as u64).div_ceil(512) * 512 + 1024;
        Ok((Some(data), size))
    }
}

/// The `git` on `$PATH`, as Go's `exec.LookPath` finds it.
fn find_git() -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.join("git"))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A git context (`git://host/repo.git#ref:subdir`, `https://host/repo.git`,
/// `github.com/owner/repo`): cloned with the system's git into `temp`;
/// returns the context directory (the subdirectory when one is named).
fn git_context(source: &kiln_builder::GitSource, temp: &Path) -> Result<PathBuf> {
    if find_git().is_none() {
        bail!(
            "unable to prepare context: unable to find 'git': exec: \"git\": executable file not found in $PATH"
        );
    }
    let repo = temp.join("repo");
    kiln_engine::fetch::clone_git(&source.repo, source.reference.as_deref(), &repo, false)
        .context("unable to prepare context")?;
    let Some(sub) = &source.subdir else {
        return Ok(repo);
    };
    let rel = Path::new(sub);
    if rel.is_absolute()
        || rel.components().any(|c| {
            !matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        })
    {
        bail!("unable to prepare context: invalid subdirectory {sub:?} in the git context");
    }
    let dir = repo.join(rel);
    // A symlink in the repository must not lead the context out of it.
    let real = std::fs::canonicalize(&dir).with_context(|| {
        format!(
            "unable to prepare context: subdirectory {sub:?} not found in {}",
            source.repo
        )
    })?;
    let repo_real = std::fs::canonicalize(&repo).context("unable to prepare context")?;
    if !real.starts_with(&repo_real) || !real.is_dir() {
        bail!(
            "unable to prepare context: subdirectory {sub:?} of {} is not a directory inside the repository",
            source.repo
        );
    }
    Ok(real)
}

fn prepare_context(args: &BuildArgs) -> Result<Prepared> {
    if args.context == "-" && args.file.as_deref() == Some("-") {
        // Docker's CLI refuses it too: stdin can be read only once.
        bail!("invalid argument: can't use stdin for both build context and dockerfile");
    }
    let mut temp = None;
    let mut stdin_dockerfile = None;
    let mut stdin_size = None;
    let git = kiln_builder::GitSource::parse(&args.context);
    let url = args.context.starts_with("http://") || args.context.starts_with("https://");
    let local = args.context != "-" && git.is_none() && !url;
    let dir = if args.context == "-" {
        let mut data = Vec::new();
        std::io::stdin()
            .read_to_end(&mut data)
            .context("cannot read the build context from stdin")?;
        let t = tempfile::tempdir().context("cannot create a temporary context directory")?;
        let (dockerfile, size) = unpack_or_dockerfile(data, t.path(), "on stdin")?;
        stdin_dockerfile = dockerfile;
        stdin_size = Some(size);
        let p = t.path().to_path_buf();
        temp = Some(t);
        p
    } else if let Some(git) = &git {
        let t = tempfile::tempdir().context("cannot create a temporary context directory")?;
        let p = git_context(git, t.path())?;
        temp = Some(t);
        p
    } else if url {
        // A tarball (plain or gzip) is the context; anything else is the
        // Dockerfile, as Docker's remote contexts go.
        let t = tempfile::tempdir().context("cannot create a temporary context directory")?;
        let download = t.path().join("download");
        kiln_builder::Fetcher::fetch(&kiln_engine::fetch::HttpFetcher, &args.context, &download)
            .map_err(|e| anyhow::anyhow!("unable to prepare context: {e}"))?;
        let data = std::fs::read(&download)
            .with_context(|| format!("cannot read {}", download.display()))?;
        std::fs::remove_file(&download)
            .with_context(|| format!("cannot remove {}", download.display()))?;
        let ctx = t.path().join("context");
        std::fs::create_dir(&ctx).with_context(|| format!("cannot create {}", ctx.display()))?;
        let (dockerfile, size) =
            unpack_or_dockerfile(data, &ctx, &format!("from {}", args.context))?;
        stdin_dockerfile = dockerfile;
        stdin_size = Some(size);
        temp = Some(t);
        ctx
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
                Some(f) if local && Path::new(f).is_absolute() => PathBuf::from(f),
                Some(f) if local && Path::new(f).exists() => PathBuf::from(f),
                // In a remote or stdin context, `-f` names a file inside it.
                Some(f) if !local => {
                    let rel = Path::new(f);
                    if rel.components().any(|c| {
                        !matches!(
                            c,
                            std::path::Component::Normal(_) | std::path::Component::CurDir
                        )
                    }) {
                        bail!("the Dockerfile {f:?} must be inside the build context");
                    }
                    dir.join(rel)
                }
                Some(f) => dir.join(f),
                // Docker's CLI falls back to a lower-case `dockerfile`.
                None if !dir.join("Dockerfile").exists() && dir.join("dockerfile").exists() => {
                    dir.join("dockerfile")
                }
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
        stdin_size,
        local,
        _temp: temp,
    })
}

/// The current time: Unix seconds and the nanoseconds within the second.
fn unix_now() -> (i64, u32) {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or((0, 0), |d| {
            (
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                d.subsec_nanos(),
            )
        })
}

/// Runs `kiln build`; returns the exit status. As Docker's CLI does, a
/// failed build exits 1 (after printing why), a failed RUN exits with the
/// command's own status, and `--iidfile` is removed before building so that
/// a failed build leaves none behind. Usage errors (bad `-t`, unknown flags)
/// are clap's and exit 125 in `main`, as does the refusal of a rootless build.
pub(crate) fn build(app: &mut Engine, args: &BuildArgs) -> Result<u8> {
    if kiln_engine::rootless() {
        // Build steps mount their root filesystems on the host for COPY and
        // run RUN containers without a user namespace: both need root today.
        // Not a failed build but kiln's own refusal: exit 125.
        bail!(
            "kiln build needs root (uid {} here): rootless builds are not supported yet; rootless `kiln run`, `pull` and `commit` are",
            kiln_sys::process::geteuid()
        );
    }
    if let Some(path) = &args.iidfile {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                eprintln!("kiln: removing the image ID file {}: {e}", path.display());
                return Ok(1);
            }
        }
    }
    let platforms: Vec<&str> = args
        .platform
        .as_deref()
        .map(|p| {
            p.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let result = if platforms.len() > 1 {
        build_platforms(app, args, &platforms)
    } else {
        let mut built = None;
        build_inner(app, args, &mut built).and_then(|code| match built {
            Some(id) if code == 0 && args.push => push_tags(app, args, &id),
            _ => Ok(code),
        })
    };
    match result {
        Ok(code) => Ok(code),
        Err(e) => {
            let _ = std::io::stdout().flush();
            match e.downcast_ref::<kiln_builder::Error>() {
                Some(kiln_builder::Error::StepFailed { command, code }) => {
                    eprintln!("The command '{command}' returned a non-zero code: {code}");
                    Ok(u8::try_from(*code).ok().filter(|c| *c != 0).unwrap_or(1))
                }
                _ => {
                    eprintln!("kiln: {e:#}");
                    Ok(1)
                }
            }
        }
    }
}

/// About the size of the tar Docker's CLI would send for this context:
/// a 512-byte header per entry not excluded by `.dockerignore`, file data
/// padded to 512 bytes, and the two closing blocks.
fn context_size(root: &Path, ignore: &kiln_builder::DockerIgnore) -> u64 {
    fn walk(dir: &Path, rel: &str, ignore: &kiln_builder::DockerIgnore, total: &mut u64) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let Ok(meta) = entry.metadata() else { continue };
            let excluded = ignore.is_excluded(&path);
            if !excluded {
                *total += 512;
                if path.len() > 100 {
                    // A long name takes an extension header and its data.
                    *total += 512 + (path.len() as u64).div_ceil(512) * 512;
                }
                if meta.is_file() {
                    *total += meta.len().div_ceil(512) * 512;
                }
            }
            if meta.is_dir() && (!excluded || ignore.has_exceptions()) {
                walk(&entry.path(), &path, ignore, total);
            }
        }
    }
    let mut total = 1024;
    walk(root, "", ignore, &mut total);
    total
}

/// `--platform a,b`: each platform built in turn (its own steps and
/// cache), then an index over the images kept in the store; the tags name
/// the host's platform's image (else the first), which carries the index
/// (`kiln push` of a tag pushes it whole). With `--push`, pushed now.
fn build_platforms(app: &mut Engine, args: &BuildArgs, platforms: &[&str]) -> Result<u8> {
    if !args.cache_to.is_empty() {
        // Each platform's export would replace the one before at the same
        // reference: refuse rather than keep only the last platform's steps.
        bail!(
            "--cache-to with several --platform values is not supported yet: export each platform's build on its own (one --platform and one --cache-to reference per platform)"
        );
    }
    let mut images = Vec::new();
    for p in platforms {
        let platform = crate::flags::parse_platform(p)?;
        let one = BuildArgs {
            platform: Some(platform.to_string()),
            tag: Vec::new(),
            iidfile: None,
            push: false,
            ..args.clone()
        };
        if !args.quiet {
            println!("Building for {platform}");
        }
        let mut built = None;
        let code = build_inner(app, &one, &mut built)?;
        let Some(id) = built.filter(|_| code == 0) else {
            return Ok(code);
        };
        let id: kiln_model::Digest = id.0.parse()?;
        images.push((platform, id));
    }
    let index = app.make_index(&images)?;
    let host = kiln_model::Platform::native();
    let face = images
        .iter()
        .find(|(p, _)| host.matches(p))
        .unwrap_or(&images[0])
        .1;
    let members: Vec<kiln_model::Digest> = images.iter().map(|(_, id)| *id).collect();
    app.attach_index(&face, &index, &members)?;
    for t in &args.tag {
        app.store.tag_image(&t.parse()?, &face)?;
    }
    if !args.quiet {
        println!("Index {index} of {} platforms", images.len());
        for t in &args.tag {
            println!("Successfully tagged {t}");
        }
    }
    if let Some(path) = &args.iidfile {
        std::fs::write(path, index.to_string())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.push {
        return push_tags(app, args, &kiln_builder::ImageId(face.to_string()));
    }
    Ok(0)
}

/// `--push`: every tag pushed (a multi-platform build's as its index).
fn push_tags(app: &mut Engine, args: &BuildArgs, id: &kiln_builder::ImageId) -> Result<u8> {
    if args.tag.is_empty() {
        bail!("--push needs a tag (-t REGISTRY/NAME[:TAG])");
    }
    let id: kiln_model::Digest = id.0.parse()?;
    let compression = crate::flags::compression(&args.compression)?;
    for t in &args.tag {
        let reference: kiln_content::Reference = t.parse()?;
        let digest = app.push_image(&reference, &id, t, compression, &kiln_registry::NoProgress)?;
        if !args.quiet {
            println!("Pushed {t}: digest: {digest}");
        }
    }
    Ok(0)
}

fn build_inner(
    app: &mut Engine,
    args: &BuildArgs,
    built: &mut Option<kiln_builder::ImageId>,
) -> Result<u8> {
    let started = std::time::Instant::now();
    if !args.rm {
        bail!(
            "--rm=false is not supported: kiln removes each RUN step's container as soon as its layer is committed"
        );
    }
    let quiet = args.quiet || args.progress == "quiet";
    if !matches!(args.progress.as_str(), "auto" | "plain" | "tty" | "quiet") {
        bail!(
            "invalid --progress {:?}: expected auto, plain, tty or quiet",
            args.progress
        );
    }
    let compression = crate::flags::compression(&args.compression)?;
    let network = kiln_engine::container::network_mode(&args.network)?;
    let prepared = prepare_context(args)?;
    let dockerfile = parse_dockerfile(&prepared)?;
    let context = open_context(app, &prepared)?;
    let source_date_epoch = source_date_epoch()?;
    let (options, _downloads) = build_options(app, args, network, source_date_epoch)?;
    let snapshotter = app.snapshotter()?;
    let backend = Backend::new(
        app,
        snapshotter.clone(),
        compression,
        source_date_epoch,
        // `-q`: not even pull notices (stdout holds only the ID).
        (!quiet).then_some((|line| println!("{line}")) as fn(&str)),
    )?;
    let runner = Runner::new(app)
        .with_extra_hosts(args.add_host.clone())
        .with_cgroup_parent(args.cgroup_parent.clone());
    let cache = std::sync::Arc::new(Cache::new(app)?);
    let (cache_from, cache_to) = cache_options(app, args)?;
    let remote = if cache_from.is_empty() && cache_to.is_empty() {
        None
    } else {
        Some(app.remote_cache(
            cache.clone(),
            cache_from,
            Box::new(|m| eprintln!("WARNING: {m}")),
        )?)
    };
    let step_cache: &dyn kiln_builder::BuildCache = match &remote {
        Some(r) => r,
        None => &*cache,
    };
    let printer = printer(args, quiet, started);
    if !quiet {
        // Docker's first line of a build (its CLI sends the context as a tar).
        let size = prepared
            .stdin_size
            .unwrap_or_else(|| context_size(&prepared.dir, context.ignore()));
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "Sending build context to Docker daemon {:>8}",
            crate::format::human_size(size)
        )?;
        out.flush()?;
    }
    let outcome = Builder::new(&backend, &runner, step_cache, &printer)
        .with_fetcher(&kiln_engine::fetch::HttpFetcher)
        .build(&dockerfile, &context, &options);
    backend.cleanup();
    if outcome.is_err()
        && let Output::Live(v) = &printer.out
    {
        // The failing step's whole output, as plain shows it.
        let out = v.failed();
        let _ = v.multi.clear();
        let _ = std::io::stdout().write_all(&out);
        let _ = std::io::stdout().flush();
    }
    let outcome = outcome?;
    *built = Some(outcome.image.clone());
    if quiet {
        println!("{}", outcome.image);
    }
    if kiln_engine::build_backend::trace_timing() {
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
    Ok(match &remote {
        Some(remote) => export_cache(remote, &cache_to, &outcome.image, quiet),
        None => 0,
    })
}

/// The Dockerfile parsed; an error as Docker words it (its first line,
/// then each error with the file's name and line:col).
fn parse_dockerfile(prepared: &Prepared) -> Result<kiln_builder::Dockerfile> {
    let name = prepared.dockerfile_path.as_ref().map_or_else(
        || "Dockerfile".to_owned(),
        |p| {
            p.file_name()
                .map_or_else(|| "Dockerfile".into(), |n| n.to_string_lossy().into_owned())
        },
    );
    kiln_builder::parse(&prepared.dockerfile).map_err(|e| match e {
        // Docker's first line (`dockerfile parse error line N: ...`), then
        // every error with its file:line:col.
        kiln_builder::Error::Parse {
            line,
            first,
            message,
        } => anyhow::anyhow!(
            "dockerfile parse error line {line}: {first}\n{}",
            message
                .lines()
                .map(|l| format!("{name}:{l}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
        other => anyhow::Error::new(other),
    })
}

/// Opens the build context; a local directory keeps its file index in the
/// store (keyed by the directory's real path) for the next build.
fn open_context(app: &Engine, prepared: &Prepared) -> Result<ContextDir> {
    let index_dir = app.root().join("build").join("index");
    std::fs::create_dir_all(&index_dir)
        .with_context(|| format!("cannot create {}", index_dir.display()))?;
    let context_key = kiln_model::Digest::of(
        std::fs::canonicalize(&prepared.dir)
            .unwrap_or_else(|_| prepared.dir.clone())
            .to_string_lossy()
            .as_bytes(),
    );
    let index_path = prepared.local.then(|| index_dir.join(context_key.hex()));
    Ok(ContextDir::open(
        &prepared.dir,
        prepared.dockerfile_path.as_deref(),
        index_path.as_deref(),
    )?)
}

/// `SOURCE_DATE_EPOCH` from the environment, when set and not empty.
fn source_date_epoch() -> Result<Option<i64>> {
    Ok(match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Some(
            v.parse::<i64>()
                .with_context(|| format!("invalid SOURCE_DATE_EPOCH {v:?}"))?,
        ),
        _ => None,
    })
}

/// The builder's options from the flags, and the directory for `ADD`'s
/// downloads (removed when the returned guard is dropped).
fn build_options(
    app: &Engine,
    args: &BuildArgs,
    network: kiln_model::NetworkMode,
    source_date_epoch: Option<i64>,
) -> Result<(BuildOptions, tempfile::TempDir)> {
    let platform = target_platform(args.platform.as_deref())?;
    let (seed, _) = kiln_engine::container::new_id()?;
    let downloads_root = app.root().join("build").join("downloads");
    std::fs::create_dir_all(&downloads_root)
        .with_context(|| format!("cannot create {}", downloads_root.display()))?;
    let downloads =
        tempfile::tempdir_in(&downloads_root).context("cannot create a download directory")?;
    let now = unix_now();
    let options = BuildOptions {
        tags: args
            .tag
            .iter()
            .map(|t| kiln_builder::normalize_tag(t))
            .collect(),
        build_args: parse_kv(&args.build_arg, "--build-arg", BareKey::FromEnv)?,
        target: args.target.clone(),
        no_cache: args.no_cache,
        pull: if args.pull {
            PullPolicy::Always
        } else {
            PullPolicy::Missing
        },
        network,
        platform,
        labels: parse_kv(&args.label, "--label", BareKey::Empty)?,
        jobs: args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
            .max(1),
        explain_cache: args.explain_cache || std::env::var_os("KILN_EXPLAIN_CACHE").is_some(),
        now: now.0,
        now_nanos: now.1,
        unset_build_args: args
            .build_arg
            .iter()
            .filter(|a| !a.is_empty() && !a.contains('=') && std::env::var_os(a).is_none())
            .cloned()
            .collect(),
        source_date_epoch,
        id_seed: seed,
        secrets: parse_secrets(&args.secret)?,
        ssh: parse_ssh(
            &args.ssh,
            std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from),
        )?,
        download_dir: Some(downloads.path().to_path_buf()),
        ..BuildOptions::default()
    };
    Ok((options, downloads))
}

/// Where the build's progress goes: nowhere (`-q`), a live view (a
/// terminal, or `--progress tty`), or Docker's plain lines.
fn printer(args: &BuildArgs, quiet: bool, start: std::time::Instant) -> Printer {
    let live = !quiet
        && (args.progress == "tty" || args.progress == "auto" && std::io::stdout().is_terminal());
    Printer {
        out: if quiet {
            Output::Quiet
        } else if live {
            Output::Live(LiveView::new(indicatif::ProgressDrawTarget::stdout()))
        } else {
            Output::Plain(LegacyWriter::new(std::io::stdout()))
        },
        start,
    }
}

/// `--cache-to`: exports the steps of `image` to each cache; the exit
/// status (1 when an export failed that was not to be ignored).
fn export_cache(
    remote: &kiln_cache::RemoteCache,
    cache_to: &[kiln_cache::CacheTo],
    image: &kiln_builder::ImageId,
    quiet: bool,
) -> u8 {
    let mut status = 0;
    for to in cache_to {
        match remote.export(to, image) {
            Ok(r) if !quiet => println!(
                "Exported {} step{} to the cache {} ({})",
                r.steps,
                if r.steps == 1 { "" } else { "s" },
                to.location,
                r.digest
            ),
            Ok(_) => {}
            // The image is built and tagged; the export's failure is the
            // build command's, unless the user said to ignore it.
            Err(e) if to.ignore_error => eprintln!("WARNING: {e}"),
            Err(e) => {
                eprintln!("ERROR: {e}");
                status = 1;
            }
        }
    }
    status
}

/// `--cache-from` and `--cache-to`, parsed. A bare `--cache-from NAME` is
/// what the engine finds there ([`Engine::cache_source`]): a local image or
/// a pulled one (Docker's classic cache source), or a kiln cache index.
fn cache_options(
    app: &mut Engine,
    args: &BuildArgs,
) -> Result<(Vec<kiln_cache::Source>, Vec<kiln_cache::CacheTo>)> {
    let mut from = Vec::new();
    let platform =
        target_platform(args.platform.as_deref())?.unwrap_or_else(kiln_model::Platform::native);
    for v in &args.cache_from {
        match kiln_cache::parse_cache_from(v)? {
            kiln_cache::CacheFrom::Cache(l) => from.push(kiln_cache::Source::Cache(l)),
            kiln_cache::CacheFrom::Name(name) => {
                let warn = |m: &str| eprintln!("WARNING: {m}");
                if let Some(s) = app.cache_source(&name, &platform, &warn)? {
                    from.push(s);
                }
            }
        }
    }
    let to = args
        .cache_to
        .iter()
        .map(|v| kiln_cache::parse_cache_to(v))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((from, to))
}

/// `--platform` of `kiln build`: the same parser as `kiln pull`'s
/// ([`crate::flags::parse_platform`]); none means each stage's base image's.
pub(crate) fn target_platform(arg: Option<&str>) -> Result<Option<kiln_model::Platform>> {
    arg.map(crate::flags::parse_platform).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A terminal in memory: what indicatif writes to it, as lines.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<Vec<String>>>);

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            120
        }
        fn move_cursor_up(&self, _n: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _n: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _n: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _n: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().expect("lock").push(s.to_owned());
            Ok(())
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().expect("lock").push(s.to_owned());
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Docker's `units.HumanSize` (go-units): `%.4g` of the size in
    /// decimal units, as `Sending build context to Docker daemon  2.048kB`.
    #[test]
    fn context_size_is_printed_as_docker_prints_it() {
        assert_eq!(crate::format::human_size(0), "0B");
        assert_eq!(crate::format::human_size(512), "512B");
        assert_eq!(crate::format::human_size(999), "999B");
        assert_eq!(crate::format::human_size(1000), "1kB");
        assert_eq!(crate::format::human_size(2048), "2.048kB");
        assert_eq!(crate::format::human_size(3584), "3.584kB");
        assert_eq!(crate::format::human_size(12_800), "12.8kB");
        assert_eq!(crate::format::human_size(104_857_600), "104.9MB");
        assert_eq!(crate::format::human_size(1_500_000_000), "1.5GB");
        assert_eq!(
            format!("{:>8}", crate::format::human_size(2048)),
            " 2.048kB"
        );
    }

    /// Docker's ValidateExtraHost (TestBuildAddHostInvalid's cases).
    #[test]
    fn add_host_values() {
        assert_eq!(
            parse_add_host("foo:127.0.0.1"),
            Ok(("foo".into(), "127.0.0.1".into()))
        );
        assert_eq!(
            parse_add_host("v6:2001:db8::1"),
            Ok(("v6".into(), "2001:db8::1".into()))
        );
        for bad in ["foo", ":127.0.0.1"] {
            assert_eq!(
                parse_add_host(bad),
                Err(format!("bad format for add-host: {bad:?}"))
            );
        }
        assert_eq!(
            parse_add_host("foo:"),
            Err("invalid IP address in add-host: \"\"".into())
        );
        for bad in ["foo:101.10.2", "foo:2001::1::3F"] {
            let err = parse_add_host(bad).expect_err(bad);
            assert!(err.starts_with("invalid IP address in add-host"), "{err}");
        }
    }

    #[test]
    fn labels_without_value_are_empty_and_tags_are_checked() {
        let m = parse_kv(&["a=1".into(), "b".into()], "--label", BareKey::Empty).expect("labels");
        assert_eq!(m.get("b").map(String::as_str), Some(""));
        assert_eq!(m.get("a").map(String::as_str), Some("1"));
        assert!(parse_kv(&["=x".into()], "--label", BareKey::Empty).is_err());
        assert!(parse_tag("alice/web:1.0").is_ok());
        let long = format!("abcd:{}", "a".repeat(200));
        let err = parse_tag(&long).expect_err("a 200-character tag");
        assert!(err.starts_with("invalid reference format"), "{err}");
    }

    #[test]
    fn ssh_flags_name_agent_sockets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("agent.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        let file = dir.path().join("id_ed25519");
        std::fs::write(&file, "key").expect("write");
        let m = parse_ssh(&["default".into()], Some(sock.clone())).expect("default");
        assert_eq!(m.get("default"), Some(&sock));
        let m = parse_ssh(&[format!("work={}", sock.display())], None).expect("id=socket");
        assert_eq!(m.get("work"), Some(&sock));
        assert!(
            parse_ssh(&["default".into()], None).is_err(),
            "no SSH_AUTH_SOCK"
        );
        let err =
            parse_ssh(&[format!("default={}", file.display())], None).expect_err("a key file");
        assert!(err.to_string().contains("not an agent socket"), "{err}");
    }

    fn step(n: usize, text: &str) -> Event {
        Event::Step {
            number: n,
            total: 3,
            stage: 0,
            text: text.into(),
        }
    }

    fn output(s: &str) -> Event {
        Event::Output {
            stream: kiln_builder::Stream::Stdout,
            data: s.as_bytes().to_vec(),
        }
    }

    /// A forced terminal: steps appear with their times, the running one
    /// with the last lines of its output, finished ones ticked; the closing
    /// lines are printed above; a failure hands back the step's full output.
    #[test]
    fn live_view_shows_steps_times_and_output_tail() {
        let screen = Screen::default();
        let view = LiveView::new(indicatif::ProgressDrawTarget::term_like(Box::new(
            screen.clone(),
        )));
        view.event(step(1, "FROM busybox"));
        view.event(step(2, "RUN echo hi"));
        view.event(Event::UsingCache);
        view.event(step(3, "RUN make"));
        for i in 0..8 {
            view.event(output(&format!("line {i}\n")));
        }
        let m = view.messages();
        assert_eq!(m.len(), 3);
        assert!(m[0].starts_with("✔ Step 1/3 : FROM busybox "), "{m:?}");
        assert!(
            m[1].starts_with("✔ Step 2/3 : RUN echo hi ") && m[1].ends_with("s CACHED"),
            "{m:?}"
        );
        let running: Vec<&str> = m[2].lines().collect();
        assert!(running[0].starts_with("Step 3/3 : RUN make "), "{m:?}");
        assert_eq!(
            running[1..],
            [
                "    line 3",
                "    line 4",
                "    line 5",
                "    line 6",
                "    line 7"
            ]
        );
        // The time is seconds with two decimals.
        let secs = running[0].rsplit(' ').next().expect("time");
        assert!(
            secs.ends_with('s') && secs.trim_end_matches('s').parse::<f64>().is_ok(),
            "{secs}"
        );

        let full = view.failed();
        assert_eq!(
            String::from_utf8(full).expect("utf8").lines().count(),
            8,
            "the whole output of the failing step"
        );
        assert!(view.messages()[2].starts_with("✔ Step 3/3 : RUN make "));
        view.event(Event::Built {
            image: "0123456789ab".into(),
        });
        let drawn = screen.0.lock().expect("lock").join("\n");
        assert!(drawn.contains("Successfully built 0123456789ab"), "{drawn}");
        assert!(drawn.contains("Step 1/3 : FROM busybox"), "{drawn}");
    }
}
