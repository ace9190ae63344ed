//! Applying a layer tar to a directory: streaming decompression, diffID while
//! reading, whiteouts in overlay or delete form, and confinement of every
//! path to the root.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use kiln_fs::{FileType, Root, at};
use kiln_model::IdMap;
use rustix::fs::{AtFlags, Gid, Mode, OFlags, Timestamps, Uid, XattrFlags};
use tar::EntryType;

use crate::compression::{decoder, detect_compression};
use crate::hash::{CHUNK, ChunkHasher};
use crate::pax::{XATTR_PREFIX, is_overlay_private};
use crate::{Compression, Error, OPAQUE_WHITEOUT, Result, WHITEOUT_PREFIX, sha256_digest};

const BUF_SIZE: usize = 1 << 20;

/// What to do with whiteout entries (`.wh.NAME`, `.wh..wh..opq`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WhiteoutMode {
    /// Convert them to overlayfs form: a 0/0 character device for a removed
    /// name, `trusted.overlay.opaque=y` on an opaque directory. For unpacking
    /// a layer into its own overlay lower directory.
    #[default]
    Overlay,
    /// Apply them: delete the named file, or the contents of an opaque
    /// directory not added by this layer. For unpacking onto a merged tree.
    Delete,
}

/// How [`apply_layer`] unpacks.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// Whiteout handling.
    pub whiteouts: WhiteoutMode,
    /// Create character and block devices; when false a device entry is an
    /// error. FIFOs are always allowed.
    pub allow_devices: bool,
    /// Set owners from the tar's uid/gid (needs root); when false files are
    /// owned by the caller.
    pub preserve_owners: bool,
    /// When set, the apply fails unless the uncompressed tar hashes to this
    /// diffID (`sha256:<hex>`). The files are already written by then: the
    /// caller discards the target directory.
    pub expected_diff_id: Option<String>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            whiteouts: WhiteoutMode::Overlay,
            allow_devices: true,
            preserve_owners: true,
            expected_diff_id: None,
        }
    }
}

/// What [`apply_layer`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyStats {
    /// sha256 of the uncompressed tar, `sha256:<hex>`.
    pub diff_id: String,
    /// Size of the uncompressed tar in bytes.
    pub tar_size: u64,
    /// Number of entries unpacked (whiteouts not included).
    pub entries: u64,
    /// Number of whiteout entries (including opaque markers).
    pub whiteouts: u64,
}

/// Unpacks a layer tar, compressed as `compression`, inside `root` (an
/// existing directory), and returns its diffID.
///
/// The declared compression is checked against the data's magic bytes. No
/// entry can create or change anything outside `root`: `..` components are
/// refused, absolute paths are taken relative to `root`, and every lookup
/// resolves symlinks as if `root` were `/`.
pub fn apply_layer<R: Read>(
    reader: R,
    compression: Compression,
    root: &Path,
    opts: &ApplyOptions,
) -> Result<ApplyStats> {
    let root = open_root(root)?;
    apply(reader, compression, &root, opts, &Extra::default())
}

/// [`apply_layer`] for an unpacker that may not create device nodes
/// (rootless, as rootless podman does): character and block device entries
/// are skipped instead of refused, whatever `opts.allow_devices` says, and
/// not counted in [`ApplyStats::entries`]; they are still part of the
/// diffID. FIFOs and everything else are unpacked as usual.
///
/// A separate function rather than an [`ApplyOptions`] field, so that
/// existing `ApplyOptions { .. }` literals keep compiling.
pub fn apply_layer_skipping_devices<R: Read>(
    reader: R,
    compression: Compression,
    root: &Path,
    opts: &ApplyOptions,
) -> Result<ApplyStats> {
    let root = open_root(root)?;
    let extra = Extra {
        skip_devices: true,
        ..Extra::default()
    };
    apply(reader, compression, &root, opts, &extra)
}

/// How often [`apply_layer_guarded`] calls its guard: every this many
/// uncompressed tar bytes.
pub const GUARD_INTERVAL: u64 = 8 << 20;

/// [`apply_layer`] (or [`apply_layer_skipping_devices`] when
/// `skip_devices`) that calls `guard` with the number of uncompressed tar
/// bytes read so far, every [`GUARD_INTERVAL`] bytes, and stops with its
/// error (as [`Error::Read`]) when it fails: a caller's limit on what one
/// layer may write, whatever its compression ratio (kiln's store keeps a
/// free-space reserve this way against decompression bombs).
pub fn apply_layer_guarded<R: Read>(
    reader: R,
    compression: Compression,
    root: &Path,
    opts: &ApplyOptions,
    skip_devices: bool,
    guard: &dyn Fn(u64) -> io::Result<()>,
) -> Result<ApplyStats> {
    let root = open_root(root)?;
    let extra = Extra {
        skip_devices,
        ..Extra::default()
    };
    apply_guarded(reader, compression, &root, opts, &extra, Some(guard))
}

fn open_root(root: &Path) -> Result<Root> {
    Root::open(root).map_err(|source| Error::Io {
        op: "opening layer root",
        path: root.to_owned(),
        source,
    })
}

/// How [`extract_archive`] unpacks: `docker build`'s ADD of a local tar.
#[derive(Clone, Debug, Default)]
pub struct ExtractOptions {
    /// The owner of every entry (`ADD --chown`); `None` keeps the archive's
    /// uid and gid.
    pub owner: Option<(u32, u32)>,
    /// Failing to set an owner is not an error (a build that may not chown,
    /// as `--ignore-chown-errors`).
    pub ignore_owner_errors: bool,
    /// Leave character and block devices out instead of creating them (an
    /// unpacker that may not `mknod`); FIFOs are still made.
    pub skip_devices: bool,
}

/// Extracts a tar archive (compressed as `compression`) into the directory
/// `dest`, an existing tree, as `docker build`'s ADD of a local archive does:
///
/// - `dest` is the root of the extraction: every path and every symlink in
///   the archive resolves inside it (an archive's `lnk -> /elsewhere` means
///   `<dest>/elsewhere`, and `lnk/x` after it fails when that directory does
///   not exist, as Docker's chrooted extraction does), `..` components are
///   refused;
/// - `.wh.` names are ordinary files (no whiteout processing: that is for
///   image layers);
/// - modes with setuid, setgid and sticky bits, device nodes, FIFOs, hard
///   links (inside `dest`), xattrs and mtimes are kept; owners are the
///   archive's unless [`ExtractOptions::owner`] is set;
/// - an archive that ends inside an entry's data is an error.
pub fn extract_archive<R: Read>(
    reader: R,
    compression: Compression,
    dest: &Root,
    opts: &ExtractOptions,
) -> Result<ApplyStats> {
    let apply_opts = ApplyOptions {
        // No whiteouts are applied (`literal_whiteouts`); Overlay keeps the
        // unpacker from remembering every path for opaque markers.
        whiteouts: WhiteoutMode::Overlay,
        allow_devices: true,
        preserve_owners: true,
        expected_diff_id: None,
    };
    let extra = Extra {
        skip_devices: opts.skip_devices,
        literal_whiteouts: true,
        owner: opts.owner,
        ignore_owner_errors: opts.ignore_owner_errors,
        no_overwrite_dir_non_dir: false,
        id_map: None,
    };
    apply(reader, compression, dest, &apply_opts, &extra)
}

/// Who owns what [`extract_copy`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyOwner {
    /// The uid and gid each entry has in the archive (`docker cp -a`).
    Archive,
    /// Every entry owned by this uid and gid (`docker cp` into a
    /// container: the container's root).
    Fixed(u32, u32),
    /// Owners are not set: the files belong to the caller (`docker cp`
    /// out of a container).
    Caller,
}

/// Extracts a tar archive (plain, gzip or zstd, detected from its first
/// bytes) into the directory `dest`, as `docker cp` does: `dest` is the
/// extraction's root (no entry and no link in the archive or in the tree
/// leads out of it), `.wh.` names are ordinary files, modes, special bits,
/// devices (unless `skip_devices`), hard links, xattrs and mtimes are
/// kept, owners follow `owner`, and an existing directory is never
/// replaced by a non-directory, nor a non-directory by a directory
/// ([`Error::Overwrite`]).
///
/// `ids`: the user namespace of the container written to; with
/// [`CopyOwner::Archive`], the archive's ids are the container's and are
/// written as the host ids they map to.
pub fn extract_copy<R: Read>(
    reader: R,
    dest: &Root,
    owner: CopyOwner,
    ids: Option<&IdMap>,
    skip_devices: bool,
) -> Result<ApplyStats> {
    let mut buffered = BufReader::with_capacity(BUF_SIZE, reader);
    let compression = detect_compression(&mut buffered).map_err(read_err)?;
    let apply_opts = ApplyOptions {
        whiteouts: WhiteoutMode::Overlay,
        allow_devices: true,
        preserve_owners: owner != CopyOwner::Caller,
        expected_diff_id: None,
    };
    let extra = Extra {
        skip_devices,
        literal_whiteouts: true,
        owner: match owner {
            CopyOwner::Fixed(uid, gid) => Some((uid, gid)),
            _ => None,
        },
        ignore_owner_errors: false,
        no_overwrite_dir_non_dir: true,
        id_map: ids.filter(|_| owner == CopyOwner::Archive).cloned(),
    };
    apply(buffered, compression, dest, &apply_opts, &extra)
}

/// What [`extract_archive`] does differently from a layer apply.
#[derive(Clone, Debug, Default)]
struct Extra {
    /// Skip character and block devices instead of refusing them.
    skip_devices: bool,
    /// `.wh.` names are ordinary entries.
    literal_whiteouts: bool,
    /// Every entry's owner.
    owner: Option<(u32, u32)>,
    /// Owner changes may fail.
    ignore_owner_errors: bool,
    /// An existing directory is never replaced by a non-directory, nor an
    /// existing non-directory (a symlink included) by a directory: `docker
    /// cp`'s extraction.
    no_overwrite_dir_non_dir: bool,
    /// The archive's ids are a user namespace's: written as the host ids
    /// they map to (an id the namespace does not map is an error).
    id_map: Option<IdMap>,
}

fn apply<R: Read>(
    reader: R,
    compression: Compression,
    root: &Root,
    opts: &ApplyOptions,
    extra: &Extra,
) -> Result<ApplyStats> {
    apply_guarded(reader, compression, root, opts, extra, None)
}

fn apply_guarded<R: Read>(
    reader: R,
    compression: Compression,
    root: &Root,
    opts: &ApplyOptions,
    extra: &Extra,
    guard: Option<&dyn Fn(u64) -> io::Result<()>>,
) -> Result<ApplyStats> {
    let mut buffered = BufReader::with_capacity(BUF_SIZE, reader);
    let detected = detect_compression(&mut buffered).map_err(read_err)?;
    if detected != compression {
        return Err(Error::CompressionMismatch {
            declared: compression,
            detected,
        });
    }
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let mut hashing = HashingReader {
        inner: decoder(buffered, compression).map_err(read_err)?,
        pending: Vec::with_capacity(CHUNK),
        hasher: ChunkHasher::new(threads),
        count: 0,
        guard,
        next_guard: GUARD_INTERVAL,
    };
    let mut unpacker = Unpacker {
        root: root.clone(),
        opts,
        extra,
        buf: vec![0; BUF_SIZE],
        created: HashSet::new(),
        dir_times: Vec::new(),
        entries: 0,
        whiteouts: 0,
    };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        for entry in archive.entries().map_err(read_err)? {
            let mut entry = entry.map_err(read_err)?;
            unpacker.entry(&mut entry)?;
        }
    }
    // The end-of-archive blocks and any record padding are part of the diffID.
    io::copy(&mut hashing, &mut io::sink()).map_err(read_err)?;
    unpacker.set_dir_times()?;
    let tar_size = hashing.count;
    let diff_id = sha256_digest(hashing.finish().map_err(read_err)?);
    if let Some(expected) = &opts.expected_diff_id
        && *expected != diff_id
    {
        return Err(Error::DiffIdMismatch {
            expected: expected.clone(),
            actual: diff_id,
        });
    }
    Ok(ApplyStats {
        diff_id,
        tar_size,
        entries: unpacker.entries,
        whiteouts: unpacker.whiteouts,
    })
}

fn read_err(source: io::Error) -> Error {
    Error::Read { source }
}

/// Hashes what is read through it (the diffID), gathering chunks for the
/// hashing thread so that sha256 overlaps the unpacking.
struct HashingReader<'g, R> {
    inner: R,
    pending: Vec<u8>,
    hasher: ChunkHasher,
    count: u64,
    /// [`apply_layer_guarded`]'s check, and when it is next due.
    guard: Option<&'g dyn Fn(u64) -> io::Result<()>>,
    next_guard: u64,
}

impl<R> HashingReader<'_, R> {
    fn finish(mut self) -> io::Result<sha2::Sha256> {
        if !self.pending.is_empty() {
            self.hasher.consume(std::mem::take(&mut self.pending))?;
        }
        self.hasher.finish()
    }
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut data = &buf[..n];
        while !data.is_empty() {
            let take = (CHUNK - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == CHUNK {
                let full = std::mem::take(&mut self.pending);
                self.pending = self.hasher.consume(full)?;
            }
        }
        self.count += n as u64;
        if let Some(guard) = self.guard
            && self.count >= self.next_guard
        {
            guard(self.count)?;
            self.next_guard = self.count + GUARD_INTERVAL;
        }
        Ok(n)
    }
}

/// Turns an archive path into a clean relative path: leading `/` and `.`
/// components dropped, `..` refused. `None` is the root itself.
pub(crate) fn normalize(raw: &[u8]) -> Result<Option<PathBuf>> {
    let mut out = PathBuf::new();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                return Err(Error::UnsafePath {
                    path: String::from_utf8_lossy(raw).into_owned(),
                    reason: "contains a .. component",
                });
            }
            name => out.push(OsStr::from_bytes(name)),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

struct Unpacker<'o> {
    root: Root,
    opts: &'o ApplyOptions,
    extra: &'o Extra,
    buf: Vec<u8>,
    /// Paths this layer created (delete mode: spared by an opaque marker).
    created: HashSet<PathBuf>,
    /// Directory mtimes, set at the end once their contents are written.
    dir_times: Vec<(PathBuf, i64)>,
    entries: u64,
    whiteouts: u64,
}

/// Metadata of an entry taken from its header and PAX records.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: i64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Where an entry is written: its parent directory, its name there, and
/// its path in the layer (for messages).
struct Dest<'a> {
    parent: &'a OwnedFd,
    name: &'a OsStr,
    rel: &'a Path,
    /// The path as the archive spelled it.
    raw: &'a [u8],
}

impl Dest<'_> {
    fn shown(&self) -> String {
        String::from_utf8_lossy(self.raw).into_owned()
    }

    /// Maps an I/O error of step `op` on this entry to an [`Error::Io`].
    fn io_err(&self, op: &'static str) -> impl FnOnce(io::Error) -> Error + use<> {
        let path = self.rel.to_owned();
        move |source: io::Error| Error::Io { op, path, source }
    }
}

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader) {
            return Ok(());
        }
        // A PAX sparse file (GNU tar --format=pax --sparse) is a regular
        // entry whose real name and layout are in GNU.sparse.* records.
        let sparse = match kind {
            EntryType::Regular | EntryType::Continuous => pax_sparse(entry).map_err(read_err)?,
            _ => None,
        };
        let raw = match sparse.as_ref().and_then(|s| s.name.clone()) {
            Some(name) => name,
            None => entry.path_bytes().into_owned(),
        };
        let Some(rel) = normalize(&raw)? else {
            // The root itself ("./"): its metadata belongs to the snapshot.
            return Ok(());
        };
        let name = rel
            .file_name()
            .expect("normalized path has a last component");
        let parent_rel = rel.parent().unwrap_or(Path::new("")).to_owned();
        if let Some(target) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes())
            && !self.extra.literal_whiteouts
        {
            return self.whiteout_entry(&parent_rel, name, target, &raw);
        }

        if self.extra.skip_devices && matches!(kind, EntryType::Char | EntryType::Block) {
            return Ok(());
        }
        let meta = read_meta(entry).map_err(read_err)?;
        let parent = self
            .root
            .ensure_dir(&parent_rel, 0o755)
            .map_err(|source| Error::Io {
                op: "creating parent directory",
                path: rel.clone(),
                source,
            })?;
        let dest = Dest {
            parent: &parent,
            name,
            rel: &rel,
            raw: &raw,
        };
        let existing = self.clear_place(&dest, kind.is_dir())?;

        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.make_file(entry, &dest, &meta, sparse.as_ref(), kind.is_gnu_sparse())?;
            }
            EntryType::Directory => self.make_dir(&dest, &meta, existing)?,
            EntryType::Symlink => self.make_symlink(entry, &dest, &meta)?,
            EntryType::Link => self.make_hardlink(entry, &dest)?,
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                self.make_node(entry, kind, &dest, &meta)?;
            }
            other => {
                return Err(Error::UnsupportedEntry {
                    path: dest.shown(),
                    kind: other.as_byte() as char,
                });
            }
        }
        self.entries += 1;
        if self.opts.whiteouts == WhiteoutMode::Delete {
            self.created.insert(rel);
        }
        Ok(())
    }

    /// A `.wh.`-prefixed entry `name` in `parent_rel` (`target` is the
    /// name without the prefix): an opaque marker, a whiteout, or aufs
    /// metadata to skip.
    fn whiteout_entry(
        &mut self,
        parent_rel: &Path,
        name: &OsStr,
        target: &[u8],
        raw: &[u8],
    ) -> Result<()> {
        self.whiteouts += 1;
        if name.as_bytes() == OPAQUE_WHITEOUT.as_bytes() {
            return self.opaque(parent_rel);
        }
        if target.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            // Other aufs metadata (.wh..wh.plnk etc.): nothing to apply.
            return Ok(());
        }
        if matches!(target, b"" | b"." | b"..") {
            return Err(Error::UnsafePath {
                path: String::from_utf8_lossy(raw).into_owned(),
                reason: "whiteout of an invalid name",
            });
        }
        self.whiteout(parent_rel, OsStr::from_bytes(target))
    }

    /// Makes room for the entry at `dest`: removes what is there unless
    /// both are directories (or refuses, with `no_overwrite_dir_non_dir`).
    /// Returns the type that was there.
    fn clear_place(&self, dest: &Dest<'_>, is_dir: bool) -> Result<Option<FileType>> {
        let existing = at::file_type(dest.parent, dest.name).map_err(dest.io_err("inspecting"))?;
        if self.extra.no_overwrite_dir_non_dir
            && let Some(t) = existing
            && (t == FileType::Dir) != is_dir
        {
            return Err(Error::Overwrite {
                path: dest.rel.to_owned(),
                directory: t == FileType::Dir,
            });
        }
        match existing {
            Some(FileType::Dir) if is_dir => {}
            Some(_) => at::remove_all(dest.parent, dest.name).map_err(dest.io_err("replacing"))?,
            None => {}
        }
        Ok(existing)
    }

    /// A regular file (plain, GNU sparse or PAX sparse) with its data.
    fn make_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        dest: &Dest<'_>,
        meta: &Meta,
        sparse: Option<&crate::sparse::PaxSparse>,
        gnu_sparse: bool,
    ) -> Result<()> {
        let fd = rustix::fs::openat(
            dest.parent,
            dest.name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| dest.io_err("creating file")(e.into()))?;
        let mut file = File::from(fd);
        match sparse {
            Some(sp) => crate::sparse::write(sp, entry, &mut file, &mut self.buf)
                .map_err(dest.io_err("writing sparse file"))?,
            None => self.write_data(entry, &mut file, gnu_sparse)?,
        }
        self.set_meta_fd(&file, meta, true)
            .map_err(dest.io_err("setting metadata"))
    }

    /// A directory (kept if one is there); its mtime is set at the end.
    fn make_dir(&mut self, dest: &Dest<'_>, meta: &Meta, existing: Option<FileType>) -> Result<()> {
        if existing != Some(FileType::Dir) {
            rustix::fs::mkdirat(dest.parent, dest.name, Mode::from_raw_mode(0o700))
                .map_err(|e| dest.io_err("creating directory")(e.into()))?;
        }
        let dir =
            at::open_subdir(dest.parent, dest.name).map_err(dest.io_err("opening directory"))?;
        self.set_meta_fd(&dir, meta, false)
            .map_err(dest.io_err("setting metadata"))?;
        self.dir_times.push((dest.rel.to_owned(), meta.mtime));
        Ok(())
    }

    fn make_symlink<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        dest: &Dest<'_>,
        meta: &Meta,
    ) -> Result<()> {
        let target = entry.link_name_bytes().ok_or_else(|| Error::UnsafePath {
            path: dest.shown(),
            reason: "symlink without a target",
        })?;
        rustix::fs::symlinkat(OsStr::from_bytes(&target), dest.parent, dest.name)
            .map_err(|e| dest.io_err("creating symlink")(e.into()))?;
        self.set_meta_at(dest.parent, dest.name, meta)
            .map_err(dest.io_err("setting metadata"))
    }

    /// A hard link to an earlier entry, resolved inside the root.
    fn make_hardlink<R: Read>(&self, entry: &tar::Entry<'_, R>, dest: &Dest<'_>) -> Result<()> {
        let target = entry.link_name_bytes().unwrap_or_default();
        let target_rel = normalize(&target)?.ok_or_else(|| Error::UnsafePath {
            path: dest.shown(),
            reason: "hardlink to the root",
        })?;
        let target_name = target_rel.file_name().expect("normalized");
        let target_parent = self
            .root
            .resolve_dir(target_rel.parent().unwrap_or(Path::new("")))
            .map_err(dest.io_err("resolving hardlink target"))?;
        rustix::fs::linkat(
            &target_parent,
            target_name,
            dest.parent,
            dest.name,
            AtFlags::empty(),
        )
        .map_err(|e| dest.io_err("creating hardlink")(e.into()))
    }

    /// A character or block device (when allowed) or a FIFO.
    fn make_node<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        kind: EntryType,
        dest: &Dest<'_>,
        meta: &Meta,
    ) -> Result<()> {
        use rustix::fs::FileType;
        let file_type = match kind {
            EntryType::Char => FileType::CharacterDevice,
            EntryType::Block => FileType::BlockDevice,
            _ => FileType::Fifo,
        };
        if file_type != FileType::Fifo && !self.opts.allow_devices {
            return Err(Error::DeviceNotAllowed { path: dest.shown() });
        }
        let header = entry.header();
        let (major, minor) = if file_type == FileType::Fifo {
            (0, 0)
        } else {
            (
                header.device_major().map_err(read_err)?.unwrap_or(0),
                header.device_minor().map_err(read_err)?.unwrap_or(0),
            )
        };
        rustix::fs::mknodat(
            dest.parent,
            dest.name,
            file_type,
            Mode::from_raw_mode(0o600),
            rustix::fs::makedev(major, minor),
        )
        .map_err(|e| dest.io_err("creating device node")(e.into()))?;
        self.set_meta_at(dest.parent, dest.name, meta)
            .map_err(dest.io_err("setting metadata"))?;
        rustix::fs::chmodat(
            dest.parent,
            dest.name,
            Mode::from_raw_mode(meta.mode),
            AtFlags::empty(),
        )
        .map_err(|e| dest.io_err("setting mode")(e.into()))
    }

    fn write_data<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        file: &mut File,
        sparse: bool,
    ) -> Result<()> {
        let mut total = 0u64;
        let mut hole = false;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_err(e)),
            };
            let chunk = &self.buf[..n];
            let res = if sparse && chunk.iter().all(|&b| b == 0) {
                hole = true;
                file.seek(SeekFrom::Current(n as i64)).map(drop)
            } else {
                file.write_all(chunk)
            };
            res.map_err(|source| Error::Io {
                op: "writing file",
                path: PathBuf::from(String::from_utf8_lossy(&entry.path_bytes()).into_owned()),
                source,
            })?;
            total += n as u64;
        }
        if total < entry.size() {
            // tar-rs stops reading an entry at the end of the stream; a
            // short entry is a truncated archive, not a short file.
            return Err(read_err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the archive ends inside {} ({total} of {} bytes)",
                    String::from_utf8_lossy(&entry.path_bytes()),
                    entry.size()
                ),
            )));
        }
        if hole {
            file.set_len(total).map_err(|source| Error::Io {
                op: "writing file",
                path: PathBuf::from(String::from_utf8_lossy(&entry.path_bytes()).into_owned()),
                source,
            })?;
        }
        Ok(())
    }

    /// The owner an entry gets: the fixed one, or the archive's (mapped to
    /// the host's when the archive's ids are a user namespace's).
    fn owner_of(&self, meta: &Meta) -> io::Result<(u32, u32)> {
        if let Some(fixed) = self.extra.owner {
            return Ok(fixed);
        }
        let Some(map) = &self.extra.id_map else {
            return Ok((meta.uid, meta.gid));
        };
        match (map.host_uid(meta.uid), map.host_gid(meta.gid)) {
            (Some(u), Some(g)) => Ok((u, g)),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}:{} has no host id in the container's user namespace",
                    meta.uid, meta.gid
                ),
            )),
        }
    }

    fn set_meta_fd(&self, fd: impl AsFd, meta: &Meta, times: bool) -> io::Result<()> {
        let fd = fd.as_fd();
        if self.opts.preserve_owners {
            let (uid, gid) = self.owner_of(meta)?;
            let r = rustix::fs::fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
            if r.is_err() && !self.extra.ignore_owner_errors {
                r?;
            }
        }
        rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode))?;
        for (name, value) in &meta.xattrs {
            match rustix::fs::fsetxattr(fd, OsStr::from_bytes(name), value, XattrFlags::empty()) {
                Ok(()) | Err(rustix::io::Errno::NOTSUP) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if times {
            rustix::fs::futimens(fd, &timestamps(meta.mtime))?;
        }
        Ok(())
    }

    /// Owner, xattrs and times of a node that cannot be opened (symlink,
    /// device, FIFO), none of them following a symlink.
    ///
    /// `user.*` xattrs are skipped on these nodes: the kernel allows them
    /// only on regular files and directories (`EPERM` otherwise, whatever
    /// the filesystem), so a layer carrying one (made on a filesystem that
    /// allowed it) unpacks without it instead of failing.
    fn set_meta_at(&self, dir: impl AsFd, name: &OsStr, meta: &Meta) -> io::Result<()> {
        let dir = dir.as_fd();
        if self.opts.preserve_owners {
            let (uid, gid) = self.owner_of(meta)?;
            let r = rustix::fs::chownat(
                dir,
                name,
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            );
            if r.is_err() && !self.extra.ignore_owner_errors {
                r?;
            }
        }
        for (key, value) in &meta.xattrs {
            if key.starts_with(b"user.") {
                continue;
            }
            match at::lsetxattr(dir, name, OsStr::from_bytes(key), value) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTSUP.raw_os_error()) => {}
                Err(e) => return Err(e),
            }
        }
        rustix::fs::utimensat(
            dir,
            name,
            &timestamps(meta.mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        Ok(())
    }

    fn whiteout(&mut self, parent_rel: &Path, name: &OsStr) -> Result<()> {
        let path = parent_rel.join(name);
        let io_err = |op: &'static str| {
            let path = path.clone();
            move |source: io::Error| Error::Io { op, path, source }
        };
        match self.opts.whiteouts {
            WhiteoutMode::Delete => {
                let parent = match self.root.resolve_dir(parent_rel) {
                    Ok(fd) => fd,
                    // Nothing below to hide.
                    Err(e) if is_absent(&e) => return Ok(()),
                    Err(e) => return Err(io_err("resolving whiteout")(e)),
                };
                at::remove_all(&parent, name).map_err(io_err("applying whiteout"))
            }
            WhiteoutMode::Overlay => {
                let parent = self
                    .root
                    .ensure_dir(parent_rel, 0o755)
                    .map_err(io_err("creating parent directory"))?;
                at::remove_all(&parent, name).map_err(io_err("replacing"))?;
                rustix::fs::mknodat(
                    &parent,
                    name,
                    rustix::fs::FileType::CharacterDevice,
                    Mode::empty(),
                    rustix::fs::makedev(0, 0),
                )
                .map_err(|e| io_err("creating overlay whiteout")(e.into()))
            }
        }
    }

    fn opaque(&mut self, dir_rel: &Path) -> Result<()> {
        let io_err = |op: &'static str| {
            let path = dir_rel.join(OPAQUE_WHITEOUT);
            move |source: io::Error| Error::Io { op, path, source }
        };
        match self.opts.whiteouts {
            WhiteoutMode::Delete => {
                let dir = match self.root.open_dir(dir_rel) {
                    Ok(fd) => fd,
                    Err(e) if is_absent(&e) => return Ok(()),
                    Err(e) => return Err(io_err("resolving opaque directory")(e)),
                };
                for child in at::list(&dir).map_err(io_err("listing opaque directory"))? {
                    if !self.created.contains(&dir_rel.join(&child)) {
                        at::remove_all(&dir, &child).map_err(io_err("applying opaque marker"))?;
                    }
                }
                Ok(())
            }
            WhiteoutMode::Overlay => {
                self.root
                    .ensure_dir(dir_rel, 0o755)
                    .map_err(io_err("creating opaque directory"))?;
                let dir = self
                    .root
                    .open_dir(dir_rel)
                    .map_err(io_err("opening opaque directory"))?;
                rustix::fs::fsetxattr(&dir, "trusted.overlay.opaque", b"y", XattrFlags::empty())
                    .map_err(|e| io_err("marking directory opaque")(e.into()))
            }
        }
    }

    fn set_dir_times(&self) -> Result<()> {
        for (rel, mtime) in self.dir_times.iter().rev() {
            let name = rel.file_name().expect("normalized");
            let parent = match self.root.resolve_dir(rel.parent().unwrap_or(Path::new(""))) {
                Ok(fd) => fd,
                Err(e) if is_absent(&e) => continue,
                Err(source) => {
                    return Err(Error::Io {
                        op: "setting directory times",
                        path: rel.clone(),
                        source,
                    });
                }
            };
            match rustix::fs::utimensat(
                &parent,
                name,
                &timestamps(*mtime),
                AtFlags::SYMLINK_NOFOLLOW,
            ) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                Err(e) => {
                    return Err(Error::Io {
                        op: "setting directory times",
                        path: rel.clone(),
                        source: e.into(),
                    });
                }
            }
        }
        Ok(())
    }
}

fn is_absent(e: &io::Error) -> bool {
    at::is_absent(e)
}

fn timestamps(mtime: i64) -> Timestamps {
    let t = rustix::fs::Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn pax_sparse<R: Read>(
    entry: &mut tar::Entry<'_, R>,
) -> io::Result<Option<crate::sparse::PaxSparse>> {
    let Some(exts) = entry.pax_extensions()? else {
        return Ok(None);
    };
    crate::sparse::from_pax(exts.map(|e| e.map(|e| (e.key_bytes(), e.value_bytes()))))
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Meta> {
    let mut xattrs = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            if let Some(name) = ext.key_bytes().strip_prefix(XATTR_PREFIX.as_bytes())
                && !name.is_empty()
                && !is_overlay_private(name)
            {
                xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
            }
        }
    }
    let header = entry.header();
    let id = |v: u64| {
        u32::try_from(v).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "id out of range"))
    };
    let old = header.as_old();
    Ok(Meta {
        uid: id(or_zero(header.uid(), &old.uid)?)?,
        gid: id(or_zero(header.gid(), &old.gid)?)?,
        mode: or_zero(header.mode().map(u64::from), &old.mode)? as u32 & 0o7777,
        mtime: i64::try_from(or_zero(header.mtime(), &old.mtime)?).unwrap_or(i64::MAX),
        xattrs,
    })
}

/// A numeric header field, with a field left empty (all NULs or spaces, as
/// some archivers write) read as 0, as Go's archive/tar (Docker) reads it;
/// anything else that is not a number stays an error.
fn or_zero(parsed: io::Result<u64>, raw: &[u8]) -> io::Result<u64> {
    match parsed {
        Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 20 MiB file of zeros, gzipped (a small decompression bomb).
    fn zeros_layer_gz() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(20 << 20);
        h.set_mode(0o644);
        b.append_data(&mut h, "zeros", io::repeat(0).take(20 << 20))
            .unwrap();
        let tar = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn a_guard_sees_uncompressed_bytes_and_stops_the_apply() {
        let gz = zeros_layer_gz();
        assert!(gz.len() < 1 << 20, "{}", gz.len());
        let dir = tempfile::tempdir().unwrap();
        let seen = std::sync::Mutex::new(Vec::new());
        let guard = |n: u64| {
            seen.lock().unwrap().push(n);
            if n >= 16 << 20 {
                Err(io::Error::new(io::ErrorKind::StorageFull, "over the limit"))
            } else {
                Ok(())
            }
        };
        let err = apply_layer_guarded(
            gz.as_slice(),
            Compression::Gzip,
            dir.path(),
            &ApplyOptions::default(),
            false,
            &guard,
        )
        .unwrap_err();
        let chain = format!(
            "{err}: {}",
            std::error::Error::source(&err)
                .map(|s| s.to_string())
                .unwrap_or_default()
        );
        assert!(chain.contains("over the limit"), "{chain}");
        let seen = seen.lock().unwrap();
        // Called every GUARD_INTERVAL uncompressed bytes, not per
        // compressed byte.
        assert!(seen.len() >= 2, "{seen:?}");
        assert!(
            seen[0] >= GUARD_INTERVAL && seen[0] < 2 * GUARD_INTERVAL,
            "{seen:?}"
        );
        // A guard that passes changes nothing.
        let dir2 = tempfile::tempdir().unwrap();
        let stats = apply_layer_guarded(
            gz.as_slice(),
            Compression::Gzip,
            dir2.path(),
            &ApplyOptions::default(),
            false,
            &|_| Ok(()),
        )
        .unwrap();
        assert_eq!(
            std::fs::metadata(dir2.path().join("zeros")).unwrap().len(),
            20 << 20
        );
        assert_eq!(stats.entries, 1);
    }

    #[test]
    fn normalize_cleans_and_refuses_dotdot() {
        let n = |s: &str| normalize(s.as_bytes()).map(|p| p.map(|p| p.display().to_string()));
        assert_eq!(n("./etc/passwd").unwrap().as_deref(), Some("etc/passwd"));
        assert_eq!(n("/abs//x/./y/").unwrap().as_deref(), Some("abs/x/y"));
        assert_eq!(n("./").unwrap(), None);
        assert!(matches!(n("a/../../b"), Err(Error::UnsafePath { .. })));
        assert!(matches!(n(".."), Err(Error::UnsafePath { .. })));
        // A name merely starting with dots is fine.
        assert_eq!(n("..a/...").unwrap().as_deref(), Some("..a/..."));
    }
}
