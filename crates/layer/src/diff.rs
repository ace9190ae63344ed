//! Making layers: a deterministic OCI layer tar from an overlay upper
//! directory, or from the difference between two directory trees.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use crate::pax::{self, XATTR_PREFIX, is_overlay_private};
use crate::{Error, OPAQUE_WHITEOUT, Result, WHITEOUT_PREFIX};

/// How layers are made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiffOptions {
    /// `SOURCE_DATE_EPOCH`: every mtime newer than this is written as this.
    /// The caller reads the environment; the library does not.
    pub source_date_epoch: Option<i64>,
}

/// Writes, as a layer tar into `out`, the change an overlay upper directory
/// records: its files, directories, links and devices; overlay whiteouts
/// (0/0 character devices) as `.wh.NAME`; opaque directories
/// (`trusted.overlay.opaque=y`) followed by `.wh..wh..opq`. Entries are sorted
/// by path, hardlinks are written once and then as link entries, xattrs are
/// kept except overlayfs's own. Returns `out` after the end-of-archive blocks.
pub fn diff_overlay_upper<W: Write>(upper: &Path, opts: &DiffOptions, out: W) -> Result<W> {
    let mut em = Emitter::new(out, opts);
    em.walk_upper(Path::new(""), upper)?;
    em.finish()
}

/// Writes, as a layer tar into `out`, what `upper` changes relative to
/// `lower` (for snapshotters without overlayfs, where `upper` started as a
/// copy of `lower`). Metadata is compared first; file contents only when size
/// and mtime agree but the inode or ctime differ. Removed names become
/// `.wh.NAME`; unchanged parents of changed entries are written too.
pub fn diff_dirs<W: Write>(lower: &Path, upper: &Path, opts: &DiffOptions, out: W) -> Result<W> {
    let mut em = Emitter::new(out, opts);
    em.walk_pair(Path::new(""), lower, upper)?;
    em.finish()
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_owned();
    move |source| Error::Io { op, path, source }
}

fn write_err(source: io::Error) -> Error {
    Error::Write { source }
}

fn sorted_children(dir: &Path) -> Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("listing", dir))? {
        names.push(entry.map_err(io_err("listing", dir))?.file_name());
    }
    names.sort();
    Ok(names)
}

fn lstat(path: &Path) -> Result<Metadata> {
    fs::symlink_metadata(path).map_err(io_err("inspecting", path))
}

/// xattrs of `path` (not following a symlink: the xattr crate's `list` and
/// `get` are `llistxattr`/`lgetxattr`), sorted, overlay's own dropped.
fn xattrs(path: &Path) -> Result<Vec<(OsString, Vec<u8>)>> {
    let mut out = Vec::new();
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTSUP.raw_os_error()) => {
            return Ok(out);
        }
        Err(e) => return Err(io_err("listing xattrs", path)(e)),
    };
    for name in names {
        if is_overlay_private(name.as_bytes()) {
            continue;
        }
        if let Some(value) = xattr::get(path, &name).map_err(io_err("reading xattr", path))? {
            out.push((name, value));
        }
    }
    out.sort();
    Ok(out)
}

fn is_overlay_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn is_opaque(path: &Path) -> Result<bool> {
    match xattr::get(path, "trusted.overlay.opaque") {
        Ok(v) => Ok(v.as_deref() == Some(b"y")),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTSUP.raw_os_error()) => Ok(false),
        Err(e) => Err(io_err("reading opaque xattr", path)(e)),
    }
}

struct Emitter<'o, W: Write> {
    tar: tar::Builder<W>,
    opts: &'o DiffOptions,
    /// (dev, ino) of multiply-linked files already written → their tar path.
    links: HashMap<(u64, u64), PathBuf>,
    /// Unchanged ancestor directories not yet written (diff_dirs).
    pending: Vec<(PathBuf, PathBuf)>,
    /// Copy buffer for file data.
    buf: Vec<u8>,
}

impl<'o, W: Write> Emitter<'o, W> {
    fn new(out: W, opts: &'o DiffOptions) -> Self {
        Self {
            tar: tar::Builder::new(out),
            opts,
            links: HashMap::new(),
            pending: Vec::new(),
            buf: Vec::new(),
        }
    }

    fn finish(self) -> Result<W> {
        self.tar.into_inner().map_err(write_err)
    }

    fn clamp(&self, mtime: i64) -> u64 {
        let t = match self.opts.source_date_epoch {
            Some(sde) if mtime > sde => sde,
            _ => mtime,
        };
        t.max(0) as u64
    }

    fn walk_upper(&mut self, rel: &Path, abs: &Path) -> Result<()> {
        for name in sorted_children(abs)? {
            let (crel, cabs) = (rel.join(&name), abs.join(&name));
            let meta = lstat(&cabs)?;
            if is_overlay_whiteout(&meta) {
                self.whiteout(rel, &name)?;
                continue;
            }
            self.entry(&crel, &cabs, &meta)?;
            if meta.is_dir() {
                if is_opaque(&cabs)? {
                    self.marker(&crel.join(OPAQUE_WHITEOUT))?;
                }
                self.walk_upper(&crel, &cabs)?;
            }
        }
        Ok(())
    }

    fn walk_pair(&mut self, rel: &Path, lower: &Path, upper: &Path) -> Result<()> {
        let lnames = sorted_children(lower)?;
        let unames = sorted_children(upper)?;
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
                std::cmp::Ordering::Greater => {
                    self.flush_pending()?;
                    let name = &unames[ui];
                    self.tree(&rel.join(name), &upper.join(name))?;
                    ui += 1;
                }
                std::cmp::Ordering::Equal => {
                    let name = &unames[ui];
                    let (crel, cl, cu) = (rel.join(name), lower.join(name), upper.join(name));
                    let (lm, um) = (lstat(&cl)?, lstat(&cu)?);
                    if lm.is_dir() && um.is_dir() {
                        if node_changed(&cl, &lm, &cu, &um)? {
                            self.flush_pending()?;
                            self.entry(&crel, &cu, &um)?;
                        } else {
                            self.pending.push((crel.clone(), cu.clone()));
                        }
                        self.walk_pair(&crel, &cl, &cu)?;
                        if self.pending.last().is_some_and(|(p, _)| *p == crel) {
                            self.pending.pop();
                        }
                    } else if node_changed(&cl, &lm, &cu, &um)? {
                        self.flush_pending()?;
                        self.tree(&crel, &cu)?;
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
            let meta = lstat(&abs)?;
            self.entry(&rel, &abs, &meta)?;
        }
        Ok(())
    }

    /// Writes `abs` and, if it is a directory, everything below it.
    fn tree(&mut self, rel: &Path, abs: &Path) -> Result<()> {
        let meta = lstat(abs)?;
        self.entry(rel, abs, &meta)?;
        if meta.is_dir() {
            for name in sorted_children(abs)? {
                self.tree(&rel.join(&name), &abs.join(&name))?;
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

    fn entry(&mut self, rel: &Path, abs: &Path, meta: &Metadata) -> Result<()> {
        let ft = meta.file_type();
        if ft.is_socket() {
            // Sockets are not carried in layers.
            return Ok(());
        }
        let mut h = Header::new_gnu();
        h.set_uid(u64::from(meta.uid()));
        h.set_gid(u64::from(meta.gid()));
        h.set_mode(meta.mode() & 0o7777);
        h.set_mtime(self.clamp(meta.mtime()));
        h.set_size(0);

        if ft.is_file() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                let first = first.clone();
                h.set_entry_type(EntryType::Link);
                return self.tar.append_link(&mut h, rel, first).map_err(write_err);
            }
            self.links.insert(key, rel.to_owned());
        }

        let xattrs = xattrs(abs)?;
        if !xattrs.is_empty() {
            self.pax_xattrs(rel, &xattrs)?;
        }

        if ft.is_dir() {
            h.set_entry_type(EntryType::Directory);
            self.tar
                .append_data(&mut h, rel, io::empty())
                .map_err(write_err)
        } else if ft.is_file() {
            h.set_entry_type(EntryType::Regular);
            h.set_size(meta.len());
            let mut file = File::open(abs).map_err(io_err("opening", abs))?;
            // The header (and any long-name entry) through tar-rs; the data
            // and its padding here, in large writes (tar-rs copies through an
            // 8 KiB buffer).
            self.tar
                .append_data(&mut h, rel, io::empty())
                .map_err(write_err)?;
            self.copy_data(&mut file, meta.len())
                .map_err(io_err("archiving", abs))
        } else if ft.is_symlink() {
            h.set_entry_type(EntryType::Symlink);
            let target = fs::read_link(abs).map_err(io_err("reading symlink", abs))?;
            self.tar.append_link(&mut h, rel, target).map_err(write_err)
        } else {
            let kind = if ft.is_char_device() {
                EntryType::Char
            } else if ft.is_block_device() {
                EntryType::Block
            } else {
                EntryType::Fifo
            };
            h.set_entry_type(kind);
            let rdev = if kind == EntryType::Fifo {
                0
            } else {
                meta.rdev()
            };
            h.set_device_major(rustix::fs::major(rdev))
                .map_err(write_err)?;
            h.set_device_minor(rustix::fs::minor(rdev))
                .map_err(write_err)?;
            self.tar
                .append_data(&mut h, rel, io::empty())
                .map_err(write_err)
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

/// Whether `upper` differs from `lower` as a layer would record it.
fn node_changed(lower: &Path, lm: &Metadata, upper: &Path, um: &Metadata) -> Result<bool> {
    let (lt, ut) = (lm.file_type(), um.file_type());
    if lm.mode() != um.mode() || lm.uid() != um.uid() || lm.gid() != um.gid() {
        return Ok(true);
    }
    if lt.is_dir() {
        // mode equality above implies the same file type.
        if lm.mtime() != um.mtime() || lm.mtime_nsec() != um.mtime_nsec() {
            return Ok(true);
        }
        return Ok(xattrs(lower)? != xattrs(upper)?);
    }
    if lt.is_symlink() {
        let a = fs::read_link(lower).map_err(io_err("reading symlink", lower))?;
        let b = fs::read_link(upper).map_err(io_err("reading symlink", upper))?;
        if a != b || lm.mtime() != um.mtime() {
            return Ok(true);
        }
        // Read without following the link (llistxattr/lgetxattr).
        return Ok(xattrs(lower)? != xattrs(upper)?);
    }
    if (lt.is_char_device() || lt.is_block_device()) && lm.rdev() != um.rdev() {
        return Ok(true);
    }
    if lm.mtime() != um.mtime() || lm.mtime_nsec() != um.mtime_nsec() || lm.len() != um.len() {
        return Ok(true);
    }
    if xattrs(lower)? != xattrs(upper)? {
        return Ok(true);
    }
    if !ut.is_file() {
        return Ok(false);
    }
    let same_inode = lm.dev() == um.dev() && lm.ino() == um.ino();
    // Same size and mtime: only the very same, untouched inode is taken on
    // trust; a copy (other inode) or a touched inode (other ctime) is read.
    if same_inode && lm.ctime() == um.ctime() && lm.ctime_nsec() == um.ctime_nsec() {
        return Ok(false);
    }
    Ok(!same_contents(lower, upper)?)
}

fn same_contents(a: &Path, b: &Path) -> Result<bool> {
    let mut fa = BufReader::with_capacity(256 << 10, File::open(a).map_err(io_err("opening", a))?);
    let mut fb = BufReader::with_capacity(256 << 10, File::open(b).map_err(io_err("opening", b))?);
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
