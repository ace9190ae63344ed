//! [`CopySnapshotter`]: every snapshot is a plain directory made by copying
//! its parent (reflink where the filesystem allows, else `copy_file_range`),
//! and [`copy_tree`], the faithful copy it uses.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use kiln_layer::WhiteoutMode;
use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, Timespec, Timestamps, Uid};

use crate::meta::{Meta, diffable};
use crate::overlay::bind;
use crate::{
    ApplyTarget, DiffSource, Error, Info, Kind, Mount, Result, Snapshotter, Usage, io_err,
};

/// Snapshotter that copies: works on any filesystem, costs a full copy of
/// the parent per snapshot (cheap on reflink filesystems such as btrfs and
/// xfs). Mounts are bind mounts of the snapshot's directory.
pub struct CopySnapshotter {
    meta: Meta,
}

impl CopySnapshotter {
    /// Opens or creates a snapshotter under `root`.
    pub fn new(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        let meta = Meta::open(root)?;
        let empty = root.join("empty");
        fs::create_dir_all(&empty).map_err(io_err("creating", &empty))?;
        Ok(Self { meta })
    }

    fn fs_dir(&self, id: u64) -> PathBuf {
        self.meta.fs_dir(id)
    }
}

impl Snapshotter for CopySnapshotter {
    fn name(&self) -> &'static str {
        "copy"
    }

    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.meta.create(key, parent, Kind::Active, |tmp, chain| {
            let fs_dir = tmp.join("fs");
            fs::create_dir(&fs_dir).map_err(io_err("creating", &fs_dir))?;
            // 0755 whatever the caller's umask, as the overlay's upper dir.
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(&fs_dir, fs::Permissions::from_mode(0o755))
                .map_err(io_err("chmod", &fs_dir))?;
            if let Some(parent_id) = chain.first() {
                let src = self.fs_dir(*parent_id);
                copy_tree(&src, &fs_dir).map_err(io_err("copying parent snapshot", &src))?;
            }
            Ok(())
        })?;
        self.mounts(key)
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.meta.create(key, parent, Kind::View, |tmp, _| {
            let fs_dir = tmp.join("fs");
            fs::create_dir(&fs_dir).map_err(io_err("creating", &fs_dir))
        })?;
        self.mounts(key)
    }

    fn commit(&self, name: &str, key: &str) -> Result<()> {
        self.meta.commit(name, key)
    }

    fn remove(&self, key: &str) -> Result<()> {
        self.meta.remove(key).map(drop)
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        self.meta.read(|db| {
            let rec = db.get(key)?;
            match rec.kind {
                Kind::Active => Ok(vec![bind(&self.fs_dir(rec.id), false)]),
                // A view shares its parent's (frozen) tree read-only.
                Kind::View => {
                    let id = match &rec.parent {
                        Some(p) => db.get(p)?.id,
                        None => rec.id,
                    };
                    Ok(vec![bind(&self.fs_dir(id), true)])
                }
                Kind::Committed => Err(Error::WrongKind {
                    key: key.to_owned(),
                    actual: rec.kind,
                    expected: "active or view",
                }),
            }
        })
    }

    fn usage(&self, key: &str) -> Result<Usage> {
        self.meta.usage(key)
    }

    fn stat(&self, key: &str) -> Result<Info> {
        self.meta.read(|db| db.info(key))
    }

    fn list(&self) -> Result<Vec<Info>> {
        self.meta.list()
    }

    fn apply_target(&self, key: &str) -> Result<ApplyTarget> {
        Ok(ApplyTarget {
            dir: self.meta.active_fs_dir(key)?,
            whiteouts: WhiteoutMode::Delete,
        })
    }

    fn diff_source(&self, key: &str) -> Result<DiffSource> {
        self.meta.read(|db| {
            let rec = diffable(db, key)?;
            let lower = match &rec.parent {
                Some(p) => self.fs_dir(db.get(p)?.id),
                None => self.meta.root().join("empty"),
            };
            Ok(DiffSource::Dirs {
                lower,
                upper: self.fs_dir(rec.id),
            })
        })
    }
}

/// Copies the contents and metadata of directory `src` into the existing
/// directory `dst`: owners (when running as root), modes, xattrs, mtimes and
/// atimes, symlinks, devices, FIFOs, and hardlinks as hardlinks. File data
/// is reflinked when the filesystem allows, else copied with
/// `copy_file_range`.
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let mut copier = Copier {
        links: HashMap::new(),
        as_root: rustix::process::geteuid().is_root(),
    };
    copier.dir_contents(src, dst)?;
    let m = fs::symlink_metadata(src)?;
    copier.metadata(src, dst, &m)
}

struct Copier {
    links: HashMap<(u64, u64), PathBuf>,
    as_root: bool,
}

impl Copier {
    fn dir_contents(&mut self, src: &Path, dst: &Path) -> io::Result<()> {
        for entry in fs::read_dir(src)? {
            let entry = entry?;
            let (s, d) = (entry.path(), dst.join(entry.file_name()));
            let m = fs::symlink_metadata(&s)?;
            let ft = m.file_type();
            if ft.is_dir() {
                fs::create_dir(&d)?;
                self.dir_contents(&s, &d)?;
            } else if ft.is_file() {
                if m.nlink() > 1 {
                    let key = (m.dev(), m.ino());
                    if let Some(first) = self.links.get(&key) {
                        fs::hard_link(first, &d)?;
                        continue;
                    }
                    self.links.insert(key, d.clone());
                }
                copy_data(&s, &d)?;
            } else if ft.is_symlink() {
                std::os::unix::fs::symlink(fs::read_link(&s)?, &d)?;
            } else {
                let kind = if ft.is_char_device() {
                    FileType::CharacterDevice
                } else if ft.is_block_device() {
                    FileType::BlockDevice
                } else if ft.is_fifo() {
                    FileType::Fifo
                } else {
                    FileType::Socket
                };
                rustix::fs::mknodat(CWD, &d, kind, Mode::from_raw_mode(0o600), m.rdev())?;
            }
            self.metadata(&s, &d, &m)?;
        }
        Ok(())
    }

    /// Owner, xattrs, mode and times of `dst` from `src` (never following a
    /// symlink), in the order that keeps setuid bits.
    fn metadata(&self, src: &Path, dst: &Path, m: &fs::Metadata) -> io::Result<()> {
        let is_link = m.file_type().is_symlink();
        match rustix::fs::chownat(
            CWD,
            dst,
            Some(Uid::from_raw(m.uid())),
            Some(Gid::from_raw(m.gid())),
            AtFlags::SYMLINK_NOFOLLOW,
        ) {
            Ok(()) => {}
            Err(rustix::io::Errno::PERM) if !self.as_root => {}
            Err(e) => return Err(e.into()),
        }
        if let Ok(names) = xattr::list(src) {
            for name in names {
                if let Some(value) = xattr::get(src, &name)? {
                    match xattr::set(dst, &name, &value) {
                        Ok(()) => {}
                        Err(e)
                            if e.raw_os_error()
                                == Some(rustix::io::Errno::NOTSUP.raw_os_error()) => {}
                        Err(e)
                            if !self.as_root
                                && e.raw_os_error()
                                    == Some(rustix::io::Errno::PERM.raw_os_error()) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        if !is_link {
            rustix::fs::chmodat(
                CWD,
                dst,
                Mode::from_raw_mode(m.mode() & 0o7777),
                AtFlags::empty(),
            )?;
        }
        let times = Timestamps {
            last_access: Timespec {
                tv_sec: m.atime(),
                tv_nsec: m.atime_nsec(),
            },
            last_modification: Timespec {
                tv_sec: m.mtime(),
                tv_nsec: m.mtime_nsec(),
            },
        };
        rustix::fs::utimensat(CWD, dst, &times, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }
}

fn copy_data(src: &Path, dst: &Path) -> io::Result<()> {
    let mut from = File::open(src)?;
    let mut to = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)?;
    if rustix::fs::ioctl_ficlone(&to, &from).is_ok() {
        return Ok(());
    }
    // std's copy uses copy_file_range (in-kernel, hole-aware on most
    // filesystems) between two files and falls back to read/write.
    io::copy(&mut from, &mut to)?;
    Ok(())
}
