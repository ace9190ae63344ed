//! The ready-made [`BuildCache`]: one JSON file per record in a directory,
//! named by the digest of (parent, key), so that a step's lookup is one file
//! open. Whether an image still exists is asked of a closure, so the store
//! decides (records of removed images are hidden and their files dropped).
//!
//! The files are written with a rename but without fsync: the cache is only
//! a cache, and a record lost or cut by a crash is a miss (an unreadable one
//! is ignored), while an fsync per step cost about 10 ms under load.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

use crate::backend::{BuildCache, CacheRecord, ImageId};
use crate::error::BackendError;

type Exists = dyn Fn(&ImageId) -> bool + Send + Sync;

/// A directory of cache records, `<dir>/<sha256 hex of "parent\nkey">.json`.
pub struct JsonCache {
    dir: PathBuf,
    exists: Box<Exists>,
}

fn parent_key(parent: Option<&ImageId>) -> &str {
    parent.map_or("scratch", |p| p.0.as_str())
}

/// The name of the record of `key` on `parent`.
fn record_id(parent: Option<&ImageId>, key: &str) -> String {
    hex::encode(sha2::Sha256::digest(
        format!("{}\n{}", parent_key(parent), key).as_bytes(),
    ))
}

impl JsonCache {
    /// Opens (creating) the cache directory; `exists` tells whether an image
    /// is still in the store.
    pub fn open(
        dir: &Path,
        exists: impl Fn(&ImageId) -> bool + Send + Sync + 'static,
    ) -> std::io::Result<JsonCache> {
        fs::create_dir_all(dir)?;
        Ok(JsonCache {
            dir: dir.to_path_buf(),
            exists: Box::new(exists),
        })
    }

    /// Every readable record file in `dir`, with its ID (a missing
    /// directory has none). Errors name the directory.
    fn all(dir: &Path) -> std::io::Result<Vec<(String, CacheRecord)>> {
        let named = |e: std::io::Error| {
            std::io::Error::new(e.kind(), format!("cannot read {}: {e}", dir.display()))
        };
        let mut out = Vec::new();
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(named(e)),
        };
        for ent in rd {
            let ent = ent.map_err(named)?;
            let name = ent.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if let Some(r) = fs::read(ent.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<CacheRecord>(&b).ok())
            {
                out.push((id.to_owned(), r));
            }
        }
        Ok(out)
    }

    /// How many records the cache directory `dir` holds (`system df`);
    /// errors name the directory.
    pub fn count(dir: &Path) -> std::io::Result<usize> {
        Ok(Self::all(dir)?.len())
    }

    /// Removes every record of the cache directory `dir` (`kiln builder
    /// prune`); returns how many went. Errors name the directory or file.
    pub fn clear(dir: &Path) -> std::io::Result<usize> {
        let all = Self::all(dir)?;
        for (id, _) in &all {
            let p = dir.join(format!("{id}.json"));
            fs::remove_file(&p).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot remove {}: {e}", p.display()))
            })?;
        }
        Ok(all.len())
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn read(&self, id: &str) -> Option<CacheRecord> {
        let bytes = fs::read(self.path(id)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

impl BuildCache for JsonCache {
    fn children(&self, parent: Option<&ImageId>) -> Result<Vec<CacheRecord>, BackendError> {
        let want = parent_key(parent);
        let mut out = Vec::new();
        for (id, r) in Self::all(&self.dir)? {
            if parent_key(r.parent.as_ref()) != want {
                continue;
            }
            if (self.exists)(&r.image) {
                out.push(r);
            } else {
                let _ = fs::remove_file(self.path(&id));
            }
        }
        Ok(out)
    }

    fn lookup(
        &self,
        parent: Option<&ImageId>,
        key: &str,
    ) -> Result<Option<CacheRecord>, BackendError> {
        let id = record_id(parent, key);
        let Some(r) = self.read(&id) else {
            return Ok(None);
        };
        if r.key != key || r.parent.as_ref() != parent {
            return Ok(None);
        }
        if !(self.exists)(&r.image) {
            let _ = fs::remove_file(self.path(&id));
            return Ok(None);
        }
        Ok(Some(r))
    }

    fn record(&self, record: &CacheRecord) -> Result<(), BackendError> {
        let id = record_id(record.parent.as_ref(), &record.key);
        let path = self.path(&id);
        let tmp = self.dir.join(format!(".tmp-{id}-{}", std::process::id()));
        let bytes = serde_json::to_vec(record)?;
        fs::write(&tmp, bytes)
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|e| {
                let _ = fs::remove_file(&tmp);
                format!("cannot write {}: {e}", path.display()).into()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen_and_hide_removed_images() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gone = ImageId("sha256:gone".into());
        let rec = |key: &str, image: &str| CacheRecord {
            parent: Some(ImageId("sha256:p".into())),
            key: key.into(),
            shape: key.into(),
            files: vec![("a".into(), "644:sha256:x".into())],
            image: ImageId(image.into()),
        };
        {
            let c = JsonCache::open(dir.path(), |_| true).expect("open");
            c.record(&rec("RUN a", "sha256:1")).expect("record");
            c.record(&rec("RUN b", "sha256:gone")).expect("record");
            c.record(&rec("RUN a", "sha256:2")).expect("replace");
        }
        assert_eq!(JsonCache::count(dir.path()).expect("count"), 2);
        let g = gone.clone();
        let c = JsonCache::open(dir.path(), move |id| *id != g).expect("open");
        let p = ImageId("sha256:p".into());
        let kids = c.children(Some(&p)).expect("children");
        assert_eq!(kids.len(), 1);
        assert_eq!(kids[0].image.0, "sha256:2");
        // The record of the removed image went with that look.
        assert_eq!(JsonCache::count(dir.path()).expect("count"), 1);
        assert!(c.children(None).expect("children").is_empty());
        assert_eq!(
            c.lookup(Some(&p), "RUN a")
                .expect("lookup")
                .map(|r| r.image.0),
            Some("sha256:2".to_owned())
        );
        assert!(c.lookup(Some(&p), "RUN b").expect("lookup").is_none());
        assert!(c.lookup(None, "RUN a").expect("lookup").is_none());
        assert_eq!(JsonCache::clear(dir.path()).expect("clear"), 1);
        assert!(c.children(Some(&p)).expect("children").is_empty());
        assert_eq!(JsonCache::count(dir.path()).expect("count"), 0);
    }

    #[test]
    fn an_unreadable_record_is_a_miss() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = JsonCache::open(dir.path(), |_| true).expect("open");
        let p = ImageId("sha256:p".into());
        fs::write(
            dir.path()
                .join(format!("{}.json", record_id(Some(&p), "k"))),
            b"{cut",
        )
        .expect("write");
        assert!(c.lookup(Some(&p), "k").expect("lookup").is_none());
        assert!(c.children(Some(&p)).expect("children").is_empty());
    }
}
