//! COPY, ADD and WORKDIR: the steps that change the filesystem without
//! running a command. The builder writes into the rootfs that the backend
//! mounts for it.

use kiln_dockerfile::instructions::{CopyInstruction, CopySource};
use kiln_fs::{FinalLink, Root};

use crate::backend::{CacheRecord, CommitRequest, ImageId, Rootfs};
use kiln_model::{ContainerConfig, History};
use crate::context::{CopyPlan, PlanOptions, Tree, absolute_dest, plan_copy, plan_inline};
use crate::engine::{Builder, Shared, StageState};
use crate::error::{Error, Result};
use crate::history::nop_copy;
use crate::pattern::Pattern;
use crate::perms::{Chmod, Owner, resolve_owner};
use crate::progress::Event;
use crate::steps::StepKey;
use crate::write::{ApplyOptions, apply_copy, make_dirs};

/// A downloaded URL: (name, file in the download directory, mtime).
type Download = (String, String, Option<i64>);

/// Opens a tree kiln mounted or made (a stage or image rootfs, a git
/// checkout) as an untrusted root.
fn open_tree(path: &std::path::Path) -> Result<Root> {
    Root::open(path).map_err(|e| Error::io("open", path, e))
}

impl Builder<'_> {
    pub(crate) fn step_copy(
        &self,
        sh: &Shared<'_>,
        st: &mut StageState,
        c: &CopyInstruction,
        name: &str,
    ) -> Result<()> {
        let line = c.source.start_line;
        let mut paths = Vec::new();
        let mut inline = Vec::new();
        let mut remote = Vec::new();
        let mut git = Vec::new();
        for s in &c.sources {
            match s {
                CopySource::Path(p) => {
                    let v = self.expand(sh, st, p, line)?;
                    if name == "ADD"
                        && let Some(g) = crate::backend::GitSource::parse(&v)
                    {
                        git.push(g);
                        continue;
                    }
                    if name == "ADD" && (v.starts_with("http://") || v.starts_with("https://")) {
                        remote.push(v);
                        continue;
                    }
                    paths.push(v);
                }
                CopySource::Heredoc(h) => {
                    let body = if h.expand {
                        self.expand_heredoc(sh, st, &h.chomped(), line)?
                    } else {
                        h.chomped()
                    };
                    inline.push((h.name.clone(), body.into_bytes()));
                }
            }
        }
        let dest = self.expand(sh, st, &c.dest, line)?;
        let workdir = st
            .config
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".to_string());
        let chown = match &c.chown {
            Some(s) => Some(self.expand(sh, st, s, line)?),
            None => None,
        };
        let chmod = match &c.chmod {
            Some(s) => {
                let v = self.expand(sh, st, s, line)?;
                Some(Chmod::parse(&v).map_err(|e| Error::instr(line, e.to_string()))?)
            }
            None => None,
        };
        let mut excludes = Vec::new();
        for e in &c.exclude {
            let v = self.expand(sh, st, e, line)?;
            excludes.push(
                Pattern::new(&crate::dockerignore::clean_rel(&v), true)
                    .map_err(|e| Error::instr(line, e.to_string()))?,
            );
        }
        let popts = PlanOptions {
            parents: c.parents,
            extract_archives: name == "ADD" && c.unpack != Some(false),
            excludes,
        };
        let cid = st.container_id();
        let mut sources: Vec<Rootfs> = Vec::new();
        let mut downloads: Vec<std::path::PathBuf> = Vec::new();
        let result = (|| -> Result<()> {
            let plan = if !git.is_empty() {
                if git.len() > 1 || !paths.is_empty() || !inline.is_empty() || !remote.is_empty() {
                    return Err(Error::instr(
                        line,
                        "ADD of a git repository takes no other source",
                    ));
                }
                let dir = self.clone_git(sh, c, &git[0], &cid, line, &mut downloads)?;
                let source = git[0].subdir.clone().unwrap_or_else(|| ".".to_string());
                let opts = PlanOptions {
                    excludes: popts.excludes.clone(),
                    ..PlanOptions::default()
                };
                // The repository's content goes into the destination directory.
                let dest_dir = if dest.ends_with('/') {
                    dest.clone()
                } else {
                    format!("{dest}/")
                };
                let checkout = open_tree(&dir)?;
                plan_copy(
                    &Tree::plain(&checkout),
                    &[source],
                    &dest_dir,
                    &workdir,
                    &opts,
                    line,
                )?
            } else if !remote.is_empty() {
                if !paths.is_empty() || !inline.is_empty() {
                    return Err(Error::instr(line, "ADD cannot mix URLs with other sources"));
                }
                let (dir, files) = self.download(sh, c, &remote, &cid, line, &mut downloads)?;
                crate::context::plan_downloads(&dir, &files, &dest, &workdir)?
            } else if !inline.is_empty() {
                plan_inline(&inline, &dest, &workdir)
            } else {
                match &c.from {
                    None => plan_copy(&sh.ctx.tree(), &paths, &dest, &workdir, &popts, line)?,
                    Some(f) => {
                        let from = self.expand(sh, st, f, line)?;
                        let root = open_tree(&self.mount_from(
                            sh,
                            st,
                            &from,
                            &format!("{cid}-src"),
                            &mut sources,
                        )?)?;
                        plan_copy(&Tree::plain(&root), &paths, &dest, &workdir, &popts, line)?
                    }
                }
            };
            let shell = st.config.shell_or_default();
            // Docker records the destination as written (expanded), not resolved.
            let created_by = nop_copy(&shell, name, &plan.checksum, &dest);
            let mut flags = String::new();
            for (k, v) in [("from", &c.from), ("chown", &chown), ("chmod", &c.chmod)] {
                if let Some(v) = v {
                    flags.push_str(&format!(" --{k}={v}"));
                }
            }
            for e in &c.exclude {
                flags.push_str(&format!(" --exclude={e}"));
            }
            if c.parents {
                flags.push_str(" --parents");
            }
            let key = StepKey {
                key: format!("{created_by}{flags}"),
                shape: format!("{name} in {}{flags}", plan.dest),
                files: plan.files.clone(),
            };
            if c.link {
                return self.link_copy(sh, st, &plan, &chown, &chmod, &cid, created_by, key);
            }
            if let Some(hit) = self.probe(sh, st, &key)? {
                self.progress.event(Event::UsingCache);
                st.image = Some(hit);
                self.step_image(st);
                return Ok(());
            }
            // Docker's legacy builder copies into a fresh layer without a
            // container: no "Running in" / "Removing intermediate container".
            let parent = st.image.clone();
            let rootfs = self.write_into(sh, parent.as_ref(), &cid, |root| {
                let owner = match &chown {
                    Some(spec) => resolve_owner(spec, Some(root))?,
                    None => Owner::default(),
                };
                let opts = ApplyOptions {
                    owner,
                    chown_given: chown.is_some(),
                    chmod: chmod.clone(),
                    ignore_chown_errors: sh.opts.ignore_chown_errors,
                };
                apply_copy(&plan, root, &opts)?;
                Ok(true)
            })?;
            let cfg = st.config.clone();
            self.commit_step(sh, st, rootfs.as_ref(), cfg, created_by, key)?;
            self.step_image(st);
            Ok(())
        })();
        for s in &sources {
            let _ = self.backend.unmount(s);
            let _ = self.backend.discard(s);
        }
        for d in &downloads {
            if d.is_dir() {
                let _ = std::fs::remove_dir_all(d);
            } else {
                let _ = std::fs::remove_file(d);
            }
        }
        result
    }

    /// Clones an `ADD` git source into the download directory; returns the
    /// checkout.
    fn clone_git(
        &self,
        sh: &Shared<'_>,
        c: &CopyInstruction,
        source: &crate::backend::GitSource,
        cid: &str,
        line: usize,
        downloads: &mut Vec<std::path::PathBuf>,
    ) -> Result<std::path::PathBuf> {
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
        let dest = dir.join(format!("{cid}-git"));
        downloads.push(dest.clone());
        fetcher
            .fetch_git(
                &source.repo,
                source.reference.as_deref(),
                &dest,
                c.keep_git_dir,
            )
            .map_err(|e| Error::backend("clone", source.repo.clone(), e))?;
        Ok(dest)
    }

    /// `COPY --link`: the files go into an empty rootfs whose diff becomes an
    /// image of one layer on scratch, cached by the instruction and content
    /// alone (so a new base image does not redo it); that layer is then
    /// stacked on the current image without diffing anything.
    #[allow(clippy::too_many_arguments)]
    fn link_copy(
        &self,
        sh: &Shared<'_>,
        st: &mut StageState,
        plan: &CopyPlan,
        chown: &Option<String>,
        chmod: &Option<Chmod>,
        cid: &str,
        created_by: String,
        key: StepKey,
    ) -> Result<()> {
        let link_key = format!("#(link) {}", key.key);
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
                let owner = match chown {
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
                let opts = ApplyOptions {
                    owner,
                    chown_given: chown.is_some(),
                    chmod: chmod.clone(),
                    ignore_chown_errors: sh.opts.ignore_chown_errors,
                };
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
        // Stacking is its own cached step on the current image.
        let stack_key = StepKey {
            key: format!("{}\n--link={}", key.key, layer.0),
            shape: key.shape,
            files: key.files,
        };
        if let Some(hit) = self.probe(sh, st, &stack_key)? {
            st.image = Some(hit);
        } else {
            let cfg = st.config.clone();
            self.commit_layer_step(sh, st, None, Some(&layer), cfg, created_by, stack_key)?;
        }
        self.step_image(st);
        Ok(())
    }

    /// Downloads ADD's URLs, verifying `--checksum`; returns the download
    /// directory and (name, file in it, mtime) per URL.
    fn download(
        &self,
        sh: &Shared<'_>,
        c: &CopyInstruction,
        urls: &[String],
        cid: &str,
        line: usize,
        downloads: &mut Vec<std::path::PathBuf>,
    ) -> Result<(std::path::PathBuf, Vec<Download>)> {
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
            let file_name = format!("{cid}-{i}");
            let file = dir.join(&file_name);
            downloads.push(file.clone());
            let mtime = fetcher
                .fetch(url, &file)
                .map_err(|e| Error::backend("download", url.clone(), e))?;
            if let Some(want) = &c.checksum {
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
        if let Some(hit) = self.probe(sh, st, &key)? {
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
