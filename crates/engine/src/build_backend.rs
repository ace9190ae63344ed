//! kiln-builder's traits implemented with the real crates: [`Backend`]
//! (images, root filesystems and commits over kiln-content, kiln-image,
//! kiln-snapshot and kiln-layer), [`Runner`] (RUN steps in kiln-runtime
//! containers) and [`Cache`] (the step cache as store records).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Context as _, Error, Result, chain};
use kiln_builder::{
    BackendError, BuildCache, CacheRecord, CommitRequest, ImageBackend, ImageId, ImageInfo,
    JsonCache, MountSpec, OutputSink, PullPolicy, RunStep, StepMount, StepRunner, Stream,
};
use kiln_content::{Reference, Store};
use kiln_layer::{Compression, DiffOptions};
use kiln_model::ImageConfig;
use kiln_model::{Digest, Platform};
use kiln_runtime::oci_spec::runtime::{Mount, MountBuilder};
use kiln_runtime::{DockerSpecOptions, LaunchConfig, Runtime, Stdio, StdioConfig};
use kiln_snapshot::Snapshotter;
use kiln_sys::{LinuxSys, MountFlags, MountOps as _};

use crate::PARENT_ANNOTATION;
use crate::container::rootfs_mount;
use crate::engine::Engine;

/// `KILN_TRACE_TIMING=1`: each backend and runner operation prints its
/// duration to stderr (`[timing] commit 12.3 ms`), for profiling builds.
pub struct Span {
    name: &'static str,
    what: String,
    start: std::time::Instant,
}

static TRACE_TIMING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether timing spans are printed (see [`set_trace_timing`]).
pub fn trace_timing() -> bool {
    TRACE_TIMING.load(std::sync::atomic::Ordering::Relaxed)
}

/// Turns the timing spans on or off (the CLI: `KILN_TRACE_TIMING=1`).
pub fn set_trace_timing(on: bool) {
    TRACE_TIMING.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Starts a timing span (a no-op unless [`trace_timing`]).
pub fn span(name: &'static str, what: &str) -> Option<Span> {
    trace_timing().then(|| Span {
        name,
        what: what.get(..12).unwrap_or(what).to_owned(),
        start: std::time::Instant::now(),
    })
}

impl Drop for Span {
    fn drop(&mut self) {
        eprintln!(
            "[timing] {:<10} {:<12} {:8.2} ms",
            self.name,
            self.what,
            self.start.elapsed().as_secs_f64() * 1000.0
        );
    }
}

fn boxed(e: impl Into<Error>) -> BackendError {
    chain(&e.into()).into()
}

fn digest_of(id: &ImageId) -> Result<Digest, BackendError> {
    id.0.parse::<Digest>().map_err(boxed)
}

/// Images, root filesystems and commits for the builder.
pub struct Backend {
    store: Store,
    snapshotter: Arc<dyn Snapshotter>,
    registry: kiln_registry::Registry,
    root: PathBuf,
    compression: Compression,
    source_date_epoch: Option<i64>,
    /// Where to say that a FROM image is being pulled (`None`: nowhere).
    say: Option<fn(&str)>,
    /// Host mount points made by `mount`, unmounted by `unmount` or `cleanup`.
    mounted: Mutex<Vec<PathBuf>>,
    /// Owner marks of the snapshots and mounts this build made, kept until
    /// the build ends: if kiln is killed, the next command reclaims them
    /// (`gc::recover`).
    claims: Mutex<Vec<kiln_content::Claim>>,
}

impl Backend {
    pub fn new(
        app: &Engine,
        snapshotter: Arc<dyn Snapshotter>,
        compression: Compression,
        source_date_epoch: Option<i64>,
        say: Option<fn(&str)>,
    ) -> Result<Backend> {
        Ok(Backend {
            store: app.store.clone(),
            snapshotter,
            registry: app.registry()?,
            root: app.root().to_path_buf(),
            compression,
            source_date_epoch,
            say,
            mounted: Mutex::new(Vec::new()),
            claims: Mutex::new(Vec::new()),
        })
    }

    /// Unmounts whatever is still mounted (after a failed build).
    pub fn cleanup(&self) {
        let left: Vec<PathBuf> = self
            .mounted
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default();
        for p in left {
            let _ = LinuxSys.umount(&p, true);
            let _ = std::fs::remove_dir(&p);
        }
    }

    /// Marks `name` as this build's until the build ends (`gc::claim`).
    fn claim(&self, kind: &str, name: &str) -> Result<(), BackendError> {
        let c = self.store.claim(kind, name).map_err(boxed)?;
        if let Ok(mut claims) = self.claims.lock() {
            claims.push(c);
        }
        Ok(())
    }

    fn pull(&self, reference: &str, platform: &Platform) -> Result<kiln_content::ImageRecord> {
        let r: Reference = reference
            .parse()
            .with_context(|| format!("invalid reference {reference:?}"))?;
        if let Some(say) = self.say {
            say(&format!("Pulling {}", r.familiar()));
        }
        // As `kiln pull`: the lowest missing layer unpacks while it
        // downloads (the rest is unpacked by `top_snapshot`).
        crate::pull::pull_pipelined(
            &self.store,
            self.snapshotter.clone(),
            kiln_image::UnpackOptions::default(),
            &self.registry,
            &r,
            platform,
            &kiln_registry::NoProgress,
        )
    }

    fn top_snapshot(&self, image: &Digest) -> Result<Option<String>> {
        Ok(kiln_image::ensure_unpacked(
            &self.store,
            &*self.snapshotter,
            image,
            &kiln_image::UnpackOptions::default(),
        )?)
    }

    /// Whether the local image `id` serves `platform` (kiln-model's one
    /// matching rule, [`Platform::matches`]).
    fn platform_matches(&self, id: &Digest, platform: &Platform) -> bool {
        kiln_image::image_config(&self.store, id).is_ok_and(|cfg| {
            platform.matches(&Platform::new(
                &cfg.os,
                &cfg.architecture,
                cfg.variant.as_deref(),
            ))
        })
    }

    /// Where the image a FROM reference resolved to last time is noted.
    fn memo_path(&self, reference: &str) -> PathBuf {
        self.root
            .join("build")
            .join("resolved")
            .join(Digest::of(reference.as_bytes()).hex())
    }

    /// The image `reference` resolved to in an earlier build, if it still
    /// carries that tag and is of `platform`: one record read instead of
    /// the store's scan of every image record by name.
    fn remembered(&self, reference: &str, platform: &Platform) -> Option<Digest> {
        let r: Reference = reference.parse().ok()?;
        if r.digest().is_some() {
            return None;
        }
        let id: Digest = std::fs::read_to_string(self.memo_path(reference))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let rec = self.store.get_image(&id).ok()??;
        (rec.repo_tags.contains(&r.familiar_tagged()) && self.platform_matches(&id, platform))
            .then_some(id)
    }

    /// Notes what `reference` resolved to (a hint only: no fsync, errors ignored).
    fn remember(&self, reference: &str, id: &Digest) {
        let path = self.memo_path(reference);
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, id.to_string()).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }

    fn info(&self, id: Digest) -> Result<ImageInfo> {
        let cfg = kiln_image::image_config(&self.store, &id)?;
        let config = cfg.config.clone().unwrap_or_default();
        Ok(ImageInfo {
            id: ImageId(id.to_string()),
            config,
            platform: Platform {
                os: cfg.os.clone(),
                architecture: cfg.architecture.clone(),
                variant: cfg.variant.clone(),
                os_version: None,
                os_features: None,
            },
        })
    }

    fn do_commit(&self, req: &CommitRequest<'_>) -> Result<ImageId> {
        let _t = span(
            if req.rootfs.is_some() {
                "commit"
            } else {
                "commit-cfg"
            },
            req.rootfs.map_or("", |r| r.key.as_str()),
        );
        let (mut config, layers) = match req.parent {
            Some(p) => {
                let img = kiln_image::read_image(
                    &self.store,
                    &digest_of(p).map_err(|e| crate::format_err!("{e}"))?,
                )?;
                (img.config, img.manifest.layers)
            }
            None => (
                ImageConfig::new(&req.platform.os, &req.platform.architecture),
                Vec::new(),
            ),
        };
        config.variant.clone_from(&req.platform.variant);
        config.created = Some(req.created.to_owned());
        config.author = req.author.map(str::to_owned).or(config.author.take());
        // A built image is the builder's own: as Docker's, it does not carry
        // the base image's comment or Docker version over.
        config.extra.remove("comment");
        config.extra.remove("docker_version");
        config.config = Some(req.config.clone());
        let entry = req.history.clone();
        let mut record = match req.rootfs {
            Some(rootfs) => {
                let opts = kiln_image::CommitOptions {
                    compression: self.compression,
                    diff: DiffOptions {
                        source_date_epoch: self.source_date_epoch,
                        ..DiffOptions::default()
                    },
                    history: entry,
                    tags: Vec::new(),
                    // Docker records a layer even for a RUN that changed nothing.
                    skip_empty_layer: false,
                    commit_snapshot: true,
                };
                kiln_image::commit_layer(
                    &self.store,
                    &*self.snapshotter,
                    &rootfs.key,
                    config,
                    layers,
                    &opts,
                )?
                .record
            }
            None => match req.stack {
                // COPY --link: the linked image's layer, as it is.
                Some(linked) => {
                    let img = kiln_image::read_image(
                        &self.store,
                        &digest_of(linked).map_err(|e| crate::format_err!("{e}"))?,
                    )?;
                    let layer = img
                        .manifest
                        .layers
                        .last()
                        .cloned()
                        .with_context(|| format!("linked image {linked} has no layer"))?;
                    let diff_id = img
                        .config
                        .rootfs
                        .diff_ids
                        .last()
                        .cloned()
                        .with_context(|| format!("linked image {linked} has no diff ID"))?;
                    let mut layers = layers;
                    layers.push(layer);
                    config.push_layer(&diff_id, entry);
                    kiln_image::write_image(&self.store, &config, layers, &[])?
                }
                None => {
                    config.push_empty_history(entry);
                    kiln_image::write_image(&self.store, &config, layers, &[])?
                }
            },
        };
        if let Some(p) = req.parent {
            record
                .annotations
                .insert(PARENT_ANNOTATION.to_owned(), p.0.clone());
            self.store.put_image(&record)?;
        }
        Ok(ImageId(record.id.to_string()))
    }
}

impl ImageBackend for Backend {
    fn resolve(
        &self,
        reference: &str,
        platform: &Platform,
        pull: PullPolicy,
    ) -> Result<ImageInfo, BackendError> {
        let _t = span("resolve", reference);
        let is_id = reference.starts_with("sha256:");
        if !is_id
            && pull == PullPolicy::Missing
            && let Some(id) = self.remembered(reference, platform)
        {
            return self.info(id).map_err(boxed);
        }
        let local = self.store.resolve_image(reference);
        let record = match (local, pull) {
            (Ok(r), _) if is_id => r,
            // A local image of another platform is as good as missing (as
            // Docker pulls when `--platform` differs from what it has).
            (Ok(r), PullPolicy::Missing) if self.platform_matches(&r.id, platform) => r,
            (Err(kiln_content::Error::NoSuchImage(_)), _) | (Ok(_), _) => {
                if is_id {
                    return Err(format!("no such image: {reference}").into());
                }
                self.pull(reference, platform).map_err(boxed)?
            }
            (Err(e), _) => return Err(boxed(e)),
        };
        if !is_id {
            self.remember(reference, &record.id);
        }
        self.info(record.id).map_err(boxed)
    }

    fn prepare(
        &self,
        key: &str,
        parent: Option<&ImageId>,
    ) -> Result<kiln_builder::Rootfs, BackendError> {
        let _t = span("prepare", key);
        let top = match parent {
            Some(p) => self.top_snapshot(&digest_of(p)?).map_err(boxed)?,
            None => None,
        };
        self.claim(crate::recover::claim::SNAPSHOT, key)?;
        let mut mounts = self
            .snapshotter
            .prepare(key, top.as_deref())
            .map_err(boxed)?;
        // The step's upper dir becomes a layer (its blob fsynced) or goes.
        crate::make_volatile(&mut mounts);
        Ok(kiln_builder::Rootfs {
            key: key.to_owned(),
            mounts: mounts
                .into_iter()
                .map(|m| MountSpec {
                    fstype: m.fstype,
                    source: m.source,
                    options: m.options,
                })
                .collect(),
        })
    }

    fn mount(&self, rootfs: &kiln_builder::Rootfs) -> Result<PathBuf, BackendError> {
        let _t = span("mount", &rootfs.key);
        let first = rootfs
            .mounts
            .first()
            .ok_or("the root filesystem has no mounts")?;
        if first.fstype == "bind" {
            return Ok(PathBuf::from(&first.source));
        }
        let target = self.root.join("build").join("mnt").join(&rootfs.key);
        self.claim(crate::recover::claim::MOUNT, &target.to_string_lossy())?;
        std::fs::create_dir_all(&target).map_err(|e| {
            boxed(crate::format_err!(
                "cannot create {}: {e}",
                target.display()
            ))
        })?;
        LinuxSys
            .mount_with_options(
                Some(Path::new(&first.source)),
                &target,
                &first.fstype,
                MountFlags::NONE,
                &first.options,
            )
            .map_err(|e| {
                boxed(crate::format_err!(
                    "cannot mount the root filesystem of {}: {e}",
                    rootfs.key
                ))
            })?;
        if let Ok(mut m) = self.mounted.lock() {
            m.push(target.clone());
        }
        Ok(target)
    }

    fn unmount(&self, rootfs: &kiln_builder::Rootfs) -> Result<(), BackendError> {
        let _t = span("unmount", &rootfs.key);
        if rootfs.mounts.first().is_some_and(|m| m.fstype == "bind") {
            return Ok(());
        }
        let target = self.root.join("build").join("mnt").join(&rootfs.key);
        LinuxSys.umount(&target, false).map_err(|e| {
            boxed(crate::format_err!(
                "cannot unmount {}: {e}",
                target.display()
            ))
        })?;
        if let Ok(mut m) = self.mounted.lock() {
            m.retain(|p| p != &target);
        }
        let _ = std::fs::remove_dir(&target);
        Ok(())
    }

    fn commit(&self, req: &CommitRequest<'_>) -> Result<ImageId, BackendError> {
        self.do_commit(req).map_err(boxed)
    }

    fn discard(&self, rootfs: &kiln_builder::Rootfs) -> Result<(), BackendError> {
        let _t = span("discard", &rootfs.key);
        self.snapshotter.remove(&rootfs.key).map_err(boxed)
    }

    fn tag(&self, image: &ImageId, name: &str) -> Result<(), BackendError> {
        let _t = span("tag", name);
        let r: Reference = name.parse().map_err(boxed)?;
        let id = digest_of(image)?;
        // A rebuild that changed nothing: the image has the tag already
        // (and then no other image has it), so there is nothing to write.
        let tagged = r.familiar_tagged();
        if let Ok(Some(rec)) = self.store.get_image(&id)
            && rec.repo_tags.contains(&tagged)
        {
            return Ok(());
        }
        self.store
            .tag_image(&r, &digest_of(image)?)
            .map_err(boxed)?;
        Ok(())
    }
}

/// The step cache: kiln-builder's [`JsonCache`] (one JSON file per record)
/// in `<root>/build/cache/`, a record alive while its image is in the
/// store; lookups and records are timed with [`span`].
pub struct Cache(JsonCache);

impl Cache {
    /// Opens (creating) the store's step cache.
    pub fn new(app: &Engine) -> Result<Cache> {
        let dir = app.step_cache_dir();
        let store = app.store.clone();
        let alive = move |image: &ImageId| {
            image
                .0
                .parse::<Digest>()
                .ok()
                .is_some_and(|d| store.get_image(&d).ok().flatten().is_some())
        };
        let cache = JsonCache::open(&dir, alive)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Cache(cache))
    }
}

impl BuildCache for Cache {
    fn children(&self, parent: Option<&ImageId>) -> Result<Vec<CacheRecord>, BackendError> {
        self.0.children(parent)
    }

    fn lookup(
        &self,
        parent: Option<&ImageId>,
        key: &str,
    ) -> Result<Option<CacheRecord>, BackendError> {
        let _t = span("lookup", key);
        self.0.lookup(parent, key)
    }

    fn record(&self, record: &CacheRecord) -> Result<(), BackendError> {
        let _t = span("record", &record.key);
        self.0.record(record)
    }
}

/// Runs RUN steps in real containers.
pub struct Runner {
    root: PathBuf,
    /// For owner marks of each step's container and scratch dir.
    store: Store,
    /// `kiln build --add-host`: (host, ip) lines added to each step's `/etc/hosts`.
    extra_hosts: Vec<(String, String)>,
    /// `kiln build --cgroup-parent`.
    cgroup_parent: Option<String>,
}

impl Runner {
    pub fn new(app: &Engine) -> Runner {
        Runner {
            root: app.root().to_path_buf(),
            store: app.store.clone(),
            extra_hosts: Vec::new(),
            cgroup_parent: None,
        }
    }

    /// Adds `ip\thost` lines to every step's `/etc/hosts`, as Docker does.
    pub fn with_extra_hosts(mut self, hosts: Vec<(String, String)>) -> Runner {
        self.extra_hosts = hosts;
        self
    }

    /// Creates the steps' cgroups under `parent` instead of `kiln`.
    pub fn with_cgroup_parent(mut self, parent: Option<String>) -> Runner {
        self.cgroup_parent = parent;
        self
    }

    fn runtime(&self) -> Runtime {
        match &self.cgroup_parent {
            Some(parent) => Runtime::new(kiln_runtime::RuntimeConfig {
                cgroup_parent: parent.clone(),
                ..kiln_runtime::RuntimeConfig::default()
            }),
            None => Runtime::default(),
        }
    }

    /// The spec mounts of a step's extra mounts. What they need on the
    /// host (bind sources opened inside their trees, secrets on a tmpfs) is
    /// mounted under the step's `scratch` dir and recorded in `staged`.
    fn step_mounts(
        &self,
        mounts: &[StepMount],
        scratch: &Path,
        staged: &mut Staged,
    ) -> Result<Vec<Mount>> {
        let mut out = Vec::new();
        let mut secrets: Option<PathBuf> = None;
        for (n, m) in mounts.iter().enumerate() {
            let built = match m {
                StepMount::Bind {
                    root,
                    source,
                    target,
                    readonly,
                    hidden,
                } => {
                    let at = stage_bind(n, root, source, *readonly, hidden, scratch, staged)?;
                    bind(&at, target, *readonly)?
                }
                StepMount::Cache {
                    id: cache_id,
                    target,
                    readonly,
                    uid,
                    gid,
                    mode,
                    ..
                } => {
                    let dir = self
                        .root
                        .join("build")
                        .join("cache-mounts")
                        .join(Digest::of(cache_id.as_bytes()).hex());
                    if !dir.exists() {
                        std::fs::create_dir_all(&dir)
                            .with_context(|| format!("cannot create {}", dir.display()))?;
                        std::os::unix::fs::chown(&dir, Some(*uid), Some(*gid))
                            .with_context(|| format!("cannot chown {}", dir.display()))?;
                        use std::os::unix::fs::PermissionsExt as _;
                        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(*mode))
                            .with_context(|| format!("cannot chmod {}", dir.display()))?;
                    }
                    bind(&dir, target, *readonly)?
                }
                StepMount::Tmpfs { target, size } => {
                    let mut opts = vec!["nosuid".to_owned(), "nodev".to_owned()];
                    if let Some(s) = size {
                        opts.push(format!("size={s}"));
                    }
                    MountBuilder::default()
                        .destination(target)
                        .typ("tmpfs")
                        .source("tmpfs")
                        .options(opts)
                        .build()?
                }
                StepMount::Secret {
                    source,
                    target,
                    mode,
                    uid,
                    gid,
                } => {
                    let dir = match &secrets {
                        Some(d) => d.clone(),
                        None => {
                            let d = secrets_tmpfs(mounts, scratch, staged)?;
                            secrets = Some(d.clone());
                            d
                        }
                    };
                    let copy = dir.join(format!("secret{n}"));
                    let bytes = std::fs::read(source)
                        .with_context(|| format!("cannot read secret {}", source.display()))?;
                    {
                        use std::io::Write as _;
                        use std::os::unix::fs::OpenOptionsExt as _;
                        std::fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .mode(0o600)
                            .open(&copy)
                            .and_then(|mut f| f.write_all(&bytes))
                            .with_context(|| format!("cannot write secret {}", source.display()))?;
                    }
                    std::os::unix::fs::chown(&copy, Some(*uid), Some(*gid))
                        .context("cannot chown a secret")?;
                    use std::os::unix::fs::PermissionsExt as _;
                    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(*mode))
                        .context("cannot chmod a secret")?;
                    bind(&copy, target, true)?
                }
                // The agent's socket as it is (a copy of a socket is no socket).
                StepMount::Ssh { source, target } => bind(source, target, false)?,
            };
            out.push(built);
        }
        Ok(out)
    }

    fn run_step(&self, step: &RunStep<'_>, output: &mut dyn OutputSink) -> Result<i32> {
        let _t = span("run", step.container_id);
        // A step of another platform needs an emulator the kernel hands its
        // programs to: say what is missing rather than "exec format error".
        crate::emulation::check(step.platform).map_err(crate::Error::msg)?;
        let id = step.container_id;
        let state_dir = self.root.join("containers").join(id);
        let scratch = self.root.join("build").join("steps").join(id);
        // Reclaimed by the next command if kiln is killed during the step.
        let _claims = [
            self.store.claim(
                crate::recover::claim::CONTAINER,
                &state_dir.to_string_lossy(),
            )?,
            self.store
                .claim(crate::recover::claim::DIR, &scratch.to_string_lossy())?,
        ];
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("cannot create {}", scratch.display()))?;
        let result = self.run_in(step, output, &state_dir, &scratch);
        let t_del = span("run-delete", step.container_id);
        let _ = self.runtime().delete(&state_dir, true);
        drop(t_del);
        let _ = std::fs::remove_dir_all(&scratch);
        result
    }

    fn run_in(
        &self,
        step: &RunStep<'_>,
        output: &mut dyn OutputSink,
        state_dir: &Path,
        scratch: &Path,
    ) -> Result<i32> {
        let id = step.container_id;
        let hostname = id.get(..12).unwrap_or(id).to_owned();
        let etc = self.step_etc_files(step, scratch, &hostname)?;
        let rootfs: Vec<kiln_snapshot::Mount> = step
            .rootfs
            .mounts
            .iter()
            .map(|m| kiln_snapshot::Mount {
                fstype: m.fstype.clone(),
                source: m.source.clone(),
                options: m.options.clone(),
            })
            .collect();
        let stubs = MountStubs::before(&rootfs, step.mounts);
        let (mut reader, writer) = std::io::pipe().context("cannot create a pipe")?;
        let writer2 = writer.try_clone().context("cannot duplicate a pipe")?;
        let stdio = StdioConfig {
            stdin: Stdio::Null,
            stdout: Stdio::Fd(writer.into()),
            stderr: Stdio::Fd(writer2.into()),
            tty: false,
        };
        let launch = StepLaunch {
            hostname,
            etc,
            rootfs,
            stdio,
        };
        // The step's mounts are staged, and its container run, from a
        // thread with a mount namespace of its own: the host never sees the
        // bind sources or the secrets' tmpfs, and they vanish with the
        // step's processes even when kiln is killed. That thread lives
        // until the container ended (the runtime's processes die with the
        // thread that started them); this one forwards the output.
        std::thread::scope(|s| -> Result<i32> {
            let runner = s.spawn(move || self.launch_step(step, state_dir, scratch, launch));
            let read_error = forward_output(&mut reader, output);
            let (rootfs, ended) = runner.join().unwrap_or_else(|_| {
                Err(crate::format_err!(
                    "the thread running a build step panicked"
                ))
            })?;
            stubs.clean(&rootfs);
            if let Some(e) = read_error {
                return Err(e).context("cannot read the step's output");
            }
            step_exit(ended, output)
        })
    }

    /// Writes the step's `/etc/hosts`, `/etc/hostname` and
    /// `/etc/resolv.conf` (the host's with host networking) under
    /// `scratch`, the build's extra hosts added.
    fn step_etc_files(
        &self,
        step: &RunStep<'_>,
        scratch: &Path,
        hostname: &str,
    ) -> Result<kiln_runtime::EtcFiles> {
        let etc_dir = scratch.join("etc");
        std::fs::create_dir_all(&etc_dir)
            .with_context(|| format!("cannot create {}", etc_dir.display()))?;
        let resolv = if step.network == kiln_model::NetworkMode::Host {
            std::fs::read_to_string("/etc/resolv.conf").ok()
        } else {
            None
        };
        let etc = kiln_runtime::write_etc_files(&etc_dir, hostname, resolv.as_deref())?;
        if !self.extra_hosts.is_empty() {
            use std::io::Write as _;
            let mut hosts = std::fs::OpenOptions::new()
                .append(true)
                .open(&etc.hosts)
                .with_context(|| format!("cannot open {}", etc.hosts.display()))?;
            for (host, ip) in &self.extra_hosts {
                writeln!(hosts, "{ip}\t{host}")
                    .with_context(|| format!("cannot write {}", etc.hosts.display()))?;
            }
        }
        Ok(etc)
    }

    /// Runs on the step's own thread, in its own mount namespace: stages
    /// the step's mounts, starts its container and waits for it. Returns
    /// the rootfs mounts (for the stubs) and how the command ended.
    fn launch_step(
        &self,
        step: &RunStep<'_>,
        state_dir: &Path,
        scratch: &Path,
        launch: StepLaunch,
    ) -> Result<(
        Vec<kiln_runtime::RootfsMount>,
        std::result::Result<i32, kiln_runtime::Error>,
    )> {
        let id = step.container_id;
        kiln_sys::process::unshare_thread_mounts()
            .context("cannot give a build step's mounts a namespace of their own")?;
        // Detached once the container has its copies, and in any case when
        // this returns.
        let mut staged = Staged::default();
        let spec = kiln_runtime::docker_spec(&DockerSpecOptions {
            args: step.args.to_vec(),
            env: step.env.to_vec(),
            cwd: step.cwd.to_owned(),
            hostname: launch.hostname,
            network: step.network,
            etc_files: Some(launch.etc),
            mounts: self.step_mounts(step.mounts, scratch, &mut staged)?,
            ..DockerSpecOptions::default()
        })?;
        let cfg = LaunchConfig {
            id: id.parse()?,
            spec,
            rootfs: launch.rootfs.into_iter().map(rootfs_mount).collect(),
            state_dir: state_dir.to_path_buf(),
            user: (!step.user.is_empty()).then(|| step.user.to_owned()),
            init: false,
        };
        let t_start = span("run-start", id);
        let started = self.runtime().start(&cfg, launch.stdio);
        drop(t_start);
        // The container is running its command (or failed to): its mounts
        // are made, in its own namespace.
        staged.detach();
        let ended = match started {
            Ok(fg) => {
                let _t = span("run-wait", id);
                Ok(fg.wait()?.code())
            }
            Err(e) => Err(e),
        };
        Ok((cfg.rootfs, ended))
    }
}

/// What a step's container is made of, prepared before the thread that
/// runs it.
struct StepLaunch {
    hostname: String,
    etc: kiln_runtime::EtcFiles,
    rootfs: Vec<kiln_snapshot::Mount>,
    stdio: StdioConfig,
}

/// Copies the step's output from `reader` to `output` until the pipe
/// closes; returns the error that ended it early, if one did.
fn forward_output(
    reader: &mut impl std::io::Read,
    output: &mut dyn OutputSink,
) -> Option<std::io::Error> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => output.write(Stream::Stdout, &buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Some(e),
        }
    }
}

/// The step's exit code; a command that could not be run (126, 127) is
/// a failed step with the reason on its stderr, as Docker reports it.
fn step_exit(
    ended: std::result::Result<i32, kiln_runtime::Error>,
    output: &mut dyn OutputSink,
) -> Result<i32> {
    match ended {
        Ok(code) => Ok(code),
        Err(e) => {
            let code = e.exit_code();
            if code == 126 || code == 127 {
                output.write(Stream::Stderr, format!("{e}\n").as_bytes());
                return Ok(code);
            }
            Err(e.into())
        }
    }
}

/// Mounts made on the host for one step (under its scratch dir): bind
/// sources and the secrets' tmpfs. Detached (`MNT_DETACH`) by
/// [`Staged::detach`] once the container holds its own copies, or when
/// dropped.
#[derive(Default)]
struct Staged(Vec<PathBuf>);

impl Staged {
    fn push(&mut self, mount_point: PathBuf) {
        self.0.push(mount_point);
    }

    /// Lazily unmounts every staged mount, last first.
    fn detach(&mut self) {
        while let Some(p) = self.0.pop() {
            let _ = LinuxSys.umount(&p, true);
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        self.detach();
    }
}

/// Mounts the source of a bind mount, resolved inside `root`, at a
/// kiln-owned path under `scratch` (`bind<n>`) and returns that path for
/// the container to bind. The source is opened by `openat2` in `root`
/// (its links cannot lead out) and the opened object is what is mounted:
/// - a directory: an overlay whose lower is that directory, whose upper
///   (under `scratch`, discarded with it) takes a step's writes and holds
///   a whiteout for each `hidden` path; read-only unless `!readonly`.
///   Overlay shows none of the mounts below its lower dir, so nothing of
///   the host mounted inside the source becomes reachable. Where overlay
///   cannot be used (a store without it, or stacked too deep) a read-only
///   bind that hides nothing falls back to a recursive clone of the
///   directory's mount made read-only all the way down;
/// - a file: a clone of its mount, read-only; or a private copy for `rw`.
fn stage_bind(
    n: usize,
    root: &Path,
    source: &str,
    readonly: bool,
    hidden: &[String],
    scratch: &Path,
    staged: &mut Staged,
) -> Result<PathBuf> {
    use kiln_fs::FinalLink;
    use std::os::fd::AsFd as _;
    let tree = kiln_fs::Root::open(root)
        .with_context(|| format!("cannot open the bind mount's tree {}", root.display()))?;
    let src = tree.open_path(source, FinalLink::Follow).with_context(|| {
        format!(
            "bind mount source {source:?} not found in {}",
            root.display()
        )
    })?;
    // The opened source as a tree of its own, for what lies below it.
    let below = kiln_fs::Root::from_fd(
        src.try_clone()
            .with_context(|| format!("cannot duplicate the descriptor of {source:?}"))?,
        tree.display(source),
    );
    let meta = below
        .lstat(".")
        .with_context(|| format!("cannot stat bind mount source {source:?}"))?;
    let at = scratch.join(format!("bind{n}"));
    if meta.is_dir() {
        match overlay_bind(&src, &below, &at, readonly, hidden) {
            Ok(mnt) => {
                staged.push(mnt.clone());
                return Ok(mnt);
            }
            Err(e) if !readonly || !hidden.is_empty() => {
                return Err(e.context(format!(
                    "cannot mount bind mount source {source:?} (a writable or filtered bind needs overlayfs)"
                )));
            }
            Err(_) => {
                let mnt = at.join("tree");
                std::fs::create_dir_all(&mnt)
                    .with_context(|| format!("cannot create {}", mnt.display()))?;
                let tree = LinuxSys
                    .open_tree_fd(src.as_fd(), true)
                    .with_context(|| format!("cannot open bind mount source {source:?}"))?;
                LinuxSys
                    .mount_setattr(tree.as_fd(), true, MountFlags::RDONLY)
                    .with_context(|| {
                        format!("cannot make bind mount source {source:?} read-only")
                    })?;
                LinuxSys
                    .move_mount(tree.as_fd(), &mnt)
                    .with_context(|| format!("cannot mount bind mount source {source:?}"))?;
                staged.push(mnt.clone());
                return Ok(mnt);
            }
        }
    }
    if !readonly {
        if !meta.is_file() {
            crate::bail!(
                "bind mount source {source:?}: a writable bind takes a file or a directory"
            );
        }
        // Writes must not reach the source: the step gets a copy, read
        // through the tree (a regular file only).
        let mut from = tree
            .open_file(source, FinalLink::Follow)
            .with_context(|| format!("cannot read bind mount source {source:?}"))?;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut to = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(meta.permissions())
            .open(&at)
            .with_context(|| format!("cannot create {}", at.display()))?;
        std::io::copy(&mut from, &mut to)
            .with_context(|| format!("cannot copy bind mount source {source:?}"))?;
        return Ok(at);
    }
    std::fs::File::create(&at).with_context(|| format!("cannot create {}", at.display()))?;
    let clone = LinuxSys
        .open_tree_fd(src.as_fd(), false)
        .with_context(|| format!("cannot open bind mount source {source:?}"))?;
    LinuxSys
        .mount_setattr(clone.as_fd(), true, MountFlags::RDONLY)
        .with_context(|| format!("cannot make bind mount source {source:?} read-only"))?;
    LinuxSys
        .move_mount(clone.as_fd(), &at)
        .with_context(|| format!("cannot mount bind mount source {source:?}"))?;
    staged.push(at.clone());
    Ok(at)
}

/// The overlay of [`stage_bind`] for the directory `src`: mounted at
/// `<at>/mnt`, upper and work dirs beside it.
fn overlay_bind(
    src: &std::os::fd::OwnedFd,
    below: &kiln_fs::Root,
    at: &Path,
    readonly: bool,
    hidden: &[String],
) -> Result<PathBuf> {
    use std::os::fd::AsRawFd as _;
    let upper = at.join("upper");
    let work = at.join("work");
    let mnt = at.join("mnt");
    for d in [&upper, &work, &mnt] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    if !hidden.is_empty() {
        let upper_root = kiln_fs::Root::open(&upper)
            .with_context(|| format!("cannot open {}", upper.display()))?;
        for h in hidden {
            whiteout(below, &upper_root, h)?;
        }
    }
    // The lower is the opened directory itself: overlay looks the magic
    // link up in this process and takes the object it points to.
    let mut m = kiln_snapshot::Mount {
        fstype: "overlay".to_owned(),
        source: "overlay".to_owned(),
        options: vec![
            format!("lowerdir=/proc/self/fd/{}", src.as_raw_fd()),
            format!("upperdir={}", upper.display()),
            format!("workdir={}", work.display()),
        ],
    };
    // Its writes are discarded: no sync of them on unmount.
    crate::make_volatile(std::slice::from_mut(&mut m));
    let flags = if readonly {
        MountFlags::RDONLY
    } else {
        MountFlags::NONE
    };
    LinuxSys
        .mount_with_options(
            Some(Path::new("overlay")),
            &mnt,
            "overlay",
            flags,
            &m.options,
        )
        .context("overlay")?;
    Ok(mnt)
}

/// Creates an overlay whiteout for `rel` (a path under the bind's source
/// `below`) in the fresh upper dir `upper`, with each parent directory
/// made as the source has it (mode and owner), so that the merged view
/// shows them unchanged.
fn whiteout(below: &kiln_fs::Root, upper: &kiln_fs::Root, rel: &str) -> Result<()> {
    use kiln_fs::FinalLink;
    let parts: Vec<&str> = rel.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        crate::bail!("invalid path to hide in a bind mount: {rel:?}");
    }
    let mut dir = PathBuf::new();
    for part in &parts[..parts.len() - 1] {
        dir.push(part);
        if upper.try_lstat(&dir).ok().flatten().is_some() {
            continue;
        }
        let lower = below
            .stat(&dir, FinalLink::NoFollow)
            .with_context(|| format!("cannot stat {} in a bind mount's source", dir.display()))?;
        upper
            .mkdir(&dir, lower.permissions())
            .and_then(|()| upper.chown(&dir, lower.uid(), lower.gid(), FinalLink::NoFollow))
            .and_then(|()| upper.chmod(&dir, lower.permissions(), FinalLink::NoFollow))
            .with_context(|| format!("cannot create {}", upper.display(&dir).display()))?;
    }
    upper
        .mknod(rel, kiln_fs::FileType::CharDevice, 0, 0, 0)
        .with_context(|| {
            format!(
                "cannot create a whiteout at {}",
                upper.display(rel).display()
            )
        })?;
    Ok(())
}

/// A tmpfs for a step's secrets at `<scratch>/secrets`, only root may
/// enter: the secrets never touch the store's disk, and a crash leaves
/// them in memory only (the mount is detached from the host as soon as
/// the container started). Sized for the step's secrets.
fn secrets_tmpfs(mounts: &[StepMount], scratch: &Path, staged: &mut Staged) -> Result<PathBuf> {
    let mut size: u64 = 64 << 10;
    for m in mounts {
        if let StepMount::Secret { source, .. } = m {
            let len = std::fs::metadata(source)
                .with_context(|| format!("cannot read secret {}", source.display()))?
                .len();
            size += len.div_ceil(4096) * 4096 + 4096;
        }
    }
    let dir = scratch.join("secrets");
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    LinuxSys
        .mount(
            Some(Path::new("tmpfs")),
            &dir,
            Some("tmpfs"),
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            Some(&format!("mode=0700,size={size}")),
        )
        .context("cannot mount a tmpfs for the secrets")?;
    staged.push(dir.clone());
    Ok(dir)
}

fn bind(source: &Path, target: &str, readonly: bool) -> Result<Mount> {
    let mut opts = vec!["rbind".to_owned()];
    if readonly {
        opts.push("ro".to_owned());
    }
    Ok(MountBuilder::default()
        .destination(target)
        .typ("bind")
        .source(source)
        .options(opts)
        .build()?)
}

/// Mount points a step's mounts (its own and the runtime's) will create in
/// its rootfs, so that they can be removed again: a RUN's mounts leave no
/// trace in its layer.
struct MountStubs {
    missing: Vec<PathBuf>,
    /// Existing lower directories holding a stub, absent from the overlay's
    /// upper dir before the step, with their (mode, uid, gid): creating the
    /// stub copies them up, and an untouched copy is dropped again.
    copied_up: Vec<(PathBuf, (u32, u32, u32))>,
}

/// The directories making up a rootfs: the writable one first, then the lowers.
fn layer_dirs(mounts: &[kiln_snapshot::Mount]) -> Vec<PathBuf> {
    let Some(first) = mounts.first() else {
        return Vec::new();
    };
    if first.fstype == "bind" {
        return vec![PathBuf::from(&first.source)];
    }
    let mut dirs = Vec::new();
    let opt = |k: &str| {
        first
            .options
            .iter()
            .find_map(|o| o.strip_prefix(k))
            .map(str::to_owned)
    };
    if let Some(u) = opt("upperdir=") {
        dirs.push(PathBuf::from(u));
    }
    if let Some(l) = opt("lowerdir=") {
        dirs.extend(l.split(':').map(PathBuf::from));
    }
    dirs
}

impl MountStubs {
    fn before(rootfs: &[kiln_snapshot::Mount], mounts: &[StepMount]) -> MountStubs {
        let dirs: Vec<Option<kiln_fs::Root>> = layer_dirs(rootfs)
            .iter()
            .map(|d| kiln_fs::Root::open(d).ok())
            .collect();
        // With overlay, dirs[0] is the (still empty) upper dir; with a bind
        // rootfs it is the whole tree and nothing is copied up.
        let overlay = rootfs.first().is_some_and(|m| m.fstype != "bind");
        let mut missing = Vec::new();
        let mut copied_up: Vec<(PathBuf, (u32, u32, u32))> = Vec::new();
        let step_targets = mounts.iter().map(|m| match m {
            StepMount::Bind { target, .. }
            | StepMount::Cache { target, .. }
            | StepMount::Tmpfs { target, .. }
            | StepMount::Secret { target, .. }
            | StepMount::Ssh { target, .. } => target.as_str(),
        });
        for target in kiln_runtime::MOUNT_POINTS
            .iter()
            .copied()
            .chain(step_targets)
        {
            // The target and each of its parents that no layer has yet.
            let mut p = PathBuf::from(target.trim_start_matches('/'));
            loop {
                if p.as_os_str().is_empty() {
                    break;
                }
                // A link on the way (an image's own) counts as present:
                // nothing behind it is ever removed.
                let exists = dirs
                    .iter()
                    .flatten()
                    .any(|d| !matches!(d.try_lstat(&p), Ok(None)));
                if exists {
                    // This directory and its ancestors get copied up when
                    // the stub is created inside them. (The step cannot
                    // replace them: they hold busy mount points.)
                    let mut q = p.clone();
                    while overlay && !q.as_os_str().is_empty() {
                        let in_upper = dirs[0]
                            .as_ref()
                            .is_none_or(|d| !matches!(d.try_lstat(&q), Ok(None)));
                        let lower = dirs[1..]
                            .iter()
                            .flatten()
                            .find_map(|d| d.try_lstat(&q).ok().flatten());
                        if let Some(m) = lower.filter(|m| m.is_dir() && !in_upper)
                            && !copied_up.iter().any(|(c, _)| c == &q)
                        {
                            copied_up.push((q.clone(), (m.permissions(), m.uid(), m.gid())));
                        }
                        if !q.pop() {
                            break;
                        }
                    }
                    break;
                }
                missing.push(p.clone());
                if !p.pop() {
                    break;
                }
            }
        }
        MountStubs { missing, copied_up }
    }

    /// Removes the stubs (empty files and directories) from the writable
    /// dir. The step owned that tree: each stub is reached inside it
    /// (kiln-fs), so a link it planted where a stub's parent was never
    /// leads out of it.
    fn clean(&self, rootfs: &[kiln_runtime::RootfsMount]) {
        let Some(first) = rootfs.first() else { return };
        let upper = if first.fstype == "bind" {
            first.source.clone()
        } else {
            match first
                .options
                .iter()
                .find_map(|o| o.strip_prefix("upperdir="))
            {
                Some(u) => PathBuf::from(u),
                None => return,
            }
        };
        let Ok(upper) = kiln_fs::Root::open(&upper) else {
            return;
        };
        // Deepest first, so parents are empty when their turn comes.
        let mut paths = self.missing.clone();
        paths.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for p in paths {
            remove_stub(&upper, &p, |m| m.is_dir() || (m.is_file() && m.is_empty()));
        }
        // Then the directories copied up only to hold a stub: still empty
        // (rmdir fails otherwise) and with the lower's mode and owner, they
        // are no change.
        let mut dirs = self.copied_up.clone();
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (p, (mode, uid, gid)) in dirs {
            remove_stub(&upper, &p, |m| {
                m.is_dir() && m.permissions() == mode && m.uid() == uid && m.gid() == gid
            });
        }
    }
}

/// Removes the stub `rel` from the step's writable tree `upper` when
/// `removable` says so of what is there (a directory only when empty).
/// Best effort. Every lookup stays inside `upper` (kiln-fs): a link the
/// step planted where a stub's parent was resolves inside it, never on
/// the host, and a link at `rel` itself is not followed.
fn remove_stub(upper: &kiln_fs::Root, rel: &Path, removable: impl Fn(&kiln_fs::Metadata) -> bool) {
    if let Ok(Some(m)) = upper.try_lstat(rel)
        && removable(&m)
    {
        let _ = upper.remove(rel);
    }
}

impl StepRunner for Runner {
    fn run(&self, step: &RunStep<'_>, output: &mut dyn OutputSink) -> Result<i32, BackendError> {
        self.run_step(step, output).map_err(boxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step replaced a stub's parent by a link to a directory outside
    /// its tree (absolute, and relative with enough `..`): the cleanup
    /// removes nothing there, and still removes the stubs that are where
    /// it put them.
    #[test]
    fn stub_cleanup_never_follows_a_link_the_step_planted() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outside = tmp.path().join("outside");
        let upper = tmp.path().join("store").join("upper");
        std::fs::create_dir_all(outside.join("y")).expect("mkdir");
        std::fs::write(outside.join("empty"), b"").expect("write");
        std::fs::create_dir_all(upper.join("x.old").join("y")).expect("mkdir");
        std::fs::create_dir_all(upper.join("kept").join("stub")).expect("mkdir");
        std::os::unix::fs::symlink(&outside, upper.join("x")).expect("symlink");
        let climb = format!(
            "{}{}",
            "../".repeat(30),
            outside.to_str().expect("utf-8").trim_start_matches('/')
        );
        std::os::unix::fs::symlink(&climb, upper.join("r")).expect("symlink");
        let stubs = MountStubs {
            missing: [
                "x/y",
                "x/empty",
                "x",
                "r/y",
                "r/empty",
                "r",
                "kept/stub",
                "kept",
            ]
            .iter()
            .map(PathBuf::from)
            .collect(),
            copied_up: Vec::new(),
        };
        stubs.clean(&[kiln_runtime::RootfsMount::bind(&upper)]);
        assert!(outside.join("y").is_dir(), "a host directory was removed");
        assert!(outside.join("empty").exists(), "a host file was removed");
        // The links are no stubs (neither a directory nor an empty file).
        assert!(upper.join("x").symlink_metadata().is_ok());
        assert!(upper.join("r").symlink_metadata().is_ok());
        assert!(!upper.join("kept").exists(), "the real stubs are gone");
    }
}
