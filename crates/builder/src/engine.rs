//! The build engine: options, the stage graph (only what the target needs,
//! independent stages in parallel), and the per-stage state that the step
//! implementations in `steps` mutate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};

use kiln_dockerfile::instructions::{Dockerfile, Instruction};
use kiln_dockerfile::shell::Lexer;
use sha2::{Digest as _, Sha256};

use crate::args::{PROXY_ARGS, StageArgs, global_scope, platform_args};
use crate::backend::{BuildCache, Fetcher, ImageBackend, ImageId, PullPolicy, StepRunner};
use crate::context::ContextDir;
use crate::error::{Error, Result};
use crate::graph::{Ordered, StageSink, plan_graph};
use crate::history::{rfc3339, rfc3339_nano};
use crate::progress::{Event, Progress};
use kiln_model::NetworkMode;
use kiln_model::{ContainerConfig, Platform};

/// Everything about a build that is not the Dockerfile or the context.
///
/// The library reads no clock, environment or randomness: `now`,
/// `source_date_epoch` and `id_seed` come from the caller.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `-t`: names to tag the result with (`:latest` added when no tag).
    pub tags: Vec<String>,
    /// `--build-arg K=V` (the CLI resolves `--build-arg K` from its environment).
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to build (default: the last one).
    pub target: Option<String>,
    /// `--no-cache`: never look up the cache (results are still recorded).
    pub no_cache: bool,
    /// `--pull`.
    pub pull: PullPolicy,
    /// `--network` default for RUN steps.
    pub network: NetworkMode,
    /// `--platform`: the target platform (default: `build_platform`).
    pub platform: Option<Platform>,
    /// The platform the build runs on (`BUILDPLATFORM`).
    pub build_platform: Platform,
    /// `--label K=V`, added to the final image by an extra LABEL step.
    pub labels: BTreeMap<String, String>,
    /// `--jobs`: how many stages may build at once (at least 1).
    pub jobs: usize,
    /// `--explain-cache`: send a [`Event::CacheMiss`] with the reason of each first miss.
    pub explain_cache: bool,
    /// Current time, Unix seconds (used when `source_date_epoch` is unset).
    pub now: i64,
    /// Nanoseconds within `now`'s second: `created` carries them, as
    /// Docker's does, so that two uncached builds never share an image ID.
    pub now_nanos: u32,
    /// `--build-arg NAME` given without a value and not set in the
    /// environment: not passed to the build, but warned about when unused.
    pub unset_build_args: BTreeSet<String>,
    /// `SOURCE_DATE_EPOCH`: when set, every `created` time is this one.
    pub source_date_epoch: Option<i64>,
    /// Seed for intermediate container IDs (random per build in the CLI).
    pub id_seed: String,
    /// `--secret id=x,src=file`: secret ID → host file.
    pub secrets: BTreeMap<String, PathBuf>,
    /// `--ssh id=socket`: SSH agent ID (`default`) → the agent's socket.
    pub ssh: BTreeMap<String, PathBuf>,
    /// Do not fail when files cannot be chowned (rootless unit tests).
    pub ignore_chown_errors: bool,
    /// Where `ADD <url>` downloads go before they are copied (the CLI uses a
    /// directory of its store). Files are removed after the step.
    pub download_dir: Option<PathBuf>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            tags: Vec::new(),
            build_args: BTreeMap::new(),
            target: None,
            no_cache: false,
            pull: PullPolicy::Missing,
            network: NetworkMode::Host,
            platform: None,
            build_platform: Platform::native(),
            labels: BTreeMap::new(),
            jobs: 1,
            explain_cache: false,
            now: 0,
            now_nanos: 0,
            unset_build_args: BTreeSet::new(),
            source_date_epoch: None,
            id_seed: String::new(),
            secrets: BTreeMap::new(),
            ssh: BTreeMap::new(),
            ignore_chown_errors: false,
            download_dir: None,
        }
    }
}

/// What a build produced.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildOutcome {
    /// The image of the target stage.
    pub image: ImageId,
    /// Its config.
    pub config: ContainerConfig,
    /// The normalised tags that were set.
    pub tags: Vec<String>,
}

/// The implementations a build works through.
#[derive(Clone, Copy)]
pub struct Builder<'a> {
    pub(crate) backend: &'a dyn ImageBackend,
    pub(crate) runner: &'a dyn StepRunner,
    pub(crate) cache: &'a dyn BuildCache,
    pub(crate) progress: &'a dyn Progress,
    pub(crate) fetcher: Option<&'a dyn Fetcher>,
}

/// Where a stage starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Base {
    Scratch,
    Stage(usize),
    Image(String),
}

/// What a `--from=` (COPY, RUN --mount) names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FromRef {
    Stage(usize),
    Image(String),
}

/// The stage graph of one build.
#[derive(Debug)]
pub(crate) struct Graph {
    pub(crate) bases: Vec<Base>,
    pub(crate) deps: Vec<BTreeSet<usize>>,
    /// Stages to build, dependencies first.
    pub(crate) order: Vec<usize>,
    pub(crate) target: usize,
    /// Number of the FROM step of each stage to build.
    pub(crate) first_step: BTreeMap<usize, usize>,
    pub(crate) total: usize,
}

/// The result of a built stage, for stages that use it.
#[derive(Debug, Clone)]
pub(crate) struct StageResult {
    pub(crate) image: Option<ImageId>,
    pub(crate) config: ContainerConfig,
    pub(crate) platform: Platform,
}

enum Slot {
    Pending,
    Done(Box<StageResult>),
    Failed,
}

/// State shared by the stages of one build.
pub(crate) struct Shared<'b> {
    pub(crate) df: &'b Dockerfile,
    pub(crate) ctx: &'b ContextDir,
    pub(crate) opts: &'b BuildOptions,
    pub(crate) graph: Graph,
    pub(crate) global: BTreeMap<String, String>,
    pub(crate) target_platform: Platform,
    pub(crate) created: String,
    slots: Mutex<Vec<Slot>>,
    changed: Condvar,
}

impl Shared<'_> {
    pub(crate) fn lexer(&self) -> Lexer {
        Lexer::new(self.df.escape)
    }

    /// The result of stage `i` for a step on `line`, waiting for it; an
    /// error when it failed or is not part of this build (a `--from` whose
    /// value depends on a stage ARG naming a stage the graph did not plan).
    pub(crate) fn stage_result(&self, i: usize, line: usize) -> Result<StageResult> {
        self.wait(i).ok_or_else(|| {
            let name = self
                .df
                .stages
                .get(i)
                .and_then(|s| s.name.clone())
                .unwrap_or_else(|| i.to_string());
            Error::instr(
                line,
                format!("stage {name:?} failed or is not part of this build"),
            )
        })
    }

    /// Waits for stage `i` and returns its result (`None` if it failed or is
    /// not scheduled in this build).
    pub(crate) fn wait(&self, i: usize) -> Option<StageResult> {
        if !self.graph.order.contains(&i) {
            return None;
        }
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match slots.get(i) {
                Some(Slot::Done(r)) => return Some((**r).clone()),
                Some(Slot::Failed) | None => return None,
                Some(Slot::Pending) => {
                    slots = self.changed.wait(slots).unwrap_or_else(|p| p.into_inner());
                }
            }
        }
    }

    fn set(&self, i: usize, slot: Slot) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slots.get_mut(i) {
            *s = slot;
        }
        self.changed.notify_all();
    }
}

/// The mutable state of the stage being built.
pub(crate) struct StageState {
    pub(crate) index: usize,
    pub(crate) image: Option<ImageId>,
    pub(crate) config: ContainerConfig,
    pub(crate) platform: Platform,
    pub(crate) args: StageArgs,
    /// False after the first cache miss (or with `--no-cache`).
    pub(crate) cache_on: bool,
    /// CMD was set in this stage (ENTRYPOINT then keeps it).
    pub(crate) cmd_set: bool,
    pub(crate) author: Option<String>,
    /// The base image this stage's FROM resolved to in the previous build
    /// (from the cache), to explain misses caused by a new base.
    pub(crate) prev_base: Option<(String, ImageId)>,
    pub(crate) step: usize,
    seq: usize,
    seed: String,
}

impl StageState {
    /// A new intermediate container ID (64 hex digits, from the build's seed).
    pub(crate) fn container_id(&mut self) -> String {
        self.seq += 1;
        let mut h = Sha256::new();
        h.update(format!("{}:{}:{}", self.seed, self.index, self.seq).as_bytes());
        hex::encode(h.finalize())
    }
}

pub(crate) fn find_stage(df: &Dockerfile, name: &str, before: usize) -> Option<usize> {
    let lower = name.to_lowercase();
    df.stages[..before.min(df.stages.len())]
        .iter()
        .position(|s| s.name.as_deref().is_some_and(|n| n.to_lowercase() == lower))
}

/// Resolves a `--from=` value: a stage name or index, else an image.
pub(crate) fn resolve_from(df: &Dockerfile, value: &str, current: usize) -> FromRef {
    if let Some(i) = find_stage(df, value, current) {
        return FromRef::Stage(i);
    }
    match value.parse::<usize>() {
        Ok(i) if i < current => FromRef::Stage(i),
        _ => FromRef::Image(value.to_string()),
    }
}

/// Normalises a `-t` value: adds `:latest` when there is no tag or digest.
pub fn normalize_tag(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || name.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

impl<'a> Builder<'a> {
    /// A builder over the given implementations.
    pub fn new(
        backend: &'a dyn ImageBackend,
        runner: &'a dyn StepRunner,
        cache: &'a dyn BuildCache,
        progress: &'a dyn Progress,
    ) -> Self {
        Builder {
            backend,
            runner,
            cache,
            progress,
            fetcher: None,
        }
    }

    /// Enables `ADD <url>` with a downloader (without one, it is an error).
    pub fn with_fetcher(mut self, fetcher: &'a dyn Fetcher) -> Self {
        self.fetcher = Some(fetcher);
        self
    }

    /// Builds `dockerfile` with the context `ctx`: the stages the target
    /// needs, each step cached, and tags the result.
    pub fn build(
        &self,
        dockerfile: &Dockerfile,
        ctx: &ContextDir,
        opts: &BuildOptions,
    ) -> Result<BuildOutcome> {
        if dockerfile.stages.is_empty() {
            return Err(Error::NoImage);
        }
        let target_platform = opts
            .platform
            .clone()
            .unwrap_or_else(|| opts.build_platform.clone());
        let meta: Vec<(String, Option<String>)> = {
            let mut scope = platform_args(&target_platform, &opts.build_platform);
            let mut out = Vec::new();
            for inst in &dockerfile.meta_args {
                for def in &inst.args {
                    let env: Vec<(String, String)> = scope.clone().into_iter().collect();
                    let default = match &def.default {
                        Some(d) => Some(
                            Lexer::new(dockerfile.escape)
                                .process_word(d, &env[..])
                                .map_err(|e| Error::Expand {
                                    line: inst.source.start_line,
                                    word: d.clone(),
                                    message: e.kind.to_string(),
                                })?,
                        ),
                        None => None,
                    };
                    if let Some(v) = opts
                        .build_args
                        .get(&def.name)
                        .cloned()
                        .or_else(|| default.clone())
                    {
                        scope.insert(def.name.clone(), v);
                    }
                    out.push((def.name.clone(), default));
                }
            }
            out
        };
        let global = global_scope(
            &meta,
            &opts.build_args,
            platform_args(&target_platform, &opts.build_platform),
        );
        let graph = plan_graph(dockerfile, &global, opts)?;
        let created = match opts.source_date_epoch {
            Some(epoch) => rfc3339(epoch),
            None => rfc3339_nano(opts.now, opts.now_nanos),
        };
        let shared = Shared {
            df: dockerfile,
            ctx,
            opts,
            slots: Mutex::new(dockerfile.stages.iter().map(|_| Slot::Pending).collect()),
            changed: Condvar::new(),
            graph,
            global,
            target_platform,
            created,
        };
        let ran = self.run_graph(&shared);
        // The digests computed so far stay valid whether or not the build succeeded.
        let saved = ctx.save_index();
        ran?;
        saved?;
        let result = shared.wait(shared.graph.target).ok_or(Error::NoImage)?;
        let image = result.image.clone().ok_or(Error::NoImage)?;
        // Docker's legacy builder warns after the last step, before
        // "Successfully built".
        self.warn_unused_args(dockerfile, &shared.graph, &meta, opts);
        self.progress.event(Event::Built {
            image: image.short().to_string(),
        });
        let mut tags = Vec::new();
        for t in &opts.tags {
            let name = normalize_tag(t);
            self.backend
                .tag(&image, &name)
                .map_err(|e| Error::backend("tag", name.clone(), e))?;
            self.progress.event(Event::Tagged { name: name.clone() });
            tags.push(name);
        }
        Ok(BuildOutcome {
            image,
            config: result.config,
            tags,
        })
    }

    fn warn_unused_args(
        &self,
        df: &Dockerfile,
        graph: &Graph,
        meta: &[(String, Option<String>)],
        opts: &BuildOptions,
    ) {
        let mut declared: BTreeSet<&str> = meta.iter().map(|(n, _)| n.as_str()).collect();
        for &i in &graph.order {
            for inst in &df.stages[i].instructions {
                if let Instruction::Arg(a) = inst {
                    declared.extend(a.args.iter().map(|d| d.name.as_str()));
                }
            }
        }
        let unused: Vec<&str> = opts
            .build_args
            .keys()
            .chain(&opts.unset_build_args)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(String::as_str)
            .filter(|k| !declared.contains(k) && !PROXY_ARGS.contains(k))
            .collect();
        if !unused.is_empty() {
            self.progress.event(Event::Warning {
                message: format!(
                    "One or more build-args [{}] were not consumed",
                    unused.join(" ")
                ),
            });
        }
    }

    fn run_graph(&self, sh: &Shared<'_>) -> Result<()> {
        let jobs = sh.opts.jobs.max(1);
        if jobs == 1 || sh.graph.order.len() == 1 {
            for &i in &sh.graph.order {
                match self.run_stage(sh, i) {
                    Ok(r) => sh.set(i, Slot::Done(Box::new(r))),
                    Err(e) => {
                        sh.set(i, Slot::Failed);
                        return Err(e);
                    }
                }
            }
            return Ok(());
        }
        let ordered = Ordered::new(self.progress, &sh.graph.order);
        let ordered = &ordered;
        let errors: Mutex<Vec<(usize, Error)>> = Mutex::new(Vec::new());
        let running = Mutex::new(0usize);
        let slot_free = Condvar::new();
        std::thread::scope(|scope| {
            for &i in &sh.graph.order {
                let errors = &errors;
                let running = &running;
                let slot_free = &slot_free;
                scope.spawn(move || {
                    // Dependencies first: a failed one fails this stage too.
                    for &d in &sh.graph.deps[i] {
                        if sh.wait(d).is_none() {
                            sh.set(i, Slot::Failed);
                            ordered.finish(i);
                            return;
                        }
                    }
                    {
                        let mut n = running.lock().unwrap_or_else(|p| p.into_inner());
                        while *n >= jobs {
                            n = slot_free.wait(n).unwrap_or_else(|p| p.into_inner());
                        }
                        *n += 1;
                    }
                    // Output of stages is shown in file order, each block whole.
                    let sink = StageSink { ordered, stage: i };
                    let b = Builder {
                        progress: &sink,
                        ..*self
                    };
                    let r = b.run_stage(sh, i);
                    ordered.finish(i);
                    {
                        let mut n = running.lock().unwrap_or_else(|p| p.into_inner());
                        *n -= 1;
                        slot_free.notify_all();
                    }
                    match r {
                        Ok(r) => sh.set(i, Slot::Done(Box::new(r))),
                        Err(e) => {
                            errors
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push((i, e));
                            sh.set(i, Slot::Failed);
                        }
                    }
                });
            }
        });
        let mut errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
        errors.sort_by_key(|(i, _)| *i);
        match errors.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    fn run_stage(&self, sh: &Shared<'_>, i: usize) -> Result<StageResult> {
        let stage = &sh.df.stages[i];
        let mut st = StageState {
            index: i,
            image: None,
            config: ContainerConfig::default(),
            platform: sh.target_platform.clone(),
            args: StageArgs::new(sh.global.clone(), sh.opts.build_args.clone()),
            cache_on: !sh.opts.no_cache,
            cmd_set: false,
            author: None,
            prev_base: None,
            step: sh.graph.first_step.get(&i).copied().unwrap_or(1),
            seq: 0,
            seed: sh.opts.id_seed.clone(),
        };
        self.progress.event(Event::Step {
            number: st.step,
            total: sh.graph.total,
            stage: i,
            text: stage.source.original.clone(),
        });
        self.step_from(sh, &mut st)?;
        for inst in &stage.instructions {
            st.step += 1;
            self.progress.event(Event::Step {
                number: st.step,
                total: sh.graph.total,
                stage: i,
                text: inst.source().original.clone(),
            });
            self.dispatch(sh, &mut st, inst)?;
        }
        if i == sh.graph.target && !sh.opts.labels.is_empty() {
            st.step += 1;
            self.step_build_labels(sh, &mut st)?;
        }
        Ok(StageResult {
            image: st.image,
            config: st.config,
            platform: st.platform,
        })
    }
}
