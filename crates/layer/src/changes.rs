//! `docker diff`: what a container changed in its filesystem, as `A`
//! (added), `C` (changed) and `D` (deleted) lines, from its snapshot's
//! overlay upper directory (against the lower layers) or from a copied tree
//! against the tree it was copied from.
//!
//! Both trees are walked through [`kiln_fs::Root`]: links are reported,
//! never followed, and a lookup in a lower layer stays inside that layer.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use kiln_fs::{FileType, Metadata, Root};

use crate::{Error, Result};

/// The kind of a change, as `docker diff` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// `C`: the entry existed in the image and was changed (or something
    /// below it was).
    Modify,
    /// `A`: the entry is new.
    Add,
    /// `D`: the entry was deleted.
    Delete,
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChangeKind::Modify => "C",
            ChangeKind::Add => "A",
            ChangeKind::Delete => "D",
        })
    }
}

/// One line of `docker diff`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// The absolute path in the container (`/etc/passwd`).
    pub path: PathBuf,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.path.display())
    }
}

fn open(path: &Path) -> Result<Root> {
    Root::open(path).map_err(|source| Error::Io {
        op: "opening directory",
        path: path.to_owned(),
        source,
    })
}

fn walk_err(root: &Path) -> impl FnOnce(io::Error) -> Error {
    let path = root.to_owned();
    move |source| Error::Io {
        op: "walking",
        path,
        source,
    }
}

/// Docker's time comparison: equal, or the same second with one side
/// without nanoseconds (a time that went through a tar).
fn same_time(a: &Metadata, b: &Metadata) -> bool {
    a.mtime() == b.mtime()
        && (a.mtime_nsec() == b.mtime_nsec() || a.mtime_nsec() == 0 || b.mtime_nsec() == 0)
}

fn is_excluded(exclude: &[PathBuf], rel: &Path) -> bool {
    exclude.iter().any(|e| e == rel)
}

/// Whether the directory `rel` of `tree` holds nothing but excluded paths
/// (and at least one): its mtime moved when the runtime created the stubs
/// in it, which is no change of the container's.
fn only_excluded(tree: &Root, exclude: &[PathBuf], rel: &Path) -> bool {
    if !exclude.iter().any(|e| e.parent() == Some(rel)) {
        return false;
    }
    tree.list(rel)
        .is_ok_and(|names| names.iter().all(|n| is_excluded(exclude, &rel.join(n))))
}

fn overlay_opaque(upper: &Root, rel: &Path) -> bool {
    let Ok(dir) = upper.open_dir(rel) else {
        return false;
    };
    let mut buf = [0u8; 4];
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|key| matches!(rustix::fs::fgetxattr(&dir, *key, &mut buf), Ok(1) if buf[0] == b'y'))
}

/// The changes an overlay upper directory records against its lower layers
/// (`lowers`, any order), as `docker diff` reports them for an overlay2
/// container: a whiteout or an opaque directory is `D`, an entry found in
/// no lower layer `A`, one found in a lower layer `C` (a directory whose
/// size, mode and mtime are unchanged is not reported unless something
/// below it is), and the parent of every `A` or `D` is `C`. Paths in
/// `exclude` (relative, such as `proc` or `etc/hostname`: the runtime's
/// mount points) are left out with their subtrees, and the mtime of a
/// directory holding nothing else is not counted as a change. Sorted by
/// path component.
pub fn overlay_changes(
    upper: &Path,
    lowers: &[PathBuf],
    exclude: &[PathBuf],
) -> Result<Vec<Change>> {
    let up = open(upper)?;
    let lowers = lowers.iter().map(|l| open(l)).collect::<Result<Vec<_>>>()?;
    let mut changes = Vec::new();
    let mut changed_dirs: HashSet<PathBuf> = HashSet::new();
    up.walk("", &mut |rel, meta| {
        if is_excluded(exclude, rel) {
            return Ok(false);
        }
        let whiteout = meta.file_type() == FileType::CharDevice && meta.rdev() == 0;
        let kind = if whiteout || (meta.is_dir() && overlay_opaque(&up, rel)) {
            ChangeKind::Delete
        } else {
            let mut kind = ChangeKind::Add;
            for lower in &lowers {
                if let Some(old) = lower.try_lstat(rel)? {
                    if old.is_dir()
                        && meta.is_dir()
                        && old.len() == meta.len()
                        && old.mode() == meta.mode()
                        && (same_time(&old, meta) || only_excluded(&up, exclude, rel))
                    {
                        // The same directory: only a parent of changes.
                        return Ok(true);
                    }
                    kind = ChangeKind::Modify;
                    break;
                }
            }
            kind
        };
        if meta.is_dir() {
            changed_dirs.insert(rel.to_owned());
        }
        if kind != ChangeKind::Modify
            && let Some(parent) = rel.parent()
            && !parent.as_os_str().is_empty()
            && changed_dirs.insert(parent.to_owned())
        {
            changes.push(Change {
                kind: ChangeKind::Modify,
                path: Path::new("/").join(parent),
            });
        }
        changes.push(Change {
            kind,
            path: Path::new("/").join(rel),
        });
        Ok(!whiteout)
    })
    .map_err(walk_err(upper))?;
    sort(&mut changes);
    Ok(changes)
}

/// The changes of `upper`, a tree that started as a copy of `lower` (a
/// snapshotter without overlayfs), as Docker's naive diff reports them:
/// `A` for every entry not in `lower` (a new directory's contents too), `D`
/// for the top of every subtree gone from it, `C` for an entry whose type,
/// mode, owner or device changed (for a non-directory also its size or
/// mtime) and for every directory with changes below it. `exclude` as for
/// [`overlay_changes`]. Sorted by path component.
pub fn dir_changes(lower: &Path, upper: &Path, exclude: &[PathBuf]) -> Result<Vec<Change>> {
    let (old, new) = (open(lower)?, open(upper)?);
    let mut changes = Vec::new();
    new.walk("", &mut |rel, meta| {
        if is_excluded(exclude, rel) {
            return Ok(false);
        }
        let kind = match old.try_lstat(rel)? {
            None => Some(ChangeKind::Add),
            Some(o) => {
                let differs = o.mode() != meta.mode()
                    || o.uid() != meta.uid()
                    || o.gid() != meta.gid()
                    || o.rdev() != meta.rdev()
                    || (!meta.is_dir() && (!same_time(&o, meta) || o.len() != meta.len()));
                // A directory that replaced a non-directory: everything
                // below it is new.
                if differs && meta.is_dir() && !o.is_dir() {
                    changes.push(Change {
                        kind: ChangeKind::Modify,
                        path: Path::new("/").join(rel),
                    });
                    return all_added(&new, rel, exclude, &mut changes).map(|()| false);
                }
                differs.then_some(ChangeKind::Modify)
            }
        };
        if let Some(kind) = kind {
            changes.push(Change {
                kind,
                path: Path::new("/").join(rel),
            });
        }
        Ok(true)
    })
    .map_err(walk_err(upper))?;
    old.walk("", &mut |rel, _| {
        if is_excluded(exclude, rel) {
            return Ok(false);
        }
        if new.try_lstat(rel)?.is_none() {
            changes.push(Change {
                kind: ChangeKind::Delete,
                path: Path::new("/").join(rel),
            });
            return Ok(false);
        }
        // Below a directory that became something else, the upper walk
        // reported the change already.
        Ok(new.lstat(rel)?.is_dir())
    })
    .map_err(walk_err(lower))?;
    // Every directory with changes below it is changed.
    let mut parents: HashSet<PathBuf> = HashSet::new();
    for c in &changes {
        let mut p = c.path.parent();
        while let Some(dir) = p {
            if dir == Path::new("/") {
                break;
            }
            parents.insert(dir.to_owned());
            p = dir.parent();
        }
    }
    let reported: HashSet<PathBuf> = changes.iter().map(|c| c.path.clone()).collect();
    for dir in parents {
        if !reported.contains(&dir) {
            changes.push(Change {
                kind: ChangeKind::Modify,
                path: dir,
            });
        }
    }
    sort(&mut changes);
    Ok(changes)
}

fn all_added(
    tree: &Root,
    rel: &Path,
    exclude: &[PathBuf],
    out: &mut Vec<Change>,
) -> io::Result<()> {
    tree.walk(rel, &mut |p, _| {
        if is_excluded(exclude, p) {
            return Ok(false);
        }
        out.push(Change {
            kind: ChangeKind::Add,
            path: Path::new("/").join(p),
        });
        Ok(true)
    })
}

/// Pre-order: by path component, so a directory comes right before what
/// is below it (as a sorted walk gives them).
fn sort(changes: &mut [Change]) {
    changes.sort_by(|a, b| {
        let order = a.path.components().cmp(b.path.components());
        if order == Ordering::Equal {
            (a.kind as u8).cmp(&(b.kind as u8))
        } else {
            order
        }
    });
}
