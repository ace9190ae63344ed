//! The build context and COPY/ADD sources: `.dockerignore`, source
//! resolution with Docker's rules (globs, directories copying their contents,
//! destinations ending in `/`, `--parents`, `--exclude`), content checksums
//! for the cache (content and mode, never mtime), and applying a copy into a
//! mounted root filesystem without following its symlinks outside of it.
//! Every tree (the context, a stage or image rootfs, a git checkout) is
//! read through a [`kiln_fs::Root`]: links resolve inside the tree.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kiln_fs::{FinalLink, Metadata, Root, at};
use sha2::{Digest as _, Sha256};

use crate::dockerignore::{DockerIgnore, clean_rel};
use crate::error::{Error, Result};
use crate::index::{FileIndex, hash_in};
use crate::pattern::Pattern;

/// A build context directory with its `.dockerignore` and file index.
#[derive(Debug)]
pub struct ContextDir {
    root: PathBuf,
    dir: Root,
    ignore: DockerIgnore,
    index: Mutex<FileIndex>,
}

impl ContextDir {
    /// Opens the context at `root`. The ignore file is `<dockerfile>.dockerignore`
    /// when `dockerfile` is given and that file exists, else `root/.dockerignore`.
    /// `index` is where the file index is kept between builds (`None`: memory
    /// only); key it by the canonical context path, for example
    /// `<store>/build/index/<sha256 of the path>`, so each context has its own.
    pub fn open(
        root: &Path,
        dockerfile: Option<&Path>,
        index: Option<&Path>,
    ) -> Result<ContextDir> {
        let dir = Root::open(root).map_err(|e| Error::io("open", root, e))?;
        // The Dockerfile's own ignore file sits next to the Dockerfile the
        // user named (a path of theirs); the context's is read inside it.
        let mut text = None;
        if let Some(df) = dockerfile {
            let mut name = df.as_os_str().to_owned();
            name.push(".dockerignore");
            let c = PathBuf::from(name);
            match read_dockerfile_ignore(&c) {
                Ok(t) => text = Some((t, c)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("read", &c, e)),
            }
        }
        if text.is_none() {
            match dir.read(".dockerignore") {
                Ok(t) => text = Some((t, dir.display(".dockerignore"))),
                Err(e) if at::is_absent(&e) => {}
                Err(e) => return Err(Error::io("read", dir.display(".dockerignore"), e)),
            }
        }
        let mut ignore = DockerIgnore::default();
        if let Some((bytes, c)) = text {
            let text = String::from_utf8(bytes).map_err(|e| {
                Error::io(
                    "read",
                    &c,
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                )
            })?;
            ignore = DockerIgnore::parse(&text).map_err(|e| {
                Error::io(
                    "parse",
                    &c,
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                )
            })?;
        }
        Ok(ContextDir {
            root: root.to_path_buf(),
            dir,
            ignore,
            index: Mutex::new(match index {
                Some(p) => FileIndex::load(p),
                None => FileIndex::in_memory(),
            }),
        })
    }

    /// The context directory's host path (for messages; read the context
    /// through [`ContextDir::dir`]).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The context as an untrusted tree: every path resolved inside it.
    pub fn dir(&self) -> &Root {
        &self.dir
    }

    /// The parsed ignore rules.
    pub fn ignore(&self) -> &DockerIgnore {
        &self.ignore
    }

    /// Files hashed so far (not served by the index).
    pub fn hashed_count(&self) -> usize {
        self.index
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .hashed_count()
    }

    /// Writes the file index back.
    pub fn save_index(&self) -> Result<()> {
        self.index.lock().unwrap_or_else(|p| p.into_inner()).save()
    }

    pub(crate) fn tree(&self) -> Tree<'_> {
        Tree {
            root: &self.dir,
            ignore: Some(&self.ignore),
            index: Some(&self.index),
        }
    }
}

/// Where COPY sources are read from: the context, or a stage/image rootfs.
#[derive(Clone, Copy)]
pub(crate) struct Tree<'a> {
    pub(crate) root: &'a Root,
    pub(crate) ignore: Option<&'a DockerIgnore>,
    pub(crate) index: Option<&'a Mutex<FileIndex>>,
}

impl<'a> Tree<'a> {
    /// A tree without ignore rules or index (a mounted image rootfs).
    pub(crate) fn plain(root: &'a Root) -> Tree<'a> {
        Tree {
            root,
            ignore: None,
            index: None,
        }
    }

    fn excluded(&self, rel: &str) -> bool {
        self.ignore.is_some_and(|i| i.is_excluded(rel))
    }

    fn digest(&self, rel: &str, meta: &Metadata) -> Result<String> {
        match self.index {
            Some(idx) => idx
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .digest(rel, self.root, meta),
            None => hash_in(self.root, rel),
        }
    }
}

/// What one entry of a copy is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File {
        /// Path in the plan's source tree.
        src: String,
        digest: String,
    },
    Symlink(PathBuf),
    Inline(Vec<u8>),
    /// A local tar archive ADD extracts into the destination directory.
    Archive {
        /// Path in the plan's source tree.
        src: String,
        compression: crate::decompress::Compression,
        digest: String,
    },
}

/// One entry to create under the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Path under the destination directory (`""`: the destination itself).
    pub(crate) rel: String,
    pub(crate) kind: Kind,
    pub(crate) mode: u32,
    pub(crate) mtime: Option<(i64, u32)>,
}

/// A resolved COPY: entries, destination rules, and the cache checksum.
#[derive(Debug, Clone)]
pub(crate) struct CopyPlan {
    /// The tree the `File` and `Archive` entries are read from.
    pub(crate) source: Option<Root>,
    /// Absolute, cleaned destination.
    pub(crate) dest: String,
    /// The destination is a directory (ends in `/`, several sources, a directory source).
    pub(crate) dest_is_dir: bool,
    /// For a single-file copy: its name, used when the destination turns out
    /// to be an existing directory.
    pub(crate) single_name: Option<String>,
    pub(crate) entries: Vec<Entry>,
    /// `file:<hex>`, `dir:<hex>` or `multi:<hex>`, as Docker's history shows it.
    pub(crate) checksum: String,
    /// (path, digest) per entry, for explaining cache misses.
    pub(crate) files: Vec<(String, String)>,
    /// Further parts, each with its own source tree, applied after this
    /// one in order (ADD of URLs together with local sources).
    pub(crate) more: Vec<CopyPlan>,
}

impl CopyPlan {
    /// One plan of `parts` (one per source, in the instruction's order,
    /// all with the same directory destination): the first part's entries
    /// and the others as [`CopyPlan::more`], a `multi:` checksum over the
    /// parts' checksums, and every part's files.
    pub(crate) fn combine(parts: Vec<CopyPlan>) -> Option<CopyPlan> {
        let mut parts = parts.into_iter();
        let mut first = parts.next()?;
        let more: Vec<CopyPlan> = parts.collect();
        if more.is_empty() {
            return Some(first);
        }
        let mut h = Sha256::new();
        for p in std::iter::once(&first).chain(&more) {
            h.update(p.checksum.as_bytes());
            h.update([b'\n']);
        }
        first.checksum = format!("multi:{}", hex::encode(h.finalize()));
        first.dest_is_dir = true;
        first.single_name = None;
        for p in &more {
            first.files.extend(p.files.iter().cloned());
        }
        first.more = more;
        Some(first)
    }
}

/// Options that shape a copy plan.
#[derive(Debug, Clone, Default)]
pub(crate) struct PlanOptions {
    pub(crate) parents: bool,
    /// ADD: extract local tar archives.
    pub(crate) extract_archives: bool,
    pub(crate) excludes: Vec<Pattern>,
}

/// Reads the Dockerfile's own ignore file, `<Dockerfile>.dockerignore`: a
/// path next to the Dockerfile the user named, like the Dockerfile itself.
fn read_dockerfile_ignore(path: &Path) -> std::io::Result<Vec<u8>> {
    std::fs::read(path)
}

/// Cleans a source path, refusing one that climbs out of the root.
pub(crate) fn clean_source(src: &str, line: usize) -> Result<String> {
    let mut depth: i64 = 0;
    for part in src.split('/') {
        match part {
            "" | "." => {}
            ".." => depth -= 1,
            _ => depth += 1,
        }
        if depth < 0 {
            return Err(Error::OutsideContext {
                line,
                source_path: src.to_string(),
            });
        }
    }
    Ok(clean_rel(src))
}

/// Joins `dest` to the working directory when relative and cleans it.
pub(crate) fn absolute_dest(dest: &str, workdir: &str) -> String {
    let joined = if dest.starts_with('/') {
        dest.to_string()
    } else {
        format!("{}/{}", workdir.trim_end_matches('/'), dest)
    };
    let c = clean_rel(&joined);
    if c == "." {
        "/".to_string()
    } else {
        format!("/{c}")
    }
}

fn mtime_of(meta: &Metadata) -> Option<(i64, u32)> {
    Some((meta.mtime(), meta.mtime_nsec()))
}

fn join_rel(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// Lists every path of the tree (relative, sorted), skipping ignored subtrees.
fn walk_all(tree: &Tree<'_>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    walk_dir(tree, "", &mut |rel, _| {
        out.push(rel.to_string());
        Ok(())
    })?;
    out.sort();
    Ok(out)
}

/// Calls `f(rel, meta)` for every entry below `rel_dir` (not `rel_dir` itself),
/// parents before children, names sorted, honouring the ignore rules.
/// Symlinks are entries; they are never followed.
fn walk_dir(
    tree: &Tree<'_>,
    rel_dir: &str,
    f: &mut dyn FnMut(&str, &Metadata) -> Result<()>,
) -> Result<()> {
    let mut failed: Option<Error> = None;
    let walked = tree.root.walk(rel_dir, &mut |path, meta| {
        let rel = path.to_string_lossy();
        let excluded = tree.excluded(&rel);
        if !excluded && let Err(e) = f(&rel, meta) {
            failed = Some(e);
            return Err(std::io::Error::other("stopped"));
        }
        Ok(meta.is_dir() && (!excluded || tree.ignore.is_some_and(|i| i.has_exceptions())))
    });
    if let Some(e) = failed {
        return Err(e);
    }
    walked.map_err(|e| Error::io("read directory", tree.root.display(rel_dir), e))
}

/// Resolves the sources of a COPY/ADD against `tree` and builds its plan.
pub(crate) fn plan_copy(
    tree: &Tree<'_>,
    sources: &[String],
    dest: &str,
    workdir: &str,
    opts: &PlanOptions,
    line: usize,
) -> Result<CopyPlan> {
    let items = named_sources(tree, sources, line)?;
    let dest_abs = absolute_dest(dest, workdir);
    let dest_slash = dest.ends_with('/') || dest.ends_with("/.") || dest == "." || dest_abs == "/";
    if items.len() > 1 && !dest_slash {
        return Err(Error::instr(
            line,
            "When using COPY with more than one source file, the destination must be a directory and end with a /",
        ));
    }
    let mut p = Planning {
        tree,
        opts,
        line,
        several: dest_slash || items.len() > 1,
        entries: Vec::new(),
        single_name: None,
        any_dir: false,
        any_archive: false,
    };
    for named in &items {
        p.source(named)?;
    }
    let Planning {
        mut entries,
        single_name,
        any_dir,
        any_archive,
        ..
    } = p;
    entries.sort_by(|a, b| a.rel.cmp(&b.rel));
    let (checksum_hex, mut files) = checksum(&entries);
    name_single(&mut files, single_name.as_deref());
    let prefix = match (items.len(), any_dir) {
        (1, true) => "dir",
        (1, false) => "file",
        _ => "multi",
    };
    Ok(CopyPlan {
        source: Some(tree.root.clone()),
        dest: dest_abs,
        dest_is_dir: dest_slash || any_dir || any_archive || items.len() > 1 || opts.parents,
        single_name,
        entries,
        checksum: format!("{prefix}:{checksum_hex}"),
        files,
        more: Vec::new(),
    })
}

/// The sources of a copy as paths of the tree: globs expanded (Go's
/// `filepath.Match` over every path), `.` as the root; an excluded or
/// unmatched source is not found.
fn named_sources(tree: &Tree<'_>, sources: &[String], line: usize) -> Result<Vec<String>> {
    let mut items: Vec<String> = Vec::new();
    let mut all: Option<Vec<String>> = None;
    for src in sources {
        let cleaned = clean_source(src, line)?;
        let pat = Pattern::new(&cleaned, false).map_err(|e| Error::instr(line, e.to_string()))?;
        if pat.has_wildcards() {
            if all.is_none() {
                all = Some(walk_all(tree)?);
            }
            let matched: Vec<String> = all
                .as_deref()
                .unwrap_or_default()
                .iter()
                .filter(|p| pat.matches(p))
                .cloned()
                .collect();
            if matched.is_empty() {
                return Err(Error::SourceNotFound {
                    line,
                    source_path: src.clone(),
                });
            }
            items.extend(matched);
        } else {
            let rel = if cleaned == "." {
                String::new()
            } else {
                cleaned
            };
            if !rel.is_empty() && tree.excluded(&rel) {
                return Err(Error::SourceNotFound {
                    line,
                    source_path: src.clone(),
                });
            }
            items.push(rel);
        }
    }
    Ok(items)
}

/// A copy plan being made, one named source at a time.
struct Planning<'t, 'a> {
    tree: &'t Tree<'a>,
    opts: &'t PlanOptions,
    line: usize,
    /// The destination is a directory because of how it is written or
    /// because there are several sources: a file lands inside it by name.
    several: bool,
    entries: Vec<Entry>,
    single_name: Option<String>,
    any_dir: bool,
    any_archive: bool,
}

impl Planning<'_, '_> {
    /// Adds the entries of one named source (followed, inside the tree,
    /// when it is a symlink).
    fn source(&mut self, named: &str) -> Result<()> {
        let root = self.tree.root;
        // The named source itself is followed when it is a symlink, but only
        // inside the tree (an absolute link in an image means its own root).
        let not_found = || Error::SourceNotFound {
            line: self.line,
            source_path: named.to_owned(),
        };
        let resolved = match root.canonical(named, FinalLink::Follow) {
            Ok(p) => p.to_string_lossy().into_owned(),
            Err(e) if at::is_absent(&e) => return Err(not_found()),
            Err(e) => return Err(Error::io("stat", root.display(named), e)),
        };
        let meta = match root.lstat(&resolved) {
            Ok(m) if !m.is_symlink() => m,
            Ok(_) => return Err(not_found()),
            Err(e) if at::is_absent(&e) => return Err(not_found()),
            Err(e) => return Err(Error::io("stat", root.display(&resolved), e)),
        };
        let base = if self.opts.parents {
            named.to_owned()
        } else {
            String::new()
        };
        if meta.is_dir() {
            self.directory(&resolved, &base, &meta)
        } else {
            self.file(named, &resolved, &base, &meta)
        }
    }

    /// A directory source: its contents (itself too with `--parents`),
    /// less what `--exclude` names; devices, FIFOs and sockets skipped.
    fn directory(&mut self, item: &str, base: &str, meta: &Metadata) -> Result<()> {
        let tree = self.tree;
        self.any_dir = true;
        if !base.is_empty() {
            self.entries.push(Entry {
                rel: base.to_owned(),
                kind: Kind::Dir,
                mode: meta.permissions(),
                mtime: mtime_of(meta),
            });
        }
        // Walk relative to the tree root: ignore rules and index keys are root-relative.
        let mut collected = Vec::new();
        walk_dir(tree, item, &mut |rel, m| {
            collected.push((rel.to_string(), *m));
            Ok(())
        })?;
        for (rel, m) in collected {
            let inner = if item.is_empty() {
                rel.clone()
            } else {
                rel[item.len() + 1..].to_string()
            };
            if self
                .opts
                .excludes
                .iter()
                .any(|p| p.matches_or_parent(&inner))
            {
                continue;
            }
            let kind = if m.is_symlink() {
                Kind::Symlink(
                    tree.root
                        .readlink(&rel)
                        .map_err(|e| Error::io("read link", tree.root.display(&rel), e))?,
                )
            } else if m.is_dir() {
                Kind::Dir
            } else if m.is_file() {
                Kind::File {
                    digest: tree.digest(&rel, &m)?,
                    src: rel.clone(),
                }
            } else {
                // Devices, fifos and sockets are not copied.
                continue;
            };
            self.entries.push(Entry {
                rel: join_rel(base, &inner),
                kind,
                mode: m.permissions(),
                mtime: mtime_of(&m),
            });
        }
        Ok(())
    }

    /// A file source (`named` as written, `item` where it leads): one file,
    /// or for ADD a local archive to extract; skipped when excluded.
    fn file(&mut self, named: &str, item: &str, base: &str, meta: &Metadata) -> Result<()> {
        let tree = self.tree;
        let name = named.rsplit('/').next().unwrap_or(named).to_string();
        if self
            .opts
            .excludes
            .iter()
            .any(|p| p.matches(&name) || p.matches(item))
        {
            return Ok(());
        }
        if self.opts.extract_archives
            && let Some(compression) = crate::decompress::detect(tree.root, Path::new(item))
        {
            self.any_archive = true;
            self.entries.push(Entry {
                rel: String::new(),
                kind: Kind::Archive {
                    digest: tree.digest(item, meta)?,
                    src: item.to_owned(),
                    compression,
                },
                mode: meta.permissions(),
                mtime: None,
            });
            return Ok(());
        }
        let rel = if self.opts.parents {
            base.to_owned()
        } else if self.several {
            name
        } else {
            self.single_name = Some(name);
            String::new()
        };
        self.entries.push(Entry {
            rel,
            kind: Kind::File {
                digest: tree.digest(item, meta)?,
                src: item.to_owned(),
            },
            mode: meta.permissions(),
            mtime: mtime_of(meta),
        });
        Ok(())
    }
}

/// A plan for heredoc sources (`COPY <<EOF /dst`): one file per heredoc.
pub(crate) fn plan_inline(files: &[(String, Vec<u8>)], dest: &str, workdir: &str) -> CopyPlan {
    let listed = files
        .iter()
        .map(|(name, data)| (name.clone(), Kind::Inline(data.clone()), 0o644, None))
        .collect();
    plan_listed(None, listed, dest, workdir)
}

/// A plan for downloaded files (ADD of URLs): `(name, file in the download
/// directory `dir`, mtime)`, mode 0600 as Docker gives them.
pub(crate) fn plan_downloads(
    dir: &Path,
    files: &[(String, String, Option<i64>)],
    dest: &str,
    workdir: &str,
) -> Result<CopyPlan> {
    let source = Root::open(dir).map_err(|e| Error::io("open", dir, e))?;
    let mut listed = Vec::new();
    for (name, file, mtime) in files {
        listed.push((
            name.clone(),
            Kind::File {
                digest: hash_in(&source, file)?,
                src: file.clone(),
            },
            0o600,
            mtime.map(|t| (t, 0)),
        ));
    }
    Ok(plan_listed(Some(source), listed, dest, workdir))
}

type Listed = (String, Kind, u32, Option<(i64, u32)>);

fn plan_listed(source: Option<Root>, files: Vec<Listed>, dest: &str, workdir: &str) -> CopyPlan {
    let dest_abs = absolute_dest(dest, workdir);
    let n = files.len();
    let dest_slash = dest.ends_with('/') || n > 1;
    let single_name = (!dest_slash)
        .then(|| files.first().map(|f| f.0.clone()))
        .flatten();
    let mut entries: Vec<Entry> = files
        .into_iter()
        .map(|(name, kind, mode, mtime)| Entry {
            rel: if dest_slash { name } else { String::new() },
            kind,
            mode,
            mtime,
        })
        .collect();
    entries.sort_by(|a, b| a.rel.cmp(&b.rel));
    let (hex, mut files_list) = checksum(&entries);
    name_single(&mut files_list, single_name.as_deref());
    CopyPlan {
        source,
        dest: dest_abs,
        dest_is_dir: dest_slash,
        single_name,
        entries,
        checksum: format!("{}:{hex}", if n == 1 { "file" } else { "multi" }),
        files: files_list,
        more: Vec::new(),
    }
}

/// A single file copied to a file destination has an empty relative path
/// in the plan; cache-miss explanations name it by its source instead.
fn name_single(files: &mut [(String, String)], single_name: Option<&str>) {
    if let Some(name) = single_name {
        for (p, _) in files.iter_mut().filter(|(p, _)| p.is_empty()) {
            *p = name.to_string();
        }
    }
}

fn checksum(entries: &[Entry]) -> (String, Vec<(String, String)>) {
    let mut h = Sha256::new();
    let mut files = Vec::new();
    for e in entries {
        let payload = match &e.kind {
            Kind::Dir => "dir".to_string(),
            Kind::File { digest, .. } => digest.clone(),
            Kind::Symlink(t) => format!("symlink:{}", t.to_string_lossy()),
            Kind::Inline(data) => format!("sha256:{}", hex::encode(Sha256::digest(data))),
            Kind::Archive { digest, .. } => format!("archive:{digest}"),
        };
        let item = format!("{:o}:{payload}", e.mode);
        h.update(e.rel.as_bytes());
        h.update([0]);
        h.update(item.as_bytes());
        h.update([b'\n']);
        files.push((e.rel.clone(), item));
    }
    (hex::encode(h.finalize()), files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perms::Chmod;
    use crate::write::{ApplyOptions, apply_copy};
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn write(root: &Path, rel: &str, data: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, data).expect("write");
    }

    fn ctx() -> (tempfile::TempDir, ContextDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        write(r, "a.txt", "A");
        write(r, "b.txt", "B");
        write(r, "src/main.rs", "fn main() {}");
        write(r, "src/lib/x.rs", "x");
        write(r, "target/big.o", "obj");
        write(r, ".dockerignore", "target\n*.md\n");
        write(r, "README.md", "readme");
        let c = ContextDir::open(r, None, None).expect("open");
        (dir, c)
    }

    fn rels(p: &CopyPlan) -> Vec<&str> {
        p.entries.iter().map(|e| e.rel.as_str()).collect()
    }

    #[test]
    fn directory_copies_contents_and_honours_ignore() {
        let (_d, c) = ctx();
        let p = plan_copy(
            &c.tree(),
            &[".".into()],
            "/app",
            "/",
            &PlanOptions::default(),
            1,
        )
        .expect("plan");
        assert_eq!(p.dest, "/app");
        assert!(p.dest_is_dir);
        assert_eq!(
            rels(&p),
            [
                ".dockerignore",
                "a.txt",
                "b.txt",
                "src",
                "src/lib",
                "src/lib/x.rs",
                "src/main.rs"
            ]
        );
        assert!(p.checksum.starts_with("dir:"));
        let p = plan_copy(
            &c.tree(),
            &["src".into()],
            "dst",
            "/work",
            &PlanOptions::default(),
            1,
        )
        .expect("plan");
        assert_eq!(p.dest, "/work/dst");
        assert_eq!(rels(&p), ["lib", "lib/x.rs", "main.rs"]);
    }

    #[test]
    fn globs_files_and_dest_rules() {
        let (_d, c) = ctx();
        let p = plan_copy(
            &c.tree(),
            &["*.txt".into()],
            "/d/",
            "/",
            &PlanOptions::default(),
            3,
        )
        .expect("plan");
        assert_eq!(rels(&p), ["a.txt", "b.txt"]);
        assert!(p.checksum.starts_with("multi:"));
        let err = plan_copy(
            &c.tree(),
            &["*.txt".into()],
            "/d",
            "/",
            &PlanOptions::default(),
            3,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("must be a directory and end with a /"),
            "{err}"
        );
        let p = plan_copy(
            &c.tree(),
            &["a.txt".into()],
            "/x/y",
            "/",
            &PlanOptions::default(),
            3,
        )
        .expect("plan");
        assert_eq!(rels(&p), [""]);
        assert_eq!(p.single_name.as_deref(), Some("a.txt"));
        assert!(p.checksum.starts_with("file:"));
        // Ignored or missing sources are not found; escaping the context is refused.
        assert!(matches!(
            plan_copy(
                &c.tree(),
                &["README.md".into()],
                "/",
                "/",
                &PlanOptions::default(),
                4
            ),
            Err(Error::SourceNotFound { .. })
        ));
        assert!(matches!(
            plan_copy(
                &c.tree(),
                &["nope".into()],
                "/",
                "/",
                &PlanOptions::default(),
                4
            ),
            Err(Error::SourceNotFound { .. })
        ));
        assert!(matches!(
            plan_copy(
                &c.tree(),
                &["../etc/passwd".into()],
                "/",
                "/",
                &PlanOptions::default(),
                4
            ),
            Err(Error::OutsideContext { .. })
        ));
    }

    #[test]
    fn parents_and_excludes() {
        let (_d, c) = ctx();
        let opts = PlanOptions {
            parents: true,
            extract_archives: false,
            excludes: vec![Pattern::new("*.rs", true).expect("pattern")],
        };
        let p = plan_copy(
            &c.tree(),
            &["src".into(), "a.txt".into()],
            "/o/",
            "/",
            &opts,
            1,
        )
        .expect("plan");
        // `*` does not cross directories: only the top-level main.rs is excluded.
        assert_eq!(rels(&p), ["a.txt", "src", "src/lib", "src/lib/x.rs"]);
    }

    #[test]
    fn checksum_tracks_content_and_mode_not_mtime() {
        let (d, c) = ctx();
        let sum = |c: &ContextDir| {
            plan_copy(
                &c.tree(),
                &["src".into()],
                "/s",
                "/",
                &PlanOptions::default(),
                1,
            )
            .expect("plan")
            .checksum
        };
        let s1 = sum(&c);
        let f = d.path().join("src/main.rs");
        filetime::set_file_mtime(&f, filetime::FileTime::from_unix_time(5, 0)).expect("mtime");
        assert_eq!(sum(&c), s1, "mtime is not part of the checksum");
        fs::set_permissions(&f, fs::Permissions::from_mode(0o755)).expect("chmod");
        let s2 = sum(&c);
        assert_ne!(s2, s1, "mode is");
        fs::write(&f, "fn main() { }").expect("write");
        assert_ne!(sum(&c), s2, "content is");
    }

    #[test]
    fn apply_creates_parents_and_stays_in_root() {
        let (_d, c) = ctx();
        let rootfs = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        // A hostile symlink in the image pointing outside the root.
        std::os::unix::fs::symlink(outside.path(), rootfs.path().join("evil")).expect("symlink");
        fs::create_dir(rootfs.path().join("existing")).expect("mkdir");
        let opts = ApplyOptions {
            ignore_chown_errors: true,
            chmod: Some(Chmod::parse("go-r").expect("chmod")),
            ..Default::default()
        };
        let p = plan_copy(
            &c.tree(),
            &["src".into()],
            "/evil/deep/",
            "/",
            &PlanOptions::default(),
            1,
        )
        .expect("plan");
        apply_copy(&p, &Root::open(rootfs.path()).expect("root"), &opts).expect("apply");
        assert!(
            fs::read_dir(outside.path()).expect("read").next().is_none(),
            "nothing written outside"
        );
        let inside = rootfs
            .path()
            .join(outside.path().strip_prefix("/").expect("abs"))
            .join("deep/main.rs");
        assert_eq!(fs::read_to_string(&inside).expect("copied"), "fn main() {}");
        assert_eq!(fs::metadata(&inside).expect("stat").mode() & 0o777, 0o600);

        // A single file onto an existing directory lands inside it.
        let p = plan_copy(
            &c.tree(),
            &["a.txt".into()],
            "/existing",
            "/",
            &PlanOptions::default(),
            1,
        )
        .expect("plan");
        apply_copy(&p, &Root::open(rootfs.path()).expect("root"), &opts).expect("apply");
        assert_eq!(
            fs::read_to_string(rootfs.path().join("existing/a.txt")).expect("read"),
            "A"
        );
        // ... and onto a new path becomes that path.
        let p = plan_copy(
            &c.tree(),
            &["a.txt".into()],
            "/new/name",
            "/",
            &PlanOptions::default(),
            1,
        )
        .expect("plan");
        apply_copy(&p, &Root::open(rootfs.path()).expect("root"), &opts).expect("apply");
        assert_eq!(
            fs::read_to_string(rootfs.path().join("new/name")).expect("read"),
            "A"
        );
        // Inline (heredoc) files.
        let p = plan_inline(&[("EOF".into(), b"hi\n".to_vec())], "/h.txt", "/");
        apply_copy(
            &p,
            &Root::open(rootfs.path()).expect("root"),
            &ApplyOptions {
                ignore_chown_errors: true,
                ..Default::default()
            },
        )
        .expect("apply");
        assert_eq!(
            fs::read_to_string(rootfs.path().join("h.txt")).expect("read"),
            "hi\n"
        );
    }
}

#[cfg(test)]
mod symlink_tests {
    use super::*;
    use std::fs;

    #[test]
    fn named_symlinks_resolve_inside_the_tree() {
        let rootfs = tempfile::tempdir().expect("tempdir");
        let r = rootfs.path();
        fs::create_dir_all(r.join("usr/lib")).expect("mkdir");
        fs::write(r.join("usr/lib/real.so"), "inside").expect("write");
        // An absolute link means the image's own root, not the host's.
        std::os::unix::fs::symlink("/usr/lib/real.so", r.join("link.so")).expect("symlink");
        std::os::unix::fs::symlink("/etc/hostname", r.join("host-link")).expect("symlink");
        let root = Root::open(r).expect("root");
        let tree = Tree::plain(&root);
        let p = plan_copy(
            &tree,
            &["/link.so".into()],
            "/out/",
            "/",
            &PlanOptions::default(),
            1,
        )
        .expect("plan");
        assert_eq!(p.entries.len(), 1);
        assert_eq!(
            p.entries[0].rel, "link.so",
            "named after the source as written"
        );
        assert!(matches!(&p.entries[0].kind, Kind::File { src, .. } if src == "usr/lib/real.so"));
        // A link to a path missing in the tree is not found, even if the host has it.
        assert!(matches!(
            plan_copy(
                &tree,
                &["/host-link".into()],
                "/out/",
                "/",
                &PlanOptions::default(),
                1
            ),
            Err(Error::SourceNotFound { .. })
        ));
    }
}

#[cfg(test)]
mod ignore_file_tests {
    use super::*;
    use std::fs;

    #[test]
    fn dockerfile_specific_ignore_file_wins_and_exceptions_reach_inside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        for f in ["a.txt", "b.txt", "logs/x.log", "logs/keep.log"] {
            let p = r.join(f);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, f).expect("write");
        }
        fs::write(r.join(".dockerignore"), "a.txt\n").expect("write");
        fs::write(
            r.join("app.Dockerfile.dockerignore"),
            "b.txt\nlogs\n!logs/keep.log\n",
        )
        .expect("write");
        let rels = |c: &ContextDir| -> Vec<String> {
            plan_copy(
                &c.tree(),
                &[".".into()],
                "/",
                "/",
                &PlanOptions::default(),
                1,
            )
            .expect("plan")
            .entries
            .iter()
            .map(|e| e.rel.clone())
            .collect()
        };
        let plain = ContextDir::open(r, None, None).expect("open");
        assert!(!rels(&plain).contains(&"a.txt".to_string()));
        assert!(rels(&plain).contains(&"b.txt".to_string()));
        let specific = ContextDir::open(r, Some(&r.join("app.Dockerfile")), None).expect("open");
        let got = rels(&specific);
        assert!(got.contains(&"a.txt".to_string()), "{got:?}");
        assert!(!got.contains(&"b.txt".to_string()), "{got:?}");
        assert!(got.contains(&"logs/keep.log".to_string()), "{got:?}");
        assert!(!got.contains(&"logs/x.log".to_string()), "{got:?}");
    }
}
