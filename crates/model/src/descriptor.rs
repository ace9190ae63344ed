//! `Descriptor`: an OCI content descriptor (what a blob is, its digest and
//! size), as manifests, indexes and registries use it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Digest, Platform};

/// A content descriptor: a blob's media type, digest and size, and for an
/// index entry its platform.
///
/// Fields serialize in a fixed order (OCI's), and fields not modelled here
/// are kept in `extra` and written back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced blob.
    pub media_type: String,
    /// Digest of the blob.
    pub digest: Digest,
    /// Size of the blob in bytes.
    pub size: u64,
    /// Alternate download locations (foreign layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Annotations (`org.opencontainers.image.ref.name` in a layout index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Platform of a manifest listed in an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Every other field (`artifactType`, `data`, ...), kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Descriptor {
    /// A descriptor with only media type, digest and size.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_owned(),
            digest,
            size,
            urls: None,
            annotations: None,
            platform: None,
            extra: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_survive_and_order_is_fixed() {
        let d = Digest::of(b"x");
        let json = format!(
            r#"{{"size":3,"digest":"{d}","mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"a/b","platform":{{"os":"linux","architecture":"arm","variant":"v7"}}}}"#
        );
        let desc: Descriptor = serde_json::from_str(&json).unwrap();
        assert_eq!(desc.size, 3);
        assert_eq!(desc.platform.as_ref().unwrap().to_string(), "linux/arm/v7");
        let out = serde_json::to_string(&desc).unwrap();
        assert_eq!(
            out,
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","size":3,"platform":{{"architecture":"arm","os":"linux","variant":"v7"}},"artifactType":"a/b"}}"#
            )
        );
        assert_eq!(serde_json::from_str::<Descriptor>(&out).unwrap(), desc);
    }

    #[test]
    fn new_has_only_the_three_fields() {
        let d = Descriptor::new("application/octet-stream", Digest::of(b""), 0);
        let out = serde_json::to_string(&d).unwrap();
        assert!(out.starts_with(r#"{"mediaType":"application/octet-stream","digest":"sha256:"#));
        assert!(out.ends_with(r#","size":0}"#), "{out}");
    }
}
