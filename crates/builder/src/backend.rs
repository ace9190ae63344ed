//! The traits the builder consumes: images and root filesystems, the step cache,
//! and running one RUN step. The CLI implements them over kiln-content,
//! kiln-snapshot, kiln-layer, kiln-image and kiln-runtime.
//!
//! Every method takes `&self` and implementations must be `Send + Sync`:
//! independent stages are built on several threads at once.

use std::fmt;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::BackendError;
use kiln_model::{ContainerConfig, History, NetworkMode, Platform};

/// An image ID: the config digest, `sha256:<64 hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ImageId(pub String);

impl ImageId {
    /// The 12-hex-digit form Docker prints (`Successfully built 3c5a1bd4b1c9`).
    pub fn short(&self) -> &str {
        let hex = self.0.strip_prefix("sha256:").unwrap_or(&self.0);
        hex.get(..12).unwrap_or(hex)
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// When to ask the registry while resolving a `FROM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Use the local image when there is one, pull otherwise (Docker's default).
    #[default]
    Missing,
    /// Always check the registry for a newer image (`--pull`).
    Always,
}

/// An image as the builder sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    /// Its ID.
    pub id: ImageId,
    /// Its runtime config (Env, Cmd, OnBuild, ...).
    pub config: ContainerConfig,
    /// Its platform.
    pub platform: Platform,
}

/// A writable root filesystem prepared on top of an image (or empty).
///
/// The builder treats it as an opaque handle: it gives it back to the same
/// backend to mount, commit or discard, and hands `mounts` to the [`StepRunner`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rootfs {
    /// The key it was prepared under (the intermediate container's ID).
    pub key: String,
    /// How to mount it as `/` (snapshotter mount descriptions, never performed here).
    pub mounts: Vec<MountSpec>,
}

/// One mount description (`overlay` with lowerdir/upperdir/workdir options, or `bind`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// Filesystem type: `overlay`, `bind`, ...
    pub fstype: String,
    /// Mount source.
    pub source: String,
    /// Mount options.
    pub options: Vec<String>,
}

/// What a step hands to [`ImageBackend::commit`].
#[derive(Debug, Clone)]
pub struct CommitRequest<'a> {
    /// The image the step ran on (`None` for `FROM scratch`).
    pub parent: Option<&'a ImageId>,
    /// The filesystem change to record as a new layer, or `None` for a
    /// metadata-only step (then `history.empty_layer` is `true`).
    pub rootfs: Option<&'a Rootfs>,
    /// The complete runtime config of the new image.
    pub config: &'a ContainerConfig,
    /// The history entry to append after the parent's history.
    pub history: &'a History,
    /// Platform of the new image (the parent's, or the target platform for scratch).
    pub platform: &'a Platform,
    /// The config's `created` time, RFC 3339 (from the build's epoch).
    pub created: &'a str,
    /// The image's `author` (from `MAINTAINER`), if any.
    pub author: Option<&'a str>,
    /// `COPY --link`: with `rootfs` `None`, the new layer is the last layer
    /// of this image (made on scratch), appended to the parent's layers as
    /// they are, without diffing anything.
    pub stack: Option<&'a ImageId>,
}

/// The store/snapshotter/image side of a build.
///
/// A build calls, per step: `prepare` → (`mount` … `unmount`)* → `commit` or
/// `discard`. The builder always pairs `mount` with `unmount` and always ends a
/// prepared rootfs with exactly one `commit(Some(rootfs))` or `discard`.
pub trait ImageBackend: Send + Sync {
    /// Resolves a `FROM` reference (already variable-expanded, never `scratch`
    /// and never a stage name) to a local image, pulling it for `platform`
    /// when it is missing or when `pull` is [`PullPolicy::Always`]. `reference`
    /// may be a name (`busybox`, `host:5000/app:1`, `name@sha256:...`) or an
    /// image ID; normalising it is the backend's job.
    fn resolve(
        &self,
        reference: &str,
        platform: &Platform,
        pull: PullPolicy,
    ) -> Result<ImageInfo, BackendError>;

    /// Prepares a writable root filesystem under `key` on top of `parent`'s
    /// layers (empty when `None`). `key` is unique for the build (the
    /// intermediate container ID). The builder may also prepare a rootfs only
    /// to read files from it (`COPY --from`, `RUN --mount=from=`), then discards it.
    fn prepare(&self, key: &str, parent: Option<&ImageId>) -> Result<Rootfs, BackendError>;

    /// Makes the rootfs's merged tree reachable at a host directory and returns
    /// it; the builder reads and writes files there (COPY, WORKDIR creation,
    /// reading `/etc/passwd`), then calls [`ImageBackend::unmount`]. A copy
    /// snapshotter can return its directory and do nothing on unmount.
    fn mount(&self, rootfs: &Rootfs) -> Result<PathBuf, BackendError>;

    /// Undoes [`ImageBackend::mount`].
    fn unmount(&self, rootfs: &Rootfs) -> Result<(), BackendError>;

    /// Records a new image: when `req.rootfs` is `Some`, its change against
    /// the parent becomes a new layer (always a layer, even an empty one, as
    /// Docker does for a RUN that changes nothing) and the rootfs is released;
    /// then writes the image config (parent's rootfs diff IDs + the new one,
    /// parent's history + `req.history`, `req.config`, `req.created`,
    /// platform) and returns its ID. Layer mtimes newer than the build epoch
    /// should be clamped to it when the build is reproducible.
    fn commit(&self, req: &CommitRequest<'_>) -> Result<ImageId, BackendError>;

    /// Releases a prepared rootfs without recording anything.
    fn discard(&self, rootfs: &Rootfs) -> Result<(), BackendError>;

    /// Points `name` (already normalised, with a tag) at `image`.
    fn tag(&self, image: &ImageId, name: &str) -> Result<(), BackendError>;
}

/// Downloads the remote sources of `ADD <url> <dest>`.
pub trait Fetcher: Send + Sync {
    /// Downloads `url` (following redirects) into the new file `dest`, and
    /// returns the `Last-Modified` time in Unix seconds when the server sent
    /// one. The builder verifies `--checksum` and computes the cache key from
    /// the content, as Docker does (so every build downloads again).
    fn fetch(&self, url: &str, dest: &std::path::Path) -> Result<Option<i64>, BackendError>;

    /// `ADD <git url>`: clones `repo` (the URL without its `#fragment`) at
    /// `reference` (a branch, tag or commit; the default branch when `None`)
    /// into the new directory `dest`, keeping `.git` only when
    /// `keep_git_dir`. The default refuses.
    fn fetch_git(
        &self,
        repo: &str,
        reference: Option<&str>,
        dest: &std::path::Path,
        keep_git_dir: bool,
    ) -> Result<(), BackendError> {
        let _ = (reference, dest, keep_git_dir);
        Err(format!("cannot clone {repo}: this fetcher does not support git").into())
    }
}

/// A git source of `ADD`: the repository URL, the ref and the subdirectory
/// of its `#ref:subdir` fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSource {
    /// The URL to clone (without the fragment).
    pub repo: String,
    /// Branch, tag or commit (`None`: the default branch).
    pub reference: Option<String>,
    /// Subdirectory of the repository to copy (`None`: all of it).
    pub subdir: Option<String>,
}

impl GitSource {
    /// Recognises a git URL as BuildKit does: `git://`, `git@host:path`,
    /// `ssh://`, `github.com/...`, or an `http(s)://` URL whose path ends
    /// in `.git`; with an optional `#ref[:subdir]`.
    pub fn parse(source: &str) -> Option<GitSource> {
        let (url, fragment) = match source.split_once('#') {
            Some((u, f)) => (u, Some(f)),
            None => (source, None),
        };
        let is_git = url.starts_with("git://")
            || url.starts_with("git@")
            || url.starts_with("ssh://")
            || url.starts_with("github.com/")
            || ((url.starts_with("http://") || url.starts_with("https://"))
                && url.trim_end_matches('/').ends_with(".git"));
        if !is_git {
            return None;
        }
        let repo = if url.starts_with("github.com/") {
            format!("https://{url}")
        } else {
            url.to_string()
        };
        let (reference, subdir) = match fragment {
            None => (None, None),
            Some(f) => match f.split_once(':') {
                Some((r, d)) => (Some(r.to_string()), Some(d.to_string())),
                None => (Some(f.to_string()), None),
            },
        };
        let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
        Some(GitSource {
            repo,
            reference: nonempty(reference),
            subdir: nonempty(subdir),
        })
    }
}

/// A record of one cached step: "running `step` on `parent` gave `image`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecord {
    /// The image the step ran on (`None`: scratch).
    pub parent: Option<ImageId>,
    /// The step's cache key text: the history `created_by` plus the flags
    /// that change the result (mounts, network, chown, chmod, excludes).
    pub key: String,
    /// The key with what may legitimately vary removed (the content checksum
    /// of COPY/ADD, the build args of RUN): two records with the same shape
    /// are the same instruction, used to explain misses.
    #[serde(default)]
    pub shape: String,
    /// For COPY/ADD: every source file (destination-relative path) and its
    /// content-and-mode digest, used to explain misses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<(String, String)>,
    /// The resulting image.
    pub image: ImageId,
}

/// The persistent step cache (Docker's "image whose parent is X and whose
/// instruction is Y"), kept across builds until `kiln builder prune`.
pub trait BuildCache: Send + Sync {
    /// Every record whose parent is `parent` and whose image still exists in
    /// the store (drop records whose image was removed).
    fn children(&self, parent: Option<&ImageId>) -> Result<Vec<CacheRecord>, BackendError>;

    /// Stores a record, replacing one with the same parent and key.
    fn record(&self, record: &CacheRecord) -> Result<(), BackendError>;

    /// The record on `parent` with exactly this `key`, if its image still
    /// exists. This is the lookup of every step, so an implementation should
    /// make it one file open (index records by parent and key); the default
    /// searches [`children`](BuildCache::children).
    fn lookup(
        &self,
        parent: Option<&ImageId>,
        key: &str,
    ) -> Result<Option<CacheRecord>, BackendError> {
        Ok(self.children(parent)?.into_iter().find(|r| r.key == key))
    }

    /// [`lookup`](BuildCache::lookup) for a step whose image would have
    /// `config`: what a cache needs that makes the step's image itself
    /// instead of finding a recorded one (Docker's classic `--cache-from
    /// IMAGE`, which cuts an image's history and layers at the step). The
    /// default ignores it.
    fn lookup_step(
        &self,
        parent: Option<&ImageId>,
        key: &str,
        config: &ContainerConfig,
    ) -> Result<Option<CacheRecord>, BackendError> {
        let _ = config;
        self.lookup(parent, key)
    }
}

/// An extra mount of a RUN step (`RUN --mount=...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepMount {
    /// Bind a file or directory of a tree the build does not trust (the
    /// context, or a stage's or image's mounted rootfs). The runner must
    /// resolve `source` inside `root` and never leave it (a symlink there
    /// is followed as if `root` were `/`), mount the object it opened
    /// rather than a host path, and make a read-only bind read-only all
    /// the way down. When `readonly` is false, writes must not reach the
    /// source (use an overlay or a copy): Docker discards them.
    Bind {
        /// The tree `source` is in (a host directory).
        root: PathBuf,
        /// The source, relative to `root` (`.` for all of it).
        source: String,
        /// Absolute path in the container.
        target: String,
        /// Mount read-only.
        readonly: bool,
        /// Paths under the source (relative to it, `/`-separated, no `..`)
        /// the mount must not show: what `.dockerignore` excludes from the
        /// context.
        hidden: Vec<String>,
    },
    /// A persistent cache directory, the same for every build using `id`.
    /// The runner (or its adapter) owns where it lives.
    Cache {
        /// Cache ID (defaults to the target path).
        id: String,
        /// Absolute path in the container.
        target: String,
        /// Mount read-only.
        readonly: bool,
        /// `shared`, `private` or `locked`.
        sharing: String,
        /// Owner of a newly created cache directory.
        uid: u32,
        /// Group of a newly created cache directory.
        gid: u32,
        /// Mode of a newly created cache directory.
        mode: u32,
    },
    /// A fresh tmpfs.
    Tmpfs {
        /// Absolute path in the container.
        target: String,
        /// Size limit in bytes.
        size: Option<u64>,
    },
    /// A secret file, bind-mounted read-only; never part of any layer.
    Secret {
        /// Host file holding the secret.
        source: PathBuf,
        /// Absolute path in the container (`/run/secrets/<id>` by default).
        target: String,
        /// File mode.
        mode: u32,
        /// File owner.
        uid: u32,
        /// File group.
        gid: u32,
    },
    /// `type=ssh`: a host SSH agent socket bound (as it is, never copied)
    /// at `target`; the builder sets `SSH_AUTH_SOCK` to it. Like secrets, it
    /// must leave no trace in the layer.
    Ssh {
        /// The agent's socket on the host.
        source: PathBuf,
        /// Absolute path in the container (`/run/buildkit/ssh_agent.<n>`).
        target: String,
    },
}

/// Everything needed to run one RUN step.
#[derive(Debug, Clone)]
pub struct RunStep<'a> {
    /// The intermediate container's ID (64 hex digits).
    pub container_id: &'a str,
    /// The root filesystem to mount as `/`.
    pub rootfs: &'a Rootfs,
    /// argv (shell form already wrapped in the SHELL).
    pub args: &'a [String],
    /// Environment, `KEY=value`.
    pub env: &'a [String],
    /// Working directory (absolute; may not exist yet: create it).
    pub cwd: &'a str,
    /// User as in the image config (`""` = root; `name`, `uid`, `uid:gid`,
    /// `name:group`): resolve it with the rootfs's `/etc/passwd` and `/etc/group`.
    pub user: &'a str,
    /// Network namespace to use.
    pub network: NetworkMode,
    /// Extra mounts, in order.
    pub mounts: &'a [StepMount],
    /// The platform of the stage's image: a runner checks that this machine
    /// can run its programs (natively or through `binfmt_misc`).
    pub platform: &'a Platform,
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The process's stdout.
    Stdout,
    /// The process's stderr.
    Stderr,
}

/// Where a step's output goes (the builder forwards it to the progress sink).
pub trait OutputSink {
    /// Called with each chunk the process writes, as it arrives.
    fn write(&mut self, stream: Stream, data: &[u8]);
}

/// Runs the command of one RUN step in a container and waits for it.
pub trait StepRunner: Send + Sync {
    /// Runs `step.args` as the container's primary process with stdin closed
    /// (`/dev/null`), its output forwarded to `output`, and returns its exit
    /// status (128+signal when killed). The container must be gone when this
    /// returns; the rootfs is left for the builder to commit. An error is for
    /// failures of the runtime itself (the command could not be started by
    /// the runtime: report "executable file not found" as status 127).
    fn run(&self, step: &RunStep<'_>, output: &mut dyn OutputSink) -> Result<i32, BackendError>;
}

impl OutputSink for Vec<u8> {
    fn write(&mut self, _stream: Stream, data: &[u8]) {
        self.extend_from_slice(data);
    }
}

/// Adapts any `io::Write` into an [`OutputSink`] (both streams into one).
pub struct WriteSink<W: io::Write>(pub W);

impl<W: io::Write> OutputSink for WriteSink<W> {
    fn write(&mut self, _stream: Stream, data: &[u8]) {
        // Output is best effort: a closed terminal must not fail the build.
        let _ = self.0.write_all(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_urls_and_fragments() {
        let g = GitSource::parse("git://127.0.0.1:9418/repo.git#v1:sub/dir").expect("git");
        assert_eq!(g.repo, "git://127.0.0.1:9418/repo.git");
        assert_eq!(g.reference.as_deref(), Some("v1"));
        assert_eq!(g.subdir.as_deref(), Some("sub/dir"));
        let g = GitSource::parse("https://example.com/x/y.git").expect("git");
        assert_eq!((g.reference, g.subdir), (None, None));
        assert_eq!(
            GitSource::parse("github.com/o/r#main").map(|g| g.repo),
            Some("https://github.com/o/r".to_string())
        );
        assert!(GitSource::parse("git@github.com:o/r.git").is_some());
        assert_eq!(GitSource::parse("https://example.com/file.tar.gz"), None);
        assert_eq!(GitSource::parse("src/dir"), None);
    }

    #[test]
    fn short_id_is_twelve_hex() {
        let id = ImageId(format!("sha256:{}", "ab".repeat(32)));
        assert_eq!(id.short(), "abababababab");
        assert_eq!(ImageId("xyz".into()).short(), "xyz");
    }
}
