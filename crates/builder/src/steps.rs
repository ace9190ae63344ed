//! What each instruction does: its effect on the image config, its history
//! entry, its cache key, and (for RUN, COPY, ADD, WORKDIR) the filesystem
//! work through the backend and the step runner.

use std::collections::{BTreeMap, BTreeSet};

use kiln_dockerfile::instructions::{
    ArgInstruction, CmdInstruction, Healthcheck, HealthcheckInstruction, Instruction,
    KeyValueInstruction, ListInstruction, ShellOrExec,
};

use crate::backend::{CacheRecord, CommitRequest, ImageId, Rootfs};
use crate::engine::{Base, Builder, Shared, StageState};
use crate::error::{Error, Result};
use crate::history::{go_q_list, go_v_list, healthcheck_text, nop};
use crate::progress::Event;
use kiln_model::{ContainerConfig, Healthcheck as HealthConfig, History};

/// The PATH a stage gets when its base image sets none.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A step's cache identity.
pub(crate) struct StepKey {
    pub(crate) key: String,
    pub(crate) shape: String,
    pub(crate) files: Vec<(String, String)>,
}

impl StepKey {
    pub(crate) fn plain(key: String) -> StepKey {
        StepKey {
            shape: key.clone(),
            key,
            files: Vec::new(),
        }
    }
}

/// A step's result to record: the new image's filesystem change (a rootfs
/// to diff, or a `COPY --link` image whose layer is stacked, or neither for
/// a metadata step), its config and history text, and its cache key.
pub(crate) struct StepCommit<'a> {
    pub(crate) rootfs: Option<&'a Rootfs>,
    pub(crate) stack: Option<&'a ImageId>,
    pub(crate) config: ContainerConfig,
    pub(crate) created_by: String,
    pub(crate) key: StepKey,
}

impl StageState {
    /// `key` as recorded on the current image (see [`crate::key::on_parent`]).
    fn key_on_parent(&self, key: &str) -> String {
        crate::key::on_parent(key, self.image.is_none(), &self.platform)
    }
}

impl Builder<'_> {
    /// Expands `word` with the stage's args and ENV.
    pub(crate) fn expand(
        &self,
        sh: &Shared<'_>,
        st: &StageState,
        word: &str,
        line: usize,
    ) -> Result<String> {
        let env = st.args.expansion_env(&st.config);
        sh.lexer()
            .process_word(word, &env[..])
            .map_err(|e| Error::Expand {
                line,
                word: word.to_string(),
                message: e.kind.to_string(),
            })
    }

    /// Expands `word` and splits it into words.
    pub(crate) fn expand_words(
        &self,
        sh: &Shared<'_>,
        st: &StageState,
        word: &str,
        line: usize,
    ) -> Result<Vec<String>> {
        let env = st.args.expansion_env(&st.config);
        sh.lexer()
            .process_words(word, &env[..])
            .map_err(|e| Error::Expand {
                line,
                word: word.to_string(),
                message: e.kind.to_string(),
            })
    }

    /// Looks the step up in the cache; a miss turns lookups off for the rest
    /// of the stage (and is explained when asked). `config` is the config
    /// the step's image gets (a cache that makes images needs it).
    pub(crate) fn probe(
        &self,
        sh: &Shared<'_>,
        st: &mut StageState,
        key: &StepKey,
        config: &ContainerConfig,
    ) -> Result<Option<ImageId>> {
        if !st.cache_on {
            return Ok(None);
        }
        let parent = st.image.as_ref();
        let what = || parent.map_or("scratch".into(), |p| p.to_string());
        let hit = self
            .cache
            .lookup_step(parent, &st.key_on_parent(&key.key), config)
            .map_err(|e| Error::backend("look up cache", what(), e))?;
        if let Some(hit) = hit {
            return Ok(Some(hit.image));
        }
        st.cache_on = false;
        if sh.opts.explain_cache {
            let children = self
                .cache
                .children(parent)
                .map_err(|e| Error::backend("look up cache", what(), e))?;
            let reason = match (&st.prev_base, parent) {
                (Some((reference, old)), Some(now)) if children.is_empty() && old != now => {
                    format!(
                        "base image changed: {reference} was {}, now {}",
                        old.short(),
                        now.short()
                    )
                }
                _ => {
                    let steps: Vec<CacheRecord> = children
                        .into_iter()
                        .filter(|r| !r.key.starts_with("#(from) "))
                        .collect();
                    explain_miss(parent, &steps, key)
                }
            };
            self.progress.event(Event::CacheMiss { reason });
        }
        Ok(None)
    }

    /// Remembers which image a FROM reference resolved to (a cache record on
    /// no parent, key `#(from) <reference>`), keeping the previous one to
    /// explain misses.
    fn note_base(&self, st: &mut StageState, reference: &str, id: &ImageId) -> Result<()> {
        let key = format!("#(from) {reference}");
        st.prev_base = self
            .cache
            .lookup(None, &key)
            .map_err(|e| Error::backend("look up cache", "scratch", e))?
            .map(|r| (reference.to_string(), r.image));
        if st.prev_base.as_ref().is_some_and(|(_, old)| old == id) {
            return Ok(());
        }
        let record = CacheRecord {
            parent: None,
            key: key.clone(),
            shape: key,
            files: Vec::new(),
            image: id.clone(),
        };
        self.cache
            .record(&record)
            .map_err(|e| Error::backend("record cache", id.to_string(), e))
    }

    /// Records a new image for the step and makes it the stage's current one.
    pub(crate) fn commit_step(
        &self,
        sh: &Shared<'_>,
        st: &mut StageState,
        rootfs: Option<&Rootfs>,
        config: ContainerConfig,
        created_by: String,
        key: StepKey,
    ) -> Result<()> {
        let commit = StepCommit {
            rootfs,
            stack: None,
            config,
            created_by,
            key,
        };
        self.commit_layer_step(sh, st, commit)
    }

    /// [`commit_step`](Self::commit_step), optionally stacking the layer of
    /// a `COPY --link` image instead of diffing a rootfs.
    pub(crate) fn commit_layer_step(
        &self,
        sh: &Shared<'_>,
        st: &mut StageState,
        commit: StepCommit<'_>,
    ) -> Result<()> {
        let StepCommit {
            rootfs,
            stack,
            config,
            created_by,
            key,
        } = commit;
        let history = History {
            created: Some(sh.created.clone()),
            created_by: Some(created_by),
            author: st.author.clone(),
            comment: None,
            empty_layer: rootfs.is_none() && stack.is_none(),
            ..History::default()
        };
        let req = CommitRequest {
            parent: st.image.as_ref(),
            rootfs,
            config: &config,
            history: &history,
            platform: &st.platform,
            created: &sh.created,
            author: st.author.as_deref(),
            stack,
        };
        let id = self.backend.commit(&req).map_err(|e| {
            Error::backend(
                "commit",
                rootfs.map_or("metadata step".to_string(), |r| r.key.clone()),
                e,
            )
        })?;
        let record = CacheRecord {
            parent: st.image.clone(),
            key: st.key_on_parent(&key.key),
            shape: key.shape,
            files: key.files,
            image: id.clone(),
        };
        self.cache
            .record(&record)
            .map_err(|e| Error::backend("record cache", id.to_string(), e))?;
        st.image = Some(id);
        st.config = config;
        Ok(())
    }

    /// A metadata-only step: new config, `#(nop)` history, empty layer.
    pub(crate) fn meta_step(
        &self,
        sh: &Shared<'_>,
        st: &mut StageState,
        config: ContainerConfig,
        text: &str,
    ) -> Result<()> {
        // Docker commits with the new config, so SHELL records its own shell.
        let created_by = nop(&config.shell_or_default(), text);
        let key = StepKey::plain(created_by.clone());
        if let Some(hit) = self.probe(sh, st, &key, &config)? {
            self.progress.event(Event::UsingCache);
            st.image = Some(hit);
            st.config = config;
        } else {
            let cid = st.container_id();
            let short = cid[..12].to_string();
            self.progress.event(Event::RunningIn {
                container: short.clone(),
            });
            self.commit_step(sh, st, None, config, created_by, key)?;
            self.progress.event(Event::Removing { container: short });
        }
        self.step_image(st);
        Ok(())
    }

    pub(crate) fn step_image(&self, st: &StageState) {
        if let Some(id) = &st.image {
            self.progress.event(Event::StepImage {
                image: id.short().to_string(),
            });
        }
    }

    /// FROM: the base image (or stage, or scratch), then its ONBUILD triggers.
    pub(crate) fn step_from(&self, sh: &Shared<'_>, st: &mut StageState) -> Result<()> {
        let stage = &sh.df.stages[st.index];
        let platform = match &stage.platform {
            Some(p) => {
                let env: Vec<(String, String)> = sh.global.clone().into_iter().collect();
                let v = sh
                    .lexer()
                    .process_word(p, &env[..])
                    .map_err(|e| Error::Expand {
                        line: stage.source.start_line,
                        word: p.clone(),
                        message: e.kind.to_string(),
                    })?;
                v.parse().map_err(|e: kiln_model::Error| {
                    Error::instr(stage.source.start_line, e.to_string())
                })?
            }
            None => sh.target_platform.clone(),
        };
        match &sh.graph.bases[st.index] {
            Base::Scratch => {
                st.platform = platform;
            }
            Base::Stage(j) => {
                let r = sh.stage_result(*j, stage.source.start_line)?;
                st.image = r.image;
                st.config = r.config;
                st.platform = r.platform;
            }
            Base::Image(reference) => {
                let info = self
                    .backend
                    .resolve(reference, &platform, sh.opts.pull)
                    .map_err(|e| Error::backend("resolve image", reference.clone(), e))?;
                self.note_base(st, reference, &info.id)?;
                st.image = Some(info.id);
                st.config = info.config;
                st.platform = info.platform;
            }
        }
        // Docker and BuildKit give every stage a PATH when its image has none.
        if st.config.env_get("PATH").is_none() {
            st.config.env_set("PATH", DEFAULT_PATH);
        }
        let triggers = st.config.on_build.take().unwrap_or_default();
        // With triggers, legacy Docker prints their output instead of the base's ID.
        if triggers.is_empty() {
            self.step_image(st);
        } else {
            self.progress.event(Event::Triggers {
                count: triggers.len(),
            });
            for t in &triggers {
                let inst = crate::plan::parse_trigger(t, stage.source.start_line)?;
                self.dispatch(sh, st, &inst)?;
            }
        }
        Ok(())
    }

    /// Runs one instruction.
    pub(crate) fn dispatch(
        &self,
        sh: &Shared<'_>,
        st: &mut StageState,
        inst: &Instruction,
    ) -> Result<()> {
        let line = inst.source().start_line;
        match inst {
            Instruction::From(_) => Err(Error::instr(line, "FROM inside a stage")),
            Instruction::Run(r) if matches!(&r.cmd, ShellOrExec::Exec(v) if v.is_empty()) => {
                // `RUN []` (TestBuildJSONEmptyRun): Docker runs the stage's
                // ENTRYPOINT, or its CMD when it has none.
                let mut argv = st.config.entrypoint.clone().unwrap_or_default();
                if argv.is_empty() {
                    argv = st.config.cmd.clone().unwrap_or_default();
                }
                if argv.is_empty() {
                    return Err(Error::instr(
                        line,
                        "RUN []: no command to run (the image has neither ENTRYPOINT nor CMD)",
                    ));
                }
                let mut run = r.clone();
                run.cmd = ShellOrExec::Exec(argv);
                self.step_run(sh, st, &run)
            }
            Instruction::Run(r) => self.step_run(sh, st, r),
            Instruction::Copy(c) => self.copy_step_checked(sh, st, c, "COPY"),
            Instruction::Add(c) => self.copy_step_checked(sh, st, c, "ADD"),
            Instruction::Workdir(w) => self.step_workdir(sh, st, &w.value, line),
            Instruction::Cmd(c) => self.step_cmd(sh, st, c, false),
            Instruction::Entrypoint(c) => self.step_cmd(sh, st, c, true),
            Instruction::Env(kv) => self.step_env(sh, st, kv, false),
            Instruction::Label(kv) => self.step_env(sh, st, kv, true),
            Instruction::Arg(a) => self.step_arg(sh, st, a),
            Instruction::Expose(l) => self.step_expose(sh, st, l),
            Instruction::Volume(l) => self.step_volume(sh, st, l),
            Instruction::Shell(l) => {
                if !l.json || l.values.is_empty() {
                    return Err(Error::instr(
                        line,
                        "SHELL requires the arguments to be in JSON form",
                    ));
                }
                let mut c = st.config.clone();
                c.shell = Some(l.values.clone());
                self.meta_step(sh, st, c, &format!("SHELL {}", go_v_list(&l.values)))
            }
            Instruction::User(v) => {
                let user = self.expand(sh, st, &v.value, line)?;
                let mut c = st.config.clone();
                c.user = Some(user.clone());
                self.meta_step(sh, st, c, &format!("USER {user}"))
            }
            Instruction::StopSignal(v) => {
                let sig = self.expand(sh, st, &v.value, line)?;
                let mut c = st.config.clone();
                c.stop_signal = Some(sig.clone());
                self.meta_step(sh, st, c, &format!("STOPSIGNAL {sig}"))
            }
            Instruction::Maintainer(v) => {
                // Docker neither expands nor unquotes MAINTAINER's value
                // (TestBuildEscapeWhitespace keeps the quotes in Author).
                let who = v.value.clone();
                st.author = Some(who.clone());
                let c = st.config.clone();
                self.meta_step(sh, st, c, &format!("MAINTAINER {who}"))
            }
            Instruction::Onbuild(o) => {
                let mut c = st.config.clone();
                c.on_build
                    .get_or_insert_with(Vec::new)
                    .push(o.expression.clone());
                self.meta_step(sh, st, c, &format!("ONBUILD {}", o.expression))
            }
            Instruction::Healthcheck(h) => self.step_healthcheck(sh, st, h),
        }
    }

    /// Runs a COPY or ADD step with Docker's error texts around it: a source
    /// that is not there is `COPY failed: file not found ...`, a `--from`
    /// that is neither an earlier stage nor an image that resolves is
    /// `invalid from flag value X: ...` (also when it names the current stage).
    fn copy_step_checked(
        &self,
        sh: &Shared<'_>,
        st: &mut StageState,
        c: &kiln_dockerfile::instructions::CopyInstruction,
        name: &'static str,
    ) -> Result<()> {
        let line = c.source.start_line;
        let from = match &c.from {
            Some(f) => Some(self.expand(sh, st, f, line)?),
            None => None,
        };
        if let Some(from) = &from {
            let stage = &sh.df.stages[st.index];
            let own_name = stage
                .name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(from));
            if own_name || from.parse::<usize>() == Ok(st.index) {
                return Err(Error::InvalidFrom {
                    value: from.clone(),
                    reason: "refers to current build stage".into(),
                });
            }
        }
        self.step_copy(sh, st, c, name).map_err(|e| match e {
            Error::SourceNotFound { .. } => Error::CopyFailed {
                instruction: name,
                line,
                error: Box::new(e),
            },
            Error::Backend {
                op: "resolve image",
                ..
            } if from.is_some() => Error::InvalidFrom {
                value: from.unwrap_or_default(),
                reason: e.chain(),
            },
            e => e,
        })
    }

    fn step_cmd(
        &self,
        sh: &Shared<'_>,
        st: &mut StageState,
        c: &CmdInstruction,
        entrypoint: bool,
    ) -> Result<()> {
        let argv = match &c.cmd {
            ShellOrExec::Exec(v) => v.clone(),
            ShellOrExec::Shell(s) => {
                let mut v = st.config.shell_or_default();
                v.push(s.clone());
                v
            }
        };
        let mut cfg = st.config.clone();
        let name = if entrypoint { "ENTRYPOINT" } else { "CMD" };
        if entrypoint {
            cfg.entrypoint = Some(argv.clone());
            // An ENTRYPOINT resets an inherited CMD, not one set in this stage.
            if !st.cmd_set {
                cfg.cmd = None;
            }
        } else {
            cfg.cmd = Some(argv.clone());
            st.cmd_set = true;
        }
        self.meta_step(sh, st, cfg, &format!("{name} {}", go_q_list(&argv)))
    }

    fn step_env(
        &self,
        sh: &Shared<'_>,
        st: &mut StageState,
        kv: &KeyValueInstruction,
        label: bool,
    ) -> Result<()> {
        let line = kv.source.start_line;
        let mut cfg = st.config.clone();
        let mut text = String::from(if label { "LABEL" } else { "ENV" });
        // Every pair is expanded with the environment from before the instruction.
        for pair in &kv.pairs {
            let key = self.expand(sh, st, &pair.key, line)?;
            let value = self.expand(sh, st, &pair.value, line)?;
            if key.is_empty() {
                return Err(Error::instr(
                    line,
                    format!(
                        "{} names can not be blank",
                        if label { "LABEL" } else { "ENV" }
                    ),
                ));
            }
            text.push_str(&format!(" {key}={value}"));
            if label {
                cfg.labels
                    .get_or_insert_with(BTreeMap::new)
                    .insert(key, value);
            } else {
                cfg.env_set(&key, &value);
            }
        }
        self.meta_step(sh, st, cfg, &text)
    }

    fn step_arg(&self, sh: &Shared<'_>, st: &mut StageState, a: &ArgInstruction) -> Result<()> {
        let line = a.source.start_line;
        let mut text = String::from("ARG");
        for def in &a.args {
            let default = match &def.default {
                Some(d) => Some(self.expand(sh, st, d, line)?),
                None => None,
            };
            match &default {
                Some(d) => text.push_str(&format!(" {}={d}", def.name)),
                None => text.push_str(&format!(" {}", def.name)),
            }
            st.args.declare(&def.name, default);
        }
        let cfg = st.config.clone();
        self.meta_step(sh, st, cfg, &text)
    }

    fn step_expose(&self, sh: &Shared<'_>, st: &mut StageState, l: &ListInstruction) -> Result<()> {
        let line = l.source.start_line;
        let mut ports = Vec::new();
        for v in &l.values {
            for word in self.expand_words(sh, st, v, line)? {
                ports.extend(
                    parse_ports(&word)
                        .ok_or_else(|| Error::instr(line, format!("invalid port {word:?}")))?,
                );
            }
        }
        ports.sort();
        ports.dedup();
        let mut cfg = st.config.clone();
        cfg.exposed_ports
            .get_or_insert_with(BTreeSet::new)
            .extend(ports.iter().cloned());
        self.meta_step(sh, st, cfg, &format!("EXPOSE {}", ports.join(" ")))
    }

    fn step_volume(&self, sh: &Shared<'_>, st: &mut StageState, l: &ListInstruction) -> Result<()> {
        let line = l.source.start_line;
        let mut vols = Vec::new();
        for v in &l.values {
            let mut expanded = if l.json {
                vec![self.expand(sh, st, v, line)?]
            } else {
                self.expand_words(sh, st, v, line)?
            };
            // Docker expands each word as one word: `VOLUME $empty` is an
            // empty volume, an error, not no volume at all.
            if expanded.is_empty() {
                expanded.push(String::new());
            }
            for e in expanded {
                let e = e.trim().to_string();
                if e.is_empty() {
                    return Err(Error::instr(
                        line,
                        "VOLUME specified can not be an empty string",
                    ));
                }
                vols.push(e);
            }
        }
        self.check_volume_paths(st, &vols, line)?;
        let mut cfg = st.config.clone();
        cfg.volumes
            .get_or_insert_with(BTreeSet::new)
            .extend(vols.iter().cloned());
        self.meta_step(sh, st, cfg, &format!("VOLUME {}", go_v_list(&vols)))
    }

    /// A VOLUME over something that is not a directory in the image fails,
    /// as Docker's does when it makes the mount point
    /// (TestBuildVolumeFileExistsinContainer: `mkdir /foo: file exists`).
    /// A missing path is fine: the volume creates it.
    fn check_volume_paths(&self, st: &mut StageState, vols: &[String], line: usize) -> Result<()> {
        if st.image.is_none() {
            return Ok(());
        }
        let key = format!("{}-volume", st.container_id());
        let mut sources = Vec::new();
        let checked = self
            .mount_image(st.image.as_ref(), &key, &mut sources)
            .and_then(|path| {
                let root =
                    kiln_fs::Root::open(&path).map_err(|e| Error::io("open", path.clone(), e))?;
                for v in vols {
                    let rel = v.trim_start_matches('/');
                    if rel.is_empty() {
                        continue;
                    }
                    match root.open_dir(rel) {
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                            return Err(Error::instr(
                                line,
                                format!(
                                    "VOLUME {v}: cannot make the mount point: mkdir {v}: file exists (not a directory in the image)"
                                ),
                            ));
                        }
                        Err(e) => return Err(Error::io("open", root.display(rel), e)),
                    }
                }
                Ok(())
            });
        for s in &sources {
            let _ = self.backend.unmount(s);
            let _ = self.backend.discard(s);
        }
        checked
    }

    fn step_healthcheck(
        &self,
        sh: &Shared<'_>,
        st: &mut StageState,
        h: &HealthcheckInstruction,
    ) -> Result<()> {
        let hc = match &h.check {
            Healthcheck::None => HealthConfig {
                test: vec!["NONE".to_string()],
                ..Default::default()
            },
            Healthcheck::Cmd {
                cmd,
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
            } => {
                // Nanoseconds, as Go's time.Duration; 0 is omitted (Docker's
                // `omitempty`), meaning "inherit the default".
                let ns = |d: &Option<std::time::Duration>| {
                    d.map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
                        .filter(|&n| n != 0)
                };
                let test = match cmd {
                    ShellOrExec::Shell(s) => vec!["CMD-SHELL".to_string(), s.clone()],
                    ShellOrExec::Exec(v) => {
                        let mut t = vec!["CMD".to_string()];
                        t.extend(v.iter().cloned());
                        t
                    }
                };
                HealthConfig {
                    test,
                    interval: ns(interval),
                    timeout: ns(timeout),
                    start_period: ns(start_period),
                    start_interval: ns(start_interval),
                    retries: retries.filter(|&r| r != 0).map(i64::from),
                }
            }
        };
        let text = healthcheck_text(&hc);
        let mut cfg = st.config.clone();
        cfg.healthcheck = Some(hc);
        self.meta_step(sh, st, cfg, &text)
    }

    /// `--label` of the build: an extra LABEL step at the end of the target stage.
    pub(crate) fn step_build_labels(&self, sh: &Shared<'_>, st: &mut StageState) -> Result<()> {
        let mut line = String::from("LABEL");
        let mut text = String::from("LABEL");
        let mut cfg = st.config.clone();
        for (k, v) in &sh.opts.labels {
            line.push_str(&format!(" {}='{v}'", crate::history::go_quote(k)));
            text.push_str(&format!(" {k}={v}"));
            cfg.labels
                .get_or_insert_with(BTreeMap::new)
                .insert(k.clone(), v.clone());
        }
        self.progress.event(Event::Step {
            number: st.step,
            total: sh.graph.total,
            stage: st.index,
            text: line,
        });
        self.meta_step(sh, st, cfg, &text)
    }
}

/// `80`, `80/udp`, `8000-8002/tcp` → `["80/tcp"]`...
pub(crate) fn parse_ports(spec: &str) -> Option<Vec<String>> {
    let (ports, proto) = match spec.split_once('/') {
        Some((p, proto)) => (p, proto.to_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return None;
    }
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (a.parse::<u16>().ok()?, b.parse::<u16>().ok()?),
        None => {
            let p = ports.parse::<u16>().ok()?;
            (p, p)
        }
    };
    if lo > hi {
        return None;
    }
    Some((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// Why a step missed the cache, from the records on top of the same parent.
fn explain_miss(parent: Option<&ImageId>, children: &[CacheRecord], key: &StepKey) -> String {
    let on = parent.map_or("scratch".to_string(), |p| p.short().to_string());
    if children.is_empty() {
        return format!("nothing cached on top of {on} (first build, or the base image changed)");
    }
    let Some(same) = children.iter().find(|r| r.shape == key.shape) else {
        return format!("instruction changed: no cached step with this instruction on top of {on}");
    };
    if !key.files.is_empty() || !same.files.is_empty() {
        let old: BTreeMap<&str, &str> = same
            .files
            .iter()
            .map(|(p, d)| (p.as_str(), d.as_str()))
            .collect();
        let new: BTreeMap<&str, &str> = key
            .files
            .iter()
            .map(|(p, d)| (p.as_str(), d.as_str()))
            .collect();
        let mut changed: Vec<String> = Vec::new();
        for (p, d) in &new {
            match old.get(p) {
                None => changed.push(format!("{p} (added)")),
                Some(o) if o != d => changed.push(format!("{p} (changed)")),
                _ => {}
            }
        }
        for p in old.keys() {
            if !new.contains_key(p) {
                changed.push(format!("{p} (removed)"));
            }
        }
        let more = changed.len().saturating_sub(5);
        changed.truncate(5);
        let mut s = format!("source files changed: {}", changed.join(", "));
        if more > 0 {
            s.push_str(&format!(" and {more} more"));
        }
        return s;
    }
    let args = |k: &str| -> String {
        k.strip_prefix('|')
            .and_then(|rest| rest.split_once(' '))
            .map(|(n, rest)| {
                let n: usize = n.parse().unwrap_or(0);
                rest.split(' ').take(n).collect::<Vec<_>>().join(" ")
            })
            .unwrap_or_default()
    };
    format!(
        "build args changed: cached [{}], now [{}]",
        args(&same.key),
        args(&key.key)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(parse_ports("80"), Some(vec!["80/tcp".to_string()]));
        assert_eq!(parse_ports("53/UDP"), Some(vec!["53/udp".to_string()]));
        assert_eq!(parse_ports("8000-8002/tcp").map(|v| v.len()), Some(3));
        assert_eq!(parse_ports("x"), None);
        assert_eq!(parse_ports("80/icmp"), None);
        assert_eq!(parse_ports("9-1"), None);
    }
}
