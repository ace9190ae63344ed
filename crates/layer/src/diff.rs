//! Making layers: a deterministic OCI layer tar from an overlay upper
//! directory, or from the difference between two directory trees.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use kiln_model::IdMap;
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat};
use tar::{EntryType, Header};

use crate::pax::{self, XATTR_PREFIX, is_overlay_private};
use crate::{Error, OPAQUE_WHITEOUT, Result, WHITEOUT_PREFIX};

/// How layers are made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiffOptions {
    /// `SOURCE_DATE_EPOCH`: every mtime newer than this is written as this.
    /// The caller reads the environment; the library does not.
    pub source_date_epoch: Option<i64>,
    /// Paths (relative to the tree's root, e.g. `proc` or `etc/hostname`)
    /// left out of the layer with everything below them: the mount points a
    /// runtime created, which Docker keeps in a never-committed init layer.
    pub exclude: Vec<PathBuf>,
}

/// Writes, as a layer tar into `out`, the change an overlay upper directory
/// records: its files, directories, links and devices; overlay whiteouts
/// (0/0 character devices) as `.wh.NAME`; opaque directories
/// (`trusted.overlay.opaque=y`) followed by `.wh..wh..opq`. Entries are sorted
/// by path, hardlinks are written once and then as link entries, xattrs are
/// kept except overlayfs's own. Returns `out` after the end-of-archive blocks.
pub fn diff_overlay_upper<W: Write>(upper: &Path, opts: &DiffOptions, out: W) -> Result<W> {
    upper_with(upper, opts, None, out)
}

/// [`diff_overlay_upper`] of an upper directory written from inside a user
/// namespace: every owner is written as the container id `ids` maps the
/// host id to ([`IdMap::container_uid`]; unmapped host ids unchanged).
pub fn diff_overlay_upper_mapped<W: Write>(
    upper: &Path,
    opts: &DiffOptions,
    ids: &IdMap,
    out: W,
) -> Result<W> {
    upper_with(upper, opts, Some(ids), out)
}

fn upper_with<W: Write>(
    upper: &Path,
    opts: &DiffOptions,
    ids: Option<&IdMap>,
    out: W,
) -> Result<W> {
    let mut em = Emitter::new(out, opts, ids);
    let dir = open_dir(upper)?;
    em.walk_upper(Path::new(""), &dir, upper)?;
    em.finish()
}

/// Writes, as a layer tar into `out`, what `upper` changes relative to
/// `lower` (for snapshotters without overlayfs, where `upper` started as a
/// copy of `lower`). Metadata is compared first; file contents only when size
/// and mtime agree but the inode or ctime differ. Removed names become
/// `.wh.NAME`; unchanged parents of changed entries are written too.
pub fn diff_dirs<W: Write>(lower: &Path, upper: &Path, opts: &DiffOptions, out: W) -> Result<W> {
    dirs_with(lower, upper, opts, None, out)
}

/// [`diff_dirs`] of a tree written from inside a user namespace: owners are
/// mapped as [`diff_overlay_upper_mapped`] maps them. Which entries differ is
/// still decided on the host ids.
pub fn diff_dirs_mapped<W: Write>(
    lower: &Path,
    upper: &Path,
    opts: &DiffOptions,
    ids: &IdMap,
    out: W,
) -> Result<W> {
    dirs_with(lower, upper, opts, Some(ids), out)
}

fn dirs_with<W: Write>(
    lower: &Path,
    upper: &Path,
    opts: &DiffOptions,
    ids: Option<&IdMap>,
    out: W,
) -> Result<W> {
    let mut em = Emitter::new(out, opts, ids);
    let (ldir, udir) = (open_dir(lower)?, open_dir(upper)?);
    let root_fd = udir
        .try_clone()
        .map_err(io_err("opening directory", upper))?;
    em.upper = Some(kiln_fs::Root::from_fd(root_fd, upper));
    em.walk_pair(Path::new(""), (&ldir, lower), (&udir, upper))?;
    em.finish()
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_owned();
    move |source| Error::Io { op, path, source }
}

fn write_err(source: io::Error) -> Error {
    Error::Write { source }
}

fn errno(op: &'static str, path: &Path) -> impl FnOnce(rustix::io::Errno) -> Error {
    let f = io_err(op, path);
    move |e| f(e.into())
}

/// Opens a directory for listing and for `*at` lookups of its children.
fn open_dir(path: &Path) -> Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno("opening directory", path))
}

/// The names in a directory, sorted bytewise (the order entries are written).
fn sorted_children(dir: &OwnedFd, path: &Path) -> Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in Dir::read_from(dir).map_err(errno("listing", path))? {
        let entry = entry.map_err(errno("listing", path))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// One directory entry being looked at: its parent directory's fd and its
/// name (for `*at` calls, so no path is walked again per file), its full
/// path (for messages, and for xattrs of symlinks and devices, which have
/// no fd), and its lstat.
struct Node<'a> {
    dir: &'a OwnedFd,
    name: &'a OsStr,
    abs: PathBuf,
    st: Stat,
}

impl<'a> Node<'a> {
    fn at(dir: &'a OwnedFd, name: &'a OsStr, parent_abs: &Path) -> Result<Self> {
        let abs = parent_abs.join(name);
        let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(errno("inspecting", &abs))?;
        Ok(Self { dir, name, abs, st })
    }

    fn kind(&self) -> FileType {
        FileType::from_raw_mode(self.st.st_mode)
    }

    /// (seconds, nanoseconds); the field types differ between architectures.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    fn mtime(&self) -> (i64, u64) {
        (self.st.st_mtime as i64, self.st.st_mtime_nsec as u64)
    }

    /// Opens a regular file for reading: the very inode `lstat` saw, or an
    /// error. Anything swapped in meanwhile (a FIFO, a device node, a link,
    /// another file) is never opened (`kiln_fs::at::open_regular`).
    fn open_file(&self) -> Result<File> {
        let (file, meta) =
            kiln_fs::at::open_regular(self.dir, self.name).map_err(io_err("opening", &self.abs))?;
        #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
        let same = meta.ino() == self.st.st_ino as u64 && meta.dev() == self.st.st_dev as u64;
        if !same {
            return Err(io_err("opening", &self.abs)(io::Error::other(
                "the file was replaced while being read",
            )));
        }
        Ok(file)
    }

    fn open_subdir(&self) -> Result<OwnedFd> {
        rustix::fs::openat(
            self.dir,
            self.name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno("opening directory", &self.abs))
    }

    /// xattrs (sorted, overlay's own dropped): through an fd for files and
    /// directories, by path without following for the rest (the xattr
    /// crate's `list`/`get` are `llistxattr`/`lgetxattr`).
    fn xattrs(&self, open: Option<&File>) -> Result<Vec<(OsString, Vec<u8>)>> {
        match self.kind() {
            FileType::RegularFile => match open {
                Some(f) => fd_xattrs(f, &self.abs),
                None => fd_xattrs(&self.open_file()?, &self.abs),
            },
            FileType::Directory => fd_xattrs(&File::from(self.open_subdir()?), &self.abs),
            // Symlinks, devices and FIFOs have no fd to read xattrs through:
            // reach the entry from its parent's fd, never by its host path.
            _ => {
                let path = kiln_fs::at::no_follow_path(self.dir, self.name)
                    .map_err(io_err("reading xattrs of", &self.abs))?;
                path_xattrs(&path, &self.abs)
            }
        }
    }
}

fn not_supported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::NOTSUP.raw_os_error())
}

fn keep_xattrs(
    names: impl Iterator<Item = OsString>,
    mut get: impl FnMut(&OsStr) -> io::Result<Option<Vec<u8>>>,
    path: &Path,
) -> Result<Vec<(OsString, Vec<u8>)>> {
    let mut out = Vec::new();
    for name in names {
        if is_overlay_private(name.as_bytes()) {
            continue;
        }
        if let Some(value) = get(&name).map_err(io_err("reading xattr", path))? {
            out.push((name, value));
        }
    }
    out.sort();
    Ok(out)
}

fn fd_xattrs(file: &File, path: &Path) -> Result<Vec<(OsString, Vec<u8>)>> {
    use xattr::FileExt as _;
    match file.list_xattr() {
        Ok(names) => keep_xattrs(names, |n| file.get_xattr(n), path),
        Err(e) if not_supported(&e) => Ok(Vec::new()),
        Err(e) => Err(io_err("listing xattrs", path)(e)),
    }
}

/// xattrs of `path`, not following a symlink (`shown` names it in errors).
fn path_xattrs(path: &Path, shown: &Path) -> Result<Vec<(OsString, Vec<u8>)>> {
    match xattr::list(path) {
        Ok(names) => keep_xattrs(names, |n| xattr::get(path, n), shown),
        Err(e) if not_supported(&e) => Ok(Vec::new()),
        Err(e) => Err(io_err("listing xattrs", shown)(e)),
    }
}

fn is_overlay_whiteout(node: &Node<'_>) -> bool {
    node.kind() == FileType::CharacterDevice && node.st.st_rdev == 0
}

fn is_opaque(dir: &OwnedFd, path: &Path) -> Result<bool> {
    let mut buf = [0u8; 4];
    match rustix::fs::fgetxattr(dir, "trusted.overlay.opaque", &mut buf) {
        Ok(n) => Ok(&buf[..n] == b"y"),
        Err(rustix::io::Errno::NODATA | rustix::io::Errno::NOTSUP | rustix::io::Errno::RANGE) => {
            Ok(false)
        }
        Err(e) => Err(errno("reading opaque xattr", path)(e)),
    }
}

struct Emitter<'o, W: Write> {
    tar: tar::Builder<W>,
    opts: &'o DiffOptions,
    /// Host ids → container ids, for trees written in a user namespace.
    ids: Option<&'o IdMap>,
    /// (dev, ino) of multiply-linked files already written → their tar path.
    links: HashMap<(u64, u64), PathBuf>,
    /// Unchanged ancestor directories not yet written (diff_dirs).
    pending: Vec<(PathBuf, PathBuf)>,
    /// The upper tree of diff_dirs, where pending directories are found
    /// again (inside it, whatever links it holds by then).
    upper: Option<kiln_fs::Root>,
    /// Copy buffer for file data.
    buf: Vec<u8>,
}

impl<'o, W: Write> Emitter<'o, W> {
    fn new(out: W, opts: &'o DiffOptions, ids: Option<&'o IdMap>) -> Self {
        Self {
            tar: tar::Builder::new(out),
            opts,
            ids,
            links: HashMap::new(),
            pending: Vec::new(),
            upper: None,
            buf: Vec::new(),
        }
    }

    fn finish(self) -> Result<W> {
        self.tar.into_inner().map_err(write_err)
    }

    fn excluded(&self, rel: &Path) -> bool {
        self.opts.exclude.iter().any(|e| e.as_path() == rel)
    }

    fn clamp(&self, mtime: i64) -> u64 {
        let t = match self.opts.source_date_epoch {
            Some(sde) if mtime > sde => sde,
            _ => mtime,
        };
        t.max(0) as u64
    }

    fn walk_upper(&mut self, rel: &Path, dir: &OwnedFd, abs: &Path) -> Result<()> {
        for name in sorted_children(dir, abs)? {
            let node = Node::at(dir, &name, abs)?;
            if is_overlay_whiteout(&node) {
                self.whiteout(rel, &name)?;
                continue;
            }
            let crel = rel.join(&name);
            if self.excluded(&crel) {
                continue;
            }
            self.entry(&crel, &node)?;
            if node.kind() == FileType::Directory {
                let sub = node.open_subdir()?;
                if is_opaque(&sub, &node.abs)? {
                    self.marker(&crel.join(OPAQUE_WHITEOUT))?;
                }
                self.walk_upper(&crel, &sub, &node.abs)?;
            }
        }
        Ok(())
    }

    fn walk_pair(
        &mut self,
        rel: &Path,
        (ldir, labs): (&OwnedFd, &Path),
        (udir, uabs): (&OwnedFd, &Path),
    ) -> Result<()> {
        let lnames = sorted_children(ldir, labs)?;
        let unames = sorted_children(udir, uabs)?;
        let (mut li, mut ui) = (0, 0);
        while li < lnames.len() || ui < unames.len() {
            let order = match (lnames.get(li), unames.get(ui)) {
                (Some(l), Some(u)) => l.cmp(u),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    self.flush_pending()?;
                    self.whiteout(rel, &lnames[li])?;
                    li += 1;
                }
                std::cmp::Ordering::Greater if self.excluded(&rel.join(&unames[ui])) => {
                    ui += 1;
                }
                std::cmp::Ordering::Greater => {
                    self.flush_pending()?;
                    let name = &unames[ui];
                    let node = Node::at(udir, name, uabs)?;
                    self.tree(&rel.join(name), &node)?;
                    ui += 1;
                }
                std::cmp::Ordering::Equal => {
                    let name = &unames[ui];
                    let crel = rel.join(name);
                    let (l, u) = (Node::at(ldir, name, labs)?, Node::at(udir, name, uabs)?);
                    let both_dirs =
                        l.kind() == FileType::Directory && u.kind() == FileType::Directory;
                    if both_dirs {
                        if node_changed(&l, &u)? {
                            self.flush_pending()?;
                            self.entry(&crel, &u)?;
                        } else {
                            self.pending.push((crel.clone(), u.abs.clone()));
                        }
                        let (lsub, usub) = (l.open_subdir()?, u.open_subdir()?);
                        self.walk_pair(&crel, (&lsub, &l.abs), (&usub, &u.abs))?;
                        if self.pending.last().is_some_and(|(p, _)| *p == crel) {
                            self.pending.pop();
                        }
                    } else if node_changed(&l, &u)? {
                        self.flush_pending()?;
                        self.tree(&crel, &u)?;
                    }
                    li += 1;
                    ui += 1;
                }
            }
        }
        Ok(())
    }

    fn flush_pending(&mut self) -> Result<()> {
        for (rel, abs) in std::mem::take(&mut self.pending) {
            let parent_abs = abs.parent().expect("a pending directory has a parent");
            let name = abs.file_name().expect("a pending directory has a name");
            let parent_rel = rel.parent().unwrap_or(Path::new(""));
            // Found again inside the upper tree (openat2 RESOLVE_IN_ROOT),
            // never by its host path.
            let parent = self
                .upper
                .as_ref()
                .expect("pending directories come from diff_dirs, which sets the upper tree")
                .resolve_dir(parent_rel)
                .map_err(io_err("opening directory", parent_abs))?;
            let node = Node::at(&parent, name, parent_abs)?;
            self.entry(&rel, &node)?;
        }
        Ok(())
    }

    /// Writes `node` and, if it is a directory, everything below it.
    fn tree(&mut self, rel: &Path, node: &Node<'_>) -> Result<()> {
        if self.excluded(rel) {
            return Ok(());
        }
        self.entry(rel, node)?;
        if node.kind() == FileType::Directory {
            let sub = node.open_subdir()?;
            for name in sorted_children(&sub, &node.abs)? {
                let child = Node::at(&sub, &name, &node.abs)?;
                self.tree(&rel.join(&name), &child)?;
            }
        }
        Ok(())
    }

    fn whiteout(&mut self, parent_rel: &Path, name: &OsStr) -> Result<()> {
        let mut wh = OsString::from(WHITEOUT_PREFIX);
        wh.push(name);
        self.marker(&parent_rel.join(wh))
    }

    /// An empty regular file entry (whiteout or opaque marker).
    fn marker(&mut self, rel: &Path) -> Result<()> {
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        self.tar
            .append_data(&mut h, rel, io::empty())
            .map_err(write_err)
    }

    fn entry(&mut self, rel: &Path, node: &Node<'_>) -> Result<()> {
        let kind = node.kind();
        if kind == FileType::Socket {
            // Sockets are not carried in layers.
            return Ok(());
        }
        let st = &node.st;
        let mut h = Header::new_gnu();
        let (uid, gid) = match self.ids {
            Some(ids) => (ids.container_uid(st.st_uid), ids.container_gid(st.st_gid)),
            None => (st.st_uid, st.st_gid),
        };
        h.set_uid(u64::from(uid));
        h.set_gid(u64::from(gid));
        h.set_mode(st.st_mode & 0o7777);
        h.set_mtime(self.clamp(node.mtime().0));
        h.set_size(0);

        if kind == FileType::RegularFile && st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key) {
                let first = first.clone();
                h.set_entry_type(EntryType::Link);
                return self.tar.append_link(&mut h, rel, first).map_err(write_err);
            }
            self.links.insert(key, rel.to_owned());
        }

        let file = match kind {
            FileType::RegularFile => Some(node.open_file()?),
            _ => None,
        };
        let xattrs = node.xattrs(file.as_ref())?;
        if !xattrs.is_empty() {
            self.pax_xattrs(rel, &xattrs)?;
        }

        match kind {
            FileType::Directory => {
                h.set_entry_type(EntryType::Directory);
                self.tar
                    .append_data(&mut h, rel, io::empty())
                    .map_err(write_err)
            }
            FileType::RegularFile => {
                let len = u64::try_from(st.st_size).unwrap_or(0);
                h.set_entry_type(EntryType::Regular);
                h.set_size(len);
                let mut file = file.expect("opened above");
                // The header (and any long-name entry) through tar-rs; the
                // data and its padding here, in large writes (tar-rs copies
                // through an 8 KiB buffer).
                self.tar
                    .append_data(&mut h, rel, io::empty())
                    .map_err(write_err)?;
                self.copy_data(&mut file, len)
                    .map_err(io_err("archiving", &node.abs))
            }
            FileType::Symlink => {
                h.set_entry_type(EntryType::Symlink);
                let target = rustix::fs::readlinkat(node.dir, node.name, Vec::new())
                    .map_err(errno("reading symlink", &node.abs))?;
                let target = OsStr::from_bytes(target.as_bytes());
                self.tar.append_link(&mut h, rel, target).map_err(write_err)
            }
            _ => {
                let (entry_kind, rdev) = match kind {
                    FileType::CharacterDevice => (EntryType::Char, st.st_rdev),
                    FileType::BlockDevice => (EntryType::Block, st.st_rdev),
                    _ => (EntryType::Fifo, 0),
                };
                h.set_entry_type(entry_kind);
                h.set_device_major(rustix::fs::major(rdev))
                    .map_err(write_err)?;
                h.set_device_minor(rustix::fs::minor(rdev))
                    .map_err(write_err)?;
                self.tar
                    .append_data(&mut h, rel, io::empty())
                    .map_err(write_err)
            }
        }
    }

    /// Writes exactly `len` bytes of `file` and the padding to a 512-byte
    /// block; a file that shrank meanwhile is an error.
    fn copy_data(&mut self, file: &mut File, len: u64) -> io::Result<()> {
        if self.buf.is_empty() {
            self.buf = vec![0; 1 << 20];
        }
        let out = self.tar.get_mut();
        let mut left = len;
        while left > 0 {
            let want = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(self.buf.len());
            let n = match file.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank while being archived",
                    ));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            out.write_all(&self.buf[..n])?;
            left -= n as u64;
        }
        let pad = (512 - (len % 512) as usize) % 512;
        out.write_all(&[0u8; 512][..pad])
    }

    fn pax_xattrs(&mut self, rel: &Path, xattrs: &[(OsString, Vec<u8>)]) -> Result<()> {
        let mut data = Vec::new();
        for (name, value) in xattrs {
            let mut key = XATTR_PREFIX.as_bytes().to_vec();
            key.extend_from_slice(name.as_bytes());
            data.extend_from_slice(&pax::record(&key, value));
        }
        let base = rel.file_name().map(OsStr::as_bytes).unwrap_or(b"x");
        let mut name = b"PaxHeaders/".to_vec();
        name.extend_from_slice(&base[..base.len().min(80)]);
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::XHeader);
        h.set_path(OsStr::from_bytes(&name)).map_err(write_err)?;
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.tar.append(&h, data.as_slice()).map_err(write_err)
    }
}

/// Whether `u` differs from `l` as a layer would record it.
fn node_changed(l: &Node<'_>, u: &Node<'_>) -> Result<bool> {
    let (ls, us) = (&l.st, &u.st);
    if ls.st_mode != us.st_mode || ls.st_uid != us.st_uid || ls.st_gid != us.st_gid {
        return Ok(true);
    }
    // Mode equality above implies the same file type.
    let kind = l.kind();
    if kind == FileType::Directory {
        if l.mtime() != u.mtime() {
            return Ok(true);
        }
        return Ok(l.xattrs(None)? != u.xattrs(None)?);
    }
    if kind == FileType::Symlink {
        let a = rustix::fs::readlinkat(l.dir, l.name, Vec::new())
            .map_err(errno("reading symlink", &l.abs))?;
        let b = rustix::fs::readlinkat(u.dir, u.name, Vec::new())
            .map_err(errno("reading symlink", &u.abs))?;
        if a != b || l.mtime().0 != u.mtime().0 {
            return Ok(true);
        }
        return Ok(l.xattrs(None)? != u.xattrs(None)?);
    }
    if matches!(kind, FileType::CharacterDevice | FileType::BlockDevice) && ls.st_rdev != us.st_rdev
    {
        return Ok(true);
    }
    if l.mtime() != u.mtime() || ls.st_size != us.st_size {
        return Ok(true);
    }
    if kind != FileType::RegularFile {
        return Ok(l.xattrs(None)? != u.xattrs(None)?);
    }
    let (lf, uf) = (l.open_file()?, u.open_file()?);
    if l.xattrs(Some(&lf))? != u.xattrs(Some(&uf))? {
        return Ok(true);
    }
    let same_inode = ls.st_dev == us.st_dev && ls.st_ino == us.st_ino;
    // Same size and mtime: only the very same, untouched inode is taken on
    // trust; a copy (other inode) or a touched inode (other ctime) is read.
    if same_inode && ls.st_ctime == us.st_ctime && ls.st_ctime_nsec == us.st_ctime_nsec {
        return Ok(false);
    }
    Ok(!same_contents((lf, &l.abs), (uf, &u.abs))?)
}

fn same_contents((fa, a): (File, &Path), (fb, b): (File, &Path)) -> Result<bool> {
    let mut fa = BufReader::with_capacity(256 << 10, fa);
    let mut fb = BufReader::with_capacity(256 << 10, fb);
    let (mut ba, mut bb) = (vec![0u8; 256 << 10], vec![0u8; 256 << 10]);
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(io_err("reading", a))?;
        let nb = read_full(&mut fb, &mut bb).map_err(io_err("reading", b))?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A tar of plain trees, written by the same entry writer as layers
/// (hardlinks, xattrs, devices, no whiteouts): `kiln cp` and `kiln export`
/// ([`crate::copy`]). Each object is reached from an already-resolved
/// directory fd by one name, never by a host path.
pub(crate) struct TreeArchiver<'o, W: Write>(Emitter<'o, W>);

impl<'o, W: Write> TreeArchiver<'o, W> {
    pub(crate) fn new(out: W, opts: &'o DiffOptions, ids: Option<&'o IdMap>) -> Self {
        Self(Emitter::new(out, opts, ids))
    }

    /// Writes `name` in `dir` as the entry `rel` and, for a directory,
    /// everything below it (symlinks written as links, never followed).
    /// `shown` is `dir`'s path for messages.
    pub(crate) fn add(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        shown: &Path,
        rel: &Path,
    ) -> Result<()> {
        let node = Node::at(dir, name, shown)?;
        self.0.tree(rel, &node)
    }

    /// Writes the end-of-archive blocks and returns the sink.
    pub(crate) fn finish(self) -> Result<W> {
        self.0.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A regular file seen by `lstat`, then swapped for another node
    /// before it is opened (a running container racing `kiln cp` or
    /// `commit --pause=false`): the node must never be opened, or a FIFO
    /// could hang and a device node (a host disk, `/dev/watchdog`) be read
    /// or armed by kiln on the host.
    #[test]
    fn a_file_swapped_for_another_node_after_lstat_is_never_opened() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("f"), b"data").unwrap();
        let dir = open_dir(tmp.path()).unwrap();
        let name = OsStr::new("f");
        let node = Node::at(&dir, name, tmp.path()).unwrap();
        assert_eq!(node.kind(), FileType::RegularFile);
        std::fs::remove_file(tmp.path().join("f")).unwrap();
        rustix::fs::mknodat(&dir, name, FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        let err = node.open_file().unwrap_err();
        assert!(err.to_string().contains("opening"), "{err}");
        // Swapped for a link to a file: not followed, refused.
        std::fs::remove_file(tmp.path().join("f")).unwrap();
        std::fs::write(tmp.path().join("other"), b"other").unwrap();
        std::os::unix::fs::symlink("other", tmp.path().join("f")).unwrap();
        assert!(node.open_file().is_err());
        std::fs::remove_file(tmp.path().join("f")).unwrap();
        std::fs::rename(tmp.path().join("other"), tmp.path().join("f")).unwrap();
        // Unchanged: opened.
        let node = Node::at(&dir, name, tmp.path()).unwrap();
        let mut s = String::new();
        node.open_file().unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "other");
    }
}
