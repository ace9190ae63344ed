//! `load`: reading a docker-archive or OCI layout tar (optionally gzip or
//! zstd compressed) into the store, in one pass, verifying every blob.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read};

use hashing::hash_reader;
use kiln_content::{ImageRecord, Reference, Store};
use kiln_layer::Compression;
use kiln_model::Digest;
use serde::Deserialize;
use tracing::debug;

use crate::archive::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, decompress, sniff};
use crate::error::parse_digest;
use crate::image::record_manifest;
use crate::manifest::{Index, Manifest, media_type};
use crate::{Error, Result};
use kiln_model::Descriptor;
use kiln_model::ImageConfig;

/// Files up to this size are kept in memory while reading the archive (the
/// JSON documents); larger ones go straight into the store.
const SMALL_FILE: u64 = 1 << 20;
/// At most this much is kept in memory in total; past it, small files go to
/// the store too.
const MEMORY_BUDGET: u64 = 64 << 20;

/// Where an archive member ended up.
enum Member {
    Memory(Vec<u8>),
    Blob(Digest, u64),
}

/// Reads an image archive from `input` and records its images in `store`.
///
/// Accepts a docker-archive (`manifest.json`, as `docker save` and
/// [`save`](crate::save) write it, with compressed or uncompressed layer
/// tars) or an OCI image layout tar (`oci-layout`, `index.json`, `blobs/`),
/// either of them plain, gzip- or zstd-compressed. The archive is read once:
/// large members stream into the store while hashed, blobs of an OCI layout
/// are checked against their names, docker-archive layers against the
/// config's diff IDs, and an image is recorded only when its config, every
/// layer and its manifest are in the store. Tags come from `RepoTags` or
/// from the index annotations (`io.containerd.image.name`, or
/// `org.opencontainers.image.ref.name` when it is a full name; a bare tag
/// there is not enough to name an image and is ignored). Returns the
/// recorded images in archive order.
pub fn load<R: Read>(store: &Store, input: R) -> Result<Vec<ImageRecord>> {
    let _lease = store.lease()?;
    let mut input = BufReader::with_capacity(1 << 20, input);
    let compression = sniff(&mut input).map_err(read_err)?;
    let plain = decompress(input, compression, &Digest::of(b"archive"))?;
    let mut archive = tar::Archive::new(plain);
    let mut members: BTreeMap<String, Member> = BTreeMap::new();
    let mut in_memory = 0u64;
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(read_err)?;
        let name = normalize(&path.to_string_lossy());
        let size = entry.size();
        let member = if size <= SMALL_FILE && in_memory + size <= MEMORY_BUDGET {
            let mut buf = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut buf).map_err(read_err)?;
            in_memory += size;
            Member::Memory(buf)
        } else {
            let expected = blob_name(&name);
            let want = expected.as_ref().map(|d| (d, size));
            let (digest, size) = store.copy_blob(&mut entry, want)?;
            Member::Blob(digest, size)
        };
        members.insert(name, member);
    }
    if let Some(Member::Memory(json)) = members.get("index.json") {
        let index = Index::from_json(json)?;
        load_oci(store, &members, &index)
    } else if let Some(Member::Memory(json)) = members.get("manifest.json") {
        let entries: Vec<DockerManifestEntry> =
            serde_json::from_slice(json).map_err(|source| Error::InvalidJson {
                what: "docker-archive manifest.json",
                source,
            })?;
        load_docker(store, &members, entries)
    } else {
        Err(Error::InvalidArchive {
            reason: "neither index.json nor manifest.json found".to_owned(),
        })
    }
}

/// `./a/b` and `a/b` are the same member.
fn normalize(path: &str) -> String {
    path.trim_start_matches("./")
        .trim_start_matches('/')
        .to_owned()
}

/// The digest an OCI layout path names (`blobs/sha256/<hex>`).
fn blob_name(path: &str) -> Option<Digest> {
    let hex = path.strip_prefix("blobs/sha256/")?;
    Digest::from_hex(hex).ok()
}

/// Puts member `path` in the store (if it is not there yet) and returns its
/// digest and size, checked against `expected` when given.
fn member_blob(
    store: &Store,
    members: &BTreeMap<String, Member>,
    path: &str,
    expected: Option<(&Digest, u64)>,
) -> Result<(Digest, u64)> {
    let missing = || Error::InvalidArchive {
        reason: format!("{path} is referenced but not in the archive"),
    };
    let (digest, size) = match members.get(path).ok_or_else(missing)? {
        Member::Memory(bytes) => store.copy_blob(&mut bytes.as_slice(), expected)?,
        Member::Blob(d, s) => (*d, *s),
    };
    if let Some((want, want_size)) = expected
        && (digest != *want || size != want_size)
    {
        return Err(Error::InvalidArchive {
            reason: format!(
                "{path}: expected {want} ({want_size} bytes), found {digest} ({size} bytes)"
            ),
        });
    }
    Ok((digest, size))
}

fn load_oci(
    store: &Store,
    members: &BTreeMap<String, Member>,
    index: &Index,
) -> Result<Vec<ImageRecord>> {
    let mut loaded: Vec<ImageRecord> = Vec::new();
    for desc in manifests_of(store, members, index, 0)? {
        let path = format!("blobs/sha256/{}", desc.digest.hex());
        let (digest, _) = member_blob(store, members, &path, Some((&desc.digest, desc.size)))?;
        let manifest_json = store.read_blob(&digest)?;
        let manifest = Manifest::from_json(&manifest_json)?;
        let config = fetch_config(store, members, &manifest.config)?;
        for l in &manifest.layers {
            let p = format!("blobs/sha256/{}", l.digest.hex());
            member_blob(store, members, &p, Some((&l.digest, l.size)))?;
        }
        check_count(&manifest, &config)?;
        let tags = tags_from_annotations(&desc);
        let mut manifest = manifest;
        if manifest.media_type.is_none() {
            manifest.media_type = Some(media_type::OCI_MANIFEST.to_owned());
        }
        let record = record_manifest(store, &manifest_json, &manifest, config.created, &tags)?;
        debug!(image = %record.id, "loaded from oci layout");
        merge(&mut loaded, record);
    }
    Ok(loaded)
}

/// The image manifests an index lists, following nested indexes (of which
/// only the entries matching this host's platform, or without a platform,
/// are taken).
fn manifests_of(
    store: &Store,
    members: &BTreeMap<String, Member>,
    index: &Index,
    depth: usize,
) -> Result<Vec<Descriptor>> {
    let mut out = Vec::new();
    for desc in &index.manifests {
        match desc.media_type.as_str() {
            media_type::OCI_INDEX | media_type::DOCKER_MANIFEST_LIST if depth < 4 => {
                let path = format!("blobs/sha256/{}", desc.digest.hex());
                let (digest, _) =
                    member_blob(store, members, &path, Some((&desc.digest, desc.size)))?;
                let nested = Index::from_json(&store.read_blob(&digest)?)?;
                let native = kiln_model::Platform::native();
                let mut picked: Vec<Descriptor> = manifests_of(store, members, &nested, depth + 1)?
                    .into_iter()
                    .filter(|d| d.platform.as_ref().is_none_or(|p| native.matches(p)))
                    .take(1)
                    .collect();
                for p in &mut picked {
                    p.annotations.clone_from(&desc.annotations);
                }
                out.extend(picked);
            }
            media_type::OCI_MANIFEST | media_type::DOCKER_MANIFEST => out.push(desc.clone()),
            other => {
                return Err(Error::InvalidArchive {
                    reason: format!(
                        "index entry {} has unsupported media type {other}",
                        desc.digest
                    ),
                });
            }
        }
    }
    Ok(out)
}

fn tags_from_annotations(desc: &Descriptor) -> Vec<Reference> {
    let Some(ann) = &desc.annotations else {
        return Vec::new();
    };
    let full = ann.get(ANNOTATION_IMAGE_NAME).or_else(|| {
        ann.get(ANNOTATION_REF_NAME)
            .filter(|r| r.contains('/') || r.contains(':'))
    });
    full.and_then(|n| Reference::parse(n).ok())
        .filter(|r| r.digest().is_none())
        .into_iter()
        .collect()
}

fn fetch_config(
    store: &Store,
    members: &BTreeMap<String, Member>,
    desc: &Descriptor,
) -> Result<ImageConfig> {
    let path = format!("blobs/sha256/{}", desc.digest.hex());
    let (digest, _) = member_blob(store, members, &path, Some((&desc.digest, desc.size)))?;
    crate::error::parse_config(&store.read_blob(&digest)?)
}

fn check_count(manifest: &Manifest, config: &ImageConfig) -> Result<()> {
    if manifest.layers.len() != config.rootfs.diff_ids.len() {
        return Err(Error::LayerCountMismatch {
            id: manifest.config.digest.to_string(),
            layers: manifest.layers.len(),
            diff_ids: config.rootfs.diff_ids.len(),
        });
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

fn load_docker(
    store: &Store,
    members: &BTreeMap<String, Member>,
    entries: Vec<DockerManifestEntry>,
) -> Result<Vec<ImageRecord>> {
    // Every name is checked before anything is recorded: a bad one refuses
    // the whole archive, where Docker would have loaded the images untagged.
    let mut all_tags = Vec::with_capacity(entries.len());
    for entry in &entries {
        all_tags.push(repo_tags(entry.repo_tags.as_deref().unwrap_or_default())?);
    }
    let mut loaded: Vec<ImageRecord> = Vec::new();
    for (entry, tags) in entries.into_iter().zip(all_tags) {
        let config_path = normalize(&entry.config);
        let (config_id, config_size) = member_blob(store, members, &config_path, None)?;
        let config = crate::error::parse_config(&store.read_blob(&config_id)?)?;
        if entry.layers.len() != config.rootfs.diff_ids.len() {
            return Err(Error::LayerCountMismatch {
                id: config_id.to_string(),
                layers: entry.layers.len(),
                diff_ids: config.rootfs.diff_ids.len(),
            });
        }
        let mut layers = Vec::new();
        for (path, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
            let path = normalize(path);
            let (digest, size) = member_blob(store, members, &path, None)?;
            let diff_id = parse_digest(diff_id)?;
            let compression = {
                let mut head = BufReader::new(store.open_blob(&digest)?);
                sniff(&mut head).map_err(read_err)?
            };
            // The layer's uncompressed tar must hash to the config's diff ID.
            let actual = match compression {
                Compression::None => digest,
                c => hash_reader(decompress(store.open_blob(&digest)?, c, &digest)?)
                    .map_err(read_err)?,
            };
            if actual != diff_id {
                return Err(Error::InvalidArchive {
                    reason: format!("{path}: diff id is {actual}, config says {diff_id}"),
                });
            }
            let mt = match compression {
                Compression::None => media_type::OCI_LAYER,
                c => c.oci_media_type(),
            };
            layers.push(Descriptor::new(mt, digest, size));
        }
        let manifest = Manifest::new_oci(
            Descriptor::new(media_type::OCI_CONFIG, config_id, config_size),
            layers,
        );
        let record = record_manifest(store, &manifest.to_json(), &manifest, config.created, &tags)?;
        debug!(image = %record.id, "loaded from docker-archive");
        merge(&mut loaded, record);
    }
    Ok(loaded)
}

/// The names of a docker-archive `RepoTags` list. Each must be a tag: a
/// `name@sha256:...` reference names no tag and is refused, as `docker
/// load` refuses it (`invalid tag`), instead of being recorded as
/// `name:latest`; so is a name Docker would find ambiguous (`sha256:<hex>`).
fn repo_tags(names: &[String]) -> Result<Vec<Reference>> {
    names
        .iter()
        .map(|t| {
            let r = Reference::parse(t)?;
            if r.tag().is_none() {
                return Err(Error::InvalidArchive {
                    reason: format!(
                        "invalid tag {t:?} in manifest.json RepoTags: a digest reference names no tag"
                    ),
                });
            }
            if r.is_digest_algorithm_name() {
                return Err(Error::InvalidArchive {
                    reason: format!(
                        "invalid tag {t:?} in manifest.json RepoTags: refusing to create an ambiguous tag using digest algorithm as name"
                    ),
                });
            }
            Ok(r)
        })
        .collect()
}

/// Keeps one entry per image (several index entries may name one image).
fn merge(loaded: &mut Vec<ImageRecord>, record: ImageRecord) {
    match loaded.iter_mut().find(|r| r.id == record.id) {
        Some(r) => *r = record,
        None => loaded.push(record),
    }
}

fn read_err(source: io::Error) -> Error {
    Error::Archive {
        op: "reading",
        source,
    }
}

/// sha256 of a stream, with the content crate's hasher.
mod hashing {
    use std::io::{self, Read};

    use kiln_model::{Digest, Hasher};

    pub(super) fn hash_reader(mut r: impl Read) -> io::Result<Digest> {
        let mut h = Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(h.finish());
            }
            h.update(&buf[..n]);
        }
    }
}
