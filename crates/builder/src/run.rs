//! RUN: the command line and its history form, extra mounts, the
//! intermediate container through the [`StepRunner`](crate::StepRunner), and
//! the commit of its filesystem change.

use kiln_dockerfile::instructions::{
    CacheSharing, MountType, NetworkMode as DfNetwork, RunInstruction, ShellOrExec,
};

use crate::backend::{OutputSink, Rootfs, RunStep, StepMount, Stream};
use crate::dockerignore::clean_rel;
use crate::engine::{Builder, FromRef, Shared, StageState, resolve_from};
use crate::error::{Error, Result};
use crate::key::{RunFlags, RunMount};
use crate::progress::{Event, Progress};
use crate::steps::{DEFAULT_PATH, StepKey};
use kiln_model::NetworkMode;

struct ProgressSink<'a>(&'a dyn Progress);

impl OutputSink for ProgressSink<'_> {
    fn write(&mut self, stream: Stream, data: &[u8]) {
        self.0.event(Event::Output {
            stream,
            data: data.to_vec(),
        });
    }
}

/// The argv of a RUN (shell form wrapped in the SHELL, heredocs folded in).
pub(crate) fn run_argv(shell: &[String], r: &RunInstruction) -> Vec<String> {
    match &r.cmd {
        ShellOrExec::Exec(v) => v.clone(),
        ShellOrExec::Shell(s) => {
            let mut argv = shell.to_vec();
            let trimmed = s.trim();
            let only_heredoc = r.heredocs.len() == 1
                && trimmed.starts_with("<<")
                && trimmed
                    .trim_start_matches("<<")
                    .trim_start_matches('-')
                    .trim_matches(['"', '\''])
                    == r.heredocs[0].name;
            if only_heredoc {
                // The body is the script; with a shebang, its interpreter reads
                // it from stdin (BuildKit runs it as a file: same effect).
                let body = r.heredocs[0].chomped();
                match body
                    .strip_prefix("#!")
                    .and_then(|rest| rest.split_once('\n'))
                {
                    Some((interp, _)) if !interp.trim().is_empty() => {
                        let mut delim = "KILN_HEREDOC".to_string();
                        while body.contains(&delim) {
                            delim.push('_');
                        }
                        let nl = if body.ends_with('\n') { "" } else { "\n" };
                        argv.push(format!("{} <<'{delim}'\n{body}{nl}{delim}", interp.trim()));
                    }
                    _ => argv.push(body),
                }
            } else if r.heredocs.is_empty() {
                argv.push(s.clone());
            } else {
                // Let the shell read the heredocs itself.
                let mut script = s.clone();
                for h in &r.heredocs {
                    script.push('\n');
                    let body = h.chomped();
                    script.push_str(&body);
                    if !body.is_empty() && !body.ends_with('\n') {
                        script.push('\n');
                    }
                    script.push_str(&h.name);
                }
                argv.push(script);
            }
            argv
        }
    }
}

/// Mounts prepared for one RUN, and what to release after it.
#[derive(Default)]
struct PreparedMounts {
    mounts: Vec<StepMount>,
    sources: Vec<Rootfs>,
    /// Secrets exposed as environment variables (`env=`), never recorded.
    env: Vec<String>,
}

/// A RUN being carried out: its command line, flags (the ones its cache key
/// is made of), and the intermediate container it runs in.
struct RunJob<'r> {
    argv: Vec<String>,
    flags: RunFlags,
    network: NetworkMode,
    line: usize,
    cid: String,
    rootfs: &'r Rootfs,
}

impl Builder<'_> {
    pub(crate) fn step_run(
        &self,
        sh: &Shared<'_>,
        st: &mut StageState,
        r: &RunInstruction,
    ) -> Result<()> {
        let line = r.source.start_line;
        if r.security == Some(kiln_dockerfile::instructions::SecurityMode::Insecure) {
            return Err(Error::instr(line, "RUN --security=insecure is not allowed"));
        }
        let argv = run_argv(&st.config.shell_or_default(), r);
        let args = st.args.run_args(&st.config);
        let mut saved = Vec::new();
        if !args.is_empty() {
            saved.push(format!("|{}", args.len()));
            saved.extend(args.iter().cloned());
        }
        saved.extend(argv.iter().cloned());
        let created_by = saved.join(" ");
        let flags = RunFlags::expand(r, &mut |w| self.expand(sh, st, w, line))?;
        let network = match flags.network {
            Some(DfNetwork::None) => NetworkMode::None,
            Some(DfNetwork::Host) => NetworkMode::Host,
            Some(DfNetwork::Default) | None => sh.opts.network,
        };
        let (content, files) = self.bind_inputs(sh, st, &flags, line)?;
        let key = flags.key(&created_by, &content);
        let shape = flags.key(&argv.join(" "), "");
        let key = StepKey { key, shape, files };
        let config = st.config.clone();
        if let Some(hit) = self.probe(sh, st, &key, &config)? {
            self.progress.event(Event::UsingCache);
            st.image = Some(hit);
            self.step_image(st);
            return Ok(());
        }
        let cid = st.container_id();
        let short = cid[..12].to_string();
        self.progress.event(Event::RunningIn {
            container: short.clone(),
        });
        let rootfs = self
            .backend
            .prepare(&cid, st.image.as_ref())
            .map_err(|e| Error::backend("prepare rootfs", cid.clone(), e))?;
        let job = RunJob {
            argv,
            flags,
            network,
            line,
            cid,
            rootfs: &rootfs,
        };
        let code = match self.run_in(sh, st, &job) {
            Ok(code) => code,
            Err(e) => {
                let _ = self.backend.discard(&rootfs);
                return Err(e);
            }
        };
        if code != 0 {
            // 127 is also what a runner gives when the executable is not
            // there at all; Docker fails the container's start then.
            let missing = if code == 127 {
                self.missing_executable(st, &job)
            } else {
                None
            };
            self.backend
                .discard(&rootfs)
                .map_err(|e| Error::backend("discard rootfs", job.cid.clone(), e))?;
            return Err(match missing {
                Some(reason) => Error::StepNotStarted {
                    command: job.argv.join(" "),
                    reason,
                },
                None => Error::StepFailed {
                    command: job.argv.join(" "),
                    code,
                },
            });
        }
        let cfg = st.config.clone();
        self.commit_step(sh, st, Some(&rootfs), cfg, created_by, key)?;
        self.progress.event(Event::Removing { container: short });
        self.step_image(st);
        Ok(())
    }

    fn run_in(&self, sh: &Shared<'_>, st: &mut StageState, job: &RunJob<'_>) -> Result<i32> {
        let prepared = match self.prepare_mounts(sh, st, job) {
            Ok(p) => p,
            Err((e, sources)) => {
                self.release(&sources);
                return Err(e);
            }
        };
        let mut env = st.args.run_env(&st.config);
        env.extend(prepared.env.iter().cloned());
        let cwd = st
            .config
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".to_string());
        let user = st.config.user.clone().unwrap_or_default();
        let step = RunStep {
            container_id: &job.cid,
            rootfs: job.rootfs,
            args: &job.argv,
            env: &env,
            cwd: &cwd,
            user: &user,
            network: job.network,
            mounts: &prepared.mounts,
            platform: &st.platform,
        };
        let mut sink = ProgressSink(self.progress);
        let result = self
            .runner
            .run(&step, &mut sink)
            .map_err(|e| Error::backend("run step in", job.cid.clone(), e));
        self.release(&prepared.sources);
        result
    }

    /// What the bind mounts of a RUN read, for its cache key: the content
    /// checksum of each context source (through the context's file index, so
    /// an unchanged directory costs stats only) and the image of each stage
    /// source. Returns the key suffix and, for explaining misses, every
    /// context file read (prefixed with the mount's target).
    fn bind_inputs(
        &self,
        sh: &Shared<'_>,
        st: &StageState,
        flags: &RunFlags,
        line: usize,
    ) -> Result<(String, Vec<(String, String)>)> {
        let mut key = String::new();
        let mut files = Vec::new();
        for m in flags.mounts.iter().filter(|m| m.kind == MountType::Bind) {
            let target = m.target.clone().unwrap_or_default();
            match &m.from {
                None => {
                    let source = m.source.clone().unwrap_or_else(|| ".".to_string());
                    let plan = crate::context::plan_copy(
                        &sh.ctx.tree(),
                        &[source],
                        "/",
                        "/",
                        &crate::context::PlanOptions::default(),
                        line,
                    )?;
                    key.push_str(&format!("\n--mount-content={target}:{}", plan.checksum));
                    let prefix = target.trim_end_matches('/');
                    files.extend(
                        plan.files
                            .into_iter()
                            .map(|(p, d)| (format!("{prefix}/{p}"), d)),
                    );
                }
                Some(from) => {
                    if let FromRef::Stage(j) = resolve_from(sh.df, from, st.index) {
                        let image = sh.stage_result(j, line)?.image;
                        key.push_str(&format!(
                            "\n--mount-image={target}:{}",
                            image.map_or("scratch".to_string(), |i| i.0)
                        ));
                    }
                }
            }
        }
        Ok((key, files))
    }

    /// Why the step's executable could not be started, in runc's words,
    /// when it is not in the image the step started from (found by PATH
    /// when it names no directory, links resolved inside the image);
    /// `None` when it is there (or the image cannot be looked at: the exit
    /// status stands). The image, not the step's rootfs: that one may not
    /// be mountable again once its container used it (volatile overlays),
    /// and the command changed nothing before its executable was found.
    fn missing_executable(&self, st: &StageState, job: &RunJob<'_>) -> Option<String> {
        let exe = job.argv.first().filter(|a| !a.is_empty())?;
        let mut sources = Vec::new();
        let key = format!("{}-exe", job.cid);
        let mounted = self.mount_image(st.image.as_ref(), &key, &mut sources);
        let found = mounted
            .ok()
            .and_then(|path| kiln_fs::Root::open(&path).ok())
            .map(|root| {
                let is_file = |p: &str| {
                    root.stat(p, kiln_fs::FinalLink::Follow)
                        .is_ok_and(|m| !m.is_dir())
                };
                if exe.contains('/') {
                    let cwd = st.config.working_dir.clone().unwrap_or_default();
                    let full = if exe.starts_with('/') {
                        exe.clone()
                    } else {
                        format!("{cwd}/{exe}")
                    };
                    (is_file(&full), false)
                } else {
                    let dirs = st.config.env_get("PATH").unwrap_or(DEFAULT_PATH).to_owned();
                    let hit = dirs
                        .split(':')
                        .filter(|d| !d.is_empty())
                        .any(|d| is_file(&format!("{d}/{exe}")));
                    (hit, true)
                }
            });
        self.release(&sources);
        let quoted = crate::history::go_quote(exe);
        match found? {
            (true, _) => None,
            (false, true) => Some(format!(
                "exec: {quoted}: executable file not found in $PATH"
            )),
            (false, false) => Some(format!(
                "exec: {quoted}: stat {exe}: no such file or directory"
            )),
        }
    }

    pub(crate) fn release(&self, sources: &[Rootfs]) {
        for s in sources {
            // Best effort: the step's own result matters more.
            let _ = self.backend.unmount(s);
            let _ = self.backend.discard(s);
        }
    }

    /// The step mounts of a RUN, in order; on an error, the stage trees
    /// mounted so far, for the caller to release.
    fn prepare_mounts(
        &self,
        sh: &Shared<'_>,
        st: &StageState,
        job: &RunJob<'_>,
    ) -> std::result::Result<PreparedMounts, (Error, Vec<Rootfs>)> {
        let mut out = PreparedMounts::default();
        // As BuildKit: a relative target (or none, for bind, cache and
        // tmpfs mounts) is relative to the working directory.
        let workdir = st.config.working_dir.clone().unwrap_or_default();
        for (n, m) in job.flags.mounts.iter().enumerate() {
            let at = MountAt { workdir: &workdir };
            let res = match m.kind {
                MountType::Bind => self.bind_mount(sh, st, job, (n, m), &mut out),
                MountType::Cache => {
                    out.mounts.push(cache_mount(m, at));
                    Ok(())
                }
                MountType::Tmpfs => {
                    out.mounts.push(StepMount::Tmpfs {
                        target: at.abs(m.target.as_deref().unwrap_or_default()),
                        size: m.size.as_deref().and_then(parse_size),
                    });
                    Ok(())
                }
                MountType::Secret => secret_mount(sh, job.line, m, at, &mut out),
                MountType::Ssh => ssh_mount(sh, job.line, m, at, &mut out),
            };
            if let Err(e) = res {
                return Err((e, out.sources));
            }
        }
        Ok(out)
    }

    /// `type=bind`: a path of the context, or of a stage's or image's
    /// rootfs (`from=`), mounted there by the runner.
    fn bind_mount(
        &self,
        sh: &Shared<'_>,
        st: &StageState,
        job: &RunJob<'_>,
        (n, m): (usize, &RunMount),
        out: &mut PreparedMounts,
    ) -> Result<()> {
        let workdir = st.config.working_dir.clone().unwrap_or_default();
        let at = MountAt { workdir: &workdir };
        let source = m.source.clone().unwrap_or_default();
        // The runner resolves the source inside its root again, by file
        // descriptor, and mounts what it opened; the path found here only
        // names what the context's ignore rules hide under it.
        let (root, source, hidden) = match &m.from {
            None => {
                let rel = crate::context::clean_source(&source, job.line)?;
                let (rel, hidden) = ignored_under_source(sh.ctx, &rel, &source, job.line)?;
                (sh.ctx.root().to_path_buf(), rel, hidden)
            }
            Some(from) => {
                let key = format!("{}-m{n}", job.cid);
                let root = self.mount_from(sh, st, from, &key, &mut out.sources)?;
                (root, clean_rel(&source), Vec::new())
            }
        };
        out.mounts.push(StepMount::Bind {
            root,
            source,
            target: at.abs(m.target.as_deref().unwrap_or_default()),
            readonly: m.readonly,
            hidden,
        });
        Ok(())
    }

    /// Prepares and mounts the rootfs of a stage or image named by `from`,
    /// adding it to `sources` for release; returns its host path.
    pub(crate) fn mount_from(
        &self,
        sh: &Shared<'_>,
        st: &StageState,
        from: &str,
        key: &str,
        sources: &mut Vec<Rootfs>,
    ) -> Result<std::path::PathBuf> {
        let image = match resolve_from(sh.df, from, st.index) {
            FromRef::Stage(j) => {
                sh.stage_result(j, sh.df.stages[st.index].source.start_line)?
                    .image
            }
            FromRef::Image(reference) => Some(
                self.backend
                    .resolve(&reference, &st.platform, sh.opts.pull)
                    .map_err(|e| Error::backend("resolve image", reference.clone(), e))?
                    .id,
            ),
        };
        self.mount_image(image.as_ref(), key, sources)
    }

    /// Prepares and mounts a rootfs of `image` under `key`, adding it to
    /// `sources` for release; returns its host path.
    pub(crate) fn mount_image(
        &self,
        image: Option<&crate::backend::ImageId>,
        key: &str,
        sources: &mut Vec<Rootfs>,
    ) -> Result<std::path::PathBuf> {
        let rootfs = self
            .backend
            .prepare(key, image)
            .map_err(|e| Error::backend("prepare rootfs", key.to_string(), e))?;
        match self.backend.mount(&rootfs) {
            Ok(p) => {
                sources.push(rootfs);
                Ok(p)
            }
            Err(e) => {
                let _ = self.backend.discard(&rootfs);
                Err(Error::backend("mount rootfs", key.to_string(), e))
            }
        }
    }
}

/// A bind mount's context source `rel` (cleaned) resolved inside the
/// context (its links followed as if the context were `/`), and the
/// paths under it that `.dockerignore` excludes, relative to it: BuildKit
/// leaves them out of the context for every consumer, bind mounts
/// included. A source the rules exclude whole is missing, as for COPY.
fn ignored_under_source(
    ctx: &crate::ContextDir,
    rel: &str,
    shown: &str,
    line: usize,
) -> Result<(String, Vec<String>)> {
    use kiln_fs::FinalLink;
    let ignore = ctx.ignore();
    if ignore.is_empty() {
        return Ok((rel.to_owned(), Vec::new()));
    }
    let root = kiln_fs::Root::open(ctx.root()).map_err(|e| Error::io("open", ctx.root(), e))?;
    // Missing or unreadable: the runner says so, naming the source.
    let Ok(resolved) = root.canonical(rel, FinalLink::Follow) else {
        return Ok((rel.to_owned(), Vec::new()));
    };
    let Ok(meta) = root.stat(&resolved, FinalLink::NoFollow) else {
        return Ok((rel.to_owned(), Vec::new()));
    };
    let base = resolved.to_string_lossy().into_owned();
    let shown_rel = if base.is_empty() {
        ".".to_owned()
    } else {
        base.clone()
    };
    let missing = || Error::SourceNotFound {
        line,
        source_path: shown.to_owned(),
    };
    let excluded = !base.is_empty() && ignore.is_excluded(&base);
    if !meta.is_dir() {
        return if excluded {
            Err(missing())
        } else {
            Ok((shown_rel, Vec::new()))
        };
    }
    // Pre-order, links never followed: an excluded entry is hidden whole,
    // unless it is a directory an exception may reach into; then its
    // excluded entries are hidden one by one, and the directory itself
    // only if nothing under it is kept.
    let mut hidden: Vec<String> = Vec::new();
    let mut kept: Vec<String> = Vec::new();
    let mut descended: Vec<String> = Vec::new();
    let exceptions = ignore.has_exceptions();
    root.walk(&resolved, &mut |path, meta| {
        let rel = path.to_string_lossy().into_owned();
        if !ignore.is_excluded(&rel) {
            kept.push(rel);
            return Ok(meta.is_dir());
        }
        if meta.is_dir() && exceptions {
            descended.push(rel);
            return Ok(true);
        }
        hidden.push(rel);
        Ok(false)
    })
    .map_err(|e| Error::io("read directory", root.display(&resolved), e))?;
    let under = |p: &str, dir: &str| {
        p.len() > dir.len() && p.starts_with(dir) && p.as_bytes()[dir.len()] == b'/'
    };
    // Outermost first, so that a hidden directory takes its subtree along.
    descended.sort_by_key(|d| d.matches('/').count());
    for d in descended {
        if kept.iter().any(|k| under(k, &d)) || hidden.iter().any(|h| h == &d || under(&d, h)) {
            continue;
        }
        hidden.retain(|h| !under(h, &d));
        hidden.push(d);
    }
    if excluded && kept.is_empty() {
        return Err(missing());
    }
    let strip = |h: String| -> String {
        if base.is_empty() {
            h
        } else {
            h.strip_prefix(&format!("{base}/"))
                .map(str::to_owned)
                .unwrap_or(h)
        }
    };
    let mut hidden: Vec<String> = hidden.into_iter().map(strip).collect();
    hidden.sort();
    Ok((shown_rel, hidden))
}

/// Where mount targets land: a relative one (or none) under the working
/// directory, as BuildKit places them.
#[derive(Clone, Copy)]
struct MountAt<'a> {
    workdir: &'a str,
}

impl MountAt<'_> {
    /// `target` made absolute and cleaned.
    fn abs(&self, target: &str) -> String {
        let c = if target.starts_with('/') {
            clean_rel(target)
        } else {
            clean_rel(&format!("{}/{target}", self.workdir))
        };
        if c == "." {
            "/".into()
        } else {
            format!("/{c}")
        }
    }
}

/// `type=cache`: a persistent directory per `id` (by default the target as
/// written, BuildKit's default).
fn cache_mount(m: &RunMount, at: MountAt<'_>) -> StepMount {
    let target = m.target.clone().unwrap_or_default();
    let id = m.id.clone().unwrap_or_else(|| {
        if target.is_empty() {
            ".".to_owned()
        } else {
            target.clone()
        }
    });
    StepMount::Cache {
        id,
        target: at.abs(&target),
        readonly: m.readonly,
        sharing: match m.sharing {
            Some(CacheSharing::Private) => "private",
            Some(CacheSharing::Locked) => "locked",
            _ => "shared",
        }
        .to_string(),
        uid: m.uid.unwrap_or(0),
        gid: m.gid.unwrap_or(0),
        mode: m.mode.unwrap_or(0o755),
    }
}

/// `type=secret`: the `--secret` file of that id, mounted read-only (by
/// default at `/run/secrets/<id>`) and/or exposed as `env=`; skipped when
/// not given unless `required`.
fn secret_mount(
    sh: &Shared<'_>,
    line: usize,
    m: &RunMount,
    at: MountAt<'_>,
    out: &mut PreparedMounts,
) -> Result<()> {
    let id =
        m.id.clone()
            .or_else(|| {
                m.target
                    .as_deref()
                    .and_then(|t| t.rsplit('/').next())
                    .map(String::from)
            })
            .ok_or_else(|| Error::instr(line, "secret mount requires an id or a target"))?;
    let Some(path) = sh.opts.secrets.get(&id) else {
        return if m.required {
            Err(Error::MissingSecret(id))
        } else {
            Ok(())
        };
    };
    if let Some(var) = &m.env {
        let value = read_secret(path)?;
        out.env
            .push(format!("{var}={}", value.trim_end_matches('\n')));
    }
    // With `env=` and no target, the secret is not mounted.
    if m.env.is_none() || m.target.is_some() {
        let target = m
            .target
            .clone()
            .unwrap_or_else(|| format!("/run/secrets/{id}"));
        out.mounts.push(StepMount::Secret {
            source: path.clone(),
            target: at.abs(&target),
            mode: m.mode.unwrap_or(0o400),
            uid: m.uid.unwrap_or(0),
            gid: m.gid.unwrap_or(0),
        });
    }
    Ok(())
}

/// Reads a secret file the user named with `--secret` (for `env=`).
fn read_secret(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io("read secret", path, e))
}

/// `type=ssh`: the `--ssh` agent socket of that id (`default`), bound at
/// `/run/buildkit/ssh_agent.<n>` or the target; the first one is
/// `SSH_AUTH_SOCK`. Skipped when not given unless `required`.
fn ssh_mount(
    sh: &Shared<'_>,
    line: usize,
    m: &RunMount,
    at: MountAt<'_>,
    out: &mut PreparedMounts,
) -> Result<()> {
    let id = m.id.clone().unwrap_or_else(|| "default".to_string());
    let Some(socket) = sh.opts.ssh.get(&id) else {
        return if m.required {
            Err(Error::instr(
                line,
                format!("no SSH agent {id:?}: pass kiln build --ssh {id}[=SOCKET]"),
            ))
        } else {
            Ok(())
        };
    };
    let n = out
        .mounts
        .iter()
        .filter(|m| matches!(m, StepMount::Ssh { .. }))
        .count();
    let target = at.abs(
        &m.target
            .clone()
            .unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{n}")),
    );
    // The first ssh mount is the agent the step talks to.
    if n == 0 {
        out.env.push(format!("SSH_AUTH_SOCK={target}"));
    }
    out.mounts.push(StepMount::Ssh {
        source: socket.clone(),
        target,
    });
    Ok(())
}

/// `64m`, `1g`, `1024` → bytes.
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_lowercase();
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        'b' => (&s[..s.len() - 1], 1),
        _ => (s.as_str(), 1),
    };
    num.parse::<u64>().ok().map(|n| n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_sources_hide_what_dockerignore_excludes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        for (p, c) in [
            (
                ".dockerignore",
                "secrets.env\nsub/deep.env\nlogs\n!logs/keep.log\ngone\n!gone/nothing\n",
            ),
            ("secrets.env", "s"),
            ("visible.txt", "v"),
            ("sub/deep.env", "s"),
            ("sub/shown.txt", "v"),
            ("logs/old.log", "s"),
            ("logs/keep.log", "v"),
            ("gone/x", "s"),
        ] {
            let full = root.join(p);
            std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
            std::fs::write(full, c).expect("write");
        }
        std::os::unix::fs::symlink("/sub", root.join("link")).expect("symlink");
        std::os::unix::fs::symlink("../../secrets.env", root.join("to-ignored")).expect("symlink");
        let ctx = crate::ContextDir::open(root, None, None).expect("context");
        let (src, hidden) = ignored_under_source(&ctx, ".", ".", 1).expect("whole context");
        assert_eq!(src, ".");
        assert_eq!(
            hidden,
            ["gone", "logs/old.log", "secrets.env", "sub/deep.env"]
        );
        // Through a link (resolved inside the context), paths are the
        // target's, relative to it.
        let (src, hidden) = ignored_under_source(&ctx, "link", "link", 1).expect("link");
        assert_eq!(
            (src.as_str(), hidden.as_slice()),
            ("sub", ["deep.env".to_owned()].as_slice())
        );
        let (src, hidden) = ignored_under_source(&ctx, "logs", "logs", 1).expect("kept inside");
        assert_eq!(
            (src.as_str(), hidden.as_slice()),
            ("logs", ["old.log".to_owned()].as_slice())
        );
        // What the rules exclude is missing, named directly or through a link.
        for excluded in ["secrets.env", "gone", "to-ignored"] {
            let err = ignored_under_source(&ctx, excluded, excluded, 3).expect_err(excluded);
            assert!(
                matches!(err, Error::SourceNotFound { line: 3, .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64m"), Some(64 << 20));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("x"), None);
    }
}
