//! Manifests and indexes (OCI and Docker schema 2 share one shape, around
//! kiln-model's `Descriptor`), media types, and the conversions between Docker and OCI types.
//!
//! These are serialized with a fixed field order and sorted annotation maps
//! so that assembling the same image twice gives the same manifest digest.

use std::collections::BTreeMap;

use kiln_model::Descriptor;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// OCI and Docker media type strings.
pub mod media_type {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// OCI uncompressed layer.
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    /// OCI gzip layer.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// OCI zstd layer.
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    /// OCI non-distributable gzip layer (deprecated, still seen).
    pub const OCI_LAYER_NONDIST_GZIP: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
    /// Docker schema 2 manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// Docker gzip layer.
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    /// Docker uncompressed layer (seen in the wild, not in the spec).
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
    /// Docker foreign (non-distributable) gzip layer.
    pub const DOCKER_LAYER_FOREIGN_GZIP: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
    /// Docker zstd layer (as written by BuildKit with Docker media types).
    pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
}

/// The OCI equivalent of a Docker media type (other types are returned
/// unchanged). The blob bytes stay the same; only the label changes.
pub fn to_oci_media_type(mt: &str) -> &str {
    use media_type::*;
    match mt {
        DOCKER_MANIFEST => OCI_MANIFEST,
        DOCKER_MANIFEST_LIST => OCI_INDEX,
        DOCKER_CONFIG => OCI_CONFIG,
        DOCKER_LAYER_GZIP => OCI_LAYER_GZIP,
        DOCKER_LAYER_FOREIGN_GZIP => OCI_LAYER_NONDIST_GZIP,
        DOCKER_LAYER => OCI_LAYER,
        DOCKER_LAYER_ZSTD => OCI_LAYER_ZSTD,
        other => other,
    }
}

/// An image manifest, OCI or Docker schema 2 (they share this shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own media type (absent in some OCI manifests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config blob.
    pub config: Descriptor,
    /// Layer blobs, bottom first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Every other field, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Manifest {
    /// An OCI manifest for `config` and `layers`.
    pub fn new_oci(config: Descriptor, layers: Vec<Descriptor>) -> Manifest {
        Manifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.to_owned()),
            config,
            layers,
            annotations: None,
            extra: BTreeMap::new(),
        }
    }

    /// Parses manifest JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest> {
        serde_json::from_slice(bytes).map_err(|source| Error::InvalidJson {
            what: "manifest",
            source,
        })
    }

    /// Compact JSON with a stable field order.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("manifest serialization cannot fail: string keys only")
    }

    /// The same manifest with every Docker media type (its own, the config's
    /// and the layers') replaced by the OCI equivalent. Its digest differs;
    /// the blobs it points to do not.
    pub fn to_oci(&self) -> Manifest {
        let mut m = self.clone();
        m.media_type = Some(media_type::OCI_MANIFEST.to_owned());
        m.config.media_type = to_oci_media_type(&m.config.media_type).to_owned();
        for l in &mut m.layers {
            l.media_type = to_oci_media_type(&l.media_type).to_owned();
        }
        m
    }
}

/// An image index (OCI) or manifest list (Docker); also the `index.json` of
/// an OCI layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// The index's own media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests listed.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Every other field, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Index {
    /// An empty OCI index.
    pub fn new_oci(manifests: Vec<Descriptor>) -> Index {
        Index {
            schema_version: 2,
            media_type: Some(media_type::OCI_INDEX.to_owned()),
            manifests,
            annotations: None,
            extra: BTreeMap::new(),
        }
    }

    /// Parses index JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Index> {
        serde_json::from_slice(bytes).map_err(|source| Error::InvalidJson {
            what: "index",
            source,
        })
    }

    /// Compact JSON with a stable field order.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("index serialization cannot fail: string keys only")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_model::Digest;

    fn d(n: u8) -> Digest {
        Digest::of(&[n])
    }

    #[test]
    fn oci_manifest_json_is_stable_and_ordered() {
        let m = Manifest::new_oci(
            Descriptor::new(media_type::OCI_CONFIG, d(1), 10),
            vec![Descriptor::new(media_type::OCI_LAYER_GZIP, d(2), 20)],
        );
        let json = String::from_utf8(m.to_json()).unwrap();
        assert!(
            json.starts_with(
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:"#
            ),
            "{json}"
        );
        assert_eq!(Manifest::from_json(json.as_bytes()).unwrap(), m);
        assert_eq!(m.to_json(), m.clone().to_json());
    }

    #[test]
    fn docker_manifest_converts_to_oci() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","size":5,"digest":"{}"}},"layers":[{{"mediaType":"{}","size":7,"digest":"{}"}}]}}"#,
            media_type::DOCKER_MANIFEST,
            media_type::DOCKER_CONFIG,
            d(1),
            media_type::DOCKER_LAYER_GZIP,
            d(2)
        );
        let m = Manifest::from_json(json.as_bytes()).unwrap();
        let o = m.to_oci();
        assert_eq!(o.media_type.as_deref(), Some(media_type::OCI_MANIFEST));
        assert_eq!(o.config.media_type, media_type::OCI_CONFIG);
        assert_eq!(o.layers[0].media_type, media_type::OCI_LAYER_GZIP);
        assert_eq!(o.layers[0].digest, m.layers[0].digest);
        assert_eq!(o.layers[0].size, 7);
    }
}
