//! Images in the content store: chain IDs, reading an image's manifest and
//! config, assembling and recording a new image. The `inspect` and
//! `history` views, which also read layer sizes, are in `views.rs`.

use kiln_content::{ImageRecord, Reference, Store};
use kiln_model::Digest;

use crate::error::parse_digest;
use crate::manifest::{Manifest, media_type};
use crate::{Error, Result};
use kiln_model::Descriptor;
use kiln_model::ImageConfig;

/// OCI chain IDs of a layer stack, bottom first: the first is the first diff
/// ID, each next one is `sha256(previous_chain_id + " " + diff_id)` over the
/// `sha256:<hex>` strings. Snapshots of unpacked layers are named by these.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => *d,
            Some(prev) => Digest::of(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// An image as stored: its record, parsed manifest and parsed config.
#[derive(Debug, Clone)]
pub struct Image {
    /// The store's record (ID, tags, manifest digest).
    pub record: ImageRecord,
    /// The image manifest (OCI or Docker schema 2), as stored.
    pub manifest: Manifest,
    /// The image config.
    pub config: ImageConfig,
}

impl Image {
    /// The config's diff IDs, parsed, bottom first.
    pub fn diff_ids(&self) -> Result<Vec<Digest>> {
        self.config
            .rootfs
            .diff_ids
            .iter()
            .map(|d| parse_digest(d))
            .collect()
    }

    /// The chain IDs of its layers, bottom first; the last names the
    /// snapshot of the whole filesystem (none for an image without layers).
    pub fn chain_ids(&self) -> Result<Vec<Digest>> {
        Ok(chain_ids(&self.diff_ids()?))
    }

    /// Checks that the manifest has as many layers as the config has diff IDs.
    pub fn check_layers(&self) -> Result<()> {
        let (layers, diff_ids) = (
            self.manifest.layers.len(),
            self.config.rootfs.diff_ids.len(),
        );
        if layers != diff_ids {
            return Err(Error::LayerCountMismatch {
                id: self.record.id.to_string(),
                layers,
                diff_ids,
            });
        }
        Ok(())
    }
}

/// Reads image `id` (its config digest): record, manifest and config.
/// Errors with the content store's `no such image` when there is no record.
pub fn read_image(store: &Store, id: &Digest) -> Result<Image> {
    let record = store
        .get_image(id)?
        .ok_or_else(|| kiln_content::Error::NoSuchImage(id.to_string()))?;
    let manifest = Manifest::from_json(&store.read_blob(&record.manifest_digest)?)?;
    let config = crate::error::parse_config(&store.read_blob(&record.id)?)?;
    Ok(Image {
        record,
        manifest,
        config,
    })
}

/// The parsed config of image `id`.
pub fn image_config(store: &Store, id: &Digest) -> Result<ImageConfig> {
    if store.get_image(id)?.is_none() {
        return Err(kiln_content::Error::NoSuchImage(id.to_string()).into());
    }
    crate::error::parse_config(&store.read_blob(id)?)
}

/// Writes `config` (as deterministic JSON) and an OCI manifest listing
/// `layers` (whose blobs must already be in the store) into the store, then
/// records the image with `tags` (moved off any image that had them).
///
/// `layers` must match `config.rootfs.diff_ids` one to one. The record's
/// size is the config's plus the layer blobs' sizes; its `created` is the
/// config's. Returns the record; its `id` is the new image ID.
pub fn write_image(
    store: &Store,
    config: &ImageConfig,
    layers: Vec<Descriptor>,
    tags: &[Reference],
) -> Result<ImageRecord> {
    let _lease = store.lease()?;
    let config_json = config.to_json();
    let config_id = store.write_blob(&config_json)?;
    if layers.len() != config.rootfs.diff_ids.len() {
        return Err(Error::LayerCountMismatch {
            id: config_id.to_string(),
            layers: layers.len(),
            diff_ids: config.rootfs.diff_ids.len(),
        });
    }
    for l in &layers {
        if !store.has_blob(&l.digest) {
            return Err(Error::MissingBlob {
                id: config_id.to_string(),
                digest: l.digest.to_string(),
            });
        }
    }
    let manifest = Manifest::new_oci(
        Descriptor::new(media_type::OCI_CONFIG, config_id, config_json.len() as u64),
        layers,
    );
    record_manifest(
        store,
        &manifest.to_json(),
        &manifest,
        config.created.clone(),
        tags,
    )
}

/// Stores `manifest_json` (the serialized `manifest`, whose config and layer
/// blobs are already in the store) and records the image it describes with
/// `tags`. The image ID is the manifest's config digest.
pub(crate) fn record_manifest(
    store: &Store,
    manifest_json: &[u8],
    manifest: &Manifest,
    created: Option<String>,
    tags: &[Reference],
) -> Result<ImageRecord> {
    let config_id = manifest.config.digest;
    let size = manifest.config.size + manifest.layers.iter().map(|l| l.size).sum::<u64>();
    let manifest_digest = store.write_blob(manifest_json)?;
    let media_type = manifest
        .media_type
        .clone()
        .unwrap_or_else(|| media_type::OCI_MANIFEST.to_owned());
    let mut record = ImageRecord::new(config_id, manifest_digest, &media_type);
    record.repo_tags = tags.iter().map(Reference::familiar_tagged).collect();
    record.created = created;
    record.size = size;
    store.put_image(&record)?;
    Ok(store.get_image(&config_id)?.unwrap_or(record))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::Timestamp;
    use kiln_model::History;

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let c = Digest::of(b"c");
        let ids = chain_ids(&[a, b, c]);
        assert_eq!(ids[0], a);
        let ab = Digest::of(format!("sha256:{} sha256:{}", a.hex(), b.hex()).as_bytes());
        assert_eq!(ids[1], ab);
        let abc = Digest::of(format!("sha256:{} sha256:{}", ab.hex(), c.hex()).as_bytes());
        assert_eq!(ids[2], abc);
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn chain_id_matches_a_known_value() {
        // Two empty-tar diff IDs; the value was computed independently with
        // `printf 'sha256:X sha256:X' | sha256sum`.
        let d: Digest = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
            .parse()
            .unwrap();
        let ids = chain_ids(&[d, d]);
        assert_eq!(
            ids[1].to_string(),
            "sha256:170b376f64fb30995c140276be3d71dfb256b308d86183ca3b22aa93a79ad548"
        );
    }

    pub(crate) fn store() -> (tempfile::TempDir, Store) {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("store")).unwrap();
        (tmp, store)
    }

    pub(crate) fn sample(store: &Store) -> ImageRecord {
        let layer = store.write_blob(b"not really a tar").unwrap();
        let mut cfg = ImageConfig::new("linux", "amd64");
        cfg.created = Some(Timestamp::from_unix(1_700_000_000).to_string());
        cfg.container_config_mut().cmd = Some(vec!["sh".into()]);
        cfg.push_layer(
            "sha256:1111111111111111111111111111111111111111111111111111111111111111",
            History {
                created: cfg.created.clone(),
                created_by: Some("/bin/sh -c #(nop) ADD file:x in / ".into()),
                ..Default::default()
            },
        );
        cfg.push_empty_history(History {
            created: cfg.created.clone(),
            created_by: Some("/bin/sh -c #(nop)  CMD [\"sh\"]".into()),
            ..Default::default()
        });
        let tags = [Reference::parse("example/app:1").unwrap()];
        write_image(
            store,
            &cfg,
            vec![Descriptor::new(media_type::OCI_LAYER_GZIP, layer, 16)],
            &tags,
        )
        .unwrap()
    }

    #[test]
    fn write_image_records_a_deterministic_image() {
        let (_t1, s1) = store();
        let (_t2, s2) = store();
        let r1 = sample(&s1);
        let r2 = sample(&s2);
        assert_eq!(r1.id, r2.id);
        assert_eq!(r1.manifest_digest, r2.manifest_digest);
        assert_eq!(r1.repo_tags, ["example/app:1"]);
        let img = read_image(&s1, &r1.id).unwrap();
        img.check_layers().unwrap();
        assert_eq!(img.manifest.layers[0].size, 16);
        assert_eq!(
            r1.size,
            16 + s1.blob_size(&r1.id).unwrap(),
            "size counts config and layers"
        );
        assert_eq!(s1.resolve_image("example/app:1").unwrap().id, r1.id);
        assert_eq!(
            image_config(&s1, &r1.id).unwrap().config.unwrap().cmd,
            Some(vec!["sh".to_owned()])
        );
    }

    #[test]
    fn write_image_refuses_mismatched_or_missing_layers() {
        let (_t, s) = store();
        let mut cfg = ImageConfig::new("linux", "amd64");
        cfg.push_layer(&Digest::of(b"x").to_string(), History::default());
        let err = write_image(&s, &cfg, vec![], &[]).unwrap_err();
        assert!(matches!(err, Error::LayerCountMismatch { .. }), "{err}");
        let absent = Descriptor::new(media_type::OCI_LAYER, Digest::of(b"absent"), 6);
        let err = write_image(&s, &cfg, vec![absent], &[]).unwrap_err();
        assert!(matches!(err, Error::MissingBlob { .. }), "{err}");
    }

    #[test]
    fn unknown_image_is_an_error() {
        let (_t, s) = store();
        let err = read_image(&s, &Digest::of(b"nothing")).unwrap_err();
        assert!(err.to_string().contains("content store"), "{err}");
        assert!(image_config(&s, &Digest::of(b"nothing")).is_err());
    }
}
