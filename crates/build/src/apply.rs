//! Writing into a mounted root filesystem: resolving paths inside it
//! (symlinks followed as if it were `/`, never leaving it) and creating the
//! entries of a [`CopyPlan`] with their modes, owners and times.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::context::{CopyPlan, Kind};
use crate::error::{Error, Result};
use crate::perms::{Chmod, Owner};

/// Resolves `rel` (components under `root`) to a host path, following
/// symlinks as if `root` were `/` (never leaving it). When `create` is set,
/// missing directories are made (mode 0755, owned by `owner`). The last
/// component is followed (and created) only when `follow_last` is set.
pub(crate) fn resolve_in_root(
    root: &Path,
    rel: &str,
    create: Option<Owner>,
    follow_last: bool,
) -> Result<PathBuf> {
    let mut pending: Vec<String> = rel
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(String::from)
        .collect();
    pending.reverse();
    let mut stack: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(comp) = pending.pop() {
        if comp == ".." {
            stack.pop();
            continue;
        }
        let is_last = pending.is_empty() && !follow_last;
        let mut path = root.to_path_buf();
        path.extend(&stack);
        path.push(&comp);
        if is_last {
            stack.push(comp);
            break;
        }
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return Err(Error::io(
                        "resolve",
                        &path,
                        std::io::Error::other("too many levels of symbolic links"),
                    ));
                }
                let target = fs::read_link(&path).map_err(|e| Error::io("read link", &path, e))?;
                let t = target.to_string_lossy().into_owned();
                if t.starts_with('/') {
                    stack.clear();
                }
                for c in t.split('/').rev().filter(|c| !c.is_empty() && *c != ".") {
                    pending.push(c.to_string());
                }
            }
            Ok(_) => stack.push(comp),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(owner) = create {
                    fs::create_dir(&path).map_err(|e| Error::io("create directory", &path, e))?;
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                        .map_err(|e| Error::io("chmod", &path, e))?;
                    chown(&path, owner, true)?;
                }
                stack.push(comp);
            }
            Err(e) => return Err(Error::io("stat", &path, e)),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&stack);
    Ok(out)
}

fn chown(path: &Path, owner: Owner, ignore_errors: bool) -> Result<()> {
    let meta = fs::symlink_metadata(path).map_err(|e| Error::io("stat", path, e))?;
    if meta.uid() == owner.uid && meta.gid() == owner.gid {
        return Ok(());
    }
    match std::os::unix::fs::lchown(path, Some(owner.uid), Some(owner.gid)) {
        Ok(()) => Ok(()),
        Err(_) if ignore_errors => Ok(()),
        Err(e) => Err(Error::io("chown", path, e)),
    }
}

/// A regular file of a plan, to copy once its directory exists.
struct FileJob<'p> {
    src: &'p Path,
    target: PathBuf,
    mode: u32,
    mtime: Option<(i64, u32)>,
}

impl FileJob<'_> {
    fn run(&self, owner: Owner, ignore_chown_errors: bool) -> Result<()> {
        let target = &self.target;
        if let Ok(m) = fs::symlink_metadata(target) {
            if m.is_dir() {
                return Err(Error::io(
                    "copy to",
                    target,
                    std::io::Error::other("cannot overwrite a directory with a file"),
                ));
            }
            fs::remove_file(target).map_err(|err| Error::io("remove", target, err))?;
        }
        let mut from = fs::File::open(self.src).map_err(|err| Error::io("open", self.src, err))?;
        let mut to = create_file(target, self.mode)?;
        std::io::copy(&mut from, &mut to).map_err(|err| Error::io("copy to", target, err))?;
        finish_file(
            &to,
            target,
            self.mode,
            owner,
            ignore_chown_errors,
            self.mtime,
        )
    }
}

/// Copies the files of a plan, on up to four threads when there are many
/// (creating files on overlayfs is CPU-bound kernel work).
fn copy_files(jobs: &[FileJob<'_>], owner: Owner, ignore_chown_errors: bool) -> Result<()> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    if workers < 2 || jobs.len() < 256 {
        return jobs
            .iter()
            .try_for_each(|j| j.run(owner, ignore_chown_errors));
    }
    let chunk = jobs.len().div_ceil(workers);
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .try_for_each(|j| j.run(owner, ignore_chown_errors))
                })
            })
            .collect();
        let mut result = Ok(());
        for h in handles {
            let r = h.join().unwrap_or_else(|_| {
                Err(Error::io(
                    "copy",
                    Path::new("."),
                    std::io::Error::other("a copy thread panicked"),
                ))
            });
            if result.is_ok() {
                result = r;
            }
        }
        result
    })
}

/// Creates the new regular file `path` (it does not exist) with `mode`.
fn create_file(path: &Path, mode: u32) -> Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode & 0o777)
        .open(path)
        .map_err(|e| Error::io("create", path, e))
}

/// Owner, mode and times of a file just written, through its descriptor (no
/// path walks): owner first, since a chown clears set-user-ID bits.
fn finish_file(
    f: &fs::File,
    path: &Path,
    mode: u32,
    owner: Owner,
    ignore_chown_errors: bool,
    mtime: Option<(i64, u32)>,
) -> Result<()> {
    let meta = f.metadata().map_err(|e| Error::io("stat", path, e))?;
    if (meta.uid() != owner.uid || meta.gid() != owner.gid)
        && let Err(e) = std::os::unix::fs::fchown(f, Some(owner.uid), Some(owner.gid))
        && !ignore_chown_errors
    {
        return Err(Error::io("chown", path, e));
    }
    if meta.mode() & 0o7777 != mode {
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("chmod", path, e))?;
    }
    if let Some((s, ns)) = mtime {
        let t = filetime::FileTime::from_unix_time(s, ns);
        filetime::set_file_handle_times(f, Some(t), Some(t))
            .map_err(|e| Error::io("set times", path, e))?;
    }
    Ok(())
}

/// How to apply a plan.
#[derive(Debug, Clone, Default)]
pub(crate) struct ApplyOptions {
    pub(crate) owner: Owner,
    /// `--chown` was given (archives keep their own ownership otherwise).
    pub(crate) chown_given: bool,
    pub(crate) chmod: Option<Chmod>,
    pub(crate) ignore_chown_errors: bool,
}

/// Creates the plan's entries inside the rootfs mounted at `root`.
pub(crate) fn apply_copy(plan: &CopyPlan, root: &Path, opts: &ApplyOptions) -> Result<()> {
    let owner = opts.owner;
    let ig = opts.ignore_chown_errors;
    let create = Some(owner);
    // Where entries go: the destination itself for a single file copied to a
    // non-directory destination, unless that destination is an existing directory.
    let mut base = plan.dest.clone();
    let mut dest_is_dir = plan.dest_is_dir;
    if !dest_is_dir {
        let host = resolve_in_root(root, &plan.dest, None, true)?;
        if fs::metadata(&host).is_ok_and(|m| m.is_dir()) {
            dest_is_dir = true;
            if let Some(name) = &plan.single_name {
                base = format!("{}/{}", plan.dest.trim_end_matches('/'), name);
            }
        }
    }
    if dest_is_dir && plan.single_name.is_none() || plan.entries.iter().any(|e| !e.rel.is_empty()) {
        let host = resolve_in_root(root, &plan.dest, create, true)?;
        if !host.exists() {
            fs::create_dir(&host).map_err(|e| Error::io("create directory", &host, e))?;
            chown(&host, owner, ig)?;
        }
    }
    // Directories this copy resolved or made, so that each file costs no
    // path walk (entries come sorted, directories before what they hold).
    let mut dirs: HashMap<String, PathBuf> = HashMap::new();
    let mut jobs: Vec<FileJob<'_>> = Vec::new();
    for e in &plan.entries {
        if let Kind::Archive {
            src, compression, ..
        } = &e.kind
        {
            let owner = opts.chown_given.then_some(owner);
            crate::archive::extract(src, *compression, root, &plan.dest, owner, ig)?;
            continue;
        }
        let target_rel = if e.rel.is_empty() {
            base.clone()
        } else {
            format!("{}/{}", plan.dest, e.rel)
        };
        let (parent, name) = match target_rel.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => ("", target_rel.as_str()),
        };
        let parent_host = match dirs.get(parent) {
            Some(p) => p.clone(),
            None => {
                let p = resolve_in_root(root, parent, create, true)?;
                dirs.insert(parent.to_string(), p.clone());
                p
            }
        };
        let target = parent_host.join(name);
        if let Kind::File { src, .. } = &e.kind {
            // The existing entry is checked by the job itself.
            let mode = match &opts.chmod {
                Some(c) => c.apply(e.mode, false),
                None => e.mode,
            };
            jobs.push(FileJob {
                src,
                target,
                mode,
                mtime: e.mtime,
            });
            continue;
        }
        let existing = fs::symlink_metadata(&target).ok();
        let mode = match &opts.chmod {
            Some(c) => c.apply(e.mode, e.kind == Kind::Dir),
            None => e.mode,
        };
        match &e.kind {
            Kind::Dir => {
                if existing.as_ref().is_some_and(|m| !m.is_dir()) {
                    fs::remove_file(&target).map_err(|err| Error::io("remove", &target, err))?;
                }
                if !existing.as_ref().is_some_and(|m| m.is_dir()) {
                    fs::create_dir(&target)
                        .map_err(|err| Error::io("create directory", &target, err))?;
                }
                fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                    .map_err(|err| Error::io("chmod", &target, err))?;
                // A real directory now (never a symlink): children go here.
                dirs.insert(target_rel.clone(), target.clone());
            }
            Kind::Archive { .. } => {}
            Kind::File { .. } | Kind::Inline(_) | Kind::Symlink(_) => {
                if let Some(m) = &existing {
                    if m.is_dir() {
                        return Err(Error::io(
                            "copy to",
                            &target,
                            std::io::Error::other("cannot overwrite a directory with a file"),
                        ));
                    }
                    fs::remove_file(&target).map_err(|err| Error::io("remove", &target, err))?;
                }
                match &e.kind {
                    Kind::Inline(data) => {
                        let mut to = create_file(&target, mode)?;
                        std::io::Write::write_all(&mut to, data)
                            .map_err(|err| Error::io("write", &target, err))?;
                        finish_file(&to, &target, mode, owner, ig, e.mtime)?;
                        continue;
                    }
                    Kind::Symlink(link) => {
                        std::os::unix::fs::symlink(link, &target)
                            .map_err(|err| Error::io("symlink", &target, err))?;
                    }
                    // Files are jobs (above); directories and archives are done.
                    Kind::File { .. } | Kind::Dir | Kind::Archive { .. } => {}
                }
                if !matches!(e.kind, Kind::Symlink(_)) {
                    fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                        .map_err(|err| Error::io("chmod", &target, err))?;
                }
            }
        }
        chown(&target, owner, ig)?;
        if let Some((s, ns)) = e.mtime {
            let t = filetime::FileTime::from_unix_time(s, ns);
            filetime::set_symlink_file_times(&target, t, t)
                .map_err(|err| Error::io("set times", &target, err))?;
        }
    }
    copy_files(&jobs, owner, ig)
}
