//! A ready-made [`BuildCache`]: one JSON file of records per parent image in
//! a directory, written atomically. Whether an image still exists is asked
//! of a closure, so the store decides (records of removed images are hidden
//! and dropped on the next write).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::backend::{BuildCache, CacheRecord, ImageId};
use crate::error::BackendError;

type Exists = dyn Fn(&ImageId) -> bool + Send + Sync;

/// A directory of cache records, `<dir>/<parent hex or "scratch">.json`.
pub struct JsonCache {
    dir: PathBuf,
    exists: Box<Exists>,
    write: Mutex<()>,
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
            write: Mutex::new(()),
        })
    }

    /// Removes every record (`kiln builder prune`); returns how many files went.
    pub fn prune(&self) -> std::io::Result<usize> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut n = 0;
        for ent in fs::read_dir(&self.dir)? {
            let p = ent?.path();
            if p.extension().is_some_and(|e| e == "json") {
                fs::remove_file(&p)?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn file(&self, parent: Option<&ImageId>) -> PathBuf {
        let name = parent.map_or("scratch".to_string(), |p| {
            p.0.strip_prefix("sha256:")
                .unwrap_or(&p.0)
                .replace(['/', ':'], "_")
        });
        self.dir.join(format!("{name}.json"))
    }

    fn load(&self, parent: Option<&ImageId>) -> Result<Vec<CacheRecord>, BackendError> {
        match fs::read(self.file(parent)) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }
}

impl BuildCache for JsonCache {
    fn children(&self, parent: Option<&ImageId>) -> Result<Vec<CacheRecord>, BackendError> {
        Ok(self
            .load(parent)?
            .into_iter()
            .filter(|r| (self.exists)(&r.image))
            .collect())
    }

    fn record(&self, record: &CacheRecord) -> Result<(), BackendError> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let parent = record.parent.as_ref();
        let mut records: Vec<CacheRecord> = self
            .load(parent)?
            .into_iter()
            .filter(|r| r.key != record.key && (self.exists)(&r.image))
            .collect();
        records.push(record.clone());
        let path = self.file(parent);
        let tmp = path.with_extension("json.tmp");
        fs::write(&tmp, serde_json::to_vec(&records)?)?;
        fs::rename(&tmp, &path)?;
        Ok(())
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
        let g = gone.clone();
        let c = JsonCache::open(dir.path(), move |id| *id != g).expect("open");
        let kids = c
            .children(Some(&ImageId("sha256:p".into())))
            .expect("children");
        assert_eq!(kids.len(), 1);
        assert_eq!(kids[0].image.0, "sha256:2");
        assert!(c.children(None).expect("children").is_empty());
        assert_eq!(c.prune().expect("prune"), 1);
        assert!(
            c.children(Some(&ImageId("sha256:p".into())))
                .expect("children")
                .is_empty()
        );
    }
}
