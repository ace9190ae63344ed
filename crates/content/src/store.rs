//! The on-disk store: its layout, the store lock, and verified blob writes.
//!
//! Layout under the root: `blobs/sha256/<hex>` (verified content only),
//! `tmp/` (blobs being written, each by a live [`BlobWriter`]), `images/`
//! (one JSON record per image), `records/<kind>/` (generic JSON records), and
//! `lock` (the flock taken by [`Store::lock`]).
//!
//! Every process that writes into `tmp/` holds a shared flock on
//! `tmp/.active` while it does; [`Store::open`] removes what is in `tmp/`
//! only when it can take that lock exclusively, that is when no other
//! process (or [`BlobWriter`] of this one) is writing. Leftovers from a
//! killed process are therefore removed by the next idle open, and never
//! from under a live writer. Garbage collection takes the same lock
//! exclusively, so it waits for writers and [`Lease`]s to finish.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, ThreadId};

use rustix::fs::{FlockOperation, flock};

use crate::{Error, Result};
use kiln_model::Digest;
use kiln_model::Hasher;

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);
const ACTIVE: &str = ".active";

/// Wraps an io error with the operation and the path it was acting on.
pub(crate) fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A content store rooted at a directory. Cheap to clone; clones share the
/// in-process state of the store lock.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    root: PathBuf,
    lock: LockState,
    /// The free-space reserve writers keep (crate::space).
    pub(crate) reserve: Mutex<crate::SpaceReserve>,
}

#[derive(Debug, Default)]
struct LockState {
    held: Mutex<Held>,
    released: Condvar,
}

#[derive(Debug, Default)]
struct Held {
    owner: Option<ThreadId>,
    depth: usize,
    file: Option<File>,
}

impl Store {
    /// Opens (creating if needed) the store at `root`, and removes
    /// leftovers of killed writers from `tmp/` when no writer is active.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        for dir in ["blobs/sha256", "tmp", "images", "records"] {
            let p = root.join(dir);
            fs::create_dir_all(&p).map_err(io_err("create directory", &p))?;
        }
        let lock = root.join("lock");
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&lock)
            .map_err(io_err("create", &lock))?;
        let store = Store {
            inner: Arc::new(Inner {
                root,
                lock: LockState::default(),
                reserve: Mutex::new(crate::SpaceReserve::Default),
            }),
        };
        store.clean_tmp()?;
        store.clean_metadata_tmp()?;
        Ok(store)
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.inner.root.join("tmp")
    }

    fn blobs_dir(&self) -> PathBuf {
        self.inner.root.join("blobs").join("sha256")
    }

    /// Opens `tmp/.active` and takes `op` on it.
    fn active_lock(&self, op: FlockOperation) -> Result<Option<File>> {
        let p = self.tmp_dir().join(ACTIVE);
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(io_err("open", &p))?;
        match flock(&f, op) {
            Ok(()) => Ok(Some(f)),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(Error::Io {
                op: "lock",
                path: p,
                source: e.into(),
            }),
        }
    }

    /// Removes everything in `tmp/` if no writer (in any process) is active.
    /// Returns how many entries were removed (0 when writers are active).
    pub fn clean_tmp(&self) -> Result<usize> {
        let Some(_guard) = self.active_lock(FlockOperation::NonBlockingLockExclusive)? else {
            return Ok(0);
        };
        let dir = self.tmp_dir();
        let mut removed = 0;
        for entry in fs::read_dir(&dir).map_err(io_err("read directory", &dir))? {
            let entry = entry.map_err(io_err("read directory", &dir))?;
            if entry.file_name() == ACTIVE {
                continue;
            }
            let p = entry.path();
            let res = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            match res {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &p)(e)),
            }
        }
        Ok(removed)
    }

    /// Blocks until no writer or lease is active, and keeps it so while the
    /// returned file is open.
    pub(crate) fn exclusive_active(&self) -> Result<File> {
        Ok(self
            .active_lock(FlockOperation::LockExclusive)?
            .expect("a blocking flock never reports would-block"))
    }

    /// Takes a lease: while it lives, garbage collection waits, so blobs
    /// written but not yet referenced by an image record stay. Hold one
    /// from the first blob of a pull until its image is recorded.
    ///
    /// Do not call [`Store::gc`] from the thread holding a lease.
    pub fn lease(&self) -> Result<Lease> {
        let file = self
            .active_lock(FlockOperation::LockShared)?
            .expect("a blocking flock never reports would-block");
        Ok(Lease { _file: file })
    }

    /// Takes the store's exclusive lock (flock on `ROOT/lock`) for a
    /// metadata read-modify-write. Re-entrant on the same thread; other
    /// threads and processes wait. Store methods that change metadata take
    /// it themselves.
    ///
    /// Lock order: take a [`Lease`] or a [`BlobWriter`] before this lock,
    /// never while holding it ([`Store::gc`] waits for writers and leases to
    /// finish, then takes this lock).
    pub fn lock(&self) -> Result<StoreLock> {
        let state = &self.inner.lock;
        let me = thread::current().id();
        let mut held = state.held.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match held.owner {
                Some(owner) if owner == me => {
                    held.depth += 1;
                    return Ok(StoreLock {
                        store: self.clone(),
                        _not_send: PhantomData,
                    });
                }
                None => break,
                Some(_) => {
                    held = state.released.wait(held).unwrap_or_else(|e| e.into_inner());
                }
            }
        }
        let p = self.inner.root.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(io_err("open", &p))?;
        flock(&f, FlockOperation::LockExclusive).map_err(|e| Error::Io {
            op: "lock",
            path: p.clone(),
            source: e.into(),
        })?;
        held.owner = Some(me);
        held.depth = 1;
        held.file = Some(f);
        Ok(StoreLock {
            store: self.clone(),
            _not_send: PhantomData,
        })
    }

    /// Where the blob `digest` lives (whether or not it exists), for tools
    /// that need a path. Only verified blobs are ever at this path.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    /// Starts writing a blob: bytes go to a temporary file under `tmp/`
    /// and are hashed as they are written. Nothing is visible until
    /// [`BlobWriter::commit`] verifies it.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        let active = self
            .active_lock(FlockOperation::LockShared)?
            .expect("a blocking flock never reports would-block");
        let (file, path) = self.create_tmp_file("blob")?;
        Ok(BlobWriter {
            store: self.clone(),
            file: Some(BufWriter::with_capacity(256 * 1024, file)),
            path,
            hasher: Some(Hasher::new()),
            len: 0,
            early_sync: None,
            _active: active,
        })
    }

    /// Starts writing a blob whose writer hashes the exact bytes it writes
    /// itself, in the same pass (kiln-layer's `LayerWriter` does): the
    /// store counts the bytes but does not hash them again (for a 390 MB
    /// layer, 0.2 s of CPU), and files the blob under the digest given to
    /// [`PrehashedBlobWriter::commit`]. Everything else is as for
    /// [`Store::blob_writer`].
    pub fn blob_writer_prehashed(&self) -> Result<PrehashedBlobWriter> {
        let mut w = self.blob_writer()?;
        w.hasher = None;
        Ok(PrehashedBlobWriter(w))
    }

    /// Creates a new, uniquely named file under `tmp/`.
    fn create_tmp_file(&self, what: &str) -> Result<(File, PathBuf)> {
        let dir = self.tmp_dir();
        loop {
            let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let p = dir.join(format!("{what}-{}-{n}", std::process::id()));
            match OpenOptions::new().write(true).create_new(true).open(&p) {
                Ok(f) => return Ok((f, p)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("create", &p)(e)),
            }
        }
    }

    /// Writes `data` as a blob and returns its digest.
    pub fn write_blob(&self, data: &[u8]) -> Result<Digest> {
        let mut w = self.blob_writer()?;
        w.write_all(data).map_err(io_err("write", &w.path))?;
        Ok(w.commit(None)?.0)
    }

    /// Copies `reader` into a blob, verifying it against `expected` when
    /// given; returns the digest and size.
    pub fn copy_blob(
        &self,
        reader: &mut dyn Read,
        expected: Option<(&Digest, u64)>,
    ) -> Result<(Digest, u64)> {
        let mut w = self.blob_writer()?;
        io::copy(reader, &mut w).map_err(io_err("write", &w.path))?;
        w.commit(expected)
    }

    /// Reads a whole blob into memory.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let p = self.blob_path(digest);
        fs::read(&p).map_err(|e| self.blob_err(digest, &p, "read", e))
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let p = self.blob_path(digest);
        File::open(&p).map_err(|e| self.blob_err(digest, &p, "open", e))
    }

    /// Whether the blob is in the store.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// The size in bytes of a stored blob.
    pub fn blob_size(&self, digest: &Digest) -> Result<u64> {
        let p = self.blob_path(digest);
        fs::metadata(&p)
            .map(|m| m.len())
            .map_err(|e| self.blob_err(digest, &p, "stat", e))
    }

    /// Deletes a blob; returns whether it existed. Prefer [`Store::gc`].
    pub fn remove_blob(&self, digest: &Digest) -> Result<bool> {
        let p = self.blob_path(digest);
        match fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("remove", &p)(e)),
        }
    }

    /// Every stored blob with its size.
    pub fn list_blobs(&self) -> Result<Vec<(Digest, u64)>> {
        let dir = self.blobs_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("read directory", &dir))? {
            let entry = entry.map_err(io_err("read directory", &dir))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Ok(d) = Digest::from_hex(&name) else {
                continue;
            };
            let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
            out.push((d, len));
        }
        out.sort();
        Ok(out)
    }

    fn blob_err(&self, digest: &Digest, path: &Path, op: &'static str, e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::NotFound {
            Error::BlobNotFound(*digest)
        } else {
            io_err(op, path)(e)
        }
    }

    /// Writes `bytes` to `dest` atomically: a `.tmp-*` file next to it,
    /// fsync, rename, fsync of the directory. Callers hold the store lock,
    /// which is what makes removing `.tmp-*` leftovers on open safe.
    pub(crate) fn atomic_write(&self, dest: &Path, bytes: &[u8]) -> Result<()> {
        let dir = dest.parent().expect("record paths have a parent directory");
        let (mut f, tmp) = loop {
            let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let p = dir.join(format!(".tmp-{}-{n}", std::process::id()));
            match OpenOptions::new().write(true).create_new(true).open(&p) {
                Ok(f) => break (f, p),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("create", &p)(e)),
            }
        };
        let res = (|| {
            f.write_all(bytes).map_err(io_err("write", &tmp))?;
            f.sync_all().map_err(io_err("sync", &tmp))?;
            fs::rename(&tmp, dest).map_err(io_err("rename into place", dest))?;
            sync_parent(dest)
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res
    }

    /// Removes `.tmp-*` leftovers of metadata writes (in `images/` and
    /// `records/<kind>/`) if the store lock is free right now.
    fn clean_metadata_tmp(&self) -> Result<usize> {
        let p = self.inner.root.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(io_err("open", &p))?;
        if flock(&f, FlockOperation::NonBlockingLockExclusive).is_err() {
            return Ok(0);
        }
        let mut dirs = vec![self.inner.root.join("images")];
        let records = self.inner.root.join("records");
        for entry in fs::read_dir(&records).map_err(io_err("read directory", &records))? {
            let entry = entry.map_err(io_err("read directory", &records))?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(entry.path());
            }
        }
        let mut removed = 0;
        for dir in dirs {
            for entry in fs::read_dir(&dir).map_err(io_err("read directory", &dir))? {
                let entry = entry.map_err(io_err("read directory", &dir))?;
                if entry.file_name().to_string_lossy().starts_with(".tmp-")
                    && fs::remove_file(entry.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

fn sync_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io_err("sync directory", parent))?;
    }
    Ok(())
}

/// Guard of the store's exclusive lock; released on drop. Not `Send`: drop
/// it on the thread that took it (and do not hold it across `.await`).
#[derive(Debug)]
pub struct StoreLock {
    store: Store,
    _not_send: PhantomData<*const ()>,
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        let state = &self.store.inner.lock;
        let mut held = state.held.lock().unwrap_or_else(|e| e.into_inner());
        held.depth = held.depth.saturating_sub(1);
        if held.depth == 0 {
            // Closing the file releases the flock.
            held.file = None;
            held.owner = None;
            state.released.notify_all();
        }
    }
}

/// Keeps garbage collection away while alive; see [`Store::lease`].
#[derive(Debug)]
pub struct Lease {
    _file: File,
}

/// A blob being written: `io::Write` into a temporary file, hashed as it
/// goes. Dropping it without [`commit`](BlobWriter::commit) deletes the
/// temporary file.
#[derive(Debug)]
pub struct BlobWriter {
    store: Store,
    file: Option<BufWriter<File>>,
    path: PathBuf,
    /// `None` for a [`PrehashedBlobWriter`].
    hasher: Option<Hasher>,
    len: u64,
    /// Writes back a big blob while it is still being written.
    early_sync: Option<EarlySync>,
    _active: File,
}

/// Every this many bytes, a big blob's pages written so far are flushed to
/// disk in the background, so that the fsync at commit waits for the tail
/// only (for a 390 MB layer: writeback overlaps making the layer instead of
/// following it).
const EARLY_SYNC_EVERY: u64 = 32 << 20;

/// A thread that fdatasyncs a duplicate of the blob's file descriptor each
/// time it is asked to.
#[derive(Debug)]
struct EarlySync {
    ask: std::sync::mpsc::SyncSender<()>,
    thread: thread::JoinHandle<io::Result<()>>,
}

impl EarlySync {
    fn start(file: &File) -> io::Result<EarlySync> {
        let file = file.try_clone()?;
        // One request may wait while a sync runs; more would be redundant.
        let (ask, asked) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = thread::Builder::new()
            .name("blob-sync".into())
            .spawn(move || {
                while asked.recv().is_ok() {
                    file.sync_data()?;
                }
                Ok(())
            })?;
        Ok(EarlySync { ask, thread })
    }

    fn request(&self) {
        // Full: a sync is already pending, and it will cover these bytes.
        let _ = self.ask.try_send(());
    }

    /// Stops the thread; its error (a failed writeback) is the blob's.
    fn stop(self) -> io::Result<()> {
        drop(self.ask);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the blob sync thread panicked")))
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Fsyncs, checks the digest and size against `expected` (when given),
    /// and moves the blob into place. On a mismatch the temporary file is
    /// deleted and the error names the expected digest. Returns the digest
    /// and size of what was written.
    pub fn commit(mut self, expected: Option<(&Digest, u64)>) -> Result<(Digest, u64)> {
        let res = self.finish(expected);
        if res.is_err() {
            let _ = fs::remove_file(&self.path);
        }
        res
    }

    fn finish(&mut self, expected: Option<(&Digest, u64)>) -> Result<(Digest, u64)> {
        let file = self
            .file
            .take()
            .expect("commit takes self, so the file is still there");
        let file = file
            .into_inner()
            .map_err(|e| io_err("write", &self.path)(e.into_error()))?;
        if let Some(early) = self.early_sync.take() {
            early.stop().map_err(io_err("sync", &self.path))?;
        }
        file.sync_all().map_err(io_err("sync", &self.path))?;
        drop(file);
        let size = self.len;
        let digest = match (self.hasher.take(), expected) {
            (Some(hasher), _) => hasher.finish(),
            (None, Some((want, _))) => *want,
            (None, None) => unreachable!("a prehashed writer always commits with its digest"),
        };
        if let Some((want, want_size)) = expected {
            if size != want_size {
                return Err(Error::SizeMismatch {
                    digest: *want,
                    expected: want_size,
                    actual: size,
                });
            }
            if digest != *want {
                return Err(Error::DigestMismatch {
                    expected: *want,
                    actual: digest,
                });
            }
        }
        let dest = self.store.blob_path(&digest);
        if dest.is_file() {
            // Same content is already there; ours is redundant.
            let _ = fs::remove_file(&self.path);
        } else {
            fs::rename(&self.path, &dest).map_err(io_err("rename into place", &dest))?;
            sync_parent(&dest)?;
        }
        Ok((digest, size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer already finished"))?;
        let n = f.write(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        let before = self.len;
        self.len += n as u64;
        if before / crate::space::SPACE_CHECK_EVERY != self.len / crate::space::SPACE_CHECK_EVERY {
            // The free-space reserve (an archive that inflates without end
            // stops here, and the temporary file goes with the writer).
            self.store.check_space_io(&self.path)?;
        }
        if before / EARLY_SYNC_EVERY != self.len / EARLY_SYNC_EVERY {
            if self.early_sync.is_none() {
                // Best effort: without it, the fsync at commit does it all.
                self.early_sync = EarlySync::start(f.get_ref()).ok();
            }
            if let Some(early) = &self.early_sync {
                early.request();
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

/// A blob being written by a caller that hashes it itself; see
/// [`Store::blob_writer_prehashed`]. Dropping it without
/// [`commit`](PrehashedBlobWriter::commit) deletes the temporary file.
#[derive(Debug)]
pub struct PrehashedBlobWriter(BlobWriter);

impl PrehashedBlobWriter {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Fsyncs, checks that `size` bytes were written, and moves the blob
    /// into place as `digest` (the writer's own hash of those bytes).
    pub fn commit(self, digest: &Digest, size: u64) -> Result<(Digest, u64)> {
        self.0.commit(Some((digest, size)))
    }
}

impl Write for PrehashedBlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            self.file = None;
            let _ = fs::remove_file(&self.path);
        }
    }
}
