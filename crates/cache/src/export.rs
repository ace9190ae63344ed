//! Writing a cache (`--cache-to`): the images of the chosen steps, then the
//! index naming them. To a registry, each image is pushed by digest (blobs
//! the repository has are skipped, blobs of another repository mounted),
//! then the index under the tag. To a directory, an OCI image layout.

use std::collections::BTreeSet;
use std::io;

use kiln_builder::{CacheRecord, ImageId};
use kiln_content::Store;
use kiln_fs::{FinalLink, Root};
use kiln_model::Digest;
use kiln_registry::NoProgress;

use crate::CacheError;
use crate::blobs::{Manifest, layout_path};
use crate::index::{self, Entry};
use crate::layered::RemoteCache;
use crate::spec::{CacheTo, Location, Mode};

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    /// Steps in the cache.
    pub steps: usize,
    /// Digest of the index written.
    pub digest: Digest,
}

/// The records `mode` exports: every one the build used (`max`), or the
/// chain that leads to `final_image` plus the `COPY --link` layers it
/// stacks (`min`).
pub fn select(used: &[CacheRecord], final_image: &ImageId, mode: Mode) -> Vec<CacheRecord> {
    if mode == Mode::Max {
        return used.to_vec();
    }
    let mut chain = Vec::new();
    let mut seen = BTreeSet::new();
    let mut cur = Some(final_image.clone());
    while let Some(img) = cur.take() {
        if !seen.insert(img.clone()) {
            break;
        }
        if let Some(r) = used.iter().rev().find(|r| r.image == img) {
            chain.push(r.clone());
            cur = r.parent.clone();
        }
    }
    let links: Vec<CacheRecord> = used
        .iter()
        .filter(|r| {
            r.parent.is_none()
                && r.key.starts_with("#(link) ")
                && chain
                    .iter()
                    .any(|c| c.key.ends_with(&format!("--link={}", r.image.0)))
        })
        .cloned()
        .collect();
    chain.reverse();
    links.into_iter().chain(chain).collect()
}

enum Target<'a> {
    Registry(&'a kiln_content::Reference),
    Local(Root),
}

fn platform(store: &Store, id: &str) -> (String, String) {
    let v = id
        .parse::<Digest>()
        .ok()
        .and_then(|d| store.read_blob(&d).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    let get = |k: &str, d: &str| {
        v.as_ref()
            .and_then(|v| v.get(k)?.as_str().map(str::to_string))
            .unwrap_or_else(|| d.to_string())
    };
    (get("os", "linux"), get("architecture", "amd64"))
}

impl RemoteCache {
    /// Writes the steps `to.mode` selects, of the build that made
    /// `final_image`, to `to.location`.
    pub fn export(&self, to: &CacheTo, final_image: &ImageId) -> Result<ExportReport, CacheError> {
        let records = select(&self.used(), final_image, to.mode);
        let store = self.store();
        let mut entries = Vec::with_capacity(records.len());
        let fail = |what: String| {
            move |e: String| CacheError::Export {
                location: to.location.to_string(),
                reason: format!("{what}: {e}"),
            }
        };
        let target = match &to.location {
            Location::Local(dir) => Target::Local(
                open_layout(dir).map_err(|e| fail(dir.display().to_string())(e.to_string()))?,
            ),
            Location::Registry(r) => Target::Registry(r),
        };
        for r in records {
            let id = r
                .image
                .0
                .parse::<Digest>()
                .map_err(|e| fail(r.image.0.clone())(e.to_string()))?;
            let dist = kiln_image::distribution_manifest(store, &id, to.compression)
                .map_err(|e| fail(format!("image {id}"))(e.to_string()))?;
            let size = store
                .blob_size(&dist.manifest_digest)
                .map_err(|e| fail(format!("image {id}"))(e.to_string()))?;
            match &target {
                Target::Registry(repo) => {
                    let at = repo.with_digest(dist.manifest_digest);
                    self.with_registry(async |reg| {
                        reg.push_manifest(
                            &at,
                            store,
                            &id,
                            &dist.manifest_digest,
                            &dist.media_type,
                            &NoProgress,
                        )
                        .await
                        .map_err(|e| e.to_string())
                    })
                    .and_then(|r| r)
                    .map_err(fail(format!("push of image {id}")))?;
                }
                Target::Local(root) => write_image(store, root, &dist.manifest_digest)
                    .map_err(|e| fail(format!("image {id}"))(e.to_string()))?,
            }
            entries.push(Entry {
                record: r,
                manifest: kiln_model::Descriptor::new(&dist.media_type, dist.manifest_digest, size),
            });
        }
        let (os, arch) = platform(store, &final_image.0);
        let bytes = index::encode(&entries, (&os, &arch));
        let digest = match &target {
            Target::Registry(r) => self
                .with_registry(async |reg| reg.put_index(r, bytes).await.map_err(|e| e.to_string()))
                .and_then(|r| r)
                .map_err(fail("index".into()))?,
            Target::Local(root) => {
                let d = Digest::of(&bytes);
                write_index(root, &bytes).map_err(|e| fail("index.json".into())(e.to_string()))?;
                d
            }
        };
        Ok(ExportReport {
            steps: entries.len(),
            digest,
        })
    }
}

fn open_layout(dir: &std::path::Path) -> io::Result<Root> {
    // The directory is the user's to name; what is inside it (a cache
    // restored by a CI system) is not trusted: everything below goes
    // through the root.
    std::fs::create_dir_all(dir)?;
    let root = Root::open(dir)?;
    root.mkdir_all("blobs/sha256", 0o755)?;
    root.write("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#, 0o644)?;
    Ok(root)
}

fn copy_blob(store: &Store, root: &Root, d: &Digest) -> io::Result<()> {
    let size = store.blob_size(d).map_err(io::Error::other)?;
    if let Ok(m) = root.lstat(layout_path(d))
        && m.is_file()
        && m.len() == size
    {
        return Ok(());
    }
    let tmp = format!("blobs/sha256/.tmp-{}-{}", std::process::id(), d.hex());
    let _ = root.remove(&tmp);
    let mut out = root.create(&tmp, 0o644)?;
    let mut src = store.open_blob(d).map_err(io::Error::other)?;
    io::copy(&mut src, &mut out)?;
    out.sync_all()?;
    root.rename(&tmp, layout_path(d))
}

fn write_image(store: &Store, root: &Root, manifest: &Digest) -> io::Result<()> {
    let bytes = store.read_blob(manifest).map_err(io::Error::other)?;
    let m: Manifest = serde_json::from_slice(&bytes).map_err(io::Error::other)?;
    for b in m.layers.iter().chain(std::iter::once(&m.config)) {
        copy_blob(store, root, &b.digest)?;
    }
    copy_blob(store, root, manifest)
}

fn write_index(root: &Root, bytes: &[u8]) -> io::Result<()> {
    let tmp = format!(".index.json.tmp-{}", std::process::id());
    root.write(&tmp, bytes, 0o644)?;
    let f = root.open_file(&tmp, FinalLink::Refuse)?;
    f.sync_all()?;
    root.rename(&tmp, "index.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(parent: Option<&str>, key: &str, image: &str) -> CacheRecord {
        CacheRecord {
            parent: parent.map(|p| ImageId(p.into())),
            key: key.into(),
            shape: key.into(),
            files: Vec::new(),
            image: ImageId(image.into()),
        }
    }

    #[test]
    fn min_is_the_final_chain_and_max_is_everything() {
        let used = vec![
            rec(Some("base"), "RUN build", "b1"), // builder stage
            rec(Some("b1"), "RUN more", "b2"),
            rec(None, "#(link) COPY x /", "L"),
            rec(Some("base"), "RUN final", "f1"),
            rec(Some("f1"), "COPY --from=0 x\n--link=L", "f2"),
        ];
        let fin = ImageId("f2".into());
        let min: Vec<String> = select(&used, &fin, Mode::Min)
            .into_iter()
            .map(|r| r.image.0)
            .collect();
        assert_eq!(min, ["L", "f1", "f2"]);
        assert_eq!(select(&used, &fin, Mode::Max), used);
        // A loop in hostile records ends.
        let looped = vec![rec(Some("b"), "x", "a"), rec(Some("a"), "y", "b")];
        assert_eq!(select(&looped, &ImageId("a".into()), Mode::Min).len(), 2);
    }
}
