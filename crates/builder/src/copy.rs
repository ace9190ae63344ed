//! COPY, ADD and WORKDIR: the steps that change the filesystem without
//! running a command. The builder writes into the rootfs that the backend
//! mounts for it.

use kiln_dockerfile::instructions::{CopyInstruction, CopySource};
use kiln_fs::{FinalLink, Root};

use crate::backend::{CacheRecord, CommitRequest, ImageId, Rootfs};
use crate::context::{CopyPlan, PlanOptions, Tree, absolute_dest, plan_copy, plan_inline};
use crate::engine::{Builder, Shared, StageState};
use crate::error::{Error, Result};
use crate::history::nop_copy;
use crate::key::CopyFlags;
use crate::pattern::Pattern;
use crate::perms::{Chmod, Owner, resolve_owner};
use crate::progress::Event;
use crate::steps::{StepCommit, StepKey};
use crate::write::{ApplyOptions, apply_copy, make_dirs};
use kiln_model::{ContainerConfig, History};

/// A downloaded URL: (name, file in the download directory, mtime).
type Download = (String, String, Option<i64>);

/// Opens a tree kiln mounted or made (a stage or image rootfs, a git
/// checkout) as an untrusted root.
fn open_tree(path: &std::path::Path) -> Result<Root> {
    Root::open(path).map_err(|e| Error::io("open", path, e))
}

/// The sources of a COPY/ADD by kind, their words expanded.
#[derive(Default)]
struct Sources {
    paths: Vec<String>,
    inline: Vec<(String, Vec<u8>)>,
    remote: Vec<String>,
    git: Vec<crate::backend::GitSource>,
    /// The kind of each source, in the instruction's order.
    order: Vec<SourceKind>,
}

/// Which list of [`Sources`] a source went to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SourceKind {
    Path,
    Inline,
    Remote,
    Git,
}

/// A COPY/ADD being carried out: the instruction's words expanded, its
/// flags (the ones its cache key is made of), where it writes.
struct CopyJob<'c> {
    c: &'c CopyInstruction,
    /// `COPY` or `ADD`.
    name: &'static str,
    line: usize,
    flags: CopyFlags,
    chmod: Option<Chmod>,
    dest: String,
    workdir: String,
    plan_opts: PlanOptions,
    /// The step's intermediate container ID (names its rootfs and downloads).
    cid: String,
}

/// What a COPY/ADD borrowed while planning, released after the step.
#[derive(Default)]
struct Borrowed {
    /// Mounted stage or image rootfs trees (`--from`).
    sources: Vec<Rootfs>,
    /// Downloads and git checkouts in kiln's download directory.
    downloads: Vec<std::path::PathBuf>,
}

impl CopyJob<'_> {
    /// How the plan's files are written: `owner` (resolved from `--chown`
    /// in the tree written to), `--chmod`.
    fn apply_options(&self, sh: &Shared<'_>, owner: Owner) -> ApplyOptions {
        ApplyOptions {
            owner,
            chown_given: self.flags.chown.is_some(),
            chmod: self.chmod.clone(),
            ignore_chown_errors: sh.opts.ignore_chown_errors,
        }
    }
}

/// Removes ADD's downloads and git checkouts from kiln's own download
/// directory (best effort: the step's result matters more).
fn remove_downloads(downloads: &[std::path::PathBuf]) {
    for d in downloads {
        if d.is_dir() {
            let _ = std::fs::remove_dir_all(d);
        } else {
            let _ = std::fs::remove_file(d);
        }
    }
}

impl Builder<'_> {
    pub(crate) fn step_copy(
        &self,
        sh: &Shared<'_>,
        st: &mut StageState,
        c: &CopyInstruction,
        name: &'static str,
    ) -> Result<()> {
        let job = self.copy_job(sh, st, c, name)?;
        let sources = self.copy_sources(sh, st, &job)?;
        let mut borrowed = Borrowed::default();
        let result = self
            .plan_sources(sh, st, &job, &sources, &mut borrowed)
            .and_then(|plan| self.apply_plan(sh, st, &job, &plan));
        self.release(&borrowed.sources);
        remove_downloads(&borrowed.downloads);
        result
    }

    /// Expands the destination and flags of `c` and checks them.
    fn copy_job<'c>(
        &self,
        sh: &Shared<'_>,
        st: &mut StageState,
        c: &'c CopyInstruction,
        name: &'static str,
    ) -> Result<CopyJob<'c>> {
        let line = c.source.start_line;
        let flags = CopyFlags::expand(c, &mut |w| self.expand(sh, st, w, line))?;
        let chmod = match &flags.chmod {
            Some(v) => Some(Chmod::parse(v).map_err(|e| Error::instr(line, e.to_string()))?),
            None => None,
        };
        let mut excludes = Vec::new();
        for e in &flags.exclude {
            excludes.push(
                Pattern::new(&crate::dockerignore::clean_rel(e), true)
                    .map_err(|e| Error::instr(line, e.to_string()))?,
            );
        }
        let plan_opts = PlanOptions {
            parents: flags.parents,
            extract_archives: name == "ADD" && flags.unpack != Some(false),
            excludes,
        };
        Ok(CopyJob {
            c,
            name,
            line,
            dest: self.expand(sh, st, &c.dest, line)?,
            workdir: st
                .config
                .working_dir
                .clone()
                .unwrap_or_else(|| "/".to_string()),
            flags,
            chmod,
            plan_opts,
            cid: st.container_id(),
        })
    }

    /// Expands the sources and sorts them: context or stage paths, heredocs,
    /// and for ADD, URLs and git repositories.
    fn copy_sources(&self, sh: &Shared<'_>, st: &StageState, job: &CopyJob<'_>) -> Result<Sources> {
        let line = job.line;
        let mut out = Sources::default();
        for s in &job.c.sources {
            match s {
                CopySource::Path(p) => {
                    let v = self.expand(sh, st, p, line)?;
                    if job.name == "ADD"
                        && let Some(g) = crate::backend::GitSource::parse(&v)
                    {
                        out.git.push(g);
                        out.order.push(SourceKind::Git);
                    } else if job.name == "ADD"
                        && (v.starts_with("http://") || v.starts_with("https://"))
                    {
                        out.remote.push(v);
                        out.order.push(SourceKind::Remote);
                    } else {
                        out.paths.push(v);
                        out.order.push(SourceKind::Path);
                    }
                }
                CopySource::Heredoc(h) => {
                    let body = if h.expand {
                        self.expand_heredoc(sh, st, &h.chomped(), line)?
                    } else {
                        h.chomped()
                    };
                    out.inline.push((h.name.clone(), body.into_bytes()));
                    out.order.push(SourceKind::Inline);
                }
            }
        }
        Ok(out)
    }

    /// Resolves the sources into a copy plan: a git checkout, downloads,
    /// heredocs, or paths in the context or in a `--from` tree.
    fn plan_sources(
        &self,
        sh: &Shared<'_>,
        st: &StageState,
        job: &CopyJob<'_>,
        srcs: &Sources,
        borrowed: &mut Borrowed,
    ) -> Result<CopyPlan> {
        let (line, dest, workdir) = (job.line, &job.dest, &job.workdir);
        if let Some(git) = srcs.git.first() {
            if srcs.git.len() > 1
                || !srcs.paths.is_empty()
                || !srcs.inline.is_empty()
                || !srcs.remote.is_empty()
            {
                return Err(Error::instr(
                    line,
                    "ADD of a git repository takes no other source",
                ));
            }
            let dir = self.clone_git(sh, job, git, &mut borrowed.downloads)?;
            let source = git.subdir.clone().unwrap_or_else(|| ".".to_string());
            let opts = PlanOptions {
                excludes: job.plan_opts.excludes.clone(),
                ..PlanOptions::default()
            };
            // The repository's content goes into the destination directory.
            let dest_dir = if dest.ends_with('/') {
                dest.clone()
            } else {
                format!("{dest}/")
            };
            let checkout = open_tree(&dir)?;
            return plan_copy(
                &Tree::plain(&checkout),
                &[source],
                &dest_dir,
                workdir,
                &opts,
                line,
            );
        }
        if !srcs.remote.is_empty() {
            let (dir, files) = self.download(sh, job, &srcs.remote, &mut borrowed.downloads)?;
            if srcs.paths.is_empty() && srcs.inline.is_empty() {
                return crate::context::plan_downloads(&dir, &files, dest, workdir);
            }
            return self.plan_mixed(sh, job, srcs, (&dir, &files));
        }
        if !srcs.inline.is_empty() {
            return Ok(plan_inline(&srcs.inline, dest, workdir));
        }
        match &job.flags.from {
            None => plan_copy(
                &sh.ctx.tree(),
                &srcs.paths,
                dest,
                workdir,
                &job.plan_opts,
                line,
            ),
            Some(from) => {
                let key = format!("{}-src", job.cid);
                let root =
                    open_tree(&self.mount_from(sh, st, from, &key, &mut borrowed.sources)?)?;
                plan_copy(
                    &Tree::plain(&root),
                    &srcs.paths,
                    dest,
                    workdir,
                    &job.plan_opts,
                    line,
                )
            }
        }
    }

    /// ADD of URLs together with local sources (Docker's legacy builder
    /// allows it): one part per source, in the instruction's order, into
    /// the destination directory (which must end with `/`, as for any
    /// copy of several sources).
    fn plan_mixed(
        &self,
        sh: &Shared<'_>,
        job: &CopyJob<'_>,
        srcs: &Sources,
        (dir, downloaded): (&std::path::Path, &[Download]),
    ) -> Result<CopyPlan> {
        let (line, dest, workdir) = (job.line, &job.dest, &job.workdir);
        if !(dest.ends_with('/') || dest.ends_with("/.") || dest == ".") {
            return Err(Error::instr(
                line,
                format!(
                    "When using {} with more than one source file, the destination must be a directory and end with a /",
                    job.name
                ),
            ));
        }
        let mut parts = Vec::new();
        let mut url = downloaded.iter();
        let mut path = srcs.paths.iter();
        let mut inline = srcs.inline.iter();
        for kind in &srcs.order {
            match kind {
                SourceKind::Remote => {
                    if let Some(d) = url.next() {
                        let one = std::slice::from_ref(d);
                        parts.push(crate::context::plan_downloads(dir, one, dest, workdir)?);
                    }
                }
                SourceKind::Path => {
                    if let Some(p) = path.next() {
                        parts.push(plan_copy(
                            &sh.ctx.tree(),
                            std::slice::from_ref(p),
                            dest,
                            workdir,
                            &job.plan_opts,
                            line,
                        )?);
                    }
                }
                SourceKind::Inline => {
                    if let Some(h) = inline.next() {
                        parts.push(plan_inline(std::slice::from_ref(h), dest, workdir));
                    }
                }
                // A git source takes no other (checked before).
                SourceKind::Git => {}
            }
        }
        CopyPlan::combine(parts).ok_or_else(|| Error::instr(line, "ADD without sources"))
    }

    /// The cached step for a plan: its key, then a cache hit, or the files
    /// written into a new layer on the current image (`--link`: on its own).
    fn apply_plan(
        &self,
        sh: &Shared<'_>,
        st: &mut StageState,
        job: &CopyJob<'_>,
        plan: &CopyPlan,
    ) -> Result<()> {
        let shell = st.config.shell_or_default();
        // Docker records the destination as written (expanded), not resolved.
        let created_by = nop_copy(&shell, job.name, &plan.checksum, &job.dest);
        let key = job.flags.key(&created_by);
        let shape_flags = key[created_by.len()..].to_owned();
        let key = StepKey {
            key,
            shape: format!("{} in {}{shape_flags}", job.name, plan.dest),
            files: plan.files.clone(),
        };
        if job.flags.link {
            return self.link_copy(sh, st, job, plan, created_by, key);
        }
        let config = st.config.clone();
        if let Some(hit) = self.probe(sh, st, &key, &config)? {
            self.progress.event(Event::UsingCache);
            st.image = Some(hit);
            self.step_image(st);
            return Ok(());
        }
        // Docker's legacy builder copies into a fresh layer without a
        // container: no "Running in" / "Removing intermediate container".
        let parent = st.image.clone();
        let rootfs = self.write_into(sh, parent.as_ref(), &job.cid, |root| {
            let owner = match &job.flags.chown {
                Some(spec) => resolve_owner(spec, Some(root))?,
                None => Owner::default(),
            };
            apply_copy(plan, root, &job.apply_options(sh, owner))?;
            Ok(true)
        })?;
        let cfg = st.config.clone();
        self.commit_step(sh, st, rootfs.as_ref(), cfg, created_by, key)?;
        self.step_image(st);
        Ok(())
    }

    /// Clones an `ADD` git source into the download directory; returns the
    /// checkout.
    fn clone_git(
        &self,
        sh: &Shared<'_>,
        job: &CopyJob<'_>,
        source: &crate::backend::GitSource,
        downloads: &mut Vec<std::path::PathBuf>,
    ) -> Result<std::path::PathBuf> {
        let line = job.line;
        let fetcher = self.fetcher.ok_or_else(|| {
            Error::instr(
                line,
                "ADD of a git repository needs a fetcher, and none was configured",
            )
        })?;
        let dir = sh.opts.download_dir.as_ref().ok_or_else(|| {
            Error::instr(line, "ADD of a git repository needs a download directory")
        })?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
        let dest = dir.join(format!("{}-git", job.cid));
        downloads.push(dest.clone());
        fetcher
            .fetch_git(
                &source.repo,
                source.reference.as_deref(),
                &dest,
                job.flags.keep_git_dir,
            )
            .map_err(|e| Error::backend("clone", source.repo.clone(), e))?;
        Ok(dest)
    }

    /// `COPY --link`: the files go into an empty rootfs whose diff becomes an
    /// image of one layer on scratch, cached by the instruction and content
    /// alone (so a new base image does not redo it); that layer is then
    /// stacked on the current image without diffing anything.
    fn link_copy(
        &self,
        sh: &Shared<'_>,
        st: &mut StageState,
        job: &CopyJob<'_>,
        plan: &CopyPlan,
        created_by: String,
        key: StepKey,
    ) -> Result<()> {
        let cid = job.cid.as_str();
        // On no parent: the platform tells layers for different ones apart.
        let link_key = crate::key::on_parent(&format!("#(link) {}", key.key), true, &st.platform);
        let cached = if sh.opts.no_cache {
            None
        } else {
            self.cache
                .lookup(None, &link_key)
                .map_err(|e| Error::backend("look up cache", "scratch", e))?
                .map(|r| r.image)
        };
        let layer = match cached {
            Some(image) => {
                self.progress.event(Event::UsingCache);
                image
            }
            None => {
                // Owner names are looked up in the image the layer lands on.
                let owner = match &job.flags.chown {
                    Some(spec) if spec.split(':').all(|p| p.parse::<u32>().is_ok()) => {
                        resolve_owner(spec, None)?
                    }
                    Some(spec) => {
                        let mut sources = Vec::new();
                        let r = self
                            .mount_image(st.image.as_ref(), &format!("{cid}-owner"), &mut sources)
                            .and_then(|root| open_tree(&root))
                            .and_then(|root| resolve_owner(spec, Some(&root)));
                        for s in &sources {
                            let _ = self.backend.unmount(s);
                            let _ = self.backend.discard(s);
                        }
                        r?
                    }
                    None => Owner::default(),
                };
                let opts = job.apply_options(sh, owner);
                let rootfs = self.write_into(sh, None, cid, |root| {
                    apply_copy(plan, root, &opts)?;
                    Ok(true)
                })?;
                let history = History {
                    created: Some(sh.created.clone()),
                    created_by: Some(created_by.clone()),
                    author: None,
                    comment: None,
                    empty_layer: false,
                    ..History::default()
                };
                let req = CommitRequest {
                    parent: None,
                    rootfs: rootfs.as_ref(),
                    config: &ContainerConfig::default(),
                    history: &history,
                    platform: &st.platform,
                    created: &sh.created,
                    author: None,
                    stack: None,
                };
                let image = self
                    .backend
                    .commit(&req)
                    .map_err(|e| Error::backend("commit", cid.to_string(), e))?;
                let record = CacheRecord {
                    parent: None,
                    key: link_key.clone(),
                    shape: link_key,
                    files: Vec::new(),
                    image: image.clone(),
                };
                self.cache
                    .record(&record)
                    .map_err(|e| Error::backend("record cache", image.to_string(), e))?;
                image
            }
        };
        // Stacking is its own cached step on the current image, keyed as
        // the instruction (with `--link`): the layer is a function of that
        // key, and its image ID, made here at some time, is no key input.
        let stack_key = key;
        let config = st.config.clone();
        if let Some(hit) = self.probe(sh, st, &stack_key, &config)? {
            st.image = Some(hit);
        } else {
            let commit = StepCommit {
                rootfs: None,
                stack: Some(&layer),
                config: st.config.clone(),
                created_by,
                key: stack_key,
            };
            self.commit_layer_step(sh, st, commit)?;
        }
        self.step_image(st);
        Ok(())
    }

    /// Downloads ADD's URLs, verifying `--checksum`; returns the download
    /// directory and (name, file in it, mtime) per URL.
    fn download(
        &self,
        sh: &Shared<'_>,
        job: &CopyJob<'_>,
        urls: &[String],
        downloads: &mut Vec<std::path::PathBuf>,
    ) -> Result<(std::path::PathBuf, Vec<Download>)> {
        let line = job.line;
        let fetcher = self.fetcher.ok_or_else(|| {
            Error::instr(
                line,
                "ADD of a URL needs a downloader, and none was configured",
            )
        })?;
        let dir = sh
            .opts
            .download_dir
            .as_ref()
            .ok_or_else(|| Error::instr(line, "ADD of a URL needs a download directory"))?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
        let mut out = Vec::new();
        for (i, url) in urls.iter().enumerate() {
            let file_name = format!("{}-{i}", job.cid);
            let file = dir.join(&file_name);
            downloads.push(file.clone());
            let mtime = fetcher
                .fetch(url, &file)
                .map_err(|e| Error::backend("download", url.clone(), e))?;
            if let Some(want) = &job.flags.checksum {
                let got = crate::index::hash_own_file(&file)?;
                if &got != want {
                    return Err(Error::instr(
                        line,
                        format!("checksum mismatch for {url}: expected {want}, got {got}"),
                    ));
                }
            }
            let path = url.split(['?', '#']).next().unwrap_or(url);
            let name = path
                .split_once("://")
                .and_then(|(_, rest)| rest.split_once('/'))
                .and_then(|(_, p)| p.rsplit('/').next())
                .filter(|n| !n.is_empty())
                .unwrap_or("__unnamed__")
                .to_string();
            out.push((name, file_name, mtime));
        }
        Ok((dir.clone(), out))
    }

    /// Expands `$VAR` in a heredoc body (quotes are not special there).
    fn expand_heredoc(
        &self,
        sh: &Shared<'_>,
        st: &StageState,
        body: &str,
        line: usize,
    ) -> Result<String> {
        let env = st.args.expansion_env(&st.config);
        let mut lex = sh.lexer();
        lex.skip_process_quotes = true;
        lex.raw_escapes = true;
        lex.process_word(body, &env[..]).map_err(|e| Error::Expand {
            line,
            word: body.to_string(),
            message: e.kind.to_string(),
        })
    }

    /// Prepares a rootfs on the current image, mounts it, lets `f` write into
    /// it, unmounts. Returns the rootfs to commit when `f` changed something
    /// (`Ok(true)`), else discards it and returns `None`.
    pub(crate) fn write_into(
        &self,
        _sh: &Shared<'_>,
        parent: Option<&ImageId>,
        cid: &str,
        f: impl FnOnce(&Root) -> Result<bool>,
    ) -> Result<Option<Rootfs>> {
        let rootfs = self
            .backend
            .prepare(cid, parent)
            .map_err(|e| Error::backend("prepare rootfs", cid.to_string(), e))?;
        let root = match self.backend.mount(&rootfs) {
            Ok(p) => p,
            Err(e) => {
                let _ = self.backend.discard(&rootfs);
                return Err(Error::backend("mount rootfs", cid.to_string(), e));
            }
        };
        let changed = open_tree(&root).and_then(|root| f(&root));
        let unmounted = self.backend.unmount(&rootfs);
        let changed = match (changed, unmounted) {
            (Ok(c), Ok(())) => c,
            (Err(e), _) => {
                let _ = self.backend.discard(&rootfs);
                return Err(e);
            }
            (Ok(_), Err(e)) => {
                let _ = self.backend.discard(&rootfs);
                return Err(Error::backend("unmount rootfs", cid.to_string(), e));
            }
        };
        if changed {
            Ok(Some(rootfs))
        } else {
            self.backend
                .discard(&rootfs)
                .map_err(|e| Error::backend("discard rootfs", cid.to_string(), e))?;
            Ok(None)
        }
    }

    /// WORKDIR: resolved against the current one, created when missing.
    pub(crate) fn step_workdir(
        &self,
        sh: &Shared<'_>,
        st: &mut StageState,
        value: &str,
        line: usize,
    ) -> Result<()> {
        let v = self.expand(sh, st, value, line)?;
        let current = st
            .config
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".to_string());
        let dir = absolute_dest(&v, &current);
        let mut cfg = st.config.clone();
        cfg.working_dir = Some(dir.clone());
        let created_by =
            crate::history::nop(&st.config.shell_or_default(), &format!("WORKDIR {dir}"));
        let key = StepKey::plain(created_by.clone());
        if let Some(hit) = self.probe(sh, st, &key, &cfg)? {
            self.progress.event(Event::UsingCache);
            st.image = Some(hit);
            st.config = cfg;
            self.step_image(st);
            return Ok(());
        }
        let cid = st.container_id();
        let short = cid[..12].to_string();
        self.progress.event(Event::RunningIn {
            container: short.clone(),
        });
        let parent = st.image.clone();
        let rootfs = self.write_into(sh, parent.as_ref(), &cid, |root| {
            if root.stat(&dir, FinalLink::Follow).is_ok_and(|m| m.is_dir()) {
                return Ok(false);
            }
            make_dirs(root, &dir, Owner::default(), true).map(|_| true)
        })?;
        self.commit_step(sh, st, rootfs.as_ref(), cfg, created_by, key)?;
        self.progress.event(Event::Removing { container: short });
        self.step_image(st);
        Ok(())
    }
}
