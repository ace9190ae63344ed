//! `docker cp` and `docker export` over a tree kiln does not trust: stat a
//! path inside a container's root, archive it with the entry names `docker
//! cp` produces, decide where an archive is extracted (Docker's rules for a
//! destination that is a directory, a file, missing, or ends in `/` or
//! `/.`), and archive a whole tree.
//!
//! Every path is resolved inside a [`Root`] (`openat2(RESOLVE_IN_ROOT)`):
//! a container's link to `/etc/shadow` means the container's
//! `/etc/shadow`, never the host's. Container paths are taken as Docker
//! takes them: relative to the container's `/`, `..` cleaned lexically
//! first (so it never climbs above `/`), and the final symlink followed only
//! when the path ends in `/` or `/.`.

use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use kiln_fs::{FinalLink, Root};
use kiln_model::IdMap;

use crate::diff::TreeArchiver;
use crate::{DiffOptions, Error, Result};

/// What `docker cp` learns about a path in a container before copying
/// (Docker's `PathStat`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathStat {
    /// The last name of the path (`/` for the root).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// The whole `st_mode` (type and permission bits).
    pub mode: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// For a symlink: where it leads, every link resolved inside the root,
    /// as an absolute path in the container (its last part may not exist).
    pub link_target: Option<String>,
}

impl PathStat {
    /// The object's type.
    pub fn file_type(&self) -> kiln_fs::FileType {
        kiln_fs::FileType::from_mode(self.mode)
    }
    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.file_type() == kiln_fs::FileType::Dir
    }
    /// A symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.file_type() == kiln_fs::FileType::Symlink
    }
}

/// Whether a path names a directory's contents or asks for its final link
/// to be followed: it ends in `/` or `/.` (or is `.`).
pub(crate) fn asserts_directory(path: &str) -> bool {
    path.ends_with('/') || path.ends_with("/.") || path == "."
}

/// `path` made absolute in the container and cleaned lexically (`.` and
/// `..` removed, `..` stopping at `/`), as Docker joins it onto `/`.
fn clean_abs(path: &str) -> PathBuf {
    let mut out = PathBuf::from("/");
    for comp in Path::new(path).components() {
        match comp {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The last name of `path` as Docker's `SplitPathDirEntry` gives it: `.`
/// for a path ending in `/.`, the last name otherwise (`/` for the root).
pub fn base_name(path: &str) -> String {
    if path.ends_with("/.") || path == "." {
        return ".".to_owned();
    }
    let clean = clean_abs(path);
    clean
        .file_name()
        .map_or_else(|| "/".to_owned(), |n| n.to_string_lossy().into_owned())
}

/// The directory part of `path` as Docker's `SplitPathDirEntry` gives it,
/// in the path's own terms (relative stays relative): the path itself for
/// one ending in `/.`, its parent otherwise.
pub fn dir_name(path: &str) -> String {
    if let Some(dir) = path.strip_suffix("/.") {
        return if dir.is_empty() { "/" } else { dir }.to_owned();
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/".to_owned();
    }
    match trimmed.rfind('/') {
        Some(0) => "/".to_owned(),
        Some(i) => trimmed[..i].to_owned(),
        None => ".".to_owned(),
    }
}

fn not_a_directory(path: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotADirectory,
        format!("{path}: not a directory"),
    )
}

/// Stats `path` inside `root` as `docker cp` does: the final symlink is
/// followed only when the path ends in `/` or `/.` (and must then be a
/// directory); a symlink's [`PathStat::link_target`] is resolved inside
/// the root.
pub fn stat_path(root: &Root, path: &str) -> io::Result<PathStat> {
    let follow = asserts_directory(path);
    let abs = clean_abs(path);
    let last = if follow {
        FinalLink::Follow
    } else {
        FinalLink::NoFollow
    };
    let meta = root.stat(&abs, last)?;
    if follow && !meta.is_dir() {
        return Err(not_a_directory(path));
    }
    let link_target = if meta.is_symlink() {
        Some(link_target(root, path)?)
    } else {
        None
    };
    Ok(PathStat {
        name: abs
            .file_name()
            .map_or_else(|| "/".to_owned(), |n| n.to_string_lossy().into_owned()),
        size: meta.len(),
        mode: meta.mode(),
        mtime: meta.mtime(),
        link_target,
    })
}

/// Where `path` leads inside `root`, every symlink on the way and at the
/// end resolved inside the root, as an absolute path in the container. The
/// last name need not exist (a dangling link's target is where a copy
/// creates it, as Docker's `FollowSymlinkInScope` allows).
pub fn link_target(root: &Root, path: &str) -> io::Result<String> {
    let mut hops = 0;
    Ok(resolve(root, &clean_abs(path), &mut hops)?
        .to_string_lossy()
        .into_owned())
}

/// `abs` (absolute, clean) with every symlink resolved inside the root,
/// component by component; missing components are kept as they are.
fn resolve(root: &Root, abs: &Path, hops: &mut u32) -> io::Result<PathBuf> {
    let Some(name) = abs.file_name() else {
        return Ok(PathBuf::from("/"));
    };
    let parent = resolve(root, abs.parent().unwrap_or(Path::new("/")), hops)?;
    let here = parent.join(name);
    match root.try_lstat(&here)? {
        Some(m) if m.is_symlink() => {
            *hops += 1;
            if *hops > 40 {
                return Err(io::Error::from_raw_os_error(
                    rustix::io::Errno::LOOP.raw_os_error(),
                ));
            }
            let target = root.readlink(&here)?;
            let next = clean_abs(&parent.join(target).to_string_lossy());
            resolve(root, &next, hops)
        }
        _ => Ok(here),
    }
}

/// Writes a tar of `path` inside `root` into `out`, as `docker cp` reads
/// it out of a container: the final symlink is followed only when the path
/// ends in `/` or `/.`; the object is the archive's top entry, named
/// `name` (Docker: the last name of the path as given, or `.` for a
/// directory's contents), a directory with everything below it. Links
/// inside are archived as links, never followed; files are opened
/// `O_NOFOLLOW` from their resolved parent directory. Paths in `exclude`
/// (relative to the root, e.g. `proc`: a running container's kernel
/// filesystems) are left out with their subtrees; an object inside one is
/// refused (`PermissionDenied`).
///
/// `ids`: the user namespace of the container the tree is; owners are
/// written as the container sees them, as Docker's archive does.
pub fn archive_path<W: Write>(
    root: &Root,
    path: &str,
    name: &str,
    exclude: &[PathBuf],
    ids: Option<&IdMap>,
    out: W,
) -> Result<W> {
    let io_err = |op: &'static str| {
        let path = PathBuf::from(path);
        move |source: io::Error| Error::Io { op, path, source }
    };
    let abs = clean_abs(path);
    // The object, as a path with no link left in it but (without a
    // trailing `/`) the last name.
    let object = if asserts_directory(path) {
        let canon = root
            .canonical(&abs, FinalLink::Follow)
            .map_err(io_err("resolving"))?;
        if !root
            .stat(&canon, FinalLink::NoFollow)
            .map_err(io_err("inspecting"))?
            .is_dir()
        {
            return Err(io_err("archiving")(not_a_directory(path)));
        }
        Path::new("/").join(canon)
    } else {
        abs
    };
    let object_rel = object.strip_prefix("/").unwrap_or(&object).to_path_buf();
    let top = Path::new(name);
    let mut opts = DiffOptions::default();
    for e in exclude {
        if object_rel.starts_with(e) {
            return Err(io_err("archiving")(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("/{} is a kernel filesystem of the container", e.display()),
            )));
        }
        if let Ok(below) = e.strip_prefix(&object_rel) {
            // As the entries are named: under the top entry's name.
            opts.exclude.push(top.join(below));
        }
    }
    let mut tar = TreeArchiver::new(out, &opts, ids);
    match object.file_name() {
        Some(last) => {
            let parent = object.parent().unwrap_or(Path::new("/"));
            let dir = root.resolve_dir(parent).map_err(io_err("resolving"))?;
            // Absent: the same error a stat would give.
            if kiln_fs::at::lstat(&dir, last)
                .map_err(io_err("inspecting"))?
                .is_none()
            {
                return Err(io_err("archiving")(io::ErrorKind::NotFound.into()));
            }
            tar.add(&dir, last, &root.display(parent), top)?;
        }
        // The root itself: its entries, under `name`.
        None => add_children(root, &mut tar, top)?,
    }
    tar.finish()
}

fn add_children<W: Write>(root: &Root, tar: &mut TreeArchiver<'_, W>, top: &Path) -> Result<()> {
    let err = |op: &'static str| {
        let path = root.path().to_owned();
        move |source: io::Error| Error::Io { op, path, source }
    };
    let dir = root.open_dir("").map_err(err("opening directory"))?;
    let mut names = kiln_fs::at::list(&dir).map_err(err("listing"))?;
    names.sort();
    for child in names {
        let rel = if top.as_os_str().is_empty() {
            PathBuf::from(&child)
        } else {
            top.join(&child)
        };
        tar.add(&dir, &child, root.path(), &rel)?;
    }
    Ok(())
}

/// Writes a tar of everything below the root of `root` into `out`, as
/// `docker export` does: entries named relative to the root (`bin`,
/// `bin/sh`, ...), no entry for the root itself, links archived as links.
/// Paths in `exclude` (relative to the root, e.g. `proc`: mount points of
/// a running container's own namespace) are left out with their subtrees.
/// `ids` as for [`archive_path`].
pub fn archive_tree<W: Write>(
    root: &Root,
    exclude: &[PathBuf],
    ids: Option<&IdMap>,
    out: W,
) -> Result<W> {
    let opts = DiffOptions {
        exclude: exclude.to_vec(),
        ..DiffOptions::default()
    };
    let mut tar = TreeArchiver::new(out, &opts, ids);
    add_children(root, &mut tar, Path::new(""))?;
    tar.finish()
}

/// What is known about a copy's destination before extracting (Docker's
/// `CopyInfo` of the destination): the path (after following a symlink
/// at it), whether it exists and whether it is a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyDest {
    /// The destination path, with its trailing `/` or `/.` if it had one.
    pub path: String,
    /// It exists.
    pub exists: bool,
    /// It exists and is a directory.
    pub is_dir: bool,
}

/// Where an archive of the copy's source goes: extracted into `dir`, with
/// its top entry named `name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyPlan {
    /// The directory the archive is extracted into.
    pub dir: String,
    /// The name of the archive's top entry (`.` for a directory's contents).
    pub name: String,
}

/// A copy that Docker's rules refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CopyError {
    /// A directory onto an existing non-directory.
    #[error("cannot copy directory")]
    CannotCopyDir,
    /// A file to a destination that does not exist and ends in `/`.
    #[error("no such directory")]
    DirNotExists,
}

/// Docker's `PrepareArchiveCopy`: where the archive of a source (a
/// directory or not, whose top entry would be `src_name`) is extracted
/// for `dest`, and what its top entry is called.
///
/// - `dest` is an existing directory: into it, under the source's name
///   (`.`: the directory's contents land in it);
/// - `dest` exists and is not a directory: a directory source is refused
///   ([`CopyError::CannotCopyDir`]), a file replaces it;
/// - `dest` does not exist: into its parent, named as `dest` (a
///   directory's contents make a new directory there), except a file whose
///   destination ends in `/` or `/.` ([`CopyError::DirNotExists`]).
pub fn plan_copy(src_name: &str, src_is_dir: bool, dest: &CopyDest) -> Result<CopyPlan, CopyError> {
    if dest.exists && dest.is_dir {
        return Ok(CopyPlan {
            dir: dest.path.clone(),
            name: src_name.to_owned(),
        });
    }
    if dest.exists && src_is_dir {
        return Err(CopyError::CannotCopyDir);
    }
    if !dest.exists && !src_is_dir && asserts_directory(&dest.path) {
        return Err(CopyError::DirNotExists);
    }
    Ok(CopyPlan {
        dir: dir_name(&dest.path),
        name: base_name(&dest.path),
    })
}
