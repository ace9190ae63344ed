//! Step cache keys, derived from the typed instructions.
//!
//! A step is a cache hit when a record on the same parent image has the
//! same key, so everything that changes a step's result must be in its key:
//! a flag left out gives stale hits, silently. The flags of COPY/ADD and RUN
//! therefore reach the step only through [`CopyFlags`] and [`RunFlags`],
//! which are made by destructuring the typed instruction exhaustively: a new
//! field of `CopyInstruction`, `RunInstruction` or `Mount` does not compile
//! until it is either carried here (and so written into the key by
//! [`CopyFlags::key`] / [`RunFlags::key`], which destructure their own
//! fields exhaustively too) or said to be covered by another input. The
//! steps act on the values held here, the same ones the key was made of.
//!
//! What a key may contain (issue #13, keys shared between machines): the
//! instruction with its words expanded, the build args that apply (in the
//! history text), content digests of what COPY/ADD and bind mounts read, and
//! the platform of a step on `scratch`; the parent image is the record's
//! other half. Never inode numbers, mtimes, host paths, store roots or
//! intermediate container IDs.
//!
//! The text of a key is the one kiln used before the keys were derived
//! (`<created_by> --chown=1:1 --parents`, `<created_by>\n--mount=<as
//! written>\n--network=Host`), so the records of earlier builds stay
//! valid; flags that were missing before are only written when given.

use kiln_dockerfile::instructions::{
    CacheSharing, CopyInstruction, Mount, MountType, NetworkMode as DfNetwork, RunInstruction,
};

use crate::error::Result;
use kiln_model::Platform;

/// Expands one word as written in the Dockerfile.
pub(crate) type Expand<'a> = dyn FnMut(&str) -> Result<String> + 'a;

fn expand_opt(expand: &mut Expand<'_>, word: &Option<String>) -> Result<Option<String>> {
    word.as_deref().map(&mut *expand).transpose()
}

/// The flags of a COPY or ADD, their words expanded: what the step acts on
/// besides its sources (which are in the key by their content digest,
/// through the history text) and its destination (in the history text).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CopyFlags {
    /// `--from`: a stage, a stage index or an image.
    pub(crate) from: Option<String>,
    /// `--chown`.
    pub(crate) chown: Option<String>,
    /// `--chmod`.
    pub(crate) chmod: Option<String>,
    /// `--link`.
    pub(crate) link: bool,
    /// `--exclude` patterns.
    pub(crate) exclude: Vec<String>,
    /// `--parents`.
    pub(crate) parents: bool,
    /// `--checksum` (ADD of a URL).
    pub(crate) checksum: Option<String>,
    /// `--keep-git-dir` (ADD of a git repository).
    pub(crate) keep_git_dir: bool,
    /// `--unpack` (ADD of a local archive), `None` when not given.
    pub(crate) unpack: Option<bool>,
}

impl CopyFlags {
    /// The flags of `c`, each word expanded with `expand`.
    pub(crate) fn expand(c: &CopyInstruction, expand: &mut Expand<'_>) -> Result<CopyFlags> {
        let CopyInstruction {
            // Read by the step; in the key by their content digest.
            sources: _,
            // In the key through the history text (`... in <dest>`).
            dest: _,
            from,
            chown,
            chmod,
            link,
            exclude,
            parents,
            checksum,
            keep_git_dir,
            unpack,
            // Syntax only: the sources and destination are the same words.
            json: _,
            // The bodies are sources (`CopySource::Heredoc`): their content
            // is in the key.
            heredocs: _,
            // Where the instruction is written does not change its result.
            source: _,
        } = c;
        Ok(CopyFlags {
            from: expand_opt(expand, from)?,
            chown: expand_opt(expand, chown)?,
            chmod: expand_opt(expand, chmod)?,
            link: *link,
            exclude: exclude
                .iter()
                .map(|e| expand(e))
                .collect::<Result<Vec<_>>>()?,
            parents: *parents,
            checksum: expand_opt(expand, checksum)?,
            keep_git_dir: *keep_git_dir,
            unpack: *unpack,
        })
    }

    /// The step's cache key: the history text (instruction, content digest
    /// of the sources, destination) followed by every flag given.
    pub(crate) fn key(&self, created_by: &str) -> String {
        let CopyFlags {
            from,
            chown,
            chmod,
            link,
            exclude,
            parents,
            checksum,
            keep_git_dir,
            unpack,
        } = self;
        let mut key = created_by.to_owned();
        for (name, value) in [("from", from), ("chown", chown), ("chmod", chmod)] {
            if let Some(v) = value {
                key.push_str(&format!(" --{name}={v}"));
            }
        }
        for e in exclude {
            key.push_str(&format!(" --exclude={e}"));
        }
        if *parents {
            key.push_str(" --parents");
        }
        if *link {
            key.push_str(" --link");
        }
        if let Some(c) = checksum {
            key.push_str(&format!(" --checksum={c}"));
        }
        if *keep_git_dir {
            key.push_str(" --keep-git-dir");
        }
        if let Some(u) = unpack {
            key.push_str(&format!(" --unpack={u}"));
        }
        key
    }
}

/// One `RUN --mount`, with the words the builder expands expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunMount {
    pub(crate) kind: MountType,
    pub(crate) target: Option<String>,
    pub(crate) source: Option<String>,
    pub(crate) from: Option<String>,
    pub(crate) readonly: bool,
    pub(crate) id: Option<String>,
    pub(crate) sharing: Option<CacheSharing>,
    pub(crate) required: bool,
    pub(crate) mode: Option<u32>,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    pub(crate) size: Option<String>,
    pub(crate) env: Option<String>,
    /// The flag value as written: every option above, before expansion.
    pub(crate) raw: String,
    /// `(option, value)` of each word that expansion changed.
    pub(crate) expanded: Vec<(&'static str, String)>,
}

impl RunMount {
    /// `m` with `target`, `source`, `from` and `id` expanded.
    pub(crate) fn expand(m: &Mount, expand: &mut Expand<'_>) -> Result<RunMount> {
        let Mount {
            kind,
            target,
            source,
            from,
            readonly,
            id,
            sharing,
            required,
            mode,
            uid,
            gid,
            size,
            env,
            raw,
        } = m;
        let mut expanded = Vec::new();
        let mut word = |name: &'static str, w: &Option<String>| -> Result<Option<String>> {
            let v = expand_opt(expand, w)?;
            if v != *w {
                expanded.push((name, v.clone().unwrap_or_default()));
            }
            Ok(v)
        };
        let target = word("target", target)?;
        let source = word("source", source)?;
        let from = word("from", from)?;
        let id = word("id", id)?;
        Ok(RunMount {
            kind: *kind,
            target,
            source,
            from,
            readonly: *readonly,
            id,
            sharing: *sharing,
            required: *required,
            mode: *mode,
            uid: *uid,
            gid: *gid,
            size: size.clone(),
            env: env.clone(),
            raw: raw.clone(),
            expanded,
        })
    }

    /// This mount's part of the step key: the flag as written, then what
    /// expansion made of its words.
    fn key(&self) -> String {
        let RunMount {
            // Every option is in `raw` as written, and in `expanded` when
            // expansion changed it.
            kind: _,
            target: _,
            source: _,
            from: _,
            readonly: _,
            id: _,
            sharing: _,
            required: _,
            mode: _,
            uid: _,
            gid: _,
            size: _,
            env: _,
            raw,
            expanded,
        } = self;
        let mut key = format!("\n--mount={raw}");
        for (name, value) in expanded {
            key.push_str(&format!(" [{name}={value}]"));
        }
        key
    }
}

/// The flags of a RUN: its mounts and network. The command line (SHELL,
/// visible build args, heredocs folded in) starts the key as the history
/// text; what bind mounts read is added by the step (content digests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunFlags {
    pub(crate) mounts: Vec<RunMount>,
    pub(crate) network: Option<DfNetwork>,
}

impl RunFlags {
    /// The flags of `r`, mount words expanded with `expand`.
    pub(crate) fn expand(r: &RunInstruction, expand: &mut Expand<'_>) -> Result<RunFlags> {
        let RunInstruction {
            // The command line, with its heredocs, is the history text
            // that starts the key.
            cmd: _,
            heredocs: _,
            mounts,
            network,
            // `insecure` is refused before; `sandbox` is the default.
            security: _,
            // Where the instruction is written does not change its result.
            source: _,
        } = r;
        Ok(RunFlags {
            mounts: mounts
                .iter()
                .map(|m| RunMount::expand(m, expand))
                .collect::<Result<Vec<_>>>()?,
            network: *network,
        })
    }

    /// The step's cache key: the history text, the flags, then `inputs`
    /// (the content digests of what bind mounts read).
    pub(crate) fn key(&self, created_by: &str, inputs: &str) -> String {
        let RunFlags { mounts, network } = self;
        let mut key = created_by.to_owned();
        for m in mounts {
            key.push_str(&m.key());
        }
        if let Some(n) = network {
            key.push_str(&format!("\n--network={n:?}"));
        }
        key.push_str(inputs);
        key
    }
}

/// A key as recorded on its parent: on `scratch` (no parent image to tell
/// platforms apart) the stage's platform is part of it.
pub(crate) fn on_parent(key: &str, scratch: bool, platform: &Platform) -> String {
    if scratch {
        format!("{key}\n--platform={platform}")
    } else {
        key.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_dockerfile::instructions::Instruction;

    fn instruction(line: &str) -> Instruction {
        let df = crate::plan::parse(format!("FROM x\n{line}\n").as_bytes()).expect("valid");
        df.stages[0].instructions[0].clone()
    }

    fn no_vars(w: &str) -> Result<String> {
        Ok(w.to_owned())
    }

    fn copy_key(line: &str, vars: &mut Expand<'_>) -> String {
        match instruction(line) {
            Instruction::Copy(c) | Instruction::Add(c) => CopyFlags::expand(&c, vars)
                .expect("expand")
                .key("created_by"),
            other => panic!("not a copy: {other:?}"),
        }
    }

    fn run_key(line: &str, vars: &mut Expand<'_>) -> String {
        match instruction(line) {
            Instruction::Run(r) => RunFlags::expand(&r, vars)
                .expect("expand")
                .key("created_by", ""),
            other => panic!("not a run: {other:?}"),
        }
    }

    /// Every COPY/ADD flag changes the key, and so does its value.
    #[test]
    fn each_copy_flag_changes_the_key() {
        let lines = [
            "COPY a /d/",
            "COPY --from=s a /d/",
            "COPY --from=t a /d/",
            "COPY --chown=1:1 a /d/",
            "COPY --chown=2:1 a /d/",
            "COPY --chmod=600 a /d/",
            "COPY --chmod=640 a /d/",
            "COPY --link a /d/",
            "COPY --exclude=x a /d/",
            "COPY --exclude=x --exclude=y a /d/",
            "COPY --parents a /d/",
            "ADD --checksum=sha256:00 a /d/",
            "ADD --checksum=sha256:01 a /d/",
            "ADD --keep-git-dir=true a /d/",
            "ADD --unpack=false a /d/",
            "ADD --unpack=true a /d/",
        ];
        let keys: std::collections::BTreeSet<String> =
            lines.iter().map(|l| copy_key(l, &mut no_vars)).collect();
        assert_eq!(keys.len(), lines.len(), "{keys:#?}");
        // The text of earlier builds' keys is kept.
        assert_eq!(
            copy_key("COPY --chown=1:1 --parents a /d/", &mut no_vars),
            "created_by --chown=1:1 --parents"
        );
    }

    /// The key holds expanded words: `--chmod=$M` with another M is another key.
    #[test]
    fn copy_key_has_expanded_words() {
        let m = |v: &'static str| move |w: &str| -> Result<String> { Ok(w.replace("$M", v)) };
        let k1 = copy_key(
            "COPY --chmod=$M --chown=$M --exclude=$M a /d/",
            &mut m("600"),
        );
        let k2 = copy_key(
            "COPY --chmod=$M --chown=$M --exclude=$M a /d/",
            &mut m("640"),
        );
        assert_ne!(k1, k2);
        assert_eq!(k1, "created_by --chown=600 --chmod=600 --exclude=600");
    }

    /// Every RUN flag and mount option changes the key.
    #[test]
    fn each_run_flag_changes_the_key() {
        let lines = [
            "RUN true",
            "RUN --network=none true",
            "RUN --network=host true",
            "RUN --network=default true",
            "RUN --mount=type=bind,target=/t true",
            "RUN --mount=type=bind,target=/t,rw true",
            "RUN --mount=type=bind,target=/t,source=s true",
            "RUN --mount=type=bind,target=/t,from=s true",
            "RUN --mount=type=cache,target=/t true",
            "RUN --mount=type=cache,target=/t,id=i true",
            "RUN --mount=type=cache,target=/t,sharing=locked true",
            "RUN --mount=type=cache,target=/t,mode=0700 true",
            "RUN --mount=type=cache,target=/t,uid=1 true",
            "RUN --mount=type=cache,target=/t,gid=1 true",
            "RUN --mount=type=tmpfs,target=/t true",
            "RUN --mount=type=tmpfs,target=/t,size=1m true",
            "RUN --mount=type=secret,id=s true",
            "RUN --mount=type=secret,id=s,required true",
            "RUN --mount=type=secret,id=s,env=V true",
            "RUN --mount=type=ssh true",
            "RUN --mount=type=tmpfs,target=/t --mount=type=tmpfs,target=/u true",
        ];
        let keys: std::collections::BTreeSet<String> =
            lines.iter().map(|l| run_key(l, &mut no_vars)).collect();
        assert_eq!(keys.len(), lines.len(), "{keys:#?}");
        assert_eq!(
            run_key(
                "RUN --network=host --mount=type=tmpfs,target=/t true",
                &mut no_vars
            ),
            "created_by\n--mount=type=tmpfs,target=/t\n--network=Host"
        );
    }

    /// A mount word that expands to another value is another key.
    #[test]
    fn run_key_has_expanded_mount_words() {
        let m = |v: &'static str| move |w: &str| -> Result<String> { Ok(w.replace("$I", v)) };
        let line = "RUN --mount=type=cache,target=/c/$I,id=$I true";
        let k1 = run_key(line, &mut m("a"));
        let k2 = run_key(line, &mut m("b"));
        assert_ne!(k1, k2);
        assert_eq!(
            k1,
            "created_by\n--mount=type=cache,target=/c/$I,id=$I [target=/c/a] [id=a]"
        );
    }

    #[test]
    fn scratch_keys_name_the_platform() {
        let amd: Platform = "linux/amd64".parse().expect("platform");
        let arm: Platform = "linux/arm64".parse().expect("platform");
        assert_ne!(on_parent("k", true, &amd), on_parent("k", true, &arm));
        assert_eq!(on_parent("k", false, &amd), "k");
    }
}
