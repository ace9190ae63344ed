//! Writing a [`CopyPlan`] into a mounted root filesystem through kiln-fs:
//! every path is resolved inside the rootfs (its symlinks followed as if it
//! were `/`, never leaving it), the last name of each entry is created,
//! replaced or changed with `*at` calls that never follow it, and sources
//! are read through the plan's own source root. ADD's local archives are
//! extracted by kiln-layer's unpacker with the destination as its root.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

use kiln_fs::{FileType, FinalLink, Root, at};

use crate::context::{CopyPlan, Entry, Kind};
use crate::error::{Error, Result};
use crate::perms::{Chmod, Owner};

/// How to apply a plan.
#[derive(Debug, Clone, Default)]
pub(crate) struct ApplyOptions {
    pub(crate) owner: Owner,
    /// `--chown` was given (archives keep their own ownership otherwise).
    pub(crate) chown_given: bool,
    pub(crate) chmod: Option<Chmod>,
    pub(crate) ignore_chown_errors: bool,
}

/// `mkdir -p` of `rel` in the rootfs; the directories it creates are owned
/// by `owner` (as Docker's COPY makes missing parents), or by the caller
/// when that chown fails and chown errors are ignored.
pub(crate) fn make_dirs(root: &Root, rel: &str, owner: Owner, ignore: bool) -> Result<OwnedFd> {
    match root.mkdir_all_owned(rel, 0o755, owner.uid, owner.gid) {
        Ok(fd) => Ok(fd),
        Err(_) if ignore => root
            .mkdir_all(rel, 0o755)
            .map_err(|e| Error::io("create directory", root.display(rel), e)),
        Err(e) => Err(Error::io("create directory", root.display(rel), e)),
    }
}

/// Splits a rootfs path into its parent and last name (`None`: the root).
fn split(rel: &str) -> Option<(&str, &str)> {
    let rel = rel.trim_end_matches('/');
    match rel.rsplit_once('/') {
        Some((p, n)) if !n.is_empty() => Some((p, n)),
        None if !rel.is_empty() => Some(("", rel)),
        _ => None,
    }
}

/// A regular file of a plan, to copy once its directory exists.
struct FileJob<'p> {
    parent: Arc<OwnedFd>,
    name: String,
    /// For messages.
    target: String,
    src: &'p str,
    mode: u32,
    mtime: Option<(i64, u32)>,
}

fn chown_fd(f: &std::fs::File, owner: Owner) -> io::Result<()> {
    std::os::unix::fs::fchown(f, Some(owner.uid), Some(owner.gid))
}

impl FileJob<'_> {
    fn run(&self, source: &Root, shown: &Root, owner: Owner, ig: bool) -> Result<()> {
        let name = OsStr::new(&self.name);
        let err = |op: &'static str| {
            let p = shown.display(&self.target);
            move |e: io::Error| Error::io(op, p, e)
        };
        match at::file_type(&*self.parent, name).map_err(err("stat"))? {
            Some(FileType::Dir) => {
                return Err(err("copy to")(io::Error::other(
                    "cannot overwrite a directory with a file",
                )));
            }
            Some(_) => at::remove_all(&*self.parent, name).map_err(err("remove"))?,
            None => {}
        }
        let mut from = source
            .open_file(self.src, FinalLink::NoFollow)
            .map_err(|e| Error::io("open", source.display(self.src), e))?;
        let mut to = at::create(&*self.parent, name, self.mode & 0o777).map_err(err("create"))?;
        io::copy(&mut from, &mut to).map_err(err("copy to"))?;
        finish_file(
            &to,
            &shown.display(&self.target),
            self.mode,
            owner,
            ig,
            self.mtime,
        )
    }
}

/// Copies the files of a plan, on up to four threads when there are many
/// (creating files on overlayfs is CPU-bound kernel work).
fn copy_files(
    jobs: &[FileJob<'_>],
    source: &Root,
    shown: &Root,
    owner: Owner,
    ig: bool,
) -> Result<()> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    if workers < 2 || jobs.len() < 256 {
        return jobs
            .iter()
            .try_for_each(|j| j.run(source, shown, owner, ig));
    }
    let chunk = jobs.len().div_ceil(workers);
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .try_for_each(|j| j.run(source, shown, owner, ig))
                })
            })
            .collect();
        let mut result = Ok(());
        for h in handles {
            let r = h.join().unwrap_or_else(|_| {
                Err(Error::io(
                    "copy",
                    shown.path(),
                    io::Error::other("a copy thread panicked"),
                ))
            });
            if result.is_ok() {
                result = r;
            }
        }
        result
    })
}

/// Owner, mode and times of a file just written, through its descriptor:
/// owner first, since a chown clears set-user-ID bits.
fn finish_file(
    f: &std::fs::File,
    path: &Path,
    mode: u32,
    owner: Owner,
    ignore_chown_errors: bool,
    mtime: Option<(i64, u32)>,
) -> Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = f.metadata().map_err(|e| Error::io("stat", path, e))?;
    if (meta.uid() != owner.uid || meta.gid() != owner.gid)
        && let Err(e) = chown_fd(f, owner)
        && !ignore_chown_errors
    {
        return Err(Error::io("chown", path, e));
    }
    if meta.mode() & 0o7777 != mode {
        use std::os::unix::fs::PermissionsExt as _;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("chmod", path, e))?;
    }
    if let Some((s, ns)) = mtime {
        let t = filetime::FileTime::from_unix_time(s, ns);
        filetime::set_file_handle_times(f, Some(t), Some(t))
            .map_err(|e| Error::io("set times", path, e))?;
    }
    Ok(())
}

/// Owner, mode and times of `name` in `dir` (not a regular file just
/// written: a directory or a symlink), never through a link.
fn finish_at(
    dir: &OwnedFd,
    name: &str,
    shown: &Path,
    mode: Option<u32>,
    owner: Owner,
    ig: bool,
    mtime: Option<(i64, u32)>,
) -> Result<()> {
    let n = OsStr::new(name);
    let meta = at::lstat(dir, n)
        .map_err(|e| Error::io("stat", shown, e))?
        .ok_or_else(|| Error::io("stat", shown, io::ErrorKind::NotFound.into()))?;
    if (meta.uid() != owner.uid || meta.gid() != owner.gid)
        && let Err(e) = at::chown(dir, n, owner.uid, owner.gid)
        && !ig
    {
        return Err(Error::io("chown", shown, e));
    }
    if let Some(mode) = mode {
        at::chmod(dir, n, mode).map_err(|e| Error::io("chmod", shown, e))?;
    }
    if let Some((s, ns)) = mtime {
        at::set_times(dir, n, s, ns).map_err(|e| Error::io("set times", shown, e))?;
    }
    Ok(())
}

/// Creates the plan's entries inside the rootfs `root`.
pub(crate) fn apply_copy(plan: &CopyPlan, root: &Root, opts: &ApplyOptions) -> Result<()> {
    let owner = opts.owner;
    let ig = opts.ignore_chown_errors;
    // Where entries go: the destination itself for a single file copied to a
    // non-directory destination, unless that destination is an existing directory.
    let mut base = plan.dest.clone();
    let mut dest_is_dir = plan.dest_is_dir;
    if !dest_is_dir
        && root
            .stat(&plan.dest, FinalLink::Follow)
            .is_ok_and(|m| m.is_dir())
    {
        dest_is_dir = true;
        if let Some(name) = &plan.single_name {
            base = format!("{}/{}", plan.dest.trim_end_matches('/'), name);
        }
    }
    if dest_is_dir && plan.single_name.is_none() || plan.entries.iter().any(|e| !e.rel.is_empty()) {
        make_dirs(root, &plan.dest, owner, ig)?;
    }
    let source = plan.source.as_ref();
    let need_source = || {
        source.ok_or_else(|| {
            Error::io(
                "copy",
                root.display(&plan.dest),
                io::Error::other("the copy has files but no source tree"),
            )
        })
    };
    // Directories this copy resolved or made, so that each file costs no
    // path walk (entries come sorted, directories before what they hold).
    let mut dirs: HashMap<String, Arc<OwnedFd>> = HashMap::new();
    let mut jobs: Vec<FileJob<'_>> = Vec::new();
    for e in &plan.entries {
        if let Kind::Archive {
            src, compression, ..
        } = &e.kind
        {
            extract(need_source()?, src, *compression, root, &plan.dest, opts)?;
            continue;
        }
        let target_rel = if e.rel.is_empty() {
            base.clone()
        } else {
            format!("{}/{}", plan.dest, e.rel)
        };
        let shown = root.display(&target_rel);
        let Some((parent, name)) = split(&target_rel) else {
            // The destination is the root itself: nothing to create there.
            continue;
        };
        let parent_fd = match dirs.get(parent) {
            Some(p) => p.clone(),
            None => {
                let p = Arc::new(make_dirs(root, parent, owner, ig)?);
                dirs.insert(parent.to_string(), p.clone());
                p
            }
        };
        if let Kind::File { src, .. } = &e.kind {
            // The existing entry is checked by the job itself.
            let mode = match &opts.chmod {
                Some(c) => c.apply(e.mode, false),
                None => e.mode,
            };
            jobs.push(FileJob {
                parent: parent_fd,
                name: name.to_string(),
                target: target_rel.clone(),
                src,
                mode,
                mtime: e.mtime,
            });
            continue;
        }
        let placed = Placed {
            parent: &parent_fd,
            name,
            target: &target_rel,
            shown: &shown,
        };
        if let Some(sub) = place(root, e, &placed, opts)? {
            dirs.insert(target_rel.clone(), Arc::new(sub));
        }
    }
    if !jobs.is_empty() {
        copy_files(&jobs, need_source()?, root, owner, ig)?;
    }
    for part in &plan.more {
        apply_copy(part, root, opts)?;
    }
    Ok(())
}

/// Where one entry of a copy goes: its parent directory (resolved), its
/// name there, its path in the rootfs and how messages show it.
struct Placed<'a> {
    parent: &'a Arc<OwnedFd>,
    name: &'a str,
    target: &'a str,
    shown: &'a Path,
}

/// Creates a directory, inline file or symlink entry, replacing what is
/// there (a directory is only replaced by a directory). Returns a new
/// directory's descriptor, for the entries under it.
fn place(root: &Root, e: &Entry, at_: &Placed<'_>, opts: &ApplyOptions) -> Result<Option<OwnedFd>> {
    let (owner, ig) = (opts.owner, opts.ignore_chown_errors);
    let (parent_fd, name, shown): (&OwnedFd, &str, &Path) = (at_.parent, at_.name, at_.shown);
    let n = OsStr::new(name);
    let existing = at::file_type(parent_fd, n).map_err(|err| Error::io("stat", shown, err))?;
    let mode = match &opts.chmod {
        Some(c) => c.apply(e.mode, e.kind == Kind::Dir),
        None => e.mode,
    };
    match &e.kind {
        Kind::Dir => {
            if existing.is_some_and(|t| t != FileType::Dir) {
                at::remove_all(parent_fd, n).map_err(|err| Error::io("remove", shown, err))?;
            }
            if existing != Some(FileType::Dir) {
                at::mkdir(parent_fd, n, 0o700)
                    .map_err(|err| Error::io("create directory", shown, err))?;
            }
            finish_at(parent_fd, name, shown, Some(mode), owner, ig, e.mtime)?;
            // A real directory now (never a symlink): children go here.
            // An O_PATH descriptor, so that a mode without read
            // permission does not matter.
            let sub = root
                .resolve_dir(at_.target)
                .map_err(|err| Error::io("open directory", shown, err))?;
            return Ok(Some(sub));
        }
        Kind::Inline(data) => {
            if existing == Some(FileType::Dir) {
                return Err(Error::io(
                    "copy to",
                    shown,
                    io::Error::other("cannot overwrite a directory with a file"),
                ));
            }
            if existing.is_some() {
                at::remove_all(parent_fd, n).map_err(|err| Error::io("remove", shown, err))?;
            }
            let mut to = at::create(parent_fd, n, mode & 0o777)
                .map_err(|err| Error::io("create", shown, err))?;
            io::Write::write_all(&mut to, data).map_err(|err| Error::io("write", shown, err))?;
            finish_file(&to, shown, mode, owner, ig, e.mtime)?;
        }
        Kind::Symlink(link) => {
            if existing == Some(FileType::Dir) {
                return Err(Error::io(
                    "copy to",
                    shown,
                    io::Error::other("cannot overwrite a directory with a file"),
                ));
            }
            if existing.is_some() {
                at::remove_all(parent_fd, n).map_err(|err| Error::io("remove", shown, err))?;
            }
            at::symlink(link, parent_fd, n).map_err(|err| Error::io("symlink", shown, err))?;
            finish_at(parent_fd, name, shown, None, owner, ig, e.mtime)?;
        }
        // Files are jobs and archives are extracted (by the caller).
        Kind::File { .. } | Kind::Archive { .. } => {}
    }
    Ok(None)
}

/// ADD of a local archive: extracted into `dest` (created when missing),
/// which is the extraction's root, by kiln-layer's unpacker.
fn extract(
    source: &Root,
    src: &str,
    compression: crate::decompress::Compression,
    root: &Root,
    dest: &str,
    opts: &ApplyOptions,
) -> Result<()> {
    make_dirs(root, dest, opts.owner, opts.ignore_chown_errors)?;
    let into = root
        .subdir(dest)
        .map_err(|e| Error::io("open directory", root.display(dest), e))?;
    let reader = crate::decompress::open(source, Path::new(src), compression)
        .map_err(|e| Error::io("open", source.display(src), e))?;
    let xopts = kiln_layer::ExtractOptions {
        owner: opts.chown_given.then_some((opts.owner.uid, opts.owner.gid)),
        ignore_owner_errors: opts.ignore_chown_errors,
        // A build that may not chown (rootless) may not mknod either:
        // device nodes are left out, as Docker does in a user namespace.
        skip_devices: opts.ignore_chown_errors,
    };
    kiln_layer::extract_archive(reader, kiln_layer::Compression::None, &into, &xopts)
        .map(drop)
        .map_err(|e| {
            // The whole chain in one message: "reading layer archive: the
            // archive ends inside NAME", "unsafe path ...".
            let mut msg = e.to_string();
            let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(&e);
            while let Some(c) = cur {
                msg.push_str(": ");
                msg.push_str(&c.to_string());
                cur = c.source();
            }
            Error::io("extract", source.display(src), io::Error::other(msg))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{ContextDir, PlanOptions, plan_copy};
    use std::fs;
    use std::os::unix::fs::{MetadataExt, symlink};

    /// `tmp/{ctx, rootfs, outside/secret}`.
    struct Scene {
        tmp: tempfile::TempDir,
    }

    const SECRET: &str = "host-secret-marker";

    impl Scene {
        fn new() -> Scene {
            let tmp = tempfile::tempdir().expect("tempdir");
            for d in ["ctx", "rootfs/elsewhere", "outside/dir"] {
                fs::create_dir_all(tmp.path().join(d)).expect("mkdir");
            }
            fs::write(tmp.path().join("outside/secret"), SECRET).expect("write");
            Scene { tmp }
        }
        fn p(&self, rel: &str) -> std::path::PathBuf {
            self.tmp.path().join(rel)
        }
        fn rootfs(&self) -> Root {
            Root::open(self.p("rootfs")).expect("root")
        }
        fn ctx(&self) -> ContextDir {
            ContextDir::open(&self.p("ctx"), None, None).expect("context")
        }
        fn add(&self, src: &str, dest: &str) -> Result<()> {
            let ctx = self.ctx();
            let opts = PlanOptions {
                extract_archives: true,
                ..PlanOptions::default()
            };
            let plan = plan_copy(&ctx.tree(), &[src.into()], dest, "/", &opts, 1)?;
            let aopts = ApplyOptions {
                ignore_chown_errors: true,
                ..ApplyOptions::default()
            };
            apply_copy(&plan, &self.rootfs(), &aopts)
        }
        fn outside_untouched(&self) {
            assert_eq!(
                fs::read_to_string(self.p("outside/secret")).expect("read"),
                SECRET
            );
            let mut names: Vec<_> = fs::read_dir(self.p("outside"))
                .expect("list")
                .map(|e| e.expect("entry").file_name())
                .collect();
            names.sort();
            assert_eq!(names, ["dir", "secret"]);
            assert!(
                fs::read_dir(self.p("outside/dir"))
                    .expect("list")
                    .next()
                    .is_none()
            );
        }
    }

    fn raw_tar(entries: &[(&str, tar::EntryType, &str, &[u8], u32)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, kind, link, data, mode) in entries {
            let mut h = tar::Header::new_gnu();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(*mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_000);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    #[test]
    fn add_of_an_archive_writing_through_its_own_link_fails() {
        let s = Scene::new();
        let tar = raw_tar(&[
            ("lnk", tar::EntryType::Symlink, "/elsewhere", b"", 0o777),
            ("lnk/x", tar::EntryType::Regular, "", b"through", 0o644),
        ]);
        fs::write(s.p("ctx/evil.tar"), tar).expect("write");
        let err = s
            .add("evil.tar", "/dest/")
            .expect_err("refused as Docker refuses it");
        let chain = format!("{err:?}");
        assert!(chain.contains("lnk/x"), "{chain}");
        assert!(
            fs::read_dir(s.p("rootfs/elsewhere"))
                .expect("list")
                .next()
                .is_none(),
            "nothing written through the link into the image's /elsewhere"
        );
        // The same with a link to the host's marker directory.
        let host = s.p("outside/dir");
        let tar = raw_tar(&[
            (
                "h",
                tar::EntryType::Symlink,
                host.to_str().expect("utf-8"),
                b"",
                0o777,
            ),
            ("h/x", tar::EntryType::Regular, "", b"through", 0o644),
        ]);
        fs::write(s.p("ctx/evil2.tar"), tar).expect("write");
        assert!(s.add("evil2.tar", "/").is_err());
        s.outside_untouched();
    }

    #[test]
    fn add_keeps_special_bits_and_whiteout_names_and_fails_on_truncation() {
        let s = Scene::new();
        let tar = raw_tar(&[
            (
                "bin/suid",
                tar::EntryType::Regular,
                "",
                b"#!/bin/sh\n",
                0o4755,
            ),
            (".wh.gone", tar::EntryType::Regular, "", b"", 0o644),
        ]);
        fs::write(s.p("rootfs/gone"), "stays").expect("write");
        fs::write(s.p("ctx/ok.tar"), &tar).expect("write");
        s.add("ok.tar", "/").expect("extract");
        let m = fs::metadata(s.p("rootfs/bin/suid")).expect("stat");
        assert_eq!(m.mode() & 0o7777, 0o4755);
        assert!(s.p("rootfs/.wh.gone").is_file());
        assert_eq!(
            fs::read_to_string(s.p("rootfs/gone")).expect("read"),
            "stays"
        );
        let big = raw_tar(&[("big", tar::EntryType::Regular, "", &[1u8; 8192], 0o644)]);
        fs::write(s.p("ctx/cut.tar"), &big[..512 + 3000]).expect("write");
        let err = s.add("cut.tar", "/cut/").expect_err("truncated");
        assert!(format!("{err:?}").contains("ends inside big"), "{err:?}");
    }

    #[test]
    fn copy_of_links_out_of_the_context_copies_the_links_never_their_targets() {
        let s = Scene::new();
        fs::create_dir(s.p("ctx/d")).expect("mkdir");
        symlink(s.p("outside/secret"), s.p("ctx/d/abs")).expect("symlink");
        symlink("../../outside/secret", s.p("ctx/d/up")).expect("symlink");
        symlink(s.p("outside"), s.p("ctx/outdir")).expect("symlink");
        let ctx = s.ctx();
        let plan = plan_copy(
            &ctx.tree(),
            &["d".into()],
            "/app/",
            "/",
            &PlanOptions::default(),
            1,
        )
        .expect("plan");
        let aopts = ApplyOptions {
            ignore_chown_errors: true,
            ..ApplyOptions::default()
        };
        apply_copy(&plan, &s.rootfs(), &aopts).expect("apply");
        assert_eq!(
            fs::read_link(s.p("rootfs/app/abs")).expect("link"),
            s.p("outside/secret")
        );
        assert_eq!(
            fs::read_link(s.p("rootfs/app/up")).expect("link"),
            std::path::Path::new("../../outside/secret")
        );
        // Naming a link that leads out of the context: resolved inside it,
        // so not found (as BuildKit), and the host file is never read.
        for named in ["d/abs", "d/up", "outdir/secret"] {
            assert!(
                matches!(
                    plan_copy(
                        &ctx.tree(),
                        &[named.into()],
                        "/x",
                        "/",
                        &PlanOptions::default(),
                        1
                    ),
                    Err(Error::SourceNotFound { .. })
                ),
                "{named}"
            );
        }
        s.outside_untouched();
    }
}
