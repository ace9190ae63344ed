//! Multi-platform images kept locally: an OCI image index over images of
//! the store, one per platform (`kiln build --platform a,b`). The index is
//! a blob of the store; the image a tag names (the host's platform, else
//! the first) names it in [`INDEX_ANNOTATION`] and lists the members in
//! [`MEMBERS_ANNOTATION`], which keeps them from `image prune` while it
//! exists. `kiln push` of that tag pushes the whole index: each member's
//! distribution manifest by digest, then the index under the tag.
//!
//! `kiln manifest` keeps lists of its own ([`ManifestList`], record kind
//! [`MANIFEST_LISTS`]) until they are pushed; their images are kept from
//! `image prune` too.

use kiln_content::Reference;
use kiln_layer::Compression;
use kiln_model::{Descriptor, Digest, Platform};
use kiln_registry::Progress;
use serde_json::{Value, json};

use crate::engine::Engine;
use crate::error::{Context as _, Result};
use crate::pull::block_on;

/// The image annotation naming the local index the image is the face of.
/// Under kiln-content's [`kiln_content::DISTRIBUTION_MANIFEST_PREFIX`], so
/// the store's blob gc keeps the index (and what it names) while the image
/// exists. (A pulled image's `kiln.index` names the index it came from.)
pub const INDEX_ANNOTATION: &str = "kiln.manifest.index";
/// The image annotation listing the index's member images (comma-separated
/// image IDs): they are kept while the annotated image exists.
pub const MEMBERS_ANNOTATION: &str = "kiln.index.members";

impl Engine {
    /// Writes an OCI index over `images` (each with its platform) into the
    /// store and returns its digest. Each entry is the image's own
    /// manifest.
    pub fn make_index(&mut self, images: &[(Platform, Digest)]) -> Result<Digest> {
        let mut manifests = Vec::new();
        for (platform, id) in images {
            let rec = self
                .store
                .get_image(id)?
                .with_context(|| format!("image {id} is not in the store"))?;
            let size = self.store.blob_size(&rec.manifest_digest)?;
            let mut d = Descriptor::new(&rec.manifest_media_type, rec.manifest_digest, size);
            d.platform = Some(platform.clone());
            manifests.push(d);
        }
        let index = json!({
            "schemaVersion": 2,
            "mediaType": kiln_registry::OCI_INDEX,
            "manifests": manifests,
        });
        Ok(self.store.write_blob(&serde_json::to_vec(&index)?)?)
    }

    /// Makes `face` (one of the members) the local face of `index`: the
    /// annotations that name the index and keep its members.
    pub fn attach_index(
        &mut self,
        face: &Digest,
        index: &Digest,
        members: &[Digest],
    ) -> Result<()> {
        let mut rec = self
            .store
            .get_image(face)?
            .with_context(|| format!("image {face} is not in the store"))?;
        rec.annotations
            .insert(INDEX_ANNOTATION.to_owned(), index.to_string());
        let list: Vec<String> = members.iter().map(Digest::to_string).collect();
        rec.annotations
            .insert(MEMBERS_ANNOTATION.to_owned(), list.join(","));
        self.store.put_image(&rec)?;
        Ok(())
    }

    /// The local index whose face `id` is, when every member is still in
    /// the store (an image pulled from an index has the annotation but not
    /// the other platforms' images).
    pub fn local_index(&self, id: &Digest) -> Result<Option<Digest>> {
        let Some(rec) = self.store.get_image(id)? else {
            return Ok(None);
        };
        let (Some(index), Some(members)) = (
            rec.annotations.get(INDEX_ANNOTATION),
            rec.annotations.get(MEMBERS_ANNOTATION),
        ) else {
            return Ok(None);
        };
        for m in members.split(',') {
            let Ok(d) = m.parse::<Digest>() else {
                return Ok(None);
            };
            if self.store.get_image(&d)?.is_none() {
                return Ok(None);
            }
        }
        Ok(index.parse().ok().filter(|d| self.store.has_blob(d)))
    }

    /// Pushes image `id` (named `name` by the user) as `reference`: the
    /// whole local index when `id` is one's face, else its distribution
    /// manifest (plain layers compressed with `compression`). Returns the
    /// pushed manifest's or index's digest.
    pub fn push_image(
        &mut self,
        reference: &Reference,
        id: &Digest,
        name: &str,
        compression: Compression,
        progress: &dyn Progress,
    ) -> Result<Digest> {
        if let Some(index) = self.local_index(id)? {
            return self.push_index(reference, &index, compression, progress);
        }
        let dist = kiln_image::distribution_manifest(&self.store, id, compression)
            .with_context(|| format!("cannot compress the layers of {name}"))?;
        let registry = self.registry()?;
        Ok(block_on(registry.push_manifest(
            reference,
            &self.store,
            id,
            &dist.manifest_digest,
            &dist.media_type,
            progress,
        ))??)
    }

    /// Pushes the local index `index` as `reference`: each member's
    /// distribution manifest (layers compressed with `compression`) by
    /// digest, then an index over those under the tag. Returns the pushed
    /// index's digest.
    pub fn push_index(
        &mut self,
        reference: &Reference,
        index: &Digest,
        compression: Compression,
        progress: &dyn Progress,
    ) -> Result<Digest> {
        let v: Value = serde_json::from_slice(&self.store.read_blob(index)?)?;
        let entries: Vec<Descriptor> =
            serde_json::from_value(v.get("manifests").cloned().unwrap_or(Value::Null))?;
        let images = self.store.list_images()?;
        // Compress first; then every request on one runtime (a registry
        // client's connections belong to the runtime that made them).
        let mut members = Vec::new();
        for e in entries {
            let rec = images
                .iter()
                .find(|i| i.manifest_digest == e.digest)
                .with_context(|| {
                    format!("the image of manifest {} is not in the store", e.digest)
                })?;
            let dist = kiln_image::distribution_manifest(&self.store, &rec.id, compression)
                .with_context(|| format!("cannot compress the layers of {}", rec.id))?;
            let size = self.store.blob_size(&dist.manifest_digest)?;
            let mut d = Descriptor::new(&dist.media_type, dist.manifest_digest, size);
            d.platform = e.platform.clone();
            members.push((rec.id, d));
        }
        let registry = self.registry()?;
        let store = &self.store;
        let digest = block_on(async {
            for (id, d) in &members {
                let at = reference.with_digest(d.digest);
                registry
                    .push_manifest(&at, store, id, &d.digest, &d.media_type, progress)
                    .await?;
            }
            let manifests: Vec<&Descriptor> = members.iter().map(|(_, d)| d).collect();
            let bytes = serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": kiln_registry::OCI_INDEX,
                "manifests": manifests,
            }))
            .unwrap_or_default();
            registry.put_index(reference, bytes).await
        })??;
        Ok(digest)
    }
}

/// Record kind of local manifest lists (`kiln manifest create`).
pub const MANIFEST_LISTS: &str = "manifest-lists";

/// A manifest list kept locally until it is pushed (`kiln manifest ...`):
/// images of the store, each with the platform the list gives it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ManifestList {
    /// The record's id: the hex sha256 of `name`.
    pub id: String,
    /// The list's reference, normalised (`registry/repo:tag`).
    pub name: String,
    /// Its entries, in order.
    pub entries: Vec<ListEntry>,
}

/// One image of a [`ManifestList`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ListEntry {
    /// The image.
    pub image: Digest,
    /// The platform the list says it is for.
    pub platform: Platform,
}

impl kiln_content::Record for ManifestList {
    fn id(&self) -> &str {
        &self.id
    }
}

fn list_id(name: &Reference) -> String {
    Digest::of(name.to_string().as_bytes()).hex()
}

impl Engine {
    /// The platform image `id`'s config names.
    pub fn image_platform(&self, id: &Digest) -> Result<Platform> {
        let c = kiln_image::image_config(&self.store, id)?;
        Ok(c.platform()
            .unwrap_or_else(|| Platform::new("linux", &c.architecture, None)))
    }

    /// The local manifest list `name`, if there is one.
    pub fn manifest_list(&self, name: &Reference) -> Result<Option<ManifestList>> {
        Ok(self
            .store
            .records::<ManifestList>(MANIFEST_LISTS)?
            .get(&list_id(name))?)
    }

    /// Every local manifest list.
    pub fn manifest_lists(&self) -> Result<Vec<ManifestList>> {
        Ok(self.store.records::<ManifestList>(MANIFEST_LISTS)?.list()?)
    }

    /// Stores `entries` as the local list `name` (replacing it).
    pub fn put_manifest_list(&self, name: &Reference, entries: Vec<ListEntry>) -> Result<()> {
        let rec = ManifestList {
            id: list_id(name),
            name: name.to_string(),
            entries,
        };
        self.store
            .records::<ManifestList>(MANIFEST_LISTS)?
            .put(&rec)?;
        Ok(())
    }

    /// Removes the local list `name`; whether there was one.
    pub fn remove_manifest_list(&self, name: &Reference) -> Result<bool> {
        Ok(self
            .store
            .records::<ManifestList>(MANIFEST_LISTS)?
            .remove(&list_id(name))?)
    }

    /// The OCI index a local list stands for (written into the store).
    pub fn manifest_list_index(&mut self, list: &ManifestList) -> Result<Digest> {
        let images: Vec<(Platform, Digest)> = list
            .entries
            .iter()
            .map(|e| (e.platform.clone(), e.image))
            .collect();
        self.make_index(&images)
    }
}
