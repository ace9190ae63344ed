//! A persistent per-context file index, `(path, size, mtime, ctime, inode)` →
//! content digest, so a rebuild does not rehash files that did not change (git's
//! index idea, with its "racy" rule: a file modified in the same second the
//! index was written is always rehashed).
//!
//! Format: one line per file, `digest\tsize\tmtime_ns\tctime_ns\tinode\tpath`,
//! sorted by path; paths with a tab or newline are not cached.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use kiln_fs::{FinalLink, Metadata, Root};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    digest: String,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    inode: u64,
}

/// The index of one context directory.
#[derive(Debug, Default)]
pub struct FileIndex {
    path: Option<PathBuf>,
    entries: HashMap<String, Entry>,
    /// mtime of the index file when loaded: entries of files modified at or
    /// after it (minus a second of slack) are not trusted.
    racy_after_ns: i128,
    dirty: bool,
    hashed: usize,
}

fn times(meta: &Metadata) -> (i128, i128) {
    let m = meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128;
    let c = meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128;
    (m, c)
}

/// The index file's own mtime in nanoseconds (the index is kiln's file).
fn file_mtime_ns(meta: &fs::Metadata) -> i128 {
    meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128
}

/// sha256 of a stream, `sha256:<hex>`; `path` names it in errors.
fn hash_reader(mut f: impl Read, path: &Path) -> Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("read", path, e)),
        };
        h.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// sha256 of the regular file `rel` in the tree `root` (a final symlink is
/// not followed), `sha256:<hex>`.
pub(crate) fn hash_in(root: &Root, rel: &str) -> Result<String> {
    let f = root
        .open_file(rel, FinalLink::NoFollow)
        .map_err(|e| Error::io("open", root.display(rel), e))?;
    hash_reader(f, &root.display(rel))
}

/// sha256 of a file kiln made itself (a download in its own store),
/// `sha256:<hex>`.
pub(crate) fn hash_own_file(path: &Path) -> Result<String> {
    let f = fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    hash_reader(f, path)
}

impl FileIndex {
    /// An index kept only in memory.
    pub fn in_memory() -> FileIndex {
        FileIndex::default()
    }

    /// Loads the index stored at `path` (an empty one when it does not exist
    /// or cannot be parsed: the index is only a cache).
    pub fn load(path: &Path) -> FileIndex {
        let mut idx = FileIndex {
            path: Some(path.to_path_buf()),
            ..Default::default()
        };
        let Ok(meta) = fs::metadata(path) else {
            return idx;
        };
        let Ok(text) = fs::read_to_string(path) else {
            return idx;
        };
        idx.racy_after_ns = file_mtime_ns(&meta) - 1_000_000_000;
        for line in text.lines() {
            let mut f = line.splitn(6, '\t');
            let (Some(d), Some(s), Some(m), Some(c), Some(i), Some(p)) =
                (f.next(), f.next(), f.next(), f.next(), f.next(), f.next())
            else {
                continue;
            };
            let (Ok(size), Ok(mtime_ns), Ok(ctime_ns), Ok(inode)) =
                (s.parse(), m.parse(), c.parse(), i.parse())
            else {
                continue;
            };
            idx.entries.insert(
                p.to_string(),
                Entry {
                    digest: d.to_string(),
                    size,
                    mtime_ns,
                    ctime_ns,
                    inode,
                },
            );
        }
        idx
    }

    /// How many files were actually read and hashed through this index.
    pub fn hashed_count(&self) -> usize {
        self.hashed
    }

    /// The content digest of the regular file `rel` of the tree `root`
    /// (`rel` is also the index key), whose metadata is `meta`: from the
    /// index when its size, mtime, ctime and inode are unchanged, else by
    /// hashing it (read inside the tree, a final symlink not followed).
    pub fn digest(&mut self, rel: &str, root: &Root, meta: &Metadata) -> Result<String> {
        let (mtime_ns, ctime_ns) = times(meta);
        if let Some(e) = self.entries.get(rel)
            && e.size == meta.len()
            && e.mtime_ns == mtime_ns
            && e.ctime_ns == ctime_ns
            && e.inode == meta.ino()
            && mtime_ns < self.racy_after_ns
        {
            return Ok(e.digest.clone());
        }
        let digest = hash_in(root, rel)?;
        self.hashed += 1;
        if !rel.contains(['\t', '\n']) {
            self.entries.insert(
                rel.to_string(),
                Entry {
                    digest: digest.clone(),
                    size: meta.len(),
                    mtime_ns,
                    ctime_ns,
                    inode: meta.ino(),
                },
            );
            self.dirty = true;
        }
        Ok(digest)
    }

    /// Writes the index back (atomically) when it changed and has a path.
    pub fn save(&mut self) -> Result<()> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        let mut keys: Vec<&String> = self.entries.keys().collect();
        keys.sort();
        let mut out = String::new();
        for k in keys {
            let e = &self.entries[k];
            out.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\t{}\n",
                e.digest, e.size, e.mtime_ns, e.ctime_ns, e.inode, k
            ));
        }
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        }
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, out).map_err(|e| Error::io("write", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &path, e))?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_files_are_not_rehashed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctx = dir.path().join("ctx");
        fs::create_dir(&ctx).expect("mkdir");
        let file = ctx.join("a.txt");
        fs::write(&file, "hello").expect("write");
        // Make the file older than the index so it is not "racy".
        let old = filetime::FileTime::from_unix_time(1_000_000, 0);
        filetime::set_file_mtime(&file, old).expect("mtime");
        let idx_path = dir.path().join("index");

        let root = Root::open(&ctx).expect("root");
        let mut idx = FileIndex::load(&idx_path);
        let meta = root.lstat("a.txt").expect("stat");
        let d1 = idx.digest("a.txt", &root, &meta).expect("digest");
        assert_eq!(
            d1,
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(idx.hashed_count(), 1);
        idx.save().expect("save");

        let mut idx = FileIndex::load(&idx_path);
        let d2 = idx.digest("a.txt", &root, &meta).expect("digest");
        assert_eq!(d1, d2);
        assert_eq!(idx.hashed_count(), 0, "served from the index");

        // Content change with a different size: rehashed.
        fs::write(&file, "hello world").expect("write");
        filetime::set_file_mtime(&file, old).expect("mtime");
        let meta = root.lstat("a.txt").expect("stat");
        let d3 = idx.digest("a.txt", &root, &meta).expect("digest");
        assert_ne!(d1, d3);
        assert_eq!(idx.hashed_count(), 1);
    }

    #[test]
    fn racy_entries_are_rehashed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f");
        fs::write(&file, "x").expect("write");
        let idx_path = dir.path().join("index");
        let root = Root::open(dir.path()).expect("root");
        let mut idx = FileIndex::load(&idx_path);
        let meta = root.lstat("f").expect("stat");
        idx.digest("f", &root, &meta).expect("digest");
        idx.save().expect("save");
        // The file's mtime is within a second of the index's: not trusted.
        let mut idx = FileIndex::load(&idx_path);
        idx.digest("f", &root, &meta).expect("digest");
        assert_eq!(idx.hashed_count(), 1);
    }
}
