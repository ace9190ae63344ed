//! Snapshot metadata shared by both snapshotters: a JSON file under the
//! root, changed under a file lock, written to a temporary name and renamed;
//! snapshot directories are made under a temporary name and renamed too, and
//! leftovers of a crash are removed the next time the root is opened.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

use crate::{Error, Info, Kind, Result, io_err};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Db {
    pub(crate) next_id: u64,
    pub(crate) snapshots: BTreeMap<String, Record>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) id: u64,
    pub(crate) kind: Kind,
    pub(crate) parent: Option<String>,
}

impl Db {
    pub(crate) fn get(&self, key: &str) -> Result<&Record> {
        self.snapshots.get(key).ok_or_else(|| Error::NotFound {
            key: key.to_owned(),
        })
    }

    /// The ids of `name` and its ancestors, `name` first.
    pub(crate) fn chain(&self, name: &str) -> Result<Vec<u64>> {
        let mut ids = Vec::new();
        let mut next = Some(name.to_owned());
        while let Some(n) = next {
            let rec = self.get(&n)?;
            ids.push(rec.id);
            next = rec.parent.clone();
            if ids.len() > self.snapshots.len() {
                // A cycle can only come from a hand-edited file.
                return Err(Error::NotFound { key: n });
            }
        }
        Ok(ids)
    }

    pub(crate) fn info(&self, key: &str) -> Result<Info> {
        let rec = self.get(key)?;
        Ok(Info {
            name: key.to_owned(),
            parent: rec.parent.clone(),
            kind: rec.kind,
        })
    }
}

pub(crate) struct Meta {
    root: PathBuf,
    mutex: Mutex<()>,
}

impl Meta {
    /// Opens (creating) the root and removes what a crash left behind.
    pub(crate) fn open(root: &Path) -> Result<Self> {
        fs::create_dir_all(root.join("snapshots"))
            .map_err(io_err("creating snapshotter root", root))?;
        // Mount descriptions carry absolute paths.
        let root = &fs::canonicalize(root).map_err(io_err("resolving snapshotter root", root))?;
        let meta = Self {
            root: root.to_owned(),
            mutex: Mutex::new(()),
        };
        meta.update(|db| {
            let dir = meta.root.join("snapshots");
            for entry in fs::read_dir(&dir).map_err(io_err("listing", &dir))? {
                let entry = entry.map_err(io_err("listing", &dir))?;
                let name = entry.file_name();
                let known = name
                    .to_str()
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|id| db.snapshots.values().any(|r| r.id == id));
                if !known {
                    let path = entry.path();
                    fs::remove_dir_all(&path).map_err(io_err("removing leftover", &path))?;
                }
            }
            Ok(())
        })?;
        Ok(meta)
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn dir(&self, id: u64) -> PathBuf {
        self.root.join("snapshots").join(id.to_string())
    }

    fn db_path(&self) -> PathBuf {
        self.root.join("metadata.json")
    }

    fn lock(&self, op: FlockOperation) -> Result<File> {
        let path = self.root.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("opening lock", &path))?;
        rustix::fs::flock(&file, op).map_err(|e| io_err("locking", &path)(e.into()))?;
        Ok(file)
    }

    fn load(&self) -> Result<Db> {
        let path = self.db_path();
        match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| Error::Metadata { path, source })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Db::default()),
            Err(e) => Err(io_err("reading", &path)(e)),
        }
    }

    fn save(&self, db: &Db) -> Result<()> {
        let path = self.db_path();
        let tmp = self.root.join("metadata.json.tmp");
        let bytes = serde_json::to_vec_pretty(db).expect("metadata serializes");
        let mut f = File::create(&tmp).map_err(io_err("writing", &tmp))?;
        f.write_all(&bytes).map_err(io_err("writing", &tmp))?;
        f.sync_all().map_err(io_err("syncing", &tmp))?;
        fs::rename(&tmp, &path).map_err(io_err("renaming", &path))?;
        let dir = File::open(&self.root).map_err(io_err("opening", &self.root))?;
        dir.sync_all().map_err(io_err("syncing", &self.root))?;
        Ok(())
    }

    /// Reads the metadata under a shared lock.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
        let _guard = self.mutex.lock().unwrap_or_else(|p| p.into_inner());
        let _lock = self.lock(FlockOperation::LockShared)?;
        f(&self.load()?)
    }

    /// Changes the metadata under an exclusive lock; saved if `f` succeeds.
    pub(crate) fn update<T>(&self, f: impl FnOnce(&mut Db) -> Result<T>) -> Result<T> {
        let _guard = self.mutex.lock().unwrap_or_else(|p| p.into_inner());
        let _lock = self.lock(FlockOperation::LockExclusive)?;
        let mut db = self.load()?;
        let before = serde_json::to_vec(&db).expect("metadata serializes");
        let out = f(&mut db)?;
        if serde_json::to_vec(&db).expect("metadata serializes") != before {
            self.save(&db)?;
        }
        Ok(out)
    }

    /// Creates a snapshot record and its directory. `make` fills the
    /// directory (given the parent chain's ids, nearest first) under a
    /// temporary name; it is renamed into place before the record is saved.
    pub(crate) fn create(
        &self,
        key: &str,
        parent: Option<&str>,
        kind: Kind,
        make: impl FnOnce(&Path, &[u64]) -> Result<()>,
    ) -> Result<Record> {
        check_key(key)?;
        self.update(|db| {
            if db.snapshots.contains_key(key) {
                return Err(Error::AlreadyExists {
                    key: key.to_owned(),
                });
            }
            let chain = match parent {
                Some(p) => {
                    let rec = db.get(p)?;
                    if rec.kind != Kind::Committed {
                        return Err(Error::WrongKind {
                            key: p.to_owned(),
                            actual: rec.kind,
                            expected: "committed",
                        });
                    }
                    db.chain(p)?
                }
                None => Vec::new(),
            };
            let id = db.next_id;
            db.next_id += 1;
            let tmp = self.root.join("snapshots").join(format!("tmp-{id}"));
            if tmp.exists() {
                fs::remove_dir_all(&tmp).map_err(io_err("removing leftover", &tmp))?;
            }
            fs::create_dir(&tmp).map_err(io_err("creating", &tmp))?;
            if let Err(e) = make(&tmp, &chain) {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
            let dir = self.dir(id);
            fs::rename(&tmp, &dir).map_err(io_err("renaming", &dir))?;
            let rec = Record {
                id,
                kind,
                parent: parent.map(str::to_owned),
            };
            db.snapshots.insert(key.to_owned(), rec.clone());
            Ok(rec)
        })
    }

    pub(crate) fn commit(&self, name: &str, key: &str) -> Result<()> {
        check_key(name)?;
        self.update(|db| {
            let rec = db.get(key)?.clone();
            if rec.kind != Kind::Active {
                return Err(Error::WrongKind {
                    key: key.to_owned(),
                    actual: rec.kind,
                    expected: "active",
                });
            }
            if db.snapshots.contains_key(name) {
                return Err(Error::AlreadyExists {
                    key: name.to_owned(),
                });
            }
            db.snapshots.remove(key);
            db.snapshots.insert(
                name.to_owned(),
                Record {
                    kind: Kind::Committed,
                    ..rec
                },
            );
            Ok(())
        })
    }

    /// Removes the directory, then the record (refusing if it has
    /// children), both under the lock. When the directory cannot be removed
    /// the record stays, so the snapshot can still be found and removed
    /// again instead of leaking its tree.
    pub(crate) fn remove(&self, key: &str) -> Result<Record> {
        self.update(|db| {
            let rec = db.get(key)?.clone();
            let children: Vec<String> = db
                .snapshots
                .iter()
                .filter(|(_, r)| r.parent.as_deref() == Some(key))
                .map(|(k, _)| k.clone())
                .collect();
            if !children.is_empty() {
                return Err(Error::HasChildren {
                    key: key.to_owned(),
                    children,
                });
            }
            let dir = self.dir(rec.id);
            match fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("removing", &dir)(e)),
            }
            db.snapshots.remove(key);
            Ok(rec)
        })
    }

    pub(crate) fn list(&self) -> Result<Vec<Info>> {
        self.read(|db| db.snapshots.keys().map(|k| db.info(k)).collect())
    }

    /// The `fs` directory of snapshot `id`: its tree (copy) or upper dir (overlay).
    pub(crate) fn fs_dir(&self, id: u64) -> PathBuf {
        self.dir(id).join("fs")
    }

    /// Disk usage of `key`'s own `fs` directory.
    pub(crate) fn usage(&self, key: &str) -> Result<crate::Usage> {
        let id = self.read(|db| Ok(db.get(key)?.id))?;
        disk_usage(&self.fs_dir(id))
    }

    /// The `fs` directory of the active snapshot `key` (an error for views
    /// and committed snapshots): where a layer is applied.
    pub(crate) fn active_fs_dir(&self, key: &str) -> Result<PathBuf> {
        let rec = self.read(|db| db.get(key).cloned())?;
        if rec.kind != Kind::Active {
            return Err(Error::WrongKind {
                key: key.to_owned(),
                actual: rec.kind,
                expected: "active",
            });
        }
        Ok(self.fs_dir(rec.id))
    }
}

/// The record of `key` if it can be diffed (active or committed, not a view).
pub(crate) fn diffable<'a>(db: &'a Db, key: &str) -> Result<&'a Record> {
    let rec = db.get(key)?;
    if rec.kind == Kind::View {
        return Err(Error::WrongKind {
            key: key.to_owned(),
            actual: rec.kind,
            expected: "active or committed",
        });
    }
    Ok(rec)
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.contains('\0') {
        return Err(Error::InvalidKey {
            key: key.to_owned(),
        });
    }
    Ok(())
}

/// Disk usage of a tree, hardlinked inodes counted once.
pub(crate) fn disk_usage(dir: &Path) -> Result<crate::Usage> {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut usage = crate::Usage::default();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).map_err(io_err("listing", &d))? {
            let entry = entry.map_err(io_err("listing", &d))?;
            let path = entry.path();
            let m = fs::symlink_metadata(&path).map_err(io_err("inspecting", &path))?;
            if seen.insert((m.dev(), m.ino())) {
                usage.inodes += 1;
                usage.size += m.blocks() * 512;
            }
            if m.is_dir() {
                stack.push(path);
            }
        }
    }
    Ok(usage)
}
