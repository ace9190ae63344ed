//! Generic JSON records by kind under `records/<kind>/<id>.json`: the CLI
//! keeps containers here, the builder its cache index. Records resolve by
//! full ID, unique ID prefix, or name, as Docker resolves containers.

use std::fs;
use std::io;
use std::marker::PhantomData;
use std::path::PathBuf;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::store::io_err;
use crate::{Error, Result, Store};

/// A value kept as a generic record.
pub trait Record: Serialize + DeserializeOwned {
    /// Unique ID; also the file name. Letters, digits, `_`, `-`, `.` and
    /// `:` only, not starting with `.`.
    fn id(&self) -> &str;
    /// Optional unique name (e.g. a container name) to resolve by.
    fn name(&self) -> Option<&str> {
        None
    }
}

/// The records of one kind in a store; see [`Store::records`].
#[derive(Debug)]
pub struct Records<T> {
    store: Store,
    kind: String,
    dir: PathBuf,
    _t: PhantomData<fn() -> T>,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

fn bare(id: &str) -> &str {
    id.strip_prefix("sha256:").unwrap_or(id)
}

impl Store {
    /// The records of `kind` (e.g. `"containers"`), creating its directory.
    pub fn records<T: Record>(&self, kind: &str) -> Result<Records<T>> {
        if !valid_name(kind) || kind.contains(':') {
            return Err(Error::InvalidRecordId {
                kind: kind.to_string(),
                id: kind.to_string(),
            });
        }
        let dir = self.root().join("records").join(kind);
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        Ok(Records {
            store: self.clone(),
            kind: kind.to_string(),
            dir,
            _t: PhantomData,
        })
    }
}

impl<T: Record> Records<T> {
    fn path(&self, id: &str) -> Result<PathBuf> {
        if !valid_name(id) {
            return Err(Error::InvalidRecordId {
                kind: self.kind.clone(),
                id: id.to_string(),
            });
        }
        Ok(self.dir.join(format!("{id}.json")))
    }

    /// Stores `record`, replacing the one with the same ID. Fails if
    /// another record already has its name.
    pub fn put(&self, record: &T) -> Result<()> {
        let _lock = self.store.lock()?;
        let path = self.path(record.id())?;
        if let Some(name) = record.name()
            && let Some(other) = self
                .list()?
                .into_iter()
                .find(|o| o.name() == Some(name) && o.id() != record.id())
        {
            return Err(Error::NameInUse {
                kind: self.kind.clone(),
                name: name.to_string(),
                id: other.id().to_string(),
            });
        }
        let bytes = serde_json::to_vec_pretty(record).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        self.store.atomic_write(&path, &bytes)
    }

    /// The record with exactly this ID, if any.
    pub fn get(&self, id: &str) -> Result<Option<T>> {
        let path = self.path(id)?;
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| Error::Json { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    /// Every record of this kind, sorted by ID.
    pub fn list(&self) -> Result<Vec<T>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err("read directory", &self.dir))? {
            let entry = entry.map_err(io_err("read directory", &self.dir))?;
            let name = entry.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json"))
                && valid_name(id)
            {
                ids.push(id.to_string());
            }
        }
        ids.sort();
        let mut out = Vec::new();
        for id in ids {
            if let Some(r) = self.get(&id)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Deletes the record with this ID; returns whether it existed.
    pub fn remove(&self, id: &str) -> Result<bool> {
        let _lock = self.store.lock()?;
        let path = self.path(id)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("remove", &path)(e)),
        }
    }

    /// Reads, changes and writes back a record under the store lock.
    pub fn update<R>(&self, id: &str, change: impl FnOnce(&mut T) -> R) -> Result<R> {
        let _lock = self.store.lock()?;
        let mut rec = self.get(id)?.ok_or_else(|| Error::NoSuchRecord {
            kind: self.kind.clone(),
            input: id.to_string(),
        })?;
        let out = change(&mut rec);
        self.put(&rec)?;
        Ok(out)
    }

    /// Finds a record by full ID, name, or unique ID prefix (a leading
    /// `sha256:` is ignored on both sides). An ambiguous prefix is an error
    /// listing the candidates.
    pub fn resolve(&self, input: &str) -> Result<T> {
        let all = self.list()?;
        let not_found = || Error::NoSuchRecord {
            kind: self.kind.clone(),
            input: input.to_string(),
        };
        if input.is_empty() {
            return Err(not_found());
        }
        if let Some(i) = all
            .iter()
            .position(|r| r.id() == input || bare(r.id()) == bare(input))
        {
            return Ok(all.into_iter().nth(i).expect("position is in range"));
        }
        if let Some(i) = all.iter().position(|r| r.name() == Some(input)) {
            return Ok(all.into_iter().nth(i).expect("position is in range"));
        }
        let mut matches: Vec<T> = all
            .into_iter()
            .filter(|r| bare(r.id()).starts_with(bare(input)))
            .collect();
        match matches.len() {
            0 => Err(not_found()),
            1 => Ok(matches.remove(0)),
            _ => Err(Error::AmbiguousRecord {
                kind: self.kind.clone(),
                input: input.to_string(),
                candidates: matches
                    .iter()
                    .map(|r| bare(r.id()).chars().take(12).collect())
                    .collect(),
            }),
        }
    }
}
