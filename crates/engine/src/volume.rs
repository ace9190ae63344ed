//! Volumes as Docker's `local` driver keeps them: a directory per volume
//! under the store root, `<root>/volumes/<name>/_data` (what containers
//! mount), beside `volume.json` (its creation time, labels, options and
//! whether it is anonymous). Anonymous volumes (an image's `VOLUME`,
//! `-v /path`) get a random 64-hex name; `kiln rm -v` removes them with
//! their container. Filling a new volume from an image's content is the
//! front end's business (it is a copy out of an untrusted tree, done
//! with kiln-layer's in-root copy).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bail;
use crate::container::ContainerRecord;
use crate::engine::Engine;
use crate::error::{Context as _, Result};

/// What is kept of a volume beside its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    /// The volume's name.
    pub name: String,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// `--label`s.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `--opt`s (kept and shown; the local driver of kiln takes none).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Made for one container (no name given): removed by `rm -v`.
    #[serde(default)]
    pub anonymous: bool,
}

/// Whether `name` is a valid volume name: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`,
/// as Docker's local driver requires.
pub fn valid_name(name: &str) -> bool {
    name.len() >= 2
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl Engine {
    /// The directory holding every volume.
    pub fn volumes_dir(&self) -> PathBuf {
        self.root().join("volumes")
    }

    /// The directory containers mount for volume `name`.
    pub fn volume_data(&self, name: &str) -> PathBuf {
        self.volumes_dir().join(name).join("_data")
    }

    /// Volume `name`'s record, `None` when there is no such volume.
    pub fn volume(&self, name: &str) -> Result<Option<VolumeRecord>> {
        if !valid_name(name) {
            return Ok(None);
        }
        let path = self.volumes_dir().join(name).join("volume.json");
        match std::fs::read(&path) {
            Ok(bytes) => {
                Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                    format!("cannot read {}", path.display())
                })?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Every volume, by name.
    pub fn volumes(&self) -> Result<Vec<VolumeRecord>> {
        let dir = self.volumes_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
            if let Some(v) = entry.file_name().to_str().map(|n| self.volume(n)) {
                out.extend(v?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Creates volume `name` (a random 64-hex name, anonymous, when `None`)
    /// and returns it with whether it was made now: an existing volume of
    /// that name is returned as it is, as Docker's `volume create` does.
    pub fn create_volume(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
    ) -> Result<(VolumeRecord, bool)> {
        let (name, anonymous) = match name {
            Some(n) => {
                if !valid_name(n) {
                    bail!(
                        "create {n}: \"{n}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
                    );
                }
                (n.to_owned(), false)
            }
            None => (crate::container::new_id()?.0, true),
        };
        if let Some(existing) = self.volume(&name)? {
            return Ok((existing, false));
        }
        let dir = self.volumes_dir().join(&name);
        let data = dir.join("_data");
        std::fs::create_dir_all(&data)
            .with_context(|| format!("cannot create volume directory {}", data.display()))?;
        let rec = VolumeRecord {
            name,
            created_at: kiln_image::Timestamp::from_system_time(std::time::SystemTime::now())
                .to_string(),
            labels,
            options,
            anonymous,
        };
        let tmp = dir.join("volume.json.tmp");
        let path = dir.join("volume.json");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&rec)?)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok((rec, true))
    }

    /// The containers (any state) that mount volume `name`.
    pub fn volume_users(&self, name: &str) -> Result<Vec<ContainerRecord>> {
        Ok(self
            .containers()?
            .list()?
            .into_iter()
            .filter(|c| c.volumes.iter().any(|v| v.volume.as_deref() == Some(name)))
            .collect())
    }

    /// Removes volume `name` and its data. Refused while a container uses
    /// it (Docker's message); `force` makes a missing volume no error.
    pub fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        if self.volume(name)?.is_none() {
            if force {
                return Ok(());
            }
            bail!("get {name}: no such volume");
        }
        let users = self.volume_users(name)?;
        if !users.is_empty() {
            let ids: Vec<&str> = users.iter().map(|c| c.id.as_str()).collect();
            bail!("remove {name}: volume is in use - [{}]", ids.join(", "));
        }
        let dir = self.volumes_dir().join(name);
        // The record first: a half-removed volume is then no volume.
        let record = dir.join("volume.json");
        std::fs::remove_file(&record)
            .with_context(|| format!("cannot remove {}", record.display()))?;
        remove_tree(&dir)
    }

    /// Bytes used by volume `name`'s data (what prune reclaims).
    pub fn volume_size(&self, name: &str) -> u64 {
        tree_size(&self.volume_data(name))
    }
}

/// Removes a volume's directory; its files were written by containers,
/// so directories without write permission are opened up first.
fn remove_tree(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            open_up(dir);
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("cannot remove volume directory {}", dir.display()))
        }
    }
}

fn open_up(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                open_up(&e.path());
            }
        }
    }
}

/// The apparent size of the files below `dir` (links not followed).
fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            Ok(_) => std::fs::symlink_metadata(e.path()).map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names_as_dockers_local_driver() {
        assert!(valid_name("data"));
        assert!(valid_name("a1_b.c-d"));
        assert!(!valid_name("a"));
        assert!(!valid_name("-data"));
        assert!(!valid_name("../x"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(""));
    }
}
