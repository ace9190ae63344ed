//! Image records: one JSON file per image under `images/`, keyed by the
//! image ID (the config digest), with its tags and repository digests, and
//! resolution of what users type (ID, ID prefix, or name) to a record.

use std::collections::BTreeMap;
use std::fs;
use std::io;

use serde::{Deserialize, Serialize};

use crate::store::io_err;
use crate::{Error, Reference, Result, Store};
use kiln_model::Digest;

/// The annotation of an image record naming the image it was built or
/// committed on (Docker's `Parent` of a locally made image): `docker images`
/// hides such parents when untagged, `rmi` keeps them while a child exists,
/// `inspect` and `history` show them.
pub const PARENT_ANNOTATION: &str = "kiln.parent";

/// What the store knows about one image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image ID: the digest of its config blob.
    pub id: Digest,
    /// Digest of the image manifest blob (stored raw in the store).
    pub manifest_digest: Digest,
    /// Media type of that manifest (OCI or Docker schema 2).
    pub manifest_media_type: String,
    /// Tags in Docker's familiar form, e.g. `busybox:latest`.
    #[serde(default)]
    pub repo_tags: Vec<String>,
    /// Repository digests in familiar form, e.g. `busybox@sha256:...`.
    #[serde(default)]
    pub repo_digests: Vec<String>,
    /// The config's `created` timestamp (RFC 3339), if any.
    #[serde(default)]
    pub created: Option<String>,
    /// Total size: config plus layers, as Docker counts it (compressed).
    #[serde(default)]
    pub size: u64,
    /// Free-form extra fields for other crates (e.g. the platform pulled).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl ImageRecord {
    /// A record with no tags, size 0 and no creation time.
    pub fn new(id: Digest, manifest_digest: Digest, manifest_media_type: &str) -> ImageRecord {
        ImageRecord {
            id,
            manifest_digest,
            manifest_media_type: manifest_media_type.to_string(),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            created: None,
            size: 0,
            annotations: BTreeMap::new(),
        }
    }
}

/// Whether the familiar tag string `tag` names the same thing as `r`.
fn tag_matches(tag: &str, r: &Reference) -> bool {
    tag.parse::<Reference>()
        .is_ok_and(|t| t.same_repository(r) && t.tag() == r.tag().or(Some("latest")))
}

fn digest_matches(entry: &str, r: &Reference, d: &Digest) -> bool {
    entry
        .parse::<Reference>()
        .is_ok_and(|t| t.same_repository(r) && t.digest() == Some(d))
}

impl Store {
    fn image_path(&self, id: &Digest) -> std::path::PathBuf {
        self.root()
            .join("images")
            .join(format!("{}.json", id.hex()))
    }

    /// Stores `record`. If a record with the same ID exists, its tags and
    /// repository digests are kept too (merged, so two processes recording
    /// the same image lose nothing); the other fields are replaced. The
    /// record's tags are moved off any other image that had them. Use
    /// [`Store::untag`] to drop a tag.
    pub fn put_image(&self, record: &ImageRecord) -> Result<()> {
        let _lock = self.lock()?;
        let mut merged = record.clone();
        if let Some(old) = self.get_image(&record.id)? {
            for t in old.repo_tags {
                if !merged.repo_tags.contains(&t) {
                    merged.repo_tags.push(t);
                }
            }
            for d in old.repo_digests {
                if !merged.repo_digests.contains(&d) {
                    merged.repo_digests.push(d);
                }
            }
        }
        let record = &merged;
        let tags: Vec<Reference> = record
            .repo_tags
            .iter()
            .filter_map(|t| t.parse().ok())
            .collect();
        if !tags.is_empty() {
            for mut other in self.list_images()? {
                if other.id == record.id {
                    continue;
                }
                let before = other.repo_tags.len();
                other
                    .repo_tags
                    .retain(|t| !tags.iter().any(|r| tag_matches(t, r)));
                if other.repo_tags.len() != before {
                    self.write_image(&other)?;
                }
            }
        }
        self.write_image(record)
    }

    fn write_image(&self, record: &ImageRecord) -> Result<()> {
        let path = self.image_path(&record.id);
        let bytes = serde_json::to_vec_pretty(record).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        self.atomic_write(&path, &bytes)
    }

    /// The record of image `id`, if stored.
    pub fn get_image(&self, id: &Digest) -> Result<Option<ImageRecord>> {
        let path = self.image_path(id);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| Error::Json { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    /// Every image record, sorted by ID.
    pub fn list_images(&self) -> Result<Vec<ImageRecord>> {
        let dir = self.root().join("images");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("read directory", &dir))? {
            let entry = entry.map_err(io_err("read directory", &dir))?;
            let name = entry.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            let Ok(id) = Digest::from_hex(hex) else {
                continue;
            };
            if let Some(r) = self.get_image(&id)? {
                out.push(r);
            }
        }
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    /// Deletes the record of image `id` (not its blobs: see [`Store::gc`]).
    /// Returns whether it existed.
    pub fn remove_image(&self, id: &Digest) -> Result<bool> {
        let _lock = self.lock()?;
        let path = self.image_path(id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("remove", &path)(e)),
        }
    }

    /// Points tag `reference` (its tag, `latest` if none) at image `id`,
    /// moving it off any other image.
    pub fn tag_image(&self, reference: &Reference, id: &Digest) -> Result<ImageRecord> {
        if reference.is_digest_algorithm_name() {
            return Err(Error::AmbiguousTag(reference.familiar()));
        }
        let _lock = self.lock()?;
        let mut rec = self
            .get_image(id)?
            .ok_or_else(|| Error::NoSuchImage(id.to_string()))?;
        let tag = reference.familiar_tagged();
        if !rec.repo_tags.iter().any(|t| tag_matches(t, reference)) {
            rec.repo_tags.push(tag);
        }
        self.put_image(&rec)?;
        Ok(rec)
    }

    /// Records that image `id` is known in the registry as
    /// `reference@digest` (Docker's RepoDigests).
    pub fn add_repo_digest(
        &self,
        reference: &Reference,
        digest: &Digest,
        id: &Digest,
    ) -> Result<()> {
        let _lock = self.lock()?;
        let mut rec = self
            .get_image(id)?
            .ok_or_else(|| Error::NoSuchImage(id.to_string()))?;
        if !rec
            .repo_digests
            .iter()
            .any(|e| digest_matches(e, reference, digest))
        {
            rec.repo_digests.push(reference.familiar_digested(digest));
            self.write_image(&rec)?;
        }
        Ok(())
    }

    /// Removes tag `reference` from whatever image has it and returns that
    /// image's updated record (`no such image` if no image has the tag).
    pub fn untag(&self, reference: &Reference) -> Result<ImageRecord> {
        let _lock = self.lock()?;
        for mut rec in self.list_images()? {
            let before = rec.repo_tags.len();
            rec.repo_tags.retain(|t| !tag_matches(t, reference));
            if rec.repo_tags.len() != before {
                self.write_image(&rec)?;
                return Ok(rec);
            }
        }
        Err(Error::NoSuchImage(reference.familiar()))
    }

    /// Removes the names (tags and repository digests, as stored: `name:tag`,
    /// `name@sha256:...`) of image `id` for which `matches` is true, and
    /// returns them in that order. Unlike [`Store::put_image`], which
    /// merges names, this is how a name goes.
    pub fn remove_names(&self, id: &Digest, matches: impl Fn(&str) -> bool) -> Result<Vec<String>> {
        let _lock = self.lock()?;
        let mut rec = self
            .get_image(id)?
            .ok_or_else(|| Error::NoSuchImage(id.to_string()))?;
        let mut removed = Vec::new();
        let mut keep = |name: &String| {
            let gone = matches(name);
            if gone {
                removed.push(name.clone());
            }
            !gone
        };
        rec.repo_tags.retain(&mut keep);
        rec.repo_digests.retain(&mut keep);
        if !removed.is_empty() {
            self.write_image(&rec)?;
        }
        Ok(removed)
    }

    /// Finds the image a user means by `input`: a full ID (`sha256:...` or
    /// 64 hex digits), a name (`busybox`, `busybox:1`, `name@sha256:...`),
    /// or a unique ID prefix (at least one hex digit, with or without
    /// `sha256:`). An ambiguous prefix is an error listing the candidates.
    pub fn resolve_image(&self, input: &str) -> Result<ImageRecord> {
        let images = self.list_images()?;
        let bare = input.strip_prefix("sha256:").unwrap_or(input);
        let is_hex = !bare.is_empty()
            && bare
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if is_hex && bare.len() == 64 {
            let id = Digest::from_hex(bare)?;
            return images
                .into_iter()
                .find(|r| r.id == id)
                .ok_or_else(|| Error::NoSuchImage(input.to_string()));
        }
        if !input.starts_with("sha256:")
            && let Ok(r) = input.parse::<Reference>()
        {
            let found = match r.digest() {
                Some(d) => images.iter().find(|i| {
                    i.repo_digests.iter().any(|e| digest_matches(e, &r, d))
                        || (i.manifest_digest == *d
                            && i.repo_tags
                                .iter()
                                .filter_map(|t| t.parse::<Reference>().ok())
                                .any(|t| t.same_repository(&r)))
                }),
                None => images
                    .iter()
                    .find(|i| i.repo_tags.iter().any(|t| tag_matches(t, &r))),
            };
            if let Some(f) = found {
                return Ok(f.clone());
            }
        }
        if is_hex {
            let matches: Vec<&ImageRecord> = images
                .iter()
                .filter(|i| i.id.hex().starts_with(bare))
                .collect();
            match matches.as_slice() {
                [one] => return Ok((*one).clone()),
                [] => {}
                many => {
                    return Err(Error::AmbiguousImage {
                        input: input.to_string(),
                        candidates: many.iter().map(|i| i.id.short()).collect(),
                    });
                }
            }
        }
        Err(Error::NoSuchImage(input.to_string()))
    }
}
